"""The immutable record a runner hands to a stage's handler.

``SourceRecord`` is a plain snapshot of one consumed Kafka message: the original key and value bytes
exactly as the broker returned them, the headers in their original order (duplicates kept), and where
the record came from. Handlers and the dead-letter producer depend on this type, never on
``confluent_kafka.Message``, so they stay testable without a broker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

Headers = tuple[tuple[str, bytes], ...]
"""Kafka headers in broker order; a header sent with a null value is kept as ``b""``."""


class _KafkaMessage(Protocol):
    """The part of ``confluent_kafka.Message`` a ``SourceRecord`` is built from."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> list[tuple[str, bytes | None]] | None: ...
    def timestamp(self) -> tuple[int, int]: ...


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One consumed message: original bytes, headers and position. Never mutated."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers = ()
    timestamp_ms: int | None = None
    """Producer (create) or broker (log-append) time in epoch milliseconds; None when the broker had none."""

    def header(self, name: str) -> bytes | None:
        """The value of the LAST header called ``name`` (Kafka allows repeats), or None."""
        for key, value in reversed(self.headers):
            if key == name:
                return value
        return None

    @classmethod
    def from_message(cls, message: _KafkaMessage) -> SourceRecord:
        """Snapshot a consumed ``confluent_kafka.Message`` (one without an error)."""
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        if topic is None or partition is None or offset is None:
            # Only error events lack a position; the runner filters those out before building records.
            raise ValueError("a consumed message without topic/partition/offset is an error event")
        timestamp_type, timestamp = message.timestamp()
        # confluent_kafka.TIMESTAMP_NOT_AVAILABLE is 0; compared by value to keep this module import-light.
        return cls(
            topic=topic,
            partition=partition,
            offset=offset,
            key=message.key(),
            value=message.value(),
            headers=tuple((name, value or b"") for name, value in message.headers() or ()),
            timestamp_ms=timestamp if timestamp_type != 0 else None,
        )
