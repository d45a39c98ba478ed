"""``WatermarkStore``: a source's positions, kept in the compacted ``state.watermarks`` topic.

Every polling source (the PrestaShop poller, the Infor MI poller) keeps its cursors here. Keys follow the
catalogue's ``{source}:{resource}`` pattern, e.g. ``prestashop:{shop_id}:orders`` for the PrestaShop
orders watermark or ``prestashop:{shop_id}:{resource}:scan:{chunk}`` for the scan digests of one id
range. Values are small JSON objects; a null value (tombstone) deletes a key.

At start :meth:`WatermarkStore.load` reads the topic from the beginning to its end (the high watermark
of every partition as of the start) and keeps the latest value per key; compaction guarantees that
value survives. :meth:`WatermarkStore.put` returns only after the broker acknowledged the write, so a
position it stored survives a crash of the very next instruction.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from pipeline.errors import RetryableError
from pipeline.kafka_config import librdkafka_config
from pipeline.producer import PipelineProducer
from pipeline.settings import KafkaSettings

log = logging.getLogger(__name__)

JsonObject = dict[str, Any]


class WatermarkStore:
    """The latest value of every key of the watermark topic, readable after :meth:`load`."""

    def __init__(
        self,
        kafka: KafkaSettings,
        producer: PipelineProducer,
        topic: str,
        *,
        client_id_suffix: str = "prestashop-poller-state",
        ack_timeout_s: float = 30.0,
    ) -> None:
        self._kafka = kafka
        self._producer = producer
        self.topic = topic
        self._suffix = client_id_suffix
        self._ack_timeout_s = ack_timeout_s
        self._values: dict[str, JsonObject] = {}
        self._loaded = False

    def load(self, timeout_s: float = 60.0) -> int:
        """Read the whole topic to its current end; returns how many keys hold a value.

        Raises RetryableError when the topic cannot be read to its end within ``timeout_s``.
        """
        config = librdkafka_config(self._kafka, client_id_suffix=self._suffix)
        # No group membership and no commits: every start reads the whole (compacted) topic.
        config.update(
            {"group.id": f"{self._suffix}-reader", "enable.auto.commit": False, "enable.partition.eof": True}
        )
        consumer = Consumer(config)
        deadline = time.monotonic() + timeout_s
        try:
            metadata = consumer.list_topics(self.topic, timeout=max(1.0, deadline - time.monotonic()))
            described = metadata.topics.get(self.topic)
            if described is None or described.error is not None or not described.partitions:
                raise RetryableError(f"watermark topic {self.topic} is not available")
            ends: dict[int, int] = {}
            for partition in described.partitions:
                _low, high = consumer.get_watermark_offsets(
                    TopicPartition(self.topic, partition), timeout=max(1.0, deadline - time.monotonic())
                )
                if high > 0:
                    ends[partition] = high
            consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in ends])
            while ends:
                if time.monotonic() > deadline:
                    raise RetryableError(f"{self.topic} not read to its end within {timeout_s:g}s")
                message = consumer.poll(0.2)
                if message is None:
                    continue
                error = message.error()
                partition, offset = message.partition() or 0, message.offset() or 0
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        # The end as of now; a gap left by compaction never makes us wait forever.
                        if offset >= ends.get(partition, 0):
                            ends.pop(partition, None)
                        continue
                    raise RetryableError(f"reading {self.topic}: {error.str()}")
                self._apply(message.key(), message.value())
                if partition in ends and offset + 1 >= ends[partition]:
                    del ends[partition]
        except KafkaException as exc:
            raise RetryableError(f"reading {self.topic}: {exc}") from exc
        finally:
            consumer.close()
        self._loaded = True
        log.info("watermarks loaded", extra={"topic": self.topic, "keys": len(self._values)})
        return len(self._values)

    def get(self, key: str) -> JsonObject | None:
        """The latest value of ``key`` (a copy), or None."""
        if not self._loaded:
            raise RuntimeError("WatermarkStore.load() must run first")
        value = self._values.get(key)
        return dict(value) if value is not None else None

    def keys_with_prefix(self, prefix: str) -> list[str]:
        """Every key that starts with ``prefix``, sorted."""
        return sorted(key for key in self._values if key.startswith(prefix))

    def put(self, key: str, value: Mapping[str, Any]) -> None:
        """Store ``value`` under ``key``; returns only after the broker acknowledged it.

        Raises RetryableError (not acknowledged in time) or ProduceError (refused).
        """
        payload = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
        self._producer.produce_and_wait(self.topic, key.encode(), payload, timeout=self._ack_timeout_s)
        self._values[key] = dict(value)

    def delete(self, key: str) -> None:
        """Write a tombstone for ``key`` (acknowledged before returning)."""
        self._producer.produce_and_wait(self.topic, key.encode(), None, timeout=self._ack_timeout_s)
        self._values.pop(key, None)

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        name = key.decode("utf-8", errors="replace")
        if value is None:
            self._values.pop(name, None)
            return
        try:
            decoded = json.loads(value)
        except ValueError:
            # Another writer's bytes: ignoring them means starting that resource over, never skipping.
            log.warning("unreadable watermark ignored", extra={"key": name})
            return
        if isinstance(decoded, dict):
            self._values[name] = decoded
