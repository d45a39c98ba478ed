"""The fast AvroCodec writes exactly confluent-kafka's AvroSerializer bytes and reads them back (no network).

Wire compatibility is the contract with every consumer of the canonical topics: the codec frames and
writes the record itself, so each example is encoded both ways and the bytes compared. The registry is
confluent-kafka's in-memory one (``mock://``); tests/integration/test_schema_registry.py covers the real
registry.
"""

from __future__ import annotations

import copy
import datetime as dt
import decimal
import io
import json
import socket
import struct
import uuid
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, topic_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from fastavro import parse_schema, schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import InvalidMessage, RetryableError
from schemas.codec import AvroCodec
from schemas.examples import Example, load_examples
from schemas.loader import compose, schema_string

EXAMPLES = load_examples()


def _registry(record: str, topic: str) -> SchemaRegistryClient:
    client: SchemaRegistryClient = SchemaRegistryClient.new_client(
        {"url": f"mock://wire-{uuid.uuid4().hex[:8]}"}
    )
    client.register_schema(f"{topic}-value", Schema(schema_string(record), "AVRO"))
    return client


def _confluent_serializer(client: SchemaRegistryClient, record: str) -> AvroSerializer:
    # The configuration the codec used before it did its own framing.
    serializer: AvroSerializer = AvroSerializer(
        client,
        schema_string(record),
        conf={
            "auto.register.schemas": False,
            "validate.strict.allow.default": True,
            "subject.name.strategy": topic_subject_name_strategy,
        },
    )
    return serializer


@pytest.mark.timeout(20)
@pytest.mark.parametrize("example", EXAMPLES, ids=[f"{e.record}/{e.name}" for e in EXAMPLES])
def test_every_example_encodes_to_confluents_bytes_and_back(example: Example) -> None:
    topic = f"canonical.{example.record.lower()}.v1"
    client = _registry(example.record, topic)
    datum = example.datum()
    codec = AvroCodec(client, example.record)
    ctx = SerializationContext(topic, MessageField.VALUE)

    ours = codec.encode(datum, topic)

    assert ours == _confluent_serializer(client, example.record)(copy.deepcopy(datum), ctx)
    assert codec.encode(datum, topic) == ours  # the reused buffer leaves nothing behind
    decoded = codec.decode(ours, topic)
    assert decoded == datum
    assert repr(decoded) == repr(datum)  # Decimal exponents (the scale) survive exactly
    confluent_reader = AvroDeserializer(
        client, schema_string(example.record), conf={"subject.name.strategy": topic_subject_name_strategy}
    )
    assert confluent_reader(ours, ctx) == datum


_AMOUNTS = st.decimals(
    min_value=decimal.Decimal("-99999999999999.9999"),
    max_value=decimal.Decimal("99999999999999.9999"),
    places=4,
    allow_nan=False,
    allow_infinity=False,
)


@pytest.mark.timeout(60)
@settings(max_examples=150, deadline=None)
@given(
    on_hand=_AMOUNTS,
    allocated=_AMOUNTS,
    sku=st.text(min_size=1, max_size=40),
    warehouse=st.text(max_size=12),
    millis=st.integers(min_value=0, max_value=253_402_300_799_999),
    version=st.integers(min_value=-(2**63), max_value=2**63 - 1),
)
def test_inventory_levels_match_confluent_byte_for_byte(
    on_hand: decimal.Decimal,
    allocated: decimal.Decimal,
    sku: str,
    warehouse: str,
    millis: int,
    version: int,
) -> None:
    topic = "canonical.inventory.v1"
    client = _registry("InventoryLevel", topic)
    datum: dict[str, Any] = load_examples("InventoryLevel")[0].datum()
    datum |= {
        "sku": sku,
        "warehouse": warehouse,
        "on_hand": on_hand,
        "allocated": allocated,
        "available": on_hand,
        "as_of": dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=millis),
    }
    datum["meta"] = datum["meta"] | {"version": version}
    codec = AvroCodec(client, "InventoryLevel")

    ours = codec.encode(datum, topic)

    ctx = SerializationContext(topic, MessageField.VALUE)
    assert ours == _confluent_serializer(client, "InventoryLevel")(copy.deepcopy(datum), ctx)
    decoded = codec.decode(ours, topic)
    # Avro decimals carry the schema's scale: the value is kept exactly, the exponent becomes -scale.
    assert decoded["on_hand"] == on_hand
    assert decoded["allocated"] == allocated
    assert (decoded["sku"], decoded["warehouse"]) == (sku, warehouse)
    assert (decoded["as_of"], decoded["meta"]["version"]) == (datum["as_of"], version)


def test_the_registry_is_asked_once_per_topic_and_once_per_writer_schema(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    topic = "canonical.payment.v1"
    client = _registry("Payment", topic)
    calls: list[str] = []
    lookup, get_schema = client.lookup_schema, client.get_schema

    def counted_lookup(*args: Any, **kwargs: Any) -> Any:
        calls.append("lookup")
        return lookup(*args, **kwargs)

    def counted_get(*args: Any, **kwargs: Any) -> Any:
        calls.append("get")
        return get_schema(*args, **kwargs)

    monkeypatch.setattr(client, "lookup_schema", counted_lookup)
    monkeypatch.setattr(client, "get_schema", counted_get)
    codec = AvroCodec(client, "Payment")
    datum = load_examples("Payment")[0].datum()

    for _ in range(5):
        assert codec.decode(codec.encode(datum, topic), topic) == datum

    assert calls == ["lookup", "get"]


def test_a_newer_writer_schema_resolves_to_the_codecs_reader_schema() -> None:
    topic = "canonical.inventory.v1"
    client = _registry("InventoryLevel", topic)
    newer = compose("InventoryLevel")
    newer["fields"].append({"name": "bin", "type": "string", "default": "", "doc": "A later addition."})
    newer_id = client.register_schema("elsewhere-value", Schema(json.dumps(newer), "AVRO"))
    datum = load_examples("InventoryLevel")[0].datum()
    body = io.BytesIO()
    schemaless_writer(body, parse_schema(newer), datum | {"bin": "A-01-3"})

    decoded = AvroCodec(client, "InventoryLevel").decode(
        struct.pack(">bI", 0, newer_id) + body.getvalue(), topic
    )

    assert decoded == datum


def test_another_record_types_bytes_are_undecodable() -> None:
    client = _registry("Payment", "canonical.payment.v1")
    client.register_schema("canonical.order.v1-value", Schema(schema_string("Order"), "AVRO"))
    payment = AvroCodec(client, "Payment").encode(load_examples("Payment")[0].datum(), "canonical.payment.v1")

    with pytest.raises(InvalidMessage) as caught:
        AvroCodec(client, "Order").decode(payment, "canonical.order.v1")

    assert caught.value.reason == "undecodable"


@pytest.mark.timeout(20)
def test_an_unreachable_registry_is_retryable_not_a_message_error() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = SchemaRegistryClient({"url": f"http://127.0.0.1:{port}", "max.retries": 0})
    codec = AvroCodec(client, "Payment")

    with pytest.raises(RetryableError):
        codec.encode(load_examples("Payment")[0].datum(), "canonical.payment.v1")
    with pytest.raises(RetryableError):
        codec.decode(struct.pack(">bI", 0, 1) + b"\x02", "canonical.payment.v1")


def test_an_unknown_field_deep_inside_is_a_violation_with_its_path() -> None:
    # fastavro's strict writer checks every nested record, not only the top level.
    topic = "canonical.order.v1"
    order = load_examples("Order")[0].datum()
    order["lines"][1]["unit_price_excl_tax"]["rounding"] = "HALF_UP"

    with pytest.raises(InvalidMessage) as caught:
        AvroCodec(_registry("Order", topic), "Order").encode(order, topic)

    assert (caught.value.reason, caught.value.field_path) == (
        "schema_violation",
        "lines[1].unit_price_excl_tax.rounding",
    )


def test_a_decimal_beyond_the_schemas_precision_is_a_violation() -> None:
    topic = "canonical.payment.v1"
    payment = load_examples("Payment")[0].datum()
    payment["amount"]["amount"] = decimal.Decimal("123456789012345678901234.000000")

    with pytest.raises(InvalidMessage) as caught:
        AvroCodec(_registry("Payment", topic), "Payment").encode(payment, topic)

    assert caught.value.field_path == "amount.amount"
    assert "too many integer digits" in caught.value.message
