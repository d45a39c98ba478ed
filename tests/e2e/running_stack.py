"""One ``psinfor dev up`` for the whole e2e session, and what the tests use to drive and observe it.

:func:`dev_up` starts ``python -m cli.main dev up`` as a newcomer runs it, as a subprocess attached to
the session broker and registry (``--kafka-bootstrap``/``--registry-url``) under a topic prefix of its
own, with the sinks as one process per target (``--sinks-per-target``, as tests/integration/
test_dev_up.py does, to spare a shared machine); everything else is dev up's default (150 shop products,
150 Infor items, 200 shop customers, the stack's rules). It returns once ``stack.json`` says every
service is healthy, and on exit sends Ctrl-C (SIGINT) and waits for the ordered stop.

:class:`RunningStack` is the tests' handle: the sandboxes' admin APIs (how shoppers, the back office and
the warehouse act, and how a test reads what each system holds), the shared catalogue, the topics
(:class:`~tests.e2e.topic_reader.TopicReader`), each stage's ``/metrics`` and log, M3's MI API through
the ION API gateway (as an M3 user would change master data), the rules file and ``psinfor`` commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, TypeVar

import httpx
from prometheus_client.parser import text_string_to_metric_families

from connectors.infor.gateway import open_gateway
from connectors.infor.ionapi import load_ionapi
from devstack.sandbox_admin import InforSandboxAdmin, JsonObject, PrestaShopSandboxAdmin
from devstack.services import INFOR_CONO, INFOR_DIVI
from devstack.setup import Catalogue, CatalogueEntry
from devstack.stack import StackEndpoints
from pipeline.settings import env_name
from tests.e2e.topic_reader import TopicReader

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 300.0
STACK_START_ALLOWANCE_S = START_TIMEOUT_S
"""Added to every e2e test's timeout: the first test to run starts the session's stack."""
STOP_TIMEOUT_S = 90.0

T = TypeVar("T")


class DevUpOutput:
    """The lines ``dev up`` prints (every service's, prefixed, and its own), collected by a thread."""

    def __init__(self, stream: IO[str]) -> None:
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, args=(stream,), name="dev-up-output", daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in iter(stream.readline, ""):
            with self._lock:
                self._lines.append(line.rstrip("\n"))

    def lines(self) -> list[str]:
        """Every line so far."""
        with self._lock:
            return list(self._lines)

    def tail(self, count: int = 40) -> str:
        """The last ``count`` lines, for failure messages."""
        return "\n".join(self.lines()[-count:])

    def supervisor_lines(self) -> list[str]:
        """The supervisor's own lines (``[dev-up] ...``)."""
        return [line for line in self.lines() if line.startswith("[dev-up]")]

    def join(self) -> None:
        """Wait for the stream to end (bounded)."""
        self._thread.join(10)


class RunningStack:
    """A running ``dev up`` (see the module docstring)."""

    def __init__(
        self, process: subprocess.Popen[str], output: DevUpOutput, endpoints: StackEndpoints
    ) -> None:
        self.process = process
        self.output = output
        self.endpoints = endpoints
        self._shop_http = httpx.Client(base_url=endpoints.prestashop_url, timeout=30.0)
        self._infor_http = httpx.Client(base_url=endpoints.infor_url, timeout=30.0)
        self._probe = httpx.Client(timeout=10.0)
        self.shop = PrestaShopSandboxAdmin(self._shop_http, ws_key=endpoints.ws_key())
        self.infor = InforSandboxAdmin(self._infor_http)
        self.catalogue = Catalogue.load(Path(endpoints.catalogue_path))
        self.topics = TopicReader(endpoints.bootstrap, endpoints.registry_url, endpoints.topic_prefix)

    def close(self) -> None:
        """Release every client."""
        for close in (self._shop_http.close, self._infor_http.close, self._probe.close, self.topics.close):
            close()

    # -- the catalogue ---------------------------------------------------------------------------

    def sellable_units(self) -> list[CatalogueEntry]:
        """Shop units M3 sells (products without combinations, and combinations)."""
        return [entry for entry in self.catalogue.matched if entry.sellable]

    # -- waiting ---------------------------------------------------------------------------------

    def wait_until(
        self,
        found: Callable[[], T | None],
        timeout_s: float,
        what: str,
        *,
        interval_s: float = 1.0,
        still: Callable[[], object] | None = None,
    ) -> T:
        """Poll ``found`` until it returns something truthy (returned); AssertionError after ``timeout_s``.

        ``still``, when given, says what does not hold yet; its answer heads the error, so a timeout
        names the missing fact and not only the stack's last log lines.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            self.assert_alive()
            value = found()
            if value:
                return value
            if time.monotonic() > deadline:
                missing = "" if still is None else f"; still: {still()!r}"
                tail = self.output.tail()
                raise AssertionError(
                    f"{what}: not within {timeout_s:.0f} s{missing}; dev up's last lines:\n{tail}"
                )
            time.sleep(interval_s)

    def assert_alive(self) -> None:
        """AssertionError when ``dev up`` is no longer running."""
        code = self.process.poll()
        if code is not None:
            raise AssertionError(f"dev up exited with {code}:\n{self.output.tail()}")

    def crashes(self) -> list[str]:
        """Supervisor lines about a service that exited or stopped answering (restarts it did not plan)."""
        return [
            line
            for line in self.output.supervisor_lines()
            if " exited with status " in line or "/healthz failed" in line
        ]

    # -- stages ----------------------------------------------------------------------------------

    def service_of_sink(self, sink: str) -> str:
        """The service (process) running ``sink``."""
        for service, sinks in self.endpoints.sinks_by_service.items():
            if sink in sinks:
                return service
        raise AssertionError(f"no service runs sink {sink}")

    def metric(self, service: str, name: str, **labels: str) -> float:
        """The sum of the samples named ``name`` of ``service`` whose labels include ``labels``."""
        total = 0.0
        for sample_name, sample_labels, value in self._samples(service):
            if sample_name == name and all(sample_labels.get(k) == v for k, v in labels.items()):
                total += value
        return total

    def outcomes(self, service: str, stage: str) -> dict[str, float]:
        """``psinfor_messages_total`` of one sink stage by outcome."""
        counts: dict[str, float] = {}
        for sample_name, labels, value in self._samples(service):
            if sample_name == "psinfor_messages_total" and labels.get("stage") == stage:
                counts[labels["outcome"]] = counts.get(labels["outcome"], 0.0) + value
        return counts

    def _samples(self, service: str) -> list[tuple[str, Mapping[str, str], float]]:
        response = self._probe.get(f"{self.endpoints.services[service]}/metrics")
        response.raise_for_status()
        return [
            (sample.name, sample.labels, sample.value)
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
        ]

    def start_time(self, service: str) -> float | None:
        """The process's ``process_start_time_seconds``; None while it does not answer."""
        try:
            return self.metric(service, "process_start_time_seconds") or None
        except httpx.HTTPError:
            return None

    def ready(self, service: str) -> bool:
        """Whether the service answers ``/readyz`` with 2xx."""
        try:
            return self._probe.get(f"{self.endpoints.services[service]}/readyz").is_success
        except httpx.HTTPError:
            return False

    def log_lines(self, service: str) -> list[str]:
        """The service's log (``<logs>/<service>.log``)."""
        path = Path(self.endpoints.logs_dir) / f"{service}.log"
        return path.read_text(encoding="utf-8", errors="replace").splitlines()

    # -- the rules file ----------------------------------------------------------------------------

    def rules_text(self) -> str:
        """The rules file every processor and sink loaded."""
        return Path(self.endpoints.rules_path).read_text(encoding="utf-8")

    def deploy_rules(self, text: str, timeout_s: float = 180.0) -> float:
        """Write the rules and wait until every processor and sink restarted with them; the seconds taken."""
        reloaded = [name for name in self.endpoints.services if name.startswith(("processors", "sink"))]
        before = {name: self.start_time(name) for name in reloaded}
        started = time.monotonic()
        Path(self.endpoints.rules_path).write_text(text, encoding="utf-8")

        def restarted() -> bool:
            return all(
                (now := self.start_time(name)) is not None and now != before[name] and self.ready(name)
                for name in reloaded
            )

        self.wait_until(restarted, timeout_s, "the processors and sinks to restart with the new rules")
        return time.monotonic() - started

    # -- psinfor commands --------------------------------------------------------------------------

    def psinfor(self, *args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
        """``psinfor ARGS`` against this stack's cluster (as an operator runs it)."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("PSINFOR_")}
        env[env_name("kafka", "bootstrap_servers")] = self.endpoints.bootstrap
        env[env_name("registry", "url")] = self.endpoints.registry_url
        return subprocess.run(
            [sys.executable, "-m", "cli.main", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    # -- M3 through the ION API ---------------------------------------------------------------------

    def m3(self, program: str, transaction: str, fields: Mapping[str, str]) -> list[Mapping[str, str]]:
        """Run one MI transaction through the stack's ION API gateway (OAuth2 from its ``.ionapi``)."""

        async def call() -> list[Mapping[str, str]]:
            ionapi = Path(self.endpoints.ws_key_file).parent / "sandbox.ionapi"
            gateway = open_gateway(load_ionapi(ionapi))
            try:
                result = await gateway.mi(cono=INFOR_CONO, divi=INFOR_DIVI).execute(
                    program, transaction, fields
                )
                return list(result.records)
            finally:
                await gateway.aclose()

        return asyncio.run(call())

    # -- the sandboxes' tables -------------------------------------------------------------------------

    def m3_customers(self) -> list[JsonObject]:
        """Every M3 customer of the stack's company."""
        data: list[JsonObject] = self._infor_http.get("/_sandbox/customers").raise_for_status().json()
        return data

    def m3_deliveries(self) -> list[JsonObject]:
        """Every M3 delivery (with its tracking number ``ETRN``)."""
        data: list[JsonObject] = self._infor_http.get("/_sandbox/deliveries").raise_for_status().json()
        return data

    def step_warehouse(self, times: int) -> int:
        """Move every active M3 order ``times`` stages on now (the warehouse clock may be paused)."""
        response = self._infor_http.post("/_sandbox/warehouse/step", json={"times": times})
        return int(response.raise_for_status().json()["orders_changed"])

    def infor_faults(self, rule: JsonObject | None) -> None:
        """Add a gateway fault rule (``None``: remove every rule)."""
        if rule is None:
            self._infor_http.delete("/_sandbox/faults").raise_for_status()
        else:
            self._infor_http.post("/_sandbox/faults", json=rule).raise_for_status()

    def infor_gateway_stats(self) -> JsonObject:
        """The Infor gateway's counters (requests, statuses, faults fired)."""
        data: JsonObject = self._infor_http.get("/_sandbox/gateway/stats").raise_for_status().json()
        return data

    def shop_faults(self, rule: JsonObject | None) -> JsonObject:
        """Add a webservice fault rule (``None``: remove every rule)."""
        if rule is None:
            response = self._shop_http.delete("/_sandbox/faults")
        else:
            response = self._shop_http.post("/_sandbox/faults", json=rule)
        data: JsonObject = response.raise_for_status().json()
        return data

    def edit_shop_customer(self, customer_id: int, fields: Mapping[str, str]) -> JsonObject:
        """Edit a shop customer as the back office does (``date_upd`` moves, a webhook is sent)."""
        response = self._shop_http.patch(f"/_sandbox/customers/{customer_id}", json={"fields": dict(fields)})
        data: JsonObject = response.raise_for_status().json()
        return data

    def shop_state_flags(self) -> dict[int, tuple[str, bool, bool]]:
        """Order state id → (name, paid, shipped)."""
        flags: dict[int, tuple[str, bool, bool]] = {}
        for row in self.shop.rows("order_states"):
            name = row.get("name")
            text = str(next(iter(name.values()))) if isinstance(name, dict) else str(name)
            flags[int(row["id"])] = (text, str(row.get("paid")) == "1", str(row.get("shipped")) == "1")
        return flags


def _start_failure(process: subprocess.Popen[str], output: DevUpOutput, data_dir: Path) -> str:
    code = process.poll()
    state = f"exited with {code}" if code is not None else f"not healthy after {START_TIMEOUT_S:.0f} s"
    return f"dev up {state} (logs in {data_dir / 'logs'}):\n{output.tail(60)}"


@contextlib.contextmanager
def dev_up(kafka_bootstrap: str, registry_url: str, work_dir: Path) -> Iterator[RunningStack]:
    """``psinfor dev up`` on the session cluster under a unique topic prefix, until the block ends."""
    prefix = f"e2e.{uuid.uuid4().hex[:8]}."
    data_dir = work_dir / "stack"
    argv = [
        sys.executable, "-m", "cli.main", "dev", "up",
        "--data-dir", str(data_dir),
        "--kafka-bootstrap", kafka_bootstrap,
        "--registry-url", registry_url,
        "--topic-prefix", prefix,
        "--sinks-per-target",
        "--no-build",
        "--status-interval", "10",
        "--stop-timeout", "60",
    ]  # fmt: skip
    env = {key: value for key, value in os.environ.items() if not key.startswith("PSINFOR_")}
    started = time.monotonic()
    process = subprocess.Popen(
        argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    assert process.stdout is not None
    output = DevUpOutput(process.stdout)
    stack: RunningStack | None = None
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        endpoints = StackEndpoints.read(data_dir)
        while endpoints is None:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(_start_failure(process, output, data_dir))
            time.sleep(0.5)
            endpoints = StackEndpoints.read(data_dir)
        stack = RunningStack(process, output, endpoints)
        print(
            f"\ne2e: dev up healthy after {time.monotonic() - started:.1f} s "
            f"({len(endpoints.services)} stages, prefix {prefix}, logs in {endpoints.logs_dir})"
        )
        yield stack
    finally:
        if stack is not None:
            stack.close()
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        output.join()
        process.stdout.close()
        stopped = [line for line in output.supervisor_lines() if "processes stopped" in line]
        print(f"\ne2e: dev up exited with {process.returncode}; {stopped[-1] if stopped else output.tail(5)}")
