"""The supervisor on real child processes (tiny Python scripts, no network): tiers, restarts, stop order.

Health is answered by an injected prober (every running service is healthy), so these tests exercise
process handling only: start order, output prefixing, restart with backoff after a crash, a failed
task failing the start, a reload on a file change, SIGKILL for a child that ignores SIGTERM, and that
nothing (not even a grandchild) outlives :meth:`Supervisor.stop`.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest

from devstack.services import ExitCheck, HealthCheck, HttpCheck, ServiceKind, ServiceSpec
from devstack.supervisor import (
    Backoff,
    StackStartError,
    State,
    Supervisor,
    colour_for,
    format_log_line,
)

FAST = Backoff(initial_s=0.1, factor=2.0, max_s=0.4, reset_after_s=60.0)


def always_healthy(check: HealthCheck) -> bool:
    return True


def service(
    name: str,
    code: str,
    *,
    depends_on: tuple[str, ...] = (),
    kind: ServiceKind = "service",
    reload_on: tuple[Path, ...] = (),
    stop_timeout_s: float = 5.0,
) -> ServiceSpec:
    return ServiceSpec(
        name=name,
        argv=(sys.executable, "-c", code),
        health=ExitCheck() if kind == "task" else HttpCheck(f"http://127.0.0.1:9/{name}"),
        group="test",
        kind=kind,
        depends_on=depends_on,
        reload_on=reload_on,
        stop_timeout_s=stop_timeout_s,
    )


SLEEP = "import time; print('up', flush=True); time.sleep(60)"


class Lines:
    """A thread-safe ``emit`` that keeps every line."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, line: str) -> None:
        with self._lock:
            self._lines.append(line)

    def all(self) -> list[str]:
        with self._lock:
            return list(self._lines)

    def index(self, fragment: str) -> int:
        return next(i for i, line in enumerate(self.all()) if fragment in line)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers signal 0; look at its state.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


def wait_for(predicate: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.mark.timeout(30)
def test_tiers_start_in_order_lines_are_prefixed_and_stop_runs_in_reverse(tmp_path: Path) -> None:
    lines = Lines()
    specs = [
        service("base", SLEEP),
        service("setup", "print('configured', flush=True)", depends_on=("base",), kind="task"),
        service("worker-a", SLEEP, depends_on=("setup",)),
        service("worker-b", SLEEP, depends_on=("setup",)),
    ]
    supervisor = Supervisor(specs, emit=lines, prober=always_healthy, backoff=FAST, logs_dir=tmp_path)
    with supervisor:
        supervisor.start(timeout_s=20)
        states = {s.name: s.state for s in supervisor.status()}
        assert states == {
            "base": State.HEALTHY,
            "setup": State.DONE,
            "worker-a": State.HEALTHY,
            "worker-b": State.HEALTHY,
        }
        pids = supervisor.pids()
        assert set(pids) == {"base", "worker-a", "worker-b"}
    records = supervisor.stop()
    assert lines.index("starting base") < lines.index("starting setup") < lines.index("starting worker-a")
    assert "[setup]    configured" in lines.all()
    assert (tmp_path / "setup.log").read_text() == "configured\n"
    stopped = [record.name for record in records]
    assert set(stopped[:2]) == {"worker-a", "worker-b"}
    assert stopped[2:] == ["base"]
    assert records[0].stopped_at <= records[2].stopped_at
    assert all(record.exit_code == -15 and not record.forced for record in records)
    assert not any(alive(pid) for pid in pids.values())
    assert {s.state for s in supervisor.status()} == {State.STOPPED, State.DONE}


@pytest.mark.timeout(30)
def test_a_crashed_service_is_restarted_after_its_backoff(tmp_path: Path) -> None:
    marker = tmp_path / "crashed-once"
    # First run: healthy for a moment, then crashes. Every later run stays up.
    code = (
        "import pathlib, sys, time\n"
        f"marker = pathlib.Path({str(marker)!r})\n"
        "if not marker.exists():\n"
        "    marker.write_text('x'); time.sleep(1.0); print('crashing', flush=True); sys.exit(3)\n"
        "print('second life', flush=True); time.sleep(60)\n"
    )
    lines = Lines()
    supervisor = Supervisor([service("flaky", code)], emit=lines, prober=always_healthy, backoff=FAST)
    with supervisor:
        supervisor.start(timeout_s=20)
        first_pid = supervisor.pids()["flaky"]
        wait_for(
            lambda: supervisor.status()[0].restarts == 1 and supervisor.status()[0].state is State.HEALTHY
        )
        assert supervisor.pids()["flaky"] != first_pid
        wait_for(lambda: any(line.endswith("second life") for line in lines.all()))
    assert any("flaky exited with status 3; restarting in 0.1 s" in line for line in lines.all())


def test_backoff_doubles_up_to_its_cap_and_resets_after_a_long_run() -> None:
    backoff = Backoff(initial_s=1.0, factor=2.0, max_s=30.0, reset_after_s=60.0)
    assert [backoff.delay(attempt) for attempt in range(7)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    # Crash after crash the waits grow; a crash after a long healthy run starts from the first wait.
    attempt = 0
    waits = []
    for _ in range(4):
        wait, attempt = backoff.after_crash(attempt, ran_for_s=5.0)
        waits.append(wait)
    assert waits == [1.0, 2.0, 4.0, 8.0]
    assert backoff.after_crash(attempt, ran_for_s=61.0) == (1.0, 1)
    assert backoff.delay(10_000) == 30.0
    with pytest.raises(ValueError, match="attempt"):
        backoff.delay(-1)


@pytest.mark.timeout(30)
def test_a_failing_task_fails_the_start_with_its_output_and_stops_what_was_started() -> None:
    lines = Lines()
    specs = [
        service("base", SLEEP),
        service(
            "migrate",
            "print('cannot reach the broker', flush=True); raise SystemExit(4)",
            depends_on=("base",),
            kind="task",
        ),
        service("late", SLEEP, depends_on=("migrate",)),
    ]
    supervisor = Supervisor(specs, emit=lines, prober=always_healthy, backoff=FAST)
    with pytest.raises(StackStartError) as failure:
        supervisor.start(timeout_s=20)
    assert failure.value.service == "migrate"
    assert "status 4" in failure.value.reason
    assert failure.value.tail == ["cannot reach the broker"]
    states = {s.name: s.state for s in supervisor.status()}
    assert states == {"base": State.STOPPED, "migrate": State.FAILED, "late": State.PENDING}
    assert not any("starting late" in line for line in lines.all())


@pytest.mark.timeout(30)
def test_a_service_that_keeps_crashing_while_starting_fails_the_start() -> None:
    supervisor = Supervisor(
        [service("broken", "print('bad flag', flush=True); raise SystemExit(1)")],
        emit=Lines(),
        prober=lambda check: False,
        backoff=FAST,
        start_attempts=3,
    )
    with pytest.raises(StackStartError) as failure:
        supervisor.start(timeout_s=20)
    assert failure.value.reason == "exited 3 times while starting (last status 1)"
    assert failure.value.tail == ["bad flag", "bad flag", "bad flag"]


@pytest.mark.timeout(30)
def test_exit_status_2_is_a_configuration_error_and_is_not_retried() -> None:
    supervisor = Supervisor(
        [service("misconfigured", "print('PSINFOR_X is required', flush=True); raise SystemExit(2)")],
        emit=Lines(),
        prober=lambda check: False,
        backoff=FAST,
    )
    with pytest.raises(StackStartError, match="configuration error"):
        supervisor.start(timeout_s=20)
    assert supervisor.status()[0].restarts == 0


@pytest.mark.timeout(30)
def test_changing_a_watched_file_restarts_the_services_that_read_it(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("case: keep\n")
    specs = [service("reader", SLEEP, reload_on=(rules,)), service("bystander", SLEEP)]
    lines = Lines()
    supervisor = Supervisor(specs, emit=lines, prober=always_healthy, backoff=FAST)
    with supervisor:
        supervisor.start(timeout_s=20)
        before = supervisor.pids()
        time.sleep(0.05)
        rules.write_text("case: upper\n")
        wait_for(lambda: supervisor.pids().get("reader") not in (None, before["reader"]))
        wait_for(lambda: supervisor.status()[0].state is State.HEALTHY)
        assert supervisor.pids()["bystander"] == before["bystander"]
        assert not alive(before["reader"])
    assert any("restarting reader: rules.yaml changed" in line for line in lines.all())


@pytest.mark.timeout(30)
def test_a_child_ignoring_sigterm_is_killed_at_its_stop_timeout_and_its_grandchild_goes_too(
    tmp_path: Path,
) -> None:
    pid_file = tmp_path / "grandchild.pid"
    code = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "print('stubborn', flush=True); time.sleep(60)\n"
    )
    supervisor = Supervisor(
        [service("stubborn", code, stop_timeout_s=0.5)], emit=Lines(), prober=always_healthy, backoff=FAST
    )
    supervisor.start(timeout_s=20)
    wait_for(pid_file.exists)
    wait_for(lambda: pid_file.read_text().strip() != "")
    grandchild = int(pid_file.read_text())
    child = supervisor.pids()["stubborn"]
    started = time.monotonic()
    records = supervisor.stop(timeout_s=10)
    assert time.monotonic() - started < 8
    assert [(r.name, r.forced, r.exit_code) for r in records] == [("stubborn", True, -9)]
    wait_for(lambda: not alive(grandchild), timeout_s=5)
    assert not alive(child)


def test_log_lines_carry_the_service_name_padded_to_the_longest_and_optionally_a_colour() -> None:
    assert format_log_line("kafka", "ready\n", width=8, colour=None) == "[kafka]    ready"
    assert format_log_line("processors", "x", width=8, colour=None) == "[processors] x"
    coloured = format_log_line("kafka", "ready", width=5, colour=colour_for(0))
    assert coloured == "\x1b[36m[kafka]\x1b[0m ready"
    assert colour_for(0) != colour_for(1)
    assert colour_for(12) == colour_for(0)
