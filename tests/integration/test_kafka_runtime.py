"""The local runtime works: records flow through the session broker, the registry stores schemas and
enforces BACKWARD_TRANSITIVE, and a 3-node cluster loses no acknowledged record when a leader is killed."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from tests.conftest import NewTopicFactory

pytestmark = pytest.mark.integration


def _consume_all(bootstrap: str, topic: str, group: str, expected: int, timeout_s: float) -> list[Any]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    records: list[Any] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout_s
        while len(records) < expected and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=500, timeout=0.5):
                error = message.error()
                if error is not None:
                    assert error.code() == KafkaError._PARTITION_EOF, error
                    continue
                records.append(message)
    finally:
        consumer.close()
    return records


# -- (a) the session broker and registry -----------------------------------------------------------


@pytest.fixture
def registry(registry_url: str) -> Iterator[SchemaRegistryClient]:
    # Closed explicitly: an unclosed client leaves a socket for the GC (a ResourceWarning, an error here).
    with SchemaRegistryClient({"url": registry_url}) as client:
        yield client


@pytest.mark.timeout(60)
def test_produce_consume_round_trip(
    kafka_bootstrap: str, new_topic: NewTopicFactory, new_group: Callable[[], str]
) -> None:
    topic = new_topic(partitions=2)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "acks": "all", "enable.idempotence": True})
    sent = {f"key-{i}": f"value-{i}" for i in range(10)}
    for key, value in sent.items():
        producer.produce(topic, key=key, value=value, headers=[("source", b"test")])
    assert producer.flush(30) == 0

    received = _consume_all(kafka_bootstrap, topic, new_group(), len(sent), timeout_s=30)

    assert {m.key().decode(): m.value().decode() for m in received} == sent
    assert all(m.headers() == [("source", b"test")] for m in received)


@pytest.mark.timeout(30)
def test_new_topic_honours_partitions_and_config(kafka_bootstrap: str, new_topic: NewTopicFactory) -> None:
    first = new_topic(partitions=3, config={"cleanup.policy": "compact"})
    second = new_topic()
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})

    metadata = admin.list_topics(timeout=10)

    assert first != second
    assert len(metadata.topics[first].partitions) == 3
    assert len(metadata.topics[second].partitions) == 1


@pytest.mark.timeout(30)
def test_registry_registers_and_reads_back_a_schema(registry: SchemaRegistryClient) -> None:
    client = registry
    subject = f"runtime-test-{uuid.uuid4().hex[:8]}-value"
    record = {
        "type": "record",
        "name": "Probe",
        "namespace": "io.psinfor.test",
        "fields": [{"name": "id", "type": "long", "doc": "probe id"}],
    }

    schema_id = client.register_schema(subject, Schema(json.dumps(record), "AVRO"))

    fetched = client.get_schema(schema_id)
    latest = client.get_latest_version(subject)
    assert json.loads(fetched.schema_str or "{}")["name"] == "Probe"
    assert latest.schema_id == schema_id
    assert subject in client.get_subjects()


@pytest.mark.timeout(30)
def test_registry_global_rule_is_backward_transitive(registry: SchemaRegistryClient) -> None:
    client = registry
    subject = f"runtime-compat-{uuid.uuid4().hex[:8]}-value"
    v1 = {"type": "record", "name": "C", "fields": [{"name": "a", "type": "string"}]}
    # A new required field without a default cannot read old data: not backward compatible.
    v2 = {"type": "record", "name": "C", "fields": [*v1["fields"], {"name": "b", "type": "string"}]}

    client.register_schema(subject, Schema(json.dumps(v1), "AVRO"))

    assert client.get_compatibility() == "BACKWARD_TRANSITIVE"
    assert client.test_compatibility(subject, Schema(json.dumps(v2), "AVRO")) is False
