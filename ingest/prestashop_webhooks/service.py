"""Running the webhook receiver: from settings to a listening uvicorn server with its one producer.

``main()`` (behind ``psinfor ingest prestashop-webhooks``) runs it in the foreground until SIGINT or
SIGTERM. :class:`ReceiverServer` runs the same app on a background thread (tests and the benchmark):
``with ReceiverServer(settings) as server: post(server.url + "/webhooks/prestashop/shop1", ...)``.
:class:`ReceiverProcess` runs it in a child process instead, so a client in the parent (a load test)
does not compete with the server for one interpreter.

One process = one event loop, one :class:`~pipeline.producer.PipelineProducer` (shared by every
request), one dedupe memory. Shutdown stops accepting requests, lets the in-flight ones finish, then
flushes and closes the producer.
"""

from __future__ import annotations

import http.client
import importlib.util
import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.process
import socket
import sys
import time
from collections.abc import Mapping
from types import TracebackType

import uvicorn

from ingest.prestashop_webhooks.app import ReceiverApp, create_app
from ingest.prestashop_webhooks.dedupe import WebhookDeduper
from ingest.prestashop_webhooks.receiver import Entity, WebhookReceiver, raw_topics
from pipeline.health import HealthState
from pipeline.log import configure_logging
from pipeline.producer import PipelineProducer
from pipeline.push_ingest import AckingProducer, BackgroundServer, GracefulServer, listen_socket
from pipeline.settings import Settings, load_settings
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
        shop_keys=webhooks.shop_ids(
            default_shop_id=settings.prestashop.shop_id if settings.prestashop is not None else 1
        ),
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
    CPU per request. No access log (one log record per request), no reloader, and no proxy-header
    rewriting (the receiver never uses the client's address; the middleware ran on every request).
    """
    http = "httptools" if importlib.util.find_spec("httptools") is not None else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
    return uvicorn.Config(
        app,
        http=http,
        loop=loop,
        log_config=None,
        access_log=False,
        proxy_headers=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )


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
        self._serving = BackgroundServer(
            lambda: server_config(self.app),
            host=self._host,
            port=self._requested_port,
            name="webhook-receiver",
        )

    @property
    def port(self) -> int:
        """The bound port (only after :meth:`start`)."""
        return self._serving.port

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234``."""
        return self._serving.url

    def start(self, timeout_s: float = 10.0) -> None:
        """Bind, start serving on a daemon thread, return once uvicorn has started."""
        self._serving.start(timeout_s)
        log.info("webhook receiver listening", extra={"url": self.url})

    def stop(self) -> None:
        """Stop serving (in-flight requests finish), then close the producer if owned; idempotent."""
        self._serving.stop()
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
    sock = listen_socket(bind_host, port if port is not None else settings.service.http_port)
    return _serve_socket(settings, sock, None)


def _serve_socket(settings: Settings, sock: socket.socket, topics: Mapping[Entity, str] | None) -> int:
    """Serve on the bound ``sock`` until SIGINT/SIGTERM (main thread), then flush and close the producer."""
    producer = PipelineProducer(settings.kafka, client_id_suffix=STAGE)
    try:
        health = HealthState.from_settings(settings.service, STAGE)
        app = build_app(settings, producer, health, topics=topics)
        config = server_config(app)
        host, port = sock.getsockname()[:2]
        log.info(
            "webhook receiver starting",
            extra={"host": host, "port": port, "http": config.http, "loop": config.loop},
        )
        GracefulServer(config).run(sockets=[sock])
    finally:
        sock.close()
        undelivered = producer.close()
    return 0 if undelivered == 0 else 1


class ReceiverProcess:
    """The receiver in a child process of its own, for tests and the benchmark: the client that drives
    it then does not share the receiver's interpreter (one GIL, one core) or its event loop.

    The child is a fresh (spawned) interpreter running the production server (uvicorn main thread,
    signal handling, graceful shutdown, producer flush) on a port it binds itself. ``settings`` and
    ``topics`` are pickled to it as they are (secrets included: nothing is written anywhere).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        topics: Mapping[Entity, str] | None = None,
    ) -> None:
        self._settings = settings
        self._host = host
        self._requested_port = port
        self._topics = dict(topics) if topics is not None else None
        self._process: multiprocessing.process.BaseProcess | None = None
        self._port: int | None = None

    @property
    def pid(self) -> int:
        """The child's process id (only while running)."""
        if self._process is None or self._process.pid is None:
            raise RuntimeError("the receiver process is not running")
        return self._process.pid

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234`` (only after :meth:`start`)."""
        if self._port is None:
            raise RuntimeError("the receiver process is not running")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    @property
    def exitcode(self) -> int | None:
        """The child's exit code once stopped: 0 clean, 1 records left undelivered, else a crash."""
        return None if self._process is None else self._process.exitcode

    def start(self, timeout_s: float = 60.0) -> None:
        """Spawn the child and return once its ``/healthz`` answers 200 (raises RuntimeError if not)."""
        context = multiprocessing.get_context("spawn")
        parent_end, child_end = context.Pipe(duplex=False)
        process = context.Process(
            target=_child_main,
            args=(self._settings, self._host, self._requested_port, self._topics, child_end),
            name="webhook-receiver",
            daemon=True,
        )
        self._process = process
        process.start()
        child_end.close()
        deadline = time.monotonic() + timeout_s
        try:
            # The child sends its bound port, then starts serving; an EOF means it died first.
            if not parent_end.poll(timeout_s):
                raise RuntimeError("the webhook receiver process did not bind in time")
            self._port = int(parent_end.recv())
        except (EOFError, RuntimeError) as exc:
            self.stop()
            raise RuntimeError(f"the webhook receiver process did not start: {exc}") from exc
        finally:
            parent_end.close()
        while not _healthz_ok(self._host, self._port):
            if not process.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the webhook receiver process did not start serving")
            time.sleep(0.05)

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM (graceful: in-flight requests finish, the producer flushes), SIGKILL after
        ``timeout_s``; idempotent."""
        process = self._process
        if process is None or process.exitcode is not None:
            return
        process.terminate()
        process.join(timeout_s)
        if process.exitcode is None:
            process.kill()
            process.join(5)

    def __enter__(self) -> ReceiverProcess:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _child_main(
    settings: Settings,
    host: str,
    port: int,
    topics: Mapping[Entity, str] | None,
    report: multiprocessing.connection.Connection,
) -> None:
    """The child of :class:`ReceiverProcess`: bind, tell the parent the port, serve until SIGTERM."""
    configure_logging(settings.service, stage=STAGE, secrets=_secrets_to_mask(settings))
    sock = listen_socket(host, port)
    report.send(int(sock.getsockname()[1]))
    report.close()
    sys.exit(_serve_socket(settings, sock, topics))


def _healthz_ok(host: str, port: int) -> bool:
    connection = http.client.HTTPConnection(host, port, timeout=2)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def main(*, host: str | None = None, port: int | None = None) -> int:
    """``psinfor ingest prestashop-webhooks``: settings from the environment (``PSINFOR_KAFKA__*``,
    ``PSINFOR_WEBHOOKS__*``, ``PSINFOR_SERVICE__*``), logging, then :func:`serve`."""
    settings = load_settings()
    configure_logging(settings.service, stage=STAGE, secrets=_secrets_to_mask(settings))
    return serve(settings, host=host, port=port)


def _secrets_to_mask(settings: Settings) -> list[str]:
    webhooks = settings.require_webhooks()
    return settings.secret_values() + [s.get_secret_value() for s in webhooks.secret_list()]
