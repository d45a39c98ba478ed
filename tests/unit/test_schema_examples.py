"""Every example validates against its schema, and the JSON convention is enforced."""

from __future__ import annotations

import datetime as dt
import decimal
import io
import uuid

import pytest
from fastavro import schemaless_reader, schemaless_writer
from fastavro.validation import validate

from schemas.examples import Example, ExampleError, load_examples, to_datum
from schemas.loader import compose, parsed_schema

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
EXAMPLES = load_examples()


@pytest.mark.parametrize("example", EXAMPLES, ids=[f"{e.record}/{e.name}" for e in EXAMPLES])
def test_example_is_valid_and_round_trips_through_avro_binary(example: Example) -> None:
    datum = example.datum()
    schema = parsed_schema(example.record)
    assert validate(datum, schema, raise_errors=True, strict=True)
    buffer = io.BytesIO()
    schemaless_writer(buffer, schema, datum, strict=True)
    buffer.seek(0)
    assert schemaless_reader(buffer, schema, schema) == datum


@pytest.mark.parametrize("record", TOP_LEVEL)
def test_every_top_level_record_has_at_least_two_examples(record: str) -> None:
    assert len(load_examples(record)) >= 2


def test_decimals_are_exact_strings_rescaled_to_the_schema_scale() -> None:
    order = load_examples("Order")[0].datum()
    amount = order["lines"][1]["unit_price_excl_tax"]["amount"]
    assert amount == decimal.Decimal("9.90")
    assert amount.as_tuple().exponent == -6
    assert order["lines"][0]["quantity"].as_tuple().exponent == -4


def test_timestamps_become_aware_utc_datetimes_and_uuids_become_uuid() -> None:
    order = load_examples("Order")[0].datum()
    assert order["placed_at"] == dt.datetime(2024, 5, 2, 9, 14, 52, tzinfo=dt.UTC)
    assert isinstance(order["meta"]["event_id"], uuid.UUID)


def test_missing_defaulted_fields_are_filled_in() -> None:
    payment = next(e for e in load_examples("Payment") if "external_ids" not in e.json_value)
    assert payment.datum()["external_ids"] == {}


@pytest.mark.parametrize(
    ("patch", "path", "message"),
    [
        ({"amount": {"amount": 65.88, "currency": "EUR"}}, "amount.amount", "must be a JSON string"),
        (
            {"amount": {"amount": "1.0000001", "currency": "EUR"}},
            "amount.amount",
            "more than 6 decimal places",
        ),
        ({"paid_at": "2024-05-02T09:14:58"}, "paid_at", "no UTC offset"),
        ({"recorded_by": "PAYPAL"}, "recorded_by", "not a SourceSystem symbol"),
        ({"surprise": 1}, "", "fields not in Payment: surprise"),
    ],
)
def test_convention_violations_name_the_field(patch: dict[str, object], path: str, message: str) -> None:
    value = dict(load_examples("Payment")[0].json_value) | patch
    with pytest.raises(ExampleError, match=message) as caught:
        to_datum(compose("Payment"), value)
    assert caught.value.path == path


def test_missing_required_field_is_reported() -> None:
    value = dict(load_examples("Payment")[0].json_value)
    del value["method"]
    with pytest.raises(ExampleError, match="required field is missing") as caught:
        to_datum(compose("Payment"), value)
    assert caught.value.path == "method"
