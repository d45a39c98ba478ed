"""Dedupe on webhook-id: acknowledged ids answer duplicate, in-flight duplicates wait for the first."""

from __future__ import annotations

import asyncio

import pytest

from ingest.prestashop_webhooks.dedupe import Once, WebhookDeduper
from pipeline.errors import RetryableError


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_acknowledged_id_is_not_produced_again() -> None:
    deduper = WebhookDeduper(window_s=60, max_entries=10)
    calls: list[str] = []

    async def produce() -> int:
        calls.append("p")
        return 7

    async def scenario() -> tuple[Once[int], Once[int]]:
        return await deduper.once("a", produce), await deduper.once("a", produce)

    first, second = asyncio.run(scenario())
    assert first == Once(False, 7)
    assert second == Once(True, None)
    assert calls == ["p"]


def test_in_flight_duplicates_wait_for_the_first_outcome() -> None:
    deduper = WebhookDeduper(window_s=60, max_entries=10)
    calls = 0

    async def scenario() -> list[Once[int]]:
        release = asyncio.Event()

        async def produce() -> int:
            nonlocal calls
            calls += 1
            await release.wait()
            return 1

        tasks = [asyncio.create_task(deduper.once("a", produce)) for _ in range(5)]
        await asyncio.sleep(0.01)
        assert not any(task.done() for task in tasks)  # all wait on the one produce
        release.set()
        return await asyncio.gather(*tasks)

    results = asyncio.run(scenario())
    assert calls == 1
    assert results[0] == Once(False, 1)
    assert results[1:] == [Once(True, None)] * 4


def test_a_failed_first_attempt_fails_its_waiters_and_is_forgotten() -> None:
    deduper = WebhookDeduper(window_s=60, max_entries=10)
    attempts = 0

    async def scenario() -> tuple[list[BaseException | Once[int]], Once[int]]:
        release = asyncio.Event()

        async def failing() -> int:
            nonlocal attempts
            attempts += 1
            await release.wait()
            raise RetryableError("broker away")

        async def working() -> int:
            nonlocal attempts
            attempts += 1
            return 2

        tasks = [asyncio.create_task(deduper.once("a", failing)) for _ in range(3)]
        await asyncio.sleep(0.01)
        release.set()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        retry = await deduper.once("a", working)
        return outcomes, retry

    outcomes, retry = asyncio.run(scenario())
    assert all(isinstance(outcome, RetryableError) for outcome in outcomes)
    assert retry == Once(False, 2)
    assert attempts == 2


def test_ids_are_forgotten_after_the_window_and_beyond_the_size_limit() -> None:
    clock = _Clock()
    deduper = WebhookDeduper(window_s=10, max_entries=3, clock=clock)

    async def produce() -> None:
        return None

    async def scenario() -> None:
        for key in ("a", "b", "c", "d"):
            await deduper.once(key, produce)

    asyncio.run(scenario())
    assert len(deduper) == 3
    assert not deduper.seen("a")  # oldest dropped for size
    assert deduper.seen("d")
    clock.now += 11
    assert not deduper.seen("d")  # beyond the window


@pytest.mark.parametrize("key", ["x", "shop\x00id"])
def test_seen_is_false_for_unknown_keys(key: str) -> None:
    assert not WebhookDeduper(window_s=1, max_entries=1).seen(key)
