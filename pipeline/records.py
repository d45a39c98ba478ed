"""The immutable record a runner hands to a stage's handler.

``SourceRecord`` is a plain snapshot of one consumed Kafka message: the original key and value bytes
exactly as the broker returned them, the headers in their original order (duplicates kept), and where
the record came from. Handlers and the dead-letter producer depend on this type, never on
``confluent_kafka.Message``, so they stay testable without a broker.
"""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Message

Headers = tuple[tuple[str, bytes], ...]
"""Kafka headers in broker order; a header sent with a null value is kept as ``b""``."""


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
    def from_message(cls, message: Message) -> SourceRecord:
        """Snapshot a consumed ``confluent_kafka.Message`` (one without an error)."""
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        if topic is None or partition is None or offset is None:
            # Only error events lack a position; the runner filters those out before building records.
            raise ValueError("a consumed message without topic/partition/offset is an error event")
        timestamp_type, timestamp = message.timestamp()
        return cls(
            topic=topic,
            partition=partition,
            offset=offset,
            key=message.key(),
            value=message.value(),
            headers=_normalise_headers(message.headers()),
            timestamp_ms=None if timestamp_type == TIMESTAMP_NOT_AVAILABLE else timestamp,
        )


def _normalise_headers(
    raw: dict[str, str | bytes | None] | list[tuple[str, str | bytes | None]] | None,
) -> Headers:
    # A consumed message always has a list; the dict form only exists on messages built by hand.
    pairs = raw.items() if isinstance(raw, dict) else raw or ()
    return tuple(
        (name, value.encode("utf-8") if isinstance(value, str) else value or b"") for name, value in pairs
    )
