"""Which notifications a newer read already answered (no network)."""

from __future__ import annotations

from ingest.prestashop_poller.freshness import FreshReads
from ingest.prestashop_poller.notifications import received_at_of
from pipeline.records import SourceRecord


def test_a_read_answers_only_notifications_received_a_margin_before_it_started() -> None:
    fresh = FreshReads(margin_s=1.0)
    fresh.record("orders", [7], 100.0)
    assert fresh.answered("orders", 7, 98.9)
    assert not fresh.answered("orders", 7, 99.0)  # within the clock margin: read again
    assert not fresh.answered("orders", 7, 120.0)  # changed after the read
    assert not fresh.answered("orders", 8, 50.0)  # never read
    assert not fresh.answered("customers", 7, 50.0)  # another resource


def test_an_older_read_never_replaces_a_newer_one() -> None:
    fresh = FreshReads(margin_s=0.0)
    fresh.record("orders", [7], 100.0)
    fresh.record("orders", [7], 90.0)  # a slow read that started earlier ends later
    assert fresh.answered("orders", 7, 95.0)


def test_the_least_recently_read_rows_are_forgotten_beyond_capacity() -> None:
    fresh = FreshReads(margin_s=0.0, capacity=2)
    fresh.record("orders", [1], 10.0)
    fresh.record("orders", [2], 10.0)
    fresh.record("orders", [3], 10.0)
    assert not fresh.answered("orders", 1, 5.0)  # forgotten: read again, never skipped wrongly
    assert fresh.answered("orders", 2, 5.0)
    assert fresh.answered("orders", 3, 5.0)


def _record(**headers: bytes) -> SourceRecord:
    return SourceRecord(
        topic="raw.prestashop.orders",
        partition=0,
        offset=0,
        key=b"1:orders:7",
        value=b"{}",
        headers=tuple(headers.items()),
        timestamp_ms=0,
    )


def test_received_at_is_read_from_the_receivers_header() -> None:
    assert received_at_of(_record(received_at=b"2026-01-31T12:00:00.250Z")) == 1769860800.25
    assert received_at_of(_record()) is None
    assert received_at_of(_record(received_at=b"yesterday")) is None
