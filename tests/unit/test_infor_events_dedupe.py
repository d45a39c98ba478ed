"""``pipeline.dedupe.DeliveryDeduper``, which the IMS receiver uses on BODIDs: one write per id, a
concurrent duplicate shares the first's outcome, a failed write is forgotten, the window and size bound."""

from __future__ import annotations

import asyncio

import pytest

from pipeline.dedupe import DeliveryDeduper
from pipeline.errors import RetryableError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_second_delivery_is_a_duplicate_and_writes_nothing() -> None:
    writes: list[str] = []

    async def write() -> int:
        writes.append("w")
        return len(writes)

    async def run() -> tuple[bool, int | None, bool, int | None]:
        deduper = DeliveryDeduper(window_s=60, max_entries=10)
        first = await deduper.once("bod-1", write)
        second = await deduper.once("bod-1", write)
        return first.duplicate, first.result, second.duplicate, second.result

    assert asyncio.run(run()) == (False, 1, True, None)
    assert writes == ["w"]


def test_a_concurrent_duplicate_waits_and_shares_the_first_outcome() -> None:
    async def run() -> tuple[list[bool], int]:
        deduper = DeliveryDeduper(window_s=60, max_entries=10)
        release = asyncio.Event()
        writes = 0

        async def write() -> int:
            nonlocal writes
            writes += 1
            await release.wait()
            return 7

        tasks = [asyncio.create_task(deduper.once("bod-1", write)) for _ in range(5)]
        await asyncio.sleep(0)
        release.set()
        outcomes = await asyncio.gather(*tasks)
        return [outcome.duplicate for outcome in outcomes], writes

    duplicates, writes = asyncio.run(run())
    assert writes == 1
    assert duplicates.count(False) == 1
    assert duplicates.count(True) == 4


def test_a_failed_write_fails_its_waiters_and_is_forgotten() -> None:
    async def run() -> tuple[int, bool]:
        deduper = DeliveryDeduper(window_s=60, max_entries=10)
        release = asyncio.Event()

        async def failing() -> int:
            await release.wait()
            raise RetryableError("broker away")

        first = asyncio.create_task(deduper.once("bod-1", failing))
        waiter = asyncio.create_task(deduper.once("bod-1", failing))
        await asyncio.sleep(0)
        release.set()
        failures = 0
        for task in (first, waiter):
            with pytest.raises(RetryableError):
                await task
            failures += 1

        async def succeeding() -> int:
            return 1

        retried = await deduper.once("bod-1", succeeding)
        return failures, retried.duplicate

    assert asyncio.run(run()) == (2, False)


def test_ids_are_forgotten_after_the_window_and_beyond_the_size_bound() -> None:
    clock = Clock()

    async def write() -> None:
        return None

    async def run() -> tuple[bool, bool, bool, int]:
        deduper = DeliveryDeduper(window_s=10, max_entries=2, clock=clock)
        await deduper.once("a", write)
        clock.now += 11
        expired = not deduper.seen("a")
        await deduper.once("b", write)
        await deduper.once("c", write)
        await deduper.once("d", write)  # "b" is the oldest of three: forgotten
        return expired, deduper.seen("b"), deduper.seen("d"), len(deduper)

    assert asyncio.run(run()) == (True, False, True, 2)
