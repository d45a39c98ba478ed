"""A real Apache Kafka (KRaft, combined broker+controller) cluster of 1 or 3 nodes on 127.0.0.1.

```
with KafkaCluster(nodes=1, run_dir=tmp) as cluster:   # fetch jars (cached), format, start, wait
    use(cluster.bootstrap_servers)                      # "127.0.0.1:PORT[,...]"
    cluster.kill_node(0); cluster.restart_node(0)       # failover tests (3 nodes)
```

Every node gets ``<run_dir>/node-<id>/`` with its ``server.properties``, its data (``data/``) and its
console log (``kafka.log``). The quorum is static (``controller.quorum.voters``), so formatting needs no
``--standalone`` and a restarted node rejoins with its old storage. Ports are picked free at start
unless given. Readiness means an AdminClient sees every broker; a JVM that exits first fails the start
at once, with the tail of its log in the exception.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from confluent_kafka.admin import AdminClient

from sandbox.kafka.jvm import LOOPBACK, JvmProcess, ProcessFailedError, free_ports, log_tail
from sandbox.kafka.runtime import KafkaRuntime, fetch_runtime

# Test-friendly settings from the recipe: few internal partitions, no initial rebalance delay, small
# thread pools and cleaner buffer for a 2-core machine with small heaps.
_COMMON_PROPERTIES: dict[str, str] = {
    "process.roles": "broker,controller",
    "inter.broker.listener.name": "PLAINTEXT",
    "controller.listener.names": "CONTROLLER",
    "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
    "num.partitions": "1",
    "offsets.topic.num.partitions": "4",
    "transaction.state.log.num.partitions": "4",
    "group.initial.rebalance.delay.ms": "0",
    "auto.create.topics.enable": "true",
    "num.network.threads": "2",
    "background.threads": "4",
    "num.recovery.threads.per.data.dir": "1",
    "log.cleaner.dedupe.buffer.size": "16777216",
}

_SINGLE_NODE_PROPERTIES: dict[str, str] = {
    "default.replication.factor": "1",
    "min.insync.replicas": "1",
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "num.io.threads": "4",
}

_THREE_NODE_PROPERTIES: dict[str, str] = {
    "default.replication.factor": "3",
    "min.insync.replicas": "2",
    "offsets.topic.replication.factor": "3",
    "transaction.state.log.replication.factor": "3",
    "transaction.state.log.min.isr": "2",
    "share.coordinator.state.topic.replication.factor": "3",
    "share.coordinator.state.topic.min.isr": "2",
    "num.io.threads": "2",
    # Faster failure detection than the defaults (9000 / 2000 / 30000 ms) so failover tests stay short.
    "broker.session.timeout.ms": "4000",
    "broker.heartbeat.interval.ms": "500",
    "replica.lag.time.max.ms": "10000",
}

PORT_TAKEN = "Address already in use"  # what a JVM logs when its listener port was taken first
_GC_FLAGS = ("-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:+ExplicitGCInvokesConcurrent")
SINGLE_NODE_HEAP = ("-Xms256m", "-Xmx1g")
MULTI_NODE_HEAP = ("-Xms256m", "-Xmx512m")
FORMAT_HEAP = ("-Xms64m", "-Xmx512m")


@dataclass(frozen=True)
class NodeSpec:
    """One node's identity and ports; ``node_id`` starts at 1 as Kafka's examples do."""

    node_id: int
    port: int
    controller_port: int

    @property
    def address(self) -> str:
        """The PLAINTEXT listener clients connect to."""
        return f"{LOOPBACK}:{self.port}"


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (22 characters)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def render_server_properties(
    node: NodeSpec, nodes: Sequence[NodeSpec], data_dir: Path, overrides: Mapping[str, str] | None = None
) -> str:
    """The ``server.properties`` text of ``node`` in a cluster of ``nodes`` (static quorum, loopback only).

    One node gets replication factor 1 everywhere; three nodes get RF 3, min.insync.replicas 2 and the
    faster failure detection. ``overrides`` win over every default.
    """
    if len(nodes) not in (1, 3):
        raise ValueError(f"a cluster has 1 or 3 nodes, not {len(nodes)}")
    properties: dict[str, str] = {
        "node.id": str(node.node_id),
        "controller.quorum.voters": ",".join(
            f"{other.node_id}@{LOOPBACK}:{other.controller_port}" for other in nodes
        ),
        "listeners": f"PLAINTEXT://{LOOPBACK}:{node.port},CONTROLLER://{LOOPBACK}:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{LOOPBACK}:{node.port}",
        "log.dirs": str(data_dir),
        **_COMMON_PROPERTIES,
        **(_SINGLE_NODE_PROPERTIES if len(nodes) == 1 else _THREE_NODE_PROPERTIES),
        **(overrides or {}),
    }
    return "".join(f"{key}={value}\n" for key, value in properties.items())


class KafkaCluster:
    """A local KRaft cluster of 1 or 3 combined nodes; see the module docstring.

    ``start()`` (or entering the context) returns once an AdminClient sees every broker, or raises
    :class:`ProcessFailedError` with the failing node's log tail. ``stop()`` is idempotent and always leaves
    no JVM behind. ``attached=False`` starts JVMs detached, so they outlive this Python process (the
    ``psinfor dev kafka up`` command); the default ties them to it (tests).
    """

    def __init__(
        self,
        nodes: int,
        run_dir: Path,
        *,
        runtime: KafkaRuntime | None = None,
        ports: Sequence[int] | None = None,
        overrides: Mapping[str, str] | None = None,
        attached: bool = True,
        ready_timeout_s: float = 120.0,
        stop_grace_s: float = 10.0,
    ) -> None:
        if nodes not in (1, 3):
            raise ValueError(f"nodes must be 1 or 3, not {nodes}")
        if ports is not None and len(ports) != nodes:
            raise ValueError(f"{nodes} node(s) need {nodes} port(s), got {len(ports)}")
        self.nodes = nodes
        self.run_dir = run_dir
        self._runtime = runtime
        self._requested_ports = list(ports) if ports is not None else None
        self._overrides = dict(overrides or {})
        self._attached = attached
        self.ready_timeout_s = ready_timeout_s
        self.stop_grace_s = stop_grace_s
        self.cluster_id = new_cluster_id()
        self.specs: list[NodeSpec] = []
        self._processes: list[JvmProcess | None] = [None] * nodes

    # -- life cycle -------------------------------------------------------------------------------

    def start(self) -> KafkaCluster:
        """Write configs, format every node's storage, start the JVMs and wait until all are brokers.

        Free ports are picked a moment before the JVMs bind them; if another process took one meanwhile
        (parallel test sessions), the start is retried once on fresh ports and a fresh storage.
        """
        for attempt in (1, 2):
            try:
                self.launch()
                self.wait_ready()
            except ProcessFailedError:
                self.stop(grace_s=0)
                if attempt == 1 and self._requested_ports is None and self._port_was_taken():
                    for spec in self.specs:
                        shutil.rmtree(self.node_dir(spec.node_id), ignore_errors=True)
                    self.cluster_id = new_cluster_id()
                    continue
                raise
            except BaseException:
                self.stop()
                raise
            return self
        raise AssertionError("unreachable: the second attempt returns or raises")

    def launch(self) -> None:
        """Write configs, format storage (in parallel) and spawn the JVMs without waiting for readiness.

        Split from :meth:`wait_ready` so a caller can start the registry meanwhile.
        """
        runtime = self.runtime
        ports = self._requested_ports or []
        picked = iter(free_ports(2 * self.nodes))
        self.specs = [
            NodeSpec(
                node_id=index + 1,
                port=ports[index] if ports else next(picked),
                controller_port=next(picked),
            )
            for index in range(self.nodes)
        ]
        for spec in self.specs:
            node_dir = self.node_dir(spec.node_id)
            node_dir.mkdir(parents=True, exist_ok=True)
            self.config_path(spec.node_id).write_text(
                render_server_properties(spec, self.specs, node_dir / "data", self._overrides)
            )
        self._format_all(runtime)
        for index in range(self.nodes):
            self._spawn(index)

    def wait_ready(self, count: int | None = None) -> None:
        """Block until an AdminClient sees ``count`` (default: all) brokers; fail fast if a JVM exits."""
        expected = self.nodes if count is None else count
        admin = self.admin()
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            self._raise_if_exited()
            try:
                metadata = admin.list_topics(timeout=1)
                if len(metadata.brokers) >= expected:
                    return
            except Exception:  # noqa: BLE001, S110 - KafkaException until the listener is up; keep polling
                pass
            if time.monotonic() >= deadline:
                raise ProcessFailedError(
                    f"Kafka: {expected} broker(s) not ready after {self.ready_timeout_s:.0f} s\n"
                    + self._tails()
                )
            time.sleep(0.25)

    def wait_node_ready(self, index: int) -> None:
        """Block until node ``index`` itself answers metadata requests and lists itself as a broker.

        Cluster-wide counts are not enough after a kill: the others report the dead node as a broker
        until its session times out, so a restart would look ready before the new JVM even listens.
        """
        spec = self.specs[index]
        admin = AdminClient({"bootstrap.servers": spec.address, "log_level": 0})
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            self._raise_if_exited()
            try:
                if spec.node_id in admin.list_topics(timeout=1).brokers:
                    return
            except Exception:  # noqa: BLE001, S110 - KafkaException until the listener is up; keep polling
                pass
            if time.monotonic() >= deadline:
                raise ProcessFailedError(
                    f"Kafka node {spec.node_id} not ready after {self.ready_timeout_s:.0f} s\n"
                    + log_tail(self.log_path(spec.node_id), 20)
                )
            time.sleep(0.25)

    def stop(self, grace_s: float | None = None) -> None:
        """Stop every node: SIGTERM all at once, SIGKILL any left after ``grace_s`` (or ``stop_grace_s``).

        With three nodes the last one to go cannot finish a controlled shutdown (no quorum left), so it
        waits out the grace period; tests with throwaway data pass a short one.
        """
        grace = self.stop_grace_s if grace_s is None else grace_s
        live = [process for process in self._processes if process is not None]
        for process in live:
            process.terminate()
        deadline = time.monotonic() + grace
        for process in live:
            process.stop(max(0.0, deadline - time.monotonic()))
        self._processes = [None] * self.nodes

    def kill_node(self, index: int) -> None:
        """SIGKILL node ``index`` (0-based) and reap it: an abrupt crash, no controlled shutdown."""
        process = self._processes[index]
        if process is None:
            raise ValueError(f"node {index} is not running")
        process.kill()
        self._processes[index] = None

    def restart_node(self, index: int, *, wait: bool = True) -> None:
        """Start node ``index`` again with its config and storage (no re-format); by default wait for it."""
        current = self._processes[index]
        if current is not None and current.alive():
            raise ValueError(f"node {index} is still running")
        self._spawn(index)
        if wait:
            self.wait_node_ready(index)
            self.wait_ready()

    def __enter__(self) -> KafkaCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- facts ------------------------------------------------------------------------------------

    @property
    def runtime(self) -> KafkaRuntime:
        """The broker classpath, fetched on first use when none was given."""
        if self._runtime is None:
            self._runtime = fetch_runtime(registry=False).kafka
        return self._runtime

    @property
    def bootstrap_servers(self) -> str:
        """Comma-separated ``127.0.0.1:port`` of every node."""
        if not self.specs:
            raise RuntimeError("the cluster has not been started")
        return ",".join(spec.address for spec in self.specs)

    @property
    def processes(self) -> list[JvmProcess | None]:
        """Each node's JVM, ``None`` for a node that is down."""
        return list(self._processes)

    @property
    def pids(self) -> list[int | None]:
        """The pid of each node's JVM, ``None`` for a node that is down."""
        return [None if process is None else process.pid for process in self._processes]

    def node_dir(self, node_id: int) -> Path:
        """``<run_dir>/node-<id>``: config, data and log of one node."""
        return self.run_dir / f"node-{node_id}"

    def config_path(self, node_id: int) -> Path:
        """The node's ``server.properties``."""
        return self.node_dir(node_id) / "server.properties"

    def log_path(self, node_id: int) -> Path:
        """The node's console log."""
        return self.node_dir(node_id) / "kafka.log"

    def admin(self) -> AdminClient:
        """A fresh AdminClient on this cluster (quiet: connection errors while nodes start are expected)."""
        return AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 0})

    # -- internals --------------------------------------------------------------------------------

    def _jvm_flags(self) -> list[str]:
        heap = SINGLE_NODE_HEAP if self.nodes == 1 else MULTI_NODE_HEAP
        return [*heap, *_GC_FLAGS, "-Djava.awt.headless=true"]

    def _format_all(self, runtime: KafkaRuntime) -> None:
        # The formats are independent JVMs; running them side by side saves ~1 s per extra node.
        running: list[tuple[int, subprocess.Popen[str]]] = []
        for spec in self.specs:
            argv = [
                str(runtime.java.executable),
                *FORMAT_HEAP,
                f"-Dlog4j2.configurationFile={runtime.log4j2_config}",
                "-cp",
                runtime.classpath,
                "kafka.tools.StorageTool",
                "format",
                # One argument: a random id starts with "-" one time in 32 (URL-safe base64), and the
                # tool's parser takes "-t -Xyz" for two options ("expected one argument").
                f"--cluster-id={self.cluster_id}",
                "-c",
                str(self.config_path(spec.node_id)),
            ]
            running.append(
                (
                    spec.node_id,
                    subprocess.Popen(
                        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=self.run_dir
                    ),
                )
            )
        failures = []
        for node_id, process in running:
            output, _ = process.communicate(timeout=120)
            if process.returncode != 0:
                failures.append(f"node {node_id} (exit {process.returncode}):\n{output.strip()}")
        if failures:
            raise ProcessFailedError("Kafka storage format failed for " + "\n".join(failures))

    def _spawn(self, index: int) -> None:
        runtime = self.runtime
        spec = self.specs[index]
        argv = [
            str(runtime.java.executable),
            *self._jvm_flags(),
            f"-Dlog4j2.configurationFile={runtime.log4j2_config}",
            f"-Dkafka.logs.dir={self.node_dir(spec.node_id)}",
            "-cp",
            runtime.classpath,
            "kafka.Kafka",
            str(self.config_path(spec.node_id)),
        ]
        node_dir = self.node_dir(spec.node_id)
        self._processes[index] = JvmProcess(
            argv, log_path=self.log_path(spec.node_id), cwd=node_dir, attached=self._attached
        )

    def _raise_if_exited(self) -> None:
        for spec, process in zip(self.specs, self._processes, strict=True):
            if process is not None and not process.alive():
                log = self.log_path(spec.node_id)
                raise ProcessFailedError(
                    f"Kafka node {spec.node_id} exited (code {process.exit_code()}) before the cluster was "
                    f"ready; last lines of {log}:\n{log_tail(log)}"
                )

    def _port_was_taken(self) -> bool:
        for spec in self.specs:
            try:
                if PORT_TAKEN in self.log_path(spec.node_id).read_text(errors="replace"):
                    return True
            except FileNotFoundError:
                continue
        return False

    def _tails(self) -> str:
        return "\n".join(
            f"--- {self.log_path(spec.node_id)}:\n{log_tail(self.log_path(spec.node_id), 20)}"
            for spec in self.specs
        )
