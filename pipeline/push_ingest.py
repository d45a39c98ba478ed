"""The steps every push receiver (PrestaShop webhooks, Infor IMS) shares, vendor-free.

- :class:`AckingProducer`: what a receiver needs from the producer — write one record and return only
  after the broker acknowledged it (``PipelineProducer.produce_acked``), and say whether the broker
  answers at all;
- :func:`watch_broker`: the background task behind ``/healthz`` and ``/readyz`` (heartbeat every
  interval; ready while the broker answers a metadata request);
- :func:`read_capped`: the request body, refused as soon as it grows past the limit, never read further;
- :func:`listen_socket` and :class:`GracefulServer`: the listening socket (TCP_NODELAY, a clear
  ConfigError when the address is taken) and a uvicorn server whose SIGTERM lets the caller flush and
  close its producer before the process exits.

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
from collections.abc import Callable, Generator
from types import FrameType
from typing import Protocol

import uvicorn
from starlette.requests import Request

from pipeline.errors import ConfigError
from pipeline.health import HealthState
from pipeline.producer import HeaderList
from pipeline.settings import env_name


class AckingProducer(Protocol):
    """The producer side of a push receiver (``pipeline.producer.PipelineProducer`` provides it)."""

    async def produce_acked(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: HeaderList = (),
        ack_timeout_s: float = 10.0,
    ) -> tuple[int, int]:
        """Return ``(partition, offset)`` once the broker acknowledged the record."""
        ...

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
