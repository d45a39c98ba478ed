"""Run the stack's services as child processes: start in tiers, watch, restart, stop in reverse.

::

    with Supervisor(build_services(plan), emit=console.log_line) as stack:
        stack.start()                 # returns once every tier is healthy (StackStartError if not)
        stack.status()                # one ServiceStatus per service
        ...                           # Ctrl-C in the caller
    # leaving the block stops everything: reverse tiers, SIGTERM, then SIGKILL at the time bound

One control thread owns every child: it starts them tier by tier, reaps exits, restarts a crashed
service after an exponential backoff (reset once it ran ``reset_after_s``), restarts a service whose
``/healthz`` keeps failing or whose ``reload_on`` file changed, and finally stops them all. Keeping
every ``fork`` on that one long-lived thread matters: each child asks the kernel for SIGTERM when the
thread that forked it ends (``PR_SET_PDEATHSIG``), so a supervisor killed with SIGKILL leaves no
orphans, and a caller's short-lived thread cannot take children down with it.

Each child runs in its own session (process group): Ctrl-C in the terminal reaches only the supervisor,
which then stops the children in order; signals go to the whole group, so a launcher's JVM goes too.
Every output line of a child is passed to ``emit`` prefixed with the service name (colourised on a
terminal) and appended to ``<logs_dir>/<service>.log``.

During start a service that exits is retried with backoff, at most ``start_attempts`` times in all
and within its tier's start timeout; exit status 2 (the CLI's "configuration error") fails the start
at once, and so does a task that exits non-zero. A failed start stops what was started and raises
:class:`StackStartError` with the failing service's last log lines.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import os
import queue
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Protocol

import httpx

from devstack.services import ExitCheck, HealthCheck, HttpCheck, KafkaCheck, ServiceSpec, start_tiers
from pipeline.errors import PipelineError

EXIT_CONFIG_ERROR = 2
"""The ``psinfor`` CLI's exit status for a configuration problem: retrying cannot help."""

_PR_SET_PDEATHSIG = 1
_TAIL_LINES = 40
_RESET = "\x1b[0m"
_COLOURS = (
    "\x1b[36m",
    "\x1b[33m",
    "\x1b[32m",
    "\x1b[35m",
    "\x1b[34m",
    "\x1b[31m",
    "\x1b[96m",
    "\x1b[93m",
    "\x1b[92m",
    "\x1b[95m",
    "\x1b[94m",
    "\x1b[91m",
)


class StackStartError(PipelineError):
    """The stack could not be started; ``service`` failed, ``tail`` holds its last output lines."""

    def __init__(self, service: str, reason: str, tail: Sequence[str] = ()) -> None:
        self.service = service
        self.reason = reason
        self.tail = list(tail)
        super().__init__(f"{service}: {reason}")


class State(enum.StrEnum):
    """Where a service is in its life."""

    PENDING = "pending"
    """Not started yet (its tier has not come)."""
    STARTING = "starting"
    """Running, not yet healthy."""
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    """Was healthy; its health check fails now (still running)."""
    DONE = "done"
    """A task that exited 0."""
    BACKOFF = "backoff"
    """Exited unexpectedly; waiting to be started again."""
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


UP_STATES = frozenset({State.HEALTHY, State.DONE})


@dataclass(frozen=True)
class Backoff:
    """Exponential restart delays: ``initial_s``, then times ``factor`` per restart, at most ``max_s``.

    A service that ran ``reset_after_s`` without exiting starts again from ``initial_s``.
    """

    initial_s: float = 1.0
    factor: float = 2.0
    max_s: float = 30.0
    reset_after_s: float = 60.0

    def delay(self, attempt: int) -> float:
        """The wait before restart number ``attempt`` (0 for the first restart after a clean run)."""
        if attempt < 0:
            raise ValueError("attempt must be >= 0")
        return min(self.max_s, self.initial_s * self.factor ** min(attempt, 64))

    def after_crash(self, attempt: int, ran_for_s: float) -> tuple[float, int]:
        """The wait before restarting a service that crashed after ``ran_for_s`` seconds, and the
        attempt number to pass next time (``attempt`` counts the crashes since the last long run)."""
        if ran_for_s >= self.reset_after_s:
            attempt = 0
        return self.delay(attempt), attempt + 1


@dataclass(frozen=True)
class ServiceStatus:
    """A snapshot of one service."""

    name: str
    group: str
    kind: str
    state: State
    pid: int | None
    restarts: int
    exit_code: int | None
    detail: str = ""
    """Why it is in this state (``exit 1, restart in 4.0 s``, ``readyz: 503``, ``rules changed``)."""


@dataclass(frozen=True)
class StopRecord:
    """How one process ended at shutdown: exit code, when (monotonic), whether it had to be killed."""

    name: str
    pid: int
    exit_code: int | None
    stopped_at: float
    forced: bool


class Prober(Protocol):
    """Answers whether a health check passes right now (must return within a few seconds)."""

    def __call__(self, check: HealthCheck) -> bool: ...


class NetworkProber:
    """The real checks: HTTP GET answering 2xx; a Kafka metadata request naming a broker."""

    def __init__(self, timeout_s: float = 2.0) -> None:
        self._http = httpx.Client(timeout=timeout_s)
        self._timeout = timeout_s

    def __call__(self, check: HealthCheck) -> bool:
        if isinstance(check, HttpCheck):
            try:
                return self._http.get(check.url).is_success
            except httpx.HTTPError:
                return False
        if isinstance(check, KafkaCheck):
            return kafka_answers(check.bootstrap, self._timeout)
        return False

    def close(self) -> None:
        """Release the HTTP connections."""
        self._http.close()


def kafka_answers(bootstrap: str, timeout_s: float) -> bool:
    """True when a metadata request to ``bootstrap`` names at least one broker within ``timeout_s``."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, "socket.timeout.ms": 1000})
    try:
        return bool(admin.list_topics(timeout=timeout_s).brokers)
    except KafkaException:
        return False


# -- log lines -------------------------------------------------------------------------------------


def colour_for(index: int) -> str:
    """The ANSI colour of the ``index``-th service (cycling through a fixed palette)."""
    return _COLOURS[index % len(_COLOURS)]


def format_log_line(name: str, line: str, *, width: int, colour: str | None) -> str:
    """``[name]`` padded to ``width`` + the line without its line break; coloured prefix if asked."""
    text = line.rstrip("\r\n")
    prefix = f"[{name}]"
    padding = " " * max(0, width + 2 - len(prefix))
    if colour:
        return f"{colour}{prefix}{_RESET}{padding} {text}"
    return f"{prefix}{padding} {text}"


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: SIGTERM when the forking thread (the control thread)
    # ends, so a supervisor killed hard leaves nothing behind. Linux only; harmless elsewhere.
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


# -- the supervisor --------------------------------------------------------------------------------


@dataclass
class _Service:
    spec: ServiceSpec
    tier: int
    colour: str | None
    state: State = State.PENDING
    popen: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    attempt: int = 0
    restart_at: float | None = None
    exit_code: int | None = None
    detail: str = ""
    liveness_failures: int = 0
    reload_pending: bool = False
    readers: list[threading.Thread] = field(default_factory=list)
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=_TAIL_LINES))


class _Phase(enum.Enum):
    IDLE = "idle"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class Supervisor:
    """Starts, watches and stops the processes of ``specs``; see the module docstring.

    ``emit`` receives every output line (already prefixed) and the supervisor's own messages; it is
    called from reader threads, so it must be thread-safe. ``base_env`` is every child's environment
    before its spec's ``env`` (default: this process's). ``prober`` answers health checks.
    """

    def __init__(
        self,
        specs: Sequence[ServiceSpec],
        *,
        emit: Callable[[str], None],
        logs_dir: Path | None = None,
        base_env: Mapping[str, str] | None = None,
        backoff: Backoff = Backoff(),
        prober: Prober | None = None,
        colour: bool = False,
        probe_interval_s: float = 2.0,
        liveness_failures_to_restart: int = 5,
        start_attempts: int = 3,
        cwd: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        tiers = start_tiers(specs)
        self._tiers = [[spec.name for spec in tier] for tier in tiers]
        self._services: dict[str, _Service] = {}
        for tier_index, tier in enumerate(tiers):
            for spec in tier:
                index = len(self._services)
                self._services[spec.name] = _Service(spec, tier_index, colour_for(index) if colour else None)
        self._order = [spec.name for spec in specs]
        self._width = max((len(name) for name in self._services), default=0)
        self._emit = emit
        self._logs_dir = logs_dir
        self._base_env = dict(os.environ if base_env is None else base_env)
        self._backoff = backoff
        self._own_prober = prober is None
        self._prober: Prober = prober if prober is not None else NetworkProber()
        self._probe_interval = probe_interval_s
        self._liveness_limit = liveness_failures_to_restart
        self._start_attempts = start_attempts
        self._cwd = cwd
        self._clock = clock
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._commands: queue.Queue[tuple[str, object]] = queue.Queue()
        self._phase = _Phase.IDLE
        self._tier_index = -1
        self._tier_deadline = 0.0
        self._error: StackStartError | None = None
        self._stop_records: list[StopRecord] = []
        self._stop_deadline_s = 60.0
        self._thread: threading.Thread | None = None
        self._probe_thread: threading.Thread | None = None
        self._probe_results: dict[str, tuple[bool | None, bool | None]] = {}
        self._probe_stop = threading.Event()
        self._probe_wake = threading.Event()
        self._mtimes: dict[Path, float | None] = {}

    # -- public API --------------------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        """Every service name, in declaration order."""
        return list(self._order)

    @property
    def tiers(self) -> list[list[str]]:
        """The names by start tier."""
        return [list(tier) for tier in self._tiers]

    def start(self, timeout_s: float | None = None) -> None:
        """Start every tier in order and return once all are healthy (tasks done).

        Raises StackStartError (after stopping what was started) when a service cannot be started,
        or when ``timeout_s`` (default: the sum of the tiers' start timeouts) passes first.
        """
        self.begin()
        if not self.wait_healthy(timeout_s):
            with self._lock:
                error = self._error
            if error is None:
                waiting = [s.name for s in self.status() if s.state not in UP_STATES]
                error = StackStartError(", ".join(waiting) or "stack", "not healthy in time")
                self._commands.put(("fail", error))
            self.stop()
            raise error

    def begin(self) -> None:
        """Start the control thread and the first tier; return at once (see :meth:`wait_healthy`)."""
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("the supervisor was already started")
            self._phase = _Phase.STARTING
            for path in {p for s in self._services.values() for p in s.spec.reload_on}:
                self._mtimes[path] = _mtime(path)
            self._thread = threading.Thread(target=self._control_loop, name="devstack-control", daemon=True)
            self._probe_thread = threading.Thread(target=self._probe_loop, name="devstack-probe", daemon=True)
        self._thread.start()
        self._probe_thread.start()

    def wait_healthy(self, timeout_s: float | None = None) -> bool:
        """Block until every service is up (True), or the start failed / ``timeout_s`` passed (False)."""
        if timeout_s is None:
            timeout_s = sum(
                max(s.spec.start_timeout_s for s in self._tier(i)) for i in range(len(self._tiers))
            )
        deadline = self._clock() + timeout_s
        with self._changed:
            while True:
                if self._error is not None or self._phase in (_Phase.STOPPING, _Phase.STOPPED):
                    return False
                if self._phase is _Phase.RUNNING and all(
                    s.state in UP_STATES for s in self._services.values()
                ):
                    return True
                remaining = deadline - self._clock()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, 0.5))

    @property
    def error(self) -> StackStartError | None:
        """Why the start failed, if it did."""
        with self._lock:
            return self._error

    def status(self) -> list[ServiceStatus]:
        """A snapshot of every service, in declaration order."""
        with self._lock:
            now = self._clock()
            out: list[ServiceStatus] = []
            for name in self._order:
                service = self._services[name]
                detail = service.detail
                if service.state is State.BACKOFF and service.restart_at is not None:
                    detail = f"{detail}, restart in {max(0.0, service.restart_at - now):.1f} s"
                out.append(
                    ServiceStatus(
                        name=name,
                        group=service.spec.group,
                        kind=service.spec.kind,
                        state=service.state,
                        pid=service.popen.pid if service.popen is not None else None,
                        restarts=service.restarts,
                        exit_code=service.exit_code,
                        detail=detail,
                    )
                )
            return out

    def tail(self, name: str) -> list[str]:
        """The last output lines of ``name``."""
        with self._lock:
            return list(self._services[name].tail)

    def pids(self) -> dict[str, int]:
        """The pid of every running child (its process group id too)."""
        with self._lock:
            return {
                name: service.popen.pid
                for name, service in self._services.items()
                if service.popen is not None and service.popen.poll() is None
            }

    def restart(self, name: str, reason: str = "restart asked") -> None:
        """Stop ``name`` (SIGTERM) and start it again at once, without backoff."""
        if name not in self._services:
            raise KeyError(name)
        self._commands.put(("restart", (name, reason)))

    def stop(self, timeout_s: float = 60.0) -> list[StopRecord]:
        """Stop everything in reverse tier order within ``timeout_s``; returns how each process ended.

        Idempotent; safe to call from any thread (including while a start is still in progress).
        """
        with self._lock:
            thread = self._thread
            self._stop_deadline_s = timeout_s
        if thread is None:
            with self._lock:
                self._phase = _Phase.STOPPED
            return []
        self._commands.put(("stop", None))
        thread.join(timeout_s + 15.0)
        self._probe_stop.set()
        self._probe_wake.set()
        if self._probe_thread is not None:
            self._probe_thread.join(10.0)
        if self._own_prober and isinstance(self._prober, NetworkProber):
            self._prober.close()
        with self._lock:
            return list(self._stop_records)

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- the control thread ------------------------------------------------------------------------

    def _tier(self, index: int) -> list[_Service]:
        return [self._services[name] for name in self._tiers[index]]

    def _say(self, message: str) -> None:
        self._emit(format_log_line("dev-up", message, width=self._width, colour=None))

    def _set(self, service: _Service, state: State, detail: str = "") -> None:
        with self._changed:
            service.state = state
            service.detail = detail
            self._changed.notify_all()

    def _control_loop(self) -> None:
        try:
            self._advance_start()
            while True:
                try:
                    command, argument = self._commands.get(timeout=0.2)
                except queue.Empty:
                    command, argument = "tick", None
                if command == "stop":
                    break
                if command == "fail" and isinstance(argument, StackStartError):
                    self._fail(argument)
                    break
                if command == "restart" and isinstance(argument, tuple):
                    self._request_restart(self._services[argument[0]], argument[1])
                self._tick()
                with self._lock:
                    failed = self._error is not None
                if failed:
                    break
        finally:
            self._stop_all()

    def _tick(self) -> None:
        now = self._clock()
        for service in self._services.values():
            self._reap(service, now)
        for service in self._services.values():
            if (
                service.state is State.BACKOFF
                and service.restart_at is not None
                and now >= service.restart_at
            ):
                self._spawn(service)
        self._apply_probes()
        self._watch_files()
        self._advance_start()

    def _advance_start(self) -> None:
        with self._lock:
            if self._phase is not _Phase.STARTING:
                return
            if self._tier_index >= 0:
                tier = self._tier(self._tier_index)
                if not all(s.state in UP_STATES for s in tier):
                    if self._clock() > self._tier_deadline:
                        late = next(s for s in tier if s.state not in UP_STATES)
                        self._fail(StackStartError(late.spec.name, "not healthy in time", list(late.tail)))
                    return
            if self._tier_index + 1 >= len(self._tiers):
                self._phase = _Phase.RUNNING
                self._changed.notify_all()
                return
            self._tier_index += 1
            tier = self._tier(self._tier_index)
            self._tier_deadline = self._clock() + max(s.spec.start_timeout_s for s in tier)
        self._say(f"starting {', '.join(s.spec.name for s in tier)}")
        for service in tier:
            self._spawn(service)

    def _fail(self, error: StackStartError) -> None:
        with self._changed:
            if self._error is None:
                self._error = error
            self._changed.notify_all()
        self._say(f"start failed: {error}")

    def _spawn(self, service: _Service) -> None:
        spec = service.spec
        env = {**self._base_env, **spec.env}
        try:
            popen = subprocess.Popen(
                spec.argv,
                env=env,
                cwd=self._cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        except OSError as exc:
            self._fail(StackStartError(spec.name, f"cannot start {spec.argv[0]}: {exc}"))
            return
        with self._changed:
            service.popen = popen
            service.started_at = self._clock()
            service.exit_code = None
            service.restart_at = None
            service.liveness_failures = 0
            service.state = State.STARTING
            service.detail = ""
            self._probe_results.pop(spec.name, None)
            self._changed.notify_all()
        self._probe_wake.set()
        log_file = self._open_log(spec.name)
        reader = threading.Thread(
            target=self._read_output,
            args=(service, popen.stdout, log_file),
            name=f"log-{spec.name}",
            daemon=True,
        )
        service.readers.append(reader)
        reader.start()

    def _open_log(self, name: str) -> IO[str] | None:
        if self._logs_dir is None:
            return None
        self._logs_dir.mkdir(parents=True, exist_ok=True)
        return (self._logs_dir / f"{name}.log").open("a", encoding="utf-8", errors="replace")

    def _read_output(self, service: _Service, stream: IO[bytes] | None, log_file: IO[str] | None) -> None:
        if stream is None:
            return
        try:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                with self._lock:
                    service.tail.append(line)
                if log_file is not None:
                    log_file.write(line + "\n")
                    log_file.flush()
                self._emit(format_log_line(service.spec.name, line, width=self._width, colour=service.colour))
        finally:
            stream.close()
            if log_file is not None:
                log_file.close()

    def _reap(self, service: _Service, now: float) -> None:
        popen = service.popen
        if popen is None or service.state in (State.STOPPING, State.STOPPED):
            return
        code = popen.poll()
        if code is None:
            return
        _kill_group(popen.pid, signal.SIGKILL)  # whatever the process left behind in its group
        if service.readers:
            service.readers[-1].join(1.0)  # its last lines belong in the tail a failure reports
        with self._changed:
            service.exit_code = code
            service.popen = None
            self._changed.notify_all()
        spec = service.spec
        if spec.kind == "task":
            if code == 0:
                self._set(service, State.DONE, f"done in {now - service.started_at:.1f} s")
            else:
                self._set(service, State.FAILED, f"exit {code}")
                self._fail(StackStartError(spec.name, f"exited with status {code}", list(service.tail)))
            return
        if service.reload_pending:
            service.reload_pending = False
            with self._lock:
                service.restarts += 1
            self._spawn(service)
            return
        starting = self._phase is _Phase.STARTING and service.tier >= self._tier_index
        if starting and code == EXIT_CONFIG_ERROR:
            self._set(service, State.FAILED, f"exit {code}")
            self._fail(StackStartError(spec.name, "configuration error (exit 2)", list(service.tail)))
            return
        if starting and service.restarts >= self._start_attempts - 1:
            self._set(service, State.FAILED, f"exit {code}")
            self._fail(
                StackStartError(
                    spec.name,
                    f"exited {service.restarts + 1} times while starting (last status {code})",
                    list(service.tail),
                )
            )
            return
        delay, service.attempt = self._backoff.after_crash(service.attempt, now - service.started_at)
        with self._changed:
            service.restarts += 1
            service.restart_at = now + delay
            service.state = State.BACKOFF
            service.detail = f"exit {code}"
            self._changed.notify_all()
        self._say(f"{spec.name} exited with status {code}; restarting in {delay:.1f} s")

    def _request_restart(self, service: _Service, reason: str) -> None:
        popen = service.popen
        if service.spec.kind == "task":
            return
        if popen is None or popen.poll() is not None:
            if service.state is State.BACKOFF:
                service.restart_at = self._clock()
            return
        self._say(f"restarting {service.spec.name}: {reason}")
        service.reload_pending = True
        self._set(service, State.STARTING, reason)
        _kill_group(popen.pid, signal.SIGTERM)

    def _apply_probes(self) -> None:
        with self._lock:
            results = dict(self._probe_results)
        for name, (ready, alive) in results.items():
            service = self._services[name]
            if service.popen is None or service.state not in (State.STARTING, State.HEALTHY, State.UNHEALTHY):
                continue
            if service.reload_pending:
                continue
            if ready is True and service.state is not State.HEALTHY:
                if service.state is State.STARTING:
                    self._say(f"{name} healthy after {self._clock() - service.started_at:.1f} s")
                self._set(service, State.HEALTHY)
            elif ready is False and service.state is State.HEALTHY:
                self._set(service, State.UNHEALTHY, "health check failing")
            if alive is False and service.state in (State.HEALTHY, State.UNHEALTHY):
                service.liveness_failures += 1
                if service.liveness_failures >= self._liveness_limit:
                    self._say(f"{name}: /healthz failed {service.liveness_failures} times; killing it")
                    service.liveness_failures = 0
                    _kill_group(service.popen.pid, signal.SIGKILL)
            elif alive is True:
                service.liveness_failures = 0

    def _probe_loop(self) -> None:
        while not self._probe_stop.is_set():
            with self._lock:
                targets = [
                    (s.spec.name, s.spec.health, s.spec.liveness_url, s.state)
                    for s in self._services.values()
                    if s.popen is not None and s.spec.kind == "service"
                ]
            starting = False
            for name, check, liveness_url, state in targets:
                if self._probe_stop.is_set():
                    return
                starting = starting or state is State.STARTING
                ready = self._prober(check) if not isinstance(check, ExitCheck) else None
                alive = (
                    self._prober(HttpCheck(liveness_url))
                    if liveness_url is not None and state is not State.STARTING
                    else None
                )
                with self._lock:
                    self._probe_results[name] = (ready, alive)
            # Probe often while something is starting (it gates the next tier), calmly afterwards; a
            # spawn wakes the loop at once.
            self._probe_wake.wait(0.25 if starting else self._probe_interval)
            self._probe_wake.clear()

    def _watch_files(self) -> None:
        for path, seen in list(self._mtimes.items()):
            current = _mtime(path)
            if current == seen:
                continue
            self._mtimes[path] = current
            for service in self._services.values():
                if path in service.spec.reload_on and service.popen is not None:
                    self._request_restart(service, f"{path.name} changed")

    # -- stopping ----------------------------------------------------------------------------------

    def _stop_all(self) -> None:
        with self._changed:
            self._phase = _Phase.STOPPING
            deadline = self._clock() + self._stop_deadline_s
            self._changed.notify_all()
        self._say("stopping (reverse order)")
        for index in reversed(range(len(self._tiers))):
            tier = self._tier(index)
            running = [s for s in tier if s.popen is not None and s.popen.poll() is None]
            for service in tier:
                if service.popen is None and service.state is State.BACKOFF:
                    self._set(service, State.STOPPED, "stopped while waiting to restart")
            if not running:
                for service in tier:
                    self._reap_stopped(service)
                continue
            grace = max(s.spec.stop_timeout_s for s in running)
            tier_deadline = min(deadline, self._clock() + grace)
            for service in running:
                self._set(service, State.STOPPING)
                assert service.popen is not None
                _kill_group(service.popen.pid, signal.SIGTERM)
            self._wait_exit(running, tier_deadline, forced=False)
            stragglers = [s for s in running if s.popen is not None and s.popen.poll() is None]
            for service in stragglers:
                assert service.popen is not None
                self._say(f"{service.spec.name} did not stop in time; killing it")
                _kill_group(service.popen.pid, signal.SIGKILL)
            self._wait_exit(stragglers, self._clock() + 5.0, forced=True)
        for service in self._services.values():
            for reader in service.readers:
                reader.join(2.0)
        with self._changed:
            self._phase = _Phase.STOPPED
            self._changed.notify_all()
        self._say("stopped")

    def _wait_exit(self, services: Iterable[_Service], deadline: float, *, forced: bool) -> None:
        pending = [s for s in services if s.popen is not None]
        while pending and self._clock() < deadline:
            for service in list(pending):
                if self._reap_stopped(service, forced=forced):
                    pending.remove(service)
            if pending:
                time.sleep(0.05)
        for service in pending:
            self._reap_stopped(service, forced=forced)

    def _reap_stopped(self, service: _Service, *, forced: bool = False) -> bool:
        popen = service.popen
        if popen is None:
            return True
        code = popen.poll()
        if code is None:
            return False
        _kill_group(popen.pid, signal.SIGKILL)
        record = StopRecord(service.spec.name, popen.pid, code, self._clock(), forced)
        with self._changed:
            service.popen = None
            service.exit_code = code
            service.state = State.STOPPED
            service.detail = f"exit {code}" + (" (killed)" if forced else "")
            self._stop_records.append(record)
            self._changed.notify_all()
        self._say(f"stopped {service.spec.name} (exit {code}{', killed' if forced else ''})")
        return True


def _kill_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime_ns / 1e9
    except OSError:
        return None
