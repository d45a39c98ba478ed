"""Variant resolution: PrestaShop (id_product, id_product_attribute) → SKU → ERP item number.

The table is data the product flows build, not configuration: every ``canonical.product.v1`` record
names a shop's product/variant ids, its SKU and (once the ERP knows it) the item number. How to feed it:

* a consumer of ``canonical.product.v1`` (compacted by SKU) calls :meth:`VariantTable.put` for each
  record, from the beginning of the topic at start-up and then as records arrive; or
* a processor that has just read the product/combination from the shop calls :meth:`VariantTable.put`
  before resolving the order lines that need it.

The table is in memory and per process; rebuilding it from the compacted topic is the recovery path.
Resolution is pure given the table's contents: the same ids and table give the same answer.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from pipeline.errors import InvalidMessage
from rules import model


@dataclass(frozen=True)
class VariantKey:
    """A sellable unit in one shop: the product and its combination (0 for a product without)."""

    shop_id: str
    id_product: int
    id_product_attribute: int = 0


@dataclass(frozen=True)
class ResolvedVariant:
    """The SKU of a variant and its ERP item number; ``source`` says how it was found."""

    sku: str
    item_number: str
    source: str
    """``table`` (the product flows' table) or ``order_reference`` (the reference on the order row)."""


class VariantTable:
    """In-memory (id_product, id_product_attribute) → SKU and SKU → ERP item number tables."""

    def __init__(self) -> None:
        self._sku: dict[VariantKey, str] = {}
        self._item: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._sku)

    def put(self, key: VariantKey, sku: str, item_number: str | None = None) -> None:
        """Record that ``key`` sells ``sku`` (and, when known, that the ERP calls it ``item_number``).

        Later calls win (a product record replayed from the topic replaces what an older one said).
        Raises ValueError for an empty SKU, which would make every unresolved line look resolved.
        """
        sku = sku.strip()
        if not sku:
            raise ValueError(f"empty SKU for {key}")
        self._sku[key] = sku
        if item_number is not None and item_number.strip():
            self._item[sku] = item_number.strip()

    def put_item_number(self, sku: str, item_number: str) -> None:
        """Record the ERP item number of ``sku`` (from an ERP item master event)."""
        self._item[sku.strip()] = item_number.strip()

    def sku(self, key: VariantKey) -> str | None:
        """The SKU recorded for ``key``, or None."""
        return self._sku.get(key)

    def item_number(self, sku: str) -> str | None:
        """The ERP item number recorded for ``sku``, or None."""
        return self._item.get(sku)

    def skus(self) -> list[str]:
        """Every SKU known (for near-match suggestions)."""
        return sorted(set(self._sku.values()) | set(self._item))


class VariantRules:
    """Variant resolution rules over a :class:`VariantTable` (build through :class:`rules.engine.Rules`)."""

    def __init__(self, rules: model.VariantRules) -> None:
        self._rules = rules

    def resolve(
        self,
        table: VariantTable,
        key: VariantKey,
        *,
        order_reference: str = "",
        field_path: str = "lines",
    ) -> ResolvedVariant:
        """The SKU and ERP item number of ``key``.

        The table first; else, when the rules allow, the reference the order row carries. Raises
        InvalidMessage ``unknown_variant`` when neither gives a SKU, and ``unknown_sku`` when the rules
        need the table's item number (``table_only``) or the derived one does not fit; both carry
        near-match suggestions in ``details``.
        """
        sku = table.sku(key)
        source = "table"
        if sku is None and self._rules.use_order_reference and order_reference.strip():
            sku, source = order_reference.strip(), "order_reference"
        if sku is None:
            raise InvalidMessage(
                "unknown_variant",
                f"no SKU for product {key.id_product} combination {key.id_product_attribute} "
                f"in shop {key.shop_id}, and the order row has no reference",
                field_path=field_path,
                details={
                    "id_product": str(key.id_product),
                    "id_product_attribute": str(key.id_product_attribute),
                },
            )
        return ResolvedVariant(
            sku=sku, item_number=self.item_number(table, sku, field_path=field_path), source=source
        )

    def item_number(self, table: VariantTable, sku: str, *, field_path: str = "sku") -> str:
        """The ERP item number of ``sku``: the table's, else derived from the SKU by the rules.

        Raises InvalidMessage ``unknown_sku`` (with near matches) when none can be given.
        """
        known = table.item_number(sku)
        if known is not None:
            return known
        rule = self._rules.item_number
        if rule.source == "table_only":
            raise self._unknown(table, sku, "the ERP item number is not in the product table", field_path)
        derived = rule.prefix + (sku.upper() if rule.case is model.TextCase.UPPER else sku)
        if len(derived) > rule.max_length:
            raise self._unknown(
                table, sku, f"item number {derived!r} is longer than {rule.max_length} characters", field_path
            )
        return derived

    @staticmethod
    def near_matches(table: VariantTable, sku: str, limit: int = 3) -> list[str]:
        """Known SKUs that look like ``sku`` (for the DLQ's suggestions)."""
        return difflib.get_close_matches(sku, table.skus(), n=limit, cutoff=0.6)

    def _unknown(self, table: VariantTable, sku: str, why: str, field_path: str) -> InvalidMessage:
        suggestions = self.near_matches(table, sku)
        return InvalidMessage(
            "unknown_sku",
            f"SKU {sku!r}: {why}",
            field_path=field_path,
            details={"sku": sku, "suggestions": ",".join(suggestions)},
        )
