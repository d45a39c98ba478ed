"""PrestaShop product bundles → canonical Products: one per SKU, field by field, variants fed."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from pipeline.errors import InvalidMessage
from pipeline.records import Headers, SourceRecord
from processors import prestashop_products as flow
from processors.prestashop_source import SKIP_VERSION, Skipped, event_id
from processors.runner import FlowContext
from rules.engine import Rules, load_rules
from rules.preview import preview
from rules.variants import VariantKey, VariantTable
from tests.unit.test_processors_prestashop_orders import assert_valid, config, fixture_records

HEADERS: Headers = (
    ("source", b"prestashop-poll"),
    ("event_type", b"product.bundle"),
    ("shop_id", b"2"),
)
INGESTED = datetime(2024, 3, 1, 10, 0, 0, 500000, tzinfo=UTC)
LANGUAGES = [{"id": 1, "iso_code": "fr"}, {"id": 2, "iso_code": "EN"}]
EUR = {"id": 1, "iso_code": "EUR", "conversion_rate": "1.000000"}


@pytest.fixture(scope="module")
def rules() -> Rules:
    return load_rules()


def combination(id_: int, size: str, option: int, **changes: str) -> dict[str, Any]:
    base = {
        "id": id_,
        "id_product": "7",
        "reference": f"TSH-ORG-{size}-BLU",
        "ean13": f"376012345{id_:04d}",
        "upc": "",
        "isbn": "",
        "mpn": "",
        "price": "0.000000",
        "weight": "0.000000",
        "default_on": "1" if size == "S" else None,
        "associations": {"product_option_values": [{"id": str(option)}, {"id": "14"}]},
    }
    return base | changes


def tshirt_bundle() -> dict[str, Any]:
    """An organic T-shirt in three sizes (XL costs 2 € more and weighs 20 g more), weights in grams."""
    return {
        "product": {
            "id": 7,
            "reference": "TSH-ORG",
            "ean13": "3760123450000",
            "mpn": "ORG-TEE-01",
            "price": "20.000000",
            "weight": "180.000000",
            "active": "1",
            "date_add": "2024-02-01 09:00:00",
            "date_upd": "2024-03-01 10:59:59",
            "name": [{"id": "1", "value": "T-shirt bio "}, {"id": "2", "value": "Organic T-shirt"}],
            "associations": {"combinations": [{"id": "31"}, {"id": "30"}, {"id": "32"}]},
        },
        # Out of id order on purpose: records come out in combination id order.
        "combinations": [
            combination(31, "M", 2),
            combination(30, "S", 1),
            combination(32, "XL", 4, price="2.000000", weight="20.000000", mpn="ORG-TEE-01-XL"),
        ],
        "languages": LANGUAGES,
        "currencies": [EUR],
        "configuration": config(PS_TIMEZONE="Europe/Paris", PS_CURRENCY_DEFAULT="1", PS_WEIGHT_UNIT="g"),
    }


def event_of(data: dict[str, Any], headers: Headers = HEADERS) -> flow.ProductInput:
    return flow.decode(json.dumps(data).encode(), headers)


def to_products(
    data: dict[str, Any], rules: Rules, variants: VariantTable | None = None
) -> list[dict[str, Any]]:
    event = event_of(data)
    assert isinstance(event, flow.ProductEvent)
    return flow.to_products(event, rules, ingested_at=INGESTED, correlation_id="corr-3", variants=variants)


def test_each_combination_becomes_one_product_record_field_by_field(rules: Rules) -> None:
    records = to_products(tshirt_bundle(), rules)
    for record in records:
        assert_valid(record, "Product")
    assert [r["sku"] for r in records] == ["TSH-ORG-S-BLU", "TSH-ORG-M-BLU", "TSH-ORG-XL-BLU"]
    small, _medium, xl = records
    # 10:59:59 in Paris (CET, UTC+1) is 09:59:59 UTC.
    updated = datetime(2024, 3, 1, 9, 59, 59, tzinfo=UTC)
    version = int(updated.timestamp() * 1000)
    assert small["meta"] == {
        "event_id": event_id("combinations", "2", "30", version),
        "source_system": "PRESTASHOP",
        "source_entity": "combinations",
        "source_id": "30",
        "version": version,
        "occurred_at": updated,
        "ingested_at": INGESTED,
        "correlation_id": "corr-3",
        "causation_id": None,
        "shop_id": "2",
    }
    assert len({r["meta"]["event_id"] for r in records}) == 3
    assert small == small | {
        "product_id": "7",
        "variant_id": "30",
        "names": {"fr": "T-shirt bio", "en": "Organic T-shirt"},
        "gtin": "3760123450030",
        "mpn": "ORG-TEE-01",
        "price": {"amount": Decimal("20.000000"), "currency": "EUR"},
        "weight_kg": Decimal("0.1800"),
        "active": True,
        "attributes": [{"name": "option_value", "value": "1"}, {"name": "option_value", "value": "14"}],
        "erp_item_number": "TSH-ORG-S-BLU",
        "unit_of_measure": None,
        "item_group": None,
        "external_ids": {"prestashop": "7", "prestashop_combination": "30"},
    }
    # The XL's price and weight impacts add to the product's; its own MPN wins.
    assert xl["price"] == {"amount": Decimal("22.000000"), "currency": "EUR"}
    assert xl["weight_kg"] == Decimal("0.2000")
    assert xl["mpn"] == "ORG-TEE-01-XL"
    assert [flow.record_key(r) for r in records] == [r["sku"] for r in records]


def test_the_reference_fixture_product_and_combination_map(rules: Rules) -> None:
    fixture = fixture_records()
    data = {
        "product": fixture["products"],
        "combinations": [fixture["combinations"]],
        "languages": [{"id": 1, "iso_code": "en"}],
        "currencies": [fixture["currencies"]],
        "configuration": config(
            PS_TIMEZONE="America/New_York", PS_CURRENCY_DEFAULT=str(fixture["currencies"]["id"])
        ),
    }
    (record,) = to_products(data, rules)
    assert_valid(record, "Product")
    assert record["sku"] == "demo_1"
    assert (record["product_id"], record["variant_id"]) == ("1", "1")
    assert record["price"]["amount"] == Decimal("23.900000")
    assert record["weight_kg"] == Decimal("0.3000")  # kg by default
    assert record["gtin"] is None  # the combination has no barcode of its own
    assert record["attributes"] == [
        {"name": "option_value", "value": "1"},
        {"name": "option_value", "value": "8"},
    ]
    assert record["active"] is True


def test_a_product_without_combinations_is_one_record(rules: Rules) -> None:
    data = tshirt_bundle()
    data["combinations"] = []
    data["product"]["weight"] = "0.000000"
    (record,) = to_products(data, rules)
    assert_valid(record, "Product")
    assert record["sku"] == "TSH-ORG"
    assert record["variant_id"] is None
    assert record["gtin"] == "3760123450000"
    assert record["weight_kg"] is None  # zero means "not set" in PrestaShop
    assert record["attributes"] == []
    assert record["meta"]["source_entity"] == "products"
    assert record["meta"]["source_id"] == "7"
    assert record["external_ids"] == {"prestashop": "7"}


def test_a_combination_without_reference_falls_back_to_the_products_unless_that_duplicates(
    rules: Rules,
) -> None:
    data = tshirt_bundle()
    data["combinations"] = [combination(30, "S", 1, reference="")]
    (record,) = to_products(data, rules)
    assert record["sku"] == "TSH-ORG"  # what PrestaShop writes on the order row
    data = tshirt_bundle()
    data["combinations"][0]["reference"] = ""
    data["combinations"][1]["reference"] = " "
    with pytest.raises(InvalidMessage) as caught:
        to_products(data, rules)
    assert (caught.value.reason, caught.value.field_path) == (
        "duplicate_sku",
        "combinations[id=31].reference",
    )


def test_variants_are_fed_and_known_item_numbers_kept(rules: Rules) -> None:
    table = VariantTable()
    table.put_item_number("TSH-ORG-M-BLU", "ITM000123")
    records = to_products(tshirt_bundle(), rules, variants=table)
    assert records[1]["erp_item_number"] == "ITM000123"
    fed = VariantTable()
    for record in records:
        flow.feed_variants(fed, record)
    assert fed.sku(VariantKey("2", 7, 32)) == "TSH-ORG-XL-BLU"
    assert fed.item_number("TSH-ORG-M-BLU") == "ITM000123"
    assert len(fed) == 3
    # The orders flow resolves a line through the fed table, not the order row's reference.
    resolved = rules.variants.resolve(fed, VariantKey("2", 7, 31), order_reference="stale-ref")
    assert (resolved.sku, resolved.source) == ("TSH-ORG-M-BLU", "table")


def test_a_sku_too_long_for_the_erp_keeps_a_null_item_number(rules: Rules) -> None:
    data = tshirt_bundle()
    data["combinations"] = [combination(30, "S", 1, reference="TSHIRT-ORGANIC-COTTON-S-BLUE-2024")]
    (record,) = to_products(data, rules)
    assert_valid(record, "Product")
    assert record["sku"] == "TSHIRT-ORGANIC-COTTON-S-BLUE-2024"
    assert record["erp_item_number"] is None


def test_version_and_event_ids_are_deterministic(rules: Rules) -> None:
    event = event_of(tshirt_bundle())
    first = to_products(tshirt_bundle(), rules)
    assert flow.version(event) == first[0]["meta"]["version"]
    assert flow.key(event) == "2:7"
    assert [r["meta"]["event_id"] for r in to_products(tshirt_bundle(), rules)] == [
        r["meta"]["event_id"] for r in first
    ]


@pytest.mark.parametrize(
    ("change", "reason", "field_path"),
    [
        (
            lambda d: d["product"].update(reference="", associations={}) or d.update(combinations=[]),
            "missing_field",
            "product.reference",
        ),
        (
            lambda d: d["combinations"][0].update(id_product="8"),
            "invalid_format",
            "combinations[id=31].id_product",
        ),
        (lambda d: d.update(currencies=[]), "missing_field", "currencies"),
        (
            lambda d: d.update(configuration=config(PS_TIMEZONE="Europe/Paris")),
            "missing_field",
            "configuration",
        ),
        (
            lambda d: (
                d["configuration"].append({"id": 9, "name": "PS_WEIGHT_UNIT", "value": "stone"})
                or d.update(
                    configuration=config(
                        PS_TIMEZONE="Europe/Paris", PS_CURRENCY_DEFAULT="1", PS_WEIGHT_UNIT="stone"
                    )
                )
            ),
            "invalid_format",
            "configuration",
        ),
        (lambda d: d.update(languages=[LANGUAGES[0]]), "missing_field", "languages[id=2]"),
        (lambda d: d["product"].update(date_upd="0000-00-00 00:00:00"), "missing_field", "product.date_upd"),
    ],
)
def test_unmappable_bundles_are_invalid_with_the_field_path(
    rules: Rules, change: Any, reason: str, field_path: str
) -> None:
    data = copy.deepcopy(tshirt_bundle())
    change(data)
    with pytest.raises(InvalidMessage) as caught:
        to_products(data, rules)
    assert (caught.value.reason, caught.value.field_path) == (reason, field_path)


def test_wrong_types_and_other_records() -> None:
    data = tshirt_bundle()
    data["product"]["price"] = "twenty"
    with pytest.raises(InvalidMessage) as caught:
        event_of(data)
    assert (caught.value.reason, caught.value.field_path) == ("wrong_type", "product.price")
    for headers in (((("source", b"prestashop-webhook"), ("event_type", b"product.updated"))), ()):
        event = flow.decode(b"{}", headers)
        assert isinstance(event, Skipped)
        assert flow.version(event) == SKIP_VERSION


def test_the_runner_entry_point_emits_every_sku_with_the_context_rules(rules: Rules) -> None:
    raw = json.dumps(tshirt_bundle()).encode()
    record = SourceRecord(
        topic="raw.prestashop.products",
        partition=0,
        offset=1,
        key=b"2:products:7",
        value=raw,
        headers=(*HEADERS, ("received_at", b"2024-03-01T10:00:00.500Z")),
        timestamp_ms=None,
    )
    context = FlowContext(record=record, correlation_id="corr-4", source_event_id="x", rules=rules)
    datums = flow.to_record(flow.decode(raw, HEADERS), context)
    assert datums is not None
    assert [d["sku"] for d in datums] == ["TSH-ORG-S-BLU", "TSH-ORG-M-BLU", "TSH-ORG-XL-BLU"]
    assert {d["meta"]["ingested_at"] for d in datums} == {INGESTED}
    assert flow.to_record(Skipped("x"), context) is None
    assert flow.FLOW.record_key is flow.record_key


def test_the_preview_lists_every_sku(rules: Rules) -> None:
    result = preview(json.dumps(tshirt_bundle()).encode(), rules, "prestashop_products")
    assert [p["sku"] for p in result["products"]] == ["TSH-ORG-S-BLU", "TSH-ORG-M-BLU", "TSH-ORG-XL-BLU"]
