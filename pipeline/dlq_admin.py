"""Dead-letter administration, the pure part: DLQ records read back as entries, filtered, and turned into
the records that replay and purge write.

A DLQ record (see :mod:`pipeline.dlq`) is keyed by the failed record's coordinates, carries the ORIGINAL
value bytes and tells its story in headers. :func:`parse_entry` reads that story back into a
:class:`DlqEntry`, tolerating missing or malformed headers (a field it cannot read is ``None``) so an odd
record is still listed and can be purged. :class:`LiveEntries` folds a topic read from its beginning
into what compaction will keep: the newest record per DLQ key, none after a tombstone.
:class:`DlqFilter` selects entries; :func:`replay_record` builds the record that puts an entry back on
its source topic, :func:`tombstone_for` the tombstone that removes it from the DLQ.

Nothing here touches Kafka; ``cli.dlq`` reads and writes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pipeline import dlq
from pipeline.errors import PipelineError
from pipeline.records import Headers, SourceRecord

REPLAYED_FROM = "dlq.replayed_from"
"""Audit header on a replayed record: the DLQ coordinates (``topic:partition:offset``) it came from."""
REPLAYED_AT = "dlq.replayed_at"
"""Audit header: when the replay was written, ISO-8601 UTC with milliseconds."""
REPLAYED_BY = "dlq.replayed_by"
"""Audit header: the operator who replayed it (a name, never a host)."""

# Avro values in Schema Registry wire format start with this byte, then a 4-byte big-endian schema id.
_WIRE_MAGIC = 0
_RELATIVE = re.compile(r"(?:(\d+)([smhdw]))+")
_RELATIVE_PART = re.compile(r"(\d+)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_OPERATOR = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")


class UnusableEntry(PipelineError):
    """A DLQ entry lacks what replay or purge needs (its source topic and partition, or its DLQ key).

    Raised by :func:`replay_record` and :func:`tombstone_for`; the CLI reports the entry and goes on with
    the others.
    """


@dataclass(frozen=True, slots=True, order=True)
class Coordinates:
    """Where a record lives: ``topic:partition:offset`` (also the text form of DLQ ids)."""

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"


def parse_coordinates(text: str) -> Coordinates:
    """``topic:partition:offset`` as ``list`` prints it; ValueError naming the expected shape otherwise.

    Kafka topic names cannot contain ``:``, so the last two fields are the numbers.
    """
    topic, sep1, rest = text.strip().rpartition(":")
    topic, sep2, partition = topic.rpartition(":")
    offset = rest
    if not (sep1 and sep2 and topic and partition.isdigit() and offset.isdigit()):
        raise ValueError(f"{text!r} is not TOPIC:PARTITION:OFFSET (as `psinfor dlq list` prints it)")
    return Coordinates(topic, int(partition), int(offset))


@dataclass(frozen=True, slots=True)
class DlqEntry:
    """One dead-lettered record: where it sits in the DLQ, what failed, and the original record."""

    record: SourceRecord
    """The DLQ record as read: its key is the DLQ key, its value the original bytes."""
    stage: str | None
    reason: str | None
    error_class: str | None
    error_message: str | None
    source: Coordinates | None
    """Where the original record was consumed from; None when the headers do not say."""
    source_timestamp: datetime | None
    attempts: int | None
    failed_at: datetime | None
    field_path: str | None
    original_key: bytes | None
    """The original record's key bytes (``dlq.original_key``); None when it had none."""
    correlation_id: str | None
    details: dict[str, str] = field(default_factory=dict)
    """``dlq.detail.<name>`` headers by ``<name>``."""

    @property
    def id(self) -> Coordinates:
        """The entry's DLQ coordinates, the id ``show``, ``--id`` and ``dlq.replayed_from`` use."""
        return Coordinates(self.record.topic, self.record.partition, self.record.offset)

    @property
    def when(self) -> datetime | None:
        """When it failed: ``dlq.failed_at``, else the DLQ record's timestamp, else None."""
        if self.failed_at is not None:
            return self.failed_at
        if self.record.timestamp_ms is not None:
            return datetime.fromtimestamp(self.record.timestamp_ms / 1000, UTC)
        return None

    @property
    def original_headers(self) -> Headers:
        """The original record's headers in their order: every header except the ``dlq.*`` story."""
        return tuple(
            (name, value) for name, value in self.record.headers if not name.startswith(dlq.DLQ_HEADER_PREFIX)
        )


def _text_header(record: SourceRecord, name: str) -> str | None:
    value = record.header(name)
    if value is None:
        return None
    return value.decode("utf-8", errors="replace")


def _int_header(record: SourceRecord, name: str) -> int | None:
    text = _text_header(record, name)
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def _time_header(record: SourceRecord, name: str) -> datetime | None:
    text = _text_header(record, name)
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def parse_entry(record: SourceRecord) -> DlqEntry:
    """Read a DLQ record's story back from its headers (see :func:`pipeline.dlq.dead_letter_headers`).

    Never raises for a malformed header: the field is None instead, so every record can be listed.
    """
    source_topic = _text_header(record, dlq.SOURCE_TOPIC)
    source_partition = _int_header(record, dlq.SOURCE_PARTITION)
    source_offset = _int_header(record, dlq.SOURCE_OFFSET)
    source = (
        Coordinates(source_topic, source_partition, source_offset)
        if source_topic and source_partition is not None and source_offset is not None
        else None
    )
    source_ms = _int_header(record, dlq.SOURCE_TIMESTAMP)
    details = {
        name[len(dlq.DETAIL_PREFIX) :]: value.decode("utf-8", errors="replace")
        for name, value in record.headers
        if name.startswith(dlq.DETAIL_PREFIX)
    }
    return DlqEntry(
        record=record,
        stage=_text_header(record, dlq.STAGE),
        reason=_text_header(record, dlq.REASON),
        error_class=_text_header(record, dlq.ERROR_CLASS),
        error_message=_text_header(record, dlq.ERROR_MESSAGE),
        source=source,
        source_timestamp=datetime.fromtimestamp(source_ms / 1000, UTC) if source_ms is not None else None,
        attempts=_int_header(record, dlq.ATTEMPTS),
        failed_at=_time_header(record, dlq.FAILED_AT),
        field_path=_text_header(record, dlq.FIELD_PATH),
        original_key=record.header(dlq.ORIGINAL_KEY),
        correlation_id=_text_header(record, dlq.CORRELATION_ID),
        details=details,
    )


class LiveEntries:
    """What a compacted DLQ partition holds once compaction ran, built from the records in log order.

    Per DLQ key only the newest record counts (the same failure dead-lettered twice is one entry) and a
    tombstone removes the key (replayed or purged). A record without a key cannot be compacted away, so
    each one stays an entry of its own.
    """

    def __init__(self) -> None:
        self._live: dict[tuple[str, int, bytes | Coordinates], SourceRecord] = {}

    def add(self, record: SourceRecord) -> None:
        """Account for the next record of its partition (records of one partition in offset order)."""
        position = Coordinates(record.topic, record.partition, record.offset)
        where = (record.topic, record.partition, record.key if record.key is not None else position)
        if record.value is None:
            self._live.pop(where, None)
        else:
            self._live[where] = record

    def entries(self) -> list[DlqEntry]:
        """The live entries, in DLQ order (topic, partition, offset)."""
        records = sorted(self._live.values(), key=lambda rec: (rec.topic, rec.partition, rec.offset))
        return [parse_entry(record) for record in records]


def parse_time(text: str, *, now: datetime) -> datetime:
    """An instant from ISO-8601 (naive means UTC) or a duration before ``now`` (``30m``, ``2h``, ``1d12h``).

    Units: s, m, h, d, w. Raises ValueError with the accepted forms.
    """
    value = text.strip()
    if _RELATIVE.fullmatch(value):
        seconds = sum(int(amount) * _UNIT_SECONDS[unit] for amount, unit in _RELATIVE_PART.findall(value))
        return now - timedelta(seconds=seconds)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither ISO-8601 (2024-05-01T12:00:00Z) nor a duration like 30m, 2h, 7d"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class DlqFilter:
    """Which entries to act on. Every given criterion must hold; several values of one criterion are
    alternatives (``--reason a --reason b`` means a or b)."""

    ids: frozenset[Coordinates] = frozenset()
    stages: frozenset[str] = frozenset()
    reasons: frozenset[str] = frozenset()
    keys: frozenset[bytes] = frozenset()
    """Original keys (``dlq.original_key``), exact bytes."""
    source_topics: frozenset[str] = frozenset()
    since: datetime | None = None
    """Inclusive lower bound on :attr:`DlqEntry.when`."""
    until: datetime | None = None
    """Exclusive upper bound on :attr:`DlqEntry.when`."""

    def __post_init__(self) -> None:
        for bound in (self.since, self.until):
            if bound is not None and bound.tzinfo is None:
                raise ValueError("since/until must be timezone-aware")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError("the time range is empty: since must be before until")

    @property
    def narrows(self) -> bool:
        """True when at least one criterion is set (purge refuses to run on everything without --all)."""
        return bool(
            self.ids
            or self.stages
            or self.reasons
            or self.keys
            or self.source_topics
            or self.since is not None
            or self.until is not None
        )

    def matches(self, entry: DlqEntry) -> bool:
        """True when ``entry`` meets every criterion; an entry without a time never meets a time bound."""
        if self.ids and entry.id not in self.ids:
            return False
        if self.stages and entry.stage not in self.stages:
            return False
        if self.reasons and entry.reason not in self.reasons:
            return False
        if self.keys and entry.original_key not in self.keys:
            return False
        if self.source_topics and (entry.source is None or entry.source.topic not in self.source_topics):
            return False
        if self.since is not None or self.until is not None:
            when = entry.when
            if when is None:
                return False
            if self.since is not None and when < self.since:
                return False
            if self.until is not None and when >= self.until:
                return False
        return True

    def select(self, entries: Iterable[DlqEntry], *, limit: int | None = None) -> list[DlqEntry]:
        """The matching entries in the given order, at most ``limit`` of them."""
        chosen: list[DlqEntry] = []
        for entry in entries:
            if limit is not None and len(chosen) >= limit:
                break
            if self.matches(entry):
                chosen.append(entry)
        return chosen


def check_operator(name: str) -> str:
    """The ``dlq.replayed_by`` value: a user name (letters, digits, ``._@+-``, at most 64), no host part
    added. Raises ValueError otherwise."""
    if not _OPERATOR.fullmatch(name):
        raise ValueError(
            f"{name!r} is not an operator name (letters, digits and . _ @ + -, at most 64 characters)"
        )
    return name


@dataclass(frozen=True, slots=True)
class OutgoingRecord:
    """A record to write to one exact partition (``value`` None is a tombstone)."""

    topic: str
    partition: int
    key: bytes | None
    value: bytes | None
    headers: Headers = ()


def replay_record(entry: DlqEntry, *, replayed_at: datetime, replayed_by: str) -> OutgoingRecord:
    """The record that puts ``entry`` back where it failed, for the stage to process again.

    Same topic and partition as the original (its key's other records live there, so per-key order
    holds whichever partitioner the original producer used), the original key and value bytes, the
    original headers in order (the ``dlq.*`` story dropped), then the audit headers
    :data:`REPLAYED_FROM`, :data:`REPLAYED_AT`, :data:`REPLAYED_BY`. Raises :class:`UnusableEntry` when
    the entry does not say where it came from.
    """
    if replayed_at.tzinfo is None:
        raise ValueError("replayed_at must be timezone-aware")
    if entry.source is None:
        raise UnusableEntry(
            f"{entry.id}: no {dlq.SOURCE_TOPIC}/{dlq.SOURCE_PARTITION}/{dlq.SOURCE_OFFSET} headers, "
            "so there is no source topic to replay into"
        )
    audit = (
        (REPLAYED_FROM, str(entry.id).encode()),
        (REPLAYED_AT, replayed_at.astimezone(UTC).isoformat(timespec="milliseconds").encode()),
        (REPLAYED_BY, check_operator(replayed_by).encode()),
    )
    return OutgoingRecord(
        topic=entry.source.topic,
        partition=entry.source.partition,
        key=entry.original_key,
        value=entry.record.value,
        headers=entry.original_headers + audit,
    )


def tombstone_for(entry: DlqEntry) -> OutgoingRecord:
    """The tombstone that removes ``entry`` from its compacted DLQ topic: same partition, same key.

    Raises :class:`UnusableEntry` for a record without a key, which compaction cannot remove.
    """
    if entry.record.key is None:
        raise UnusableEntry(f"{entry.id}: the DLQ record has no key, so no tombstone can remove it")
    return OutgoingRecord(
        topic=entry.record.topic, partition=entry.record.partition, key=entry.record.key, value=None
    )


def printable(data: bytes) -> str:
    """``data`` as text when it is UTF-8 without control characters, else Python-escaped (``\\x00``)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return _escaped(data)
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        return _escaped(data)
    return text


def _escaped(data: bytes) -> str:
    return repr(data)[2:-1]


@dataclass(frozen=True, slots=True)
class ValuePreview:
    """How to show a DLQ value to a person: what it looks like, and the text to print."""

    kind: str
    """``json``, ``text``, ``avro`` (Schema Registry wire format), ``binary`` or ``empty``."""
    text: str
    truncated: bool = False


def preview_value(value: bytes | None, *, max_chars: int = 4000) -> ValuePreview:
    """Pretty JSON when the value is JSON, the text when it is UTF-8 text (XML, CSV), else a hex dump
    of the first bytes (with the schema id for Avro in wire format). At most ``max_chars`` of text."""
    if not value:
        return ValuePreview("empty", "")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and text.strip():
        try:
            document = json.loads(text)
        except ValueError:
            pass
        else:
            return _cut("json", json.dumps(document, indent=2, ensure_ascii=False), max_chars)
        if not any(ord(char) < 32 and char not in "\t\r\n" for char in text):
            return _cut("text", text, max_chars)
    dump = _hex_dump(value[: max(16, max_chars // 4)])
    truncated = len(value) > max(16, max_chars // 4)
    if len(value) >= 5 and value[0] == _WIRE_MAGIC:
        schema_id = int.from_bytes(value[1:5], "big")
        return ValuePreview("avro", f"schema id {schema_id}\n{dump}", truncated)
    return ValuePreview("binary", dump, truncated)


def _cut(kind: str, text: str, max_chars: int) -> ValuePreview:
    if len(text) <= max_chars:
        return ValuePreview(kind, text)
    return ValuePreview(kind, text[:max_chars], truncated=True)


def _hex_dump(data: bytes) -> str:
    lines = []
    for start in range(0, len(data), 16):
        chunk = data[start : start + 16]
        ascii_part = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{start:08x}  {chunk.hex(' '):<47}  {ascii_part}")
    return "\n".join(lines)
