"""Per-key staleness: the newest ``meta.version`` emitted for each source key, in a faust table.

A raw event whose version is older than (``stale``) or equal to (``duplicate``) the last version
emitted for its key is dropped and counted; only newer versions become canonical records, so each key's
canonical stream moves forward only.

The table is keyed by the SOURCE record's key and co-partitioned with the source topic: the changelog
record of a key goes to the partition its source events are read from, so whichever worker owns that
source partition after a rebalance recovers exactly the versions of the keys it will see. The table
therefore has as many partitions as the source topic(s); :func:`declare_versions_table` asks the broker.

Durability order (what makes a crash harmless): the runner writes a version to the changelog only
after the canonical record carrying it was acknowledged, and acks the source events to faust (which
commits them) only after the changelog records were acknowledged too. After a crash the table is never
behind the committed offsets; it may be ahead (versions of events that are processed again), which
drops those replays as duplicates, exactly as the first run decided. Only a canonical record
acknowledged just before the crash, whose changelog write had not completed, is emitted again: same
``event_id``, counted.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterable, Mapping
from typing import Any

import faust
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient

from pipeline.errors import ConfigError, ProduceError
from pipeline.kafka_config import librdkafka_config
from pipeline.producer import producer_config
from pipeline.settings import KafkaSettings

_VERSION = struct.Struct(">q")


def source_partitions(settings: KafkaSettings, topics: Iterable[str], *, timeout_s: float = 15.0) -> int:
    """The partition count shared by ``topics``; ConfigError when one is missing or they differ.

    Co-partitioned sources are what lets one table serve them all: a key must live in the same
    partition number on every source topic of a flow.
    """
    admin = AdminClient(librdkafka_config(settings, client_id_suffix="processors-admin"))
    names = list(topics)
    metadata = admin.list_topics(timeout=timeout_s)
    counts: dict[str, int] = {}
    for name in names:
        topic = metadata.topics.get(name)
        if topic is None or topic.error is not None or not topic.partitions:
            raise ConfigError(f"source topic {name!r} does not exist; run `psinfor topics apply`")
        counts[name] = len(topic.partitions)
    if len(set(counts.values())) != 1:
        raise ConfigError(f"the source topics of a flow must have the same partition count, got {counts}")
    return counts[names[0]]


def declare_versions_table(app: faust.App, flow_name: str, *, partitions: int) -> Any:
    """Declare the flow's version table (raw bytes in and out, in memory, changelog-backed)."""
    return app.Table(
        f"{flow_name}-versions",
        default=None,
        partitions=partitions,
        # Serializers come from the app (raw): keys are the source keys' bytes, values packed longs.
        key_type=bytes,
        value_type=bytes,
        help=f"Newest meta.version emitted per source key by flow {flow_name}.",
    )


class VersionTable:
    """The runner's view of one flow's version table: look up, and remember durably.

    faust declares the table, creates its changelog topic and recovers the table from it on every
    assignment; the changelog RECORDS are written here with a librdkafka producer and awaited, because
    faust's own (aiokafka) producer writing one record per key was the processor's bottleneck, and an
    awaited write lets the runner ack events only once their versions are durable.
    """

    def __init__(self, table: Any, settings: KafkaSettings, *, client_id_suffix: str) -> None:
        self._table = table
        # No compression: faust recovers the table with aiokafka, which reads lz4 (the pipeline
        # producer's default) only with an extra library; version records are 8 bytes anyway.
        self._producer = Producer(
            producer_config(
                settings, client_id_suffix=client_id_suffix, overrides={"compression.type": "none"}
            )
        )

    @property
    def changelog_topic(self) -> str:
        """The changelog topic faust recovers the table from."""
        name: str = self._table.changelog_topic.get_topic_name()
        return name

    def last(self, key: bytes) -> int | None:
        """The newest version emitted for ``key``, or None when none was."""
        stored = self._table.data.get(key)
        return None if stored is None else int(_VERSION.unpack(stored)[0])

    async def remember(self, versions: Mapping[bytes, tuple[int, int]], *, timeout_s: float) -> None:
        """Write each key's new version to the changelog and return once all were acknowledged.

        ``versions`` maps source key → (source partition, version). Call only once the canonical
        records carrying those versions were acknowledged. Raises ProduceError when a write failed or
        did not complete within ``timeout_s`` (the caller crashes: nothing of the batch is acked).
        """
        if not versions:
            return
        topic = self.changelog_topic
        failures: list[str] = []

        def report(error: KafkaError | None, _message: Any) -> None:
            if error is not None:
                failures.append(f"{error.name()}: {error.str()}")

        packed = {key: _VERSION.pack(version) for key, (_, version) in versions.items()}
        for key, (partition, _) in versions.items():
            # The partition of the key's source events: co-partitioned, see the module docstring.
            self._producer.produce(topic, key=key, value=packed[key], partition=partition, on_delivery=report)
        remaining = await asyncio.to_thread(self._producer.flush, timeout_s)
        if remaining or failures:
            detail = failures[0] if failures else f"{remaining} not acknowledged within {timeout_s:g}s"
            raise ProduceError(f"version changelog write failed: {detail}", topic=topic)
        data = self._table.data
        for key, value in packed.items():
            data[key] = value

    def close(self) -> None:
        """Flush what is still queued (nothing, between batches)."""
        self._producer.flush(5.0)
