"""The local runtime works: records flow through the session broker, the registry stores schemas and
enforces BACKWARD_TRANSITIVE, and a 3-node cluster loses no acknowledged record when a leader is killed."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from sandbox.kafka import launcher as launcher_module
from sandbox.kafka import registry as registry_module
from sandbox.kafka.jvm import free_ports, pid_alive
from sandbox.kafka.launcher import KafkaCluster
from sandbox.kafka.registry import RegistryServer
from tests.conftest import NewTopicFactory

pytestmark = pytest.mark.integration


def _consume_all(bootstrap: str, topic: str, group: str, expected: int, timeout_s: float) -> list[Any]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    records: list[Any] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout_s
        while len(records) < expected and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=500, timeout=0.5):
                error = message.error()
                if error is not None:
                    assert error.code() == KafkaError._PARTITION_EOF, error
                    continue
                records.append(message)
    finally:
        consumer.close()
    return records


# -- (a) the session broker and registry -----------------------------------------------------------


@pytest.fixture
def registry(registry_url: str) -> Iterator[SchemaRegistryClient]:
    # Closed explicitly: an unclosed client leaves a socket for the GC (a ResourceWarning, an error here).
    with SchemaRegistryClient({"url": registry_url}) as client:
        yield client


@pytest.mark.timeout(60)
def test_produce_consume_round_trip(
    kafka_bootstrap: str, new_topic: NewTopicFactory, new_group: Callable[[], str]
) -> None:
    topic = new_topic(partitions=2)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "acks": "all", "enable.idempotence": True})
    sent = {f"key-{i}": f"value-{i}" for i in range(10)}
    for key, value in sent.items():
        producer.produce(topic, key=key, value=value, headers=[("source", b"test")])
    assert producer.flush(30) == 0

    received = _consume_all(kafka_bootstrap, topic, new_group(), len(sent), timeout_s=30)

    assert {m.key().decode(): m.value().decode() for m in received} == sent
    assert all(m.headers() == [("source", b"test")] for m in received)


@pytest.mark.timeout(30)
def test_new_topic_honours_partitions_and_config(kafka_bootstrap: str, new_topic: NewTopicFactory) -> None:
    first = new_topic(partitions=3, config={"cleanup.policy": "compact"})
    second = new_topic()
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})

    metadata = admin.list_topics(timeout=10)

    assert first != second
    assert len(metadata.topics[first].partitions) == 3
    assert len(metadata.topics[second].partitions) == 1


@pytest.mark.timeout(30)
def test_registry_registers_and_reads_back_a_schema(registry: SchemaRegistryClient) -> None:
    client = registry
    subject = f"runtime-test-{uuid.uuid4().hex[:8]}-value"
    record = {
        "type": "record",
        "name": "Probe",
        "namespace": "io.psinfor.test",
        "fields": [{"name": "id", "type": "long", "doc": "probe id"}],
    }

    schema_id = client.register_schema(subject, Schema(json.dumps(record), "AVRO"))

    fetched = client.get_schema(schema_id)
    latest = client.get_latest_version(subject)
    assert json.loads(fetched.schema_str or "{}")["name"] == "Probe"
    assert latest.schema_id == schema_id
    assert subject in client.get_subjects()


@pytest.mark.timeout(30)
def test_registry_global_rule_is_backward_transitive(registry: SchemaRegistryClient) -> None:
    client = registry
    subject = f"runtime-compat-{uuid.uuid4().hex[:8]}-value"
    v1 = {"type": "record", "name": "C", "fields": [{"name": "a", "type": "string"}]}
    # A new required field without a default cannot read old data: not backward compatible.
    v2 = {"type": "record", "name": "C", "fields": [*v1["fields"], {"name": "b", "type": "string"}]}

    client.register_schema(subject, Schema(json.dumps(v1), "AVRO"))

    assert client.get_compatibility() == "BACKWARD_TRANSITIVE"
    assert client.test_compatibility(subject, Schema(json.dumps(v2), "AVRO")) is False


# -- (b) three nodes: a leader killed with -9 loses no acknowledged record -----------------------------

FAILOVER_RECORDS_PER_PHASE = 1000


@pytest.fixture(scope="module")
def three_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    # A short stop grace: the last node cannot shut down cleanly without a quorum, and the data is throwaway.
    with KafkaCluster(3, tmp_path_factory.mktemp("kafka-3-nodes"), stop_grace_s=5) as cluster:
        yield cluster


class _Acks:
    """Delivery reports of one producer: which ids the cluster acknowledged, and the failures."""

    def __init__(self) -> None:
        self.acked: set[int] = set()
        self.failed: list[str] = []

    def report(self, error: KafkaError | None, message: Any) -> None:
        if error is None:
            self.acked.add(int(message.key()))
        else:
            self.failed.append(str(error))


def _produce_phase(producer: Producer, topic: str, ids: range, acks: _Acks) -> None:
    for record_id in ids:
        while True:
            try:
                producer.produce(topic, key=str(record_id), value=f"r{record_id}", on_delivery=acks.report)
                break
            except BufferError:
                producer.poll(0.1)  # queue full while the partition has no leader: wait, do not drop
        producer.poll(0)


def _wait_until(condition: Callable[[], bool], producer: Producer, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        producer.poll(0.1)


def _leader(admin: AdminClient, topic: str) -> int:
    """Node id leading partition 0 of ``topic``; -1 while metadata does not know one yet."""
    described = admin.list_topics(topic=topic, timeout=5).topics.get(topic)
    if described is None or 0 not in described.partitions:
        return -1
    return int(described.partitions[0].leader)


@pytest.mark.slow
@pytest.mark.timeout(300)  # includes the module fixture's 3-node start: 12-25 s quiet, 80 s seen under load
def test_three_nodes_lose_no_acknowledged_record_when_a_leader_is_killed(three_nodes: KafkaCluster) -> None:
    admin = three_nodes.admin()
    topic = f"failover-{uuid.uuid4().hex[:8]}"
    admin.create_topics(
        [NewTopic(topic, num_partitions=1, replication_factor=3, config={"min.insync.replicas": "2"})]
    )[topic].result(timeout=30)
    _wait_until(
        lambda: _leader(admin, topic) >= 0,
        Producer({"bootstrap.servers": three_nodes.bootstrap_servers}),
        30,
        "a leader",
    )
    producer = Producer(
        {
            "bootstrap.servers": three_nodes.bootstrap_servers,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "delivery.timeout.ms": 90000,
        }
    )
    acks = _Acks()
    n = FAILOVER_RECORDS_PER_PHASE

    _produce_phase(producer, topic, range(0, n), acks)
    _wait_until(lambda: len(acks.acked) >= n // 2, producer, 30, "acks before the kill")
    leader_id = _leader(admin, topic)
    assert leader_id >= 1
    # Kill while records are in flight: the next batch is queued but not yet acknowledged.
    _produce_phase(producer, topic, range(n, n + n // 5), acks)
    three_nodes.kill_node(leader_id - 1)
    acked_at_kill = len(acks.acked)

    _produce_phase(producer, topic, range(n + n // 5, 2 * n), acks)
    _wait_until(lambda: any(i >= n for i in acks.acked), producer, 60, "acks after the kill")
    three_nodes.restart_node(leader_id - 1)
    _produce_phase(producer, topic, range(2 * n, 3 * n), acks)
    assert producer.flush(120) == 0

    consumed = _consume_all(
        three_nodes.bootstrap_servers, topic, f"failover-{uuid.uuid4().hex[:8]}", len(acks.acked), 60
    )
    consumed_ids = [int(m.key()) for m in consumed]
    print(
        f"\nfailover: produced={3 * n} acked={len(acks.acked)} (at kill: {acked_at_kill}) "
        f"failed={len(acks.failed)} consumed={len(consumed_ids)} unique={len(set(consumed_ids))} "
        f"killed node {leader_id}"
    )
    lost = acks.acked - set(consumed_ids)
    assert not lost, f"{len(lost)} acknowledged records lost, e.g. {sorted(lost)[:10]}"
    assert any(i >= n for i in acks.acked), "nothing was acknowledged after the leader was killed"
    assert len(acks.acked) == 3 * n, f"not every record was acknowledged: {acks.failed[:5]}"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_node_restarted_from_a_thread_outlives_that_thread(three_nodes: KafkaCluster) -> None:
    # The kernel's parent-death signal is per thread: a JVM forked by a short-lived thread must not get
    # it, or it dies the moment that thread returns (a chaos thread restarting a broker did exactly that).
    three_nodes.kill_node(2)
    restarter = threading.Thread(target=three_nodes.restart_node, args=(2,), name="restarter")
    restarter.start()
    restarter.join(timeout=90)
    assert not restarter.is_alive()

    process = three_nodes.processes[2]
    assert process is not None
    assert len(three_nodes.admin().list_topics(timeout=10).brokers) == 3
    assert process.alive()


# -- (c) the CLI: detached brokers outlive the command, status sees them, down stops them ----------


def _psinfor(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *argv], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_dev_kafka_up_status_down(tmp_path: Path) -> None:
    state = ["--state-dir", str(tmp_path)]
    try:
        up = _psinfor("dev", "kafka", "up", *state)
        assert up.returncode == 0, up.stderr
        export = next(line for line in up.stdout.splitlines() if line.startswith("export "))
        bootstrap = export.split("=", 1)[1]
        # The command has exited; the broker it started must still serve.
        assert len(AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).brokers) == 1

        status = _psinfor("dev", "kafka", "status", *state)
        assert status.returncode == 0, status.stdout
        assert "1/1 process(es) alive, 1 broker(s) answering" in status.stdout
        pids = json.loads((tmp_path / "kafka" / "state.json").read_text())["pids"]
    finally:
        down = _psinfor("dev", "kafka", "down", *state)
    assert down.returncode == 0, down.stderr
    assert not any(pid_alive(pid) for pid in pids)
    assert _psinfor("dev", "kafka", "status", *state).returncode == 1


# -- (d) a free port taken by someone else before the JVM binds it: one retry on fresh ports ------


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


def _first_pick_is(module: ModuleType, port: int, monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """Make ``module``'s first free-port pick hand out ``port`` (taken); returns every pick made."""
    picks: list[list[int]] = []

    def pick(count: int) -> list[int]:
        ports = free_ports(count)
        if not picks:
            ports[0] = port
        picks.append(ports)
        return ports

    monkeypatch.setattr(module, "free_ports", pick)
    return picks


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_cluster_id_starting_with_a_dash_formats_and_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # URL-safe base64 starts with "-" one time in 32: CI once failed `dev kafka up` on exactly that.
    monkeypatch.setattr(launcher_module, "new_cluster_id", lambda: "-" + "A" * 21)

    with KafkaCluster(1, tmp_path) as cluster:
        assert cluster.cluster_id.startswith("-")
        assert len(cluster.admin().list_topics(timeout=10).brokers) == 1


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_kafka_retries_once_when_its_port_was_taken(
    tmp_path: Path, taken_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    picks = _first_pick_is(launcher_module, taken_port, monkeypatch)

    with KafkaCluster(1, tmp_path) as cluster:
        assert len(picks) == 2
        assert str(taken_port) not in cluster.bootstrap_servers
        assert len(cluster.admin().list_topics(timeout=10).brokers) == 1


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_registry_relaunches_once_when_its_port_was_taken(
    tmp_path: Path, taken_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    picks = _first_pick_is(registry_module, taken_port, monkeypatch)

    with RegistryServer(tmp_path) as server:
        assert len(picks) == 2
        assert server.port != taken_port
        assert httpx.get(f"{server.url}/subjects", timeout=5).json() == []
    assert (tmp_path / "registry.port-taken.log").exists()
