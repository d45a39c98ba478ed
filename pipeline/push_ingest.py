"""The steps every push receiver (PrestaShop webhooks, Infor IMS) shares, vendor-free.

- :class:`AckingProducer`: what a receiver needs from the producer — write one record and return only
  after the broker acknowledged it (``PipelineProducer.produce_acked``), and say whether the broker
  answers at all;
- :func:`watch_broker`: the background task behind ``/healthz`` and ``/readyz`` (heartbeat every
  interval; ready while the broker answers a metadata request);
- :func:`read_capped`: the request body, refused as soon as it grows past the limit, never read further;
- :func:`listen_socket` and :class:`GracefulServer`: the listening socket (TCP_NODELAY, a clear
  ConfigError when the address is taken) and a uvicorn server whose SIGTERM lets the caller flush and
  close its producer before the process exits;
- :class:`BackgroundServer`: the same app on a daemon thread, for tests and in-process runs.

The answer rules built on them (2xx only after the ack; 503 + ``Retry-After`` on ``RetryableError``;
500 on ``ProduceError``) live in each receiver's app, whose bodies follow the sender's protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import socket
import threading
import time
from collections.abc import Callable, Generator
from types import FrameType
from typing import Protocol

import uvicorn
from starlette.requests import Request

from pipeline.errors import ConfigError
from pipeline.health import HealthState
from pipeline.producer import AckedProducer
from pipeline.settings import env_name


class AckingProducer(AckedProducer, Protocol):
    """The producer side of a push receiver (``pipeline.producer.PipelineProducer`` provides it): an
    acknowledged write, and whether the cluster answers (readiness)."""

    def broker_reachable(self, timeout_s: float = 2.0) -> bool:
        """True when the cluster answers (blocking)."""
        ...


async def read_capped(request: Request, limit: int, too_large: Callable[[int], Exception]) -> bytes:
    """The body; raises ``too_large(size)`` as soon as more than ``limit`` bytes arrived."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(size)
        chunks.append(chunk)
    return b"".join(chunks)


async def watch_broker(
    producer: AckingProducer, health: HealthState, interval_s: float, *, not_ready_reason: str
) -> None:
    """Heartbeat and readiness until cancelled: ready while the broker answers a metadata request."""
    while True:
        reachable = await asyncio.to_thread(producer.broker_reachable, max(0.5, interval_s))
        health.heartbeat()
        health.set_ready(reachable, "" if reachable else not_ready_reason)
        await asyncio.sleep(interval_s)


def listen_socket(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (0 = a free port), or one ConfigError line naming the setting."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this. Without it, a response written in two pieces (headers, then
    # body) meets the client's delayed ACK and every request takes ~40 ms (measured).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"configuration error: cannot listen on {host}:{port} ({exc.strerror or exc}); check "
            f"{env_name('service', 'http_host')} and {env_name('service', 'http_port')} (or --host/--port)"
        ) from None
    sock.listen(2048)
    return sock


class GracefulServer(uvicorn.Server):
    """uvicorn's server, except that SIGTERM/SIGINT end :meth:`run` normally.

    uvicorn re-raises the captured signal once it has shut down, which kills the process before the
    caller's ``finally`` flushes and closes the producer; here the signal only asks for the graceful
    shutdown (a second SIGINT forces it, as in uvicorn) and the caller decides the exit code.
    """

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start serving, then move everything built so far out of the garbage collector's sight.

        Measured in the webhook bench: the imports and the app (FastAPI, pydantic, confluent-kafka, ...)
        are hundreds of thousands of objects that every full collection walked again; those collections
        took up to ~0.6 s on a busy machine, stalling every request in flight (the p99). Frozen, they
        are never collected (they live as long as the process anyway); what requests allocate is
        collected as before.
        """
        await super().startup(sockets)
        gc.collect()
        gc.freeze()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """Handle SIGINT/SIGTERM while serving (main thread only: Python allows no other)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            if self.should_exit and signum == signal.SIGINT:
                self.force_exit = True
            else:
                self.should_exit = True

        originals = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for signum, handler in originals.items():
                signal.signal(signum, handler)


class BackgroundServer:
    """Serves one ASGI app on a daemon thread (tests, benchmarks, in-process end-to-end runs).

    ``start`` binds (``port`` 0 picks a free one) and returns once uvicorn has started; ``stop`` lets
    in-flight requests finish and is idempotent. The owner keeps its producer and closes it after
    ``stop``: serving and flushing are separate concerns.
    """

    def __init__(self, config: Callable[[], uvicorn.Config], *, host: str, port: int, name: str) -> None:
        self._config = config
        self._host = host
        self._requested_port = port
        self._name = name
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (only after :meth:`start`)."""
        if self._socket is None:
            raise RuntimeError(f"the {self._name} is not running")
        return int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234``."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> None:
        """Bind, start serving on a daemon thread, return once uvicorn has started."""
        self._socket = listen_socket(self._host, self._requested_port)
        server = uvicorn.Server(self._config())
        self._server = server
        sockets = [self._socket]
        self._thread = threading.Thread(
            target=lambda: server.run(sockets=sockets), name=self._name, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the {self._name} did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop serving (in-flight requests finish); idempotent."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=20)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None
