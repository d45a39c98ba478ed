"""The processors: raw source events → canonical Avro records (the faust worker is ``processors.main``).

:data:`FLOWS` is the one list of production flows: name → ``module:ATTRIBUTE``, where the attribute is
a ready :class:`~processors.runner.Flow` (``FLOW``) or a builder (``build_flow``) that
``processors.main`` calls with the runtime resources its parameters name (``rules``, ``order_keys``,
``customer_keys``; parameters with defaults may be left out). Adding a flow is one line here.

Importing this package registers every flow's ``psinfor rules preview`` (each flow module registers its
own on import; ``cli/rules.py`` imports the package for that reason). Flow modules read nothing at
import time, so this costs imports only.
"""

from __future__ import annotations

from processors.flows_prestashop import PRESTASHOP_FLOWS, import_flow_modules

FLOWS: dict[str, str] = {
    **PRESTASHOP_FLOWS,
    "infor_order_status": "processors.infor_orders:build_flow",
    "infor_shipments": "processors.infor_shipments:build_flow",
    "infor_invoices": "processors.infor_invoices:build_flow",
    "infor_inventory": "processors.infor_inventory:FLOW",
    "infor_items": "processors.infor_items:FLOW",
    "infor_customers": "processors.infor_customers:build_flow",
}
"""Production flows by name (the flow's own ``name``) → ``module:ATTRIBUTE`` (a Flow or its builder)."""


def register_previews() -> list[str]:
    """Import every flow module of :data:`FLOWS` (registering its preview); returns the flow names."""
    return import_flow_modules(FLOWS)


register_previews()
