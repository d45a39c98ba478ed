"""End-to-end tests: the whole stack as ``psinfor dev up`` starts it, on the session broker and registry."""
