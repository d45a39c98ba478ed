"""Backoff between attempts of the same message after a ``RetryableError``.

The policy is "exponential backoff with full jitter": the n-th wait is drawn uniformly from
``[0, min(max_backoff_s, initial_backoff_s * multiplier ** (n - 1))]``. Full jitter spreads the retries of
many consumers hitting the same failing target, so they do not come back in lock-step. A target's own
``Retry-After`` hint (``RetryableError.retry_after``) is a floor: we never call back sooner than the
target asked, even when that is longer than the cap.
"""

from __future__ import annotations

import random

from pipeline.errors import RetryableError
from pipeline.settings import RetrySettings


class Backoff:
    """Computes how long to wait before the next attempt; holds no per-message state.

    Pass a seeded ``random.Random`` to make the sequence deterministic (tests, replays).
    """

    def __init__(self, settings: RetrySettings, rng: random.Random | None = None) -> None:
        self._settings = settings
        # Jitter only spreads load; it is not security relevant, so the non-cryptographic PRNG is right.
        self._rng = rng if rng is not None else random.Random()  # noqa: S311

    def ceiling(self, attempt: int) -> float:
        """The upper bound of the wait after failed attempt number ``attempt`` (1-based), capped."""
        if attempt < 1:
            raise ValueError(f"attempt is 1-based, got {attempt}")
        settings = self._settings
        try:
            grown = settings.initial_backoff_s * settings.multiplier ** (attempt - 1)
        except OverflowError:
            # multiplier ** n overflows a float long after it passed any sane cap.
            return settings.max_backoff_s
        return min(settings.max_backoff_s, grown)

    def delay(self, attempt: int, error: RetryableError | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based); at least ``error.retry_after``."""
        jittered = self._rng.uniform(0.0, self.ceiling(attempt))
        floor = error.retry_after if error is not None and error.retry_after is not None else 0.0
        return max(jittered, floor)
