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

Every processor worker follows, without a consumer group (:class:`ReviewFollower`), the review topics
of its flows (each held record: its key is held at the version of its ``version`` header) and the
whole decisions topic: read to their ends at start, then polled every second on the worker's event
loop. A ``released`` decision covering the newest version held of a key un-holds it, so its next
versions reach the canonical topic again without a restart; and a key held by one worker is held by
all, so it stays held when its partition moves to another worker.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Final

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from pipeline.errors import RetryableError
from pipeline.kafka_config import librdkafka_config
from pipeline.settings import KafkaSettings
from processors.history import UNKNOWN_VERSION, AnomalyHistory

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


class ReviewFollower:
    """Follows the review topics (holds) and the decisions topic (releases) for one worker's history.

    Every partition of each is assigned (no group): a review topic from its last ``tail`` records, the
    decisions from their beginning. Not thread-safe: :meth:`catch_up` runs before the worker starts,
    :meth:`poll_new` on its event loop (the history's only thread); ``consume`` never blocks there.
    """

    def __init__(
        self,
        history: AnomalyHistory,
        kafka: KafkaSettings,
        *,
        review_topics: Mapping[str, str],
        decisions_topic: str,
        tail: int,
    ) -> None:
        config = librdkafka_config(kafka, client_id_suffix="processors-review")
        config.update(
            {
                # Required by librdkafka; partitions are assigned, nothing is ever committed.
                "group.id": "psinfor-processors-review",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            }
        )
        self._history = history
        self._records = dict(review_topics)
        """actual review topic → the canonical record held there"""
        self._decisions = decisions_topic
        self._tail = tail
        self._consumer = Consumer(config)
        self._following = False

    def catch_up(self, timeout_s: float = 60.0) -> FollowCount:
        """Assign every partition and apply what is there up to the current ends (holds, then the
        releases read alongside). A missing decisions topic is logged: nothing can be released then.
        RetryableError when the broker does not answer."""
        deadline = time.monotonic() + timeout_s
        try:
            topics = self._consumer.list_topics(timeout=timeout_s).topics
            starts: list[TopicPartition] = []
            waiting: set[tuple[str, int]] = set()
            for topic in (*self._records, self._decisions):
                described = topics.get(topic)
                if described is None or described.error is not None or not described.partitions:
                    if topic == self._decisions:
                        log.error(
                            "review decisions topic missing: held orders cannot be released; create it "
                            "with `psinfor topics apply`",
                            extra={"topic": topic},
                        )
                    continue
                for partition in sorted(described.partitions):
                    low, high = self._consumer.get_watermark_offsets(
                        TopicPartition(topic, partition), timeout=timeout_s, cached=False
                    )
                    start = low if topic == self._decisions else max(low, high - self._tail)
                    starts.append(TopicPartition(topic, partition, start))
                    if high > start:
                        waiting.add((topic, partition))
        except KafkaException as exc:
            raise RetryableError(f"reading the review topics: {exc}") from exc
        self._consumer.assign(starts)
        self._following = True
        count = FollowCount()
        while waiting and time.monotonic() < deadline:
            for message in self._consumer.consume(500, timeout=0.5):
                where = (str(message.topic()), message.partition() or 0)
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        waiting.discard(where)
                    elif error.fatal():
                        raise KafkaException(error)
                    continue
                count = count + self._apply(message)
        if waiting:
            log.warning(
                "review topics not read to their end in time; the rest follows while running",
                extra={"partitions": sorted(f"{t}:{p}" for t, p in waiting)},
            )
        log.info("review holds and decisions read", extra={"held": count.held, "released": count.released})
        return count

    def poll_new(self, max_records: int = 500) -> FollowCount:
        """Apply what was fetched since the last call, without waiting."""
        count = FollowCount()
        if not self._following:
            return count
        for message in self._consumer.consume(max_records, timeout=0):
            error = message.error()
            if error is None:
                count = count + self._apply(message)
            elif error.fatal():
                raise KafkaException(error)
        return count

    def close(self) -> None:
        self._consumer.close()

    def _apply(self, message: Message) -> FollowCount:
        key, value = message.key(), message.value()
        if key is None or value is None:
            return FollowCount()
        record = self._records.get(str(message.topic()))
        if record is not None:
            self._history.hold(record, key, _version_header(message))
            return FollowCount(held=1)
        try:
            decision = Decision.from_bytes(value)
        except ValueError as exc:
            log.warning("unreadable review decision skipped", extra={"key": key, "error": str(exc)})
            return FollowCount()
        if not apply_decision(self._history, decision):
            return FollowCount()
        log.info(
            "held key released",
            extra={
                "record": decision.record,
                "key": decision.key,
                "version": decision.version,
                "by": decision.by,
            },
        )
        return FollowCount(released=1)


@dataclass(frozen=True, slots=True)
class FollowCount:
    """Review records applied as holds, and keys released."""

    held: int = 0
    released: int = 0

    def __add__(self, other: FollowCount) -> FollowCount:
        return FollowCount(self.held + other.held, self.released + other.released)


def _version_header(message: Message) -> int:
    """The held version a review record names in its ``version`` header (unknown: any release covers it)."""
    headers = message.headers() or []
    pairs = headers.items() if isinstance(headers, dict) else headers
    for name, value in pairs:
        if name == "version" and isinstance(value, bytes):
            try:
                return int(value)
            except ValueError:
                break
    return UNKNOWN_VERSION
