"""The PrestaShop flows of the processor worker, by name (merged into ``processors.FLOWS``).

Each PrestaShop flow is the ``FLOW`` of the module named after it (``processors.prestashop_orders``),
built by :func:`processors.prestashop_source.bundle_flow`; importing the module also registers its
``psinfor rules preview``. ``prestashop_orders`` and ``prestashop_order_status`` read the same order
bundles: run them in separate workers (``--app-id``), see ``processors.prestashop_order_status``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

_NAMES = (
    "prestashop_orders",
    "prestashop_order_status",
    "prestashop_payments",
    "prestashop_customers",
    "prestashop_products",
)

PRESTASHOP_FLOWS: dict[str, str] = {name: f"processors.{name}:FLOW" for name in _NAMES}
"""Flow name → ``module:ATTRIBUTE`` of its :class:`~processors.runner.Flow`."""


def import_flow_modules(flows: Mapping[str, str]) -> list[str]:
    """Import the module of every ``module:ATTRIBUTE`` in ``flows``; returns the flow names, sorted.

    A flow module registers its ``psinfor rules preview`` when imported.
    """
    for reference in flows.values():
        importlib.import_module(reference.partition(":")[0])
    return sorted(flows)


def register_previews() -> list[str]:
    """Import every PrestaShop flow module (registering its preview); returns the flow names."""
    return import_flow_modules(PRESTASHOP_FLOWS)
