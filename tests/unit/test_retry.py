"""Backoff policy: exponential growth, full jitter, cap, Retry-After floor, determinism."""

from __future__ import annotations

import random

import pytest

from pipeline.errors import RetryableError
from pipeline.retry import Backoff
from pipeline.settings import RetrySettings

SETTINGS = RetrySettings(initial_backoff_s=0.5, max_backoff_s=4.0, multiplier=2.0)


def test_ceiling_grows_exponentially_then_caps() -> None:
    backoff = Backoff(SETTINGS, random.Random(1))
    assert [backoff.ceiling(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_ceiling_survives_huge_attempt_numbers() -> None:
    assert Backoff(SETTINGS).ceiling(100_000) == 4.0


def test_attempts_are_one_based() -> None:
    with pytest.raises(ValueError, match="1-based"):
        Backoff(SETTINGS).ceiling(0)


def test_delay_is_full_jitter_within_zero_and_ceiling() -> None:
    backoff = Backoff(SETTINGS, random.Random(7))
    for attempt in range(1, 8):
        delays = [backoff.delay(attempt) for _ in range(300)]
        ceiling = backoff.ceiling(attempt)
        assert all(0.0 <= d <= ceiling for d in delays)
        # Full jitter spreads over the whole range, not just the top of it.
        assert min(delays) < 0.2 * ceiling
        assert max(delays) > 0.8 * ceiling


def test_seeded_random_makes_the_sequence_deterministic() -> None:
    first = [Backoff(SETTINGS, random.Random(42)).delay(n) for n in range(1, 6)]
    second = [Backoff(SETTINGS, random.Random(42)).delay(n) for n in range(1, 6)]
    other = [Backoff(SETTINGS, random.Random(43)).delay(n) for n in range(1, 6)]
    assert first == second
    assert first != other


def test_retry_after_is_a_floor_even_above_the_cap() -> None:
    backoff = Backoff(SETTINGS, random.Random(3))
    hinted = RetryableError("429", retry_after=10.0, status=429)
    assert all(backoff.delay(n, hinted) == 10.0 for n in range(1, 10))


def test_small_retry_after_does_not_shorten_the_jittered_delay() -> None:
    seeded, reference = Backoff(SETTINGS, random.Random(5)), Backoff(SETTINGS, random.Random(5))
    hinted = RetryableError("503", retry_after=0.01)
    for attempt in range(1, 6):
        expected = max(reference.delay(attempt), 0.01)
        assert seeded.delay(attempt, hinted) == expected


def test_error_without_hint_behaves_like_no_error() -> None:
    a, b = Backoff(SETTINGS, random.Random(9)), Backoff(SETTINGS, random.Random(9))
    assert [a.delay(n, RetryableError("x")) for n in range(1, 5)] == [b.delay(n) for n in range(1, 5)]
