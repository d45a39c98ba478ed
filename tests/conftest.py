"""Shared pytest fixtures: one real Kafka broker and one schema registry per test session.

Where the cluster comes from, first match wins:

1. ``PSINFOR_KAFKA_BOOTSTRAP`` / ``PSINFOR_REGISTRY_URL``: an existing cluster (each independently);
2. a Docker engine that answers: testcontainers' ``KafkaContainer`` for the broker;
3. otherwise the project's local launcher (``sandbox.kafka``): a single KRaft node and Apicurio,
   jars from Maven Central (cached), run directories under pytest's temporary directory.

The local runtime is started once, before the first test that needs it (right after collection, so
its start-up does not count against that test's timeout), and always stopped at session end.

Fixtures for tests: ``kafka_bootstrap`` (``"host:port"``), ``registry_url`` (the ccompat base URL),
and the factories ``new_topic(partitions=1, replication_factor=1, config=None) -> str`` and
``new_group() -> str``, which return names unique to the calling test.

``--soak`` enables the tests marked ``soak``; without it they are deselected (not skipped).
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import re
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic  # the admin module re-exports it without declaring so

from sandbox.kafka.launcher import KafkaCluster
from sandbox.kafka.registry import RegistryServer
from sandbox.kafka.runtime import fetch_runtime

# The only environment variables tests read: point the whole suite at an existing cluster.
KAFKA_BOOTSTRAP_ENV = "PSINFOR_KAFKA_BOOTSTRAP"
REGISTRY_URL_ENV = "PSINFOR_REGISTRY_URL"

DOCKER_SOCKET = Path("/var/run/docker.sock")
_TOPIC_READY_TIMEOUT_S = 30.0


class NewTopicFactory(Protocol):
    """Creates a uniquely named topic, waits until every partition has a leader, returns its name."""

    def __call__(
        self, partitions: int = 1, replication_factor: int = 1, config: dict[str, str] | None = None
    ) -> str: ...


# -- options and markers ---------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true", default=False, help="also run the tests marked soak")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--soak"):
        return
    soak = [item for item in items if item.get_closest_marker("soak") is not None]
    if soak:
        config.hook.pytest_deselected(items=soak)
        items[:] = [item for item in items if item.get_closest_marker("soak") is None]


# -- the session runtime ---------------------------------------------------------------------------


@dataclass
class _SessionRuntime:
    """The broker and registry of this test session, what failed, and what must be stopped at its end."""

    bootstrap: str | None = None
    registry_url: str | None = None
    errors: dict[str, BaseException] = field(default_factory=dict)
    stoppers: list[Callable[[], None]] = field(default_factory=list)

    def stop(self) -> None:
        while self.stoppers:
            stopper = self.stoppers.pop()
            with contextlib.suppress(Exception):
                stopper()


_RUNTIME_KEY = pytest.StashKey[_SessionRuntime]()
_KAFKA_FIXTURES = frozenset({"kafka_bootstrap", "kafka_admin", "new_topic", "new_group"})
_REGISTRY_FIXTURES = frozenset({"registry_url"})


def _docker_answers() -> bool:
    """True when a Docker engine answers ``/_ping`` on its default socket within 2 s.

    A raw socket, not the docker library: the library leaves an unclosed socket behind (a ResourceWarning,
    an error under ``-W error``) when no engine runs, which is the common case here.
    """
    if not DOCKER_SOCKET.is_socket():
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2.0)
            sock.connect(str(DOCKER_SOCKET))
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            status_line = sock.recv(64).split(b"\r\n", 1)[0]
    except OSError:
        return False
    return status_line.startswith(b"HTTP/1.") and b" 200 " in status_line + b" "


def _start(config: pytest.Config, runtime: _SessionRuntime, *, kafka: bool, registry: bool) -> None:
    """Start the parts asked for that are neither running nor configured nor already failed."""
    need_kafka = kafka and runtime.bootstrap is None and "kafka" not in runtime.errors
    need_registry = registry and runtime.registry_url is None and "registry" not in runtime.errors
    if need_kafka and (bootstrap := os.environ.get(KAFKA_BOOTSTRAP_ENV)):
        runtime.bootstrap, need_kafka = bootstrap, False
    if need_registry and (url := os.environ.get(REGISTRY_URL_ENV)):
        runtime.registry_url, need_registry = url, False
    if need_kafka and _docker_answers():
        try:
            from testcontainers.community.kafka import KafkaContainer

            container = KafkaContainer().with_kraft()
            runtime.stoppers.append(container.stop)
            container.start()
            runtime.bootstrap = str(container.get_bootstrap_server())
        except Exception as exc:  # noqa: BLE001 - reported by every test that needs the broker
            runtime.errors["kafka"] = exc
        need_kafka = False
    if not (need_kafka or need_registry):
        return
    started = time.monotonic()
    try:
        fetched = fetch_runtime(kafka=need_kafka, registry=need_registry)
    except Exception as exc:  # noqa: BLE001 - reported by every test that needs the runtime
        for part, needed in (("kafka", need_kafka), ("registry", need_registry)):
            if needed:
                runtime.errors[part] = exc
        return
    base = _tmp_path_factory(config).mktemp("psinfor-runtime")
    server: RegistryServer | None = None
    if need_registry:
        # Spawned first, waited for last: Apicurio's start overlaps the broker's.
        server = RegistryServer(base / "registry", runtime=fetched.registry)
        runtime.stoppers.append(server.stop)
        try:
            server.launch()
        except Exception as exc:  # noqa: BLE001
            runtime.errors["registry"] = exc
            server = None
    if need_kafka:
        cluster = KafkaCluster(1, base / "kafka", runtime=fetched.kafka)
        runtime.stoppers.append(cluster.stop)
        try:
            cluster.start()
            runtime.bootstrap = cluster.bootstrap_servers
        except Exception as exc:  # noqa: BLE001
            runtime.errors["kafka"] = exc
    if server is not None:
        try:
            server.wait_ready()
            runtime.registry_url = server.url
        except Exception as exc:  # noqa: BLE001
            runtime.errors["registry"] = exc
            server.stop()
    _report(
        config,
        f"psinfor test runtime: Kafka {runtime.bootstrap or '-'}, registry {runtime.registry_url or '-'} "
        f"(started in {time.monotonic() - started:.1f} s; logs under {base})",
    )


def _report(config: pytest.Config, line: str) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line)


def _tmp_path_factory(config: pytest.Config) -> pytest.TempPathFactory:
    # The runtime starts from a hook (before any fixture exists), so take the factory pytest's tmp_path
    # plugin attached to the config; it is the same one the tmp_path_factory fixture returns.
    factory: pytest.TempPathFactory = config._tmp_path_factory  # type: ignore[attr-defined]
    return factory


def _ensure_runtime(config: pytest.Config, *, kafka: bool, registry: bool) -> _SessionRuntime:
    runtime = config.stash.get(_RUNTIME_KEY, None)
    if runtime is None:
        runtime = _SessionRuntime()
        config.stash[_RUNTIME_KEY] = runtime
        # Backstop for a session that dies before pytest_sessionfinish (attached JVMs also die with us).
        atexit.register(runtime.stop)
    _start(config, runtime, kafka=kafka, registry=registry)
    return runtime


def pytest_collection_finish(session: pytest.Session) -> None:
    # Start before the first test so the start-up time is not charged to that test's timeout, and only
    # the parts the selected tests use (fixturenames is the full closure of each test's fixtures).
    used: set[str] = set()
    for item in session.items:
        used.update(getattr(item, "fixturenames", ()))
    kafka, registry = bool(used & _KAFKA_FIXTURES), bool(used & _REGISTRY_FIXTURES)
    if kafka or registry:
        _ensure_runtime(session.config, kafka=kafka, registry=registry)


def pytest_sessionfinish(session: pytest.Session) -> None:
    runtime = session.config.stash.get(_RUNTIME_KEY, None)
    if runtime is not None:
        runtime.stop()


def _session_part(config: pytest.Config, part: str) -> str:
    runtime = _ensure_runtime(config, kafka=part == "kafka", registry=part == "registry")
    error = runtime.errors.get(part)
    if error is not None:
        raise RuntimeError(f"the test {part} failed to start: {error}") from error
    value = runtime.bootstrap if part == "kafka" else runtime.registry_url
    assert value is not None
    return value


@pytest.fixture(scope="session")
def kafka_bootstrap(pytestconfig: pytest.Config) -> str:
    """``host:port[,host:port]`` of the session's broker(s)."""
    return _session_part(pytestconfig, "kafka")


@pytest.fixture(scope="session")
def registry_url(pytestconfig: pytest.Config) -> str:
    """The Confluent-compatible base URL of the session's schema registry (``.../apis/ccompat/v7``)."""
    return _session_part(pytestconfig, "registry")


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap: str) -> AdminClient:
    """One AdminClient for the session's broker."""
    return AdminClient({"bootstrap.servers": kafka_bootstrap})


# -- unique names ----------------------------------------------------------------------------------

_counter = itertools.count(1)


def _unique_name(request: pytest.FixtureRequest, kind: str) -> str:
    # Legal topic characters only, short enough for Kafka's 249-character limit, traceable to the test.
    test = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name).strip("-.")[:80] or "test"
    return f"{kind}.{test}.{next(_counter)}-{uuid.uuid4().hex[:8]}"


def _wait_for_topic(admin: AdminClient, topic: str, partitions: int) -> None:
    deadline = time.monotonic() + _TOPIC_READY_TIMEOUT_S
    while True:
        metadata: Any = admin.list_topics(topic=topic, timeout=5)
        described = metadata.topics.get(topic)
        if (
            described is not None
            and described.error is None
            and len(described.partitions) == partitions
            and all(partition.leader >= 0 for partition in described.partitions.values())
        ):
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"topic {topic}: a partition has no leader after {_TOPIC_READY_TIMEOUT_S} s")
        time.sleep(0.1)


@pytest.fixture
def new_topic(request: pytest.FixtureRequest, kafka_admin: AdminClient) -> NewTopicFactory:
    """Factory: ``new_topic(partitions=1, replication_factor=1, config=None) -> str``, unique per call."""

    def create(partitions: int = 1, replication_factor: int = 1, config: dict[str, str] | None = None) -> str:
        name = _unique_name(request, "t")
        topic = NewTopic(
            name, num_partitions=partitions, replication_factor=replication_factor, config=config or {}
        )
        futures = kafka_admin.create_topics([topic])
        futures[name].result(timeout=30)
        _wait_for_topic(kafka_admin, name, partitions)
        return name

    return create


@pytest.fixture
def new_group(request: pytest.FixtureRequest) -> Callable[[], str]:
    """Factory: ``new_group() -> str``, a consumer group id unique per call."""
    return lambda: _unique_name(request, "g")
