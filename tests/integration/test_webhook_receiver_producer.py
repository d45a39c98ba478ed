"""The asyncio bridge the webhook receiver waits on: ``PipelineProducer.produce_acked`` against the
real broker (acked position, many concurrent waiters on one loop, unreachable broker → RetryableError)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, Message

from pipeline.errors import RetryableError
from pipeline.producer import PipelineProducer
from pipeline.settings import KafkaSettings
from tests.conftest import NewTopicFactory

pytestmark = pytest.mark.integration


def _read_all(bootstrap: str, group: str, topic: str, count: int, timeout: float = 20.0) -> list[Message]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    messages: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while len(messages) < count and time.monotonic() < deadline:
            for message in consumer.consume(500, 0.2):
                if message.error() is None:
                    messages.append(message)
    finally:
        consumer.close()
    return messages


@pytest.mark.timeout(60)
def test_produce_acked_returns_each_records_own_position(
    kafka_bootstrap: str, new_topic: NewTopicFactory, new_group: Callable[[], str]
) -> None:
    topic = new_topic(partitions=1)

    async def send_all(producer: PipelineProducer) -> list[tuple[int, int]]:
        # 300 coroutines wait at once on one loop: each must get the offset of its own record.
        return await asyncio.gather(
            *(
                producer.produce_acked(topic, f"k{i}".encode(), f"v{i}".encode(), [("n", str(i).encode())])
                for i in range(300)
            )
        )

    with PipelineProducer(KafkaSettings(bootstrap_servers=kafka_bootstrap), client_id_suffix="t") as producer:
        positions = asyncio.run(send_all(producer))

    assert sorted(offset for _, offset in positions) == list(range(300))
    by_offset = {m.offset(): m for m in _read_all(kafka_bootstrap, new_group(), topic, 300)}
    for i, (partition, offset) in enumerate(positions):
        assert partition == 0
        record = by_offset[offset]
        assert (record.key(), record.value(), record.headers()) == (
            f"k{i}".encode(),
            f"v{i}".encode(),
            [("n", str(i).encode())],
        )


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.timeout(30)
def test_produce_acked_raises_retryable_when_the_broker_is_unreachable() -> None:
    settings = KafkaSettings(bootstrap_servers=f"127.0.0.1:{_closed_port()}")
    producer = PipelineProducer(settings, client_id_suffix="t", overrides={"log_level": 0})
    try:
        started = time.monotonic()
        with pytest.raises(RetryableError, match=r"not acknowledged within 0\.5s") as caught:
            asyncio.run(producer.produce_acked("nowhere", b"k", b"v", ack_timeout_s=0.5))
        assert 0.5 <= time.monotonic() - started < 3.0
        assert caught.value.retry_after is not None
    finally:
        assert producer.close(0.5) == 1
