"""Apicurio Registry (Confluent-compatible API) on 127.0.0.1 for development and tests.

```
with RegistryServer(run_dir=tmp) as registry:
    SchemaRegistryClient({"url": registry.url})   # http://127.0.0.1:PORT/apis/ccompat/v7
```

Storage is Apicurio's default in-memory H2: every start is a fresh, empty registry. Readiness means
``GET <url>/subjects`` answers 200; then the global compatibility rule is set to BACKWARD_TRANSITIVE
and read back, so incompatible schema changes are refused from the first registration on. Deleting
subjects and versions is enabled (tests clean up after themselves).
"""

from __future__ import annotations

import time
from pathlib import Path
from types import TracebackType
from typing import NoReturn

import httpx

from sandbox.kafka.jvm import LOOPBACK, JvmProcess, ProcessFailedError, free_ports, log_tail
from sandbox.kafka.runtime import RegistryRuntime, fetch_runtime

CCOMPAT_PATH = "/apis/ccompat/v7"
GLOBAL_COMPATIBILITY = "BACKWARD_TRANSITIVE"
# What Quarkus logs when its HTTP or management port was taken first.
PORT_TAKEN_MARKERS = ("Address already in use", "seems to be in use by another process")
REGISTRY_HEAP = ("-Xms128m", "-Xmx512m")

# Apicurio 3.x refuses deletes unless enabled; tests and `psinfor schemas` clean-ups rely on them.
_APICURIO_PROPERTIES: dict[str, str] = {
    "apicurio.rest.deletion.group.enabled": "true",
    "apicurio.rest.deletion.artifact.enabled": "true",
    "apicurio.rest.deletion.artifact-version.enabled": "true",
}


def registry_argv(runtime: RegistryRuntime, port: int, management_port: int) -> list[str]:
    """The ``java`` command line running Apicurio on 127.0.0.1 (HTTP and management interfaces)."""
    system_properties = {
        "quarkus.http.host": LOOPBACK,
        "quarkus.http.port": str(port),
        "quarkus.management.host": LOOPBACK,
        "quarkus.management.port": str(management_port),
        **_APICURIO_PROPERTIES,
    }
    return [
        str(runtime.java.executable),
        *REGISTRY_HEAP,
        "-Djava.awt.headless=true",
        *(f"-D{key}={value}" for key, value in system_properties.items()),
        "-jar",
        str(runtime.jar),
    ]


class RegistryServer:
    """One Apicurio Registry process; ``start()`` returns once the ccompat API serves and the rule is set.

    ``attached=False`` starts the JVM detached so it outlives this process (``psinfor dev registry up``).
    ``stop()`` is idempotent.
    """

    def __init__(
        self,
        run_dir: Path,
        *,
        runtime: RegistryRuntime | None = None,
        port: int | None = None,
        attached: bool = True,
        ready_timeout_s: float = 90.0,
    ) -> None:
        self.run_dir = run_dir
        self._runtime = runtime
        self._requested_port = port
        self._attached = attached
        self.ready_timeout_s = ready_timeout_s
        self.port: int | None = None
        self.management_port: int | None = None
        self._process: JvmProcess | None = None

    @property
    def runtime(self) -> RegistryRuntime:
        """The unpacked registry, fetched on first use when none was given."""
        if self._runtime is None:
            self._runtime = fetch_runtime(kafka=False).registry
        return self._runtime

    @property
    def url(self) -> str:
        """The Confluent-compatible base URL: ``http://127.0.0.1:<port>/apis/ccompat/v7``."""
        if self.port is None:
            raise RuntimeError("the registry has not been started")
        return f"http://{LOOPBACK}:{self.port}{CCOMPAT_PATH}"

    @property
    def log_path(self) -> Path:
        """The registry's console log."""
        return self.run_dir / "registry.log"

    @property
    def process(self) -> JvmProcess | None:
        """The JVM while it runs."""
        return self._process

    @property
    def pid(self) -> int | None:
        """The JVM's pid while it runs."""
        return None if self._process is None else self._process.pid

    def start(self) -> RegistryServer:
        """Spawn the JVM, wait for readiness and set the global BACKWARD_TRANSITIVE rule."""
        try:
            self.launch()
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def launch(self) -> None:
        """Spawn the JVM without waiting (see :meth:`wait_ready`)."""
        runtime = self.runtime
        picked = free_ports(2)
        self.port = self._requested_port if self._requested_port is not None else picked[0]
        self.management_port = picked[1]
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._process = JvmProcess(
            registry_argv(runtime, self.port, self.management_port),
            log_path=self.log_path,
            cwd=self.run_dir,
            attached=self._attached,
        )

    def wait_ready(self) -> None:
        """Block until ``GET <url>/subjects`` is 200, then set and verify the global compatibility rule.

        If the JVM died because another process took its free-picked port first, it is relaunched once
        on fresh ports.
        """
        deadline = time.monotonic() + self.ready_timeout_s
        relaunched = False
        with httpx.Client(timeout=2.0) as client:
            while True:
                if self._process is not None and not self._process.alive():
                    if relaunched or self._requested_port is not None or not self._port_was_taken():
                        self._raise_exited()
                    relaunched = True
                    self.log_path.rename(self.log_path.with_suffix(".port-taken.log"))
                    self.launch()
                try:
                    if client.get(f"{self.url}/subjects").status_code == httpx.codes.OK:
                        break
                except httpx.TransportError:
                    pass  # not listening yet
                if time.monotonic() >= deadline:
                    raise ProcessFailedError(
                        f"registry not ready after {self.ready_timeout_s:.0f} s; last lines of "
                        f"{self.log_path}:\n{log_tail(self.log_path)}"
                    )
                time.sleep(0.25)
            # The first write after start-up can be slow on a loaded machine (the JVM is still warming
            # up): retried with a longer timeout until the same deadline instead of failing the start.
            while True:
                try:
                    set_global_compatibility(client, self.url, GLOBAL_COMPATIBILITY, timeout_s=15.0)
                    break
                except (httpx.TransportError, httpx.HTTPStatusError) as exc:
                    if time.monotonic() >= deadline:
                        raise ProcessFailedError(
                            f"registry refused the compatibility rule for {self.ready_timeout_s:.0f} s "
                            f"({exc}); last lines of {self.log_path}:\n{log_tail(self.log_path)}"
                        ) from exc
                    time.sleep(0.5)

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``grace_s``; returns once the JVM is gone."""
        if self._process is not None:
            self._process.stop(grace_s)
            self._process = None

    def _raise_exited(self) -> NoReturn:
        code = None if self._process is None else self._process.exit_code()
        raise ProcessFailedError(
            f"registry exited (code {code}) before it was ready; last lines of "
            f"{self.log_path}:\n{log_tail(self.log_path)}"
        )

    def _port_was_taken(self) -> bool:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return False
        return any(marker in text for marker in PORT_TAKEN_MARKERS)

    def __enter__(self) -> RegistryServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def set_global_compatibility(
    client: httpx.Client, url: str, level: str, *, timeout_s: float | None = None
) -> None:
    """PUT the registry-wide compatibility level and read it back; raises if the registry disagrees.

    ``timeout_s`` overrides the client's timeout for these two calls."""
    timeout = httpx.USE_CLIENT_DEFAULT if timeout_s is None else httpx.Timeout(timeout_s)
    response = client.put(f"{url}/config", json={"compatibility": level}, timeout=timeout)
    response.raise_for_status()
    current = client.get(f"{url}/config", timeout=timeout)
    current.raise_for_status()
    body = current.json()
    seen = body.get("compatibilityLevel", body.get("compatibility"))
    if seen != level:
        raise ProcessFailedError(f"registry global compatibility is {seen!r} after setting {level!r}")
