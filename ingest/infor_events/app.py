"""The IMS v3 receiver's HTTP face: the ION Messaging Service endpoints ION pushes to, probes, metrics.

ION's "ION Messaging Service v3" API suite points at ``{our base}/infor/ims`` (infor.md §4.4). Every IMS
endpoint requires ``Authorization: Bearer <token>`` with a configured token (compared in constant
time; 401 otherwise):

- ``GET  /infor/ims/service/ping``: reachability and authorisation check, 200;
- ``GET  /infor/ims/service/versions`` and ``GET /infor/ims/service/protocol``: what we speak
  (``multipartMessage``, ``v3``, no discovery);
- ``POST /infor/ims/service/v3/multipartMessage`` (alias ``v3/message/multipart``): one BOD. **202 only
  after the broker acknowledged its raw record** (``accepted``), or 202 ``duplicate`` when its BODID
  was already acknowledged by this process. Refusals carry ``{"error", "message", "hint"}``: 400 for a
  malformed message (see :mod:`ingest.infor_events.routing`), 412 for a document or logical id we do
  not route, 413 for an oversized body, 503 with ``Retry-After`` when Kafka did not acknowledge in time
  (ION keeps the message and retries), 500 when the broker refused the record for good.

``/healthz`` is liveness (the broker watcher runs), ``/readyz`` is 200 while the producer reaches the
broker, ``/metrics`` the Prometheus exposition; OpenAPI at ``/openapi.json`` and ``/docs``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, SecretStr
from starlette.requests import ClientDisconnect

from ingest.infor_events.routing import SOURCE, ImsRouter, RawBod, Refusal
from pipeline.dedupe import DeliveryDeduper
from pipeline.errors import ProduceError, RetryableError
from pipeline.health import HealthState, metrics_exposition
from pipeline.log import correlation_scope
from pipeline.metrics import WEBHOOK_PRODUCE_SECONDS, WEBHOOK_REQUESTS
from pipeline.push_ingest import AckingProducer, read_capped, watch_broker

log = logging.getLogger(__name__)

IMS_BASE = "/infor/ims/service"
MULTIPART_PATHS = (f"{IMS_BASE}/v3/multipartMessage", f"{IMS_BASE}/v3/message/multipart")


class Accepted(BaseModel):
    """The 202 answer: the BOD is on its raw topic (or already was, for a duplicate)."""

    status: str = Field(description="accepted (written now) or duplicate (BODID already written).")
    message_id: str = Field(description="The IMS messageId the answer is about.")
    bodid: str = Field(description="The BOD's ApplicationArea/BODID.")
    correlation_id: str | None = Field(None, description="Correlation id stamped on the record.")
    topic: str | None = Field(None, description="Raw topic written to (accepted only).")
    partition: int | None = Field(None, description="Partition of the record (accepted only).")
    offset: int | None = Field(None, description="Offset of the record (accepted only).")


class ErrorBody(BaseModel):
    """Every refusal: what is wrong and what to do."""

    error: str = Field(description="Short reason code, e.g. malformed_xml, unexpected_document.")
    message: str = Field(description="What is wrong with this message.")
    hint: str = Field(description="What the sender (or ION's administrator) should do about it.")


_AUTH_REFUSAL: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing or unknown bearer token."},
}
_REFUSALS: dict[int | str, dict[str, Any]] = {
    **_AUTH_REFUSAL,
    400: {"model": ErrorBody, "description": "Malformed multipart, parameters, encoding or BOD XML."},
    412: {"model": ErrorBody, "description": "A documentName or toLogicalId this receiver does not route."},
    413: {"model": ErrorBody, "description": "Body larger than the configured limit."},
    503: {
        "model": ErrorBody,
        "description": "Kafka did not acknowledge in time; retry after the Retry-After header's seconds.",
    },
}
_MULTIPART_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "IMS v3 message: ParameterRequest (JSON) and MessagePayload (the encoded BOD).",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["ParameterRequest", "MessagePayload"],
                    "properties": {
                        "ParameterRequest": {
                            "type": "string",
                            "description": "JSON: documentName, messageId, fromLogicalId, toLogicalId, "
                            "encoding (NONE|BASE64|DEFLATE), characterSet, documentId, accountingEntity.",
                        },
                        "MessagePayload": {"type": "string", "format": "binary"},
                    },
                }
            }
        },
    }
}


def _answer(
    status: int, outcome: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Response:
    WEBHOOK_REQUESTS.labels(SOURCE, str(status), outcome).inc()
    return JSONResponse(body, status_code=status, headers=headers)


class _Unauthorised(Exception):
    """Raised by the auth dependency; answered 401 by the app's handler."""


def bearer_matches(authorization: str | None, tokens: Sequence[SecretStr]) -> bool:
    """True when ``authorization`` is ``Bearer <t>`` with ``t`` one of ``tokens``.

    Every configured token is compared, in constant time, whatever matched: the answer's timing says
    nothing about the token.
    """
    scheme, _, presented = (authorization or "").partition(" ")
    candidate = presented.strip().encode()
    matched = False
    for token in tokens:
        matched |= hmac.compare_digest(candidate, token.get_secret_value().encode())
    return matched and scheme.lower() == "bearer" and bool(candidate)


def create_app(
    router: ImsRouter,
    producer: AckingProducer,
    *,
    tokens: Sequence[SecretStr],
    health: HealthState,
    deduper: DeliveryDeduper,
    ack_timeout_s: float,
    retry_after_s: int,
    readiness_interval_s: float = 2.0,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """The FastAPI app; the caller owns ``producer`` (builds it once, closes it after the server)."""
    if not tokens:
        raise ValueError("the IMS receiver needs at least one bearer token")
    token_list = list(tokens)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        watcher = asyncio.create_task(
            watch_broker(
                producer,
                health,
                readiness_interval_s,
                not_ready_reason="Kafka is not reachable: IMS messages get 503",
            )
        )
        try:
            yield
        finally:
            health.set_ready(False, "shutting down")
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    app = FastAPI(title="psinfor Infor IMS v3 receiver", description=__doc__, version="1", lifespan=lifespan)

    @app.exception_handler(_Unauthorised)
    async def unauthorised(_request: Request, _exc: _Unauthorised) -> Response:
        return _answer(
            401,
            "unauthorised",
            {
                "error": "unauthorised",
                "message": "missing or unknown bearer token",
                "hint": "configure the API suite's authorisation with a token from "
                "PSINFOR_INFOR_EVENTS__TOKENS (Authorization: Bearer <token>)",
            },
            {"WWW-Authenticate": 'Bearer realm="psinfor-ims"'},
        )

    async def authorised(request: Request) -> None:
        if not bearer_matches(request.headers.get("authorization"), token_list):
            raise _Unauthorised

    ims = APIRouter(dependencies=[Depends(authorised)], tags=["ION Messaging Service v3"])

    @ims.get(
        f"{IMS_BASE}/ping", summary="ION's reachability and authorisation check", responses=_AUTH_REFUSAL
    )
    async def ping() -> dict[str, str]:
        return {"status": "OK"}

    @ims.get(f"{IMS_BASE}/versions", summary="IMS versions served", responses=_AUTH_REFUSAL)
    async def versions() -> dict[str, list[str]]:
        return {"versions": ["v3"]}

    @ims.get(f"{IMS_BASE}/protocol", summary="How ION should deliver", responses=_AUTH_REFUSAL)
    async def protocol() -> dict[str, object]:
        return {"messageMethod": "multipartMessage", "version": "v3", "hasDiscovery": False}

    async def produce(record: RawBod) -> tuple[int, int]:
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

    async def receive(request: Request) -> Response:
        """Parse, route, dedupe on BODID and write the BOD to ``raw.infor.<noun>``; 202 after the ack."""
        content_type = request.headers.get("content-type", "")
        try:
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > router.max_body_bytes:
                raise router.too_large(int(declared))
            body = await read_capped(request, router.max_body_bytes, router.too_large)
            record = router.decide(content_type, body, request.headers, clock())
        except Refusal as refusal:
            log.info("IMS message refused", extra={"status": refusal.status, "reason": refusal.reason})
            return _answer(refusal.status, refusal.reason, refusal.body())
        except ClientDisconnect:
            WEBHOOK_REQUESTS.labels(SOURCE, "499", "client_disconnected").inc()
            return Response(status_code=499)

        with correlation_scope(record.correlation_id):
            try:
                once = await deduper.once(record.dedupe_key, lambda: produce(record))
            except RetryableError as exc:
                log.warning("BOD not acknowledged by Kafka", extra={"topic": record.topic, "error": str(exc)})
                return _answer(
                    503,
                    "kafka_unavailable",
                    {
                        "error": "kafka_unavailable",
                        "message": f"the message was not stored: {exc}",
                        "hint": f"retry the same message after {retry_after_s} s",
                    },
                    {"Retry-After": str(retry_after_s)},
                )
            except ProduceError as exc:
                log.error("BOD refused by Kafka", extra={"topic": record.topic, "error": str(exc)})
                return _answer(
                    500,
                    "kafka_refused",
                    {
                        "error": "kafka_refused",
                        "message": f"the broker refused the record: {exc}",
                        "hint": "the receiver's operators must fix the topic or broker configuration",
                    },
                )
        answer: dict[str, Any] = {
            "message_id": record.message_id,
            "bodid": record.bodid,
            "correlation_id": record.correlation_id,
        }
        if once.duplicate or once.result is None:
            return _answer(202, "duplicate", {"status": "duplicate", **answer})
        partition, offset = once.result
        return _answer(
            202,
            "accepted",
            {"status": "accepted", **answer, "topic": record.topic, "partition": partition, "offset": offset},
        )

    for path in MULTIPART_PATHS:
        ims.add_api_route(
            path,
            receive,
            methods=["POST"],
            status_code=202,
            summary="Receive one IMS v3 multipart message (a BOD)",
            response_model=Accepted,
            responses=_REFUSALS,
            openapi_extra=_MULTIPART_BODY,
        )
    app.include_router(ims)

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
