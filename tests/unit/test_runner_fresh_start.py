"""The rebalance callback's fresh start when the broker's answers fail (the real broker's happy path is
in tests/integration/test_runner_fresh_start.py).

A lookup failing for a while (a topic just created has no leader yet) is retried inside the callback;
failing for good, the partitions keep their default start (committed offset, else the beginning), and
nothing escapes the callback (the client re-raises such an exception mangled, as a bare KafkaError).
"""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from pipeline import runner as runner_module
from pipeline.runner import ConsumeRunner
from pipeline.settings import KafkaSettings, Settings

NOW_S = 1_800_000_000.0
LOOKBACK_S = 600.0


class FlakyBrokerConsumer:
    """Answers like a consumer whose watermark lookups fail ``failures`` times first."""

    def __init__(
        self, *, committed: dict[int, int], ends: dict[int, int], found: dict[int, int], failures: int
    ):
        self._committed, self._ends, self._found = committed, ends, found
        self.failures = failures
        self.searched_at_ms: list[int] = []
        self.assigned: list[list[tuple[int, int]]] = []
        self.commits: list[list[tuple[int, int]]] = []

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return [
            TopicPartition(tp.topic, tp.partition, self._committed.get(tp.partition, -1001))
            for tp in partitions
        ]

    def get_watermark_offsets(self, partition: TopicPartition, timeout: float) -> tuple[int, int]:
        if self.failures > 0:
            self.failures -= 1
            raise KafkaException(KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION))
        return 0, self._ends[partition.partition]

    def offsets_for_times(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        self.searched_at_ms.extend(tp.offset for tp in partitions)
        return [
            TopicPartition(tp.topic, tp.partition, self._found.get(tp.partition, -1)) for tp in partitions
        ]

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.assigned.append([(tp.partition, tp.offset) for tp in partitions])

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> None:
        assert asynchronous is False
        self.commits.append([(tp.partition, tp.offset) for tp in offsets])


def _runner() -> ConsumeRunner:
    return ConsumeRunner(
        Settings(kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1")),
        "fresh",
        ["raw"],
        "g",
        lambda record: None,
        "dlq",
        fresh_start_lookback_s=LOOKBACK_S,
        clock=lambda: NOW_S,
    )


def _partitions(*numbers: int) -> list[TopicPartition]:
    return [TopicPartition("raw", n) for n in numbers]


def test_a_lookup_failing_for_a_while_is_retried_and_the_starts_are_assigned_and_committed() -> None:
    # Partition 0 was committed at 7; 1 has a record in the lookback at 3; 2 has none (its end, 9).
    consumer = FlakyBrokerConsumer(committed={0: 7}, ends={1: 5, 2: 9}, found={1: 3}, failures=2)
    _runner()._on_assign(consumer, _partitions(0, 1, 2))  # type: ignore[arg-type]

    assert consumer.failures == 0
    assert consumer.searched_at_ms == [int((NOW_S - LOOKBACK_S) * 1000)] * 2
    assert consumer.assigned == [[(0, 7), (1, 3), (2, 9)]]
    assert consumer.commits == [[(1, 3), (2, 9)]]


def test_partitions_all_committed_are_assigned_at_their_commits_and_nothing_is_committed() -> None:
    consumer = FlakyBrokerConsumer(committed={0: 4, 1: 2}, ends={}, found={}, failures=0)
    _runner()._on_assign(consumer, _partitions(0, 1))  # type: ignore[arg-type]

    assert consumer.assigned == [[(0, 4), (1, 2)]]
    assert consumer.commits == []
    assert consumer.searched_at_ms == []


def test_a_lookup_failing_for_good_leaves_the_default_start_and_raises_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runner_module, "BROKER_TIMEOUT_S", 0.3)
    consumer = FlakyBrokerConsumer(committed={}, ends={0: 5}, found={}, failures=10**6)
    _runner()._on_assign(consumer, _partitions(0))  # type: ignore[arg-type]

    # Not assigned here: the client then assigns the partitions itself, at the committed offset or,
    # with none, at the beginning (auto.offset.reset=earliest), which reads again but skips nothing.
    assert consumer.assigned == []
    assert consumer.commits == []
    assert consumer.failures < 10**6


def test_the_consumer_never_starts_at_the_end_of_a_partition_by_default() -> None:
    config = runner_module.consumer_config(
        Settings(kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1")), stage="s", group_id="g"
    )
    assert config["auto.offset.reset"] == "earliest"
