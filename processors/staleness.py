"""Per-key staleness: the newest ``meta.version`` emitted for each source key, in a faust table.

A raw event whose version is older than (``stale``) or equal to (``duplicate``) the last version
emitted for its key is dropped and counted; only newer versions become canonical records, so each key's
canonical stream moves forward only.

The table is keyed by the SOURCE record's key and co-partitioned with the source topic: the changelog
record of a key goes to the partition its source events are read from, so whichever worker owns that
source partition after a rebalance recovers exactly the versions of the keys it will see. The table
therefore has as many partitions as the source topic(s); :func:`declare_versions_table` asks the broker.

Durability order (what makes a crash harmless): the runner remembers a version only after the
canonical record carrying it was acknowledged, and faust flushes its producer (the changelog) before it
commits source offsets. After a crash the table is never behind the committed offsets; it may be ahead
(versions remembered for events that are processed again), which drops those replays as duplicates,
exactly as the first run decided. Only a canonical record acknowledged just before the crash, whose
changelog write was lost with the process, can be emitted again: same ``event_id``, counted.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from typing import Any

import faust
from confluent_kafka.admin import AdminClient

from pipeline.errors import ConfigError
from pipeline.kafka_config import librdkafka_config
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
    """The runner's view of one flow's version table: look up, and remember after acknowledgement."""

    def __init__(self, table: Any) -> None:
        self._table = table

    def last(self, key: bytes) -> int | None:
        """The newest version emitted for ``key``, or None when none was."""
        stored = self._table.data.get(key)
        return None if stored is None else int(_VERSION.unpack(stored)[0])

    def remember(self, versions: Mapping[bytes, tuple[int, int]]) -> None:
        """Store each key's new version and queue its changelog record to the given partition.

        ``versions`` maps source key → (source partition, version). Call only once the canonical
        records carrying those versions were acknowledged. The changelog write is asynchronous; faust
        flushes it before it commits the source offsets that depend on it.
        """
        table = self._table
        for key, (partition, version) in versions.items():
            packed = _VERSION.pack(version)
            # Written like Table.__setitem__ does, but to the partition of the event's source record:
            # the runner handles batches, so faust's "current event" is not the one this key came from.
            table.send_changelog(partition, key, packed)
            table.data[key] = packed
