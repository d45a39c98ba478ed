"""Adaptive client-side rate limiting: one async token bucket per credential, AIMD on 429.

A target's quota (requests per time window, per client credential) is usually an admin setting we
cannot read, so the limiter learns it:

- :meth:`AdaptiveRateLimiter.acquire` hands out one permit per request, paced by a token bucket at the
  current rate (``burst`` permits may go at once). Waiters are served first come, first served.
- A 429 (:meth:`~AdaptiveRateLimiter.on_throttled`) cuts the rate multiplicatively (``decrease``) and
  stops *every* caller of that credential until ``Retry-After`` has passed (or ``default_backoff``
  when the target gave no hint). Several 429s caused by the same over-fast stretch (permits handed out
  before the cut) cut the rate once, as TCP does per window; each one still honours its Retry-After.
- Each success (:meth:`~AdaptiveRateLimiter.on_success`) creeps the rate up additively: ``increase``
  requests/s for every second's worth of successful requests, never above ``ceiling``.

Only the limiter decides when a request may leave; :class:`RateLimitedTransport` applies it to an
``httpx`` client (below auth, so a token refresh replays through the same limit) and replays requests
the target refused with 429 — safe even for non-idempotent writes, because a 429 is answered before
the target runs anything. Time spent waiting is observed in ``RATE_LIMIT_WAIT_SECONDS``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from pipeline.metrics import RATE_LIMIT_WAIT_SECONDS

Clock = Callable[[], float]
_EPSILON = 1e-9
"""Float slack: a slot computed as "due now" must not turn into an endless series of nano-sleeps."""
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class RatePolicy:
    """How one credential's limiter behaves. Rates are requests per second.

    ``ceiling`` is the most the limiter will ever send (set it to the known quota, or above when the
    quota is unknown: 429s then find it). ``initial`` is the starting rate (default: the ceiling),
    ``floor`` the least it cuts to. ``decrease`` multiplies the rate on a 429; ``increase`` is added per
    second of successful traffic. ``burst`` permits may leave back to back after an idle spell.
    ``default_backoff`` is the pause after a 429 without ``Retry-After``; ``max_backoff`` caps any pause
    (a broken header must not stall a stage for hours).
    """

    ceiling: float
    initial: float | None = None
    floor: float = 0.1
    decrease: float = 0.7
    increase: float | None = None
    burst: float = 1.0
    default_backoff: float = 1.0
    max_backoff: float = 300.0

    def __post_init__(self) -> None:
        if not (self.ceiling > 0 and math.isfinite(self.ceiling)):
            raise ValueError("ceiling must be a positive rate (requests per second)")
        if not 0 < self.floor <= self.ceiling:
            raise ValueError("floor must be > 0 and <= ceiling")
        if self.initial is not None and not self.floor <= self.initial <= self.ceiling:
            raise ValueError("initial must lie between floor and ceiling")
        if not 0 < self.decrease < 1:
            raise ValueError("decrease must be a factor between 0 and 1")
        if self.increase is not None and self.increase <= 0:
            raise ValueError("increase must be > 0")
        if self.burst < 1:
            raise ValueError("burst must be >= 1 (a bucket must hold at least one permit)")
        if self.default_backoff < 0 or self.max_backoff < self.default_backoff:
            raise ValueError("need 0 <= default_backoff <= max_backoff")

    @classmethod
    def per_window(cls, requests: int, window_s: float, **overrides: float) -> RatePolicy:
        """A policy whose ceiling is ``requests`` per ``window_s`` (how quotas are usually written)."""
        if requests <= 0 or window_s <= 0:
            raise ValueError("requests and window_s must be > 0")
        return cls(ceiling=requests / window_s, **overrides)

    @property
    def start_rate(self) -> float:
        """The rate a fresh limiter starts at."""
        return self.initial if self.initial is not None else self.ceiling

    @property
    def additive_step(self) -> float:
        """Requests/s gained per second of success; default: 5 % of the ceiling."""
        return self.increase if self.increase is not None else self.ceiling * 0.05


@dataclass(frozen=True)
class Permit:
    """Leave to send one request; hand it back to ``on_success`` / ``on_throttled``."""

    epoch: int
    waited: float


@dataclass
class LimiterStats:
    """What a limiter did: permits granted, 429s seen, rate cuts, total wait, lowest rate reached."""

    permits: int = 0
    successes: int = 0
    throttled: int = 0
    cuts: int = 0
    waited_s: float = 0.0
    blocked_s: float = 0.0
    min_rate: float = field(default=math.inf)


class AdaptiveRateLimiter:
    """The limiter of one credential at one target (``target`` labels the wait metric).

    Safe for any number of concurrent callers on one event loop. ``clock``/``sleep`` exist for tests.
    """

    def __init__(
        self,
        policy: RatePolicy,
        *,
        target: str,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.policy = policy
        self.target = target
        self._clock = clock
        self._sleep = sleep
        self._rate = policy.start_rate
        self._tokens = policy.burst
        self._updated = clock()
        self._blocked_until = 0.0
        self._epoch = 0
        self._queue = asyncio.Lock()  # FIFO: the head waiter sleeps for its slot, the rest queue behind
        self.stats = LimiterStats(min_rate=self._rate)

    @property
    def rate(self) -> float:
        """The current pace in requests per second."""
        return self._rate

    @property
    def blocked_for(self) -> float:
        """Seconds until a 429's Retry-After has passed (0 when not blocked)."""
        return max(0.0, self._blocked_until - self._clock())

    def _refill(self, now: float) -> None:
        if now > self._updated:
            self._tokens = min(self.policy.burst, self._tokens + (now - self._updated) * self._rate)
            self._updated = now

    async def acquire(self) -> Permit:
        """Wait for this credential's next slot (and any Retry-After in force); returns the permit."""
        started = self._clock()
        async with self._queue:
            while True:
                now = self._clock()
                if now < self._blocked_until:
                    await self._sleep(self._blocked_until - now)
                    continue  # a later 429 may have pushed the block further out
                self._refill(now)
                if self._tokens >= 1.0 - _EPSILON:
                    self._tokens -= 1.0
                    break
                await self._sleep((1.0 - self._tokens) / self._rate)
        waited = max(0.0, self._clock() - started)
        self.stats.permits += 1
        self.stats.waited_s += waited
        RATE_LIMIT_WAIT_SECONDS.labels(self.target).observe(waited)
        return Permit(self._epoch, waited)

    def on_success(self, permit: Permit) -> None:
        """The request went through: creep the rate up (``increase`` per second of successes)."""
        del permit  # every success counts, whichever epoch it was granted in
        self.stats.successes += 1
        self._refill(self._clock())
        self._rate = min(self.policy.ceiling, self._rate + self.policy.additive_step / self._rate)

    def on_throttled(self, permit: Permit, retry_after: float | None) -> float:
        """The target answered 429: cut the rate (once per over-fast stretch) and pause every caller.

        Returns the pause in seconds that is now in force (``Retry-After``, else ``default_backoff``,
        capped at ``max_backoff``).
        """
        self.stats.throttled += 1
        now = self._clock()
        self._refill(now)
        if permit.epoch == self._epoch:
            self._rate = max(self.policy.floor, self._rate * self.policy.decrease)
            self._epoch += 1
            self.stats.cuts += 1
            self.stats.min_rate = min(self.stats.min_rate, self._rate)
        pause = self.policy.default_backoff if retry_after is None else retry_after
        pause = min(max(0.0, pause), self.policy.max_backoff)
        until = now + pause
        if until > self._blocked_until:
            self.stats.blocked_s += until - max(now, self._blocked_until)
            self._blocked_until = until
        # No burst after a pause: the bucket restarts empty at the new, lower rate.
        self._tokens = 0.0
        self._updated = max(self._updated, until)
        return pause


class RateLimiters:
    """One limiter per credential (client id), all with the same policy; created on first use."""

    def __init__(self, policy: RatePolicy, *, target: str, clock: Clock = time.monotonic) -> None:
        self._policy = policy
        self._target = target
        self._clock = clock
        self._limiters: dict[str, AdaptiveRateLimiter] = {}

    def for_credential(self, credential: str) -> AdaptiveRateLimiter:
        """The limiter of ``credential`` (an id, never a secret)."""
        limiter = self._limiters.get(credential)
        if limiter is None:
            limiter = AdaptiveRateLimiter(self._policy, target=self._target, clock=self._clock)
            self._limiters[credential] = limiter
        return limiter


def retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` delta in seconds; None when absent or not a number (HTTP dates: no hint)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


class RateLimitedTransport(httpx.AsyncBaseTransport):
    """An ``httpx`` transport that sends each request only with a permit from ``limiter``.

    A 429 is fed back to the limiter and the same request is sent again after the pause, at most
    ``max_throttled_retries`` times; after that the 429 response is returned for the client's error
    mapping (a retryable failure). Requests for which ``applies_to`` is false (a token endpoint outside
    the quota) pass straight through.
    """

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        limiter: AdaptiveRateLimiter,
        *,
        max_throttled_retries: int = 5,
        applies_to: Callable[[httpx.Request], bool] | None = None,
    ) -> None:
        if max_throttled_retries < 0:
            raise ValueError("max_throttled_retries must be >= 0")
        self._inner = inner
        self.limiter = limiter
        self._max_retries = max_throttled_retries
        self._applies_to = applies_to

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send under the limiter; replay 429s (the target ran nothing) after their Retry-After."""
        if self._applies_to is not None and not self._applies_to(request):
            return await self._inner.handle_async_request(request)
        attempt = 0
        while True:
            permit = await self.limiter.acquire()
            # A transport error propagates as is: not the quota's doing, so the rate stays.
            response = await self._inner.handle_async_request(request)
            if response.status_code != 429:
                self.limiter.on_success(permit)
                return response
            self.limiter.on_throttled(permit, retry_after_seconds(response.headers.get("Retry-After")))
            if attempt >= self._max_retries:
                return response
            attempt += 1
            await response.aclose()

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self._inner.aclose()
