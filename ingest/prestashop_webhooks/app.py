"""The receiver's HTTP face: ``POST /webhooks/prestashop/{shop_key}``, probes, metrics, OpenAPI.

A webhook is answered 2xx only after the broker acknowledged *its* record (``acks=all``): 200
``accepted`` with the record's position, or 200 ``duplicate`` when its ``webhook-id`` was already
acknowledged. Refusals are 4xx with a JSON body ``{"error", "message", "hint"}`` (see
:mod:`ingest.prestashop_webhooks.receiver` for the checks). When Kafka does not acknowledge in time
(or is unreachable) the answer is 503 with ``Retry-After``: the sender keeps the event and retries.

``/healthz`` is liveness (the readiness loop below is running), ``/readyz`` is 200 while the producer
reaches the broker (checked every ``readiness_interval_s``), ``/metrics`` the Prometheus exposition;
the OpenAPI document is at ``/openapi.json`` and rendered at ``/docs``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client.metrics import Counter as CounterChild
from pydantic import BaseModel, Field
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from ingest.prestashop_webhooks.dedupe import WebhookDeduper
from ingest.prestashop_webhooks.receiver import (
    CORRELATION_HEADER,
    RESOURCE_ENTITIES,
    SOURCE,
    RawRecord,
    Refusal,
    WebhookReceiver,
)
from pipeline.errors import ProduceError, RetryableError
from pipeline.health import HealthState, metrics_exposition
from pipeline.log import correlation_scope
from pipeline.metrics import WEBHOOK_PRODUCE_SECONDS, WEBHOOK_REQUESTS
from pipeline.push_ingest import AckingProducer

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/prestashop/{shop_key}"
_WEBHOOK_PREFIX = WEBHOOK_PATH.removesuffix("{shop_key}")


class Accepted(BaseModel):
    """The 200 answer: the record is on the raw topic (or was already, for a duplicate)."""

    status: str = Field(description="accepted (written now) or duplicate (webhook-id already written).")
    webhook_id: str | None = Field(description="The webhook-id the answer is about.")
    correlation_id: str | None = Field(None, description="Correlation id stamped on the record.")
    topic: str | None = Field(None, description="Raw topic written to (accepted only).")
    partition: int | None = Field(None, description="Partition of the record (accepted only).")
    offset: int | None = Field(None, description="Offset of the record (accepted only).")


class ErrorBody(BaseModel):
    """Every refusal: what is wrong and what to do."""

    error: str = Field(description="Short reason code, e.g. signature_mismatch, payload_too_large.")
    message: str = Field(description="What is wrong with this request.")
    hint: str = Field(description="What the sender should do about it.")


_REQUEST_BODY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "resource"],
    "properties": {
        "id": {"type": "string", "description": "Same as the webhook-id header."},
        "type": {"type": "string", "example": "order.status_changed"},
        "occurred_at": {"type": "string", "format": "date-time"},
        "shop": {"type": "object"},
        "source_hook": {"type": "string", "example": "actionOrderStatusPostUpdate"},
        "resource": {
            "type": "object",
            "required": ["type", "id"],
            "properties": {
                "type": {"type": "string", "enum": sorted(RESOURCE_ENTITIES)},
                "id": {"type": "integer", "minimum": 1},
            },
        },
        "data": {"type": "object"},
        "ps_version": {"type": "string"},
    },
}


def _header(name: str, description: str, required: bool = False) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": required,
        "schema": {"type": "string"},
        "description": description,
    }


_OPENAPI_EXTRA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The event, signed byte for byte; it is written to Kafka unchanged.",
        "content": {"application/json": {"schema": _REQUEST_BODY_SCHEMA}},
    },
    "parameters": [
        _header("webhook-id", "Stable across the sender's retries; the dedupe key."),
        _header(
            "webhook-timestamp", "Unix seconds; at most the tolerance (300 s) from the receiver's clock."
        ),
        _header(
            "webhook-signature", "v1,<base64 HMAC-SHA256(secret, id.timestamp.body)>, space-separated list."
        ),
        _header("x-ps-signature", "Legacy alias sha256=<hex HMAC-SHA256(secret, body)>, when enabled."),
        _header(CORRELATION_HEADER, "Optional correlation id to carry along; a new UUID otherwise."),
    ],
}

_REFUSALS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Malformed JSON, missing type/resource, unknown resource."},
    401: {"model": ErrorBody, "description": "Missing or bad signature, stale timestamp, unknown shop key."},
    413: {"model": ErrorBody, "description": "Body larger than the configured limit."},
    415: {"model": ErrorBody, "description": "Content type is not JSON."},
    500: {
        "model": ErrorBody,
        "description": "The broker refused the record for good (e.g. too large for the topic).",
    },
    503: {
        "model": ErrorBody,
        "description": "Kafka did not acknowledge in time; retry after the Retry-After header's seconds.",
        "headers": {
            "Retry-After": {
                "description": "Seconds to wait before retrying the same request (same webhook-id).",
                "schema": {"type": "integer"},
            }
        },
    },
}


class WebhookEndpoint:
    """The webhook route's work, independent of the framework: check, read, decide, produce, answer.

    :meth:`asgi` serves it straight from the ASGI server (the hot path, see :class:`ReceiverApp`);
    :meth:`starlette` serves the same code from the FastAPI route that documents it. Both give the
    same answers, byte for byte.
    """

    def __init__(
        self,
        receiver: WebhookReceiver,
        producer: AckingProducer,
        *,
        deduper: WebhookDeduper,
        ack_timeout_s: float,
        retry_after_s: int,
        clock: Callable[[], float],
    ) -> None:
        self._receiver = receiver
        self._producer = producer
        self._deduper = deduper
        self._ack_timeout_s = ack_timeout_s
        self._retry_after_s = retry_after_s
        self._clock = clock
        # Metric children looked up once per label set (the sets are bounded: statuses x reason codes).
        self._answered: dict[tuple[int, str], CounterChild] = {}
        self._produce_seconds = {
            outcome: WEBHOOK_PRODUCE_SECONDS.labels(SOURCE, outcome)
            for outcome in ("acked", "unavailable", "refused", "error")
        }
        self._retry_after = str(retry_after_s).encode()

    async def asgi(self, shop_key: str, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ``POST /webhooks/prestashop/{shop_key}`` on the raw ASGI interface."""
        # Like Starlette's Headers.get: names are lower case (ASGI), the first of repeated ones wins.
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            name = raw_name.decode("latin-1")
            if name not in headers:
                headers[name] = raw_value.decode("latin-1")
        try:
            status, body, extra = await self.handle(shop_key, headers, _asgi_body(receive))
        except ClientDisconnect:
            self._count(499, "client_disconnected")
            return
        response_headers = [
            (b"content-length", str(len(body)).encode()),
            (b"content-type", b"application/json"),
            *extra,
        ]
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": body})

    async def starlette(self, shop_key: str, request: Request) -> Response:
        """Serve one request that reached the FastAPI route (same answers as :meth:`asgi`)."""
        try:
            status, body, extra = await self.handle(shop_key, request.headers, request.stream())
        except ClientDisconnect:
            self._count(499, "client_disconnected")
            return Response(status_code=499)
        response = Response(body, status_code=status, media_type="application/json")
        for name, value in extra:
            response.headers[name.decode("latin-1")] = value.decode("latin-1")
        return response

    async def handle(
        self, shop_key: str, headers: Mapping[str, str], chunks: AsyncIterator[bytes]
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        """``(status, JSON body, extra headers)`` for one webhook; 2xx only after the broker's ack.

        Raises ``ClientDisconnect`` when the sender went away before its body was read.
        """
        receiver = self._receiver
        try:
            receiver.check_shop(shop_key)
            receiver.check_declared(headers.get("content-type"), headers.get("content-length"))
            body = await _read_capped(chunks, receiver)
            record = receiver.decide(shop_key, headers, body, self._clock())
        except Refusal as refusal:
            # Refusals are counted by reason; a log line per refused request would let a misconfigured
            # sender flood the logs, so the details are there only at DEBUG.
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "webhook refused",
                    extra={"shop_key": shop_key[:64], "status": refusal.status, "reason": refusal.reason},
                )
            return self._answer(refusal.status, refusal.reason, refusal.body())

        position: tuple[int, int] | None
        try:
            if record.webhook_id is None:
                once_duplicate, position = False, await self._produce(record)
            else:
                once = await self._deduper.once(
                    f"{shop_key}\x00{record.webhook_id}", lambda: self._produce(record)
                )
                once_duplicate, position = once.duplicate, once.result
        except RetryableError as exc:
            # The correlation scope only where a line is written: entering it per request was a
            # measurable share of the request's CPU, and the success path logs nothing.
            with correlation_scope(record.correlation_id):
                log.warning(
                    "webhook not acknowledged by Kafka", extra={"topic": record.topic, "error": str(exc)}
                )
            return self._answer(
                503,
                "kafka_unavailable",
                {
                    "error": "kafka_unavailable",
                    "message": f"the event was not stored: {exc}",
                    "hint": f"retry the same request (same webhook-id) after {self._retry_after_s} s",
                },
                [(b"retry-after", self._retry_after)],
            )
        except ProduceError as exc:
            with correlation_scope(record.correlation_id):
                log.error("webhook refused by Kafka", extra={"topic": record.topic, "error": str(exc)})
            return self._answer(
                500,
                "kafka_refused",
                {
                    "error": "kafka_refused",
                    "message": f"the broker refused the record: {exc}",
                    "hint": "the receiver's operators must fix the topic or broker configuration",
                },
            )
        if once_duplicate or position is None:
            return self._answer(200, "duplicate", {"status": "duplicate", "webhook_id": record.webhook_id})
        partition, offset = position
        return self._answer(
            200,
            "accepted",
            {
                "status": "accepted",
                "webhook_id": record.webhook_id,
                "correlation_id": record.correlation_id,
                "topic": record.topic,
                "partition": partition,
                "offset": offset,
            },
        )

    async def _produce(self, record: RawRecord) -> tuple[int, int]:
        started = time.perf_counter()
        outcome = "error"
        try:
            position = await self._producer.produce_acked(
                record.topic, record.key, record.value, record.headers, ack_timeout_s=self._ack_timeout_s
            )
        except RetryableError:
            outcome = "unavailable"
            raise
        except ProduceError:
            outcome = "refused"
            raise
        else:
            outcome = "acked"
            return position
        finally:
            self._produce_seconds[outcome].observe(time.perf_counter() - started)

    def _answer(
        self,
        status: int,
        outcome: str,
        body: Mapping[str, object],
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        self._count(status, outcome)
        return status, orjson.dumps(body), headers or []

    def _count(self, status: int, outcome: str) -> None:
        child = self._answered.get((status, outcome))
        if child is None:
            child = self._answered[(status, outcome)] = WEBHOOK_REQUESTS.labels(SOURCE, str(status), outcome)
        child.inc()


class ReceiverApp:
    """The ASGI application uvicorn serves: ``POST /webhooks/prestashop/{shop_key}`` goes straight to
    :meth:`WebhookEndpoint.asgi`; every other request (probes, metrics, OpenAPI, 404/405s) and the
    lifespan go to :attr:`fastapi`.

    Why not only FastAPI: its middleware stack, routing and per-request dependency solving cost more
    CPU than the webhook's own work (verification, parsing, producing); measured with
    ``python -m bench.webhooks``. The FastAPI app still declares the route (same handler), so the
    OpenAPI document describes exactly what is served.
    """

    def __init__(self, endpoint: WebhookEndpoint, fastapi: FastAPI) -> None:
        self.endpoint = endpoint
        self.fastapi = fastapi

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            root_path: str = scope.get("root_path", "")
            if root_path and path.startswith(root_path + "/"):
                path = path[len(root_path) :]
            if path.startswith(_WEBHOOK_PREFIX):
                shop_key = path[len(_WEBHOOK_PREFIX) :]
                # The same paths Starlette's {shop_key} matches: one non-empty segment.
                if shop_key and "/" not in shop_key:
                    await self.endpoint.asgi(shop_key, scope, receive, send)
                    return
        await self.fastapi(scope, receive, send)


def create_app(
    receiver: WebhookReceiver,
    producer: AckingProducer,
    *,
    health: HealthState,
    deduper: WebhookDeduper,
    ack_timeout_s: float,
    retry_after_s: int,
    readiness_interval_s: float = 2.0,
    clock: Callable[[], float] = time.time,
) -> ReceiverApp:
    """The receiver's ASGI app; the caller owns ``producer`` (builds it once, closes it after the server)."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        checker = asyncio.create_task(_watch_broker(producer, health, readiness_interval_s))
        try:
            yield
        finally:
            health.set_ready(False, "shutting down")
            checker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await checker

    app = FastAPI(
        title="psinfor PrestaShop webhook receiver",
        description=__doc__,
        version="1",
        lifespan=lifespan,
    )
    endpoint = WebhookEndpoint(
        receiver,
        producer,
        deduper=deduper,
        ack_timeout_s=ack_timeout_s,
        retry_after_s=retry_after_s,
        clock=clock,
    )

    @app.post(
        WEBHOOK_PATH,
        summary="Receive one signed PrestaShop webhook",
        response_model=Accepted,
        responses=_REFUSALS,
        openapi_extra=_OPENAPI_EXTRA,
    )
    async def receive(shop_key: str, request: Request) -> Response:
        """Verify, dedupe and write the raw body to ``raw.prestashop.<entity>``; 2xx only after the ack."""
        return await endpoint.starlette(shop_key, request)

    @app.get("/healthz", summary="Liveness", tags=["operations"])
    async def healthz() -> Response:
        result = health.liveness()
        return JSONResponse(result.body, status_code=result.status_code)

    @app.get("/readyz", summary="Readiness: the producer reaches the broker", tags=["operations"])
    async def readyz() -> Response:
        result = health.readiness()
        return JSONResponse(result.body, status_code=result.status_code)

    @app.get("/metrics", summary="Prometheus metrics", tags=["operations"])
    async def metrics() -> Response:
        payload, content_type = metrics_exposition()
        return Response(payload, media_type=content_type)

    return ReceiverApp(endpoint, app)


async def _asgi_body(receive: Receive) -> AsyncIterator[bytes]:
    """The request body's chunks from ASGI messages; ``ClientDisconnect`` if the sender went away."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunk: bytes = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def _read_capped(chunks: AsyncIterator[bytes], receiver: WebhookReceiver) -> bytes:
    """The body, refused with 413 as soon as it grows past the limit (never read further)."""
    first = b""
    rest: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > receiver.max_body_bytes:
            raise receiver.too_large(size)
        # Most bodies arrive in one chunk: keep it as is instead of joining a list of one.
        if not first:
            first = chunk
        else:
            rest.append(chunk)
    return first + b"".join(rest) if rest else first


async def _watch_broker(producer: AckingProducer, health: HealthState, interval_s: float) -> None:
    """Heartbeat and readiness: ready while the broker answers a metadata request."""
    while True:
        reachable = await asyncio.to_thread(producer.broker_reachable, max(0.5, interval_s))
        health.heartbeat()
        health.set_ready(reachable, "" if reachable else "Kafka is not reachable: webhooks get 503")
        await asyncio.sleep(interval_s)
