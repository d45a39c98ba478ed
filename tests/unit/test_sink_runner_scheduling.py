"""The sink runner's pure pieces: per-partition watermark, key scheduler (order, coalescing, revoke)
and the target-call slots."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.records import SourceRecord
from sinks.runner import ApplySlots, Job, KeyId, KeyScheduler, PartitionOffsets, key_of

# -- PartitionOffsets --------------------------------------------------------------------------------


def test_watermark_is_none_before_anything_was_read() -> None:
    offsets = PartitionOffsets()
    assert offsets.watermark is None
    assert offsets.to_commit() is None


def test_watermark_stops_at_the_first_incomplete_offset() -> None:
    offsets = PartitionOffsets()
    for offset in (10, 11, 12, 13):
        assert offsets.read(offset)
    offsets.complete(11)
    offsets.complete(13)
    assert offsets.watermark == 10
    offsets.complete(10)
    assert offsets.watermark == 12
    assert offsets.outstanding == 2
    offsets.complete(12)
    assert offsets.watermark == 14
    assert offsets.outstanding == 0


def test_gaps_in_offsets_commit_past_the_last_read_record() -> None:
    # Compaction and transaction markers leave holes; the commit is still "after the last one read".
    offsets = PartitionOffsets()
    for offset in (3, 7, 20):
        offsets.read(offset)
    for offset in (20, 3, 7):
        offsets.complete(offset)
    assert offsets.watermark == 21


def test_an_offset_read_again_is_ignored() -> None:
    offsets = PartitionOffsets()
    assert offsets.read(5)
    assert offsets.read(6)
    assert not offsets.read(5)
    assert not offsets.read(6)
    assert offsets.outstanding == 2


def test_to_commit_only_reports_a_watermark_that_moved() -> None:
    offsets = PartitionOffsets()
    offsets.read(0)
    offsets.read(1)
    offsets.complete(0)
    assert offsets.to_commit() == 1
    offsets.committed = 1
    assert offsets.to_commit() is None
    offsets.complete(1)
    assert offsets.to_commit() == 2


@settings(max_examples=300, deadline=None)
@given(
    offsets=st.lists(st.integers(0, 500), min_size=1, max_size=60, unique=True).map(sorted),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    completed_share=st.floats(min_value=0.0, max_value=1.0),
)
def test_random_completion_order_never_commits_past_an_incomplete_record(
    offsets: list[int], seed: int, completed_share: float
) -> None:
    rng = random.Random(seed)
    tracker = PartitionOffsets()
    incomplete = set(offsets)
    order = offsets[:]
    rng.shuffle(order)
    done_count = round(len(order) * completed_share)
    for offset in offsets:
        tracker.read(offset)
    for offset in order[:done_count]:
        tracker.complete(offset)
        incomplete.discard(offset)
        mark = tracker.watermark
        assert mark is not None
        # The committed offset is the next one to read: everything below it must be complete.
        assert all(pending >= mark for pending in incomplete)
        # ... and it is as far as it can be: the first incomplete offset, or past the last one read.
        assert mark == (min(incomplete) if incomplete else offsets[-1] + 1)
    assert tracker.outstanding == len([o for o in offsets if o >= (tracker.watermark or 0)])


# -- KeyScheduler ------------------------------------------------------------------------------------


def _record(key: str | None, offset: int, *, partition: int = 0, topic: str = "t") -> SourceRecord:
    return SourceRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        key=None if key is None else key.encode(),
        value=b"v",
    )


def _drain(scheduler: KeyScheduler, now: float) -> list[Job]:
    jobs = []
    while (job := scheduler.next_ready(now)) is not None:
        jobs.append(job)
    return jobs


def test_one_job_per_key_at_a_time_and_keys_in_arrival_order() -> None:
    scheduler = KeyScheduler()
    for offset, key in enumerate(["a", "b", "a", "c", "b", "a"]):
        scheduler.add(_record(key, offset), now=offset)
    first = _drain(scheduler, now=10)
    # One job per idle key; the second "a" waits for the first.
    assert [(job.key, job.newest.offset) for job in first] == [(b"a", 0), (b"b", 1), (b"c", 3)]
    assert scheduler.busy_keys == 3
    assert scheduler.queued_records == 3
    scheduler.done(b"b")
    assert [(j.key, j.newest.offset) for j in _drain(scheduler, now=10)] == [(b"b", 4)]
    scheduler.done(b"a")
    assert [(j.key, j.newest.offset) for j in _drain(scheduler, now=10)] == [(b"a", 2)]
    scheduler.done(b"a")
    assert [(j.key, j.newest.offset) for j in _drain(scheduler, now=10)] == [(b"a", 5)]
    assert scheduler.queued_records == 0


def test_each_key_sees_its_records_in_offset_order_whatever_the_completion_order() -> None:
    rng = random.Random(7)
    scheduler = KeyScheduler()
    keys = [f"k{n}" for n in range(5)]
    produced: dict[bytes, list[int]] = {}
    for offset in range(200):
        key = rng.choice(keys)
        scheduler.add(_record(key, offset), now=0)
        produced.setdefault(key.encode(), []).append(offset)
    applied: dict[bytes, list[int]] = {}
    running: list[Job] = _drain(scheduler, now=0)
    while running:
        job = running.pop(rng.randrange(len(running)))
        applied.setdefault(job.key, []).append(job.newest.offset)  # type: ignore[arg-type]
        scheduler.done(job.key)
        running += _drain(scheduler, now=0)
    assert applied == produced


def test_records_without_a_key_are_ordered_by_partition() -> None:
    scheduler = KeyScheduler(coalesce_s=1.0)
    scheduler.add(_record(None, 0, partition=0), now=0)
    scheduler.add(_record(None, 1, partition=0), now=0)
    scheduler.add(_record(None, 0, partition=1), now=0)
    assert key_of(_record(None, 0, partition=1)) == ("t", 1)
    jobs = _drain(scheduler, now=5)
    # Never coalesced (they are different entities), one running per partition.
    assert [(job.partition, [r.offset for r in job.records]) for job in jobs] == [
        (("t", 0), [0]),
        (("t", 1), [0]),
    ]


def test_coalescing_keeps_the_newest_record_and_carries_the_older_ones() -> None:
    scheduler = KeyScheduler(coalesce_s=2.0)
    assert not scheduler.add(_record("sku", 0), now=100.0)
    assert scheduler.add(_record("sku", 1), now=100.5)
    assert scheduler.add(_record("sku", 2), now=101.9)
    assert scheduler.next_ready(now=101.99) is None  # the window counts from the first record
    assert scheduler.next_ready_at() == 102.0
    job = scheduler.next_ready(now=102.0)
    assert job is not None
    assert job.newest.offset == 2
    assert [record.offset for record in job.records] == [0, 1, 2]
    assert scheduler.queued_records == 0


def test_a_record_arriving_while_its_key_runs_starts_a_new_window() -> None:
    scheduler = KeyScheduler(coalesce_s=1.0)
    scheduler.add(_record("sku", 0), now=0.0)
    running = scheduler.next_ready(now=1.0)
    assert running is not None
    scheduler.add(_record("sku", 1), now=1.2)
    scheduler.add(_record("sku", 2), now=1.4)
    assert scheduler.next_ready(now=5.0) is None  # the key is busy
    scheduler.done(b"sku")
    job = scheduler.next_ready(now=5.0)
    assert job is not None
    assert [r.offset for r in job.records] == [1, 2]


def test_coalescing_never_merges_records_of_different_partitions() -> None:
    # The same key on two source topics: completing one partition's record must not wait for another's.
    scheduler = KeyScheduler(coalesce_s=1.0)
    scheduler.add(_record("k", 0, topic="a"), now=0)
    assert not scheduler.add(_record("k", 0, topic="b"), now=0)
    first = scheduler.next_ready(now=2)
    assert first is not None
    assert first.partition == ("a", 0)
    scheduler.done(b"k")
    second = scheduler.next_ready(now=2)
    assert second is not None
    assert second.partition == ("b", 0)


def test_a_later_key_is_not_held_behind_an_earlier_key_still_coalescing() -> None:
    scheduler = KeyScheduler(coalesce_s=1.0)
    scheduler.add(_record("slow", 0), now=0.0)
    running = scheduler.next_ready(now=1.0)
    assert running is not None
    scheduler.add(_record("slow", 1), now=1.0)  # ready at 2.0, but its key is busy
    scheduler.add(_record("other", 2), now=1.1)  # ready at 2.1
    scheduler.done(b"slow")
    assert [(j.key, j.ready_at) for j in _drain(scheduler, now=3.0)] == [(b"slow", 2.0), (b"other", 2.1)]


def test_drop_removes_queued_jobs_of_revoked_partitions_only() -> None:
    scheduler = KeyScheduler()
    scheduler.add(_record("a", 0, partition=0), now=0)
    scheduler.add(_record("a", 1, partition=0), now=0)
    scheduler.add(_record("b", 0, partition=1), now=0)
    scheduler.add(_record("c", 2, partition=0), now=0)
    running = scheduler.next_ready(now=0)  # a@0 runs
    assert running is not None
    dropped = scheduler.drop([("t", 0)])
    assert sorted((job.key, job.newest.offset) for job in dropped) == [(b"a", 1), (b"c", 2)]
    assert scheduler.queued_records == 1
    scheduler.done(b"a")
    assert [(j.key, j.newest.offset) for j in _drain(scheduler, now=0)] == [(b"b", 0)]


# -- ApplySlots --------------------------------------------------------------------------------------


def test_slots_bound_the_calls_and_serve_waiters_first_come_first_served() -> None:
    async def scenario() -> list[str]:
        slots = ApplySlots(2)
        assert slots.try_take()
        assert slots.try_take()
        assert not slots.try_take()
        order: list[str] = []

        async def waiter(name: str) -> None:
            await slots.take()
            order.append(name)

        first = asyncio.create_task(waiter("first"))
        await asyncio.sleep(0)
        second = asyncio.create_task(waiter("second"))
        await asyncio.sleep(0)
        assert slots.waiting == 2
        slots.release()
        # A free slot goes to a waiter, never to try_take (new keys do not overtake retrying ones).
        assert not slots.try_take()
        await asyncio.sleep(0)
        slots.release()
        await asyncio.gather(first, second)
        assert slots.used == 2
        slots.release()
        slots.release()
        assert slots.used == 0
        return order

    assert asyncio.run(scenario()) == ["first", "second"]


def test_a_cancelled_waiter_does_not_leak_its_slot() -> None:
    async def scenario() -> int:
        slots = ApplySlots(1)
        assert slots.try_take()
        waiting = asyncio.create_task(slots.take())
        await asyncio.sleep(0)
        slots.release()  # handed to the waiter ...
        waiting.cancel()  # ... which is cancelled before it ran
        with pytest.raises(asyncio.CancelledError):
            await waiting
        return slots.used

    assert asyncio.run(scenario()) == 0


@settings(max_examples=200, deadline=None)
@given(
    arrivals=st.lists(st.tuples(st.sampled_from("abcd"), st.integers(0, 1)), min_size=1, max_size=80),
    coalesce=st.sampled_from([None, 0.0, 1.5]),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_interleavings_keep_every_key_serial_in_order_and_lose_nothing(
    arrivals: list[tuple[str, int]], coalesce: float | None, seed: int
) -> None:
    rng = random.Random(seed)
    scheduler = KeyScheduler(coalesce_s=coalesce)
    next_offset = {0: 0, 1: 0}
    running: list[Job] = []
    finished: list[Job] = []
    now = 0.0
    pending = list(arrivals)
    while pending or running or scheduler.queued_records:
        now += rng.choice([0.0, 0.5, 1.0])
        action = rng.random()
        if pending and action < 0.5:
            key, partition = pending.pop(0)
            scheduler.add(_record(key, next_offset[partition], partition=partition), now)
            next_offset[partition] += 1
        elif running and action < 0.8:
            ended = running.pop(rng.randrange(len(running)))
            finished.append(ended)
            scheduler.done(ended.key)
        while (started := scheduler.next_ready(now)) is not None:
            assert started.key not in {other.key for other in running}, "a key ran twice at once"
            running.append(started)
        if not pending and not running:
            now += 10  # let coalescing windows pass
    seen = [(r.key, r.partition, r.offset) for job in finished for r in job.records]
    assert len(seen) == len(arrivals) == len(set(seen))  # every record completed exactly once
    per_key: dict[KeyId, list[tuple[int, int]]] = {}
    for job in finished:
        assert all(r.key == job.newest.key and r.partition == job.newest.partition for r in job.records)
        assert [r.offset for r in job.records] == sorted(r.offset for r in job.records)
        if coalesce is None:
            assert len(job.records) == 1
        per_key.setdefault(job.key, []).extend((r.partition, r.offset) for r in job.records)
    for key_id, positions in per_key.items():
        for partition in (0, 1):
            offsets = [offset for p, offset in positions if p == partition]
            assert offsets == sorted(offsets), f"{key_id!r} out of order on partition {partition}"
