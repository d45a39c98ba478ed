"""THE loop every sink runs on: Kafka in, key-ordered parallel ``apply`` out, the contiguous watermark
committed.

Per record (see :mod:`sinks.base` for what a sink is)::

    Avro decode (AvroCodec)  ──InvalidMessage──────────────────────────────▶ DLQ, acked ─▶ complete
    sink.decode               ──Skip────────────────────────────────────────────────────▶ complete
    breaker admits ─▶ await sink.apply ──Applied──────────────────────────────────────────▶ complete
                                        ──InvalidMessage ─▶ DlqLimit ─▶ DLQ, acked ───────▶ complete
                                        ──RetryableError ─▶ back off (jitter, >= retry_after), same
                                                            record again; the key is held
                                        ──anything else ──▶ the runner stops; never committed

Ordering and parallelism (the model of Confluent's parallel-consumer): records are grouped by key (a
record without a key is grouped with the rest of its partition). A key's records run strictly one after
the other; different keys run concurrently, at most ``sinks.max_in_flight_keys`` of them calling the
target at once (a key backing off between attempts gives its slot to other keys). A record is
*complete* once applied, skipped, or dead-lettered with the DLQ write acknowledged. Per partition the
committed offset is the contiguous watermark: the first offset that is not complete (or the one after
the last record read), so a crash, a rebalance or a stop never skips an unfinished record; the
finished records after it are applied again by the next owner (``apply`` is idempotent). Offsets are
stored and committed every ``service.commit_interval_s``, on revoke and on the way out.

Coalescing (``sink.coalesce_s``): a key's queued record waits up to ``coalesce_s`` (counted from the
first of them to arrive); a newer record of the same key and partition replaces it meanwhile. Only the
newest is applied; the replaced ones complete together with it (outcome ``coalesced``), never before,
so a crash cannot lose the newest value. A record the sink skips (``Skip``: not for it) does not count
as the newest: the one before it is applied instead, since the key's coalescing window can hold records
that mean nothing to this sink (another warehouse's stock level of the SKU).

Back-pressure and liveness: a partition is paused while ``sinks.max_buffered_per_partition`` of its
records are read but not committable (a held key's backlog, or completions behind an unfinished
record), and resumed below half of that; a poll never asks for more records than the unpaused
partitions have room for. The consumer is polled from one dedicated thread (every consumer call goes
through it, rebalance callbacks included) while decoding and the applies run on the asyncio loop, so a
slow target never starves ``poll``: the member keeps its place in the group (no
``max.poll.interval.ms`` eviction) and rebalances are served. (A writer schema met for the first time
is fetched from the registry on the loop, once per schema id.)

Circuit breaker (:mod:`sinks.breaker`, one per target): while it is open every assigned partition is
paused, held records wait, and one of them probes the target every ``sinks.breaker_probe_s``. Nothing
is dead-lettered because a target is down.

Rebalances use the cooperative-sticky protocol: only the partitions that move are revoked, so adding
a sink instance does not stop every key of every member (an eager rebalance would drain all in-flight
HTTP calls of the whole group each time). On revoke, queued records of the revoked partitions are
dropped, running calls get ``sinks.revoke_timeout_s`` to finish (then they are cancelled), and the
watermark is committed while the partitions are still ours. Lost partitions are dropped without a
commit.

Stop (``stop()``, SIGTERM via :mod:`sinks.main`): fetching stops, running calls get
``sinks.shutdown_timeout_s``, records waiting to retry are abandoned (not complete, so read again), the
watermark is committed, consumer and (own) producer are closed; ``run()`` returns. A bug in a sink,
``DlqLimitExceeded`` or a fatal Kafka error stop the runner the same way, without completing the
failing record, and ``run()`` raises it.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from pipeline.dlq import DeadLetterProducer, DlqLimit
from pipeline.errors import DlqLimitExceeded, InvalidMessage, RetryableError
from pipeline.kafka_config import LibrdkafkaConfig
from pipeline.log import correlation_scope
from pipeline.metrics import (
    COMMITS,
    DLQ_LIMIT_TRIPS,
    DLQ_MESSAGES,
    END_TO_END_SECONDS,
    HANDLER_SECONDS,
    MESSAGES,
    RETRIES,
    SINK_BUFFERED_RECORDS,
    SINK_IN_FLIGHT_KEYS,
    SINK_PAUSED_PARTITIONS,
    STAGE_UP,
)
from pipeline.producer import PipelineProducer
from pipeline.records import SourceRecord
from pipeline.retry import Backoff
from pipeline.runner import consumer_config
from pipeline.settings import Settings
from schemas.codec import AvroCodec
from sinks.base import UNCHANGED, Sink, SinkContext, Skip
from sinks.breaker import BreakerState, CircuitBreaker

log = logging.getLogger(__name__)

Partition = tuple[str, int]
"""(topic, partition)."""

KeyId = bytes | Partition
"""What orders records: the key bytes, or (topic, partition) for records without a key."""

COALESCED = "coalesced"
"""Outcome label of a record replaced by a newer one of its key and completed with it."""
INVALID = "invalid"
"""Outcome label of a dead-lettered record."""

_P = ParamSpec("_P")
_T = TypeVar("_T")


def key_of(record: SourceRecord) -> KeyId:
    """The ordering key of ``record``: its key bytes, or its partition when it has no key."""
    return record.key if record.key is not None else (record.topic, record.partition)


def retry_reason(error: RetryableError) -> str:
    """A bounded metric label for a retry: the HTTP status when known, else the exception class."""
    return f"http_{error.status}" if error.status is not None else type(error).__name__


# -- pure pieces -------------------------------------------------------------------------------------


class PartitionOffsets:
    """The offsets of one partition read and completed; knows the contiguous watermark.

    Records are read in offset order (gaps allowed: compaction, transaction markers). The watermark is
    the first offset read and not complete, or the offset after the last one read when all are: the
    offset to commit, never past an unfinished record.
    """

    def __init__(self) -> None:
        self._outstanding: deque[int] = deque()
        self._done: set[int] = set()
        self._next: int | None = None
        self.committed: int | None = None
        """The watermark last committed (set by the runner after a successful commit)."""

    def read(self, offset: int) -> bool:
        """Track a record just read; False (ignored) for an offset at or below one already read."""
        if self._next is not None and offset < self._next:
            return False
        self._outstanding.append(offset)
        self._next = offset + 1
        return True

    def complete(self, offset: int) -> None:
        """Mark a read record complete (applied, skipped or dead-lettered)."""
        if not self._outstanding or offset < self._outstanding[0]:
            return  # already below the watermark
        self._done.add(offset)
        while self._outstanding and self._outstanding[0] in self._done:
            self._done.discard(self._outstanding.popleft())

    @property
    def watermark(self) -> int | None:
        """The offset to commit (the next one to read after a restart); None before anything was read."""
        if self._outstanding:
            return self._outstanding[0]
        return self._next

    @property
    def outstanding(self) -> int:
        """Records read and not yet below the watermark (complete or not): the partition's buffer."""
        return len(self._outstanding)

    def to_commit(self) -> int | None:
        """The watermark when it moved past the last committed one, else None."""
        mark = self.watermark
        if mark is None or (self.committed is not None and mark <= self.committed):
            return None
        return mark


@dataclass(eq=False)
class Job:
    """One unit of work of a key: the newest record is applied; the older ones ride along (coalescing)."""

    key: KeyId
    partition: Partition
    records: list[SourceRecord]
    """Oldest first; ``records[-1]`` is the one applied."""
    ready_at: float
    """Monotonic time from which it may start (arrival, plus ``coalesce_s`` when coalescing)."""
    seq: int = 0
    """Creation order, unique per scheduler (ties on ``ready_at`` go to the older job)."""

    @property
    def newest(self) -> SourceRecord:
        """The record that is applied."""
        return self.records[-1]


class KeyScheduler:
    """Queues records per key and hands out jobs so that each key has at most one job running.

    ``add`` queues a record (or, when coalescing, replaces the key's queued record of the same
    partition); ``next_ready`` returns a job whose key is idle and whose ``ready_at`` has come (oldest
    ``ready_at`` first) and marks the key busy; ``done`` frees the key. Pure: time is passed in.
    """

    def __init__(self, coalesce_s: float | None = None) -> None:
        if coalesce_s is not None and coalesce_s < 0:
            raise ValueError("coalesce_s must not be negative")
        self._coalesce_s = coalesce_s
        self._queues: dict[KeyId, deque[Job]] = {}
        self._busy: set[KeyId] = set()
        # (ready_at, seq, key) of each idle key's first queued job; entries go stale when that job is
        # dropped or starts, and are skipped then (cheaper than removing them from the heap).
        self._heap: list[tuple[float, int, KeyId]] = []
        self._seq = itertools.count()
        self._queued_records = 0

    @property
    def queued_records(self) -> int:
        """Records waiting in queues (riders included), not counting running jobs."""
        return self._queued_records

    @property
    def busy_keys(self) -> int:
        """Keys with a job running."""
        return len(self._busy)

    def add(self, record: SourceRecord, now: float) -> bool:
        """Queue ``record``; True when it joined (replaced) a queued record of its key (coalesced)."""
        key = key_of(record)
        where = (record.topic, record.partition)
        queue = self._queues.setdefault(key, deque())
        self._queued_records += 1
        if self._coalesce_s is not None and record.key is not None and queue:
            tail = queue[-1]
            if tail.partition == where:
                tail.records.append(record)
                return True
        ready_at = now + (self._coalesce_s or 0.0)
        job = Job(key, where, [record], ready_at, next(self._seq))
        queue.append(job)
        if len(queue) == 1 and key not in self._busy:
            self._push(job)
        return False

    def next_ready(self, now: float) -> Job | None:
        """The next job that may start now (its key becomes busy), or None."""
        job = self._first()
        if job is None or job.ready_at > now:
            return None
        heapq.heappop(self._heap)
        queue = self._queues[job.key]
        queue.popleft()
        if not queue:
            del self._queues[job.key]
        self._busy.add(job.key)
        self._queued_records -= len(job.records)
        return job

    def next_ready_at(self) -> float | None:
        """When the earliest queued job of an idle key may start; None when there is none."""
        job = self._first()
        return None if job is None else job.ready_at

    def _first(self) -> Job | None:
        """The job of the heap's first valid entry (stale entries are discarded on the way)."""
        while self._heap:
            _, seq, key = self._heap[0]
            queue = self._queues.get(key)
            if key not in self._busy and queue and queue[0].seq == seq:
                return queue[0]
            heapq.heappop(self._heap)
        return None

    def done(self, key: KeyId) -> None:
        """The key's running job ended (whatever the outcome); its next job may start."""
        self._busy.discard(key)
        queue = self._queues.get(key)
        if queue:
            self._push(queue[0])

    def drop(self, partitions: Iterable[Partition]) -> list[Job]:
        """Remove the queued (not running) jobs of ``partitions``; returns them."""
        gone = set(partitions)
        dropped: list[Job] = []
        for key in list(self._queues):
            queue = self._queues[key]
            kept = deque(job for job in queue if job.partition not in gone)
            if len(kept) == len(queue):
                continue
            dropped += [job for job in queue if job.partition in gone]
            if kept:
                self._queues[key] = kept
                if key not in self._busy:
                    self._push(kept[0])
            else:
                del self._queues[key]
        self._queued_records -= sum(len(job.records) for job in dropped)
        return dropped

    def _push(self, job: Job) -> None:
        heapq.heappush(self._heap, (job.ready_at, job.seq, job.key))


class ApplySlots:
    """A counter of concurrent target calls with FIFO waiters (the ``max_in_flight_keys`` bound).

    ``try_take`` never waits (the dispatcher starts a new key only when a slot is free and no retrying
    key is waiting); ``take`` waits in line (keys coming back from a backoff).
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self._used = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def used(self) -> int:
        """Slots taken."""
        return self._used

    @property
    def waiting(self) -> int:
        """Callers waiting in ``take``."""
        return sum(1 for waiter in self._waiters if not waiter.done())

    def try_take(self) -> bool:
        """Take a slot if one is free and nobody waits for one."""
        if self._used < self.limit and not self.waiting:
            self._used += 1
            return True
        return False

    async def take(self) -> None:
        """Wait for a slot (first come, first served)."""
        if self._used < self.limit and not self.waiting:
            self._used += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed over just as we were cancelled: pass it on
            raise
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    def release(self) -> None:
        """Give a slot back (to the first waiter, if any)."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on; ``used`` stays
                return
        self._used -= 1


# -- the runner --------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Work:
    """A job being worked on by its task."""

    job: Job
    task: asyncio.Task[None] | None = None
    calling: bool = False
    """True while inside ``apply`` or a DLQ write: the phase a stop or revoke waits for."""
    leaving: bool = False
    """Set on stop/revoke: finish the current call if any, then do nothing more."""
    holds_slot: bool = False


@dataclass
class _PartitionState:
    offsets: PartitionOffsets = field(default_factory=PartitionOffsets)
    backpressure: bool = False


@dataclass(frozen=True)
class _Released:
    """What a revoke hands back to the kafka thread: offsets to commit, partitions to un-pause."""

    offsets: list[TopicPartition]
    paused: list[Partition]


class _Abandoned(Exception):
    """Internal: the work was given up (stop, revoke) before it completed."""


class SinkRunner:
    """Runs one sink over its source topics as member of ``group_id``; see the module docstring.

    ``run()`` (a coroutine) returns after ``stop()``; it raises what ended it otherwise (a sink bug,
    ``DlqLimitExceeded``, a DLQ write the broker refused, a fatal Kafka error). ``topics`` and
    ``dlq_topic`` are the actual topic names. ``producer`` is the process's shared producer, used for
    the DLQ (one is built and closed when omitted). ``breaker`` is the target's breaker, shared by the
    process's runners of that target (one is built when omitted). ``heartbeat`` is called once per
    poll-loop iteration (health). ``rng`` seeds the backoff jitter.
    """

    def __init__(
        self,
        settings: Settings,
        sink: Sink[Any],
        *,
        topics: Sequence[str],
        group_id: str,
        dlq_topic: str,
        codec: AvroCodec,
        producer: PipelineProducer | None = None,
        breaker: CircuitBreaker | None = None,
        heartbeat: Callable[[], None] | None = None,
        rng: random.Random | None = None,
        consumer_overrides: Mapping[str, str | int | float | bool] | None = None,
        poll_timeout_s: float = 0.05,
        max_poll_records: int = 500,
    ) -> None:
        if not topics:
            raise ValueError("a sink runner needs at least one topic")
        if breaker is not None and breaker.target != sink.target:
            raise ValueError(f"breaker of {breaker.target!r} given to a sink of {sink.target!r}")
        self.sink = sink
        self.stage = sink.name
        self.group_id = group_id
        self._settings = settings
        self._options = settings.sinks
        self._topics = list(topics)
        self._dlq_topic = dlq_topic
        self._codec = codec
        self._shared_producer = producer
        self.breaker = breaker or CircuitBreaker(
            sink.target,
            failure_threshold=settings.sinks.breaker_failures,
            probe_interval_s=settings.sinks.breaker_probe_s,
        )
        self._heartbeat = heartbeat or (lambda: None)
        self._backoff = Backoff(settings.retry, rng)
        self._limit = DlqLimit(settings.dlq)
        self._poll_timeout_s = poll_timeout_s
        self._max_poll_records = max_poll_records
        session_ms = int(settings.sinks.session_timeout_s * 1000)
        overrides: dict[str, str | int | float | bool] = {
            # Only moved partitions are revoked: a new member does not stop every key of the group.
            "partition.assignment.strategy": "cooperative-sticky",
            "session.timeout.ms": session_ms,
            "heartbeat.interval.ms": min(3000, max(100, session_ms // 3)),
            # librdkafka's prefetch queue; its 64 MB default is far more than a sink ever buffers.
            "queued.max.messages.kbytes": 16384,
        }
        overrides.update(consumer_overrides or {})
        self._config: LibrdkafkaConfig = consumer_config(
            settings, stage=f"sink-{sink.name}", group_id=group_id, overrides=overrides
        )
        self._scheduler = KeyScheduler(sink.coalesce_s)
        self._slots = ApplySlots(settings.sinks.max_in_flight_keys)
        self._partitions: dict[Partition, _PartitionState] = {}
        self._paused: set[Partition] = set()
        self._work: set[_Work] = set()
        self._stop_requested = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._kafka_thread: ThreadPoolExecutor | None = None
        self._failure: BaseException | None = None
        self._last_commit = time.monotonic()
        self._dead_letters: DeadLetterProducer | None = None

    # -- public --------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask ``run()`` to finish (see the module docstring); safe from any thread or a signal handler."""
        loop = self._loop
        if loop is None:
            self._stop_requested.set()
            return
        with contextlib.suppress(RuntimeError):  # the loop is already closed: run() is over
            loop.call_soon_threadsafe(self._stop_requested.set)

    @property
    def assigned(self) -> frozenset[Partition]:
        """The partitions this member owns now."""
        return frozenset(self._partitions)

    @property
    def paused(self) -> frozenset[Partition]:
        """The assigned partitions paused now (breaker open, or back-pressure)."""
        return frozenset(self._paused)

    async def run(self) -> None:
        """Consume until ``stop()``; commits the watermark on the way out, whatever the reason."""
        self._loop = asyncio.get_running_loop()
        owned_producer = None
        producer = self._shared_producer
        if producer is None:
            owned_producer = producer = PipelineProducer(
                self._settings.kafka, client_id_suffix=f"sink-{self.stage}-dlq"
            )
        self._dead_letters = DeadLetterProducer(
            producer, topic=self._dlq_topic, stage=self.stage, timeout_s=self._settings.dlq.delivery_timeout_s
        )
        kafka_thread = self._kafka_thread = ThreadPoolExecutor(
            1, thread_name_prefix=f"sink-{self.stage}-kafka"
        )
        consumer = Consumer(self._config)
        log.info(
            "sink starting",
            extra={
                "stage": self.stage,
                "topics": self._topics,
                "group": self.group_id,
                "dlq": self._dlq_topic,
            },
        )
        try:
            await self._kafka(
                consumer.subscribe,
                self._topics,
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
            STAGE_UP.labels(self.stage).set(1)
            while not self._stop_requested.is_set():
                messages = await self._kafka(consumer.consume, self._batch_size(), self._poll_timeout_s)
                for message in messages:
                    self._accept(message)
                self._dispatch()
                await self._reconcile_pauses(consumer)
                if time.monotonic() - self._last_commit >= self._settings.service.commit_interval_s:
                    await self._commit(consumer, why="interval")
                self._report()
                self._heartbeat()
        except asyncio.CancelledError:
            self._stop_requested.set()
            raise
        except Exception as exc:  # noqa: BLE001 - recorded by _fail and raised once everything is closed
            self._fail(exc)
        finally:
            STAGE_UP.labels(self.stage).set(0)
            try:
                await self._settle(self._work_of(None), self._options.shutdown_timeout_s, why="stop")
                await self._commit(consumer, why="shutdown")
            finally:
                await self._kafka(consumer.close)
                kafka_thread.shutdown(wait=True)
                if owned_producer is not None:
                    owned_producer.close()
                self._report()
                log.info("sink stopped", extra={"stage": self.stage})
        if self._failure is not None:
            raise self._failure

    # -- consumer calls: all on one thread -----------------------------------------------------------

    async def _kafka(self, call: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        loop, thread = self._loop, self._kafka_thread
        if loop is None or thread is None:
            raise RuntimeError("the runner is not running")
        return await loop.run_in_executor(thread, lambda: call(*args, **kwargs))

    def _on_loop(self, make: Callable[[], Coroutine[Any, Any, _T]], wait_s: float) -> _T | None:
        """Run a coroutine on the loop from a rebalance callback (kafka thread) and wait for it.

        The loop is free meanwhile: the poll-loop task awaits the very consumer call that is running
        the callback.
        """
        loop = self._loop
        if loop is None or loop.is_closed():
            return None
        future = asyncio.run_coroutine_threadsafe(make(), loop)
        try:
            return future.result(wait_s)
        except Exception:
            log.exception("rebalance handling failed", extra={"stage": self.stage})
            future.cancel()
            return None

    # -- rebalance callbacks (kafka thread, inside consume/close) ------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        got = [(tp.topic, tp.partition) for tp in partitions]

        async def assign() -> None:
            for where in got:
                self._partitions.setdefault(where, _PartitionState())

        self._on_loop(assign, wait_s=30.0)
        if got:
            log.info(
                "partitions assigned",
                extra={"stage": self.stage, "partitions": sorted(f"{t}:{p}" for t, p in got)},
            )

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = [(tp.topic, tp.partition) for tp in partitions]
        grace = self._options.revoke_timeout_s
        released = self._on_loop(lambda: self._release(gone, grace, commit=True), wait_s=grace + 30.0)
        if released is not None and released.offsets:
            # Last chance to commit what this member finished while it still owns the partitions.
            self._store_and_commit(consumer, released.offsets, why="revoke")
        self._forget(consumer, gone, released)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = [(tp.topic, tp.partition) for tp in partitions]
        # Ownership is already gone: committing would clobber the new owner's progress.
        released = self._on_loop(lambda: self._release(gone, 0.0, commit=False), wait_s=30.0)
        self._forget(consumer, gone, released)

    def _forget(self, consumer: Consumer, gone: list[Partition], released: _Released | None) -> None:
        if released is not None and released.paused:
            # librdkafka keeps a partition's pause flag across unassign/assign: a partition handed back
            # paused would stay silent forever if the group gives it to us again.
            with contextlib.suppress(KafkaException):
                consumer.resume([TopicPartition(topic, partition) for topic, partition in released.paused])
        if gone:
            log.info(
                "partitions revoked",
                extra={"stage": self.stage, "partitions": sorted(f"{t}:{p}" for t, p in gone)},
            )

    async def _release(self, gone: list[Partition], grace_s: float, *, commit: bool) -> _Released:
        """Drop the revoked partitions' queued jobs, give their running calls ``grace_s``, forget them;
        returns their offsets to commit (none unless ``commit``) and which of them were paused."""
        wanted = set(gone)
        self._scheduler.drop(wanted)
        await self._settle(self._work_of(wanted), grace_s, why="revoke")
        released = _Released(offsets=[], paused=sorted(wanted & self._paused))
        for where in gone:
            state = self._partitions.pop(where, None)
            self._paused.discard(where)
            if state is None or not commit:
                continue
            mark = state.offsets.to_commit()
            if mark is not None:
                released.offsets.append(TopicPartition(where[0], where[1], mark))
        return released

    # -- reading --------------------------------------------------------------------------------------

    def _accept(self, message: Message) -> None:
        error: KafkaError | None = message.error()
        if error is not None:
            if error.fatal():
                raise KafkaException(error)
            if error.code() != KafkaError._PARTITION_EOF:
                # Non-fatal client events (a broker briefly away) heal by themselves.
                log.warning("consumer event", extra={"stage": self.stage, "error": error.str()})
            return
        record = SourceRecord.from_message(message)
        state = self._partitions.get((record.topic, record.partition))
        if state is None:
            return  # fetched just before its partition was revoked: the new owner reads it
        if not state.offsets.read(record.offset):
            return  # read already
        self._scheduler.add(record, time.monotonic())

    def _batch_size(self) -> int:
        """How many records the next poll may return: never more than the unpaused partitions' room, so
        a partition overshoots ``max_buffered_per_partition`` by at most one poll's share."""
        limit = self._options.max_buffered_per_partition
        room = sum(
            max(0, limit - state.offsets.outstanding)
            for where, state in self._partitions.items()
            if where not in self._paused
        )
        return max(1, min(self._max_poll_records, room))

    # -- dispatching ---------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Start ready jobs while a target slot is free (and the runner is not stopping)."""
        if self._stop_requested.is_set():
            return
        now = time.monotonic()
        while True:
            ready_at = self._scheduler.next_ready_at()
            if ready_at is None or ready_at > now or not self._slots.try_take():
                return
            job = self._scheduler.next_ready(now)
            if job is None:  # cannot happen after next_ready_at said so; keep the slot count right anyway
                self._slots.release()
                return
            work = _Work(job, holds_slot=True)
            self._work.add(work)
            work.task = asyncio.get_running_loop().create_task(self._run_job(work), name=f"sink-{self.stage}")

    def _work_of(self, partitions: set[Partition] | None) -> list[_Work]:
        return [w for w in self._work if partitions is None or w.job.partition in partitions]

    async def _settle(self, works: list[_Work], grace_s: float, *, why: str) -> None:
        """End ``works``: cancel those not calling out now, give the others ``grace_s`` to finish."""
        for work in works:
            work.leaving = True
            if not work.calling and work.task is not None:
                work.task.cancel()
        tasks = [w.task for w in works if w.task is not None]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace_s)
        if pending:
            log.warning(
                "target calls did not finish in time; abandoned (their records are read again)",
                extra={"stage": self.stage, "why": why, "abandoned": len(pending), "grace_s": grace_s},
            )
            for task in pending:
                task.cancel()
            await asyncio.wait(pending)

    # -- one job --------------------------------------------------------------------------------------

    async def _run_job(self, work: _Work) -> None:
        job = work.job
        record = job.newest
        started = time.monotonic()
        try:
            with correlation_scope(_correlation_id(record)):
                outcome = await self._work_on(work)
            HANDLER_SECONDS.labels(self.stage).observe(time.monotonic() - started)
            self._complete(job, outcome)
        except (_Abandoned, asyncio.CancelledError):
            pass  # not complete, so read again by whoever owns the partition next
        except Exception as exc:  # noqa: BLE001 - a bug or a halt: run() stops and raises it, see _fail
            self._fail(exc, record)
        finally:
            if work.holds_slot:
                work.holds_slot = False
                self._slots.release()
            self._work.discard(work)
            self._scheduler.done(job.key)
            self._dispatch()

    async def _work_on(self, work: _Work) -> str:
        """Work on ``work.job`` until it is complete; returns its outcome label.

        The newest record is applied. When the sink skips it (a record that means nothing to this sink)
        and older records rode along, the next older one is tried: a skipped record has no effect here,
        so it must not hide the key's previous value (another warehouse's level arriving in the
        coalescing window of the shop's own warehouse's level).
        """
        records = work.job.records
        index = len(records) - 1
        record = records[index]
        first_skip: str | None = None
        attempt = 0
        while True:
            attempt += 1
            if work.leaving:
                raise _Abandoned
            if not work.holds_slot:
                await self._slots.take()
                work.holds_slot = True
            try:
                outcome = await self._attempt(work, record, attempt)
                if not isinstance(outcome, Skip):
                    return outcome
                first_skip = first_skip or outcome.reason
                if index == 0:
                    return first_skip
                index -= 1
                record, attempt = records[index], 0
            except RetryableError as exc:
                RETRIES.labels(self.stage, retry_reason(exc)).inc()
                delay = self._backoff.delay(attempt, exc)
                log.warning(
                    "retryable failure, retrying the same record; its key waits",
                    extra=_where(self.stage, record)
                    | {"attempt": attempt, "delay_s": round(delay, 3), "error": str(exc)},
                )
                # Backing off does not use the target: let another key have the slot meanwhile.
                work.holds_slot = False
                self._slots.release()
                if work.leaving:
                    raise _Abandoned from exc
                await asyncio.sleep(delay)
            except InvalidMessage as exc:
                await self._dead_letter(work, record, exc, attempt)
                return INVALID

    async def _attempt(self, work: _Work, record: SourceRecord, attempt: int) -> str | Skip:
        """One try: decode, then apply through the breaker (the outcome label, or the sink's Skip).
        Raises what the codec or the sink raised."""
        if record.value is None:
            raise InvalidMessage("undecodable", "the record has no value (a tombstone)")
        datum = self._codec.decode(record.value, record.topic)
        context = SinkContext(
            record=record,
            event_id=_event_id(record, datum),
            correlation_id=_correlation_id(record),
            attempt=attempt,
        )
        model = self.sink.decode(datum, context)
        if isinstance(model, Skip):
            return model
        admission = await self.breaker.admit()
        if work.leaving:
            self.breaker.release(admission)
            raise _Abandoned
        work.calling = True
        try:
            applied = await self.sink.apply(model, context)
        except RetryableError:
            self.breaker.record_failure(admission)
            raise
        except InvalidMessage:
            self.breaker.record_success(admission)  # the target answered; it refused this payload
            raise
        except BaseException:
            self.breaker.release(admission)  # no answer (cancelled, or a bug): the next probe may go
            raise
        finally:
            work.calling = False
        self.breaker.record_success(admission)
        if applied.outcome != UNCHANGED.outcome:
            _observe_end_to_end(self.stage, datum)
        return applied.outcome

    async def _dead_letter(
        self, work: _Work, record: SourceRecord, error: InvalidMessage, attempts: int
    ) -> None:
        """DlqLimit check, then the DLQ write, retried until acknowledged (or abandoned on stop)."""
        try:
            self._limit.record_invalid()
        except DlqLimitExceeded:
            DLQ_LIMIT_TRIPS.labels(self.stage).inc()
            log.error(
                "DLQ limit tripped, stopping the sink",
                extra=_where(self.stage, record) | {"reason": error.reason},
            )
            raise
        dead_letters = self._dead_letters
        if dead_letters is None:
            raise RuntimeError("the runner is not running")
        retry = 0
        while True:
            work.calling = True
            try:
                # send() blocks until the broker acknowledged: off the loop.
                partition, offset = await asyncio.to_thread(
                    dead_letters.send, record, error, attempts=attempts
                )
                break
            except RetryableError as exc:
                retry += 1
                delay = self._backoff.delay(retry, exc)
                log.warning(
                    "DLQ write not acknowledged, retrying",
                    extra=_where(self.stage, record) | {"delay_s": round(delay, 3), "error": str(exc)},
                )
            finally:
                work.calling = False
            if work.leaving:
                raise _Abandoned
            await asyncio.sleep(delay)
        DLQ_MESSAGES.labels(self.stage, error.reason).inc()
        log.warning(
            "record dead-lettered",
            extra=_where(self.stage, record)
            | {
                "reason": error.reason,
                "field_path": error.field_path,
                "error": error.message,
                "dlq_topic": dead_letters.topic,
                "dlq_partition": partition,
                "dlq_offset": offset,
            },
        )

    def _complete(self, job: Job, outcome: str) -> None:
        if outcome != INVALID:
            self._limit.record_ok()
        newest = job.newest
        MESSAGES.labels(self.stage, newest.topic, outcome).inc()
        for rider in job.records[:-1]:
            MESSAGES.labels(self.stage, rider.topic, COALESCED).inc()
        state = self._partitions.get(job.partition)
        if state is None:
            return  # revoked meanwhile: nothing of it is ours to commit
        for record in job.records:
            state.offsets.complete(record.offset)
        log.debug(
            "record complete",
            extra=_where(self.stage, newest) | {"outcome": outcome, "coalesced": len(job.records) - 1},
        )

    def _fail(self, error: BaseException, record: SourceRecord | None = None) -> None:
        if self._failure is None:
            self._failure = error
            where = _where(self.stage, record) if record is not None else {"stage": self.stage}
            log.critical(
                "sink stopping on an error; the failing record is not committed", exc_info=error, extra=where
            )
        self._stop_requested.set()

    # -- pausing --------------------------------------------------------------------------------------

    async def _reconcile_pauses(self, consumer: Consumer) -> None:
        """Pause what must be paused now (breaker open: everything; else full buffers), resume the rest."""
        limit = self._options.max_buffered_per_partition
        breaker_open = self.breaker.state is not BreakerState.CLOSED
        wanted: set[Partition] = set()
        for where, state in self._partitions.items():
            outstanding = state.offsets.outstanding
            if outstanding >= limit:
                state.backpressure = True
            elif outstanding <= limit // 2:
                state.backpressure = False
            if state.backpressure or breaker_open:
                wanted.add(where)
        to_pause = sorted(wanted - self._paused)
        to_resume = sorted(self._paused - wanted)
        if to_pause:
            await self._kafka(consumer.pause, [TopicPartition(t, p) for t, p in to_pause])
            log.info(
                "partitions paused",
                extra={
                    "stage": self.stage,
                    "why": "breaker" if breaker_open else "backpressure",
                    "partitions": [f"{t}:{p}" for t, p in to_pause],
                },
            )
        if to_resume:
            await self._kafka(consumer.resume, [TopicPartition(t, p) for t, p in to_resume])
            log.info(
                "partitions resumed",
                extra={"stage": self.stage, "partitions": [f"{t}:{p}" for t, p in to_resume]},
            )
        self._paused = wanted
        backpressured = sum(1 for state in self._partitions.values() if state.backpressure)
        SINK_PAUSED_PARTITIONS.labels(self.stage, "breaker").set(len(wanted) if breaker_open else 0)
        SINK_PAUSED_PARTITIONS.labels(self.stage, "backpressure").set(0 if breaker_open else backpressured)

    # -- offsets -------------------------------------------------------------------------------------

    async def _commit(self, consumer: Consumer, *, why: str) -> None:
        """Store and commit every watermark that moved (computed here, on the loop that owns them)."""
        self._last_commit = time.monotonic()
        marks = {
            where: mark
            for where, state in self._partitions.items()
            if (mark := state.offsets.to_commit()) is not None
        }
        if not marks:
            return
        offsets = [TopicPartition(topic, partition, mark) for (topic, partition), mark in marks.items()]
        if await self._kafka(self._store_and_commit, consumer, offsets, why=why):
            for where, mark in marks.items():
                state = self._partitions.get(where)
                if state is not None:
                    state.offsets.committed = mark

    def _store_and_commit(self, consumer: Consumer, offsets: list[TopicPartition], *, why: str) -> bool:
        """On the kafka thread: store ``offsets`` and commit synchronously; False when that failed."""
        try:
            consumer.store_offsets(offsets=offsets)
            consumer.commit(asynchronous=False)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if isinstance(error, KafkaError) and error.code() == KafkaError._NO_OFFSET:
                return True
            # Not fatal for correctness: the next commit carries the watermark again; at worst the next
            # owner repeats a few finished records (at-least-once; apply is idempotent).
            COMMITS.labels(self.stage, "failed").inc()
            log.warning("offset commit failed", extra={"stage": self.stage, "why": why, "error": str(exc)})
            return False
        COMMITS.labels(self.stage, "ok").inc()
        log.debug(
            "offsets committed",
            extra={
                "stage": self.stage,
                "why": why,
                "offsets": {f"{o.topic}:{o.partition}": o.offset for o in offsets},
            },
        )
        return True

    def _report(self) -> None:
        SINK_IN_FLIGHT_KEYS.labels(self.stage).set(len(self._work))
        SINK_BUFFERED_RECORDS.labels(self.stage).set(
            sum(state.offsets.outstanding for state in self._partitions.values())
        )


def _correlation_id(record: SourceRecord) -> str:
    value = record.header("correlation_id")
    if value:
        return value.decode("utf-8", "replace")
    return f"{record.topic}:{record.partition}:{record.offset}"


def _event_id(record: SourceRecord, datum: Mapping[str, Any]) -> str:
    value = record.header("event_id")
    if value:
        return value.decode("utf-8", "replace")
    meta = datum.get("meta")
    if isinstance(meta, Mapping) and meta.get("event_id") is not None:
        return str(meta["event_id"])
    return ""


def _where(stage: str, record: SourceRecord) -> dict[str, object]:
    return {"stage": stage, "topic": record.topic, "partition": record.partition, "offset": record.offset}


__all__ = [
    "COALESCED",
    "INVALID",
    "ApplySlots",
    "Job",
    "KeyId",
    "KeyScheduler",
    "PartitionOffsets",
    "SinkRunner",
    "key_of",
    "retry_reason",
]


def _observe_end_to_end(stage: str, datum: Mapping[str, Any]) -> None:
    """Source event received by the pipeline (``meta.ingested_at``) → the target confirmed the write:
    the end-to-end latency of ``stage`` (``psinfor_end_to_end_latency_seconds{flow=<sink>}``)."""
    meta = datum.get("meta")
    ingested = meta.get("ingested_at") if isinstance(meta, Mapping) else None
    if isinstance(ingested, datetime) and ingested.tzinfo is not None:
        END_TO_END_SECONDS.labels(stage).observe(max(0.0, (datetime.now(UTC) - ingested).total_seconds()))
