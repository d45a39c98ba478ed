"""The processor runtime (faust worker + runner) against the real broker and registry.

The worker runs as a subprocess (``python -m processors.main``), the way a supervisor runs it, so a
SIGKILL is a real crash. Each test creates its own topics, registers the InventoryLevel schema under
its output topic's subject and maps the catalogue names onto them with ``--topic NAME=ACTUAL``.

The oracle for the mixed stream is computed from what was produced: per source key, in offset order,
an event becomes a canonical record exactly when its version is newer than every version before it;
malformed events become DLQ records; nothing else appears.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from pipeline import dlq as dlq_headers
from pipeline.settings import RegistrySettings
from schemas.codec import AvroCodec
from schemas.registry import SubjectSchema, register_schemas, registry_client
from tests.conftest import NewTopicFactory
from tests.integration.test_processor_runtime_flows import event_id

pytestmark = pytest.mark.integration

GroupFactory = Callable[[], str]
REPO = Path(__file__).resolve().parents[2]
FLOWS_MODULE = "tests.integration.test_processor_runtime_flows"
EXIT_FATAL = 70


@dataclass(frozen=True)
class Topics:
    source: str
    output: str
    dlq: str


@dataclass(frozen=True)
class Planned:
    """What was produced and what must come out of it."""

    expected: dict[str, list[tuple[int, str]]]
    """Per item, the (version, event_id) sequence the runtime must emit, in order."""
    malformed: dict[tuple[int, int], bytes]
    """(partition, offset) → original bytes of each malformed event."""
    ends: dict[int, int]
    """Per source partition, the offset after the last event."""
    where: dict[str, tuple[str, int, int, int]]
    """event_id → (item, version, source partition, source offset) of each expected record."""


@pytest.fixture
def topics(new_topic: NewTopicFactory, registry_url: str) -> Topics:
    made = Topics(source=new_topic(partitions=4), output=new_topic(partitions=3), dlq=new_topic())
    with registry_client(RegistrySettings(url=registry_url)) as client:
        results = register_schemas(client, [SubjectSchema(f"{made.output}-value", "InventoryLevel")])
    assert all(result.outcome in ("registered", "unchanged") for result in results), results
    return made


@contextmanager
def worker(
    kafka_bootstrap: str,
    registry_url: str,
    topics: Topics,
    app_id: str,
    flow: str,
    log: Path,
    *,
    extra: tuple[str, ...] = (),
    environment: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """The worker subprocess; stopped with SIGTERM (or killed) when the block ends."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PSINFOR_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "PSINFOR_REGISTRY__URL": registry_url,
        "PSINFOR_SERVICE__LOG_FORMAT": "text",
        "PSINFOR_SERVICE__COMMIT_INTERVAL_S": "0.5",
        **(environment or {}),
    }
    argv = [
        sys.executable,
        "-m",
        "processors.main",
        "--flows",
        ",".join(f"{FLOWS_MODULE}:{name}" for name in flow.split(",")),
        "--app-id",
        app_id,
        "--topic",
        f"raw.infor.inventory={topics.source}",
        "--topic",
        f"canonical.inventory.v1={topics.output}",
        "--topic",
        f"dlq.processors={topics.dlq}",
        # The broker's minimum: the restarted worker gets the killed one's partitions within seconds.
        "--session-timeout",
        "6",
        *extra,
    ]
    with log.open("ab") as sink:
        process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _stock(item: str, version: int, warehouse: str = "W1") -> bytes:
    return json.dumps(
        {
            "item": item,
            "warehouse": warehouse,
            "on_hand": f"{version % 97}.5",
            "allocated": "1",
            "version": version,
            "changed_at_ms": 1_700_000_000_000 + version,
        }
    ).encode()


def produce_mixed_stream(bootstrap: str, topic: str, *, events: int, items: int, seed: int) -> Planned:
    """Produce ``events`` raw events over ``items`` keys: new versions, duplicates, older versions, 1% junk.

    Returns the oracle, computed from the acknowledged (partition, offset) of each event.
    """
    rng = random.Random(seed)
    newest: dict[str, int] = {}
    sent: list[tuple[str, int | None, bytes]] = []
    junk = [
        b"{not json",
        b'{"item": "X", "warehouse": "W1"}',
        b'{"item": "X", "warehouse": "W1", '
        b'"on_hand": "lots", "allocated": "1", "version": 1, "changed_at_ms": 0}',
    ]
    for index in range(events):
        item = f"ITEM-{rng.randrange(items):04d}"
        roll = rng.random()
        if index % 100 == 50:  # exactly 1 % malformed
            sent.append((item, None, junk[index % len(junk)] + str(index).encode()))
            continue
        last = newest.get(item, 0)
        if last and roll < 0.15:
            version = last  # duplicate of the newest
        elif last > 3 and roll < 0.30:
            version = rng.randrange(1, last)  # out of order: older than the newest
        else:
            version = last + rng.randrange(1, 4)
            newest[item] = version
        sent.append((item, version, _stock(item, version)))

    positions: list[tuple[int, int]] = []
    # lz4 as the ingest services' PipelineProducer writes it: faust must read compressed raw batches.
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "linger.ms": 20,
            "compression.type": "lz4",
        }
    )

    def make_report(slot: int) -> Callable[[Any, Any], None]:
        def report(error: Any, message: Any) -> None:
            assert error is None, error
            positions[slot] = (message.partition(), message.offset())

        return report

    for slot, (item, _version, value) in enumerate(sent):
        positions.append((-1, -1))
        producer.produce(topic, key=item.encode(), value=value, on_delivery=make_report(slot))
        if slot % 1000 == 999:
            producer.poll(0)
    assert producer.flush(60) == 0

    ordered = sorted(range(len(sent)), key=lambda slot: positions[slot])
    expected: dict[str, list[tuple[int, str]]] = defaultdict(list)
    malformed: dict[tuple[int, int], bytes] = {}
    ends: dict[int, int] = {}
    highest: dict[str, int] = {}
    where: dict[str, tuple[str, int, int, int]] = {}
    for slot in ordered:
        item, produced_version, value = sent[slot]
        partition, offset = positions[slot]
        ends[partition] = max(ends.get(partition, 0), offset + 1)
        if produced_version is None:
            malformed[(partition, offset)] = value
        elif produced_version > highest.get(item, 0):
            highest[item] = produced_version
            expected[item].append((produced_version, event_id(item, "W1", produced_version)))
            where[event_id(item, "W1", produced_version)] = (item, produced_version, partition, offset)
    return Planned(dict(expected), malformed, ends, where)


def read_all(bootstrap: str, topic: str, group: str) -> list[Any]:
    """Every record of ``topic`` up to its current end (a throwaway consumer, nothing committed)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = sorted(metadata.topics[topic].partitions)
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions
        }
        wanted = {p for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(topic, p, 0) for p in wanted])
        records: list[Any] = []
        deadline = time.monotonic() + 60
        while wanted and time.monotonic() < deadline:
            for message in consumer.consume(1000, timeout=1.0):
                assert message.error() is None, message.error()
                records.append(message)
                if (message.offset() or 0) + 1 >= ends[message.partition()]:
                    wanted.discard(message.partition())
        assert not wanted, f"could not read {topic} to its end"
        return records
    finally:
        consumer.close()


def committed(bootstrap: str, group: str, topic: str, partitions: list[int]) -> dict[int, int]:
    """The group's committed offsets (-1001 when none)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        return {tp.partition: tp.offset for tp in found}
    finally:
        consumer.close()


def wait_until_committed(
    bootstrap: str, group: str, topic: str, ends: dict[int, int], process: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        offsets = committed(bootstrap, group, topic, sorted(ends))
        if all(offsets[p] >= end for p, end in ends.items()):
            return
        assert process.poll() is None, f"worker exited {process.returncode}:\n{log.read_text()[-3000:]}"
        time.sleep(0.5)
    raise AssertionError(f"offsets {offsets} never reached {ends}:\n{log.read_text()[-3000:]}")


def check_dlq(bootstrap: str, topics: Topics, planned: Planned, group: str) -> None:
    """Every malformed event is in the DLQ exactly once (by coordinates), original bytes and a reason."""
    by_position: dict[tuple[int, int], Any] = {}
    for message in read_all(bootstrap, topics.dlq, group):
        headers = dict(message.headers() or [])
        position = (int(headers[dlq_headers.SOURCE_PARTITION]), int(headers[dlq_headers.SOURCE_OFFSET]))
        assert headers[dlq_headers.SOURCE_TOPIC] == topics.source.encode()
        assert headers[dlq_headers.REASON] in (b"undecodable", b"schema_violation")
        assert headers[dlq_headers.STAGE] == b"processors"
        assert message.value() == planned.malformed[position]
        by_position[position] = message
    assert set(by_position) == set(planned.malformed)


def sequences(
    bootstrap: str, topics: Topics, registry_url: str, group: str, *, flow: bytes = b"test_inventory"
) -> dict[str, list[tuple[int, str]]]:
    """Per key, the (version, event_id) sequence found on the output topic, checking every record."""
    found: dict[str, list[tuple[int, str]]] = defaultdict(list)
    with registry_client(RegistrySettings(url=registry_url)) as client:
        codec = AvroCodec(client, "InventoryLevel")
        data = [
            (message, codec.decode(message.value(), topics.output))
            for message in read_all(bootstrap, topics.output, group)
        ]
    for message, datum in data:
        headers = dict(message.headers() or [])
        meta = datum["meta"]
        assert message.key() == datum["sku"].encode()
        assert headers["event_id"] == str(meta["event_id"]).encode()
        assert headers["flow"] == flow
        # No source event id header was sent, so the causation is the source record's coordinates.
        assert headers["causation_id"].startswith(topics.source.encode() + b":")
        assert str(meta["event_id"]) == event_id(datum["sku"], datum["warehouse"], meta["version"])
        found[datum["sku"]].append((meta["version"], str(meta["event_id"])))
    return dict(found)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_mixed_stream_sigkill_mid_stream_and_restart_yields_the_same_event_ids(
    kafka_bootstrap: str, registry_url: str, topics: Topics, new_group: GroupFactory, tmp_path: Path
) -> None:
    planned = produce_mixed_stream(kafka_bootstrap, topics.source, events=20_000, items=500, seed=5)
    expected_total = sum(len(sequence) for sequence in planned.expected.values())
    assert len(planned.malformed) == 200
    app_id = new_group()
    log = tmp_path / "worker.log"
    started = time.monotonic()

    with worker(kafka_bootstrap, registry_url, topics, app_id, "INVENTORY", log) as first:
        # Kill once a part of the stream went through: canonical records are being written.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            ends = {}
            consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": new_group()})
            try:
                for partition in range(3):
                    ends[partition] = consumer.get_watermark_offsets(
                        TopicPartition(topics.output, partition), timeout=10
                    )[1]
            finally:
                consumer.close()
            if sum(ends.values()) >= expected_total // 3:
                break
            assert first.poll() is None, log.read_text()[-3000:]
            time.sleep(0.05)
        else:
            raise AssertionError(f"no progress before the kill:\n{log.read_text()[-3000:]}")
        first.send_signal(signal.SIGKILL)
        assert first.wait(10) == -signal.SIGKILL
        killed_at = sum(ends.values())

    with worker(kafka_bootstrap, registry_url, topics, app_id, "INVENTORY", log) as second:
        wait_until_committed(kafka_bootstrap, app_id, topics.source, planned.ends, second, log)
    elapsed = time.monotonic() - started

    found = sequences(kafka_bootstrap, topics, registry_url, new_group())
    expected_ids = {eid for sequence in planned.expected.values() for _, eid in sequence}
    found_ids = [eid for sequence in found.values() for _, eid in sequence]
    repeats = Counter(found_ids) - Counter(set(found_ids))
    print(
        f"\n20,000 raw events, killed after ~{killed_at} canonical records: {len(found_ids)} canonical "
        f"records, {len(set(found_ids))} distinct (expected {len(expected_ids)}), "
        f"{sum(repeats.values())} repeated event_ids after the crash, {elapsed:.1f}s"
    )
    missing = sorted(planned.where[eid] for eid in expected_ids - set(found_ids))
    assert not missing, f"expected canonical records missing (item, version, partition, offset): {missing}"
    assert set(found_ids) == expected_ids
    # Per key: first occurrences in strictly increasing version order and equal to the oracle; a
    # repeat is always an event_id already emitted (the only duplicates allowed).
    for item, sequence in planned.expected.items():
        seen: list[tuple[int, str]] = []
        for entry in found[item]:
            if entry in seen:
                continue
            seen.append(entry)
        assert seen == sequence, item
    check_dlq(kafka_bootstrap, topics, planned, new_group())


@pytest.mark.timeout(120)
def test_mixed_stream_without_crash_is_exactly_once_per_version(
    kafka_bootstrap: str, registry_url: str, topics: Topics, new_group: GroupFactory, tmp_path: Path
) -> None:
    planned = produce_mixed_stream(kafka_bootstrap, topics.source, events=3_000, items=100, seed=11)
    app_id = new_group()
    log = tmp_path / "worker.log"
    with worker(kafka_bootstrap, registry_url, topics, app_id, "INVENTORY", log) as process:
        wait_until_committed(kafka_bootstrap, app_id, topics.source, planned.ends, process, log)
    found = sequences(kafka_bootstrap, topics, registry_url, new_group())
    assert found == planned.expected
    check_dlq(kafka_bootstrap, topics, planned, new_group())


@pytest.mark.timeout(90)
def test_unexpected_error_ends_the_worker_without_committing_the_failing_event(
    kafka_bootstrap: str, registry_url: str, topics: Topics, new_group: GroupFactory, tmp_path: Path
) -> None:
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    # One key, so one partition and a known order: two good events, the bug, one more good event.
    for version, item in ((1, "A"), (2, "A"), (3, "BUG"), (4, "A")):
        producer.produce(topics.source, key=b"same-key", value=_stock(item, version))
    assert producer.flush(30) == 0
    app_id = new_group()
    log = tmp_path / "worker.log"
    with worker(kafka_bootstrap, registry_url, topics, app_id, "CRASH_ON", log) as process:
        assert process.wait(60) == EXIT_FATAL, log.read_text()[-3000:]
    text = log.read_text()
    assert "ZeroDivisionError: a planted bug in to_record" in text
    offsets = committed(kafka_bootstrap, app_id, topics.source, [0, 1, 2, 3])
    # Nothing at or past the failing event (the 3rd on its partition, offset 2) is committed.
    assert all(offset <= 2 for offset in offsets.values()), offsets
    with registry_client(RegistrySettings(url=registry_url)) as client:
        codec = AvroCodec(client, "InventoryLevel")
        versions = [
            codec.decode(message.value(), topics.output)["meta"]["version"]
            for message in read_all(kafka_bootstrap, topics.output, new_group())
        ]
    assert 4 not in versions


@pytest.mark.timeout(150)
def test_two_flows_reading_one_topic_in_one_worker_each_emit_every_version(
    kafka_bootstrap: str,
    registry_url: str,
    topics: Topics,
    new_topic: NewTopicFactory,
    new_group: GroupFactory,
    tmp_path: Path,
) -> None:
    """faust hands every event to both agents; each keeps its own position, and the group's commit
    waits for the slower one (processors.offsets), so neither flow loses or drops an event."""
    second = new_topic(partitions=3)
    with registry_client(RegistrySettings(url=registry_url)) as client:
        register_schemas(client, [SubjectSchema(f"{second}-value", "InventoryLevel")])
    planned = produce_mixed_stream(kafka_bootstrap, topics.source, events=3_000, items=100, seed=13)
    app_id = new_group()
    log = tmp_path / "worker.log"
    extra = ("--topic", f"canonical.shipment.v1={second}")
    with worker(
        kafka_bootstrap, registry_url, topics, app_id, "INVENTORY,SHADOW", log, extra=extra
    ) as process:
        wait_until_committed(kafka_bootstrap, app_id, topics.source, planned.ends, process, log)
    assert sequences(kafka_bootstrap, topics, registry_url, new_group()) == planned.expected
    shadow = Topics(source=topics.source, output=second, dlq=topics.dlq)
    found = sequences(kafka_bootstrap, shadow, registry_url, new_group(), flow=b"test_inventory_shadow")
    assert found == planned.expected


@pytest.mark.timeout(90)
def test_an_idle_worker_stays_live_past_its_heartbeat_timeout(
    kafka_bootstrap: str, registry_url: str, topics: Topics, new_group: GroupFactory, tmp_path: Path
) -> None:
    """Liveness says the worker's loop runs, not that events arrive: with nothing to do for three
    heartbeat timeouts, /healthz still answers 200 (a liveness probe must not kill an idle worker)."""
    log = tmp_path / "worker.log"
    quiet = {"PSINFOR_SERVICE__HEARTBEAT_TIMEOUT_S": "2"}
    with worker(
        kafka_bootstrap, registry_url, topics, new_group(), "INVENTORY", log, environment=quiet
    ) as process:
        deadline = time.monotonic() + 60
        url = None
        while url is None and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()[-3000:]
            found = re.search(r"health=(http://\S+)", log.read_text())
            url = found.group(1) if found else None
            time.sleep(0.2)
        assert url is not None, log.read_text()[-3000:]
        time.sleep(6.0)  # three heartbeat timeouts without a single event
        answer = httpx.get(f"{url}/healthz", timeout=5)
        assert answer.status_code == 200, answer.text
        assert process.poll() is None
