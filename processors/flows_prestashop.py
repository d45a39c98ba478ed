"""The PrestaShop flows of the processor worker, by name (for ``processors.main.FLOWS``).

``processors.main.FLOWS`` is the registry ``--flows`` resolves names with; its owner merges this map
into it (``FLOWS.update(PRESTASHOP_FLOWS)``). Until then the ``module:ATTRIBUTE`` references work as
``--flows`` values directly. Importing a flow module also registers its ``psinfor rules preview``.
"""

from __future__ import annotations

import importlib

PRESTASHOP_FLOWS: dict[str, str] = {
    "prestashop_orders": "processors.prestashop_orders:FLOW",
    "prestashop_payments": "processors.prestashop_payments:FLOW",
    "prestashop_customers": "processors.prestashop_customers:FLOW",
    "prestashop_products": "processors.prestashop_products:FLOW",
}
"""Flow name → ``module:ATTRIBUTE`` of its :class:`~processors.runner.Flow`."""


def register_previews() -> list[str]:
    """Import every PrestaShop flow module (registering its preview); returns the flow names."""
    for reference in PRESTASHOP_FLOWS.values():
        importlib.import_module(reference.partition(":")[0])
    return sorted(PRESTASHOP_FLOWS)
