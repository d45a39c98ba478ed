"""Reading a running stack's topics from outside, as an auditor would: whole topics, no consumer group.

:meth:`TopicReader.read` assigns every partition of a topic from its first offset to the end it has at
the call (a group-less consumer; nothing is committed) and returns the records in partition/offset
order; :meth:`TopicReader.decode` turns a canonical value (Schema Registry wire format) into its datum
with the project's codec, the record named by the topic catalogue.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient

from pipeline.records import SourceRecord
from pipeline.settings import RegistrySettings
from schemas.catalogue import load_catalogue
from schemas.codec import AvroCodec, AvroDatum
from schemas.registry import registry_client

_READ_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class TopicRecord:
    """One record as read (``topic`` is the catalogue name, without the stack's prefix)."""

    topic: str
    partition: int
    offset: int
    key: str | None
    headers: Mapping[str, str]
    value: bytes | None
    timestamp_ms: int

    def header_time(self, name: str) -> float | None:
        """An ISO-8601 header (``received_at``) as epoch seconds, or None when absent."""
        text = self.headers.get(name)
        if not text:
            return None
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class TopicReader:
    """Reads whole topics of one stack (``prefix`` + catalogue name) and decodes canonical values."""

    def __init__(self, bootstrap: str, registry_url: str, prefix: str) -> None:
        self._bootstrap = bootstrap
        self._prefix = prefix
        self._registry: SchemaRegistryClient = registry_client(RegistrySettings(url=registry_url))
        self._records = {topic.name: topic.value for topic in load_catalogue().topics if topic.is_avro()}
        self._codecs: dict[str, AvroCodec] = {}

    def actual(self, topic: str) -> str:
        """The stack's name of catalogue topic ``topic``."""
        return self._prefix + topic

    def read(self, topic: str) -> list[TopicRecord]:
        """Every record ``topic`` holds now, from the start of each partition to its current end."""
        consumer = Consumer(
            {
                "bootstrap.servers": self._bootstrap,
                "group.id": "psinfor-e2e-audit",  # required by librdkafka; never joined (assign only)
                "enable.auto.commit": False,
                "enable.partition.eof": False,
                "log_level": 0,
            }
        )
        actual = self.actual(topic)
        try:
            metadata = consumer.list_topics(actual, timeout=10).topics.get(actual)
            if metadata is None or metadata.error is not None:
                raise AssertionError(f"topic {actual} does not exist")
            ends: dict[int, int] = {}
            assignment: list[TopicPartition] = []
            for partition in metadata.partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(actual, partition), timeout=10)
                if high > low:
                    ends[partition] = high
                    assignment.append(TopicPartition(actual, partition, low))
            records: list[TopicRecord] = []
            if not assignment:
                return records
            consumer.assign(assignment)
            deadline = time.monotonic() + _READ_TIMEOUT_S
            pending = dict(ends)
            while pending:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{actual}: could not read to the end within {_READ_TIMEOUT_S} s")
                for message in consumer.consume(1000, timeout=1.0):
                    if message.error() is not None:
                        continue
                    source = SourceRecord.from_message(message)
                    end = ends[source.partition]
                    if source.offset >= end:
                        continue
                    records.append(
                        TopicRecord(
                            topic=topic,
                            partition=source.partition,
                            offset=source.offset,
                            key=source.key.decode("utf-8", "replace") if source.key is not None else None,
                            headers={
                                name: value.decode("utf-8", "replace") for name, value in source.headers
                            },
                            value=source.value,
                            timestamp_ms=source.timestamp_ms or 0,
                        )
                    )
                    if source.offset >= end - 1:
                        pending.pop(source.partition, None)
            records.sort(key=lambda record: (record.partition, record.offset))
            return records
        finally:
            consumer.close()

    def decode(self, record: TopicRecord) -> AvroDatum:
        """The datum of a canonical record (AssertionError for a topic whose value is not Avro)."""
        name = self._records.get(record.topic)
        if name is None:
            raise AssertionError(f"{record.topic} does not carry a canonical Avro record")
        if record.value is None:
            raise AssertionError(f"{record.topic} {record.partition}@{record.offset} is a tombstone")
        codec = self._codecs.get(name)
        if codec is None:
            codec = self._codecs[name] = AvroCodec(self._registry, name)
        return codec.decode(record.value, self.actual(record.topic))

    def canonical_topics(self) -> list[str]:
        """The catalogue's ``canonical.*`` topics."""
        return sorted(name for name in self._records if name.startswith("canonical."))

    def close(self) -> None:
        """Release the registry client."""
        self._registry.close()
