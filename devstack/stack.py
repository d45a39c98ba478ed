"""The sandbox stack as one object: plan it, prepare its files, start it, find it again, stop it.

::

    stack = DevStack.create(StackOptions(data_dir=Path("/tmp/stack")), emit=print)
    stack.prepare()        # data dir, secrets, rules file; refuses a data dir another `dev up` uses
    stack.start()          # StackStartError if a service cannot be started (everything is stopped then)
    stack.endpoints        # URLs, files and groups, also written to <data-dir>/stack.json
    stack.stop()           # reverse order, bounded

``<data-dir>/stack.json`` (:class:`StackEndpoints`) is how ``psinfor demo`` and tests attach to a
running ``dev up``: where the sandboxes, the cluster and the files are, and the supervisor's pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from devstack.services import (
    Link,
    ServiceSpec,
    StackOptions,
    StackPlan,
    build_services,
    links_of,
    plan_stack,
    write_secret_files,
)
from devstack.stack_rules import stack_rules_text
from devstack.supervisor import Backoff, StopRecord, Supervisor
from pipeline.errors import ConfigError

STATE_FILE = "stack.json"


def default_data_dir() -> Path:
    """Where ``dev up`` keeps its files unless told otherwise: ``~/.cache/psinfor/stack``."""
    return Path.home() / ".cache" / "psinfor" / "stack"


def free_port_allocator() -> Callable[[], int]:
    """A function returning a free loopback port, never the same one twice in one plan."""
    handed: set[int] = set()

    def free_port() -> int:
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind(("127.0.0.1", 0))
                port: int = sock.getsockname()[1]
            if port not in handed:
                handed.add(port)
                return port

    return free_port


@dataclass(frozen=True)
class StackEndpoints:
    """Where a running stack is (the content of ``stack.json``)."""

    supervisor_pid: int
    bootstrap: str
    registry_url: str
    prestashop_url: str
    infor_url: str
    ws_key_file: str
    rules_path: str
    catalogue_path: str
    logs_dir: str
    sink_groups: list[str]
    topic_prefix: str
    services: dict[str, str]
    """Each stage's HTTP base URL (``/metrics``, ``/healthz``, ``/readyz``) by service name."""
    sinks_by_service: dict[str, list[str]]
    """The sinks each sink process runs."""

    @classmethod
    def of(cls, plan: StackPlan) -> StackEndpoints:
        """The endpoints of ``plan``, as run by this process."""
        return cls(
            supervisor_pid=os.getpid(),
            bootstrap=plan.bootstrap,
            registry_url=plan.registry_url,
            prestashop_url=plan.prestashop_url,
            infor_url=plan.infor_url,
            ws_key_file=str(plan.secrets_dir / "ws_key"),
            rules_path=str(plan.rules_path),
            catalogue_path=str(plan.catalogue_path),
            logs_dir=str(plan.logs_dir),
            sink_groups=plan.sink_groups(),
            topic_prefix=plan.options.topic_prefix,
            services={
                spec.name: f"http://127.0.0.1:{spec.ports['http']}"
                for spec in build_services(plan)
                if spec.liveness_url is not None
            },
            sinks_by_service={name: list(sinks) for name, sinks in plan.sink_processes().items()},
        )

    @classmethod
    def read(cls, data_dir: Path) -> StackEndpoints | None:
        """The endpoints a ``dev up`` using ``data_dir`` wrote, if it still runs; else None."""
        try:
            endpoints = cls(**json.loads((data_dir / STATE_FILE).read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None
        return endpoints if _pid_runs(endpoints.supervisor_pid) else None

    def write(self, data_dir: Path) -> None:
        """Record the endpoints in ``data_dir/stack.json``."""
        (data_dir / STATE_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")

    def topic(self, name: str) -> str:
        """The actual name of catalogue topic ``name`` in this stack."""
        return self.topic_prefix + name

    def ws_key(self) -> str:
        """The shop's webservice key."""
        return Path(self.ws_key_file).read_text(encoding="utf-8").strip()


def _pid_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DevStack:
    """A planned stack and the supervisor that runs it."""

    def __init__(self, plan: StackPlan, *, emit: Callable[[str], None], colour: bool = False) -> None:
        self.plan = plan
        self.specs: list[ServiceSpec] = build_services(plan)
        self.supervisor = Supervisor(
            self.specs,
            emit=emit,
            logs_dir=plan.logs_dir,
            backoff=Backoff(),
            colour=colour,
            cwd=_project_root(),
        )
        self._rules_text: str | None = None

    @classmethod
    def create(
        cls,
        options: StackOptions,
        *,
        emit: Callable[[str], None],
        colour: bool = False,
        rules_text: str | None = None,
    ) -> DevStack:
        """Plan a stack for ``options`` (free ports, fresh secrets); ``rules_text`` replaces the rules."""
        stack = cls(plan_stack(options, free_port=free_port_allocator()), emit=emit, colour=colour)
        stack._rules_text = rules_text
        return stack

    @property
    def endpoints(self) -> StackEndpoints:
        """Where this stack is."""
        return StackEndpoints.of(self.plan)

    def prepare(self) -> None:
        """Create the data dir with fresh secrets and rules; ConfigError if another ``dev up`` uses it."""
        data_dir = self.plan.data_dir
        running = StackEndpoints.read(data_dir)
        if running is not None and running.supervisor_pid != os.getpid():
            raise ConfigError(
                f"another `psinfor dev up` (pid {running.supervisor_pid}) uses {data_dir}; "
                "stop it or pass --data-dir"
            )
        data_dir.mkdir(parents=True, exist_ok=True)
        for stale in ("logs", "faust", "kafka", "registry", "secrets", STATE_FILE, "catalogue.json"):
            path = data_dir / stale
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        (data_dir / "faust").mkdir()  # faust creates its own data dir, not the parents
        write_secret_files(self.plan)
        rules = self._rules_text if self._rules_text is not None else stack_rules_text()
        self.plan.rules_path.write_text(rules, encoding="utf-8")

    def start(self) -> None:
        """Start every service; returns once all are healthy, then records ``stack.json``."""
        self.supervisor.start()
        self.endpoints.write(self.plan.data_dir)

    def stop(self, timeout_s: float = 60.0) -> list[StopRecord]:
        """Stop everything (reverse order, within ``timeout_s``) and forget ``stack.json``."""
        try:
            return self.supervisor.stop(timeout_s)
        finally:
            with contextlib.suppress(OSError):
                (self.plan.data_dir / STATE_FILE).unlink()

    def links(self) -> list[tuple[str, Link]]:
        """The URLs worth showing, without the probed ones that do not answer."""
        shown: list[tuple[str, Link]] = []
        with httpx.Client(timeout=2.0) as http:
            for name, link in links_of(self.specs):
                if link.probe:
                    try:
                        if not http.get(link.url).is_success:
                            continue
                    except httpx.HTTPError:
                        continue
                shown.append((name, link))
        return shown


def _project_root() -> Path:
    # The children run ``python -m cli.main``: from the project root that works without the package
    # being installed (an editable install works from anywhere).
    return Path(__file__).resolve().parent.parent
