"""The sink runner in-process against the real broker and registry, with the recording test sink.

Each test creates its own source and DLQ topics, registers InventoryLevel under the source's subject,
produces Avro records with :class:`~schemas.codec.AvroCodec` (key = SKU, ``meta.version`` counting up per
SKU) and runs one :class:`~sinks.runner.SinkRunner` on an asyncio loop until the test's condition holds.
Committed offsets are read back from the broker by group.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from prometheus_client import REGISTRY

from pipeline import dlq as dlq_headers
from pipeline.errors import InvalidMessage
from pipeline.settings import (
    DlqSettings,
    KafkaSettings,
    RegistrySettings,
    RetrySettings,
    ServiceSettings,
    Settings,
    SinkSettings,
)
from schemas.codec import AvroCodec, AvroDatum
from schemas.examples import load_examples
from schemas.registry import SubjectSchema, register_schemas, registry_client
from sinks.breaker import BreakerState
from sinks.runner import SinkRunner
from tests.conftest import NewTopicFactory
from tests.recording_sink import Behaviour, RecordingSink

pytestmark = pytest.mark.integration

GroupFactory = Callable[[], str]
RECORD = "InventoryLevel"


@dataclass(frozen=True)
class StockTopics:
    source: str
    dlq: str
    partitions: int


@dataclass(frozen=True)
class Cluster:
    bootstrap: str
    registry_url: str


@pytest.fixture
def cluster(kafka_bootstrap: str, registry_url: str) -> Cluster:
    return Cluster(kafka_bootstrap, registry_url)


@pytest.fixture
def registry(registry_url: str) -> Iterator[SchemaRegistryClient]:
    with registry_client(RegistrySettings(url=registry_url)) as client:
        yield client


def make_topics(new_topic: NewTopicFactory, registry_url: str, partitions: int) -> StockTopics:
    """A source topic with InventoryLevel registered under its subject, and a DLQ topic."""
    made = StockTopics(source=new_topic(partitions=partitions), dlq=new_topic(), partitions=partitions)
    with registry_client(RegistrySettings(url=registry_url)) as client:
        results = register_schemas(client, [SubjectSchema(f"{made.source}-value", RECORD)])
    assert all(result.outcome in ("registered", "unchanged") for result in results), results
    return made


def stock_datum(sku: str, version: int) -> AvroDatum:
    """An InventoryLevel for ``sku`` at ``version`` (the example with its identity replaced)."""
    datum = load_examples(RECORD)[0].datum()
    datum["sku"] = sku
    datum["erp_item_number"] = sku
    datum["meta"]["version"] = version
    datum["meta"]["source_id"] = sku
    datum["meta"]["event_id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{sku}@{version}"))
    return datum


@dataclass(frozen=True)
class Produced:
    sku: str
    version: int
    partition: int
    offset: int
    value: bytes


def produce(
    bootstrap: str,
    codec: AvroCodec,
    topic: str,
    events: list[tuple[str, int]],
    *,
    raw: dict[int, tuple[str, bytes]] | None = None,
    partition: int | None = None,
) -> list[Produced]:
    """Produce ``(sku, version)`` events in order (``raw``: index → (key, bytes) replaces an event's value
    with those bytes); returns where each landed."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    landed: dict[int, Produced] = {}
    for index, (sku, version) in enumerate(events):
        key = sku
        value = codec.encode(stock_datum(sku, version), topic)
        if raw is not None and index in raw:
            key, value = raw[index]

        def report(error: Any, message: Any, index: int = index, sku: str = key, at: int = version) -> None:
            assert error is None, error
            landed[index] = Produced(sku, at, message.partition(), message.offset(), message.value())

        if partition is None:
            producer.produce(topic, key=key.encode(), value=value, on_delivery=report)
        else:
            producer.produce(topic, key=key.encode(), value=value, partition=partition, on_delivery=report)
    assert producer.flush(30) == 0
    return [landed[index] for index in range(len(events))]


def end_offsets(produced: list[Produced]) -> dict[int, int]:
    ends: dict[int, int] = {}
    for item in produced:
        ends[item.partition] = max(ends.get(item.partition, 0), item.offset + 1)
    return ends


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offset per partition (-1001 when none)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in found}


def read_all(bootstrap: str, topic: str, *, expected: int, timeout_s: float = 10.0) -> list[Any]:
    """Every message of ``topic`` (waits until ``expected`` arrived or the timeout passed)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    messages: list[Any] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and len(messages) < expected:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                messages.append(message)
        if expected == 0:  # make sure the reader really was positioned before saying "empty"
            while not consumer.assignment() and time.monotonic() < deadline:
                consumer.poll(0.2)
            for _ in range(5):
                message = consumer.poll(0.2)
                if message is not None and message.error() is None:
                    messages.append(message)
    finally:
        consumer.close()
    return messages


def settings_for(cluster: Cluster, **sinks: Any) -> Settings:
    return Settings(
        kafka=KafkaSettings(bootstrap_servers=cluster.bootstrap),
        registry=RegistrySettings(url=cluster.registry_url),
        retry=RetrySettings(initial_backoff_s=0.05, max_backoff_s=0.2),
        service=ServiceSettings(commit_interval_s=0.2),
        dlq=DlqSettings(delivery_timeout_s=10.0),
        sinks=SinkSettings(**{"session_timeout_s": 10.0, "shutdown_timeout_s": 5.0, **sinks}),
    )


async def until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.02)


async def until_committed(cluster: Cluster, group: str, topics: StockTopics, ends: dict[int, int]) -> None:
    deadline = time.monotonic() + 20
    while True:
        found = await asyncio.to_thread(committed, cluster.bootstrap, group, topics.source, topics.partitions)
        if all(found.get(p, -1) == end for p, end in ends.items()):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"committed {found}, expected {ends}")
        await asyncio.sleep(0.2)


def run_with(
    runner: SinkRunner, scenario: Callable[[], Awaitable[None]], *, expect_failure: bool = False
) -> BaseException | None:
    """Run ``runner`` while ``scenario`` runs; stop it after. Returns what run() raised (if expected)."""

    async def main() -> BaseException | None:
        task = asyncio.create_task(runner.run())
        try:
            await until(lambda: bool(runner.assigned) or task.done(), 20, "the partition assignment")
            await scenario()
        finally:
            runner.stop()
            try:
                await asyncio.wait_for(task, timeout=30)
            except Exception as exc:
                if not expect_failure:
                    raise
                return exc
        return None

    return asyncio.run(main())


def metric(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def new_runner(
    cluster: Cluster,
    registry: SchemaRegistryClient,
    sink: RecordingSink,
    topics: StockTopics,
    group: str,
    **sinks: Any,
) -> SinkRunner:
    return SinkRunner(
        settings_for(cluster, **sinks),
        sink,
        topics=[topics.source],
        group_id=group,
        dlq_topic=topics.dlq,
        codec=AvroCodec(registry, RECORD),
    )


# -- the tests ---------------------------------------------------------------------------------------


def test_keys_run_concurrently_and_each_key_strictly_in_order(
    cluster: Cluster, registry: SchemaRegistryClient, new_topic: NewTopicFactory, new_group: GroupFactory
) -> None:
    topics = make_topics(new_topic, cluster.registry_url, partitions=3)
    skus = [f"SKU-{n:02d}" for n in range(12)]
    events = [(sku, version) for version in range(1, 16) for sku in skus]
    produced = produce(cluster.bootstrap, AvroCodec(registry, RECORD), topics.source, events)
    sink = RecordingSink(Behaviour(delay_s=0.004))
    group = new_group()
    runner = new_runner(cluster, registry, sink, topics, group, max_in_flight_keys=6)

    async def scenario() -> None:
        await until(lambda: len(sink.calls) == len(events), 25, "every record applied")
        await until_committed(cluster, group, topics, end_offsets(produced))

    run_with(runner, scenario)
    assert sink.versions() == {sku: list(range(1, 16)) for sku in skus}
    # Keys really ran side by side, never more than the bound (the sink asserts one call per key).
    assert 1 < sink.max_concurrency <= 6
    written = {"stage": sink.name, "topic": topics.source, "outcome": "written"}
    assert metric("psinfor_messages_total", written) == len(events)


def test_watermark_waits_for_records_that_finish_late(
    cluster: Cluster, registry: SchemaRegistryClient, new_topic: NewTopicFactory, new_group: GroupFactory
) -> None:
    topics = make_topics(new_topic, cluster.registry_url, partitions=1)
    events = [("A", 1), ("B", 1), ("C", 1), ("D", 1), ("E", 1)]
    produced = produce(cluster.bootstrap, AvroCodec(registry, RECORD), topics.source, events)
    sink = RecordingSink()
    group = new_group()
    runner = new_runner(cluster, registry, sink, topics, group)

    gate_a, gate_c = asyncio.Event(), asyncio.Event()
    sink.behaviour.gates.update({"A": gate_a, "C": gate_c})

    async def scenario() -> None:
        await until(lambda: {c.sku for c in sink.calls} == {"B", "D", "E"}, 15, "B, D and E applied")
        await asyncio.sleep(0.8)  # four commit intervals
        found = await asyncio.to_thread(committed, cluster.bootstrap, group, topics.source, 1)
        # 0 ("read offset 0 next") or nothing at all: never past the unfinished record at offset 0.
        assert found[0] <= 0, f"committed {found[0]} while offset 0 (A) is unfinished"
        gate_c.set()  # C (offset 2) finishes before A: still nothing more committable
        await until(lambda: len(sink.calls) == 4, 5, "C applied")
        await asyncio.sleep(0.8)
        found = await asyncio.to_thread(committed, cluster.bootstrap, group, topics.source, 1)
        assert found[0] <= 0, f"committed {found[0]} while offset 0 (A) is unfinished"
        gate_a.set()
        await until_committed(cluster, group, topics, end_offsets(produced))

    run_with(runner, scenario)
    assert [call.sku for call in sink.calls][-2:] == ["C", "A"]


def test_a_retrying_key_does_not_hold_up_other_keys_on_its_partition(
    cluster: Cluster, registry: SchemaRegistryClient, new_topic: NewTopicFactory, new_group: GroupFactory
) -> None:
    topics = make_topics(new_topic, cluster.registry_url, partitions=1)
    others = [f"OK-{n:02d}" for n in range(20)]
    events = [("POISON", 1)] + [(sku, v) for v in (1, 2, 3) for sku in others] + [("POISON", 2)]
    produced = produce(cluster.bootstrap, AvroCodec(registry, RECORD), topics.source, events)
    # Six timeouts, each asking for at least 0.25 s: a retry budget of >= 1.5 s for the poison record.
    sink = RecordingSink(Behaviour(transient={"POISON": 6}, retry_after_s=0.25, delay_s=0.002))
    group = new_group()
    runner = new_runner(cluster, registry, sink, topics, group, max_in_flight_keys=4, breaker_failures=50)

    async def scenario() -> None:
        await until(lambda: len(sink.calls) == len(events), 25, "every record applied")
        await until_committed(cluster, group, topics, end_offsets(produced))

    run_with(runner, scenario)
    first_start = min(call.started for call in sink.calls)
    poison = [call for call in sink.calls if call.sku == "POISON"]
    others_done = max(call.finished for call in sink.calls if call.sku != "POISON")
    poison_budget = poison[0].finished - first_start
    others_delay = others_done - first_start
    print(
        f"\nother keys on the poison record's partition finished {others_delay:.3f} s after the start; "
        f"the poison record needed {poison_budget:.3f} s (7 attempts)"
    )
    assert [call.version for call in poison] == [1, 2]  # the key was held: v2 only after v1
    assert poison[0].attempt == 7
    assert others_done < poison[0].finished
    assert others_delay < poison_budget / 2
    assert sink.versions() == {"POISON": [1, 2]} | {sku: [1, 2, 3] for sku in others}


def test_breaker_opens_pauses_without_dead_lettering_and_resumes_after_a_probe(
    cluster: Cluster, registry: SchemaRegistryClient, new_topic: NewTopicFactory, new_group: GroupFactory
) -> None:
    topics = make_topics(new_topic, cluster.registry_url, partitions=2)
    skus = [f"SKU-{n}" for n in range(8)]
    events = [(sku, v) for v in (1, 2, 3, 4, 5) for sku in skus]
    produced = produce(cluster.bootstrap, AvroCodec(registry, RECORD), topics.source, events)
    sink = RecordingSink(Behaviour(down=True))
    group = new_group()
    runner = new_runner(cluster, registry, sink, topics, group, breaker_failures=3, breaker_probe_s=0.3)
    open_window: dict[str, float] = {}

    async def scenario() -> None:
        await until(lambda: runner.breaker.state is not BreakerState.CLOSED, 10, "the breaker to open")
        both = {(topics.source, 0), (topics.source, 1)}
        await until(lambda: runner.paused == runner.assigned == both, 5, "every partition paused")
        assert metric("psinfor_circuit_state", {"target": "test"}) in (1, 2)
        before = sink.attempts
        await asyncio.sleep(1.5)
        open_window["calls"] = sink.attempts - before
        assert runner.paused == runner.assigned  # still paused, the member still in the group
        sink.behaviour.down = False
        await until(lambda: runner.breaker.state is BreakerState.CLOSED, 5, "the breaker to close")
        await until(lambda: len(sink.calls) == len(events), 20, "every record applied")
        await until(lambda: not runner.paused, 5, "resume")
        await until_committed(cluster, group, topics, end_offsets(produced))

    run_with(runner, scenario)
    print(f"\ncalls to the target while its breaker was open for 1.5 s: {open_window['calls']}")
    # Only probes reach a target that is down: one per 0.3 s (plus calls already on their way).
    assert open_window["calls"] <= 1.5 / 0.3 + 2
    assert sink.versions() == {sku: [1, 2, 3, 4, 5] for sku in skus}  # every record applied, in order
    assert read_all(cluster.bootstrap, topics.dlq, expected=0, timeout_s=3) == []


def test_invalid_records_go_to_the_dlq_with_their_story_and_original_bytes(
    cluster: Cluster, registry: SchemaRegistryClient, new_topic: NewTopicFactory, new_group: GroupFactory
) -> None:
    topics = make_topics(new_topic, cluster.registry_url, partitions=1)
    events = [("GOOD-1", 1), ("UNKNOWN", 1), ("JUNK", 1), ("GOOD-2", 1)]
    junk = b"\x00\x00\x00\x00not avro at all"
    produced = produce(
        cluster.bootstrap, AvroCodec(registry, RECORD), topics.source, events, raw={2: ("JUNK", junk)}
    )
    refusal = InvalidMessage(
        "unknown_sku",
        "PrestaShop has no product with reference UNKNOWN",
        field_path="sku",
        details={"suggestions": "UNKNOWN-1,UNKOWN", "response": "404 products?filter[reference]=UNKNOWN"},
    )
    sink = RecordingSink(Behaviour(invalid={"UNKNOWN": refusal}))
    group = new_group()
    runner = new_runner(cluster, registry, sink, topics, group)

    async def scenario() -> None:
        await until_committed(cluster, group, topics, end_offsets(produced))

    run_with(runner, scenario)
    assert sorted(call.sku for call in sink.calls) == ["GOOD-1", "GOOD-2"]
    dead = read_all(cluster.bootstrap, topics.dlq, expected=2)
    assert len(dead) == 2
    by_key = {dict(m.headers())[dlq_headers.ORIGINAL_KEY]: m for m in dead}
    unknown = dict(by_key[b"UNKNOWN"].headers())
    assert by_key[b"UNKNOWN"].value() == produced[1].value  # the original bytes, unchanged
    assert unknown[dlq_headers.REASON] == b"unknown_sku"
    assert unknown[dlq_headers.FIELD_PATH] == b"sku"
    assert unknown[dlq_headers.DETAIL_PREFIX + "suggestions"] == b"UNKNOWN-1,UNKOWN"
    assert unknown[dlq_headers.DETAIL_PREFIX + "response"].startswith(b"404 ")
    assert unknown[dlq_headers.STAGE] == sink.name.encode()
    assert unknown[dlq_headers.SOURCE_OFFSET] == b"1"
    undecodable = dict(by_key[b"JUNK"].headers())
    assert by_key[b"JUNK"].value() == junk
    assert undecodable[dlq_headers.REASON] == b"undecodable"
    assert metric("psinfor_dlq_messages_total", {"stage": sink.name, "reason": "unknown_sku"}) >= 1


def test_coalescing_applies_only_the_newest_record_per_key_and_commits_all(
    cluster: Cluster, registry: SchemaRegistryClient, new_topic: NewTopicFactory, new_group: GroupFactory
) -> None:
    topics = make_topics(new_topic, cluster.registry_url, partitions=2)
    skus = [f"SKU-{n}" for n in range(6)]
    events = [(sku, v) for v in range(1, 21) for sku in skus]
    produced = produce(cluster.bootstrap, AvroCodec(registry, RECORD), topics.source, events)
    sink = RecordingSink(coalesce_s=1.0, name="test-coalesce")
    group = new_group()
    runner = new_runner(cluster, registry, sink, topics, group)
    labels = {"stage": sink.name, "topic": topics.source, "outcome": "coalesced"}
    coalesced_before = metric("psinfor_messages_total", labels)

    async def scenario() -> None:
        await until_committed(cluster, group, topics, end_offsets(produced))

    run_with(runner, scenario)
    applied = sink.versions()
    writes = sum(len(versions) for versions in applied.values())
    print(f"\n{len(events)} records over {len(skus)} keys -> {writes} writes")
    assert set(applied) == set(skus)
    assert all(versions[-1] == 20 for versions in applied.values()), applied  # the newest always wins
    assert all(len(versions) <= 2 for versions in applied.values()), applied
    assert metric("psinfor_messages_total", labels) - coalesced_before == len(events) - writes


def test_a_skipped_newest_record_does_not_hide_the_older_one_it_was_coalesced_with(
    cluster: Cluster, registry: SchemaRegistryClient, new_topic: NewTopicFactory, new_group: GroupFactory
) -> None:
    # One SKU's levels of two warehouses share a key: the sink skips the other warehouse's, and the shop's
    # own level, older in the window, is the one to write.
    topics = make_topics(new_topic, cluster.registry_url, partitions=1)
    events = [("A", 1), ("A", 2), ("A", 3), ("B", 1), ("B", 2), ("C", 1), ("C", 2), ("C", 3)]
    produced = produce(cluster.bootstrap, AvroCodec(registry, RECORD), topics.source, events)
    sink = RecordingSink(
        Behaviour(skip_versions={("A", 3), ("B", 1), ("B", 2)}), coalesce_s=2.0, name="test-coalesce-skip"
    )
    group = new_group()
    runner = new_runner(cluster, registry, sink, topics, group)

    async def scenario() -> None:
        await until_committed(cluster, group, topics, end_offsets(produced))

    run_with(runner, scenario)
    applied = sink.versions()
    print(f"\napplied per key: {applied}")
    assert applied["A"][-1] == 2, applied  # v3 is skipped, so v2 is A's newest level
    assert 3 not in applied["A"]
    assert "B" not in applied  # every record of B is skipped: nothing to write
    assert applied["C"][-1] == 3, applied


def test_a_bug_stops_the_runner_without_committing_the_failing_record(
    cluster: Cluster, registry: SchemaRegistryClient, new_topic: NewTopicFactory, new_group: GroupFactory
) -> None:
    topics = make_topics(new_topic, cluster.registry_url, partitions=1)
    events = [("A", 1), ("B", 1), ("CRASH", 1), ("D", 1)]
    produce(cluster.bootstrap, AvroCodec(registry, RECORD), topics.source, events)
    sink = RecordingSink(Behaviour(crash_on={"CRASH"}))
    group = new_group()
    runner = new_runner(cluster, registry, sink, topics, group)

    async def scenario() -> None:
        await until(lambda: runner.breaker is not None and sink.attempts >= 3, 15, "the crash")
        await asyncio.sleep(0.5)

    error = run_with(runner, scenario, expect_failure=True)
    assert isinstance(error, RuntimeError)
    assert "bug while applying CRASH" in str(error)
    # A and B are committed; the watermark stops at the failing record (offset 2) whatever D did.
    assert committed(cluster.bootstrap, group, topics.source, 1) == {0: 2}


def test_a_second_member_takes_partitions_over_without_breaking_key_order_or_losing_records(
    cluster: Cluster, registry: SchemaRegistryClient, new_topic: NewTopicFactory, new_group: GroupFactory
) -> None:
    topics = make_topics(new_topic, cluster.registry_url, partitions=4)
    skus = [f"SKU-{n:02d}" for n in range(16)]
    events = [(sku, v) for v in range(1, 21) for sku in skus]
    produced = produce(cluster.bootstrap, AvroCodec(registry, RECORD), topics.source, events)
    active: set[str] = set()  # shared: a key applied by both members at once fails the sink's assertion
    # Slow enough (~8 s alone) that the second member joins mid-stream (a join takes a few heartbeats).
    first_sink = RecordingSink(Behaviour(delay_s=0.05), active=active)
    second_sink = RecordingSink(Behaviour(delay_s=0.05), active=active)
    group = new_group()
    first = new_runner(cluster, registry, first_sink, topics, group, max_in_flight_keys=2)
    second = new_runner(cluster, registry, second_sink, topics, group, max_in_flight_keys=2)
    seen_by_second: set[tuple[str, int]] = set()

    async def scenario() -> None:
        await until(lambda: len(first_sink.calls) >= 40, 20, "the first member under way")
        joined = asyncio.create_task(second.run())
        try:
            await until(lambda: bool(second.assigned), 20, "the second member's assignment")
            assert len(first.assigned) + len(second.assigned) == 4
            await until(
                lambda: {(c.sku, c.version) for c in first_sink.calls + second_sink.calls} == set(events),
                30,
                "every record applied",
            )
            await until_committed(cluster, group, topics, end_offsets(produced))
            seen_by_second.update(second.assigned)
        finally:
            second.stop()
            await asyncio.wait_for(joined, timeout=30)

    run_with(first, scenario)
    calls = first_sink.calls + second_sink.calls
    repeats = len(calls) - len(events)
    shares = f"first member {len(first_sink.calls)} applies, second {len(second_sink.calls)}"
    print(f"\nrebalance: {shares}; {repeats} repeats")
    assert seen_by_second
    assert second_sink.calls
    for sink in (first_sink, second_sink):
        assert all(versions == sorted(versions) for versions in sink.versions().values())
    # Only records finished but not yet committed by the first member may be applied again.
    assert 0 <= repeats <= len(events) // 4


def test_a_full_buffer_pauses_its_partition_and_the_memory_stays_bounded(
    cluster: Cluster, registry: SchemaRegistryClient, new_topic: NewTopicFactory, new_group: GroupFactory
) -> None:
    topics = make_topics(new_topic, cluster.registry_url, partitions=1)
    events = [("HELD", 1)] + [(f"SKU-{n % 50:02d}", n // 50 + 1) for n in range(300)]
    produced = produce(cluster.bootstrap, AvroCodec(registry, RECORD), topics.source, events)
    gate = asyncio.Event()
    sink = RecordingSink(Behaviour(gates={"HELD": gate}))
    group = new_group()
    runner = new_runner(cluster, registry, sink, topics, group, max_buffered_per_partition=40)
    buffered = {"stage": sink.name}

    async def scenario() -> None:
        await until(lambda: runner.paused == {(topics.source, 0)}, 10, "the partition paused")
        await asyncio.sleep(0.5)
        # Offset 0 is held, so nothing completes below it: what was read stays buffered, and no more.
        assert metric("psinfor_sink_buffered_records", buffered) <= 40
        assert len(sink.calls) < 40
        gate.set()
        await until_committed(cluster, group, topics, end_offsets(produced))

    run_with(runner, scenario)
    assert len(sink.calls) == len(events)
