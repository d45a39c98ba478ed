"""Running the IMS receiver: from settings to a listening uvicorn server with its one producer.

``main()`` (behind ``psinfor ingest infor-events``) runs it in the foreground until SIGINT or SIGTERM.
:class:`ImsReceiverServer` runs the same app on a background thread (tests, ``dev up``):
``with ImsReceiverServer(settings) as server: post(server.multipart_url, ...)``.

One process = one event loop, one :class:`~pipeline.producer.PipelineProducer` (shared by every
request), one BODID dedupe memory. Shutdown stops accepting requests, lets the in-flight ones finish,
then flushes and closes the producer.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import TracebackType

import uvicorn
from fastapi import FastAPI

from ingest.infor_events.app import IMS_BASE, MULTIPART_PATHS, create_app
from ingest.infor_events.routing import ImsRouter, InforEntity, raw_topics
from pipeline.dedupe import DeliveryDeduper
from pipeline.health import HealthState
from pipeline.log import configure_logging
from pipeline.producer import PipelineProducer
from pipeline.push_ingest import AckingProducer, BackgroundServer, GracefulServer, listen_socket
from pipeline.settings import Settings, load_settings
from schemas.catalogue import load_catalogue

log = logging.getLogger(__name__)

STAGE = "ingest-infor-events"

PRODUCER_OVERRIDES: dict[str, str | int | float | bool] = {"linger.ms": 0}
"""ION's IMS pushes one message at a time per connection point and waits for our answer: there is
nothing to batch with, so lingering would only add its delay to every message's round trip."""


def build_app(
    settings: Settings,
    producer: AckingProducer,
    health: HealthState,
    *,
    topics: Mapping[InforEntity, str] | None = None,
) -> FastAPI:
    """The receiver app wired from ``settings``; raw topics from the catalogue plus the settings'
    prefix unless ``topics`` names them (tests give each run its own topics)."""
    events = settings.infor_events
    tokens = settings.require_ims_tokens()
    router = ImsRouter(
        topics=topics if topics is not None else raw_topics(load_catalogue(), events.topic_prefix),
        accepted_documents=events.accepted_document_set(),
        to_logical_ids=events.to_logical_id_set(),
        max_body_bytes=events.max_body_bytes,
    )
    deduper = DeliveryDeduper(window_s=events.dedupe_window_s, max_entries=events.dedupe_max_entries)
    return create_app(
        router,
        producer,
        tokens=tokens,
        health=health,
        deduper=deduper,
        ack_timeout_s=events.ack_timeout_s,
        retry_after_s=events.retry_after_s,
    )


def _uvicorn_config(app: FastAPI) -> uvicorn.Config:
    return uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=10)


class ImsReceiverServer:
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
        topics: Mapping[InforEntity, str] | None = None,
    ) -> None:
        self._host = host if host is not None else settings.service.http_host
        self._requested_port = port if port is not None else settings.service.http_port
        self._own_producer = producer is None
        self.producer = producer or PipelineProducer(
            settings.kafka, client_id_suffix=STAGE, overrides=PRODUCER_OVERRIDES
        )
        self.health = HealthState.from_settings(settings.service, STAGE)
        self.app = build_app(settings, self.producer, self.health, topics=topics)
        self._serving = BackgroundServer(
            lambda: _uvicorn_config(self.app), host=self._host, port=self._requested_port, name="IMS receiver"
        )

    @property
    def port(self) -> int:
        """The bound port (only after :meth:`start`)."""
        return self._serving.port

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234``."""
        return self._serving.url

    @property
    def service_url(self) -> str:
        """The IMS suite's base (``.../infor/ims/service``)."""
        return self.url + IMS_BASE

    @property
    def multipart_url(self) -> str:
        """Where ION posts v3 multipart messages."""
        return self.url + MULTIPART_PATHS[0]

    def start(self, timeout_s: float = 10.0) -> None:
        """Bind, start serving on a daemon thread, return once uvicorn has started."""
        self._serving.start(timeout_s)
        log.info("IMS receiver listening", extra={"url": self.url})

    def stop(self) -> None:
        """Stop serving (in-flight requests finish), then close the producer if owned; idempotent."""
        self._serving.stop()
        if self._own_producer:
            self.producer.close()

    def __enter__(self) -> ImsReceiverServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def main(*, host: str | None = None, port: int | None = None) -> int:
    """Run the receiver in the foreground until SIGINT/SIGTERM; returns the exit code.

    Settings come from the environment (``PSINFOR_KAFKA__*``, ``PSINFOR_INFOR_EVENTS__*``,
    ``PSINFOR_SERVICE__*``); ``host``/``port`` override ``service.http_host``/``http_port``.
    """
    settings = load_settings()
    settings.require_ims_tokens()
    configure_logging(settings.service, stage=STAGE, secrets=settings.secret_values())
    bind_host = host if host is not None else settings.service.http_host
    sock = listen_socket(bind_host, port if port is not None else settings.service.http_port)
    producer = PipelineProducer(settings.kafka, client_id_suffix=STAGE, overrides=PRODUCER_OVERRIDES)
    try:
        health = HealthState.from_settings(settings.service, STAGE)
        app = build_app(settings, producer, health)
        log.info("IMS receiver starting", extra={"host": bind_host, "port": sock.getsockname()[1]})
        GracefulServer(_uvicorn_config(app)).run(sockets=[sock])
    finally:
        sock.close()
        undelivered = producer.close()
    return 0 if undelivered == 0 else 1
