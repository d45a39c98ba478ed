"""Scan change detection, raw record format and notification parsing of the poller (no network)."""

from __future__ import annotations

import json

import pytest

from connectors.prestashop.json_reads import JsonRecord
from ingest.prestashop_poller.notifications import Target, targets_of
from ingest.prestashop_poller.raw import canonical_json, snapshot
from ingest.prestashop_poller.scans import CHUNK_IDS, ScanState, diff, digest
from pipeline.records import SourceRecord


def test_digest_depends_on_content_not_on_key_order() -> None:
    a: JsonRecord = {"id": 7, "tracking_number": "1Z1", "weight": "0.000000"}
    b: JsonRecord = {"weight": "0.000000", "tracking_number": "1Z1", "id": 7}
    assert digest(a) == digest(b)
    assert digest(a) != digest({**a, "tracking_number": "1Z2"})


def test_diff_reports_new_changed_and_removed_rows() -> None:
    previous = {1: "aa", 2: "bb", 3: "cc"}
    current = {1: "aa", 2: "BB", 4: "dd"}
    found = diff(previous, current)
    assert found.changed == [2, 4]
    assert found.removed == [3]


def test_first_scan_without_state_changes_everything() -> None:
    assert diff({}, {5: "x", 1: "y"}).changed == [1, 5]


def test_scan_state_survives_a_restart_through_its_blocks() -> None:
    state = ScanState()
    touched = state.apply({1: "a", CHUNK_IDS + 2: "b"}, removed=[])
    assert touched == {0, 1}
    blocks = [json.loads(json.dumps(state.block(chunk))) for chunk in sorted(touched)]
    restored = ScanState.from_blocks(blocks)
    assert restored.digests == {1: "a", CHUNK_IDS + 2: "b"}
    # After the restart the same content is not a change; a different one is.
    assert diff(restored.digests, {1: "a", CHUNK_IDS + 2: "b"}).changed == []
    assert diff(restored.digests, {1: "a", CHUNK_IDS + 2: "c"}).changed == [CHUNK_IDS + 2]


def test_removed_rows_leave_the_state() -> None:
    state = ScanState({1: "a", 2: "b"})
    assert state.apply({}, removed=[2, 99]) == {0}
    assert state.block(0) == {"digests": {"1": "a"}}


def test_snapshot_carries_the_record_canonically_with_key_and_headers() -> None:
    record: JsonRecord = {"id": 42, "reference": "XKBKNABJK", "total_paid": "61.800000", "name": "Élan"}
    raw = snapshot(
        shop_id=1,
        resource="orders",
        node="order",
        id_=42,
        record=record,
        date_upd="2025-03-30 12:00:00",
        poll_run_id="run1",
        trigger="poll",
        correlation_id="c1",
    )
    assert raw.topic == "raw.prestashop.orders"
    assert raw.key == b"1:orders:42"
    assert raw.value == '{"id":42,"name":"Élan","reference":"XKBKNABJK","total_paid":"61.800000"}'.encode()
    assert json.loads(raw.value) == record
    headers = dict(raw.headers)
    assert headers["source"] == b"prestashop-poll"
    assert headers["event_type"] == b"order.snapshot"
    assert headers["date_upd"] == b"2025-03-30 12:00:00"
    assert headers["correlation_id"] == b"c1"
    assert headers["content-type"] == b"application/json"
    assert set(headers) >= {"resource", "id", "received_at", "poll_run_id", "trigger"}
    assert canonical_json(record) == raw.value


def _notification(body: object, **headers: str) -> SourceRecord:
    return SourceRecord(
        topic="raw.prestashop.orders",
        partition=0,
        offset=0,
        key=b"1:orders:42",
        value=json.dumps(body).encode(),
        headers=(("source", b"prestashop-webhook"), *((k, v.encode()) for k, v in headers.items())),
    )


@pytest.mark.parametrize(
    ("body", "headers", "expected"),
    [
        (
            {"type": "order.status_changed", "resource": {"type": "orders", "id": 42}, "data": {}},
            {},
            [Target("orders", 42)],
        ),
        (
            {
                "type": "order.tracking_updated",
                "resource": {"type": "orders", "id": "42"},
                "data": {"id_order": 42, "id_order_carrier": 9},
            },
            {},
            [Target("orders", 42), Target("order_carriers", 9)],
        ),
        (
            {"action": "update", "entity": "StockAvailable", "data": {"id": 5}},
            {},
            [Target("stock_availables", 5)],
        ),
        ({"anything": 1}, {"resource": "customers", "id": "3"}, [Target("customers", 3)]),
        ({"type": "x", "resource": {"type": "carts", "id": 1}}, {}, []),
        ({"type": "x", "resource": {"type": "orders", "id": 0}}, {}, []),
    ],
)
def test_notifications_name_the_rows_to_re_read(
    body: object, headers: dict[str, str], expected: list[Target]
) -> None:
    assert targets_of(_notification(body, **headers)) == expected


def test_an_undecodable_notification_names_nothing() -> None:
    record = SourceRecord("t", 0, 0, None, b"\xff not json", (("source", b"prestashop-webhook"),))
    assert targets_of(record) == []
