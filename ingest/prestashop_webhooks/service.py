"""Running the webhook receiver: from settings to a listening uvicorn server with its one producer.

``main()`` (behind ``psinfor ingest prestashop-webhooks``) runs it in the foreground until SIGINT or
SIGTERM. :class:`ReceiverServer` runs the same app on a background thread (tests and the benchmark):
``with ReceiverServer(settings) as server: post(server.url + "/webhooks/prestashop/shop1", ...)``.

One process = one event loop, one :class:`~pipeline.producer.PipelineProducer` (shared by every
request), one dedupe memory. Shutdown stops accepting requests, lets the in-flight ones finish, then
flushes and closes the producer.
"""

from __future__ import annotations

import importlib.util
import logging
import socket
import threading
import time
from collections.abc import Mapping
from types import TracebackType

import uvicorn

from ingest.prestashop_webhooks.app import AckingProducer, ReceiverApp, create_app
from ingest.prestashop_webhooks.dedupe import WebhookDeduper
from ingest.prestashop_webhooks.receiver import Entity, WebhookReceiver, raw_topics
from pipeline.errors import ConfigError
from pipeline.health import HealthState
from pipeline.log import configure_logging
from pipeline.producer import PipelineProducer
from pipeline.settings import Settings, env_name, load_settings
from schemas.catalogue import load_catalogue

log = logging.getLogger(__name__)

STAGE = "ingest-prestashop-webhooks"


def build_app(
    settings: Settings,
    producer: AckingProducer,
    health: HealthState,
    *,
    topics: Mapping[Entity, str] | None = None,
) -> ReceiverApp:
    """The receiver app wired from ``settings``; raw topics from the catalogue plus the settings'
    prefix unless ``topics`` names them (tests give each run its own topics)."""
    webhooks = settings.require_webhooks()
    receiver = WebhookReceiver(
        secrets=webhooks.secret_list(),
        shop_keys=webhooks.shop_key_set(),
        topics=topics if topics is not None else raw_topics(load_catalogue(), webhooks.topic_prefix),
        max_body_bytes=webhooks.max_body_bytes,
        tolerance_s=webhooks.timestamp_tolerance_s,
        accept_legacy=webhooks.accept_legacy_signature,
    )
    deduper = WebhookDeduper(window_s=webhooks.dedupe_window_s, max_entries=webhooks.dedupe_max_entries)
    return create_app(
        receiver,
        producer,
        health=health,
        deduper=deduper,
        ack_timeout_s=webhooks.ack_timeout_s,
        retry_after_s=webhooks.retry_after_s,
    )


def server_config(app: ReceiverApp) -> uvicorn.Config:
    """uvicorn settings for the receiver: the C HTTP parser (httptools) and event loop (uvloop) when
    installed (they come with ``uvicorn[standard]``), the pure-Python h11 and asyncio otherwise.

    Measured with ``python -m bench.webhooks``: h11's parser alone was about a quarter of the server's
    CPU per request. No access log (one log record per request) and no reloader.
    """
    http = "httptools" if importlib.util.find_spec("httptools") is not None else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
    return uvicorn.Config(
        app,
        http=http,
        loop=loop,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )


def _listen(host: str, port: int) -> socket.socket:
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


class ReceiverServer:
    """The receiver on a background thread, bound before :meth:`start` returns; see module docstring.

    Owns its producer unless one is given. ``port`` 0 (the settings' default) picks a free port.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        host: str | None = None,
        port: int | None = None,
        producer: PipelineProducer | None = None,
        topics: Mapping[Entity, str] | None = None,
    ) -> None:
        self._settings = settings
        self._host = host if host is not None else settings.service.http_host
        self._requested_port = port if port is not None else settings.service.http_port
        self._own_producer = producer is None
        self.producer = producer or PipelineProducer(settings.kafka, client_id_suffix=STAGE)
        self.health = HealthState.from_settings(settings.service, STAGE)
        self.app = build_app(settings, self.producer, self.health, topics=topics)
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (only after :meth:`start`)."""
        if self._socket is None:
            raise RuntimeError("the receiver is not running")
        return int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234``."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> None:
        """Bind, start serving on a daemon thread, return once uvicorn has started."""
        self._socket = _listen(self._host, self._requested_port)
        server = uvicorn.Server(server_config(self.app))
        self._server = server
        sockets = [self._socket]
        self._thread = threading.Thread(
            target=lambda: server.run(sockets=sockets), name="webhook-receiver", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the webhook receiver did not start")
            time.sleep(0.02)
        log.info("webhook receiver listening", extra={"url": self.url})

    def stop(self) -> None:
        """Stop serving (in-flight requests finish), then close the producer if owned; idempotent."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=20)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None
        if self._own_producer:
            self.producer.close()

    def __enter__(self) -> ReceiverServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def serve(settings: Settings, *, host: str | None = None, port: int | None = None) -> int:
    """Run the receiver in the foreground until SIGINT/SIGTERM; returns the exit code (1 when records
    were left undelivered at shutdown). ``host``/``port`` override ``service.http_host``/``http_port``."""
    bind_host = host if host is not None else settings.service.http_host
    sock = _listen(bind_host, port if port is not None else settings.service.http_port)
    producer = PipelineProducer(settings.kafka, client_id_suffix=STAGE)
    try:
        health = HealthState.from_settings(settings.service, STAGE)
        app = build_app(settings, producer, health)
        config = server_config(app)
        log.info(
            "webhook receiver starting",
            extra={
                "host": bind_host,
                "port": sock.getsockname()[1],
                "http": config.http,
                "loop": config.loop,
            },
        )
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        undelivered = producer.close()
    return 0 if undelivered == 0 else 1


def main(*, host: str | None = None, port: int | None = None) -> int:
    """``psinfor ingest prestashop-webhooks``: settings from the environment (``PSINFOR_KAFKA__*``,
    ``PSINFOR_WEBHOOKS__*``, ``PSINFOR_SERVICE__*``), logging, then :func:`serve`."""
    settings = load_settings()
    webhooks = settings.require_webhooks()
    secrets = settings.secret_values() + [s.get_secret_value() for s in webhooks.secret_list()]
    configure_logging(settings.service, stage=STAGE, secrets=secrets)
    return serve(settings, host=host, port=port)
