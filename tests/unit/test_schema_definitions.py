"""The canonical .avsc files: one named type per file, documented, evolvable, composable."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastavro import parse_schema

from schemas.loader import AVRO_DIR, SchemaDefinitionError, compose, named_types, schema_string

TOP_LEVEL = [
    "Order",
    "OrderStatusChange",
    "Customer",
    "Product",
    "InventoryLevel",
    "Shipment",
    "Invoice",
    "Payment",
]


def _walk(node: Any) -> list[dict[str, Any]]:
    """Every dict node of a schema JSON tree."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        found.append(node)
        for value in node.values():
            found.extend(_walk(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_walk(item))
    return found


@pytest.mark.parametrize("record", TOP_LEVEL)
def test_composed_schema_parses_with_fastavro_and_defines_each_name_once(record: str) -> None:
    composed = compose(record)
    parse_schema(composed)  # raises on a reference before its definition or a duplicate definition
    definitions = [n["name"] for n in _walk(composed) if n.get("type") in ("record", "enum")]
    assert len(definitions) == len(set(definitions)), definitions
    assert composed["name"] == record
    assert json.loads(schema_string(record)) == composed


@pytest.mark.parametrize("record", TOP_LEVEL)
def test_every_top_level_record_carries_meta_and_external_ids(record: str) -> None:
    fields = {f["name"]: f for f in compose(record)["fields"]}
    assert fields["meta"]["type"]["name"] == "Meta"
    assert fields["external_ids"]["type"] == {"type": "map", "values": "string"}
    assert fields["external_ids"]["default"] == {}


def test_one_named_type_per_file_with_doc_on_every_field() -> None:
    files = sorted(AVRO_DIR.glob("*.avsc"))
    assert len(files) == len(named_types())
    for path in files:
        definition = json.loads(path.read_text(encoding="utf-8"))
        assert definition["name"] == path.stem
        assert definition.get("doc"), path.name
        for field in definition.get("fields", []):
            assert field.get("doc"), f"{path.name}: field {field['name']} has no doc"


def test_every_enum_has_a_default_symbol_it_lists() -> None:
    enums = [d for d in named_types().values() if d["type"] == "enum"]
    assert {e["name"] for e in enums} >= {"PaymentStatus", "FulfillmentStatus", "Lifecycle"}
    for enum in enums:
        assert enum["default"] in enum["symbols"], enum["name"]


def test_order_status_dimensions_follow_the_canonical_model() -> None:
    types = {d["name"]: d for d in named_types().values()}
    assert types["PaymentStatus"]["symbols"][1:] == [
        "PENDING",
        "AUTHORIZED",
        "PARTIALLY_PAID",
        "PAID",
        "PARTIALLY_REFUNDED",
        "REFUNDED",
        "FAILED",
    ]
    assert types["FulfillmentStatus"]["symbols"][1:] == [
        "UNFULFILLED",
        "BACKORDERED",
        "ALLOCATED",
        "PICKING",
        "PARTIALLY_SHIPPED",
        "SHIPPED",
        "DELIVERED",
        "RETURNED",
    ]
    assert types["Lifecycle"]["symbols"][1:] == ["OPEN", "ON_HOLD", "CLOSED", "CANCELLED"]


def test_money_quantities_and_timestamps_use_the_agreed_logical_types() -> None:
    nodes = [n for record in TOP_LEVEL for n in _walk(compose(record))]
    money = next(n for n in nodes if n.get("name") == "Money" and n.get("type") == "record")
    amount = money["fields"][0]["type"]
    assert amount == {"type": "bytes", "logicalType": "decimal", "precision": 20, "scale": 6}
    quantity = next(f for f in compose("InventoryLevel")["fields"] if f["name"] == "on_hand")["type"]
    assert quantity == {"type": "bytes", "logicalType": "decimal", "precision": 18, "scale": 4}
    timestamps = [n for n in nodes if n.get("logicalType", "").startswith("timestamp")]
    assert timestamps
    assert {n["logicalType"] for n in timestamps} == {"timestamp-millis"}
    assert all(n["type"] == "long" for n in timestamps)


def test_nullable_fields_put_null_first_and_default_to_null() -> None:
    for record in TOP_LEVEL:
        for node in _walk(compose(record)):
            if isinstance(node.get("type"), list) and "null" in node["type"] and "name" in node:
                assert node["type"][0] == "null", (record, node["name"])
                assert node.get("default", "missing") is None, (record, node["name"])


def test_unknown_record_is_a_clear_error() -> None:
    with pytest.raises(SchemaDefinitionError, match="NoSuchRecord"):
        compose("NoSuchRecord")
