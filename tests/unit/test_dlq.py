"""The DLQ limit (consecutive and windowed ratio) and the dead-letter header set."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from pipeline.dlq import DlqLimit, dead_letter_headers
from pipeline.errors import DlqLimitExceeded, InvalidMessage, StageHalted
from pipeline.records import SourceRecord
from pipeline.settings import DlqSettings


def _limit(consecutive: int = 100, ratio: float = 1.0, window: int = 1000) -> DlqLimit:
    return DlqLimit(DlqSettings(max_consecutive_invalid=consecutive, max_invalid_ratio=ratio, window=window))


def test_consecutive_limit_allows_exactly_max_in_a_row() -> None:
    limit = _limit(consecutive=3)
    for _ in range(3):
        limit.record_invalid()
    with pytest.raises(DlqLimitExceeded, match="4 invalid messages in a row"):
        limit.record_invalid()


def test_a_good_message_resets_the_run() -> None:
    limit = _limit(consecutive=2)
    for _ in range(10):
        limit.record_invalid()
        limit.record_invalid()
        limit.record_ok()
    assert limit.consecutive_invalid == 0


def test_tripping_message_is_not_recorded() -> None:
    limit = _limit(consecutive=1)
    limit.record_invalid()
    for _ in range(3):
        with pytest.raises(DlqLimitExceeded):
            limit.record_invalid()
    assert limit.consecutive_invalid == 1
    assert limit.invalid_in_window == 1


def test_limit_error_is_a_stage_halt() -> None:
    limit = _limit(consecutive=1)
    limit.record_invalid()
    with pytest.raises(StageHalted):
        limit.record_invalid()


def test_ratio_is_not_judged_before_the_window_is_full() -> None:
    limit = _limit(ratio=0.5, window=10)
    # 1 bad of 1 seen is 100 %, but a single message says nothing about the stage.
    limit.record_invalid()
    for _ in range(4):
        limit.record_ok()
    for _ in range(3):
        limit.record_invalid()
        limit.record_ok()
    assert limit.invalid_in_window == 3  # the first invalid slid out of the window


def test_ratio_trips_when_more_than_the_share_of_the_window_is_invalid() -> None:
    limit = _limit(ratio=0.5, window=10)
    for _ in range(5):
        limit.record_invalid()
        limit.record_ok()
    # Window: 5 invalid of 10 = 50 %, not more than the limit.
    assert limit.invalid_in_window == 5
    # Next invalid pushes out the oldest (invalid) entry: still 5 of 10.
    limit.record_invalid()
    assert limit.invalid_in_window == 5
    # Window is now [ok, inv, ok, inv, ok, inv, ok, inv, ok, inv]; the next invalid replaces an ok: 6/10.
    with pytest.raises(DlqLimitExceeded, match="6 of the last 10"):
        limit.record_invalid()


def test_window_slides_so_old_failures_are_forgotten() -> None:
    limit = _limit(ratio=0.3, window=10)
    for _ in range(3):
        limit.record_invalid()
        limit.record_ok()
    for _ in range(10):
        limit.record_ok()
    assert limit.invalid_in_window == 0
    for _ in range(3):
        limit.record_invalid()
        limit.record_ok()
    with pytest.raises(DlqLimitExceeded):
        limit.record_invalid()


def test_ratio_of_one_only_trips_on_consecutive() -> None:
    limit = _limit(consecutive=50, ratio=1.0, window=5)
    for _ in range(50):
        limit.record_invalid()
    with pytest.raises(DlqLimitExceeded, match="in a row"):
        limit.record_invalid()


RECORD = SourceRecord(
    topic="raw.prestashop.orders",
    partition=2,
    offset=41,
    key=b"shop1:orders:7",
    value=b'{"id": 7}',
    headers=(("correlation_id", b"c-1"), ("content-type", b"application/json"), ("dlq.reason", b"old")),
    timestamp_ms=1_700_000_000_123,
)


def test_headers_keep_the_source_ones_and_tell_the_story() -> None:
    error = InvalidMessage(
        "unknown_sku",
        "no product with reference X1",
        field_path="lines[0].sku",
        details={"near_matches": "X11,X12", "response": "404 Not Found"},
    )
    failed_at = datetime(2026, 1, 2, 4, 5, 6, 789000, tzinfo=timezone(timedelta(hours=1)))
    headers = dead_letter_headers(RECORD, error, stage="sink-prestashop", attempts=3, failed_at=failed_at)
    as_dict = dict(headers)
    assert len(as_dict) == len(headers), "each header name appears once"
    assert headers[:2] == [("correlation_id", b"c-1"), ("content-type", b"application/json")]
    assert as_dict == {
        "correlation_id": b"c-1",
        "content-type": b"application/json",
        "dlq.stage": b"sink-prestashop",
        "dlq.reason": b"unknown_sku",
        "dlq.error.class": b"pipeline.errors.InvalidMessage",
        "dlq.error.message": b"no product with reference X1",
        "dlq.source.topic": b"raw.prestashop.orders",
        "dlq.source.partition": b"2",
        "dlq.source.offset": b"41",
        "dlq.source.timestamp": b"1700000000123",
        "dlq.attempts": b"3",
        "dlq.failed_at": b"2026-01-02T03:05:06.789+00:00",
        "dlq.field_path": b"lines[0].sku",
        "dlq.detail.near_matches": b"X11,X12",
        "dlq.detail.response": b"404 Not Found",
        "dlq.original_key": b"shop1:orders:7",
    }


def test_subclass_name_and_long_text_are_bounded() -> None:
    class DecodeFailed(InvalidMessage):
        pass

    error = DecodeFailed("undecodable", "x" * 10_000)
    headers = dict(dead_letter_headers(RECORD, error, stage="p", attempts=1, failed_at=datetime.now(UTC)))
    assert headers["dlq.error.class"].endswith(b"DecodeFailed")
    assert len(headers["dlq.error.message"].decode()) == 4096
    assert "dlq.field_path" not in headers


def test_naive_failed_at_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        dead_letter_headers(
            RECORD,
            InvalidMessage("r", "m"),
            stage="p",
            attempts=1,
            failed_at=datetime(2026, 1, 1),
        )


def test_source_record_snapshot_keeps_bytes_headers_and_position() -> None:
    # The DLQ can only write the original bytes if the record snapshot never re-encodes them.
    from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_NOT_AVAILABLE, Message

    message = Message(
        topic="raw.x",
        partition=3,
        offset=9,
        key=b"\xff\x00k",
        value=b"\x00\x01",
        headers=[("a", b"1"), ("nul", None), ("a", b"2"), ("text", "é")],
        timestamp=(TIMESTAMP_CREATE_TIME, 1234),
    )
    record = SourceRecord.from_message(message)
    assert (record.topic, record.partition, record.offset) == ("raw.x", 3, 9)
    assert (record.key, record.value, record.timestamp_ms) == (b"\xff\x00k", b"\x00\x01", 1234)
    assert record.headers == (("a", b"1"), ("nul", b""), ("a", b"2"), ("text", "é".encode()))
    assert record.header("a") == b"2"
    assert record.header("missing") is None
    untimed = Message(topic="t", partition=0, offset=0, timestamp=(TIMESTAMP_NOT_AVAILABLE, -1))
    assert SourceRecord.from_message(untimed).timestamp_ms is None
    with pytest.raises(ValueError, match="error event"):
        SourceRecord.from_message(Message())


def test_dlq_key_is_the_coordinates_and_the_original_key_travels_in_a_header() -> None:
    # A compacted DLQ keyed by the original key would keep only the newest failure of that key.
    from pipeline.dlq import ORIGINAL_KEY, dead_letter_key

    first = SourceRecord(topic="raw.x", partition=2, offset=7, key=b"\xffshop:orders:1", value=b"v")
    second = SourceRecord(topic="raw.x", partition=2, offset=8, key=b"\xffshop:orders:1", value=b"v")
    assert dead_letter_key(first) == b"raw.x:2:7"
    assert dead_letter_key(first) != dead_letter_key(second)
    headers = dead_letter_headers(
        first, InvalidMessage("r", "m"), stage="p", attempts=1, failed_at=datetime(2026, 1, 1, tzinfo=UTC)
    )
    assert dict(headers)[ORIGINAL_KEY] == b"\xffshop:orders:1"
    keyless = SourceRecord(topic="raw.x", partition=0, offset=0, key=None, value=b"v")
    keyless_headers = dead_letter_headers(
        keyless, InvalidMessage("r", "m"), stage="p", attempts=1, failed_at=datetime(2026, 1, 1, tzinfo=UTC)
    )
    assert ORIGINAL_KEY not in dict(keyless_headers)
