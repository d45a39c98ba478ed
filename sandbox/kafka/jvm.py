"""Finding a Java runtime and running one JVM as a supervised child process.

Both launchers (the Kafka brokers and the Apicurio registry) are a ``java`` command line with a log file;
this module owns what they share: which ``java`` to run, free loopback ports, starting a JVM either tied
to this process (tests) or detached from it (``psinfor dev ... up``), the tail of its log for error
messages, and stopping it (SIGTERM, then SIGKILL after a bound).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

LOOPBACK = "127.0.0.1"

# Where Debian/Ubuntu (and the Temurin packages) install JDKs; searched after ``java`` on PATH.
JVM_ROOTS: tuple[Path, ...] = (Path("/usr/lib/jvm"), Path("/opt/java"))

_VERSION_LINE = re.compile(r'version "(?P<version>[^"]+)"')
_PR_SET_PDEATHSIG = 1


class RuntimeMissingError(RuntimeError):
    """A tool the local runtime needs (``java``, ``mvn``) is not installed; the message says how to fix it."""


class ProcessFailedError(RuntimeError):
    """A JVM exited or did not become ready in time; the message ends with the tail of its log."""


@dataclass(frozen=True)
class Java:
    """One Java installation: the ``java`` executable and its feature version (17, 21, 25, ...)."""

    executable: Path
    version: int


def parse_java_version(output: str) -> int:
    """The feature version from ``java -version`` output (``"17.0.15"`` -> 17, ``"1.8.0_292"`` -> 8).

    Raises ``ValueError`` when the output holds no ``version "..."`` line.
    """
    match = _VERSION_LINE.search(output)
    if match is None:
        raise ValueError(f"no version in java -version output: {output[:200]!r}")
    parts = re.split(r"[._+-]", match.group("version"))
    # Java 8 and older report "1.<feature>"; from 9 on the first number is the feature version.
    if parts[0] == "1" and len(parts) > 1:
        return int(parts[1])
    return int(parts[0])


@cache
def _probe_java(executable: Path) -> int | None:
    try:
        done = subprocess.run(
            [str(executable), "-version"], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    try:
        return parse_java_version(done.stderr + done.stdout)
    except ValueError:
        return None


def java_candidates(explicit: Path | None = None) -> list[Path]:
    """Every ``java`` worth trying, in order of preference: ``explicit``, PATH's, then the JVM roots."""
    found: list[Path] = []
    if explicit is not None:
        found.append(explicit)
    on_path = shutil.which("java")
    if on_path is not None:
        found.append(Path(on_path))
    for root in JVM_ROOTS:
        if root.is_dir():
            found.extend(sorted(root.glob("*/bin/java")))
    unique: list[Path] = []
    seen: set[Path] = set()
    for candidate in found:
        resolved = candidate.resolve()
        if resolved not in seen and os.access(resolved, os.X_OK):
            seen.add(resolved)
            unique.append(candidate)
    return unique


def find_java(minimum: int, *, explicit: Path | None = None, prefer_newest: bool = False) -> Java | None:
    """The first Java (or, with ``prefer_newest``, the newest) whose feature version is >= ``minimum``.

    Returns ``None`` when no installed Java is new enough; an ``explicit`` path that is too old is skipped
    like any other candidate.
    """
    usable = [
        Java(candidate, version)
        for candidate in java_candidates(explicit)
        if (version := _probe_java(candidate)) is not None and version >= minimum
    ]
    if not usable:
        return None
    if prefer_newest:
        return max(usable, key=lambda java: java.version)
    return usable[0]


def require_java(minimum: int, *, explicit: Path | None = None) -> Java:
    """Like :func:`find_java`, but raises :class:`RuntimeMissingError` with an install hint when none fits."""
    java = find_java(minimum, explicit=explicit)
    if java is None:
        raise RuntimeMissingError(
            f"no Java {minimum}+ found (looked at PATH and {', '.join(map(str, JVM_ROOTS))}): "
            f"install one, e.g. apt-get install openjdk-{max(minimum, 17)}-jre-headless"
        )
    return java


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that were free a moment ago.

    All sockets are held open until every port is chosen so the same port is not returned twice; another
    process may still take one before the caller binds it, which the caller reports as a start failure.
    """
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((LOOPBACK, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def port_is_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:``port`` and it can be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file ('' when it does not exist yet)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: ask the kernel to SIGKILL the JVM when the process that
    # started it dies, so a test run killed hard does not leave brokers behind. Linux only; harmless if
    # the call is unavailable.
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class JvmProcess:
    """One running JVM: either a child of this process or, after a detached start, just a pid.

    ``attached=True`` ties the JVM's life to this Python process: started from the main thread it is
    SIGKILLed by the kernel if we die. The kernel ties that signal to the *thread* that forked, so a
    JVM started from any other thread (a test's chaos thread restarting a broker) goes without it and
    relies on :meth:`stop` (the launchers' ``stop()``, the test session's end) like a detached one.
    ``attached=False`` starts it in its own session so it outlives the command that launched it.
    """

    def __init__(self, argv: Sequence[str], *, log_path: Path, cwd: Path, attached: bool) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            self._popen: subprocess.Popen[bytes] | None = subprocess.Popen(
                self.argv,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=not attached,
                preexec_fn=_die_with_parent if attached and _on_main_thread() else None,
            )
        self.pid = self._popen.pid

    @classmethod
    def adopt(cls, pid: int, *, log_path: Path) -> JvmProcess:
        """A handle on a JVM started earlier (by another ``psinfor`` command), known only by its pid."""
        process = cls.__new__(cls)
        process.argv = []
        process.log_path = log_path
        process._popen = None
        process.pid = pid
        return process

    def alive(self) -> bool:
        """True while the process runs (a zombie child counts as exited)."""
        if self._popen is not None:
            return self._popen.poll() is None
        return pid_alive(self.pid)

    def exit_code(self) -> int | None:
        """The exit status once a child has exited; ``None`` while it runs or for an adopted pid."""
        return None if self._popen is None else self._popen.poll()

    def kill(self) -> None:
        """SIGKILL now and reap: the 'kill -9' of failover tests."""
        self._signal(signal.SIGKILL)
        self._wait(10.0)

    def terminate(self) -> None:
        """Send SIGTERM (start a controlled shutdown) without waiting; :meth:`stop` finishes the job."""
        if self.alive():
            self._signal(signal.SIGTERM)

    def stop(self, grace_s: float = 20.0) -> None:
        """SIGTERM (controlled shutdown), SIGKILL if still running after ``grace_s``; returns once gone."""
        if not self.alive():
            self._wait(0.1)
            return
        self._signal(signal.SIGTERM)
        if not self._wait(grace_s):
            self._signal(signal.SIGKILL)
            self._wait(10.0)

    def _signal(self, signum: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)

    def _wait(self, timeout: float) -> bool:
        if self._popen is not None:
            try:
                self._popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout
        while pid_alive(self.pid):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        return True


def pid_alive(pid: int) -> bool:
    """True when ``pid`` names a live process (not a zombie) on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError as exc:
        return exc.errno == errno.EPERM
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError, IndexError):
        # Field 3 after the parenthesised command name is the state; Z is a zombie awaiting its reaper.
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def pid_runs(pid: int, markers: Iterable[str]) -> bool:
    """True when ``pid`` is alive and its command line contains every marker (guards against pid reuse)."""
    if not pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return True  # no /proc: trust the pid
    return all(marker in cmdline for marker in markers)
