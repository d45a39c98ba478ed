"""Enrichment (cost centre, project, ERP order type, warehouse) and warehouse mapping.

Enrichment rules are read top-down and each field takes its value from the first matching rule that
sets it, so a specific rule can set only the project and let a later, broader rule supply the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

from rules import model


@dataclass(frozen=True)
class Enrichment:
    """Attributes added to an order; fields mirror the canonical ``Enrichment`` record."""

    cost_centre: str | None = None
    project: str | None = None
    order_type: str | None = None
    warehouse: str | None = None


class EnrichmentRules:
    """The enrichment and warehouse sections as operations (build through :class:`rules.engine.Rules`)."""

    def __init__(self, rules: list[model.EnrichmentRule], warehouses: model.WarehouseRules) -> None:
        self._rules = rules
        self._warehouses = warehouses

    def enrich(
        self,
        *,
        shop_id: str,
        country_code: str | None,
        customer_group: str | None,
        prestashop_warehouse: int | None = None,
    ) -> Enrichment:
        """The enrichment of an order from its shop, delivery country and customer group.

        A PrestaShop warehouse the mapping knows (advanced stock management) overrides the rules'
        warehouse: the shop already decided where the goods are.
        """
        values: dict[str, str | None] = {
            "cost_centre": None,
            "project": None,
            "order_type": None,
            "warehouse": None,
        }
        for rule in self._rules:
            if not _matches(rule.match, shop_id, country_code, customer_group):
                continue
            for name in values:
                if values[name] is None:
                    values[name] = getattr(rule.set, name)
        mapped = self.warehouse_for_prestashop(prestashop_warehouse)
        if mapped is not None:
            values["warehouse"] = mapped
        return Enrichment(**values)

    def warehouse_for_prestashop(self, id_warehouse: int | None) -> str | None:
        """The ERP warehouse of a PrestaShop ``id_warehouse``; None for 0/None or an unmapped id."""
        if not id_warehouse:
            return None
        return self._warehouses.by_prestashop_warehouse.get(id_warehouse)

    def shops_for_warehouse(self, warehouse: str) -> list[str]:
        """The shops whose stock an ERP warehouse feeds (empty: the warehouse does not feed any shop)."""
        return list(self._warehouses.to_prestashop_shops.get(warehouse.strip(), []))


def _matches(match: model.EnrichmentMatch, shop_id: str, country: str | None, group: str | None) -> bool:
    return (
        (match.shop is None or shop_id in match.shop)
        and (match.country is None or (country is not None and country in match.country))
        and (match.customer_group is None or (group is not None and group in match.customer_group))
    )
