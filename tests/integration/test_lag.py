"""Consumer lag in messages and seconds, and the stalled flag, measured on the real broker."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client import REGISTRY

from pipeline.lag import LagExporter, LagMonitor

pytestmark = pytest.mark.integration

RECORD_TIME_MS = 1_700_000_000_000  # a fixed past instant, so the expected age is exact


def _produce(bootstrap: str, topic: str, partition: int, count: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for index in range(count):
        producer.produce(topic, value=b"x%d" % index, partition=partition, timestamp=RECORD_TIME_MS + index)
    assert producer.flush(10) == 0


def _commit(bootstrap: str, group: str, offsets: list[TopicPartition]) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        consumer.commit(offsets=offsets, asynchronous=False)
    finally:
        consumer.close()


def test_psinfor_lag_says_what_to_do_when_the_broker_does_not_answer(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli.main import main

    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("PSINFOR_KAFKA__BOOTSTRAP_SERVERS", f"127.0.0.1:{port}")

    assert main(["lag", "some-group"]) == 1

    error = capsys.readouterr().err
    assert f"cannot read the groups' offsets from Kafka at 127.0.0.1:{port}" in error
    assert "PSINFOR_KAFKA__BOOTSTRAP_SERVERS" in error
    assert "Traceback" not in error


@pytest.mark.timeout(60)
def test_lag_in_messages_and_seconds_and_stall(
    kafka_bootstrap: str, new_topic: Callable[..., str], new_group: Callable[[], str]
) -> None:
    topic = new_topic(partitions=2)
    group = new_group()
    _produce(kafka_bootstrap, topic, 0, 10)
    _produce(kafka_bootstrap, topic, 1, 5)
    # The group finished offsets 0..3 of partition 0 and all of partition 1.
    _commit(kafka_bootstrap, group, [TopicPartition(topic, 0, 4), TopicPartition(topic, 1, 5)])

    now = [RECORD_TIME_MS / 1000 + 120.0]
    monitor = LagMonitor(
        {"bootstrap.servers": kafka_bootstrap}, [group], stall_after_s=60, clock=lambda: now[0]
    )
    try:
        first = {lag.partition: lag for lag in monitor.sample()}
        assert first[0].messages == 6
        assert first[0].committed == 4
        assert first[0].high_watermark == 10
        # The oldest uncommitted record is offset 4, stamped RECORD_TIME_MS + 4.
        assert first[0].seconds == pytest.approx(120.0 - 0.004)
        assert first[1].messages == 0
        assert first[1].seconds == 0.0
        assert not first[0].stalled

        labels = {"group": group, "topic": topic, "partition": "0"}
        assert REGISTRY.get_sample_value("psinfor_consumer_lag_messages", labels) == 6
        assert REGISTRY.get_sample_value("psinfor_consumer_lag_seconds", labels) == pytest.approx(119.996)

        now[0] += 61.0  # no commit moved for longer than the stall window
        second = {lag.partition: lag for lag in monitor.sample()}
        assert second[0].stalled
        assert not second[1].stalled  # no lag, so never stalled
        assert REGISTRY.get_sample_value("psinfor_partition_stalled", labels) == 1

        _commit(kafka_bootstrap, group, [TopicPartition(topic, 0, 10)])
        third = {lag.partition: lag for lag in monitor.sample()}
        assert third[0].messages == 0
        assert not third[0].stalled
    finally:
        monitor.close()


@pytest.mark.timeout(60)
def test_psinfor_lag_prints_the_table(
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    new_group: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from cli.main import main

    topic = new_topic(partitions=1)
    group = new_group()
    _produce(kafka_bootstrap, topic, 0, 10)
    _commit(kafka_bootstrap, group, [TopicPartition(topic, 0, 4)])
    monkeypatch.setenv("PSINFOR_KAFKA__BOOTSTRAP_SERVERS", kafka_bootstrap)

    assert main(["lag", group]) == 0

    header, row = capsys.readouterr().out.strip().splitlines()
    assert header.split() == ["GROUP", "TOPIC", "PART", "COMMITTED", "END", "LAG", "LAG_S"]
    cells = row.split()
    assert cells[:6] == [group, topic, "0", "4", "10", "6"]
    assert float(cells[6]) > 0  # the records are stamped in the past


@pytest.mark.timeout(60)
def test_a_stage_exports_its_own_lag_while_it_runs(
    kafka_bootstrap: str, new_topic: Callable[..., str], new_group: Callable[[], str]
) -> None:
    """What the sinks and processors run beside their work: the gauges the lag alerts read move on
    their own, without `psinfor lag` being run."""
    topic = new_topic(partitions=1)
    group = new_group()
    _produce(kafka_bootstrap, topic, 0, 9)
    _commit(kafka_bootstrap, group, [TopicPartition(topic, 0, 2)])
    labels = {"group": group, "topic": topic, "partition": "0"}
    with LagExporter({"bootstrap.servers": kafka_bootstrap}, [group], interval_s=0.2):
        deadline = time.monotonic() + 30
        while REGISTRY.get_sample_value("psinfor_consumer_lag_messages", labels) != 7:
            assert time.monotonic() < deadline, "the exporter never published the group's lag"
            time.sleep(0.1)
        _commit(kafka_bootstrap, group, [TopicPartition(topic, 0, 9)])
        while REGISTRY.get_sample_value("psinfor_consumer_lag_messages", labels) != 0:
            assert time.monotonic() < deadline, "the exporter did not follow the new commit"
            time.sleep(0.1)
    assert REGISTRY.get_sample_value("psinfor_consumer_lag_seconds", labels) == 0.0
