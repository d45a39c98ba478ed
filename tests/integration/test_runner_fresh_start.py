"""Where a runner given ``fresh_start_lookback_s`` starts a partition its group never committed.

Against the real broker: the start is the partition's first record of the lookback (older records are
not read, younger ones and later ones are), and it is committed as soon as the partition is assigned,
so a member that joins later (a rebalance, a restart) starts there too and not at a newer end. The
poller's notification reader used to start at "latest": a rebalance before its first commit moved the
start past the notifications written meanwhile, and a customer's rename was never read (CI, e2e).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from pipeline.records import SourceRecord
from pipeline.runner import ConsumeRunner
from pipeline.settings import KafkaSettings, ServiceSettings, Settings
from tests.conftest import NewTopicFactory

pytestmark = pytest.mark.integration

GroupFactory = Callable[[], str]

LOOKBACK_S = 600.0
HOUR_MS = 3_600_000


def _settings(bootstrap: str) -> Settings:
    return Settings(
        kafka=KafkaSettings(bootstrap_servers=bootstrap), service=ServiceSettings(commit_interval_s=0.05)
    )


def _produce(bootstrap: str, topic: str, partition: int, value: bytes, timestamp_ms: int) -> None:
    """One record with an explicit CreateTime (a raw topic keeps the producer's timestamps)."""
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, value=value, partition=partition, timestamp=timestamp_ms)
    assert producer.flush(20) == 0


def _committed(admin: AdminClient, group: str, topic: str, partition: int) -> int:
    """The group's committed offset (-1001 when it has none)."""
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, partition)])
    result = admin.list_consumer_group_offsets([request])[group].result(timeout=10)
    offset: int = result.topic_partitions[0].offset
    return offset


def _wait_committed(
    admin: AdminClient, group: str, topic: str, partition: int, timeout_s: float = 30.0
) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        offset = _committed(admin, group, topic, partition)
        if offset >= 0:
            return offset
        time.sleep(0.1)
    raise AssertionError(f"{group} committed nothing on {topic}:{partition} within {timeout_s} s")


def _now_ms() -> int:
    return int(time.time() * 1000)


@pytest.mark.timeout(90)
def test_a_fresh_partition_starts_at_its_first_record_of_the_lookback_committed_at_once(
    kafka_bootstrap: str, new_topic: NewTopicFactory, new_group: GroupFactory, kafka_admin: AdminClient
) -> None:
    topic, dlq_topic, group = new_topic(partitions=2), new_topic(), new_group()
    _produce(kafka_bootstrap, topic, 0, b"p0 two hours ago", _now_ms() - 2 * HOUR_MS)
    _produce(kafka_bootstrap, topic, 0, b"p0 a minute ago", _now_ms() - 60_000)
    _produce(kafka_bootstrap, topic, 1, b"p1 two hours ago", _now_ms() - 2 * HOUR_MS)
    seen: list[bytes] = []
    runner: ConsumeRunner

    def handler(record: SourceRecord) -> None:
        seen.append(record.value or b"")
        if b"p1 later" in seen:
            runner.stop()

    runner = ConsumeRunner(
        _settings(kafka_bootstrap),
        "fresh",
        [topic],
        group,
        handler,
        dlq_topic,
        fresh_start_lookback_s=LOOKBACK_S,
    )
    pinned: dict[int, int] = {}

    def feed_after_the_start_is_committed() -> None:
        # Partition 1 has nothing in the lookback: its start is its end (offset 1), committed before
        # the runner handled anything there; a record written after that is read.
        pinned[0] = _wait_committed(kafka_admin, group, topic, 0)
        pinned[1] = _wait_committed(kafka_admin, group, topic, 1)
        _produce(kafka_bootstrap, topic, 1, b"p1 later", _now_ms())

    feeder = threading.Thread(target=feed_after_the_start_is_committed, daemon=True)
    feeder.start()
    runner.run()
    feeder.join(30)

    assert seen == [b"p0 a minute ago", b"p1 later"]
    # Partition 1's start (its end then) was committed before anything was handled there; partition 0's
    # commit is the pinned start (1) or, if the runner got there first, past the record it handled (2).
    assert pinned[1] == 1
    assert pinned[0] in (1, 2)
    assert (_committed(kafka_admin, group, topic, 0), _committed(kafka_admin, group, topic, 1)) == (2, 2)


@pytest.mark.timeout(90)
def test_the_committed_start_holds_for_the_next_member_so_nothing_written_meanwhile_is_skipped(
    kafka_bootstrap: str, new_topic: NewTopicFactory, new_group: GroupFactory, kafka_admin: AdminClient
) -> None:
    topic, dlq_topic, group = new_topic(), new_topic(), new_group()
    settings = _settings(kafka_bootstrap)
    first = ConsumeRunner(
        settings, "fresh-a", [topic], group, lambda record: None, dlq_topic, fresh_start_lookback_s=LOOKBACK_S
    )

    def stop_once_started() -> None:
        _wait_committed(kafka_admin, group, topic, 0)
        first.stop()

    stopper = threading.Thread(target=stop_once_started, daemon=True)
    stopper.start()
    first.run()  # joins, is assigned the empty partition, commits its start (0), leaves handling nothing
    stopper.join(30)
    assert _committed(kafka_admin, group, topic, 0) == 0

    # Written while no member runs, and older than the lookback by the time the next member comes
    # (an outage longer than it): only the committed start can lead the next member to it.
    _produce(kafka_bootstrap, topic, 0, b"written meanwhile", _now_ms() - 2 * HOUR_MS)
    seen: list[bytes] = []
    second: ConsumeRunner

    def handler(record: SourceRecord) -> None:
        seen.append(record.value or b"")
        second.stop()

    second = ConsumeRunner(
        settings, "fresh-b", [topic], group, handler, dlq_topic, fresh_start_lookback_s=LOOKBACK_S
    )
    second.run()

    assert seen == [b"written meanwhile"]
    assert _committed(kafka_admin, group, topic, 0) == 1


def test_a_lookback_must_be_positive() -> None:
    with pytest.raises(ValueError, match="fresh_start_lookback_s must be positive"):
        ConsumeRunner(
            _settings("127.0.0.1:1"),
            "fresh",
            ["t"],
            "g",
            lambda record: None,
            "dlq",
            fresh_start_lookback_s=0,
        )
