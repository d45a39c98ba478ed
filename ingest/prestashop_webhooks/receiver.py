"""The pure decision of the webhook receiver: one request in, one raw record (or one refusal) out.

No I/O here: the HTTP layer (:mod:`ingest.prestashop_webhooks.app`) reads the body, calls
:meth:`WebhookReceiver.decide`, and either answers the :class:`Refusal` or produces the
:class:`RawRecord` and answers once the broker acknowledged it.

Checks, in the order a request meets them (cheap and unauthenticated first, so a stranger learns
nothing and costs little):

1. the shop key in the path is one we serve (else 401 ``unknown_shop``);
2. the declared size fits (``Content-Length``; else 413 before the body is read) and the content
   type is JSON (else 415);
3. the signature over the raw bytes: Standard Webhooks ``webhook-signature`` (several secrets for
   rotation, timestamp tolerance), or the legacy ``X-PS-Signature`` when enabled (else 401 with the
   signature module's reason code);
4. the body parses as JSON and names an event ``type`` and a ``resource`` ``{type, id}`` we route
   (else 400). A ps_webhooks-style body (``{"action", "entity", "data": {"id"}}``) is accepted too.

The record value is the request body, byte for byte. Its key is ``<shop_id>:<resource>:<id>`` (the
numeric shop id the URL's shop key maps to, and the webservice resource name), exactly as the poller keys
its snapshots, so every change of one entity, from either path, stays in order on one partition; its
headers carry the provenance listed in :data:`RECORD_HEADERS`.
"""

from __future__ import annotations

import json
import random
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import orjson
from pydantic import SecretStr

from connectors.prestashop.webhook_signature import SignatureRejectedError, verify_request
from schemas.catalogue import Catalogue

SOURCE = "prestashop-webhook"
"""The ``source`` header of every record this receiver writes."""

CORRELATION_HEADER = "x-correlation-id"
"""A sender may pass its own correlation id in this request header; otherwise a new UUID is used."""

RECORD_HEADERS = (
    "source",
    "event_type",
    "webhook_id",
    "received_at",
    "content_type",
    "correlation_id",
    "shop_key",
    "shop_id",
)
"""Kafka headers of each raw record, in this order (``webhook_id`` only when the sender gave one)."""

_JSON_TYPE = re.compile(r"^application/(?:[\w.+-]+\+)?json$")
_CORRELATION = re.compile(r"^[\x21-\x7e]{1,128}$")
_RESOURCE_ID = re.compile(r"^[1-9][0-9]{0,19}$")


class Entity(StrEnum):
    """The raw PrestaShop topics' entity families (``raw.prestashop.<entity>``)."""

    ORDERS = "orders"
    CUSTOMERS = "customers"
    PRODUCTS = "products"
    STOCK = "stock"


RESOURCE_ENTITIES: Mapping[str, Entity] = {
    "orders": Entity.ORDERS,
    "order_histories": Entity.ORDERS,
    "order_carriers": Entity.ORDERS,
    "order_details": Entity.ORDERS,
    "order_payments": Entity.ORDERS,
    "order_invoices": Entity.ORDERS,
    "customers": Entity.CUSTOMERS,
    "addresses": Entity.CUSTOMERS,
    "products": Entity.PRODUCTS,
    "combinations": Entity.PRODUCTS,
    "stock_availables": Entity.STOCK,
}
"""Webservice resource (the body's ``resource.type``) → the topic family it is written to."""

# ps_webhooks names the ObjectModel class; its webservice resource is what the key and routing use.
_PS_WEBHOOKS_RESOURCES: Mapping[str, str] = {
    "Order": "orders",
    "OrderHistory": "order_histories",
    "OrderCarrier": "order_carriers",
    "OrderDetail": "order_details",
    "OrderPayment": "order_payments",
    "OrderInvoice": "order_invoices",
    "Customer": "customers",
    "Address": "addresses",
    "Product": "products",
    "Combination": "combinations",
    "StockAvailable": "stock_availables",
}


class Refusal(Exception):
    """The request is refused with ``status``; ``reason`` is a bounded code (metric label, JSON body).

    ``message`` says what is wrong, ``hint`` what the sender should do about it.
    """

    def __init__(self, status: int, reason: str, message: str, hint: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.hint = hint

    def body(self) -> dict[str, str]:
        """The JSON error body: ``{"error": reason, "message": ..., "hint": ...}``."""
        return {"error": self.reason, "message": self.message, "hint": self.hint}


@dataclass(frozen=True, slots=True)
class RawRecord:
    """What to produce for an accepted webhook: the body unchanged, its key, its provenance headers."""

    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    webhook_id: str | None
    """The sender's ``webhook-id`` (stable across its retries): the dedupe key; None when absent."""
    event_type: str
    entity: Entity
    correlation_id: str


def raw_topics(catalogue: Catalogue, prefix: str = "") -> dict[Entity, str]:
    """Each entity's raw topic as the catalogue names it, with ``prefix`` prepended.

    Raises KeyError when the catalogue lacks one of them (a broken catalogue, found at start-up).
    """
    return {entity: prefix + catalogue.topic(f"raw.prestashop.{entity.value}").name for entity in Entity}


def received_at_text(now: float) -> str:
    """``now`` (unix seconds) as ISO 8601 UTC with milliseconds, e.g. ``2025-01-31T12:00:00.123Z``."""
    return datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_correlation_id() -> str:
    """A random (version 4) UUID in its canonical text form.

    Built from the process's Mersenne Twister rather than ``os.urandom``: a correlation id only needs
    to be unique, not unpredictable, and the system call was a measurable share of a request.
    """
    return str(uuid.UUID(int=random.getrandbits(128), version=4))


class WebhookReceiver:
    """Validates and routes webhook requests; immutable, safe to share between concurrent requests."""

    def __init__(
        self,
        *,
        secrets: Sequence[SecretStr],
        shop_keys: Mapping[str, int],
        topics: Mapping[Entity, str],
        max_body_bytes: int,
        tolerance_s: float,
        accept_legacy: bool,
    ) -> None:
        missing = [entity.value for entity in Entity if entity not in topics]
        if missing:
            raise ValueError(f"no topic for entity {', '.join(missing)}")
        if not secrets:
            raise ValueError("at least one webhook secret is needed")
        self._secrets = list(secrets)
        self._shop_keys = dict(shop_keys)  # URL shop key -> numeric shop id
        self._topics = dict(topics)
        self.max_body_bytes = max_body_bytes
        self._tolerance_s = tolerance_s
        self._accept_legacy = accept_legacy

    def check_shop(self, shop_key: str) -> None:
        """Refuse (401) a shop key we do not serve; the same answer as a bad signature, on purpose."""
        if shop_key not in self._shop_keys:
            raise Refusal(
                401,
                "unknown_shop",
                f"shop key {shop_key[:64]!r} is not configured on this receiver",
                "check the URL: /webhooks/prestashop/{shop_key} with a key listed in the receiver's "
                "PSINFOR_WEBHOOKS__SHOP_KEYS",
            )

    def check_declared(self, content_type: str | None, content_length: str | None) -> None:
        """Refuse from the headers alone: 413 for a declared size over the limit, 415 for non-JSON."""
        declared = int(content_length) if content_length is not None and content_length.isdigit() else 0
        if declared > self.max_body_bytes:
            raise self._too_large(declared)
        media_type = (content_type or "").split(";", 1)[0].strip().lower()
        if not _JSON_TYPE.match(media_type):
            raise Refusal(
                415,
                "unsupported_media_type",
                f"content type {media_type or '(none)'!r} is not JSON",
                "send the event as a JSON body with Content-Type: application/json",
            )

    def too_large(self, size: int) -> Refusal:
        """The 413 refusal for a body of at least ``size`` bytes (raised by the caller's capped read)."""
        return self._too_large(size)

    def _too_large(self, size: int) -> Refusal:
        return Refusal(
            413,
            "payload_too_large",
            f"body of {size} bytes or more exceeds the limit of {self.max_body_bytes} bytes",
            "send a thin notification (type, resource, id); the pipeline re-reads the resource itself",
        )

    def decide(self, shop_key: str, headers: Mapping[str, str], body: bytes, now: float) -> RawRecord:
        """The record to produce for this request, or :class:`Refusal`; ``headers`` names are lower case.

        ``now`` is the receiver's unix time (for the timestamp tolerance and ``received_at``).
        """
        self.check_shop(shop_key)
        shop_id = self._shop_keys[shop_key]
        self.check_declared(headers.get("content-type"), None)
        if len(body) > self.max_body_bytes:
            raise self._too_large(len(body))
        self._verify(headers, body, now)
        resource, resource_id, event_type = _parse_event(body)
        entity = RESOURCE_ENTITIES.get(resource)
        if entity is None:
            raise Refusal(
                400,
                "unknown_resource",
                f"resource.type {resource[:64]!r} is not routed by this receiver",
                "use one of: " + ", ".join(sorted(RESOURCE_ENTITIES)),
            )
        webhook_id = headers.get("webhook-id") or None
        correlation_id = headers.get(CORRELATION_HEADER, "")
        if not _CORRELATION.match(correlation_id):
            correlation_id = new_correlation_id()
        record_headers: list[tuple[str, bytes]] = [
            ("source", SOURCE.encode()),
            ("event_type", event_type.encode()),
        ]
        if webhook_id is not None:
            record_headers.append(("webhook_id", webhook_id.encode()))
        record_headers += [
            ("received_at", received_at_text(now).encode()),
            ("content_type", headers.get("content-type", "").encode()),
            ("correlation_id", correlation_id.encode()),
            ("shop_key", shop_key.encode()),
            ("shop_id", str(shop_id).encode()),
        ]
        return RawRecord(
            topic=self._topics[entity],
            key=f"{shop_id}:{resource}:{resource_id}".encode(),
            value=body,
            headers=tuple(record_headers),
            webhook_id=webhook_id,
            event_type=event_type,
            entity=entity,
            correlation_id=correlation_id,
        )

    def _verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        try:
            verify_request(
                headers,
                body,
                secrets=self._secrets,
                now=now,
                tolerance=self._tolerance_s,
                accept_legacy=self._accept_legacy,
            )
        except SignatureRejectedError as exc:
            raise Refusal(
                401,
                exc.reason.value,
                str(exc),
                "sign {webhook-id}.{webhook-timestamp}.{raw body} with HMAC-SHA256 under a current "
                "secret, send webhook-signature: v1,<base64>, and keep the sender's clock in sync",
            ) from exc


def _parse_event(body: bytes) -> tuple[str, str, str]:
    """``(resource, id, event type)`` from a Standard-Webhooks or ps_webhooks body, or a 400 Refusal.

    Parsed with orjson (several times faster than ``json``); the verdict is exactly the standard
    parser's all the same: what orjson refuses (NaN, lone surrogate escapes) is parsed by ``json``,
    and a refusal reached on orjson's parse is decided again on ``json``'s (orjson turns integers
    beyond 64 bits into floats). Refusals are the rare path, so the second parse costs nothing.
    """
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _event_fields(_json_loads(body))
    try:
        return _event_fields(event)
    except Refusal:
        return _event_fields(_json_loads(body))


def _json_loads(body: bytes) -> object:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Refusal(
            400,
            "malformed_json",
            f"body is not valid JSON ({exc})"[:300],
            "send one UTF-8 JSON object as the body",
        ) from None


def _event_fields(event: object) -> tuple[str, str, str]:
    if not isinstance(event, dict):
        raise _missing("body is not a JSON object")
    if "resource" not in event and "entity" in event and "action" in event:
        return _parse_ps_webhooks(event)
    event_type = event.get("type")
    if not isinstance(event_type, str) or not event_type.strip():
        raise _missing("body has no string field 'type' (e.g. order.status_changed)")
    resource = event.get("resource")
    if not isinstance(resource, dict):
        raise _missing('body has no object field \'resource\' ({"type": ..., "id": ...})')
    resource_type = resource.get("type")
    if not isinstance(resource_type, str) or not resource_type:
        raise _missing("body has no string field 'resource.type' (e.g. orders)")
    return resource_type, _resource_id(resource.get("id"), "resource.id"), event_type.strip()


def _parse_ps_webhooks(event: dict[str, object]) -> tuple[str, str, str]:
    entity, action, data = event.get("entity"), event.get("action"), event.get("data")
    if not isinstance(entity, str) or not isinstance(action, str) or not isinstance(data, dict):
        raise _missing("ps_webhooks body needs string 'entity', string 'action' and object 'data'")
    resource = _PS_WEBHOOKS_RESOURCES.get(entity)
    if resource is None:
        raise Refusal(
            400,
            "unknown_resource",
            f"entity {entity[:64]!r} is not routed by this receiver",
            "use one of: " + ", ".join(sorted(_PS_WEBHOOKS_RESOURCES)),
        )
    return resource, _resource_id(data.get("id"), "data.id"), f"{resource}.{action}"


def _resource_id(value: object, field: str) -> str:
    text = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else ""
    if not _RESOURCE_ID.match(text):
        raise _missing(f"body field '{field}' must be a positive integer id, got {value!r}"[:300])
    return text


def _missing(message: str) -> Refusal:
    return Refusal(
        400,
        "invalid_event",
        message,
        'send {"type": "<entity>.<event>", "resource": {"type": "<webservice resource>", "id": <id>}, ...}',
    )
