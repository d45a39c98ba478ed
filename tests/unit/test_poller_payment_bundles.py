"""The poller's payment bundles (pure): one per payment of an order bundle, read by the payments flow."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from ingest.prestashop_poller.bundles import payment_bundles, payment_snapshots
from processors import prestashop_payments as flow
from rules.engine import load_rules
from tests.unit.test_processors_prestashop_orders import config, fixture_records

RECEIVED = datetime(2021, 7, 9, 3, 0, tzinfo=UTC)


def order_bundle(*payments: dict[str, Any]) -> dict[str, Any]:
    """An order bundle as the poller builds it (the reference fixture's records), with ``payments``."""
    records = fixture_records()
    return {
        "order": records["orders"] | {"reference": "1000"},
        "order_details": [],
        "customer": None,
        "addresses": [],
        "countries": [],
        "states": [],
        "currencies": [records["currencies"]],
        "carrier": None,
        "order_carriers": [],
        "order_payments": list(payments),
        "order_states": [],
        "configuration": config(PS_TIMEZONE="America/New_York"),
    }


def payment(
    id_: int | str, date_add: str = "2021-07-09 04:22:37", amount: str = "30.000000"
) -> dict[str, Any]:
    return fixture_records()["order_payments"] | {"id": id_, "date_add": date_add, "amount": amount}


def headers_of(headers: tuple[tuple[str, bytes], ...]) -> dict[str, str]:
    return {name: value.decode() for name, value in headers}


def test_one_bundle_per_payment_holding_the_payment_its_order_currencies_and_configuration() -> None:
    order = order_bundle(payment(7), payment("9", date_add="2021-07-10 10:00:00", amount="5.500000"))

    found = payment_bundles(order)

    assert [(p.id, p.date_add) for p in found] == [(7, "2021-07-09 04:22:37"), (9, "2021-07-10 10:00:00")]
    first = found[0].bundle
    assert set(first) == {"order_payment", "order", "currencies", "configuration"}
    assert first["order_payment"] == order["order_payments"][0]  # exactly as the shop returned it
    assert (first["order"], first["currencies"], first["configuration"]) == (
        order["order"],
        order["currencies"],
        order["configuration"],
    )
    assert found[1].bundle["order_payment"]["amount"] == "5.500000"


def test_an_order_without_payments_has_no_payment_bundle() -> None:
    assert payment_bundles(order_bundle()) == []
    assert payment_bundles({k: v for k, v in order_bundle().items() if k != "order_payments"}) == []
    assert payment_bundles(order_bundle(payment(""))) == []  # no id: nothing to key it by
    assert (
        payment_snapshots(order_bundle(), shop_id=1, poll_run_id="run", trigger="poll", correlation_id="c")
        == []
    )


def test_the_raw_records_are_keyed_typed_and_headed_for_the_payments_flow() -> None:
    order = order_bundle(payment(7))

    [raw] = payment_snapshots(
        order, shop_id=3, poll_run_id="run-1", trigger="poll", correlation_id="corr-9", received_at=RECEIVED
    )

    assert (raw.topic, raw.key) == ("raw.prestashop.orders", b"3:order_payments:7")
    assert headers_of(raw.headers) == {
        "source": "prestashop-poll",
        "event_type": "order_payment.bundle",
        "shop_id": "3",
        "resource": "order_payments",
        "id": "7",
        "date_add": "2021-07-09 04:22:37",
        "received_at": "2021-07-09T03:00:00.000Z",
        "content-type": "application/json",
        "correlation_id": "corr-9",
        "poll_run_id": "run-1",
        "trigger": "poll",
    }
    assert json.loads(raw.value) == payment_bundles(order)[0].bundle
    # The payments flow reads it as a payment of order 3:1, versioned by date_add.
    event = flow.decode(raw.value, raw.headers)
    assert isinstance(event, flow.PaymentEvent)
    assert flow.key(event) == "3:1"
    assert flow.version(event) == int(datetime(2021, 7, 9, 8, 22, 37, tzinfo=UTC).timestamp() * 1000)
    mapped = flow.to_payment(event, load_rules(), ingested_at=RECEIVED, correlation_id="corr-9")
    assert (mapped["meta"]["source_id"], mapped["external_ids"]["prestashop"]) == ("7", "7")


def test_the_same_payment_written_with_two_order_versions_has_one_key_and_one_version() -> None:
    first = order_bundle(payment(7))
    later = first | {"order": first["order"] | {"date_upd": "2021-07-12 09:00:00", "current_state": "4"}}
    [one] = payment_snapshots(first, shop_id=1, poll_run_id="r", trigger="poll", correlation_id="a")
    [two] = payment_snapshots(later, shop_id=1, poll_run_id="r", trigger="poll", correlation_id="b")

    assert one.key == two.key
    assert flow.version(flow.decode(one.value, one.headers)) == flow.version(
        flow.decode(two.value, two.headers)
    )
