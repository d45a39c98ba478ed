"""Whole-pipeline test harness: psinfor's services as subprocesses against the session broker and registry.

Two layers, usable apart:

- :class:`Stack` runs any list of :class:`Service` (a name, an argv, ``PSINFOR_*`` environment and a
  health URL) as subprocesses, in order: each is started, then polled until its health URL answers
  200 (a service that exits meanwhile fails the start with the end of its log). Every line a service
  writes is streamed, prefixed with its name, into one log file (and kept per service for
  :meth:`Stack.records`). :meth:`Stack.stop` stops them in reverse order: SIGTERM, then SIGKILL after the
  service's grace period. Leaving the ``with`` block always stops everything, also when a test failed.
- :class:`PsinforStack` knows how to run psinfor itself: the PrestaShop and Infor sandboxes, the ingest
  services, the processors and the sinks (service names in :data:`ALL_SERVICES`), wired together on free
  loopback ports with generated secrets, on topics of their own (a unique prefix, created with
  ``psinfor topics apply`` and ``psinfor schemas register``) and consumer groups of their own, so
  several stacks and other tests can share one broker. Each service gets exactly the settings a
  deployment would give it, through environment variables.

Example (the end-to-end tests do this)::

    stack = PsinforStack(StackConfig(kafka_bootstrap, registry_url, tmp_path))
    with stack.run([SANDBOX_PRESTASHOP, SANDBOX_INFOR, INGEST_WEBHOOKS, ...]) as running:
        ... drive the sandboxes (stack.prestashop_url, stack.infor_url), read stack.topic("...") ...
        running.metrics(PROCESSORS)

Nothing here imports a stage: the services are the installed ``psinfor`` command (``python -m
cli.main``), as a supervisor would start them.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Final

import httpx
from prometheus_client.parser import text_string_to_metric_families

from schemas.catalogue import load_catalogue

REPO: Final = Path(__file__).resolve().parents[1]
PSINFOR: Final = (sys.executable, "-m", "cli.main")
"""The ``psinfor`` command of this checkout."""

SANDBOX_PRESTASHOP: Final = "sandbox-prestashop"
SANDBOX_INFOR: Final = "sandbox-infor"
INGEST_WEBHOOKS: Final = "ingest-prestashop-webhooks"
INGEST_POLLER: Final = "ingest-prestashop-poller"
INGEST_INFOR_EVENTS: Final = "ingest-infor-events"
INGEST_INFOR_POLLER: Final = "ingest-infor-poller"
PROCESSORS: Final = "processors"
SINKS_INFOR: Final = "sinks-infor"
SINKS_PRESTASHOP: Final = "sinks-prestashop"

_GROUP_OF: Final = {
    SANDBOX_PRESTASHOP: "sandboxes",
    SANDBOX_INFOR: "sandboxes",
    INGEST_WEBHOOKS: "ingest",
    INGEST_POLLER: "ingest",
    INGEST_INFOR_EVENTS: "ingest",
    INGEST_INFOR_POLLER: "ingest",
    PROCESSORS: "stages",
    SINKS_INFOR: "stages",
    SINKS_PRESTASHOP: "stages",
}
"""Services that do not need each other start together: the sandboxes, then the ingest services (which
call them), then the processors and sinks (the sinks write the sandboxes, read what ingest produced)."""

ALL_SERVICES: Final = (
    SANDBOX_PRESTASHOP,
    SANDBOX_INFOR,
    INGEST_WEBHOOKS,
    INGEST_POLLER,
    INGEST_INFOR_EVENTS,
    INGEST_INFOR_POLLER,
    PROCESSORS,
    SINKS_INFOR,
    SINKS_PRESTASHOP,
)
"""Every service :class:`PsinforStack` can run, in the order they are started (consumers after
producers, the sandboxes first since every other service calls them)."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS considers free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


# -------------------------------------------------------------------------------- generic stack


@dataclass(frozen=True)
class Service:
    """One process of a stack."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    """Added to a clean environment (the parent's ``PSINFOR_*`` variables are not inherited)."""
    health_url: str | None = None
    """Polled until it answers 200; None: started is ready."""
    metrics_url: str | None = None
    """Where its Prometheus metrics are served, if anywhere."""
    ready_timeout_s: float = 120.0
    stop_timeout_s: float = 25.0
    group: str = ""
    """Consecutive services of one non-empty group start together (and stop together); a service
    without a group starts once everything before it is ready."""


class StackError(RuntimeError):
    """A service did not start, died, or its health URL never answered."""


@dataclass
class _Running:
    service: Service
    process: subprocess.Popen[bytes]
    lines: deque[str]
    reader: threading.Thread


class Stack:
    """Runs :class:`Service` processes in order and stops them in reverse order (see the module docstring)."""

    def __init__(self, services: Sequence[Service], log_file: Path, *, keep_lines: int = 200_000) -> None:
        names = [service.name for service in services]
        if len(set(names)) != len(names):
            raise ValueError(f"service names must be unique: {names}")
        self.services = list(services)
        self.log_file = log_file
        self._keep_lines = keep_lines
        self._running: dict[str, _Running] = {}
        self._log: IO[str] | None = None
        self._log_lock = threading.Lock()

    # ------------------------------------------------------------------------------ life cycle

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start every service in order, each group ready before the next starts; StackError otherwise."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_file.open("a", encoding="utf-8")
        for group in _groups(self.services):
            began = time.monotonic()
            for service in group:
                self._spawn(service)
            for service in group:
                self._wait_ready(service)
                self._note("stack", f"{service.name} ready after {time.monotonic() - began:.1f}s")

    def stop(self) -> None:
        """Stop the running services in reverse order, group by group (SIGTERM, then SIGKILL after the
        grace period)."""
        for group in reversed(_groups(self.services)):
            stopping = [self._running.pop(s.name) for s in group if s.name in self._running]
            for running in stopping:
                if running.process.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        running.process.send_signal(signal.SIGTERM)
            for running in stopping:
                name, process = running.service.name, running.process
                try:
                    process.wait(timeout=running.service.stop_timeout_s)
                except subprocess.TimeoutExpired:
                    grace = running.service.stop_timeout_s
                    self._note("stack", f"{name} did not stop in {grace:g}s: SIGKILL")
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=10)
                running.reader.join(timeout=5)
                self._note("stack", f"{name} stopped (exit {process.returncode})")
        if self._log is not None:
            self._log.close()
            self._log = None

    def _spawn(self, service: Service) -> None:
        env = {key: value for key, value in os.environ.items() if not key.startswith("PSINFOR_")}
        env.update(service.env)
        env["PYTHONUNBUFFERED"] = "1"
        process = subprocess.Popen(
            service.argv,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a SIGKILL takes its children too
        )
        lines: deque[str] = deque(maxlen=self._keep_lines)
        reader = threading.Thread(
            target=self._stream, args=(service.name, process, lines), name=f"log-{service.name}", daemon=True
        )
        reader.start()
        self._running[service.name] = _Running(service, process, lines, reader)

    def _stream(self, name: str, process: subprocess.Popen[bytes], lines: deque[str]) -> None:
        assert process.stdout is not None
        with process.stdout:
            for raw in process.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                lines.append(line)
                self._note(name, line)

    def _note(self, name: str, line: str) -> None:
        with self._log_lock:
            if self._log is not None:
                self._log.write(f"{name:<28} | {line}\n")
                self._log.flush()

    def _wait_ready(self, service: Service) -> None:
        running = self._running[service.name]
        if service.health_url is None:
            return
        deadline = time.monotonic() + service.ready_timeout_s
        last = "no answer yet"
        with httpx.Client(timeout=2.0) as http:
            while time.monotonic() < deadline:
                if running.process.poll() is not None:
                    raise StackError(
                        f"{service.name} exited with {running.process.returncode} while starting:\n"
                        + self.tail(service.name)
                    )
                try:
                    answer = http.get(service.health_url)
                    if answer.status_code == 200:
                        return
                    last = f"{answer.status_code} {answer.text[:200]}"
                except httpx.HTTPError as exc:
                    last = f"{type(exc).__name__}: {exc}"
                time.sleep(0.25)
        raise StackError(
            f"{service.name}: {service.health_url} not healthy within {service.ready_timeout_s:g}s "
            f"({last}):\n" + self.tail(service.name)
        )

    # ------------------------------------------------------------------------------- inspection

    def check_alive(self) -> None:
        """StackError naming every service that has exited (with the end of its log)."""
        dead = [running for running in self._running.values() if running.process.poll() is not None]
        if dead:
            raise StackError(
                "; ".join(
                    f"{r.service.name} exited with {r.process.returncode}:\n{self.tail(r.service.name)}"
                    for r in dead
                )
            )

    def lines(self, name: str) -> list[str]:
        """Every line ``name`` wrote so far (the newest ``keep_lines``)."""
        return list(self._running[name].lines)

    def tail(self, name: str, count: int = 40) -> str:
        """The last ``count`` lines of ``name``'s output."""
        return "\n".join(self.lines(name)[-count:])

    def records(self, name: str, message: str | None = None) -> list[dict[str, Any]]:
        """The JSON log records of ``name`` (optionally only those with this ``message``)."""
        found = []
        for line in self.lines(name):
            if not line.startswith("{"):
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and (message is None or record.get("message") == message):
                found.append(record)
        return found

    def metrics(self, name: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """The service's current Prometheus samples: (sample name, sorted labels) → value."""
        url = self._running[name].service.metrics_url
        if url is None:
            raise ValueError(f"{name} serves no metrics")
        text = httpx.get(url, timeout=5.0).text
        samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return samples


def _groups(services: Sequence[Service]) -> list[list[Service]]:
    """``services`` cut into start groups (see :attr:`Service.group`), in order."""
    groups: list[list[Service]] = []
    for service in services:
        if groups and service.group and groups[-1][0].group == service.group:
            groups[-1].append(service)
        else:
            groups.append([service])
    return groups


# ------------------------------------------------------------------------------- psinfor's stack


@dataclass(frozen=True)
class StackConfig:
    """What a psinfor stack runs against and how big its sandboxes are."""

    kafka_bootstrap: str
    registry_url: str
    work_dir: Path
    flows: tuple[str, ...] = (
        "prestashop_customers",
        "prestashop_products",
        "infor_customers",
        "infor_items",
    )
    """Processor flows (``psinfor process --flows``)."""
    infor_sinks: tuple[str, ...] = ("infor-customers",)
    prestashop_sinks: tuple[str, ...] = ("prestashop-customers", "prestashop-products")
    shop_products: int = 40
    shop_customers: int = 20
    shop_orders: int = 0
    infor_items: int = 60
    infor_customers: int = 5
    infor_poll_feeds: str = "items"
    """MI poller feeds when ``ingest-infor-poller`` runs (not customers next to the IMS push: the BOD's
    variationID and the MI record's LMTS are not one version sequence)."""
    log_level: str = "INFO"
    extra_env: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Service name → further variables (tests tune intervals and timeouts this way)."""


class PsinforStack:
    """psinfor's services, wired together for one test (see the module docstring)."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.run_id = uuid.uuid4().hex[:8]
        self.prefix = f"stack.{self.run_id}."
        self.work_dir = config.work_dir
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.ports: dict[str, int] = defaultdict(free_port)
        self.ws_key = secrets.token_hex(16).upper()
        self.webhook_secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        self.shop_key = f"shop{self.run_id}"
        self.ims_token = secrets.token_urlsafe(24)
        self.ionapi_path = self.work_dir / "sandbox.ionapi"
        self.cono = "100"

    # ------------------------------------------------------------------------------------ names

    def topic(self, name: str) -> str:
        """The actual name of catalogue topic ``name`` in this stack."""
        return self.prefix + name

    def url(self, service: str) -> str:
        """``http://127.0.0.1:<port>`` of a service."""
        return f"http://127.0.0.1:{self.ports[service]}"

    @property
    def prestashop_url(self) -> str:
        """The shop's root URL (webservice at ``/api/``, admin API at ``/_sandbox/``)."""
        return self.url(SANDBOX_PRESTASHOP)

    @property
    def infor_url(self) -> str:
        """The Infor sandbox's root URL (admin API at ``/_sandbox/``)."""
        return self.url(SANDBOX_INFOR)

    # --------------------------------------------------------------------------------- topics

    def prepare_topics(self) -> None:
        """Create this stack's topics and register their schemas (idempotent)."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("PSINFOR_")}
        env.update(self._env())
        commands = [("topics", "apply"), ("schemas", "register")]
        started = [
            subprocess.Popen(
                (*PSINFOR, *command, "--prefix", self.prefix),
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for command in commands
        ]
        for command, process in zip(commands, started, strict=True):
            output, _ = process.communicate(timeout=180)
            if process.returncode != 0:
                what = " ".join(command)
                raise StackError(f"{what} failed ({process.returncode}): {output}")

    # ------------------------------------------------------------------------------- services

    def services(self, names: Sequence[str]) -> list[Service]:
        """The :class:`Service` of each name in ``names`` (any of :data:`ALL_SERVICES`), in start order."""
        unknown = set(names) - set(ALL_SERVICES)
        if unknown:
            raise ValueError(f"unknown services {sorted(unknown)}; known: {', '.join(ALL_SERVICES)}")
        builders: dict[str, Callable[[], Service]] = {
            SANDBOX_PRESTASHOP: self._sandbox_prestashop,
            SANDBOX_INFOR: self._sandbox_infor,
            INGEST_WEBHOOKS: self._webhooks,
            INGEST_POLLER: self._poller,
            INGEST_INFOR_EVENTS: self._infor_events,
            INGEST_INFOR_POLLER: self._infor_poller,
            PROCESSORS: self._processors,
            SINKS_INFOR: lambda: self._sinks(SINKS_INFOR, self.config.infor_sinks),
            SINKS_PRESTASHOP: lambda: self._sinks(SINKS_PRESTASHOP, self.config.prestashop_sinks),
        }
        chosen = [name for name in ALL_SERVICES if name in names]
        built = []
        for name in chosen:
            service = builders[name]()
            extra = self.config.extra_env.get(name, {})
            built.append(replace(service, env={**service.env, **extra}, group=_GROUP_OF[name]))
        return built

    @contextlib.contextmanager
    def run(self, names: Sequence[str] = ALL_SERVICES) -> Iterator[Stack]:
        """Topics prepared, then the named services running until the block ends (stopped even on failure)."""
        self.prepare_topics()
        with Stack(self.services(names), self.work_dir / "stack.log") as stack:
            yield stack

    def _env(self, **values: str) -> dict[str, str]:
        return {
            "PSINFOR_KAFKA__BOOTSTRAP_SERVERS": self.config.kafka_bootstrap,
            "PSINFOR_REGISTRY__URL": self.config.registry_url,
            "PSINFOR_SERVICE__LOG_FORMAT": "json",
            "PSINFOR_SERVICE__LOG_LEVEL": self.config.log_level,
            **values,
        }

    def _stage_env(self, name: str, **values: str) -> dict[str, str]:
        """Settings of a pipeline stage: its health port, the shop and the Infor tenant."""
        return self._env(
            PSINFOR_SERVICE__HTTP_PORT=str(self.ports[name]),
            PSINFOR_PRESTASHOP__BASE_URL=self.prestashop_url,
            PSINFOR_PRESTASHOP__WS_KEY=self.ws_key,
            PSINFOR_INFOR__IONAPI_PATH=str(self.ionapi_path),
            PSINFOR_INFOR__CONO=self.cono,
            PSINFOR_SERVICE__COMMIT_INTERVAL_S="0.5",
            **values,
        )

    def _stage(self, name: str, argv: Sequence[str], env: Mapping[str, str]) -> Service:
        base = self.url(name)
        return Service(name, tuple(argv), env, f"{base}/readyz", f"{base}/metrics")

    def _sandbox_prestashop(self) -> Service:
        config = self.config
        receiver = f"{self.url(INGEST_WEBHOOKS)}/webhooks/prestashop/{self.shop_key}"
        argv = (
            *PSINFOR,
            "sandbox",
            "prestashop",
            "--port",
            str(self.ports[SANDBOX_PRESTASHOP]),
            "--ws-key",
            self.ws_key,
            "--products",
            str(config.shop_products),
            "--customers",
            str(config.shop_customers),
            "--orders",
            str(config.shop_orders),
            "--webhook-url",
            receiver,
            "--webhook-secret",
            self.webhook_secret,
        )
        return Service(SANDBOX_PRESTASHOP, argv, self._env(), f"{self.prestashop_url}/_sandbox/info")

    def _sandbox_infor(self) -> Service:
        config = self.config
        argv = (
            *PSINFOR,
            "sandbox",
            "infor",
            "--port",
            str(self.ports[SANDBOX_INFOR]),
            "--ionapi-out",
            str(self.ionapi_path),
            "--items",
            str(config.infor_items),
            "--ims-push-url",
            f"{self.url(INGEST_INFOR_EVENTS)}/infor/ims/service/v3/multipartMessage",
            "--ims-push-token",
            self.ims_token,
        )
        return Service(SANDBOX_INFOR, argv, self._env(), f"{self.infor_url}/_sandbox/ionapi")

    def _webhooks(self) -> Service:
        env = self._stage_env(
            INGEST_WEBHOOKS,
            PSINFOR_WEBHOOKS__SECRETS=self.webhook_secret,
            PSINFOR_WEBHOOKS__SHOP_KEYS=self.shop_key,
            PSINFOR_WEBHOOKS__TOPIC_PREFIX=self.prefix,
        )
        return self._stage(INGEST_WEBHOOKS, (*PSINFOR, "ingest", "prestashop-webhooks"), env)

    def _poller(self) -> Service:
        env = self._stage_env(
            INGEST_POLLER,
            PSINFOR_POLLER__TOPIC_PREFIX=self.prefix,
            PSINFOR_POLLER__GROUP_ID=f"{self.prefix}poller",
            PSINFOR_POLLER__INTERVAL_S="2",
        )
        return self._stage(INGEST_POLLER, (*PSINFOR, "ingest", "prestashop-poller"), env)

    def _infor_events(self) -> Service:
        env = self._stage_env(
            INGEST_INFOR_EVENTS,
            PSINFOR_INFOR_EVENTS__TOKENS=self.ims_token,
            PSINFOR_INFOR_EVENTS__TOPIC_PREFIX=self.prefix,
        )
        return self._stage(INGEST_INFOR_EVENTS, (*PSINFOR, "ingest", "infor-events"), env)

    def _infor_poller(self) -> Service:
        env = self._stage_env(
            INGEST_INFOR_POLLER,
            PSINFOR_INFOR_EVENTS__TOPIC_PREFIX=self.prefix,
            PSINFOR_INFOR_EVENTS__POLL_FEEDS=self.config.infor_poll_feeds,
            PSINFOR_INFOR_EVENTS__POLL_INTERVAL_S="2",
        )
        return self._stage(INGEST_INFOR_POLLER, (*PSINFOR, "ingest", "infor-poller"), env)

    def _processors(self) -> Service:
        mapping = [
            argument
            for topic in load_catalogue().topics
            for argument in ("--topic", f"{topic.name}={self.topic(topic.name)}")
        ]
        argv = (
            *PSINFOR,
            "process",
            "--flows",
            ",".join(self.config.flows),
            "--app-id",
            f"{self.prefix}processors",
            "--datadir",
            str(self.work_dir / "processors-data"),
            "--take-within",
            "0.05",
            *mapping,
        )
        return self._stage(PROCESSORS, argv, self._stage_env(PROCESSORS))

    def _sinks(self, name: str, sinks: Sequence[str]) -> Service:
        argv = (*PSINFOR, "sink", "--sinks", ",".join(sinks), "--group-prefix", f"{self.prefix}sink-")
        env = self._stage_env(name, PSINFOR_SINKS__TOPIC_PREFIX=self.prefix)
        return self._stage(name, argv, env)
