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
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.requests import ClientDisconnect

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
from pipeline.producer import HeaderList

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/prestashop/{shop_key}"


class AckingProducer(Protocol):
    """What the app needs from the producer (``pipeline.producer.PipelineProducer`` provides it)."""

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
    503: {
        "model": ErrorBody,
        "description": "Kafka did not acknowledge in time; retry after the Retry-After header's seconds.",
    },
}


def _answer(
    status: int, outcome: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Response:
    WEBHOOK_REQUESTS.labels(SOURCE, str(status), outcome).inc()
    return JSONResponse(body, status_code=status, headers=headers)


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
) -> FastAPI:
    """The FastAPI app; the caller owns ``producer`` (builds it once, closes it after the server)."""

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

    async def produce(record: RawRecord) -> tuple[int, int]:
        started = time.perf_counter()
        outcome = "acked"
        try:
            return await producer.produce_acked(
                record.topic, record.key, record.value, record.headers, ack_timeout_s=ack_timeout_s
            )
        except RetryableError:
            outcome = "unavailable"
            raise
        except ProduceError:
            outcome = "refused"
            raise
        finally:
            WEBHOOK_PRODUCE_SECONDS.labels(SOURCE, outcome).observe(time.perf_counter() - started)

    @app.post(
        WEBHOOK_PATH,
        summary="Receive one signed PrestaShop webhook",
        response_model=Accepted,
        responses=_REFUSALS,
        openapi_extra=_OPENAPI_EXTRA,
    )
    async def receive(shop_key: str, request: Request) -> Response:
        """Verify, dedupe and write the raw body to ``raw.prestashop.<entity>``; 2xx only after the ack."""
        headers = request.headers
        try:
            receiver.check_shop(shop_key)
            receiver.check_declared(headers.get("content-type"), headers.get("content-length"))
            body = await _read_capped(request, receiver)
            record = receiver.decide(shop_key, headers, body, clock())
        except Refusal as refusal:
            log.info(
                "webhook refused",
                extra={"shop_key": shop_key[:64], "status": refusal.status, "reason": refusal.reason},
            )
            return _answer(refusal.status, refusal.reason, refusal.body())
        except ClientDisconnect:
            WEBHOOK_REQUESTS.labels(SOURCE, "499", "client_disconnected").inc()
            return Response(status_code=499)

        with correlation_scope(record.correlation_id):
            position: tuple[int, int] | None
            try:
                if record.webhook_id is None:
                    once_duplicate, position = False, await produce(record)
                else:
                    once = await deduper.once(f"{shop_key}\x00{record.webhook_id}", lambda: produce(record))
                    once_duplicate, position = once.duplicate, once.result
            except RetryableError as exc:
                log.warning(
                    "webhook not acknowledged by Kafka", extra={"topic": record.topic, "error": str(exc)}
                )
                return _answer(
                    503,
                    "kafka_unavailable",
                    {
                        "error": "kafka_unavailable",
                        "message": f"the event was not stored: {exc}",
                        "hint": f"retry the same request (same webhook-id) after {retry_after_s} s",
                    },
                    {"Retry-After": str(retry_after_s)},
                )
            except ProduceError as exc:
                log.error("webhook refused by Kafka", extra={"topic": record.topic, "error": str(exc)})
                return _answer(
                    500,
                    "kafka_refused",
                    {
                        "error": "kafka_refused",
                        "message": f"the broker refused the record: {exc}",
                        "hint": "the receiver's operators must fix the topic or broker configuration",
                    },
                )
        if once_duplicate or position is None:
            return _answer(200, "duplicate", {"status": "duplicate", "webhook_id": record.webhook_id})
        partition, offset = position
        return _answer(
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

    return app


async def _read_capped(request: Request, receiver: WebhookReceiver) -> bytes:
    """The body, refused with 413 as soon as it grows past the limit (never read further)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > receiver.max_body_bytes:
            raise receiver.too_large(size)
        chunks.append(chunk)
    return b"".join(chunks)


async def _watch_broker(producer: AckingProducer, health: HealthState, interval_s: float) -> None:
    """Heartbeat and readiness: ready while the broker answers a metadata request."""
    while True:
        reachable = await asyncio.to_thread(producer.broker_reachable, max(0.5, interval_s))
        health.heartbeat()
        health.set_ready(reachable, "" if reachable else "Kafka is not reachable: webhooks get 503")
        await asyncio.sleep(interval_s)
