"""``psinfor dlq`` on the real broker: records dead-lettered by DeadLetterProducer exactly as the stages do,
then listed and shown with filters, replayed to their source partition (dry run first), and purged."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

# The admin package re-exports these without declaring them public, hence the ignore.
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)

from cli.main import main
from pipeline.dlq import DeadLetterProducer
from pipeline.errors import InvalidMessage
from pipeline.producer import PipelineProducer
from pipeline.records import SourceRecord
from pipeline.settings import KafkaSettings
from tests.conftest import NewTopicFactory

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

SOURCE_PARTITIONS = 3
THREE_DAYS_AGO = datetime.now(UTC) - timedelta(days=3)


@dataclass(frozen=True)
class Failure:
    """One source record and the DLQ entry its failure became."""

    original: SourceRecord
    dlq_id: str
    stage: str
    reason: str


@dataclass(frozen=True)
class Scenario:
    bootstrap: str
    source: str
    dlq: str
    failures: list[Failure]

    @property
    def rename(self) -> list[str]:
        """The ``--topic`` option that reads this test's DLQ topic as the catalogue's dlq.processors."""
        return ["--topic", f"dlq.processors={self.dlq}"]


def _read_all(
    bootstrap: str, topic: str, partitions: int, start: dict[int, int] | None = None
) -> list[SourceRecord]:
    """Every record of ``topic`` from ``start`` (per partition; default the beginning) to its end."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "test-dlq-reader",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    offsets = start or {}
    consumer.assign(
        [TopicPartition(topic, part, offsets.get(part, OFFSET_BEGINNING)) for part in range(partitions)]
    )
    records: list[SourceRecord] = []
    at_end: set[int] = set()
    deadline = time.monotonic() + 20
    try:
        while len(at_end) < partitions:
            assert time.monotonic() < deadline, f"{topic} not read to its end"
            message = consumer.poll(0.2)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                assert error.code() == KafkaError._PARTITION_EOF, error
                partition = message.partition()
                assert partition is not None
                at_end.add(partition)
                continue
            records.append(SourceRecord.from_message(message))
    finally:
        consumer.close()
    return records


def _ends(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-dlq-ends"})
    try:
        return {
            part: consumer.get_watermark_offsets(TopicPartition(topic, part), timeout=10, cached=False)[1]
            for part in range(partitions)
        }
    finally:
        consumer.close()


@pytest.fixture
def scenario(kafka_bootstrap: str, new_topic: NewTopicFactory, monkeypatch: pytest.MonkeyPatch) -> Scenario:
    """Three records on a 3-partition source topic, consumed and dead-lettered into a compacted DLQ topic:
    two by the processors (one of them three days ago), one by the Infor orders sink."""
    source = new_topic(partitions=SOURCE_PARTITIONS)
    dlq_topic = new_topic(partitions=1, config={"cleanup.policy": "compact"})
    raw = Producer({"bootstrap.servers": kafka_bootstrap, "acks": "all"})
    payloads = [
        (0, b"1:orders:1", b'{"id": 1, "total": "10.00", "lines": [{"quantity": "abc"}]}'),
        (1, b"1:orders:2", b"\xfe\x01 not json, not text \xff"),
        (2, b"1:orders:3", b"<SyncSalesOrder><DataArea/></SyncSalesOrder>"),
    ]
    for partition, key, value in payloads:
        raw.produce(
            source,
            key=key,
            value=value,
            partition=partition,
            headers=[("correlation_id", b"corr-" + key), ("content-type", b"application/json")],
        )
    assert raw.flush(10) == 0
    originals = sorted(_read_all(kafka_bootstrap, source, SOURCE_PARTITIONS), key=lambda r: r.partition)
    assert len(originals) == 3

    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    failures: list[Failure] = []
    with PipelineProducer(kafka, client_id_suffix="test-stage") as producer:
        processors = DeadLetterProducer(producer, topic=dlq_topic, stage="processors", timeout_s=20)
        old_processors = DeadLetterProducer(
            producer, topic=dlq_topic, stage="processors", timeout_s=20, clock=lambda: THREE_DAYS_AGO
        )
        infor = DeadLetterProducer(producer, topic=dlq_topic, stage="infor-orders", timeout_s=20)
        cases = [
            (
                processors,
                InvalidMessage("schema_violation", "expected a decimal", field_path="lines[0].quantity"),
            ),
            (old_processors, InvalidMessage("undecodable", "not UTF-8 JSON")),
            (
                infor,
                InvalidMessage(
                    "m3_nok", "Item does not exist", details={"m3.code": "WITNO", "m3.field": "ITNO"}
                ),
            ),
        ]
        for original, (writer, error) in zip(originals, cases, strict=True):
            partition, offset = writer.send(original, error, attempts=1)
            failures.append(
                Failure(original, f"{dlq_topic}:{partition}:{offset}", writer.stage, error.reason)
            )

    monkeypatch.setenv("PSINFOR_KAFKA__BOOTSTRAP_SERVERS", kafka_bootstrap)
    return Scenario(kafka_bootstrap, source, dlq_topic, failures)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _listed_ids(out: str) -> list[str]:
    return [line.split()[0] for line in out.splitlines()[1:]]


def test_list_filters_by_stage_reason_key_and_time(
    scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    first, old, sink = scenario.failures
    everything = [failure.dlq_id for failure in scenario.failures]

    code, out, err = _run(capsys, "dlq", "list", *scenario.rename)
    assert code == 0, err
    assert _listed_ids(out) == everything
    row = out.splitlines()[1].split(maxsplit=7)
    assert row[1:5] == ["processors", "schema_violation", f"{scenario.source}:0:0", "1:orders:1"]
    assert row[6:] == ["lines[0].quantity", "expected a decimal"]
    assert "3 of 3 live DLQ entries match" in err

    def ids(*filters: str) -> list[str]:
        code, out, err = _run(capsys, "dlq", "list", *scenario.rename, *filters)
        assert code == (0 if out else 1), err
        return _listed_ids(out)

    assert ids("--stage", "infor-orders") == [sink.dlq_id]
    assert ids("--reason", "undecodable") == [old.dlq_id]
    assert ids("--reason", "undecodable", "--reason", "m3_nok") == [old.dlq_id, sink.dlq_id]
    assert ids("--key", "1:orders:1") == [first.dlq_id]
    assert ids("--since", "1d") == [first.dlq_id, sink.dlq_id]
    assert ids("--until", "1d") == [old.dlq_id]
    assert ids("--since", (THREE_DAYS_AGO - timedelta(minutes=1)).isoformat(), "--until", "2d") == [
        old.dlq_id
    ]
    assert ids("--source-topic", scenario.source, "--limit", "2") == everything[:2]
    assert ids("--id", sink.dlq_id) == [sink.dlq_id]
    assert ids("--stage", "processors", "--reason", "m3_nok") == []


def test_list_as_json(scenario: Scenario, capsys: pytest.CaptureFixture[str]) -> None:
    sink = scenario.failures[2]

    code, out, _ = _run(
        capsys, "dlq", "list", *scenario.rename, "--stage", "infor-orders", "--format", "json"
    )

    assert code == 0
    [entry] = json.loads(out)
    assert entry["id"] == sink.dlq_id
    assert entry["stage"] == "infor-orders"
    assert entry["reason"] == "m3_nok"
    assert entry["source"] == {"topic": scenario.source, "partition": 2, "offset": 0}
    assert entry["original_key"] == "1:orders:3"
    assert entry["details"] == {"m3.code": "WITNO", "m3.field": "ITNO"}
    assert entry["correlation_id"] == "corr-1:orders:3"
    assert entry["error_class"] == "pipeline.errors.InvalidMessage"
    assert entry["value_bytes"] == len(sink.original.value or b"")


def test_nothing_matched_is_exit_1(scenario: Scenario, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "dlq", "list", *scenario.rename, "--reason", "no_such_reason")
    assert (code, out) == (1, "")
    assert "0 of 3 live DLQ entries match" in err


def test_show_prints_every_header_and_the_value(
    scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    first = scenario.failures[0]

    code, out, err = _run(capsys, "dlq", "show", first.dlq_id)

    assert code == 0, err
    assert f"id:        {first.dlq_id}" in out
    assert "state:     live" in out
    assert f"dlq key:   {scenario.source}:0:0" in out
    for line in (
        "  correlation_id: corr-1:orders:1",
        "  content-type: application/json",
        "  dlq.stage: processors",
        "  dlq.reason: schema_violation",
        "  dlq.error.message: expected a decimal",
        f"  dlq.source.topic: {scenario.source}",
        "  dlq.field_path: lines[0].quantity",
        "  dlq.original_key: 1:orders:1",
    ):
        assert line in out.splitlines()
    value = out.split("value (", 1)[1]
    assert value.startswith(f"{len(first.original.value or b'')} bytes, json):\n")
    assert json.loads(value.split("\n", 1)[1]) == json.loads(first.original.value or b"")
    assert '\n  "id": 1,' in value  # pretty printed


def test_show_binary_as_hex_and_raw_as_the_exact_bytes(
    scenario: Scenario, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    binary = scenario.failures[1]
    assert main(["dlq", "show", binary.dlq_id]) == 0
    shown = capsysbinary.readouterr().out.decode()
    assert "bytes, binary):\n00000000  fe 01 20 6e 6f 74" in shown

    assert main(["dlq", "show", "--raw", binary.dlq_id]) == 0
    assert capsysbinary.readouterr().out == binary.original.value


def test_show_of_an_unknown_offset_is_exit_1(scenario: Scenario, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "dlq", "show", f"{scenario.dlq}:0:99")
    assert (code, out) == (1, "")
    assert "no record" in err


def test_replay_dry_run_then_replay_then_nothing_left(
    scenario: Scenario, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USER", "ops-alice")
    first, old, sink = scenario.failures
    source_before = _ends(scenario.bootstrap, scenario.source, SOURCE_PARTITIONS)
    dlq_before = _ends(scenario.bootstrap, scenario.dlq, 1)

    code, out, err = _run(capsys, "dlq", "replay", *scenario.rename, "--stage", "processors", "--dry-run")
    assert code == 0, err
    assert out.splitlines() == [
        f"would replay {first.dlq_id} -> {scenario.source}:0 key=1:orders:1 "
        f"({len(first.original.value or b'')} bytes, 5 headers)",
        f"would replay {old.dlq_id} -> {scenario.source}:1 key=1:orders:2 "
        f"({len(old.original.value or b'')} bytes, 5 headers)",
    ]
    assert "nothing written" in err
    assert _ends(scenario.bootstrap, scenario.source, SOURCE_PARTITIONS) == source_before
    assert _ends(scenario.bootstrap, scenario.dlq, 1) == dlq_before

    started = datetime.now(UTC)
    code, out, err = _run(capsys, "dlq", "replay", *scenario.rename, "--stage", "processors", "--yes")
    assert code == 0, err
    assert out.splitlines() == [
        f"replayed {first.dlq_id} -> {scenario.source}:0:1",
        f"replayed {old.dlq_id} -> {scenario.source}:1:1",
    ]
    assert re.search(r"^replay: 2/2 \(", err, re.MULTILINE), err

    # The original bytes, key and headers are back on the partition they came from, with the audit trail.
    replayed = _read_all(scenario.bootstrap, scenario.source, SOURCE_PARTITIONS, start=source_before)
    assert [(r.partition, r.key, r.value) for r in replayed] == [
        (0, first.original.key, first.original.value),
        (1, old.original.key, old.original.value),
    ]
    for record, failure in zip(replayed, (first, old), strict=True):
        assert record.headers[:2] == failure.original.headers
        audit = dict(record.headers[2:])
        assert set(audit) == {"dlq.replayed_from", "dlq.replayed_at", "dlq.replayed_by"}
        assert audit["dlq.replayed_from"] == failure.dlq_id.encode()
        assert audit["dlq.replayed_by"] == b"ops-alice"
        replayed_at = datetime.fromisoformat(audit["dlq.replayed_at"].decode())
        assert started - timedelta(seconds=1) <= replayed_at <= datetime.now(UTC)

    # Each replayed entry got its tombstone, after the entries themselves.
    tombstones = _read_all(scenario.bootstrap, scenario.dlq, 1, start=dlq_before)
    assert [(r.key, r.value) for r in tombstones] == [
        (f"{scenario.source}:0:0".encode(), None),
        (f"{scenario.source}:1:0".encode(), None),
    ]
    code, out, _ = _run(capsys, "dlq", "list", *scenario.rename)
    assert _listed_ids(out) == [sink.dlq_id]
    code, out, _ = _run(capsys, "dlq", "show", first.dlq_id)
    assert code == 0
    assert "state:     removed" in out

    # A second replay finds nothing and writes nothing.
    source_after = _ends(scenario.bootstrap, scenario.source, SOURCE_PARTITIONS)
    code, out, err = _run(capsys, "dlq", "replay", *scenario.rename, "--stage", "processors", "--yes")
    assert (code, out) == (1, "")
    assert "nothing to replay" in err
    assert _ends(scenario.bootstrap, scenario.source, SOURCE_PARTITIONS) == source_after


def test_replay_into_a_missing_source_topic_is_refused_and_leaves_the_entry(
    kafka_bootstrap: str,
    new_topic: NewTopicFactory,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dlq_topic = new_topic(partitions=1, config={"cleanup.policy": "compact"})
    gone = SourceRecord("t.test.deleted-source-topic", 0, 5, b"k", b"v")
    with PipelineProducer(KafkaSettings(bootstrap_servers=kafka_bootstrap), client_id_suffix="t") as producer:
        writer = DeadLetterProducer(producer, topic=dlq_topic, stage="processors", timeout_s=20)
        writer.send(gone, InvalidMessage("undecodable", "x"), attempts=1)
    monkeypatch.setenv("PSINFOR_KAFKA__BOOTSTRAP_SERVERS", kafka_bootstrap)

    code, out, err = _run(
        capsys, "dlq", "replay", "--topic", f"dlq.processors={dlq_topic}", "--yes", "--by", "ops"
    )

    assert (code, out) == (1, "")
    assert f"cannot replay {dlq_topic}:0:0: source topic t.test.deleted-source-topic does not exist" in err
    assert _ends(kafka_bootstrap, dlq_topic, 1) == {0: 1}  # no tombstone


def test_a_refused_replay_write_leaves_the_entry_in_the_dlq(
    scenario: Scenario, kafka_admin: AdminClient, capsys: pytest.CaptureFixture[str]
) -> None:
    first = scenario.failures[0]
    # The source topic now refuses records as large as the replayed one: the write fails for good.
    limit = ConfigEntry("max.message.bytes", "64", incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ResourceType.TOPIC, scenario.source, incremental_configs=[limit])
    for future in kafka_admin.incremental_alter_configs([resource]).values():
        future.result(timeout=20)
    dlq_before = _ends(scenario.bootstrap, scenario.dlq, 1)

    code, out, err = _run(capsys, "dlq", "replay", "--id", first.dlq_id, "--yes", "--by", "ops")

    assert (code, out) == (1, "")
    assert f"{first.dlq_id} not replayed (" in err
    assert "it stays in the DLQ" in err
    assert _ends(scenario.bootstrap, scenario.dlq, 1) == dlq_before  # no tombstone was written
    code, out, _ = _run(capsys, "dlq", "list", "--id", first.dlq_id)
    assert _listed_ids(out) == [first.dlq_id]


def test_purge_refuses_without_a_filter_then_tombstones_the_chosen_entry(
    scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    first, old, sink = scenario.failures
    dlq_before = _ends(scenario.bootstrap, scenario.dlq, 1)

    code, out, err = _run(capsys, "dlq", "purge", *scenario.rename, "--yes")
    assert (code, out) == (2, "")
    assert "--all" in err

    code, out, err = _run(capsys, "dlq", "purge", "--id", sink.dlq_id, "--dry-run")
    assert code == 0, err
    assert out.splitlines() == [
        f"would purge {sink.dlq_id} (infor-orders m3_nok from {scenario.source}:2:0 key=1:orders:3)"
    ]
    assert _ends(scenario.bootstrap, scenario.dlq, 1) == dlq_before

    code, out, err = _run(capsys, "dlq", "purge", "--id", sink.dlq_id, "--yes")
    assert code == 0, err
    assert out.splitlines() == [f"purged {sink.dlq_id}"]
    [tombstone] = _read_all(scenario.bootstrap, scenario.dlq, 1, start=dlq_before)
    assert (tombstone.key, tombstone.value) == (f"{scenario.source}:2:0".encode(), None)

    code, out, _ = _run(capsys, "dlq", "list", *scenario.rename)
    assert _listed_ids(out) == [first.dlq_id, old.dlq_id]

    code, out, err = _run(capsys, "dlq", "purge", *scenario.rename, "--all", "--yes")
    assert code == 0, err
    assert out.splitlines() == [f"purged {first.dlq_id}", f"purged {old.dlq_id}"]
    code, out, err = _run(capsys, "dlq", "list", *scenario.rename)
    assert (code, out) == (1, "")


def test_a_longer_replay_keeps_dlq_order_per_partition_and_reports_progress(
    kafka_bootstrap: str,
    new_topic: NewTopicFactory,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    count = 200
    source = new_topic(partitions=2)
    dlq_topic = new_topic(partitions=1, config={"cleanup.policy": "compact"})
    raw = Producer({"bootstrap.servers": kafka_bootstrap, "acks": "all", "linger.ms": 5})
    for index in range(count):
        raw.produce(source, key=b"k%d" % index, value=b'{"n": %d}' % index, partition=index % 2)
    assert raw.flush(10) == 0
    originals = _read_all(kafka_bootstrap, source, 2)
    with PipelineProducer(KafkaSettings(bootstrap_servers=kafka_bootstrap), client_id_suffix="t") as producer:
        writer = DeadLetterProducer(producer, topic=dlq_topic, stage="processors", timeout_s=20)
        for original in originals:
            writer.send(original, InvalidMessage("rule_violation", "bad"), attempts=1)
    monkeypatch.setenv("PSINFOR_KAFKA__BOOTSTRAP_SERVERS", kafka_bootstrap)
    source_before = _ends(kafka_bootstrap, source, 2)

    code, out, err = _run(
        capsys, "dlq", "replay", "--topic", f"dlq.processors={dlq_topic}", "--yes", "--by", "ops"
    )

    assert code == 0, err
    assert len(out.splitlines()) == count
    assert re.search(rf"^replay: {count}/{count} \(\d+\.\d/s, ", err, re.MULTILINE), err
    replayed = _read_all(kafka_bootstrap, source, 2, start=source_before)
    for partition in (0, 1):
        assert [r.value for r in replayed if r.partition == partition] == [
            o.value for o in originals if o.partition == partition
        ]
    tombstones = _read_all(kafka_bootstrap, dlq_topic, 1, start={0: count})
    assert len(tombstones) == count
    assert all(record.value is None for record in tombstones)
    code, out, _ = _run(capsys, "dlq", "list", "--topic", f"dlq.processors={dlq_topic}")
    assert (code, out) == (1, "")
