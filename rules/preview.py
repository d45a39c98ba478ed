"""The flow registry behind ``psinfor rules preview``: what canonical record a raw payload becomes.

processors/ registers one preview function per flow (``register_flow("prestashop_orders", fn)``) where
the flow module is defined; the function takes the raw payload bytes and the :class:`~rules.engine.Rules`
and returns the canonical record as a JSON-ready dict, without Kafka or any other I/O beyond what the
flow itself needs. The CLI imports ``processors`` (which registers the flows) and calls :func:`preview`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

from rules.engine import Rules

PreviewFn: TypeAlias = Callable[[bytes, Rules], dict[str, Any]]
"""raw payload bytes, rules → the canonical record as a JSON-ready dict (raises InvalidMessage)."""

_FLOWS: dict[str, PreviewFn] = {}


class UnknownFlowError(LookupError):
    """No flow of that name is registered (or none at all)."""


def register_flow(name: str, fn: PreviewFn) -> None:
    """Make ``fn`` the preview of flow ``name``; registering a name twice is a bug (ValueError)."""
    if name in _FLOWS and _FLOWS[name] is not fn:
        raise ValueError(f"preview flow {name!r} is already registered")
    _FLOWS[name] = fn


def registered_flows() -> list[str]:
    """The names of every registered flow, sorted."""
    return sorted(_FLOWS)


def preview(raw: bytes, rules: Rules, flow: str | None = None) -> dict[str, Any]:
    """The canonical record ``raw`` becomes in ``flow`` (the only flow when None and there is one).

    Raises UnknownFlowError when no flow is registered, the name is unknown, or the choice is ambiguous;
    whatever the flow raises (InvalidMessage for a payload that would go to the DLQ) passes through.
    """
    if not _FLOWS:
        raise UnknownFlowError("no flow is registered for preview yet (processors/ registers them)")
    if flow is None:
        if len(_FLOWS) > 1:
            raise UnknownFlowError(
                f"several flows are registered, choose one with --flow: {', '.join(registered_flows())}"
            )
        flow = next(iter(_FLOWS))
    try:
        fn = _FLOWS[flow]
    except KeyError:
        raise UnknownFlowError(f"no flow {flow!r}; registered: {', '.join(registered_flows())}") from None
    return fn(raw, rules)


def unregister_flow(name: str) -> None:
    """Remove ``name`` (tests use it to leave the registry as they found it)."""
    _FLOWS.pop(name, None)
