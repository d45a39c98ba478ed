"""AvroCodec maps every serializer/deserializer failure to InvalidMessage (no network).

The registry here is confluent-kafka's in-memory one (``mock://`` URL); the same behaviour against the
real registry is covered by tests/integration/test_schema_registry.py.
"""

from __future__ import annotations

import copy
import decimal
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from pipeline.errors import InvalidMessage
from schemas.codec import AvroCodec, SchemaNotRegisteredError, find_violation
from schemas.examples import load_examples
from schemas.loader import compose, schema_string

TOPIC = "canonical.order.v1"


@pytest.fixture
def registry() -> SchemaRegistryClient:
    client: SchemaRegistryClient = SchemaRegistryClient.new_client({"url": "mock://codec-unit"})
    client.register_schema(f"{TOPIC}-value", Schema(schema_string("Order"), "AVRO"))
    return client


@pytest.fixture
def order() -> dict[str, Any]:
    return load_examples("Order")[0].datum()


def test_round_trip_keeps_decimals_exact(registry: SchemaRegistryClient, order: dict[str, Any]) -> None:
    codec = AvroCodec(registry, "Order")
    data = codec.encode(order, TOPIC)
    assert data[0] == 0
    decoded = codec.decode(data, TOPIC)
    assert decoded == order
    assert str(decoded["totals"]["grand_total"]["amount"]) == "65.880000"


def test_subjects_follow_the_topic_without_asking_the_registry_for_associations(
    registry: SchemaRegistryClient, order: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Compatible registries (Apicurio) do not serve the associations endpoint: a call per record would
    # cost a round trip, and under load it hung.
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the codec must not look up topic associations")

    monkeypatch.setattr(registry, "get_associations_by_resource_name", refuse)
    codec = AvroCodec(registry, "Order")
    assert codec.decode(codec.encode(order, TOPIC), TOPIC) == order


def test_float_where_a_decimal_belongs_is_a_schema_violation_with_path(
    registry: SchemaRegistryClient, order: dict[str, Any]
) -> None:
    bad = copy.deepcopy(order)
    bad["lines"][1]["unit_price_excl_tax"]["amount"] = 9.9
    with pytest.raises(InvalidMessage) as caught:
        AvroCodec(registry, "Order").encode(bad, TOPIC)
    assert caught.value.reason == "schema_violation"
    assert caught.value.field_path == "lines[1].unit_price_excl_tax.amount"
    assert "decimal(20,6)" in caught.value.message
    assert isinstance(caught.value.__cause__, Exception)


def test_missing_required_field_is_a_schema_violation(
    registry: SchemaRegistryClient, order: dict[str, Any]
) -> None:
    bad = copy.deepcopy(order)
    del bad["customer"]["email"]
    with pytest.raises(InvalidMessage) as caught:
        AvroCodec(registry, "Order").encode(bad, TOPIC)
    assert (caught.value.reason, caught.value.field_path) == ("schema_violation", "customer.email")


def test_unknown_field_is_a_schema_violation(registry: SchemaRegistryClient, order: dict[str, Any]) -> None:
    bad = copy.deepcopy(order) | {"loyalty_points": 12}
    with pytest.raises(InvalidMessage) as caught:
        AvroCodec(registry, "Order").encode(bad, TOPIC)
    assert (caught.value.reason, caught.value.field_path) == ("schema_violation", "loyalty_points")


def test_too_many_decimal_places_is_a_schema_violation(
    registry: SchemaRegistryClient, order: dict[str, Any]
) -> None:
    bad = copy.deepcopy(order)
    bad["lines"][0]["quantity"] = decimal.Decimal("1.00001")
    with pytest.raises(InvalidMessage) as caught:
        AvroCodec(registry, "Order").encode(bad, TOPIC)
    assert caught.value.field_path == "lines[0].quantity"
    assert "more than 4 decimal places" in caught.value.message


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00\x00\x00", b"garbage bytes that are no avro", b"\x01\x00\x00\x00\x01\x02\x03"],
    ids=["empty", "short", "no-magic-byte", "wrong-magic-byte"],
)
def test_garbage_bytes_are_undecodable(registry: SchemaRegistryClient, data: bytes) -> None:
    with pytest.raises(InvalidMessage) as caught:
        AvroCodec(registry, "Order").decode(data, TOPIC)
    assert caught.value.reason == "undecodable"


def test_truncated_body_is_undecodable(registry: SchemaRegistryClient, order: dict[str, Any]) -> None:
    codec = AvroCodec(registry, "Order")
    data = codec.encode(order, TOPIC)
    with pytest.raises(InvalidMessage) as caught:
        codec.decode(data[: len(data) // 2], TOPIC)
    assert caught.value.reason == "undecodable"


def test_unknown_schema_id_is_undecodable(registry: SchemaRegistryClient, order: dict[str, Any]) -> None:
    codec = AvroCodec(registry, "Order")
    data = codec.encode(order, TOPIC)
    forged = b"\x00" + (987654).to_bytes(4, "big") + data[5:]
    with pytest.raises(InvalidMessage) as caught:
        codec.decode(forged, TOPIC)
    assert caught.value.reason == "undecodable"


def test_unregistered_schema_is_a_deployment_error_not_a_message_error(order: dict[str, Any]) -> None:
    empty: SchemaRegistryClient = SchemaRegistryClient.new_client({"url": "mock://codec-unit-empty"})
    with pytest.raises(SchemaNotRegisteredError, match="psinfor schemas register"):
        AvroCodec(empty, "Order").encode(order, "canonical.nothing-registered.v1")


def test_find_violation_accepts_a_valid_datum(order: dict[str, Any]) -> None:
    assert find_violation(compose("Order"), order) is None


def test_find_violation_explains_a_union_branch(order: dict[str, Any]) -> None:
    bad = copy.deepcopy(order)
    bad["carrier"] = {"code": 7, "reference_id": None, "name": "X"}
    assert find_violation(compose("Order"), bad) == ("carrier.code", "expected string, got int")


def test_the_first_field_a_foreign_writer_schema_cannot_resolve_is_named() -> None:
    from schemas.codec import first_unresolvable_field

    decimal = {"type": "bytes", "logicalType": "decimal", "precision": 18, "scale": 4}
    reader = {
        "type": "record",
        "name": "Level",
        "fields": [
            {"name": "sku", "type": "string"},
            {"name": "count", "type": "long"},
            {"name": "on_hand", "type": decimal},
            {"name": "note", "type": "string", "default": ""},
        ],
    }

    def writer(**types: object) -> dict[str, object]:
        fields = {"sku": "string", "count": "int", "on_hand": decimal, **types}
        listed = [{"name": name, "type": kind} for name, kind in fields.items()]
        return {"type": "record", "name": "Level", "fields": listed}

    assert first_unresolvable_field(writer(), reader) is None  # int → long is a promotion
    assert first_unresolvable_field(writer(on_hand="string"), reader) is None  # string → bytes resolves
    assert first_unresolvable_field(writer(on_hand="double"), reader) == (
        "on_hand",
        "the writer has double where decimal(18,4) belongs",
    )
    assert first_unresolvable_field(writer(count="string"), reader) == (
        "count",
        "the writer has string where long belongs",
    )
