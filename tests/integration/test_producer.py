"""The pipeline producer against the real broker: acknowledged writes, headers, refusals, unreachable."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, Message
from prometheus_client import REGISTRY

from pipeline.errors import ProduceError, RetryableError
from pipeline.producer import Delivery, PipelineProducer, producer_config
from pipeline.settings import KafkaSettings
from tests.conftest import NewTopicFactory

pytestmark = pytest.mark.integration


def _read(bootstrap: str, group: str, topic: str, count: int, timeout: float = 15.0) -> list[Message]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    messages: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while len(messages) < count and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                messages.append(message)
    finally:
        consumer.close()
    return messages


def _metric(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_config_is_idempotent_with_acks_all() -> None:
    config = producer_config(KafkaSettings(bootstrap_servers="h:1"), client_id_suffix="webhooks")
    assert config["acks"] == "all"
    assert config["enable.idempotence"] is True
    assert config["client.id"] == "psinfor-webhooks"


@pytest.mark.timeout(60)
def test_produce_and_wait_returns_the_acknowledged_position_and_keeps_headers(
    kafka_bootstrap: str, new_topic: NewTopicFactory, new_group: Callable[[], str]
) -> None:
    topic = new_topic(partitions=1)
    headers = [("correlation_id", b"c-42"), ("content-type", b"application/json"), ("bin", b"\x00\xff")]
    before = _metric("psinfor_produced_total", {"topic": topic})
    with PipelineProducer(KafkaSettings(bootstrap_servers=kafka_bootstrap), client_id_suffix="t") as producer:
        first = producer.produce_and_wait(topic, b"k1", b'{"a": 1}', headers, timeout=20)
        second = producer.produce_and_wait(topic, None, b"\x00\x01", (), timeout=20)
    assert first == (0, 0)
    assert second == (0, 1)
    assert _metric("psinfor_produced_total", {"topic": topic}) - before == 2

    got = _read(kafka_bootstrap, new_group(), topic, 2)
    assert [(m.key(), m.value()) for m in got] == [(b"k1", b'{"a": 1}'), (None, b"\x00\x01")]
    assert got[0].headers() == headers


@pytest.mark.timeout(60)
def test_produce_reports_delivery_on_the_poll_thread(
    kafka_bootstrap: str, new_topic: NewTopicFactory
) -> None:
    topic = new_topic(partitions=3)
    deliveries: dict[int, Delivery] = {}
    threads: set[str] = set()
    all_done = threading.Event()

    def reporter(index: int) -> Callable[[Delivery], None]:
        def on_delivery(delivery: Delivery) -> None:
            deliveries[index] = delivery
            threads.add(threading.current_thread().name)
            if len(deliveries) == 20:
                all_done.set()

        return on_delivery

    producer = PipelineProducer(KafkaSettings(bootstrap_servers=kafka_bootstrap), client_id_suffix="t")
    try:
        for i in range(20):
            producer.produce(topic, f"key-{i % 4}".encode(), f"v{i}".encode(), (), reporter(i))
        # No flush and no poll by the caller: the background thread serves the reports.
        assert all_done.wait(20)
    finally:
        assert producer.close(10) == 0
    assert all(d.error is None and d.offset >= 0 and d.topic == topic for d in deliveries.values())
    assert threads == {"psinfor-producer-t"}
    # Same key: same partition and offsets in produce order (idempotence keeps the order).
    for key in range(4):
        mine = [deliveries[i] for i in range(key, 20, 4)]
        assert len({d.partition for d in mine}) == 1
        assert [d.offset for d in mine] == sorted(d.offset for d in mine)


@pytest.mark.timeout(60)
def test_record_refused_by_the_broker_raises_produce_error(
    kafka_bootstrap: str, new_topic: NewTopicFactory
) -> None:
    topic = new_topic(config={"max.message.bytes": "64"})
    with PipelineProducer(KafkaSettings(bootstrap_servers=kafka_bootstrap), client_id_suffix="t") as producer:
        with pytest.raises(ProduceError, match="MSG_SIZE_TOO_LARGE"):
            producer.produce_and_wait(topic, b"k", b"x" * 500, (), timeout=20)
        assert _metric("psinfor_produce_failures_total", {"topic": topic}) == 1
        # The producer stays usable after a refused record (not a fatal idempotence error).
        small = new_topic()
        assert producer.produce_and_wait(small, b"k", b"ok", (), timeout=20) == (0, 0)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.timeout(30)
def test_unreachable_broker_raises_retryable_within_the_timeout() -> None:
    settings = KafkaSettings(bootstrap_servers=f"127.0.0.1:{_closed_port()}")
    producer = PipelineProducer(settings, client_id_suffix="t", overrides={"log_level": 0})
    try:
        started = time.monotonic()
        with pytest.raises(RetryableError, match="not acknowledged within 1s") as caught:
            producer.produce_and_wait("nowhere", b"k", b"v", (), timeout=1.0)
        assert 1.0 <= time.monotonic() - started < 5.0
        # The webhook path turns this into 503 + Retry-After.
        assert caught.value.retry_after is not None
    finally:
        # The record can never be delivered; closing must not hang past its timeout.
        assert producer.close(0.5) == 1
