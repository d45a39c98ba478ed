"""The adaptive rate limiter on a virtual clock: pacing, 429 handling (AIMD + Retry-After), transport."""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx
import pytest

from pipeline.metrics import RATE_LIMIT_WAIT_SECONDS
from pipeline.ratelimit import (
    AdaptiveRateLimiter,
    RateLimitedTransport,
    RateLimiters,
    RatePolicy,
    retry_after_seconds,
)

T = TypeVar("T")


class VirtualTime:
    """A clock that only moves when someone sleeps on it (so tests are exact and instant)."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


def limiter(policy: RatePolicy, vt: VirtualTime, target: str = "test") -> AdaptiveRateLimiter:
    return AdaptiveRateLimiter(policy, target=target, clock=vt.clock, sleep=vt.sleep)


def test_permits_are_paced_at_the_rate_after_the_burst() -> None:
    vt = VirtualTime()
    lim = limiter(RatePolicy(ceiling=5.0, burst=3.0), vt)

    async def scenario() -> list[float]:
        times = []
        for _ in range(8):
            await lim.acquire()
            times.append(vt.now)
        return times

    times = run(scenario())
    assert times[:3] == [0.0, 0.0, 0.0]
    assert times[3:] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])


def test_concurrent_waiters_are_served_in_arrival_order() -> None:
    vt = VirtualTime()
    lim = limiter(RatePolicy(ceiling=10.0), vt)
    order: list[int] = []

    async def worker(n: int) -> None:
        await lim.acquire()
        order.append(n)

    async def scenario() -> None:
        await asyncio.gather(*(worker(n) for n in range(20)))

    run(scenario())
    assert order == list(range(20))
    assert vt.now == pytest.approx(1.9)


def test_a_429_cuts_the_rate_and_pauses_every_caller_for_retry_after() -> None:
    vt = VirtualTime()
    lim = limiter(RatePolicy(ceiling=10.0, decrease=0.5), vt)

    async def scenario() -> tuple[float, float]:
        permit = await lim.acquire()
        pause = lim.on_throttled(permit, 3.0)
        await lim.acquire()
        return pause, vt.now

    pause, resumed_at = run(scenario())
    assert pause == 3.0
    assert lim.rate == pytest.approx(5.0)
    # No burst after the pause: the first permit leaves one slot (at the new rate) after Retry-After.
    assert resumed_at == pytest.approx(3.0 + 1 / 5.0)
    assert lim.stats.throttled == 1
    assert lim.stats.cuts == 1


def test_several_429s_from_one_stretch_cut_once_but_each_retry_after_counts() -> None:
    vt = VirtualTime()
    lim = limiter(RatePolicy(ceiling=8.0, decrease=0.5, burst=4.0), vt)

    async def scenario() -> None:
        permits = [await lim.acquire() for _ in range(4)]
        lim.on_throttled(permits[0], 1.0)
        lim.on_throttled(permits[1], 5.0)
        lim.on_throttled(permits[2], 2.0)
        assert lim.blocked_for == pytest.approx(5.0)
        later = await lim.acquire()  # granted after the cut: its 429 cuts again
        lim.on_throttled(later, 1.0)

    run(scenario())
    assert lim.stats.throttled == 4
    assert lim.stats.cuts == 2
    assert lim.rate == pytest.approx(2.0)


def test_missing_retry_after_uses_the_default_backoff_and_huge_ones_are_capped() -> None:
    vt = VirtualTime()
    lim = limiter(RatePolicy(ceiling=1.0, default_backoff=2.5, max_backoff=30.0), vt)

    async def scenario() -> tuple[float, float]:
        first = lim.on_throttled(await lim.acquire(), None)
        second = lim.on_throttled(await lim.acquire(), 86_400.0)
        return first, second

    assert run(scenario()) == (2.5, 30.0)


def test_successes_creep_the_rate_up_additively_and_never_past_the_ceiling() -> None:
    vt = VirtualTime()
    lim = limiter(RatePolicy(ceiling=10.0, initial=4.0, increase=1.0), vt)

    async def scenario() -> list[float]:
        rates = []
        for _ in range(200):
            lim.on_success(await lim.acquire())
            rates.append(lim.rate)
        return rates

    rates = run(scenario())
    assert rates == sorted(rates)
    assert rates[-1] == 10.0
    # About +1 request/s per second of traffic: from 4 to 10 takes roughly six seconds.
    reached = next(i for i, rate in enumerate(rates) if rate >= 10.0)
    assert 25 <= reached <= 60


def test_cuts_stop_at_the_floor() -> None:
    vt = VirtualTime()
    lim = limiter(RatePolicy(ceiling=10.0, floor=2.0, decrease=0.5), vt)

    async def scenario() -> None:
        for _ in range(10):
            lim.on_throttled(await lim.acquire(), 0.0)

    run(scenario())
    assert lim.rate == 2.0
    assert lim.stats.min_rate == 2.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ceiling": 0.0},
        {"ceiling": math.inf},
        {"ceiling": 5.0, "floor": 6.0},
        {"ceiling": 5.0, "initial": 9.0},
        {"ceiling": 5.0, "decrease": 1.0},
        {"ceiling": 5.0, "burst": 0.5},
        {"ceiling": 5.0, "increase": 0.0},
        {"ceiling": 5.0, "default_backoff": 10.0, "max_backoff": 1.0},
    ],
)
def test_nonsense_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"\w"):
        RatePolicy(**kwargs)


def test_per_window_policy_and_one_limiter_per_credential() -> None:
    policy = RatePolicy.per_window(600, 60.0)
    assert policy.ceiling == 10.0
    assert policy.additive_step == pytest.approx(0.5)
    limiters = RateLimiters(policy, target="t")
    assert limiters.for_credential("a") is limiters.for_credential("a")
    assert limiters.for_credential("a") is not limiters.for_credential("b")


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, None), ("3", 3.0), (" 0.5 ", 0.5), ("-1", None), ("soon", None), ("nan", None)],
)
def test_retry_after_header_values(header: str | None, expected: float | None) -> None:
    assert retry_after_seconds(header) == expected


def test_waits_are_observed_in_the_metric() -> None:
    vt = VirtualTime()
    lim = limiter(RatePolicy(ceiling=2.0), vt, target="metric-test")
    before = _histogram_sum("metric-test")

    async def scenario() -> None:
        for _ in range(3):
            await lim.acquire()

    run(scenario())
    assert _histogram_sum("metric-test") - before == pytest.approx(0.0 + 0.5 + 0.5)


def _histogram_sum(target: str) -> float:
    for metric in RATE_LIMIT_WAIT_SECONDS.collect():
        for sample in metric.samples:
            if sample.name.endswith("_sum") and sample.labels.get("target") == target:
                return float(sample.value)
    return 0.0


# -- the transport ------------------------------------------------------------------------------------


def _transport(
    handler: Callable[[httpx.Request], httpx.Response], lim: AdaptiveRateLimiter, **kwargs: object
) -> httpx.AsyncClient:
    inner = httpx.MockTransport(handler)
    return httpx.AsyncClient(transport=RateLimitedTransport(inner, lim, **kwargs))  # type: ignore[arg-type]


def test_transport_replays_a_429_after_its_retry_after_and_returns_the_success() -> None:
    vt = VirtualTime()
    lim = limiter(RatePolicy(ceiling=10.0), vt)
    seen: list[tuple[float, bytes]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((vt.now, request.content))
        if len(seen) <= 2:
            return httpx.Response(429, headers={"Retry-After": "2"})
        return httpx.Response(200, json={"ok": True})

    async def scenario() -> httpx.Response:
        async with _transport(handler, lim) as client:
            return await client.post("http://target/x", json={"a": 1})

    response = run(scenario())
    assert response.status_code == 200
    assert [body for _, body in seen] == [b'{"a":1}'] * 3
    assert seen[1][0] >= 2.0
    assert seen[2][0] >= 4.0
    assert lim.stats.throttled == 2


def test_transport_gives_the_429_back_after_its_retries() -> None:
    vt = VirtualTime()
    lim = limiter(RatePolicy(ceiling=10.0), vt)
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(429, headers={"Retry-After": "1"})

    async def scenario() -> int:
        async with _transport(handler, lim, max_throttled_retries=2) as client:
            return (await client.get("http://target/x")).status_code

    assert run(scenario()) == 429
    assert calls == 3


def test_transport_lets_exempt_requests_pass_without_a_permit() -> None:
    vt = VirtualTime()
    lim = limiter(RatePolicy(ceiling=1.0), vt)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200)

    async def scenario() -> None:
        async with _transport(
            handler, lim, applies_to=lambda request: request.url.path != "/token"
        ) as client:
            for _ in range(5):
                await client.post("http://target/token")
            await client.get("http://target/api")

    run(scenario())
    assert lim.stats.permits == 1
    assert vt.now == 0.0


# -- AIMD against a simulated sliding-window quota ---------------------------------------------------


class SlidingWindowQuota:
    """The quota model of an API gateway: N requests per client in any window of W seconds."""

    def __init__(self, vt: VirtualTime, requests: int, window_s: float) -> None:
        self.vt, self.requests, self.window_s = vt, requests, window_s
        self.log: deque[float] = deque()
        self.admitted = 0
        self.refused = 0

    def call(self) -> float | None:
        now = self.vt.now
        while self.log and self.log[0] <= now - self.window_s:
            self.log.popleft()
        if len(self.log) >= self.requests:
            self.refused += 1
            return float(max(1, math.ceil(self.log[0] + self.window_s - now)))
        self.log.append(now)
        self.admitted += 1
        return None


def test_aimd_learns_an_unknown_quota_with_high_utilisation_and_few_429s() -> None:
    vt = VirtualTime()
    quota = SlidingWindowQuota(vt, requests=600, window_s=60.0)  # 10 requests/s
    # The limiter is told a ceiling 50 % above the real quota and has to find it.
    lim = limiter(RatePolicy(ceiling=15.0, burst=1.0), vt)
    calls = 2000
    pending = list(range(calls))

    async def worker() -> None:
        while pending:
            pending.pop()
            while True:
                permit = await lim.acquire()
                retry_after = quota.call()
                if retry_after is None:
                    lim.on_success(permit)
                    break
                lim.on_throttled(permit, retry_after)

    async def scenario() -> None:
        await asyncio.gather(*(worker() for _ in range(50)))

    run(scenario())
    assert quota.admitted == calls
    utilisation = calls / vt.now / 10.0
    assert utilisation >= 0.95
    assert quota.refused / (calls + quota.refused) <= 0.005
