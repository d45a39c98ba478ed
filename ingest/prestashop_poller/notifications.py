"""Webhook thin notifications make the poller re-read the named resource now.

The webhook receiver writes what the shop POSTed to ``raw.prestashop.*`` with header
``source=prestashop-webhook``. Such a record is a NOTIFICATION: it says "resource R id N changed",
but its body may be stale or partial (ps_webhooks dumps a PHP object; the Standard Webhooks body
carries only ``data`` about the event). The poller consumes the raw topics, and for each notification
re-reads the resource through the webservice and writes the full record as a SNAPSHOT with
``source=prestashop-poll`` (same format as the orders loop and the scans, header
``trigger=notification``, ``correlation_id`` carried over from the notification); an order is
written as an ``order.bundle``, like the orders loop writes it, a customer as a ``customer.bundle``
and a product as a ``product.bundle``. An address or a combination is written as the bundle of its
customer or product, under that row's key: an address change does not move the customer's
``date_upd``, and the processors map whole customers and products (see ``bundles``). An order bundle
is preceded by the payment bundles of its payments, as the orders loop writes them.

How the processors tell them apart (the contract): only records whose ``source`` header is
``prestashop-poll`` are snapshots, whose value is the full resource JSON to map; everything with
``source=prestashop-webhook`` is a notification, to be skipped (or used only as a latency signal).
``event_type`` agrees: snapshots always end in ``.snapshot``; notifications carry the webhook's own
type (``order.status_changed``, ``stock.changed``, ...). Records without a ``source`` header are
treated as notifications neither here nor by the processors: nothing written by psinfor lacks it.

Which resource a notification names, in order of preference: the ``resource``/``id`` headers (if the
receiver set them), the Standard Webhooks body ``{"resource": {"type": "orders", "id": 42}}``, the
ps_webhooks body ``{"entity": "Order", "data": {"id": 42}}``. An order notification that names an
order_carrier (``data.id_order_carrier``, e.g. ``order.tracking_updated``) also re-reads that row,
since tracking lives there. A notification naming nothing the poller can read, or a row that no
longer exists (deleted), is logged and committed: the polling loops stay authoritative either way.

Offsets are committed by the shared ``ConsumeRunner`` only after the snapshots were acknowledged. A
partition the group never committed (a first deployment) starts at its notifications of the last
``notifications_lookback_s`` (older changes are the polling loops' and the backfill's job), a start
committed as soon as it is assigned. It used to be the partition's end ("latest"): the lanes join their
group seconds apart, and every rebalance before a lane's first commit moved its start to the new end,
so a customer renamed in those seconds was never read (the end-to-end suite lost one in CI).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connectors.prestashop.client import PrestaShopClient
from connectors.prestashop.models import MODEL_BY_RESOURCE, Order, OrderCarrier, PsModel
from ingest.prestashop_poller.bundles import BundleReader, payment_snapshots, row_snapshot
from ingest.prestashop_poller.freshness import FreshReads
from ingest.prestashop_poller.raw import RAW_TOPIC_BY_RESOURCE, SOURCE_WEBHOOK
from pipeline.errors import InvalidMessage
from pipeline.metrics import POLLER_NOTIFICATIONS
from pipeline.producer import PipelineProducer
from pipeline.records import SourceRecord
from pipeline.runner import ConsumeRunner
from pipeline.settings import Settings

log = logging.getLogger(__name__)

STAGE = "ingest-prestashop-poller-notifications"
READ_TIMEOUT_S = 120.0

ENTITY_RESOURCES: dict[str, str] = {
    "Order": "orders",
    "OrderCarrier": "order_carriers",
    "Customer": "customers",
    "Address": "addresses",
    "Product": "products",
    "Combination": "combinations",
    "StockAvailable": "stock_availables",
}
"""ps_webhooks ObjectModel class → webservice resource."""


@dataclass(frozen=True, slots=True)
class Target:
    """A resource row a notification asks to re-read."""

    resource: str
    id: int


def _positive_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
        return number if number > 0 else None
    return None


def received_at_of(record: SourceRecord) -> float | None:
    """The receiver's ``received_at`` header (ISO 8601 UTC) as unix seconds; None if absent or unreadable."""
    text = record.header("received_at")
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.decode(errors="replace").replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def targets_of(record: SourceRecord) -> list[Target]:
    """The rows a webhook notification asks to re-read (empty when it names nothing readable)."""
    resource_header, id_header = record.header("resource"), record.header("id")
    body: Any = None
    try:
        body = json.loads(record.value or b"null")
    except ValueError:
        body = None
    data = body.get("data") if isinstance(body, dict) else None
    data = data if isinstance(data, dict) else {}
    resource: str | None = None
    id_: int | None = None
    if resource_header and id_header:
        resource = resource_header.decode(errors="replace")
        id_ = _positive_int(id_header.decode(errors="replace"))
    elif isinstance(body, dict) and isinstance(body.get("resource"), dict):
        resource, id_ = str(body["resource"].get("type")), _positive_int(body["resource"].get("id"))
    elif isinstance(body, dict) and isinstance(body.get("entity"), str):
        resource = ENTITY_RESOURCES.get(body["entity"])
        id_ = _positive_int(data.get("id"))
    found: list[Target] = []
    if resource in RAW_TOPIC_BY_RESOURCE and id_ is not None:
        found.append(Target(resource, id_))
    carrier = _positive_int(data.get("id_order_carrier"))
    if resource == "orders" and carrier is not None:
        found.append(Target("order_carriers", carrier))
    return found


LANES: tuple[tuple[str, ...], ...] = (
    ("raw.prestashop.orders",),
    ("raw.prestashop.customers", "raw.prestashop.products"),
    ("raw.prestashop.stock",),
)
"""The raw topics each consumer of the reader takes (one consumer thread per lane, one group).

Every order line moves stock, so a checkout peak brings several stock notifications per order; read
one after the other by one consumer they queued the order notifications behind them (seconds). Each
lane reads on its own, while the HTTP reads of all lanes share the process's event loop and client.
Order and carrier rows stay in one lane: their notifications share the order's topic and key order.
"""


class NotificationReader:
    """Consumes the raw PrestaShop topics and answers notifications with snapshots (module docstring)."""

    def __init__(
        self,
        settings: Settings,
        client: PrestaShopClient,
        producer: PipelineProducer,
        *,
        poll_run_id: str,
        loop: asyncio.AbstractEventLoop,
        fresh: FreshReads | None = None,
    ) -> None:
        poller = settings.poller
        self._client = client
        self._bundles = BundleReader(client)
        self._producer = producer
        self._run_id = poll_run_id
        self._loop = loop
        self._fresh = fresh or FreshReads()
        self._shop_id = settings.require_prestashop().shop_id
        self._prefix = poller.topic_prefix
        laned = {topic for lane in LANES for topic in lane}
        missing = set(RAW_TOPIC_BY_RESOURCE.values()) - laned
        if missing:
            raise ValueError(f"raw topics in no notification lane: {sorted(missing)}")
        # Members of one group may subscribe to different topics: each lane's partitions go to the
        # lane's consumers only (several poller processes share them the same way).
        self._runners = [
            ConsumeRunner(
                settings,
                STAGE,
                [f"{poller.topic_prefix}{topic}" for topic in lane],
                poller.group_id,
                self.handle,
                f"{poller.topic_prefix}dlq.processors",
                producer=producer,
                fresh_start_lookback_s=poller.notifications_lookback_s,
            )
            for lane in LANES
        ]

    async def run_until(self, stop: asyncio.Event) -> None:
        """Run each lane's consumer on a worker thread until ``stop`` is set; re-raises a failure."""
        workers = {asyncio.ensure_future(asyncio.to_thread(runner.run)) for runner in self._runners}
        stopper = asyncio.ensure_future(stop.wait())
        # Whichever ends first: stop was asked for, or a runner failed (re-raised by awaiting it).
        await asyncio.wait({*workers, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for runner in self._runners:
            runner.stop()
        stopper.cancel()
        # Each returns after its runner committed what it finished; the first failure is re-raised.
        results = await asyncio.gather(*workers, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    def handle(self, record: SourceRecord) -> None:
        """Re-read what a webhook notification names and write the snapshots; ignore everything else.

        Runs on the consumer thread; returns only after every snapshot was acknowledged.
        """
        if record.header("source") != SOURCE_WEBHOOK.encode():
            return
        targets = targets_of(record)
        if not targets:
            log.warning(
                "webhook notification names nothing to re-read",
                extra={"topic": record.topic, "offset": record.offset},
            )
            return
        correlation = record.header("correlation_id") or record.header("webhook-id")
        received_at = received_at_of(record)
        for target in targets:
            if received_at is not None and self._fresh.answered(target.resource, target.id, received_at):
                POLLER_NOTIFICATIONS.labels(target.resource, "fresh").inc()
                continue
            started_at = self._fresh.now()
            future = asyncio.run_coroutine_threadsafe(self._read(target), self._loop)
            fetched = future.result(READ_TIMEOUT_S)
            if fetched is None:
                POLLER_NOTIFICATIONS.labels(target.resource, "gone").inc()
                continue
            POLLER_NOTIFICATIONS.labels(target.resource, "read").inc()
            model, raw_record, kind = fetched
            correlation_id = correlation.decode(errors="replace") if correlation else uuid.uuid4().hex
            raw = row_snapshot(
                model,
                raw_record,
                kind,
                shop_id=self._shop_id,
                poll_run_id=self._run_id,
                trigger="notification",
                correlation_id=correlation_id,
            )
            records = [raw]
            if isinstance(model, Order) and kind == "bundle":
                records = [
                    *payment_snapshots(
                        raw_record,
                        shop_id=self._shop_id,
                        poll_run_id=self._run_id,
                        trigger="notification",
                        correlation_id=correlation_id,
                    ),
                    raw,
                ]
            for record_ in records:
                self._producer.produce_and_wait(
                    f"{self._prefix}{record_.topic}", record_.key, record_.value, record_.headers
                )
            self._fresh.record(target.resource, [target.id], started_at)
            if target.resource != model.RESOURCE:  # an address answered with its customer's bundle
                self._fresh.record(model.RESOURCE, [model.id], started_at)

    async def _read(self, target: Target) -> tuple[PsModel, dict[str, Any], str] | None:
        model = OrderCarrier if target.resource == "order_carriers" else MODEL_BY_RESOURCE[target.resource]
        try:
            fetched = await self._client.get_fetched(model, target.id)
        except InvalidMessage as exc:
            if exc.reason != "prestashop_not_found":
                raise
            log.info("notified row no longer exists", extra={"resource": target.resource, "id": target.id})
            return None
        return await self._bundles.for_row(fetched)
