"""Window arithmetic, dedupe and the watermark advance rule of the PrestaShop poller (no network)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from ingest.prestashop_poller.window import (
    AckTracker,
    RecentVersions,
    Window,
    format_shop_time,
    parse_shop_time,
    shop_now,
)
from pipeline.errors import RetryableError

T = datetime(2025, 3, 30, 12, 0, 0)


def test_shop_time_round_trips_and_zero_date_is_none() -> None:
    assert parse_shop_time("2025-03-30 12:00:00") == T
    assert format_shop_time(T.replace(microsecond=999_999)) == "2025-03-30 12:00:00"
    assert parse_shop_time("0000-00-00 00:00:00") is None
    assert parse_shop_time("") is None
    with pytest.raises(ValueError, match="does not match"):
        parse_shop_time("2025-03-30T12:00:00Z")
    with pytest.raises(ValueError, match="naive"):
        format_shop_time(T.replace(tzinfo=UTC))


def test_now_is_shop_local_wall_time_truncated_to_the_second() -> None:
    instant = datetime(2025, 7, 1, 10, 0, 5, 700_000, tzinfo=UTC)
    assert shop_now(ZoneInfo("Europe/Paris"), instant) == datetime(2025, 7, 1, 12, 0, 5)  # CEST, UTC+2
    assert shop_now(ZoneInfo("America/New_York"), instant) == datetime(2025, 7, 1, 6, 0, 5)
    with pytest.raises(ValueError, match="aware"):
        shop_now(ZoneInfo("Europe/Paris"), datetime(2025, 7, 1))


def test_window_reaches_back_by_the_overlap_and_up_to_now() -> None:
    window = Window.after(T, overlap_s=10, now=T + timedelta(minutes=5, microseconds=400))
    assert window == Window(T - timedelta(seconds=10), T + timedelta(minutes=5))


def test_window_bounds_are_inclusive_like_between() -> None:
    window = Window(T, T + timedelta(seconds=2))
    assert window.contains(T)
    assert window.contains(T + timedelta(seconds=2))
    assert not window.contains(T - timedelta(seconds=1))
    assert not window.contains(T + timedelta(seconds=3))


def test_window_never_ends_before_the_watermark_when_the_shop_clock_is_behind() -> None:
    window = Window.after(T, overlap_s=5, now=T - timedelta(hours=1))
    assert window == Window(T - timedelta(seconds=5), T)


def test_seconds_after_moves_by_whole_seconds_and_ends_at_high() -> None:
    window = Window(T, T + timedelta(seconds=2))
    assert window.seconds_after(T) == Window(T + timedelta(seconds=1), T + timedelta(seconds=2))
    assert window.seconds_after(T + timedelta(seconds=1, microseconds=5)) == Window(
        T + timedelta(seconds=2), T + timedelta(seconds=2)
    )
    assert window.seconds_after(T + timedelta(seconds=2)) is None


def test_recent_versions_dedupe_by_id_and_date_upd_within_the_overlap() -> None:
    recent = RecentVersions([(1, T), (2, T - timedelta(seconds=30))])
    assert (1, T) in recent
    assert (1, T + timedelta(seconds=1)) not in recent  # a newer version of the same row is new
    recent.add((3, T + timedelta(seconds=1)))
    recent.forget_before(T - timedelta(seconds=10))
    assert list(recent) == [(1, T), (3, T + timedelta(seconds=1))]
    assert recent.at_or_after(T + timedelta(seconds=1)) == [(3, T + timedelta(seconds=1))]


def test_safe_position_never_passes_an_unacknowledged_record() -> None:
    tracker: AckTracker[tuple[datetime, int]] = AckTracker()
    tickets = [tracker.register((T + timedelta(seconds=n), n)) for n in range(4)]
    assert tracker.safe() is None
    tracker.ack(tickets[1])
    tracker.ack(tickets[2])
    assert tracker.safe() is None  # record 0 is still in flight
    tracker.ack(tickets[0])
    assert tracker.safe() == (T + timedelta(seconds=2), 2)
    assert tracker.pending == 1
    tracker.ack(tickets[3])
    assert tracker.safe() == (T + timedelta(seconds=3), 3)
    assert tracker.pending == 0


def test_after_a_failed_delivery_nothing_past_it_becomes_safe() -> None:
    tracker: AckTracker[int] = AckTracker()
    tickets = [tracker.register(n) for n in range(4)]
    tracker.ack(tickets[0])
    error = RetryableError("not delivered")
    tracker.fail(tickets[1], error)
    tracker.ack(tickets[2])
    tracker.ack(tickets[3])
    assert tracker.safe() == 0
    assert tracker.failure is error
