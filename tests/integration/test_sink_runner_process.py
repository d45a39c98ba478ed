"""``python -m sinks.main`` as a supervisor runs it: SIGTERM, SIGKILL and a crash, on the real broker.

The worker runs the journal sink (``tests.recording_sink:build_journal_sink``): every apply appends a
``start`` and an ``end`` line (sku, version, pid, partition, offset) to a file, so the test sees what
was applied, by which process, even across a SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from pipeline.settings import RegistrySettings
from schemas.codec import AvroCodec
from schemas.registry import registry_client
from tests.conftest import NewTopicFactory
from tests.integration.test_sink_runner import (
    RECORD,
    Cluster,
    StockTopics,
    committed,
    end_offsets,
    make_topics,
    produce,
)
from tests.recording_sink import SOURCE, TARGET

pytestmark = pytest.mark.integration

GroupFactory = Callable[[], str]
REPO = Path(__file__).resolve().parents[2]
SINK_NAME = "test-stock"
EXIT_FATAL = 70


@pytest.fixture
def cluster(kafka_bootstrap: str, registry_url: str) -> Cluster:
    return Cluster(kafka_bootstrap, registry_url)


@pytest.fixture
def registry(registry_url: str) -> Iterator[SchemaRegistryClient]:
    with registry_client(RegistrySettings(url=registry_url)) as client:
        yield client


@dataclass(frozen=True)
class Line:
    event: str
    sku: str
    version: int
    pid: int
    partition: int
    offset: int


def journal(path: Path) -> list[Line]:
    if not path.exists():
        return []
    lines = []
    for text in path.read_text().splitlines():
        event, sku, version, pid, partition, offset = text.split()
        lines.append(Line(event, sku, int(version), int(pid), int(partition), int(offset)))
    return lines


def ended(path: Path) -> list[Line]:
    return [line for line in journal(path) if line.event == "end"]


@contextmanager
def worker(
    cluster: Cluster,
    topics: StockTopics,
    group_prefix: str,
    journal_path: Path,
    log: Path,
    *,
    delay_s: float,
    commit_interval_s: float,
    crash_on: str = "",
    max_in_flight_keys: int = 8,
) -> Iterator[subprocess.Popen[bytes]]:
    """The sink worker subprocess; SIGKILLed if still running when the block ends."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PSINFOR_KAFKA__BOOTSTRAP_SERVERS": cluster.bootstrap,
        "PSINFOR_REGISTRY__URL": cluster.registry_url,
        "PSINFOR_SERVICE__LOG_FORMAT": "text",
        "PSINFOR_SERVICE__COMMIT_INTERVAL_S": str(commit_interval_s),
        # The broker's minimum: a killed worker's partitions move to the restarted one within seconds.
        "PSINFOR_SINKS__SESSION_TIMEOUT_S": "6",
        "PSINFOR_SINKS__MAX_IN_FLIGHT_KEYS": str(max_in_flight_keys),
        "RECORDING_SINK_JOURNAL": str(journal_path),
        "RECORDING_SINK_DELAY_S": str(delay_s),
        "RECORDING_SINK_CRASH_ON": crash_on,
    }
    argv = [
        sys.executable,
        "-m",
        "sinks.main",
        "--sinks",
        "tests.recording_sink:build_journal_sink",
        "--topic",
        f"{SOURCE}={topics.source}",
        "--topic",
        f"dlq.sink-{TARGET}={topics.dlq}",
        "--group-prefix",
        group_prefix,
    ]
    with log.open("ab") as out:
        process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}; worker log:\n{tail}")
        time.sleep(0.1)


def test_sigterm_lets_running_calls_finish_commits_and_exits_0(
    cluster: Cluster,
    registry: SchemaRegistryClient,
    new_topic: NewTopicFactory,
    new_group: GroupFactory,
    tmp_path: Path,
) -> None:
    topics = make_topics(new_topic, cluster.registry_url, partitions=2)
    skus = [f"SKU-{n:02d}" for n in range(10)]
    events = [(sku, v) for v in range(1, 11) for sku in skus]
    produced = produce(cluster.bootstrap, AvroCodec(registry, RECORD), topics.source, events)
    path, log = tmp_path / "journal", tmp_path / "worker.log"
    group_prefix = f"{new_group()}-"
    # Slow calls and a commit interval longer than the test: only the shutdown can commit.
    with worker(
        cluster, topics, group_prefix, path, log, delay_s=0.15, commit_interval_s=300, max_in_flight_keys=4
    ) as process:
        wait_for(lambda: len(ended(path)) >= 12, 30, "a dozen applies", log)
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
    assert code == 0, log.read_text(errors="replace")[-3000:]
    lines = journal(path)
    started = Counter((line.sku, line.version) for line in lines if line.event == "start")
    finished = Counter((line.sku, line.version) for line in lines if line.event == "end")
    assert started == finished, "a call running at SIGTERM was cut off instead of finishing"
    assert len(finished) < len(events), "the worker should have been stopped mid-stream"
    marks = committed(cluster.bootstrap, group_prefix + SINK_NAME, topics.source, topics.partitions)
    applied = {(line.partition, line.offset) for line in lines if line.event == "end"}
    ends = end_offsets(produced)
    assert sum(max(mark, 0) for mark in marks.values()) > 0, f"nothing committed: {marks}"
    for partition, mark in marks.items():
        assert mark <= ends[partition]
        # Everything below the committed offset was applied; the record at it was not.
        assert all((partition, offset) in applied for offset in range(mark))
        if mark < ends[partition]:
            assert (partition, mark) not in applied


def test_sigkill_mid_stream_then_restart_applies_every_record_at_least_once(
    cluster: Cluster,
    registry: SchemaRegistryClient,
    new_topic: NewTopicFactory,
    new_group: GroupFactory,
    tmp_path: Path,
) -> None:
    topics = make_topics(new_topic, cluster.registry_url, partitions=3)
    skus = [f"SKU-{n:02d}" for n in range(30)]
    events = [(sku, v) for v in range(1, 21) for sku in skus]
    produced = produce(cluster.bootstrap, AvroCodec(registry, RECORD), topics.source, events)
    path, log = tmp_path / "journal", tmp_path / "worker.log"
    group_prefix = f"{new_group()}-"
    group = group_prefix + SINK_NAME

    def committed_total() -> int:
        return sum(max(mark, 0) for mark in committed(cluster.bootstrap, group, topics.source, 3).values())

    with worker(cluster, topics, group_prefix, path, log, delay_s=0.01, commit_interval_s=0.3) as first:
        wait_for(lambda: len(ended(path)) >= len(events) // 3, 30, "a third of the records applied", log)
        wait_for(lambda: committed_total() > 0, 10, "a first commit", log)
        safe = committed(cluster.bootstrap, group, topics.source, 3)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    killed_at = len(ended(path))
    with worker(cluster, topics, group_prefix, path, log, delay_s=0.01, commit_interval_s=0.3) as second:
        wanted = set(events)
        wait_for(lambda: wanted <= {(x.sku, x.version) for x in ended(path)}, 40, "every record applied", log)
        wait_for(
            lambda: committed(cluster.bootstrap, group, topics.source, 3) == end_offsets(produced),
            15,
            "the final commit",
            log,
        )
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
        restarted = second.pid
    done = ended(path)
    counts = Counter((line.sku, line.version) for line in done)
    repeats = sum(counts.values()) - len(counts)
    print(f"\nkilled after {killed_at} applies of {len(events)} records; {repeats} repeated after restart")
    assert set(counts) == set(events)  # at least once, every one
    # The restarted worker began at the committed offsets: nothing below them was applied again.
    assert not [x for x in done if x.pid == restarted and x.offset < safe[x.partition]]
    assert repeats <= killed_at - sum(max(mark, 0) for mark in safe.values())
    # Each process applied each key's records in order.
    for pid in {line.pid for line in done}:
        per_key: dict[str, list[int]] = {}
        for line in done:
            if line.pid == pid:
                per_key.setdefault(line.sku, []).append(line.version)
        assert all(versions == sorted(versions) for versions in per_key.values()), per_key


def test_a_sink_bug_exits_70_with_the_failing_record_uncommitted(
    cluster: Cluster,
    registry: SchemaRegistryClient,
    new_topic: NewTopicFactory,
    new_group: GroupFactory,
    tmp_path: Path,
) -> None:
    topics = make_topics(new_topic, cluster.registry_url, partitions=1)
    events = [("A", 1), ("B", 1), ("CRASH", 1), ("C", 1)]
    produce(cluster.bootstrap, AvroCodec(registry, RECORD), topics.source, events)
    path, log = tmp_path / "journal", tmp_path / "worker.log"
    group_prefix = f"{new_group()}-"
    with worker(
        cluster, topics, group_prefix, path, log, delay_s=0.0, commit_interval_s=300, crash_on="CRASH"
    ) as w:
        code = w.wait(timeout=40)
    assert code == EXIT_FATAL, log.read_text(errors="replace")[-3000:]
    assert "bug while applying CRASH" in log.read_text(errors="replace")
    assert committed(cluster.bootstrap, group_prefix + SINK_NAME, topics.source, 1) == {0: 2}
