"""Variant resolution from the product flows' table, enrichment by shop/country/group, warehouse mapping."""

from __future__ import annotations

import pytest

from pipeline.errors import InvalidMessage
from rules.engine import Rules, load_rules
from rules.enrichment import Enrichment
from rules.variants import VariantKey, VariantTable

RULES = load_rules()


def _table() -> VariantTable:
    table = VariantTable()
    table.put(VariantKey("1", 7, 31), "TSH-ORG-M-BLU", "TSHORGMBLU")
    table.put(VariantKey("1", 12, 0), "MUG-CER-350")
    return table


def test_a_variant_resolves_to_its_sku_and_item_number_from_the_table() -> None:
    resolved = RULES.variants.resolve(_table(), VariantKey("1", 7, 31))
    assert (resolved.sku, resolved.item_number, resolved.source) == ("TSH-ORG-M-BLU", "TSHORGMBLU", "table")


def test_without_a_table_item_number_the_sku_becomes_one() -> None:
    resolved = RULES.variants.resolve(_table(), VariantKey("1", 12, 0))
    assert (resolved.sku, resolved.item_number) == ("MUG-CER-350", "MUG-CER-350")


def test_the_order_rows_reference_is_the_fallback() -> None:
    resolved = RULES.variants.resolve(_table(), VariantKey("1", 99, 5), order_reference=" bag-tote ")
    assert (resolved.sku, resolved.item_number, resolved.source) == (
        "bag-tote",
        "BAG-TOTE",
        "order_reference",
    )


def test_the_same_ids_in_another_shop_are_another_variant() -> None:
    with pytest.raises(InvalidMessage) as caught:
        RULES.variants.resolve(_table(), VariantKey("2", 7, 31), field_path="lines[0]")
    assert (caught.value.reason, caught.value.field_path) == ("unknown_variant", "lines[0]")
    assert caught.value.details == {"id_product": "7", "id_product_attribute": "31"}


def test_an_item_number_that_cannot_exist_is_unknown_sku_with_suggestions() -> None:
    table = _table()
    table.put(VariantKey("1", 8, 0), "TSH-ORG-M-BLUE-LONGSLEEVE")
    with pytest.raises(InvalidMessage) as caught:
        RULES.variants.resolve(table, VariantKey("1", 8, 0))
    assert caught.value.reason == "unknown_sku"
    assert "longer than 15" in caught.value.message
    assert "TSH-ORG-M-BLU" in caught.value.details["suggestions"]


def test_table_only_rules_need_the_erp_item_number() -> None:
    base = RULES.model
    variants = base.variants.model_copy(
        update={"item_number": base.variants.item_number.model_copy(update={"source": "table_only"})}
    )
    strict = Rules(base.model_copy(update={"variants": variants}))
    with pytest.raises(InvalidMessage) as caught:
        strict.variants.resolve(_table(), VariantKey("1", 12, 0))
    assert caught.value.reason == "unknown_sku"
    table = _table()
    table.put_item_number("MUG-CER-350", "MUG350")
    assert strict.variants.resolve(table, VariantKey("1", 12, 0)).item_number == "MUG350"


def test_a_later_product_record_replaces_the_earlier_one_and_empty_skus_are_refused() -> None:
    table = _table()
    table.put(VariantKey("1", 7, 31), "TSH-ORG-M-NAVY")
    assert table.sku(VariantKey("1", 7, 31)) == "TSH-ORG-M-NAVY"
    assert len(table) == 2
    with pytest.raises(ValueError, match="empty SKU"):
        table.put(VariantKey("1", 1, 1), "  ")


@pytest.mark.parametrize(
    ("shop", "country", "group", "expected"),
    [
        # The canonical examples' enrichment (schemas/examples/Order/*.json).
        ("2", "US", "Customer", Enrichment("CC-WEB-US", "US-LAUNCH-2024", "WEX", "NJ1")),
        ("1", "FR", "Customer", Enrichment("CC-WEB-FR", None, "WEB", "LYO")),
        # First matching rule per field: B2B sets cost centre and type, the default fills the warehouse.
        ("1", "DE", "Wholesale", Enrichment("CC-B2B", None, "B2B", "LYO")),
        ("1", "DE", None, Enrichment("CC-WEB", None, "WEB", "LYO")),
    ],
)
def test_enrichment_takes_each_field_from_the_first_matching_rule(
    shop: str, country: str, group: str | None, expected: Enrichment
) -> None:
    assert RULES.enrichment.enrich(shop_id=shop, country_code=country, customer_group=group) == expected


def test_warehouse_mapping_both_ways() -> None:
    enriched = RULES.enrichment.enrich(
        shop_id="1", country_code="FR", customer_group=None, prestashop_warehouse=2
    )
    assert enriched.warehouse == "NJ1"
    assert RULES.enrichment.warehouse_for_prestashop(0) is None
    assert RULES.enrichment.warehouse_for_prestashop(77) is None
    assert RULES.enrichment.shops_for_warehouse("LYO") == ["1"]
    assert RULES.enrichment.shops_for_warehouse("ZZZ") == []
