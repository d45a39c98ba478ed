"""PrestaShop payment bundles → canonical Payment (the reference fixture's order_payments record)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from pipeline.errors import InvalidMessage
from pipeline.records import Headers
from processors import prestashop_payments as flow
from processors.prestashop_source import SKIP_VERSION, Skipped
from rules.engine import Rules, load_rules
from rules.preview import preview
from tests.unit.test_processors_prestashop_orders import assert_valid, config, fixture_records

HEADERS: Headers = (
    ("source", b"prestashop-poll"),
    ("event_type", b"order_payment.bundle"),
    ("shop_id", b"1"),
)
INGESTED = datetime(2021, 7, 9, 3, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def rules() -> Rules:
    return load_rules()


def bundle() -> dict[str, Any]:
    records = fixture_records()
    payment = records["order_payments"]  # order_reference "1000", USD (currency 1), 30.000000
    return {
        "order_payment": payment,
        "order": records["orders"] | {"reference": "1000"},
        "currencies": [records["currencies"]],
        "configuration": config(PS_TIMEZONE="America/New_York"),
    }


def to_payment(data: dict[str, Any], rules: Rules) -> dict[str, Any]:
    event = flow.decode(json.dumps(data).encode(), HEADERS)
    assert isinstance(event, flow.PaymentEvent)
    return flow.to_payment(event, rules, ingested_at=INGESTED, correlation_id="corr")


def test_the_fixture_payment_maps_field_by_field(rules: Rules) -> None:
    payment = to_payment(bundle(), rules)
    assert_valid(payment, "Payment")
    # 2021-07-09 04:22:37 in New York (EDT, UTC-4) is 08:22:37 UTC.
    paid_at = datetime(2021, 7, 9, 8, 22, 37, tzinfo=UTC)
    assert payment["meta"]["version"] == int(paid_at.timestamp() * 1000)
    assert payment["meta"]["source_entity"] == "order_payments"
    assert payment["meta"]["source_id"] == "1"
    assert payment["meta"]["occurred_at"] == paid_at
    assert payment["order_key"] == "1:1"
    assert payment["amount"] == {"amount": Decimal("30.000000"), "currency": "USD"}
    assert payment["method"] == "1"
    assert payment["transaction_id"] == "1"
    assert payment["paid_at"] == paid_at
    assert payment["recorded_by"] == "PRESTASHOP"
    assert payment["external_ids"] == {"prestashop": "1", "prestashop_order": "1"}
    event = flow.decode(json.dumps(bundle()).encode(), HEADERS)
    assert flow.key(event) == "1:1"
    assert flow.version(event) == payment["meta"]["version"]
    assert to_payment(bundle(), rules)["meta"]["event_id"] == payment["meta"]["event_id"]


def test_a_payment_for_another_order_or_with_a_wrong_amount_is_invalid(rules: Rules) -> None:
    data = bundle()
    data["order"]["reference"] = "XKBKNABJK"
    with pytest.raises(InvalidMessage) as caught:
        to_payment(data, rules)
    assert caught.value.field_path == "order_payment.order_reference"
    data = bundle()
    data["order_payment"]["amount"] = "thirty"
    with pytest.raises(InvalidMessage) as caught:
        flow.decode(json.dumps(data).encode(), HEADERS)
    assert (caught.value.reason, caught.value.field_path) == ("wrong_type", "order_payment.amount")


def test_other_records_are_skipped() -> None:
    for headers in (((("source", b"prestashop-poll"), ("event_type", b"order.bundle"))), ()):
        event = flow.decode(b"{}", headers)
        assert isinstance(event, Skipped)
        assert flow.version(event) == SKIP_VERSION


def test_the_preview_is_registered(rules: Rules) -> None:
    assert preview(json.dumps(bundle()).encode(), rules, "prestashop_payments")["order_key"] == "1:1"
