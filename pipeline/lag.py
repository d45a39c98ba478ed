"""Consumer lag in messages and in seconds, per group, topic and partition, for the lag dashboards.

Lag in messages is the high watermark minus the group's committed offset. Lag in seconds is the age of
the oldest record the group has not committed yet (now minus that record's timestamp): the figure an
SRE's SLO is written in, since a thousand messages of lag can be a second or an hour. A partition is
*stalled* when it has lag and its committed offset has not moved for ``stall_after_s``.

Reading the oldest uncommitted record costs one fetch per lagging partition, so sample at a human
cadence (seconds), not per message. The monitor never joins the groups it watches: it reads their
committed offsets through the admin API and fetches with a group-less, assign-only consumer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from pipeline.metrics import CONSUMER_LAG_MESSAGES, CONSUMER_LAG_SECONDS, PARTITION_STALLED

LibrdkafkaConfig = Mapping[str, str | int | float | bool]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PartitionLag:
    """One partition's lag for one consumer group at one instant."""

    group: str
    topic: str
    partition: int
    committed: int
    high_watermark: int
    messages: int
    seconds: float
    stalled: bool


class LagMonitor:
    """Samples the lag of the given consumer groups and publishes it as Prometheus gauges.

    ``kafka_config`` is the librdkafka dict of the cluster (``pipeline.kafka_config``). ``clock`` returns
    epoch seconds and exists so tests can move time.
    """

    def __init__(
        self,
        kafka_config: LibrdkafkaConfig,
        groups: Sequence[str],
        *,
        stall_after_s: float = 60.0,
        request_timeout_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._groups = list(groups)
        self._stall_after_s = stall_after_s
        self._timeout = request_timeout_s
        self._clock = clock
        self._admin = AdminClient(dict(kafka_config))
        # Assign-only: the group id is required by librdkafka but never joins or commits.
        self._reader = Consumer(
            {
                **kafka_config,
                "group.id": "psinfor-lag-monitor",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": False,
            }
        )
        # (group, topic, partition) -> (committed offset, when it was first seen at that value)
        self._last_moved: dict[tuple[str, str, int], tuple[int, float]] = {}

    def close(self) -> None:
        """Release the reader consumer."""
        self._reader.close()

    def sample(self) -> list[PartitionLag]:
        """Measure every partition the groups have committed to; update the gauges; return the figures."""
        committed = self._committed_offsets()
        if not committed:
            return []
        high = self._high_watermarks({(topic, partition) for _, topic, partition in committed})
        lagging = {
            (topic, partition, offset)
            for (_, topic, partition), offset in committed.items()
            if high[(topic, partition)] > offset
        }
        oldest = self._timestamps_at(lagging)
        now = self._clock()
        results: list[PartitionLag] = []
        for (group, topic, partition), offset in sorted(committed.items()):
            messages = max(0, high[(topic, partition)] - offset)
            timestamp = oldest.get((topic, partition))
            seconds = max(0.0, now - timestamp) if messages and timestamp is not None else 0.0
            stalled = self._is_stalled((group, topic, partition), offset, messages, now)
            lag = PartitionLag(
                group, topic, partition, offset, high[(topic, partition)], messages, seconds, stalled
            )
            self._publish(lag)
            results.append(lag)
        return results

    def run(self, interval_s: float, stop: threading.Event) -> None:
        """Sample every ``interval_s`` until ``stop`` is set; a failed sample is logged, not fatal."""
        while not stop.is_set():
            try:
                self.sample()
            except KafkaException as exc:
                log.warning("consumer lag not sampled", extra={"groups": self._groups, "error": str(exc)})
            stop.wait(interval_s)

    def _committed_offsets(self) -> dict[tuple[str, str, int], int]:
        offsets: dict[tuple[str, str, int], int] = {}
        for group in self._groups:
            futures = self._admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group)], request_timeout=self._timeout
            )
            for future in futures.values():
                result = future.result()
                for tp in result.topic_partitions or []:
                    if tp.offset >= 0:  # negative = nothing committed for that partition yet
                        offsets[(group, tp.topic, tp.partition)] = tp.offset
        return offsets

    def _high_watermarks(self, partitions: set[tuple[str, int]]) -> dict[tuple[str, int], int]:
        marks: dict[tuple[str, int], int] = {}
        for topic, partition in partitions:
            _, high = self._reader.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=self._timeout, cached=False
            )
            marks[(topic, partition)] = high
        return marks

    def _timestamps_at(self, wanted: set[tuple[str, int, int]]) -> dict[tuple[str, int], float]:
        """Epoch seconds of the first record at or after each (topic, partition, offset).

        "At or after": retention or compaction may have removed the record at the committed offset
        itself; the next one is then the oldest the group still has to process.
        """
        if not wanted:
            return {}
        self._reader.assign([TopicPartition(topic, partition, offset) for topic, partition, offset in wanted])
        found: dict[tuple[str, int], float] = {}
        deadline = time.monotonic() + self._timeout
        pending = {(topic, partition) for topic, partition, _ in wanted}
        try:
            while pending and time.monotonic() < deadline:
                message = self._reader.poll(0.2)
                if message is None or message.error() is not None:
                    continue
                topic, partition = message.topic(), message.partition()
                if topic is None or partition is None or (topic, partition) not in pending:
                    continue
                pending.discard((topic, partition))
                _, timestamp_ms = message.timestamp()
                if timestamp_ms > 0:
                    found[(topic, partition)] = timestamp_ms / 1000.0
        except KafkaException:
            # A partition deleted between the two calls: report what was read, the next sample heals.
            pass
        finally:
            self._reader.unassign()
        return found

    def _is_stalled(self, key: tuple[str, str, int], offset: int, messages: int, now: float) -> bool:
        previous = self._last_moved.get(key)
        if previous is None or previous[0] != offset:
            self._last_moved[key] = (offset, now)
            return False
        return messages > 0 and now - previous[1] >= self._stall_after_s

    @staticmethod
    def _publish(lag: PartitionLag) -> None:
        labels = (lag.group, lag.topic, str(lag.partition))
        CONSUMER_LAG_MESSAGES.labels(*labels).set(lag.messages)
        CONSUMER_LAG_SECONDS.labels(*labels).set(lag.seconds)
        PARTITION_STALLED.labels(*labels).set(1 if lag.stalled else 0)


class LagExporter:
    """A stage's own lag, exported on its /metrics: a :class:`LagMonitor` of the stage's consumer groups
    sampled on a daemon thread while the ``with`` block runs (``interval_s`` 0 turns it off).

    The lag gauges and alerts (deploy/prometheus) need a long-running sampler; every stage runs one for
    its own groups, so a dashboard shows each group's lag in messages and seconds without a separate
    service.
    """

    def __init__(self, kafka_config: LibrdkafkaConfig, groups: Sequence[str], *, interval_s: float) -> None:
        self._config = kafka_config
        self._groups = list(groups)
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._monitor: LagMonitor | None = None

    def __enter__(self) -> LagExporter:
        if self._interval_s > 0 and self._groups:
            self._monitor = LagMonitor(self._config, self._groups)
            self._thread = threading.Thread(
                target=self._monitor.run,
                args=(self._interval_s, self._stop),
                name="lag-exporter",
                daemon=True,
            )
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._monitor is not None:
            self._monitor.close()
