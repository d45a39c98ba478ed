"""Outbound webhooks: Standard Webhooks (signed, queued, retried) or ps_webhooks-compatible.

Standard mode (reference §3.4): each :class:`~sandbox.prestashop.shop.ShopEvent` becomes one JSON
body per target, with ``webhook-id`` (stable across retries), ``webhook-timestamp`` and
``webhook-signature: v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>`` (one ``v1,``
entry per secret, space-separated, for rotation), re-signed on every attempt. Deliveries go through
a bounded in-process asyncio queue served by a fixed number of workers; a non-2xx answer or a
transport error is retried after ``retry_delays`` (one delay per further attempt), then marked
``failed``. A full queue records the delivery as ``dropped``: the shop's request never waits.

ps_webhooks mode (reference §3.2): unsigned ``{"action","entity","data"}`` bodies with the raw object
dump (minus ``passwd`` / ``secure_key``), sent synchronously inside the shop request that caused
them (the app awaits :meth:`WebhookSender.flush_sync`), 3 s timeout, redirects followed, no retry.

Every attempt and outcome is kept (bounded) for the admin API.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import time
import uuid
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import httpx

from sandbox.prestashop.config import WebhookConfig, WebhookTarget
from sandbox.prestashop.shop import ShopEvent
from sandbox.prestashop.store import Store

MAX_KEPT_DELIVERIES = 20_000
PS_WEBHOOKS_TIMEOUT = 3.0
DeliveryStatus = Literal["pending", "delivered", "failed", "dropped"]


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret (a secret without the prefix is used as text)."""
    if secret.startswith("whsec_"):
        return base64.b64decode(secret[len("whsec_") :])
    return secret.encode()


def sign(secrets: tuple[str, ...], webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value: ``v1,<sig>`` per secret, space-separated."""
    content = f"{webhook_id}.{timestamp}.".encode() + body
    parts = [
        "v1," + base64.b64encode(hmac.new(secret_key(s), content, hashlib.sha256).digest()).decode()
        for s in secrets
    ]
    return " ".join(parts)


@dataclass(slots=True)
class Attempt:
    """One HTTP attempt of a delivery."""

    at: float
    status_code: int | None
    error: str | None
    duration_ms: float


@dataclass(slots=True)
class Delivery:
    """One event to one target, with every attempt made so far."""

    webhook_id: str
    event_type: str
    url: str
    mode: str
    body: str
    status: DeliveryStatus = "pending"
    attempts: list[Attempt] = field(default_factory=list)
    secrets: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """JSON view for the admin API (without the secrets)."""
        out = asdict(self)
        out.pop("secrets")
        return out


class WebhookSender:
    """Turns shop events into deliveries; ``start()`` / ``stop()`` bracket its worker tasks."""

    def __init__(self, config: WebhookConfig, store: Store) -> None:
        self.config = config
        self.store = store
        self.deliveries: OrderedDict[str, Delivery] = OrderedDict()
        self._queue: asyncio.Queue[Delivery] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._timers: set[asyncio.Task[None]] = set()
        self._sync_pending: list[Delivery] = []
        self._client: httpx.AsyncClient | None = None

    @property
    def active(self) -> bool:
        """Whether any target is configured."""
        return bool(self.config.targets)

    def reconfigure(self, config: WebhookConfig) -> None:
        """Replace targets/mode/retry policy (queued deliveries keep their original target)."""
        self.config = config

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the queue, the HTTP client and the workers on the running loop."""
        self._queue = asyncio.Queue(maxsize=self.config.queue_size)
        self._client = httpx.AsyncClient(follow_redirects=True)
        self._workers = [asyncio.create_task(self._work()) for _ in range(max(1, self.config.workers))]

    async def stop(self) -> None:
        """Cancel workers and pending retries, close the client. Undelivered items stay ``pending``."""
        for task in [*self._workers, *self._timers]:
            task.cancel()
        for task in [*self._workers, *self._timers]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers.clear()
        self._timers.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def drain(self, wait_seconds: float = 10.0) -> bool:
        """Wait until no delivery is pending (tests); False on timeout."""
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline:
            if not any(d.status == "pending" for d in self.deliveries.values()):
                return True
            await asyncio.sleep(0.02)
        return False

    # -- events -----------------------------------------------------------------------------------

    def on_event(self, event: ShopEvent) -> None:
        """Shop listener: build one delivery per target and queue it (or keep it for the sync flush)."""
        if not self.config.targets:
            return
        for target in self.config.targets:
            delivery = self._build(event, target)
            self._remember(delivery)
            if self.config.mode == "ps_webhooks":
                self._sync_pending.append(delivery)
            elif self._queue is None or self._queue.full():
                delivery.status = "dropped"
            else:
                self._queue.put_nowait(delivery)

    def _build(self, event: ShopEvent, target: WebhookTarget) -> Delivery:
        webhook_id = f"msg_{uuid.uuid4().hex}"
        if self.config.mode == "ps_webhooks":
            payload: dict[str, Any] = {
                "action": event.ps_action,
                "entity": event.ps_entity,
                "data": self._object_dump(event),
            }
        else:
            payload = {
                "id": webhook_id,
                "type": event.type,
                "occurred_at": event.occurred_at,
                "shop": {"id_shop": 1, "base_url": self.config.shop_base_url},
                "source_hook": event.source_hook,
                "resource": {"type": event.resource, "id": event.entity_id},
                "data": event.data,
                "ps_version": self.store.config.version,
            }
        body = json.dumps(payload, separators=(",", ":"))
        return Delivery(webhook_id, event.type, target.url, self.config.mode, body, secrets=target.secrets)

    def _object_dump(self, event: ShopEvent) -> dict[str, Any]:
        # get_object_vars($object) minus passwd/secure_key/password; i18n props keyed by lang id.
        resource = "stock_availables" if event.ps_entity == "StockAvailable" else event.resource
        entity_id = event.entity_id
        if event.ps_entity == "OrderCarrier":
            resource, entity_id = "order_carriers", int(str(event.data.get("id_order_carrier", 0)))
        entity = self.store.get(resource, entity_id) if resource in self.store.tables else None
        if entity is None:
            return {"id": entity_id}
        dump: dict[str, Any] = {"id": entity.id}
        for name, value in entity.values.items():
            if name in ("passwd", "secure_key", "password"):
                continue
            dump[name] = {str(k): v for k, v in value.items()} if isinstance(value, dict) else value
        return dump

    def _remember(self, delivery: Delivery) -> None:
        self.deliveries[delivery.webhook_id] = delivery
        while len(self.deliveries) > MAX_KEPT_DELIVERIES:
            self.deliveries.popitem(last=False)

    # -- sending ----------------------------------------------------------------------------------

    async def flush_sync(self) -> None:
        """ps_webhooks mode: send what the current request produced, one attempt each, 3 s timeout."""
        pending, self._sync_pending = self._sync_pending, []
        for delivery in pending:
            ok = await self._attempt(delivery, limit_seconds=PS_WEBHOOKS_TIMEOUT)
            delivery.status = "delivered" if ok else "failed"

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            delivery = await self._queue.get()
            try:
                ok = await self._attempt(delivery, limit_seconds=self.config.timeout_seconds)
                attempts = len(delivery.attempts)
                if ok:
                    delivery.status = "delivered"
                elif attempts > len(self.config.retry_delays):
                    delivery.status = "failed"
                else:
                    self._retry_later(delivery, self.config.retry_delays[attempts - 1])
            finally:
                self._queue.task_done()

    def _retry_later(self, delivery: Delivery, delay: float) -> None:
        async def requeue() -> None:
            await asyncio.sleep(delay)
            if self._queue is None or self._queue.full():
                delivery.status = "dropped"
            else:
                self._queue.put_nowait(delivery)

        task = asyncio.create_task(requeue())
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)

    async def _attempt(self, delivery: Delivery, *, limit_seconds: float) -> bool:
        client = self._client
        if client is None:
            client = self._client = httpx.AsyncClient(follow_redirects=True)
        body = delivery.body.encode()
        headers = {"content-type": "application/json", "accept": "application/json"}
        if delivery.mode != "ps_webhooks":
            timestamp = int(time.time())
            headers["webhook-id"] = delivery.webhook_id
            headers["webhook-timestamp"] = str(timestamp)
            if delivery.secrets:
                headers["webhook-signature"] = sign(delivery.secrets, delivery.webhook_id, timestamp, body)
        started = time.monotonic()
        try:
            response = await client.post(delivery.url, content=body, headers=headers, timeout=limit_seconds)
        except httpx.HTTPError as exc:
            delivery.attempts.append(Attempt(time.time(), None, f"{type(exc).__name__}: {exc}", _ms(started)))
            return False
        delivery.attempts.append(Attempt(time.time(), response.status_code, None, _ms(started)))
        return 200 <= response.status_code < 300


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 3)
