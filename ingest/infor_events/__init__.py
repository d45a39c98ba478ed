"""Infor events into the raw topics: the IMS v3 receiver ION pushes BODs to, and the M3 MI poller."""
