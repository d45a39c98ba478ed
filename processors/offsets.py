"""Source offsets the processors handle and commit: every offset exactly in order, none skipped.

faust's own bookkeeping cannot be trusted with this (each of these lost one event in the SIGKILL test):

1. Its stream occasionally never hands an event to the agent: seen as a batch whose offsets jump by
   two right after the first, time-bounded batch of a partition that had a backlog.
2. After a rebalance, events fetched under the previous consumer generation that are still queued are
   skipped *and acked* by the stream iterator.
3. ``Consumer._new_offset`` commits the first run of consecutive acked offsets; its gap check is off by
   one (``min(acked) - committed > 1``) and not made at all while nothing is committed.

So the runner checks what it receives and decides what may be committed itself:

- :class:`SourceOffsets` admits an event only when it is the next offset of its partition in the
  current consumer generation. The first expected offset of a generation is the committed offset (the
  log start when nothing is committed). An event before it is a redelivery (dropped), an event of an
  older generation is left for the new one (it is fetched again), and an event after it means the
  expected one went missing: the runner seeks the partition back to it and drops the events after the
  gap until it arrives, so no key ever sees a later event before an earlier one. Source topics are
  written without transactions and are not compacted, so offsets are contiguous.
- :class:`DurableCommitConsumer` is faust's aiokafka consumer with ``_new_offset`` answered from what
  the runner recorded as durable (its canonical, DLQ and version records acknowledged); faust's acks
  move nothing.

Everything here runs on the faust worker's event loop (the agent admits and records, faust commits).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.types import TP

from pipeline.kafka_config import librdkafka_config
from pipeline.settings import KafkaSettings

RESEEK_AFTER_S = 2.0
"""A gap still open this long after the seek back is sought again: faust's fetcher drops a refetch
that races with the batch it is iterating (its read offset moves past the seek)."""


class Admission(Enum):
    """What the runner does with one received event."""

    HANDLE = "handle"
    """The next offset of its partition: handle it."""
    REDELIVERED = "redelivered"
    """Before the next offset: already handled (a fetch after a seek repeats events); drop it."""
    OLD_GENERATION = "old_generation"
    """Fetched before the last rebalance: the new generation fetches it again; drop it."""
    GAP = "gap"
    """After the next offset: the expected event went missing; seek back and drop this one."""


@dataclass
class _Partition:
    generation: int
    expected: int
    """The offset of the next event to handle."""
    durable: int
    """Every offset below this one was handled and its effects acknowledged."""
    start: int
    """Where the generation started reading (nothing to commit until ``durable`` passes it)."""
    sought: int | None = None
    """The offset a seek back was asked for and not yet seen."""
    sought_at: float = 0.0


class SourceOffsets:
    """Per flow and source partition, the next offset to handle; per partition, what may be committed.

    Every flow (faust agent) reading a topic receives every event of it, so each keeps its own
    position; the group commits a partition only as far as every flow subscribed to its topic made
    its events durable (the slowest flow decides).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._partitions: dict[tuple[str, TP], _Partition] = {}
        self._subscribers: dict[str, set[str]] = {}
        self._clock = clock

    def subscribe(self, flow: str, topics: Iterable[str]) -> None:
        """``flow`` reads ``topics``: their commits wait for it. Call before the worker starts."""
        for topic in topics:
            self._subscribers.setdefault(topic, set()).add(flow)

    def knows(self, flow: str, partition: TP, generation: int) -> bool:
        """Whether :meth:`begin` was called for ``flow`` on ``partition`` in ``generation``."""
        state = self._partitions.get((flow, partition))
        return state is not None and state.generation == generation

    def begin(self, flow: str, partition: TP, generation: int, start: int) -> None:
        """A generation owns ``partition`` from ``start`` (the committed offset, else the log start)."""
        self._partitions[(flow, partition)] = _Partition(
            generation, expected=start, durable=start, start=start
        )

    def admit(self, flow: str, partition: TP, generation: int, current: int, offset: int) -> Admission:
        """Decide on the event at ``offset`` fetched in ``generation`` while ``current`` is the consumer's.

        Call :meth:`begin` first for a partition the current generation has not seen (:meth:`knows`).
        """
        if generation != current:
            return Admission.OLD_GENERATION
        state = self._partitions[(flow, partition)]
        if offset == state.expected:
            state.expected = offset + 1
            state.sought = None
            return Admission.HANDLE
        if offset < state.expected:
            return Admission.REDELIVERED
        return Admission.GAP

    def seek_needed(self, flow: str, partition: TP) -> int | None:
        """After a GAP: the offset to seek back to, or None when a recent seek is still on its way."""
        state = self._partitions[(flow, partition)]
        now = self._clock()
        if state.sought == state.expected and now - state.sought_at < RESEEK_AFTER_S:
            return None
        state.sought = state.expected
        state.sought_at = now
        return state.expected

    def overdue_seeks(self) -> list[tuple[TP, int]]:
        """Partitions whose seek back was asked for :data:`RESEEK_AFTER_S` ago and whose missing event
        still has not arrived (faust dropped the refetch, or nothing was fetched since): seek again,
        to the lowest missing offset of any flow.

        Called on a timer, so a partition with nothing more to deliver does not stall either.
        """
        now = self._clock()
        overdue: dict[TP, int] = {}
        for (_flow, partition), state in self._partitions.items():
            if state.sought is not None and now - state.sought_at >= RESEEK_AFTER_S:
                state.sought_at = now
                overdue[partition] = min(state.sought, overdue.get(partition, state.sought))
        return sorted(overdue.items(), key=lambda item: (item[0].topic, item[0].partition))

    def record_durable(self, flow: str, partition: TP, next_offset: int) -> None:
        """Every event of ``partition`` ``flow`` admitted below ``next_offset`` has durable effects."""
        state = self._partitions.get((flow, partition))
        if state is not None and next_offset > state.durable:
            state.durable = next_offset

    def committable(self, partition: TP, committed: int | None) -> int | None:
        """The offset to commit for ``partition``, or None when nothing new may be committed: the lowest
        durable offset of the flows reading its topic (None while one of them has not started on it)."""
        flows = self._subscribers.get(partition.topic, set())
        states = [self._partitions.get((flow, partition)) for flow in flows]
        if not states or any(state is None for state in states):
            return None
        durable = min(state.durable for state in states if state is not None)
        start = min(state.start for state in states if state is not None)
        if durable <= (start if committed is None else committed):
            return None
        return durable

    def partitions(self) -> Iterable[TP]:
        """The partitions any flow has a position on."""
        return tuple({partition for _flow, partition in self._partitions})


class GroupStartOffsets:
    """Where the consumer group starts reading a partition: its committed offset, else the log start.

    Asked of the broker (not of faust, which learns the committed offsets only after its recovery and
    records a committed 0 as None) by a librdkafka client that shares the group id but never joins it.
    """

    def __init__(self, settings: KafkaSettings, group_id: str, *, timeout_s: float = 15.0) -> None:
        config = librdkafka_config(settings, client_id_suffix="processors-offsets")
        config.update({"group.id": group_id, "enable.auto.commit": False})
        self._consumer = Consumer(config)
        self._timeout_s = timeout_s

    def start(self, topic: str, partition: int) -> int:
        """The offset a member of the group reads ``topic``/``partition`` from (blocking, one round trip
        each for the committed offset and the log start)."""
        wanted = TopicPartition(topic, partition)
        [found] = self._consumer.committed([wanted], timeout=self._timeout_s)
        low, _high = self._consumer.get_watermark_offsets(wanted, timeout=self._timeout_s)
        # No commit (negative) or one below the log start (retention): auto.offset.reset=earliest.
        return found.offset if found.offset >= low else int(low)

    def close(self) -> None:
        """Release the client."""
        self._consumer.close()


class DurableCommitConsumer(AIOKafkaConsumer):
    """faust's aiokafka consumer, committing only what :attr:`offsets` says is durable."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.offsets = SourceOffsets()

    def _new_offset(self, tp: TP) -> int | None:
        # faust's list of acked offsets is not trusted (see the module docstring); emptied so it
        # does not grow.
        self._acked[tp].clear()
        self._acked_index[tp].clear()
        return self.offsets.committable(tp, self._committed_offset[tp])

    def _filter_tps_with_pending_acks(self, topics: Any = None) -> Iterator[TP]:
        candidates = set(self._acked) | set(self.offsets.partitions())
        return iter([tp for tp in candidates if topics is None or tp in topics or tp.topic in topics])
