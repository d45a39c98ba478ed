"""``psinfor dev``: the local runtime (Kafka broker(s), schema registry) for development and tests.

```
psinfor dev fetch                               resolve the jars from Maven Central into the cache
psinfor dev kafka up [--nodes 1|3] [--port N]   start Kafka detached; prints the export line
psinfor dev kafka status | down
psinfor dev registry up [--port N]              start Apicurio detached; prints the export line
psinfor dev registry status | down
psinfor dev up [--with-traffic RATE]            the whole integration on the sandboxes (cli/devup.py)
```

``up`` starts the JVMs in their own session so they outlive the command, and records pids and ports in
``<state-dir>/<kafka|registry>/state.json`` for ``status`` and ``down``. With ``--foreground`` it runs
until Ctrl-C (or SIGTERM) and then stops what it started. Every ``up`` starts from empty storage.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType

import httpx
from confluent_kafka.admin import AdminClient

from sandbox.kafka.jvm import (
    JvmProcess,
    ProcessFailedError,
    RuntimeMissingError,
    pid_runs,
    port_is_free,
)
from sandbox.kafka.launcher import KafkaCluster
from sandbox.kafka.registry import RegistryServer
from sandbox.kafka.runtime import default_cache_dir, fetch_runtime

_KAFKA_MARKER = "kafka.Kafka"
_REGISTRY_MARKERS = ("-jar", "quarkus.http.port")
STOP_GRACE_S = 10.0  # the last of three nodes cannot shut down cleanly without a quorum


def default_state_dir() -> Path:
    """Where ``up`` records what it started: ``~/.cache/psinfor/dev``."""
    return Path.home() / ".cache" / "psinfor" / "dev"


@dataclass
class _State:
    """What one ``up`` started, as written to ``state.json``."""

    pids: list[int]
    endpoint: str
    nodes: int
    run_dir: str
    started_at: float

    @classmethod
    def load(cls, path: Path) -> _State | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (FileNotFoundError, json.JSONDecodeError, TypeError):
            return None

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")


# -- registration ----------------------------------------------------------------------------------


def _common(parser: argparse.ArgumentParser, *, state: bool = True) -> None:
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help=f"where the jars are cached (default: {default_cache_dir()})",
    )
    parser.add_argument("--java", type=Path, default=None, help="preferred java executable")
    if state:
        parser.add_argument(
            "--state-dir",
            type=Path,
            default=None,
            help=f"where pids, ports and run directories are kept (default: {default_state_dir()})",
        )


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``dev`` with its ``fetch``, ``kafka`` and ``registry`` sub-commands."""
    formatter = argparse.RawDescriptionHelpFormatter
    dev = subcommands.add_parser(
        "dev",
        help="run the local Kafka broker(s) and schema registry",
        description=__doc__,
        formatter_class=formatter,
    )
    dev_commands = dev.add_subparsers(title="commands", metavar="COMMAND", required=True)

    fetch = dev_commands.add_parser(
        "fetch",
        help="download the Kafka and Apicurio jars from Maven Central (cached)",
        description="Resolve the Kafka broker classpath and the Apicurio Registry tarball with Maven into "
        "the cache directory, once. A second call returns at once. Needs mvn and java on the machine.",
    )
    _common(fetch, state=False)
    fetch.add_argument(
        "--maven-repo", type=Path, default=None, help="Maven local repository to use (default: ~/.m2)"
    )
    fetch.set_defaults(handler=_fetch)

    kafka = dev_commands.add_parser(
        "kafka",
        help="start, inspect or stop the local Kafka broker(s)",
        description="A real Apache Kafka (KRaft) cluster on 127.0.0.1: one node, or three for failover work.",
    )
    kafka_commands = kafka.add_subparsers(title="commands", metavar="COMMAND", required=True)
    kafka_up = kafka_commands.add_parser(
        "up",
        help="start Kafka (detached unless --foreground)",
        description="Start a fresh Kafka cluster on 127.0.0.1 and wait until every broker is ready; print "
        "the bootstrap servers and the export line for PSINFOR_KAFKA__BOOTSTRAP_SERVERS. The brokers keep "
        "running after the command returns; stop them with `psinfor dev kafka down`.",
    )
    _common(kafka_up)
    kafka_up.add_argument("--nodes", type=int, choices=(1, 3), default=1, help="cluster size (default 1)")
    kafka_up.add_argument(
        "--port", type=int, default=None, help="client port of node 1 (node i gets PORT+i-1); default: free"
    )
    kafka_up.add_argument(
        "--foreground", action="store_true", help="run until Ctrl-C, then stop the brokers cleanly"
    )
    kafka_up.set_defaults(handler=_kafka_up)
    kafka_down = kafka_commands.add_parser(
        "down",
        help="stop the Kafka started by `up`",
        description="Stop the brokers recorded by `up` (SIGTERM, then SIGKILL) and forget them.",
    )
    _common(kafka_down)
    kafka_down.set_defaults(handler=_kafka_down)
    kafka_status = kafka_commands.add_parser(
        "status",
        help="show whether Kafka runs and how many brokers answer",
        description="Print the recorded bootstrap servers, which broker processes live, and how many brokers "
        "an AdminClient sees. Exit 0 when all are up, 1 otherwise.",
    )
    _common(kafka_status)
    kafka_status.set_defaults(handler=_kafka_status)

    registry = dev_commands.add_parser(
        "registry",
        help="start, inspect or stop the local schema registry",
        description="Apicurio Registry on 127.0.0.1 with its Confluent-compatible API (/apis/ccompat/v7), "
        "in-memory storage and the global compatibility rule BACKWARD_TRANSITIVE.",
    )
    registry_commands = registry.add_subparsers(title="commands", metavar="COMMAND", required=True)
    registry_up = registry_commands.add_parser(
        "up",
        help="start the registry (detached unless --foreground)",
        description="Start a fresh, empty Apicurio Registry and wait until its ccompat API answers; set the "
        "BACKWARD_TRANSITIVE rule; print the URL and the export line for PSINFOR_REGISTRY__URL.",
    )
    _common(registry_up)
    registry_up.add_argument("--port", type=int, default=None, help="HTTP port (default: a free one)")
    registry_up.add_argument(
        "--foreground", action="store_true", help="run until Ctrl-C, then stop the registry"
    )
    registry_up.set_defaults(handler=_registry_up)
    registry_down = registry_commands.add_parser(
        "down",
        help="stop the registry started by `up`",
        description="Stop the registry recorded by `up` (SIGTERM, then SIGKILL) and forget it.",
    )
    _common(registry_down)
    registry_down.set_defaults(handler=_registry_down)
    registry_status = registry_commands.add_parser(
        "status",
        help="show whether the registry runs and answers",
        description="Print the recorded URL, whether the process lives and whether the ccompat API answers. "
        "Exit 0 when it does, 1 otherwise.",
    )
    _common(registry_status)
    registry_status.set_defaults(handler=_registry_status)

    from cli.devup import add_up_parser

    add_up_parser(dev_commands)


# -- handlers --------------------------------------------------------------------------------------


def _fail(message: str) -> int:
    print(f"psinfor: {message}", file=sys.stderr)
    return 1


def _fetch(args: argparse.Namespace) -> int:
    started = time.monotonic()
    try:
        runtime = fetch_runtime(args.cache_dir, maven_repo=args.maven_repo, java=args.java)
    except RuntimeMissingError as exc:
        return _fail(str(exc))
    print(f"Kafka {runtime.kafka.version}: {runtime.kafka.libs_dir} (Java {runtime.kafka.java.version})")
    registry = runtime.registry
    print(f"Apicurio {registry.version}: {registry.jar} (Java {registry.java.version})")
    print(f"runtime ready in {time.monotonic() - started:.1f} s")
    return 0


def _state_path(args: argparse.Namespace, component: str) -> Path:
    base: Path = args.state_dir if args.state_dir is not None else default_state_dir()
    return base / component / "state.json"


def _live_pids(state: _State, markers: tuple[str, ...]) -> list[int]:
    return [pid for pid in state.pids if pid_runs(pid, markers)]


def _stop_pids(pids: list[int], log_path: Path) -> None:
    processes = [JvmProcess.adopt(pid, log_path=log_path) for pid in pids]
    for process in processes:
        process.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    for process in processes:
        process.stop(max(0.0, deadline - time.monotonic()))


class _StopRequestedError(Exception):
    """Raised from the SIGTERM handler so a foreground run unwinds like Ctrl-C."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _StopRequestedError


def _wait_foreground(alive: list[JvmProcess | None], what: str) -> int:
    """Block until Ctrl-C / SIGTERM (returns 0) or until a JVM dies on its own (returns 1)."""
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    try:
        print(f"{what} running in the foreground; Ctrl-C stops it", file=sys.stderr)
        while True:
            time.sleep(0.5)
            if any(process is not None and not process.alive() for process in alive):
                return _fail(f"{what}: a JVM exited on its own; stopping")
    except (KeyboardInterrupt, _StopRequestedError):
        print(f"stopping {what}", file=sys.stderr)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


def _kafka_up(args: argparse.Namespace) -> int:
    state_path = _state_path(args, "kafka")
    existing = _State.load(state_path)
    if existing is not None and _live_pids(existing, (_KAFKA_MARKER,)):
        print(f"Kafka already running at {existing.endpoint} (`psinfor dev kafka down` stops it)")
        print(f"export PSINFOR_KAFKA__BOOTSTRAP_SERVERS={existing.endpoint}")
        return 0
    ports = None
    if args.port is not None:
        ports = [args.port + index for index in range(args.nodes)]
        busy = [port for port in ports if not port_is_free(port)]
        if busy:
            return _fail(f"port(s) {', '.join(map(str, busy))} already in use on 127.0.0.1")
    run_dir = state_path.parent / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    started = time.monotonic()
    try:
        runtime = fetch_runtime(args.cache_dir, java=args.java, registry=False)
        cluster = KafkaCluster(
            args.nodes, run_dir, runtime=runtime.kafka, ports=ports, attached=args.foreground
        )
        cluster.start()
    except (RuntimeMissingError, ProcessFailedError) as exc:
        return _fail(str(exc))
    elapsed = time.monotonic() - started
    print(f"Kafka {runtime.kafka.version}, {args.nodes} node(s), ready in {elapsed:.1f} s; logs in {run_dir}")
    print(f"bootstrap servers: {cluster.bootstrap_servers}")
    print(f"export PSINFOR_KAFKA__BOOTSTRAP_SERVERS={cluster.bootstrap_servers}", flush=True)
    if args.foreground:
        try:
            return _wait_foreground(cluster.processes, "Kafka")
        finally:
            cluster.stop()
    _State(
        pids=[pid for pid in cluster.pids if pid is not None],
        endpoint=cluster.bootstrap_servers,
        nodes=args.nodes,
        run_dir=str(run_dir),
        started_at=time.time(),
    ).save(state_path)
    return 0


def _kafka_down(args: argparse.Namespace) -> int:
    state_path = _state_path(args, "kafka")
    state = _State.load(state_path)
    if state is None:
        print("Kafka is not running (nothing recorded by `psinfor dev kafka up`)")
        return 0
    live = _live_pids(state, (_KAFKA_MARKER,))
    _stop_pids(live, Path(state.run_dir) / "kafka.log")
    state_path.unlink(missing_ok=True)
    print(f"Kafka at {state.endpoint} stopped ({len(live)} broker process(es))")
    return 0


def _kafka_status(args: argparse.Namespace) -> int:
    state = _State.load(_state_path(args, "kafka"))
    if state is None:
        print("Kafka: not running")
        return 1
    live = _live_pids(state, (_KAFKA_MARKER,))
    seen = 0
    try:
        admin = AdminClient({"bootstrap.servers": state.endpoint, "log_level": 0})
        seen = len(admin.list_topics(timeout=3).brokers)
    except Exception:  # noqa: BLE001 - any client failure means "not answering", which is the report
        seen = 0
    healthy = len(live) == state.nodes and seen == state.nodes
    print(
        f"Kafka: {'running' if healthy else 'DEGRADED' if live else 'not running'} at {state.endpoint}; "
        f"{len(live)}/{state.nodes} process(es) alive, {seen} broker(s) answering; logs in {state.run_dir}"
    )
    if healthy:
        print(f"export PSINFOR_KAFKA__BOOTSTRAP_SERVERS={state.endpoint}")
    return 0 if healthy else 1


def _registry_up(args: argparse.Namespace) -> int:
    state_path = _state_path(args, "registry")
    existing = _State.load(state_path)
    if existing is not None and _live_pids(existing, _REGISTRY_MARKERS):
        print(f"registry already running at {existing.endpoint} (`psinfor dev registry down` stops it)")
        print(f"export PSINFOR_REGISTRY__URL={existing.endpoint}")
        return 0
    if args.port is not None and not port_is_free(args.port):
        return _fail(f"port {args.port} already in use on 127.0.0.1")
    run_dir = state_path.parent / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    started = time.monotonic()
    try:
        runtime = fetch_runtime(args.cache_dir, java=args.java, kafka=False)
        server = RegistryServer(run_dir, runtime=runtime.registry, port=args.port, attached=args.foreground)
        server.start()
    except (RuntimeMissingError, ProcessFailedError, httpx.HTTPError) as exc:
        return _fail(str(exc))
    elapsed = time.monotonic() - started
    print(f"Apicurio Registry {runtime.registry.version} ready in {elapsed:.1f} s; log in {server.log_path}")
    print(f"registry URL: {server.url}")
    print(f"export PSINFOR_REGISTRY__URL={server.url}", flush=True)
    if args.foreground:
        try:
            return _wait_foreground([server.process], "the registry")
        finally:
            server.stop()
    assert server.pid is not None
    _State(
        pids=[server.pid], endpoint=server.url, nodes=1, run_dir=str(run_dir), started_at=time.time()
    ).save(state_path)
    return 0


def _registry_down(args: argparse.Namespace) -> int:
    state_path = _state_path(args, "registry")
    state = _State.load(state_path)
    if state is None:
        print("registry is not running (nothing recorded by `psinfor dev registry up`)")
        return 0
    live = _live_pids(state, _REGISTRY_MARKERS)
    _stop_pids(live, Path(state.run_dir) / "registry.log")
    state_path.unlink(missing_ok=True)
    print(f"registry at {state.endpoint} stopped")
    return 0


def _registry_status(args: argparse.Namespace) -> int:
    state = _State.load(_state_path(args, "registry"))
    if state is None:
        print("registry: not running")
        return 1
    live = _live_pids(state, _REGISTRY_MARKERS)
    try:
        answering = httpx.get(f"{state.endpoint}/subjects", timeout=3).status_code == httpx.codes.OK
    except httpx.HTTPError:
        answering = False
    healthy = bool(live) and answering
    state_word = "running" if healthy else "DEGRADED" if live else "not running"
    print(f"registry: {state_word} at {state.endpoint}; API {'answers' if answering else 'does not answer'}")
    if healthy:
        print(f"export PSINFOR_REGISTRY__URL={state.endpoint}")
    return 0 if healthy else 1
