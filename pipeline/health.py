"""``/metrics``, ``/healthz`` and ``/readyz`` for every stage.

The stage owns a :class:`HealthState` and reports to it: ``heartbeat()`` once per loop iteration (a
poll that returned nothing counts), ``set_ready(True)`` once it can do its work (partitions assigned,
HTTP listening) and ``set_ready(False, reason)`` when it cannot (partitions revoked, shutting down).

- ``/healthz`` (liveness): 200 while the last heartbeat is at most ``heartbeat_timeout_s`` old (start-up
  counts as one, so a stage gets that long to begin), else 503 with a JSON reason. A failing liveness
  probe means the loop is stuck and the supervisor should restart the process.
- ``/readyz`` (readiness): 200 once the stage said it is ready and is alive, else 503 with the reason.
- ``/metrics``: the Prometheus exposition of the default registry (the ``pipeline.metrics`` catalogue).

:class:`HealthServer` serves them from a stdlib ``ThreadingHTTPServer`` on a daemon thread, so it works
beside a blocking confluent-kafka loop. Async FastAPI services mount the same checks on their own app
through :meth:`HealthState.liveness`, :meth:`HealthState.readiness` and :func:`metrics_exposition`.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from pipeline.errors import ConfigError
from pipeline.metrics import STAGE_UP
from pipeline.settings import ServiceSettings, env_name

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckResult:
    """The outcome of a probe: ``ok`` decides 200 or 503; ``body`` is the JSON the probe returns."""

    ok: bool
    body: dict[str, object] = field(default_factory=dict)

    @property
    def status_code(self) -> int:
        """200 when ok, else 503."""
        return HTTPStatus.OK if self.ok else HTTPStatus.SERVICE_UNAVAILABLE


class HealthState:
    """What the stage reports about itself; safe to call from any thread."""

    def __init__(
        self, stage: str, *, heartbeat_timeout_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.stage = stage
        self._timeout = heartbeat_timeout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last_beat = clock()
        self._ready = False
        self._not_ready_reason = "starting"
        STAGE_UP.labels(stage=stage).set(0)

    @classmethod
    def from_settings(cls, service: ServiceSettings, stage: str) -> HealthState:
        """A state whose liveness window is ``service.heartbeat_timeout_s``."""
        return cls(stage, heartbeat_timeout_s=service.heartbeat_timeout_s)

    def heartbeat(self) -> None:
        """The stage's loop made progress (call once per iteration, also when a poll returned nothing)."""
        with self._lock:
            self._last_beat = self._clock()

    def set_ready(self, ready: bool, reason: str = "") -> None:
        """Ready to work (True), or not, with a short reason shown by /readyz (False)."""
        with self._lock:
            self._ready = ready
            self._not_ready_reason = "" if ready else (reason or "not ready")
        STAGE_UP.labels(stage=self.stage).set(1 if ready else 0)

    def liveness(self) -> CheckResult:
        """200-worthy while the last heartbeat is within the timeout."""
        with self._lock:
            age = self._clock() - self._last_beat
        body: dict[str, object] = {"stage": self.stage, "seconds_since_heartbeat": round(age, 3)}
        if age <= self._timeout:
            return CheckResult(True, {"status": "ok", **body})
        reason = f"no heartbeat for {age:.1f}s (limit {self._timeout:g}s): the stage's loop is stuck"
        return CheckResult(False, {"status": "failing", "reason": reason, **body})

    def readiness(self) -> CheckResult:
        """200-worthy once the stage said it is ready, as long as it is also alive."""
        with self._lock:
            ready, reason = self._ready, self._not_ready_reason
        if not ready:
            return CheckResult(False, {"status": "not_ready", "reason": reason, "stage": self.stage})
        alive = self.liveness()
        if not alive.ok:
            return CheckResult(False, {**alive.body, "status": "not_ready"})
        return CheckResult(True, {"status": "ready", "stage": self.stage})


def metrics_exposition(registry: CollectorRegistry = REGISTRY) -> tuple[bytes, str]:
    """The Prometheus text exposition of ``registry`` and its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self._respond(include_body=True)

    def do_HEAD(self) -> None:
        self._respond(include_body=False)

    def _respond(self, *, include_body: bool) -> None:
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        if path == "/metrics":
            payload, content_type = metrics_exposition(self.server.registry)
            self._send(HTTPStatus.OK, payload, content_type, include_body)
            return
        checks = {"/healthz": self.server.state.liveness, "/readyz": self.server.state.readiness}
        check = checks.get(path)
        if check is None:
            result = CheckResult(False, {"status": "not_found", "paths": ["/metrics", "/healthz", "/readyz"]})
            status = int(HTTPStatus.NOT_FOUND)
        else:
            result = check()
            status = result.status_code
        self._send(status, json.dumps(result.body).encode(), "application/json", include_body)

    def _send(self, status: int, payload: bytes, content_type: str, include_body: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if include_body:
            self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
        # Probes hit these paths every few seconds: keep them out of the stage's log unless debugging.
        logger.debug("health request: %s", format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], state: HealthState, registry: CollectorRegistry) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.state = state
        self.registry = registry
        super().__init__(address, _Handler)


class HealthServer:
    """Serves /metrics, /healthz, /readyz on a daemon thread until :meth:`stop`.

    Use as a context manager, or ``start()`` then ``stop()`` in a ``finally``.
    """

    def __init__(
        self,
        state: HealthState,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self.state = state
        self._host = host
        self._requested_port = port
        self._registry = registry
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, service: ServiceSettings, state: HealthState) -> HealthServer:
        """A server bound to ``service.http_host``/``http_port`` (0 picks a free port)."""
        return cls(state, host=service.http_host, port=service.http_port)

    @property
    def port(self) -> int:
        """The port actually bound (the free one chosen when 0 was asked for); only after start()."""
        if self._server is None:
            raise RuntimeError("the health server is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL of the running server, e.g. ``http://127.0.0.1:41234``."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        """Bind and serve; returns once the socket listens. A port in use is a ConfigError."""
        if self._server is not None:
            return
        try:
            self._server = _Server((self._host, self._requested_port), self.state, self._registry)
        except OSError as exc:
            raise ConfigError(
                f"configuration error: cannot listen on {self._host}:{self._requested_port} "
                f"({exc.strerror or exc}); check {env_name('service', 'http_host')} and "
                f"{env_name('service', 'http_port')}"
            ) from None
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name=f"health-{self.state.stage}",
            daemon=True,
        )
        self._thread.start()
        logger.info("health server listening", extra={"url": self.url})

    def stop(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> HealthServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
