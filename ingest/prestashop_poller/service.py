"""``PollerService``: the poller's loops on one shop client and one producer, until asked to stop.

Start-up: build the clients, read ``state.watermarks`` to its end, restore the incremental loops'
watermarks and the scan digests, then run concurrently:

- the orders pass every ``poller.interval_s`` (a pass that finds a backlog runs back to back);
- the customers, addresses and products passes every ``poller.backstop_interval_s`` (the backstop of
  their webhook notifications, see ``changes``);
- the order_carriers scan every ``poller.carriers_scan_interval_s`` and the stock_availables scan every
  ``poller.stock_scan_interval_s``;
- the webhook notification reader, when ``poller.notifications`` is on.

Failures: ``RetryableError`` (shop or broker unavailable) and ``InvalidMessage`` (a row the client
cannot read, which blocks that loop until someone looks) are logged and retried with backoff,
per loop, so a failing scan does not stop the orders loop. Anything else is a bug and ends the
service (the supervisor restarts it; every position is persisted only after the acks, so nothing is
lost). Shutdown: ``stop`` set → each loop ends after its current page, the producer is flushed and
the watermark persisted, then ``run()`` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable
from zoneinfo import ZoneInfo

import httpx

from connectors.prestashop.client import PrestaShopClient
from ingest.prestashop_poller.changes import BACKSTOP_FEEDS, ORDERS, STAGE, ChangesPoller
from ingest.prestashop_poller.freshness import FreshReads
from ingest.prestashop_poller.notifications import NotificationReader
from ingest.prestashop_poller.raw import RAW_TOPIC_BY_RESOURCE
from ingest.prestashop_poller.scans import Scanner
from pipeline.errors import ConfigError, InvalidMessage, RetryableError
from pipeline.health import HealthState
from pipeline.producer import PipelineProducer
from pipeline.retry import Backoff
from pipeline.settings import Settings
from pipeline.watermarks import WatermarkStore
from schemas.catalogue import load_catalogue

log = logging.getLogger(__name__)

WATERMARK_TOPIC = "state.watermarks"


def check_topics(settings: Settings) -> None:
    """Fail with a ConfigError unless every topic the poller uses is in the catalogue."""
    catalogue = load_catalogue()
    for name in {*RAW_TOPIC_BY_RESOURCE.values(), WATERMARK_TOPIC, "dlq.processors"}:
        try:
            catalogue.topic(name)
        except KeyError:
            raise ConfigError(f"configuration error: topic {name} is missing from the catalogue") from None


class PollerService:
    """Runs the poller until ``stop`` is set; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        *,
        health: HealthState | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._settings = settings
        self._shop = settings.require_prestashop()
        self._health = health or HealthState.from_settings(settings.service, STAGE)
        self._transport = transport
        self.poll_run_id = uuid.uuid4().hex
        self._backoff = Backoff(settings.retry)

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set; returns after a clean shutdown, raises on a bug."""
        settings, shop, poller = self._settings, self._shop, self._settings.poller
        check_topics(settings)
        self._health.set_ready(False, "starting")
        producer = PipelineProducer(settings.kafka, client_id_suffix="prestashop-poller")
        http = httpx.AsyncClient(
            timeout=httpx.Timeout(shop.timeout_s, connect=shop.connect_timeout_s), transport=self._transport
        )
        beat = self._health.heartbeat
        try:
            client = PrestaShopClient(
                http,
                shop.base_url,
                shop.ws_key,
                page_size=shop.page_size,
                time_zone=ZoneInfo(shop.time_zone) if shop.time_zone else None,
            )
            store = WatermarkStore(settings.kafka, producer, f"{poller.topic_prefix}{WATERMARK_TOPIC}")
            if not await self._retrying("load watermarks", lambda: asyncio.to_thread(store.load), stop):
                return
            fresh = FreshReads()
            orders, *backstops = [
                ChangesPoller(
                    client,
                    producer,
                    store,
                    fresh=fresh,
                    settings=poller,
                    shop_id=shop.shop_id,
                    page_size=shop.page_size,
                    poll_run_id=self.poll_run_id,
                    beat=beat,
                    feed=feed,
                )
                for feed in (ORDERS, *BACKSTOP_FEEDS)
            ]
            for changes in (orders, *backstops):
                changes.restore()
            scanners = {
                resource: Scanner(
                    client,
                    producer,
                    store,
                    resource=resource,
                    shop_id=shop.shop_id,
                    topic_prefix=poller.topic_prefix,
                    poll_run_id=self.poll_run_id,
                    beat=beat,
                )
                for resource in ("order_carriers", "stock_availables")
            }
            for scanner in scanners.values():
                scanner.restore()
            self._health.set_ready(True)
            log.info(
                "poller started",
                extra={"poll_run_id": self.poll_run_id, "shop": shop.base_url, "shop_id": shop.shop_id},
            )
            loops: list[Awaitable[None]] = [
                self._every("orders", lambda: orders.poll_once(stop), poller.interval_s, stop),
                *(
                    self._every(
                        changes.feed.resource,
                        functools.partial(changes.poll_once, stop),
                        poller.backstop_interval_s,
                        stop,
                    )
                    for changes in backstops
                ),
                self._every(
                    "order_carriers",
                    lambda: scanners["order_carriers"].scan_once(stop),
                    poller.carriers_scan_interval_s,
                    stop,
                ),
                self._every(
                    "stock_availables",
                    lambda: scanners["stock_availables"].scan_once(stop),
                    poller.stock_scan_interval_s,
                    stop,
                ),
                self._ticker(stop),
            ]
            reader: NotificationReader | None = None
            if poller.notifications:
                reader = NotificationReader(
                    settings,
                    client,
                    producer,
                    poll_run_id=self.poll_run_id,
                    loop=asyncio.get_running_loop(),
                    fresh=fresh,
                )
                loops.append(reader.run_until(stop))
            await asyncio.gather(*loops)
        finally:
            self._health.set_ready(False, "stopping")
            await http.aclose()
            undelivered = await asyncio.to_thread(producer.close, 30.0)
            log.info("poller stopped", extra={"poll_run_id": self.poll_run_id, "undelivered": undelivered})

    async def _every(
        self, name: str, once: Callable[[], Awaitable[object]], interval_s: float, stop: asyncio.Event
    ) -> None:
        """Run ``once`` every ``interval_s`` until stop; back off on retryable failures."""
        attempt = 0
        while not stop.is_set():
            delay = interval_s
            try:
                await once()
                attempt = 0
            except (RetryableError, InvalidMessage) as exc:
                attempt += 1
                error = exc if isinstance(exc, RetryableError) else None
                delay = self._backoff.delay(attempt, error)
                level = logging.WARNING if error is not None else logging.ERROR
                log.log(
                    level,
                    "poll loop failed; retrying",
                    extra={"loop": name, "attempt": attempt, "retry_in_s": round(delay, 2), "error": exc},
                )
            await _sleep_or_stop(stop, delay)

    async def _retrying(self, name: str, once: Callable[[], Awaitable[object]], stop: asyncio.Event) -> bool:
        """Run ``once`` until it succeeds (True) or stop is set (False)."""
        attempt = 0
        while not stop.is_set():
            try:
                await once()
                return True
            except RetryableError as exc:
                attempt += 1
                delay = self._backoff.delay(attempt, exc)
                log.warning("%s failed; retrying", name, extra={"attempt": attempt, "error": str(exc)})
                await _sleep_or_stop(stop, delay)
        return False

    async def _ticker(self, stop: asyncio.Event) -> None:
        # Liveness means "the event loop turns": long sleeps between passes must not look like a hang.
        while not stop.is_set():
            self._health.heartbeat()
            await _sleep_or_stop(stop, 1.0)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
