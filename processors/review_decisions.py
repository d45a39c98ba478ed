"""What a person decided about a record held for review, and how the processors learn it.

The processors hold an anomaly-flagged order on ``review.order.v1`` instead of ``canonical.order.v1``,
and hold every later version of its key too (``processors/history.py``: a later version is unflagged
only because the history moved on). ``psinfor review`` (``cli/review.py``) lets a person release the
newest held version (it goes to the canonical topic as it was held) or reject it (it never does), and
records each decision on the compacted topic ``state.review-decisions``:

    key   {record}:{key}                       e.g. ``Order:1:1043``
    value {"record": "Order", "key": "1:1043", "state": "released", "version": 1714650000000,
           "event_id": "…", "by": "alice", "at": "2026-11-27T10:00:00.000Z", "reason": ""}   (UTF-8 JSON)

``state`` is ``releasing`` (written before the held datum goes to the canonical topic; a release that
stopped there is finished by the next ``psinfor review release``), ``released`` or ``rejected``.
``version`` is the held datum's ``meta.version``: a decision covers every held version up to it, and a
version held later (flagged again, or held while the person decided) is pending again.

Every processor worker follows the whole topic (:class:`DecisionFollower`, no consumer group): read to
its end at start, after the held keys were seeded from the review topic, then polled every second on
the worker's event loop. A ``released`` decision covering the newest version a worker held of a key
un-holds that key, so its next versions reach the canonical topic again without a restart, on whichever
worker owns the key.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from typing import Final

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from pipeline.errors import RetryableError
from pipeline.kafka_config import librdkafka_config
from pipeline.settings import KafkaSettings
from processors.history import AnomalyHistory

log = logging.getLogger(__name__)

DECISIONS_TOPIC: Final = "state.review-decisions"
RELEASING: Final = "releasing"
RELEASED: Final = "released"
REJECTED: Final = "rejected"
STATES: Final = (RELEASING, RELEASED, REJECTED)


@dataclass(frozen=True, slots=True)
class Decision:
    """One decision about the held versions of one key, up to ``version`` (module docstring)."""

    record: str
    key: str
    state: str
    version: int
    event_id: str
    by: str
    at: str
    reason: str = ""

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"decision state {self.state!r} is not one of {', '.join(STATES)}")

    @property
    def topic_key(self) -> bytes:
        """Its key on ``state.review-decisions``."""
        return decision_key(self.record, self.key)

    def covers(self, version: int) -> bool:
        """Whether this decision was taken about ``version`` or a later one."""
        return version <= self.version

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, value: bytes) -> Decision:
        """Parse a decision record; ValueError saying what is wrong."""
        try:
            data = json.loads(value)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a JSON decision: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError("a decision is a JSON object")
        try:
            return cls(
                record=str(data["record"]),
                key=str(data["key"]),
                state=str(data["state"]),
                version=int(data["version"]),
                event_id=str(data["event_id"]),
                by=str(data["by"]),
                at=str(data["at"]),
                reason=str(data.get("reason") or ""),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"decision without a usable {exc}") from None


def decision_key(record: str, key: str) -> bytes:
    """The ``state.review-decisions`` key of the decisions about ``key`` of ``record``."""
    return f"{record}:{key}".encode()


def apply_decision(history: AnomalyHistory, decision: Decision) -> bool:
    """Un-hold the decision's key when it releases the newest held version; True when it did."""
    if decision.state != RELEASED:
        return False
    return history.release(decision.record, decision.key.encode(), decision.version)


class DecisionFollower:
    """Follows every partition of the decisions topic and applies them to one worker's history.

    Not thread-safe: :meth:`catch_up` runs before the worker starts, :meth:`poll_new` on its event loop
    (the history's only thread). ``consume`` never blocks there: it takes what the client fetched.
    """

    def __init__(self, history: AnomalyHistory, kafka: KafkaSettings, topic: str) -> None:
        config = librdkafka_config(kafka, client_id_suffix="processors-review-decisions")
        config.update(
            {
                # Required by librdkafka; partitions are assigned, nothing is ever committed.
                "group.id": "psinfor-processors-review-decisions",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            }
        )
        self._history = history
        self._topic = topic
        self._consumer = Consumer(config)
        self._following = False

    def catch_up(self, timeout_s: float = 60.0) -> int:
        """Assign every partition from its beginning and apply all decisions up to the current ends;
        returns how many keys were released. A missing topic is logged (nothing is released then, held
        keys stay held); RetryableError when the broker does not answer."""
        deadline = time.monotonic() + timeout_s
        try:
            described = self._consumer.list_topics(timeout=timeout_s).topics.get(self._topic)
        except KafkaException as exc:
            raise RetryableError(f"reading {self._topic}: {exc}") from exc
        if described is None or described.error is not None or not described.partitions:
            log.error(
                "review decisions topic missing: held orders cannot be released; create it with "
                "`psinfor topics apply`",
                extra={"topic": self._topic},
            )
            return 0
        partitions = sorted(described.partitions)
        self._consumer.assign([TopicPartition(self._topic, p, OFFSET_BEGINNING) for p in partitions])
        self._following = True
        waiting = set(partitions)
        released = 0
        while waiting and time.monotonic() < deadline:
            for message in self._consumer.consume(500, timeout=0.5):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        waiting.discard(message.partition() or 0)
                    elif error.fatal():
                        raise KafkaException(error)
                    continue
                released += self._apply(message.key(), message.value())
        if waiting:
            log.warning(
                "review decisions not read to their end in time; the rest follow while running",
                extra={"topic": self._topic, "partitions": sorted(waiting)},
            )
        log.info("review decisions read", extra={"topic": self._topic, "released_keys": released})
        return released

    def poll_new(self, max_records: int = 500) -> int:
        """Apply the decisions fetched since the last call, without waiting; returns keys released."""
        if not self._following:
            return 0
        released = 0
        for message in self._consumer.consume(max_records, timeout=0):
            error = message.error()
            if error is None:
                released += self._apply(message.key(), message.value())
            elif error.fatal():
                raise KafkaException(error)
        return released

    def close(self) -> None:
        self._consumer.close()

    def _apply(self, key: bytes | None, value: bytes | None) -> int:
        if value is None:
            return 0  # a tombstone: the decisions were cleared, what is held stays held
        try:
            decision = Decision.from_bytes(value)
        except ValueError as exc:
            log.warning("unreadable review decision skipped", extra={"key": key, "error": str(exc)})
            return 0
        if not apply_decision(self._history, decision):
            return 0
        log.info(
            "held key released",
            extra={
                "record": decision.record,
                "key": decision.key,
                "version": decision.version,
                "by": decision.by,
            },
        )
        return 1
