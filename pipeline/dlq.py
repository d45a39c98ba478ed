"""Dead-lettering: the original bytes plus the story, acknowledged before the source offset is committed.

:class:`DeadLetterProducer` writes a message that can never succeed to its stage's DLQ topic with the
ORIGINAL value bytes, the original headers, and headers telling what happened (see
:func:`dead_letter_headers`). The DLQ record's key is the failed record's coordinates
(``topic:partition:offset``, see :func:`dead_letter_key`), not its original key: DLQ topics are compacted,
and compaction by the original key would keep only the newest failure of an order and silently drop the
older ones. The original key travels unchanged in the ``dlq.original_key`` header, which replay uses.
``send`` returns only after the broker acknowledged, so the runner can commit the source offset right
after it and nothing is lost in between.

:class:`DlqLimit` guards the DLQ: when too many messages in a row, or too large a share of the recent
ones, are invalid, the stage is broken (a bad deploy, a wrong schema), not the data. The limit trips
BEFORE the message is dead-lettered, so the runner stops with that message uncommitted and the topic
is not drained into the DLQ.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime

from pipeline.errors import DlqLimitExceeded, InvalidMessage
from pipeline.producer import PipelineProducer
from pipeline.records import SourceRecord
from pipeline.settings import DlqSettings

DLQ_HEADER_PREFIX = "dlq."
STAGE = "dlq.stage"
REASON = "dlq.reason"
ERROR_CLASS = "dlq.error.class"
ERROR_MESSAGE = "dlq.error.message"
SOURCE_TOPIC = "dlq.source.topic"
SOURCE_PARTITION = "dlq.source.partition"
SOURCE_OFFSET = "dlq.source.offset"
SOURCE_TIMESTAMP = "dlq.source.timestamp"
"""Epoch milliseconds of the source record (decimal string); absent when the broker had none."""
ATTEMPTS = "dlq.attempts"
FAILED_AT = "dlq.failed_at"
FIELD_PATH = "dlq.field_path"
ORIGINAL_KEY = "dlq.original_key"
"""The source record's key bytes, unchanged; absent when the source record had no key."""
DETAIL_PREFIX = "dlq.detail."
CORRELATION_ID = "correlation_id"

# Headers travel in every fetch of the DLQ; a target's full response body does not belong there.
MAX_HEADER_TEXT = 4096


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _text(value: str) -> bytes:
    if len(value) > MAX_HEADER_TEXT:
        value = value[: MAX_HEADER_TEXT - 1] + "…"
    return value.encode("utf-8")


def dead_letter_key(record: SourceRecord) -> bytes:
    """The DLQ key: unique per failed record, so compaction only collapses re-deliveries of that record."""
    return f"{record.topic}:{record.partition}:{record.offset}".encode()


def dead_letter_headers(
    record: SourceRecord, error: InvalidMessage, *, stage: str, attempts: int, failed_at: datetime
) -> list[tuple[str, bytes]]:
    """The DLQ record's headers: the source's own headers, then the story of the failure.

    Source headers are kept in order, except earlier ``dlq.*`` headers (a replayed message that failed
    again), which are replaced so each story header appears exactly once. ``correlation_id`` is the
    source's own header, kept as is. ``InvalidMessage.details`` become ``dlq.detail.<name>``. Text
    values are UTF-8, cut at :data:`MAX_HEADER_TEXT` characters.
    """
    if failed_at.tzinfo is None:
        raise ValueError("failed_at must be timezone-aware")
    headers = [(name, value) for name, value in record.headers if not name.startswith(DLQ_HEADER_PREFIX)]
    cls = type(error)
    story: list[tuple[str, str]] = [
        (STAGE, stage),
        (REASON, error.reason),
        (ERROR_CLASS, f"{cls.__module__}.{cls.__qualname__}"),
        (ERROR_MESSAGE, error.message),
        (SOURCE_TOPIC, record.topic),
        (SOURCE_PARTITION, str(record.partition)),
        (SOURCE_OFFSET, str(record.offset)),
    ]
    if record.timestamp_ms is not None:
        story.append((SOURCE_TIMESTAMP, str(record.timestamp_ms)))
    story += [
        (ATTEMPTS, str(attempts)),
        (FAILED_AT, failed_at.astimezone(UTC).isoformat(timespec="milliseconds")),
    ]
    if error.field_path is not None:
        story.append((FIELD_PATH, error.field_path))
    story += [(DETAIL_PREFIX + name, value) for name, value in error.details.items()]
    headers += [(name, _text(value)) for name, value in story]
    if record.key is not None:
        headers.append((ORIGINAL_KEY, record.key))  # raw bytes: keys need not be UTF-8
    return headers


class DeadLetterProducer:
    """Writes invalid messages to one stage's DLQ topic and waits for the broker's acknowledgement."""

    def __init__(
        self,
        producer: PipelineProducer,
        *,
        topic: str,
        stage: str,
        timeout_s: float,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._producer = producer
        self.topic = topic
        self.stage = stage
        self._timeout_s = timeout_s
        self._clock = clock

    def send(self, record: SourceRecord, error: InvalidMessage, *, attempts: int) -> tuple[int, int]:
        """Dead-letter ``record`` and return the DLQ ``(partition, offset)`` once the broker acknowledged.

        The DLQ record's value is the source's bytes, unchanged; its key is :func:`dead_letter_key` and
        the original key is in the ``dlq.original_key`` header. Raises ``RetryableError`` when
        no acknowledgement came within the timeout and ``ProduceError`` when the broker refused; either
        way the caller must not commit the source offset.
        """
        headers = dead_letter_headers(
            record, error, stage=self.stage, attempts=attempts, failed_at=self._clock()
        )
        return self._producer.produce_and_wait(
            self.topic, dead_letter_key(record), record.value, headers, timeout=self._timeout_s
        )


class DlqLimit:
    """Trips when invalid messages stop looking like bad data and start looking like a broken stage.

    Two rules, from :class:`~pipeline.settings.DlqSettings`:

    - more than ``max_consecutive_invalid`` invalid messages in a row (so with 3, the 4th trips);
    - more than ``max_invalid_ratio`` of the last ``window`` messages invalid. The ratio is judged only
      once ``window`` messages were seen, so one bad message at start-up is not "100 % invalid"; the
      consecutive rule covers that early phase.

    The message that trips is not counted: it is neither dead-lettered nor committed.
    """

    def __init__(self, settings: DlqSettings) -> None:
        self._settings = settings
        self._recent: deque[bool] = deque(maxlen=settings.window)
        self._invalid_in_window = 0
        self._consecutive = 0

    @property
    def consecutive_invalid(self) -> int:
        """Invalid messages since the last good one."""
        return self._consecutive

    @property
    def invalid_in_window(self) -> int:
        """Invalid messages among the last ``window`` recorded."""
        return self._invalid_in_window

    def record_ok(self) -> None:
        """A message succeeded (or was dropped as stale/duplicate): the invalid run ends."""
        self._consecutive = 0
        self._push(invalid=False)

    def record_invalid(self) -> None:
        """Count an invalid message about to be dead-lettered, or raise ``DlqLimitExceeded`` instead.

        When this raises, nothing is recorded and the caller must not dead-letter or commit the message.
        """
        settings = self._settings
        consecutive = self._consecutive + 1
        if consecutive > settings.max_consecutive_invalid:
            raise DlqLimitExceeded(
                f"{consecutive} invalid messages in a row (limit {settings.max_consecutive_invalid})"
            )
        window_full = len(self._recent) + 1 >= settings.window
        leaving = 1 if len(self._recent) == settings.window and self._recent[0] else 0
        invalid = self._invalid_in_window + 1 - leaving
        if window_full and invalid / settings.window > settings.max_invalid_ratio:
            raise DlqLimitExceeded(
                f"{invalid} of the last {settings.window} messages invalid "
                f"(limit {settings.max_invalid_ratio:.0%})"
            )
        self._consecutive = consecutive
        self._push(invalid=True)

    def _push(self, *, invalid: bool) -> None:
        if len(self._recent) == self._settings.window and self._recent[0]:
            self._invalid_in_window -= 1
        self._recent.append(invalid)
        if invalid:
            self._invalid_in_window += 1
