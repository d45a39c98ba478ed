"""THE consume -> handle -> route -> commit loop for confluent-kafka stages.

Per message, in partition order::

    handler(record) ok          -> store offset                                   (MESSAGES ok)
    raises InvalidMessage       -> DlqLimit check -> DLQ send, acked -> store     (MESSAGES invalid)
    raises RetryableError       -> pause partitions, keep polling, back off, call the handler again
                                   with the SAME record; nothing stored meanwhile (RETRIES)
    raises anything else        -> propagates out of run(); that offset is never stored

Offsets are stored only after the effect is durable and committed synchronously every
``commit_interval_s``, when partitions are revoked, and when the loop ends (stop or error). A stored
offset always belongs to a message that is finished, so committing on the way out of a crash is safe:
the failing message and everything after it on its partition are read again by the next owner.

While backing off, every assigned partition is paused and ``poll()`` keeps being called, so the member
stays in the group (``max.poll.interval.ms`` never evicts it) and rebalances are served. If the
retried record's partition is revoked meanwhile, the retry is dropped: the new owner reads it again
from the committed offset, which is before it.

Where a partition the group never committed starts: at its beginning (``auto.offset.reset=earliest``),
or, for a stage given ``fresh_start_lookback_s``, at its first record of the last that many seconds.
Such a start is resolved to a concrete offset when the partition is assigned and committed at once:
"latest" is never used, because until a first commit every rebalance would move the start to the new
end of the partition and skip whatever arrived meanwhile (the webhook notifications of a poller that
had just joined its group were lost that way).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from pipeline.dlq import DeadLetterProducer, DlqLimit
from pipeline.errors import DlqLimitExceeded, InvalidMessage, RetryableError
from pipeline.kafka_config import LibrdkafkaConfig, librdkafka_config
from pipeline.metrics import (
    COMMITS,
    DLQ_LIMIT_TRIPS,
    DLQ_MESSAGES,
    HANDLER_SECONDS,
    MESSAGES,
    RETRIES,
    STAGE_UP,
)
from pipeline.producer import PipelineProducer
from pipeline.records import SourceRecord
from pipeline.retry import Backoff
from pipeline.settings import Settings

log = logging.getLogger(__name__)

BROKER_TIMEOUT_S = 30.0
"""Bound of the broker calls that resolve a fresh partition's start (raised as KafkaException)."""

Handler = Callable[[SourceRecord], None]
"""A stage's business step: returns when the effect is durable, or raises to say why not."""

_Partition = tuple[str, int]


def consumer_config(
    settings: Settings,
    *,
    stage: str,
    group_id: str,
    overrides: Mapping[str, str | int | float | bool] | None = None,
) -> LibrdkafkaConfig:
    """The librdkafka consumer config of a runner: manual offset storage, no auto commit."""
    config = librdkafka_config(settings.kafka, client_id_suffix=stage)
    config.update(
        {
            "group.id": group_id,
            # The runner decides what is finished (store) and when it becomes durable (commit).
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            # Never "latest": see the module docstring for how a stage starts later than the beginning.
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    config.update(overrides or {})
    return config


def _retry_reason(error: RetryableError) -> str:
    # A bounded label: the HTTP status class when known, else the exception class.
    if error.status is not None:
        return f"http_{error.status}"
    return type(error).__name__


class ConsumeRunner:
    """Runs one stage's handler over ``topics`` as member of ``group_id``; see the module docstring.

    ``run()`` blocks until ``stop()`` is called (returns normally) or an error ends the loop (raised:
    ``DlqLimitExceeded``, a DLQ write that was not acknowledged, a handler bug, a fatal Kafka error).
    ``producer`` is the process's shared producer used for the DLQ; when omitted the runner builds and
    closes its own. ``rng`` makes the backoff jitter deterministic in tests. ``fresh_start_lookback_s``:
    where a partition the group never committed starts (module docstring); None is its beginning.
    ``clock`` (wall, seconds) dates that start.
    """

    def __init__(
        self,
        settings: Settings,
        stage: str,
        topics: Sequence[str],
        group_id: str,
        handler: Handler,
        dlq_topic: str,
        *,
        producer: PipelineProducer | None = None,
        rng: random.Random | None = None,
        fresh_start_lookback_s: float | None = None,
        clock: Callable[[], float] = time.time,
        consumer_overrides: Mapping[str, str | int | float | bool] | None = None,
        poll_timeout_s: float = 0.1,
    ) -> None:
        if not topics:
            raise ValueError("a runner needs at least one topic")
        self.stage = stage
        self._settings = settings
        self._topics = list(topics)
        self._handler = handler
        self._dlq_topic = dlq_topic
        self._shared_producer = producer
        self._backoff = Backoff(settings.retry, rng)
        self._limit = DlqLimit(settings.dlq)
        self._poll_timeout_s = poll_timeout_s
        self._commit_interval_s = settings.service.commit_interval_s
        self._config = consumer_config(
            settings,
            stage=stage,
            group_id=group_id,
            overrides=consumer_overrides,
        )
        if fresh_start_lookback_s is not None and fresh_start_lookback_s <= 0:
            raise ValueError("fresh_start_lookback_s must be positive (None starts at the beginning)")
        self._fresh_start_lookback_s = fresh_start_lookback_s
        self._clock = clock
        self._stopping = threading.Event()
        self._assigned: set[_Partition] = set()
        self._paused: set[_Partition] = set()
        # Bumped per partition on every revocation, so a retry notices a revoke-then-reassign that
        # happened inside one poll (the fetch position was reset; the record will come again).
        self._ownership_epoch: dict[_Partition, int] = {}
        # Records polled while backing off (only possible from partitions assigned mid-wait), replayed
        # in order before the next poll so no partition's order is broken.
        self._pending: deque[SourceRecord] = deque()
        self._uncommitted = False
        self._last_commit = time.monotonic()
        self._consumer: Consumer | None = None

    def stop(self) -> None:
        """Ask ``run()`` to finish after the current message; safe from any thread or a signal handler."""
        self._stopping.set()

    def run(self) -> None:
        """Consume until ``stop()``; commits what is finished on the way out, whatever the reason."""
        owned_producer = None
        producer = self._shared_producer
        if producer is None:
            owned_producer = producer = PipelineProducer(
                self._settings.kafka, client_id_suffix=f"{self.stage}-dlq"
            )
        dlq = DeadLetterProducer(
            producer,
            topic=self._dlq_topic,
            stage=self.stage,
            timeout_s=self._settings.dlq.delivery_timeout_s,
        )
        consumer = Consumer(self._config)
        self._consumer = consumer
        log.info("stage starting", extra={"stage": self.stage, "topics": self._topics})
        try:
            consumer.subscribe(
                self._topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
            )
            STAGE_UP.labels(self.stage).set(1)
            while not self._stopping.is_set():
                record = self._next_record(consumer)
                if record is not None:
                    self._process(consumer, dlq, record)
                self._maybe_commit(consumer)
        finally:
            STAGE_UP.labels(self.stage).set(0)
            try:
                self._commit(consumer, why="shutdown")
            finally:
                consumer.close()
                self._consumer = None
                if owned_producer is not None:
                    owned_producer.close()
                log.info("stage stopped", extra={"stage": self.stage})

    # -- one message -------------------------------------------------------------------------------

    def _process(self, consumer: Consumer, dlq: DeadLetterProducer, record: SourceRecord) -> None:
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                self._handler(record)
            except InvalidMessage as exc:
                HANDLER_SECONDS.labels(self.stage).observe(time.monotonic() - started)
                self._dead_letter(consumer, dlq, record, exc, attempt)
                return
            except RetryableError as exc:
                RETRIES.labels(self.stage, _retry_reason(exc)).inc()
                delay = self._backoff.delay(attempt, exc)
                log.warning(
                    "retryable failure, retrying the same message",
                    extra=self._where(record)
                    | {"attempt": attempt, "delay_s": round(delay, 3), "error": str(exc)},
                )
                if not self._wait_paused(consumer, record, delay):
                    return
                continue
            HANDLER_SECONDS.labels(self.stage).observe(time.monotonic() - started)
            self._limit.record_ok()
            MESSAGES.labels(self.stage, record.topic, "ok").inc()
            self._store(consumer, record)
            return

    def _dead_letter(
        self,
        consumer: Consumer,
        dlq: DeadLetterProducer,
        record: SourceRecord,
        error: InvalidMessage,
        attempts: int,
    ) -> None:
        try:
            self._limit.record_invalid()
        except DlqLimitExceeded:
            DLQ_LIMIT_TRIPS.labels(self.stage).inc()
            log.error(
                "DLQ limit tripped, stopping the stage",
                extra=self._where(record) | {"reason": error.reason},
            )
            raise
        # Returns only after the broker acknowledged; raises (and so never stores the offset) otherwise.
        dlq_partition, dlq_offset = dlq.send(record, error, attempts=attempts)
        DLQ_MESSAGES.labels(self.stage, error.reason).inc()
        MESSAGES.labels(self.stage, record.topic, "invalid").inc()
        log.warning(
            "message dead-lettered",
            extra=self._where(record)
            | {
                "reason": error.reason,
                "dlq_topic": dlq.topic,
                "dlq_partition": dlq_partition,
                "dlq_offset": dlq_offset,
            },
        )
        self._store(consumer, record)

    def _wait_paused(self, consumer: Consumer, record: SourceRecord, delay: float) -> bool:
        """Back off for ``delay`` s with the assignment paused; False when the retry must be dropped."""
        deadline = time.monotonic() + delay
        where = (record.topic, record.partition)
        epoch = self._ownership_epoch.get(where, 0)
        try:
            while True:
                if self._stopping.is_set():
                    return False
                if where not in self._assigned or self._ownership_epoch.get(where, 0) != epoch:
                    log.info(
                        "partition revoked while retrying; the new owner re-reads", extra=self._where(record)
                    )
                    return False
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return True
                # Every iteration, so partitions assigned mid-wait are paused as soon as they are ours.
                self._pause(consumer)
                message = consumer.poll(min(remaining, self._poll_timeout_s))
                buffered = self._accept(message)
                if buffered is not None:
                    self._pending.append(buffered)
                self._maybe_commit(consumer)
        finally:
            self._resume(consumer)

    # -- polling -----------------------------------------------------------------------------------

    def _next_record(self, consumer: Consumer) -> SourceRecord | None:
        if self._pending:
            return self._pending.popleft()
        return self._accept(consumer.poll(self._poll_timeout_s))

    def _accept(self, message: Message | None) -> SourceRecord | None:
        if message is None:
            return None
        error: KafkaError | None = message.error()
        if error is not None:
            if error.fatal():
                raise KafkaException(error)
            # Non-fatal client events (a broker briefly away, partition EOF) heal by themselves.
            log.warning("consumer event", extra={"stage": self.stage, "error": error.str()})
            return None
        return SourceRecord.from_message(message)

    def _pause(self, consumer: Consumer) -> None:
        fresh = self._assigned - self._paused
        if fresh:
            consumer.pause([TopicPartition(topic, partition) for topic, partition in sorted(fresh)])
            self._paused |= fresh

    def _resume(self, consumer: Consumer) -> None:
        still_ours = self._paused & self._assigned
        self._paused.clear()
        if still_ours:
            consumer.resume([TopicPartition(topic, partition) for topic, partition in sorted(still_ours)])

    # -- offsets -----------------------------------------------------------------------------------

    def _store(self, consumer: Consumer, record: SourceRecord) -> None:
        # The committed offset is the NEXT one to read, hence +1.
        consumer.store_offsets(offsets=[TopicPartition(record.topic, record.partition, record.offset + 1)])
        self._uncommitted = True

    def _maybe_commit(self, consumer: Consumer) -> None:
        if time.monotonic() - self._last_commit >= self._commit_interval_s:
            self._commit(consumer, why="interval")

    def _commit(self, consumer: Consumer, *, why: str) -> None:
        self._last_commit = time.monotonic()
        if not self._uncommitted:
            return
        try:
            consumer.commit(asynchronous=False)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if isinstance(error, KafkaError) and error.code() == KafkaError._NO_OFFSET:
                self._uncommitted = False
                return
            # Not fatal for correctness: the offsets stay stored and the next commit carries them; at
            # worst a rebalance makes the next owner repeat a few finished messages (at-least-once).
            COMMITS.labels(self.stage, "failed").inc()
            log.warning("offset commit failed", extra={"stage": self.stage, "why": why, "error": str(exc)})
            return
        self._uncommitted = False
        COMMITS.labels(self.stage, "ok").inc()
        log.debug("offsets committed", extra={"stage": self.stage, "why": why})

    # -- rebalance callbacks (called from inside poll) --------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._fresh_start_lookback_s is not None and partitions:
            self._start_fresh_partitions(consumer, partitions, self._fresh_start_lookback_s)
        # Partitions assigned during a backoff are paused by the wait loop once the assignment applies.
        self._assigned |= {(tp.topic, tp.partition) for tp in partitions}
        log.info(
            "partitions assigned",
            extra={"stage": self.stage, "partitions": sorted(f"{t}:{p}" for t, p in self._assigned)},
        )

    def _start_fresh_partitions(
        self, consumer: Consumer, partitions: list[TopicPartition], lookback_s: float
    ) -> None:
        """Assign ``partitions``, those never committed at their first record of the last ``lookback_s``
        seconds, and commit that start at once (module docstring).

        Nothing may escape a rebalance callback (the client re-raises it mangled), so the broker lookups
        are retried for up to :data:`BROKER_TIMEOUT_S` (a topic just created has no leader yet) and, if
        they keep failing, the partitions are left to their default start: the committed offset, else
        the beginning, which reads again but never skips.
        """
        deadline = time.monotonic() + BROKER_TIMEOUT_S
        delay_s = 0.1
        while True:
            try:
                assignment, pinned = self._fresh_starts(consumer, partitions, lookback_s)
                break
            except KafkaException as exc:
                if time.monotonic() + delay_s > deadline:
                    log.error(
                        "fresh start not resolved, starting at the committed offset or the beginning",
                        extra={"stage": self.stage, "error": str(exc)},
                    )
                    return
                time.sleep(delay_s)
                delay_s = min(delay_s * 2, 2.0)
        consumer.assign(assignment)
        if not pinned:
            return
        try:
            consumer.commit(offsets=pinned, asynchronous=False)
        except KafkaException as exc:
            # The next rebalance then resolves the start again from the same lookback: records younger
            # than it are read either way; only a start older than the lookback would be lost to skew.
            COMMITS.labels(self.stage, "failed").inc()
            log.warning("fresh start not committed", extra={"stage": self.stage, "error": str(exc)})
        log.info(
            "fresh partitions start within the lookback",
            extra={
                "stage": self.stage,
                "lookback_s": lookback_s,
                "starts": [f"{tp.topic}:{tp.partition}@{tp.offset}" for tp in pinned],
            },
        )

    def _fresh_starts(
        self, consumer: Consumer, partitions: list[TopicPartition], lookback_s: float
    ) -> tuple[list[TopicPartition], list[TopicPartition]]:
        """(the assignment with every start explicit, the fresh partitions' starts); raises KafkaException."""
        timeout = BROKER_TIMEOUT_S / 3
        committed = consumer.committed(partitions, timeout=timeout)
        for tp in committed:
            if tp.error is not None:
                raise KafkaException(tp.error)
        fresh = [tp for tp in committed if tp.offset < 0]
        if not fresh:
            return committed, []
        since_ms = int((self._clock() - lookback_s) * 1000)
        # The end is read BEFORE the search: a partition with no record since ``since_ms`` starts at
        # that end, so a record arriving in between is still read.
        ends = {
            (tp.topic, tp.partition): consumer.get_watermark_offsets(tp, timeout=timeout)[1] for tp in fresh
        }
        found = consumer.offsets_for_times(
            [TopicPartition(tp.topic, tp.partition, since_ms) for tp in fresh], timeout=timeout
        )
        starts: dict[_Partition, int] = {}
        for tp in found:
            if tp.error is not None:
                raise KafkaException(tp.error)
            where = (tp.topic, tp.partition)
            starts[where] = tp.offset if tp.offset >= 0 else ends[where]
        assignment = [
            TopicPartition(tp.topic, tp.partition, starts.get((tp.topic, tp.partition), tp.offset))
            for tp in committed
        ]
        pinned = [
            TopicPartition(topic, partition, offset) for (topic, partition), offset in sorted(starts.items())
        ]
        return assignment, pinned

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Last chance to commit what this member finished while it still owns the partitions.
        self._commit(consumer, why="revoke")
        self._forget(consumer, partitions)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Ownership is already gone: committing would fail or, worse, clobber the new owner's progress.
        self._forget(consumer, partitions)

    def _forget(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = {(tp.topic, tp.partition) for tp in partitions}
        paused_gone = self._paused & gone
        if paused_gone:
            # librdkafka keeps a partition's pause flag across unassign/assign: a partition handed back
            # paused would stay silent forever if the group gives it to us again.
            consumer.resume([TopicPartition(topic, partition) for topic, partition in sorted(paused_gone)])
        self._assigned -= gone
        self._paused -= gone
        for where in gone:
            self._ownership_epoch[where] = self._ownership_epoch.get(where, 0) + 1
        self._pending = deque(r for r in self._pending if (r.topic, r.partition) not in gone)
        log.info(
            "partitions revoked",
            extra={"stage": self.stage, "partitions": sorted(f"{t}:{p}" for t, p in gone)},
        )

    def _where(self, record: SourceRecord) -> dict[str, object]:
        return {
            "stage": self.stage,
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "correlation_id": (record.header("correlation_id") or b"").decode("utf-8", "replace") or None,
        }
