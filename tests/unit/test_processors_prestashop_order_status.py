"""PrestaShop order bundles → canonical OrderStatusChange: states by config key and flags, ids, wiring."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from pipeline.errors import InvalidMessage
from pipeline.records import Headers
from processors import prestashop_order_status as flow
from processors import prestashop_orders as orders_flow
from processors.prestashop_source import SKIP_VERSION, Skipped, event_id
from rules.engine import Rules, load_rules
from rules.preview import preview
from tests.unit.test_processors_prestashop_orders import (
    SNAPSHOT_HEADERS,
    assert_valid,
    config,
    lyon_bundle,
    state,
)

INGESTED = datetime(2024, 5, 2, 9, 16, 0, 500000, tzinfo=UTC)
# 2024-05-02 11:15:00 in Paris (CEST, UTC+2).
LYON_VERSION = int(datetime(2024, 5, 2, 9, 15, tzinfo=UTC).timestamp() * 1000)


@pytest.fixture(scope="module")
def rules() -> Rules:
    return load_rules()


def event_of(bundle: dict[str, Any], headers: Headers = SNAPSHOT_HEADERS) -> orders_flow.OrderEvent:
    event = flow.decode(json.dumps(bundle).encode(), headers)
    assert isinstance(event, orders_flow.OrderEvent)
    return event


def status_of(bundle: dict[str, Any], rules: Rules) -> dict[str, Any]:
    datum = flow.to_order_status(event_of(bundle), rules, ingested_at=INGESTED, correlation_id="corr-7")
    assert_valid(datum, "OrderStatusChange")
    return datum


def renumbered(current: int, *states: dict[str, Any], **keys: str) -> dict[str, Any]:
    """The Lyon order in state ``current`` of a shop whose states and PS_OS_* keys are ``states``/``keys``."""
    bundle = copy.deepcopy(lyon_bundle())
    bundle["order"]["current_state"] = str(current)
    bundle["order_states"] = list(states)
    bundle["configuration"] = config(PS_TIMEZONE="Europe/Paris", PS_CURRENCY_DEFAULT="1", **keys)
    return bundle


def test_a_paid_order_states_every_dimension_with_the_source_state(rules: Rules) -> None:
    datum = status_of(lyon_bundle(), rules)
    assert datum["order_key"] == "1:1042"
    assert (datum["payment_status"], datum["fulfillment_status"], datum["lifecycle"]) == (
        "PAID",
        "UNFULFILLED",
        "OPEN",
    )
    assert datum["source_status"] == {
        "system": "PRESTASHOP",
        "code": "PS_OS_PAYMENT",
        "name": "Payment accepted",
    }
    assert datum["changed_at"] == datetime(2024, 5, 2, 9, 15, tzinfo=UTC)
    assert datum["erp_order_number"] is None
    assert datum["external_ids"] == {"prestashop": "1042"}
    meta = datum["meta"]
    assert (meta["source_system"], meta["source_entity"], meta["source_id"], meta["shop_id"]) == (
        "PRESTASHOP",
        "orders",
        "1042",
        "1",
    )
    assert (meta["version"], meta["occurred_at"]) == (LYON_VERSION, datum["changed_at"])
    assert (meta["ingested_at"], meta["correlation_id"], meta["causation_id"]) == (INGESTED, "corr-7", None)


def test_the_event_id_is_deterministic_and_not_the_order_records(rules: Rules) -> None:
    datum = status_of(lyon_bundle(), rules)
    assert datum["meta"]["event_id"] == event_id("orders.current_state", "1", "1042", LYON_VERSION)
    assert status_of(lyon_bundle(), rules)["meta"]["event_id"] == datum["meta"]["event_id"]
    order = orders_flow.to_order(
        event_of(lyon_bundle()), rules, ingested_at=INGESTED, correlation_id="corr-7"
    )
    assert order["meta"]["version"] == datum["meta"]["version"]
    assert order["meta"]["event_id"] != datum["meta"]["event_id"]


def test_states_resolve_by_configuration_key_not_by_id(rules: Rules) -> None:
    shipped = state(24, "Expédié", paid="1", shipped="1", delivery="1", logable="1")
    payment = state(22, "Paiement accepté", paid="1", logable="1")
    bundle = renumbered(24, shipped, payment, PS_OS_PAYMENT="22", PS_OS_SHIPPING="24")
    datum = status_of(bundle, rules)
    assert (datum["payment_status"], datum["fulfillment_status"], datum["lifecycle"]) == (
        "PAID",
        "SHIPPED",
        "OPEN",
    )
    assert datum["source_status"] == {"system": "PRESTASHOP", "code": "PS_OS_SHIPPING", "name": "Expédié"}


def test_a_cancellation_speaks_only_about_the_lifecycle(rules: Rules) -> None:
    bundle = renumbered(6, state(6, "Annulé"), PS_OS_CANCELED="6")
    datum = status_of(bundle, rules)
    assert (datum["payment_status"], datum["fulfillment_status"], datum["lifecycle"]) == (
        "UNKNOWN",
        "UNKNOWN",
        "CANCELLED",
    )
    assert datum["source_status"]["code"] == "PS_OS_CANCELED"


def test_a_custom_state_is_read_by_its_flags(rules: Rules) -> None:
    bundle = renumbered(31, state(31, "Remis au transporteur", paid="1", shipped="1"))
    datum = status_of(bundle, rules)
    assert (datum["payment_status"], datum["fulfillment_status"], datum["lifecycle"]) == (
        "PAID",
        "SHIPPED",
        "UNKNOWN",
    )
    assert datum["source_status"]["code"] == "31"


def test_a_state_the_shop_does_not_have_is_invalid_with_its_path(rules: Rules) -> None:
    bundle = renumbered(99, state(2, "Payment accepted", paid="1"), PS_OS_PAYMENT="2")
    with pytest.raises(InvalidMessage) as caught:
        flow.to_order_status(event_of(bundle), rules, ingested_at=INGESTED, correlation_id="c")
    assert (caught.value.reason, caught.value.field_path) == ("unknown_order_state", "current_state")


def test_the_flow_reads_order_bundles_keyed_and_versioned_like_the_orders_flow(rules: Rules) -> None:
    assert (flow.FLOW.name, flow.FLOW.sources, flow.FLOW.output, flow.FLOW.record) == (
        "prestashop_order_status",
        ("raw.prestashop.orders",),
        "canonical.order-status.v1",
        "OrderStatusChange",
    )
    event = event_of(lyon_bundle())
    assert flow.key(event) == orders_flow.key(event) == "1:1042"
    assert flow.version(event) == orders_flow.version(event) == LYON_VERSION
    later = copy.deepcopy(lyon_bundle())
    later["order"]["date_upd"] = "2024-05-02 11:20:00"
    assert flow.version(event_of(later)) == LYON_VERSION + 5 * 60 * 1000


def test_notifications_and_other_bundles_are_skipped() -> None:
    webhook: Headers = (
        ("source", b"prestashop-webhook"),
        ("event_type", b"order.updated"),
        ("shop_id", b"1"),
    )
    payment: Headers = (
        ("source", b"prestashop-poll"),
        ("event_type", b"order_payment.bundle"),
        ("shop_id", b"1"),
    )
    for headers in (webhook, payment):
        skipped = flow.decode(b'{"id_order": 1042}', headers)
        assert isinstance(skipped, Skipped)
        assert flow.version(skipped) == SKIP_VERSION
        assert flow.key(skipped) == ""


def test_the_preview_shows_the_status_record(rules: Rules) -> None:
    shown = preview(json.dumps(lyon_bundle()).encode(), rules, "prestashop_order_status")
    assert (shown["order_key"], shown["payment_status"], shown["source_status"]["code"]) == (
        "1:1042",
        "PAID",
        "PS_OS_PAYMENT",
    )
    assert shown["meta"]["correlation_id"] == "preview"
