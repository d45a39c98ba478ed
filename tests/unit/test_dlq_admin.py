"""DLQ administration without a broker: entries parsed from DLQ records, the live view compaction leaves,
filters (time range included), the replay and tombstone records, value previews, and the CLI's refusals."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import pytest

from cli.dlq import Progress, dlq_topic_names, render_table
from cli.main import main
from pipeline import dlq
from pipeline.dlq_admin import (
    REPLAYED_AT,
    REPLAYED_BY,
    REPLAYED_FROM,
    Coordinates,
    DlqEntry,
    DlqFilter,
    LiveEntries,
    UnusableEntry,
    parse_coordinates,
    parse_entry,
    parse_time,
    preview_value,
    printable,
    replay_record,
    tombstone_for,
)
from pipeline.errors import ConfigError, InvalidMessage
from pipeline.records import SourceRecord

pytestmark = pytest.mark.timeout(30)

FAILED_AT = datetime(2025, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)
NOW = datetime(2025, 3, 2, 12, 0, tzinfo=UTC)
CATALOGUE_DLQS = ["dlq.processors", "dlq.sink-infor", "dlq.sink-prestashop"]


def _source(offset: int = 41, key: bytes | None = b"1:orders:42") -> SourceRecord:
    return SourceRecord(
        topic="raw.prestashop.orders",
        partition=3,
        offset=offset,
        key=key,
        value=b'{"id": 42, "total": "19.90"}',
        headers=(("correlation_id", b"c-1"), ("content-type", b"application/json"), ("source", b"webhook")),
        timestamp_ms=1_740_830_000_000,
    )


def _dlq_record(
    *,
    source: SourceRecord | None = None,
    stage: str = "processors",
    reason: str = "schema_violation",
    failed_at: datetime = FAILED_AT,
    dlq_offset: int = 7,
    field_path: str | None = "lines[0].quantity",
) -> SourceRecord:
    """A DLQ record exactly as DeadLetterProducer writes it (key, value and headers from pipeline.dlq)."""
    original = source or _source()
    error = InvalidMessage(
        reason,
        "expected a decimal, got 'abc'",
        field_path=field_path,
        details={"expected": "decimal", "m3.code": "WQ0101"},
    )
    return SourceRecord(
        topic="dlq.processors",
        partition=0,
        offset=dlq_offset,
        key=dlq.dead_letter_key(original),
        value=original.value,
        headers=tuple(dlq.dead_letter_headers(original, error, stage=stage, attempts=1, failed_at=failed_at)),
        timestamp_ms=int(failed_at.timestamp() * 1000),
    )


def _entry(
    *,
    source: SourceRecord | None = None,
    stage: str = "processors",
    reason: str = "schema_violation",
    failed_at: datetime = FAILED_AT,
    dlq_offset: int = 7,
    field_path: str | None = "lines[0].quantity",
) -> DlqEntry:
    return parse_entry(
        _dlq_record(
            source=source,
            stage=stage,
            reason=reason,
            failed_at=failed_at,
            dlq_offset=dlq_offset,
            field_path=field_path,
        )
    )


# -- parsing ----------------------------------------------------------------------------------------


def test_an_entry_reads_the_whole_story_back() -> None:
    entry = _entry()

    assert entry.id == Coordinates("dlq.processors", 0, 7)
    assert str(entry.id) == "dlq.processors:0:7"
    assert entry.stage == "processors"
    assert entry.reason == "schema_violation"
    assert entry.error_class == "pipeline.errors.InvalidMessage"
    assert entry.error_message == "expected a decimal, got 'abc'"
    assert entry.source == Coordinates("raw.prestashop.orders", 3, 41)
    assert entry.source_timestamp == datetime.fromtimestamp(1_740_830_000, UTC)
    assert entry.attempts == 1
    assert entry.failed_at == FAILED_AT
    assert entry.when == FAILED_AT
    assert entry.field_path == "lines[0].quantity"
    assert entry.original_key == b"1:orders:42"
    assert entry.correlation_id == "c-1"
    assert entry.details == {"expected": "decimal", "m3.code": "WQ0101"}
    # The original headers, in order, without the story.
    assert entry.original_headers == _source().headers


def test_missing_or_malformed_headers_become_none_not_errors() -> None:
    bare = SourceRecord(
        topic="dlq.sink-infor",
        partition=0,
        offset=0,
        key=None,
        value=b"x",
        headers=(
            (dlq.SOURCE_TOPIC, b"canonical.order.v1"),
            (dlq.SOURCE_PARTITION, b"two"),
            (dlq.FAILED_AT, b"?"),
        ),
    )
    entry = parse_entry(bare)

    assert entry.source is None  # the partition is not a number
    assert entry.failed_at is None
    assert entry.when is None  # no header and no record timestamp either
    assert entry.stage is None
    assert entry.reason is None
    assert entry.original_key is None
    assert entry.details == {}


def test_without_failed_at_the_record_timestamp_dates_the_entry() -> None:
    record = SourceRecord("dlq.processors", 0, 1, b"k", b"v", (), timestamp_ms=1_700_000_000_000)
    assert parse_entry(record).when == datetime.fromtimestamp(1_700_000_000, UTC)


def test_coordinates_parse_as_list_prints_them() -> None:
    assert parse_coordinates("dlq.sink-infor:0:12") == Coordinates("dlq.sink-infor", 0, 12)
    for bad in ("dlq.sink-infor:0", "dlq.sink-infor:x:1", ":0:1", "dlq:0:-1", ""):
        with pytest.raises(ValueError, match="TOPIC:PARTITION:OFFSET"):
            parse_coordinates(bad)


# -- the live view ------------------------------------------------------------------------------------


def test_live_entries_keep_the_newest_per_key_and_drop_tombstoned_keys() -> None:
    live = LiveEntries()
    first = _dlq_record(source=_source(offset=1), dlq_offset=0)
    again = _dlq_record(source=_source(offset=1), dlq_offset=1, reason="redelivered")  # same DLQ key
    other = _dlq_record(source=_source(offset=2), dlq_offset=2)
    gone = _dlq_record(source=_source(offset=3), dlq_offset=3)
    keyless_a = SourceRecord("dlq.processors", 0, 4, None, b"a")
    keyless_b = SourceRecord("dlq.processors", 0, 5, None, b"b")
    tombstone = SourceRecord("dlq.processors", 0, 6, gone.key, None)
    for record in (first, again, other, gone, keyless_a, keyless_b, tombstone):
        live.add(record)

    entries = live.entries()

    assert [entry.id.offset for entry in entries] == [1, 2, 4, 5]
    assert entries[0].reason == "redelivered"


def test_a_key_written_again_after_its_tombstone_is_live_again() -> None:
    live = LiveEntries()
    record = _dlq_record(dlq_offset=0)
    live.add(record)
    live.add(SourceRecord("dlq.processors", 0, 1, record.key, None))
    live.add(_dlq_record(dlq_offset=2))
    assert [entry.id.offset for entry in live.entries()] == [2]


# -- time and filters -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", NOW - timedelta(minutes=30)),
        ("2h", NOW - timedelta(hours=2)),
        ("7d", NOW - timedelta(days=7)),
        ("1d12h", NOW - timedelta(hours=36)),
        ("1w", NOW - timedelta(days=7)),
        ("45s", NOW - timedelta(seconds=45)),
        ("2025-03-01T10:00:00Z", datetime(2025, 3, 1, 10, tzinfo=UTC)),
        ("2025-03-01T10:00:00+02:00", datetime(2025, 3, 1, 8, tzinfo=UTC)),
        ("2025-03-01T10:00:00", datetime(2025, 3, 1, 10, tzinfo=UTC)),  # naive means UTC
        ("2025-03-01", datetime(2025, 3, 1, tzinfo=UTC)),
    ],
)
def test_time_accepts_iso_and_relative(text: str, expected: datetime) -> None:
    assert parse_time(text, now=NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "2h ago", "h2", "-2h", ""])
def test_time_refuses_other_forms(text: str) -> None:
    with pytest.raises(ValueError, match="ISO-8601"):
        parse_time(text, now=NOW)


def test_filters_by_stage_reason_key_source_and_id() -> None:
    orders = _entry(source=_source(offset=1), dlq_offset=1)
    sinks = _entry(
        source=_source(offset=2, key=b"1:orders:7"), dlq_offset=2, stage="infor-orders", reason="m3_nok"
    )
    entries = [orders, sinks]

    assert DlqFilter(stages=frozenset({"infor-orders"})).select(entries) == [sinks]
    assert DlqFilter(reasons=frozenset({"schema_violation"})).select(entries) == [orders]
    assert DlqFilter(reasons=frozenset({"schema_violation", "m3_nok"})).select(entries) == entries
    assert DlqFilter(keys=frozenset({b"1:orders:7"})).select(entries) == [sinks]
    assert DlqFilter(keys=frozenset({b"1:orders"})).select(entries) == []  # exact, not a prefix
    assert DlqFilter(source_topics=frozenset({"raw.prestashop.orders"})).select(entries) == entries
    assert DlqFilter(source_topics=frozenset({"canonical.order.v1"})).select(entries) == []
    assert DlqFilter(ids=frozenset({Coordinates("dlq.processors", 0, 2)})).select(entries) == [sinks]
    # Criteria combine with AND.
    assert DlqFilter(stages=frozenset({"processors"}), reasons=frozenset({"m3_nok"})).select(entries) == []


def test_time_range_is_since_inclusive_until_exclusive() -> None:
    at = [_entry(dlq_offset=hour, failed_at=FAILED_AT + timedelta(hours=hour)) for hour in range(4)]

    chosen = DlqFilter(since=FAILED_AT + timedelta(hours=1), until=FAILED_AT + timedelta(hours=3)).select(at)

    assert [entry.id.offset for entry in chosen] == [1, 2]


def test_an_undated_entry_never_meets_a_time_bound() -> None:
    undated = parse_entry(SourceRecord("dlq.processors", 0, 0, b"k", b"v"))
    assert DlqFilter().matches(undated)
    assert not DlqFilter(since=FAILED_AT).matches(undated)
    assert not DlqFilter(until=FAILED_AT).matches(undated)


def test_limit_takes_the_first_matches_in_order() -> None:
    entries = [_entry(dlq_offset=offset) for offset in range(5)]
    assert [e.id.offset for e in DlqFilter().select(entries, limit=2)] == [0, 1]


def test_a_filter_narrows_only_with_a_criterion() -> None:
    assert not DlqFilter().narrows
    assert DlqFilter(reasons=frozenset({"x"})).narrows
    assert DlqFilter(since=FAILED_AT).narrows
    assert DlqFilter(ids=frozenset({Coordinates("dlq.processors", 0, 0)})).narrows


def test_an_empty_or_naive_time_range_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        DlqFilter(since=FAILED_AT, until=FAILED_AT)
    with pytest.raises(ValueError, match="timezone"):
        DlqFilter(since=datetime(2025, 1, 1))  # naive on purpose


# -- replay and purge records -------------------------------------------------------------------------


def test_the_replay_record_is_the_original_plus_the_audit_headers() -> None:
    entry = _entry()
    replayed_at = datetime(2025, 3, 3, 9, 30, 0, 250000, tzinfo=UTC)

    record = replay_record(entry, replayed_at=replayed_at, replayed_by="alice")

    assert (record.topic, record.partition) == ("raw.prestashop.orders", 3)
    assert record.key == b"1:orders:42"
    assert record.value == _source().value
    assert record.headers == (
        *_source().headers,
        (REPLAYED_FROM, b"dlq.processors:0:7"),
        (REPLAYED_AT, b"2025-03-03T09:30:00.250+00:00"),
        (REPLAYED_BY, b"alice"),
    )
    assert not any(name.startswith("dlq.") for name, _ in record.headers[:3])


def test_a_record_that_had_no_key_is_replayed_without_one() -> None:
    entry = _entry(source=_source(key=None))
    assert replay_record(entry, replayed_at=NOW, replayed_by="bob").key is None


def test_replay_needs_the_source_coordinates() -> None:
    entry = parse_entry(SourceRecord("dlq.processors", 0, 9, b"k", b"v", ((dlq.STAGE, b"processors"),)))
    with pytest.raises(UnusableEntry, match=r"dlq.processors:0:9: no dlq.source.topic"):
        replay_record(entry, replayed_at=NOW, replayed_by="alice")


@pytest.mark.parametrize("name", ["alice@host example", "", "a" * 65, "bob\n", "-x"])
def test_replay_refuses_an_operator_that_is_not_a_plain_name(name: str) -> None:
    with pytest.raises(ValueError, match="operator name"):
        replay_record(_entry(), replayed_at=NOW, replayed_by=name)


def test_the_tombstone_targets_the_entry_key_and_partition() -> None:
    entry = _entry()
    tombstone = tombstone_for(entry)
    assert (tombstone.topic, tombstone.partition) == ("dlq.processors", 0)
    assert tombstone.key == b"raw.prestashop.orders:3:41"
    assert tombstone.value is None


def test_a_keyless_dlq_record_cannot_be_tombstoned() -> None:
    with pytest.raises(UnusableEntry, match="no key"):
        tombstone_for(parse_entry(SourceRecord("dlq.processors", 0, 3, None, b"v")))


# -- showing values ------------------------------------------------------------------------------------


def test_json_values_are_pretty_printed() -> None:
    preview = preview_value(b'{"b":1,"a":[1,2]}')
    assert preview.kind == "json"
    assert json.loads(preview.text) == {"b": 1, "a": [1, 2]}
    assert "\n  " in preview.text


def test_text_values_are_shown_as_text() -> None:
    xml = b"<SyncShipment><DataArea/></SyncShipment>"
    assert preview_value(xml).kind == "text"
    assert preview_value(xml).text == xml.decode()


def test_avro_wire_values_show_their_schema_id_and_a_hex_dump() -> None:
    preview = preview_value(b"\x00\x00\x00\x01\x2a\x02\x06abc")
    assert preview.kind == "avro"
    assert preview.text.startswith("schema id 298\n00000000  00 00 00 01 2a 02 06 61 62 63")


def test_binary_values_are_cut_with_a_flag() -> None:
    preview = preview_value(bytes(range(1, 200)), max_chars=64)
    assert preview.kind == "binary"
    assert preview.truncated
    assert len(preview.text.splitlines()) == 1  # 16 bytes = one hex line


def test_long_text_is_cut_with_a_flag() -> None:
    preview = preview_value(b"x" * 50, max_chars=10)
    assert (preview.kind, preview.text, preview.truncated) == ("text", "x" * 10, True)


def test_empty_values() -> None:
    assert preview_value(b"").kind == "empty"
    assert preview_value(None).kind == "empty"


def test_printable_escapes_what_a_terminal_should_not_get() -> None:
    assert printable(b"1:orders:42") == "1:orders:42"
    assert printable("é".encode()) == "é"
    assert printable(b"\xff\x00a") == "\\xff\\x00a"
    assert printable(b"a\x1b[2Jb") == "a\\x1b[2Jb"


# -- CLI parts without a broker ------------------------------------------------------------------------


def test_topics_default_to_every_catalogue_dlq_topic() -> None:
    assert dlq_topic_names([], [], CATALOGUE_DLQS) == CATALOGUE_DLQS


def test_topics_select_rename_and_follow_ids() -> None:
    chosen = dlq_topic_names(
        ["dlq.sink-infor", "dlq.processors=test.dlq.1"],
        [Coordinates("other.dlq", 0, 3)],
        CATALOGUE_DLQS,
    )
    assert chosen == ["dlq.sink-infor", "test.dlq.1", "other.dlq"]
    assert dlq_topic_names([], [Coordinates("x", 0, 0)], CATALOGUE_DLQS) == ["x"]


@pytest.mark.parametrize("item", ["raw.prestashop.orders", "dlq.unknown", "dlq.processors=", "=x"])
def test_topics_outside_the_catalogue_are_refused(item: str) -> None:
    with pytest.raises(ConfigError, match="--topic"):
        dlq_topic_names([item], [], CATALOGUE_DLQS)


def test_the_table_has_one_line_per_entry_with_the_listed_columns() -> None:
    lines = render_table([_entry(), _entry(dlq_offset=8, field_path=None)]).splitlines()

    assert lines[0].split() == ["ID", "STAGE", "REASON", "SOURCE", "KEY", "FAILED_AT", "FIELD", "MESSAGE"]
    cells = lines[1].split(maxsplit=7)
    assert cells == [
        "dlq.processors:0:7",
        "processors",
        "schema_violation",
        "raw.prestashop.orders:3:41",
        "1:orders:42",
        "2025-03-01T12:00:00.123Z",
        "lines[0].quantity",
        "expected a decimal, got 'abc'",
    ]
    assert lines[2].split()[6] == "-"


def test_progress_reports_count_total_and_rate_at_most_once_per_interval() -> None:
    now = [100.0]
    stream = io.StringIO()
    progress = Progress("replay", 200, stream, every_s=1.0, clock=lambda: now[0])
    now[0] = 100.5
    progress.update(40)  # too soon
    now[0] = 102.0
    progress.update(100)
    now[0] = 102.5
    progress.update(120)  # too soon after the last line

    assert stream.getvalue() == "replay: 100/200 (50.0/s, 2.0 s)\n"


@pytest.fixture
def fake_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing listens there: each test below must fail before connecting.
    for name in ("PSINFOR_KAFKA_BOOTSTRAP", "PSINFOR_REGISTRY_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PSINFOR_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:9")
    monkeypatch.setattr("sys.stdin", io.StringIO(""))


@pytest.mark.usefixtures("fake_cluster")
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["dlq", "purge", "--yes"], "choose them with a filter"),
        (["dlq", "purge", "--yes", "--topic", "dlq.processors"], "or pass --all"),
        (["dlq", "replay", "--by", "alice"], "confirm with --yes, or preview with --dry-run"),
        (["dlq", "purge", "--reason", "x"], "confirm with --yes"),
        (["dlq", "list", "--since", "yesterday"], "--since: 'yesterday' is neither ISO-8601"),
        (["dlq", "list", "--since", "1h", "--until", "2h"], "the time range is empty"),
        (
            ["dlq", "list", "--id", "dlq.processors:0"],
            "--id: 'dlq.processors:0' is not TOPIC:PARTITION:OFFSET",
        ),
        (["dlq", "list", "--topic", "raw.prestashop.orders"], "is not a DLQ topic of the catalogue"),
        (["dlq", "replay", "--yes", "--by", "alice@host name"], "--by: 'alice@host name' is not an operator"),
        (["dlq", "show", "nope"], "is not TOPIC:PARTITION:OFFSET"),
    ],
)
def test_refusals_are_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2

    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.splitlines()) == 1
    assert message in captured.err


@pytest.mark.usefixtures("fake_cluster")
def test_replay_without_an_operator_says_to_pass_by(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("USER", raising=False)
    assert main(["dlq", "replay", "--yes"]) == 2
    assert "--by NAME" in capsys.readouterr().err
