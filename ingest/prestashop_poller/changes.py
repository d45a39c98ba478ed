"""The incremental loops: ``date_upd`` windows from the persisted watermark to "now" in shop time.

One loop per :class:`ChangeFeed`: ``orders`` (the order-to-cash path), and ``customers``, ``addresses``
and ``products``, the backstop of their webhook notifications (a webhook the shop failed to send, or
one written before the notification reader's lookback, would otherwise leave a change unread: they
have no scan). One pass (:meth:`ChangesPoller.poll_once`):

1. window ``[watermark - overlap, now]`` in shop time, both bounds inclusive (see ``window``);
2. read it oldest first with keyset paging, never offset paging (see ``pages``): the rest of the
   cursor's second by id (``date_upd=[T,T]``, ``id>[last]``, ``sort=[id_ASC]``), then the first page of
   ``date_upd=[T+1s, high]`` sorted ``[date_upd_ASC,id_ASC]``; repeat from that page's last row until a
   short page. A row that changes while the pass runs moves forward (to a later ``date_upd``), so it is
   read again later in this pass or in the next one: nothing shifts under the cursor;
3. each version ``(id, date_upd)`` not already written is produced as its bundle (see ``bundles``;
   a backstop feed also skips a version a notification's read, started after it, already wrote):
   an ``order.bundle`` (the order with the related records the processors need, read per page), right
   after one ``order_payment.bundle`` per payment it carries (registered first, so the version counts
   as written only once its payments are acknowledged too); a ``customer.bundle`` for a customer or
   an address (of its customer, as the notification reader writes it: an address change does not
   move the customer's ``date_upd``); a ``product.bundle`` for a product;
4. the watermark advances to the ``date_upd`` of the last record of the acknowledged prefix (records
   are registered with an :class:`~ingest.prestashop_poller.window.AckTracker` in read order), and is
   persisted with the acknowledged versions of the overlap (the dedupe memory) every
   ``checkpoint_interval_s`` and at the end of the pass. It never moves backwards.

Where a first run (no stored watermark) starts: the orders loop at ``start_at`` (the backfill); the
other loops at their first pass's "now" minus the overlap, since they are a backstop of the
notifications and not an initial load of the catalogue and the customer base.

The overlap must exceed the shop's commit latency plus any skew between the shop's clock and ours
(``now`` is our clock in the shop's zone): a row stamped up to ``overlap`` seconds before the watermark
is still read.

A delivery failure ends the pass with ``RetryableError``; versions not acknowledged are forgotten, so
the next pass, starting again from the last safe watermark, reads and writes them again.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from connectors.prestashop.client import Fetched, PrestaShopClient
from connectors.prestashop.models import Address, Customer, Order, Product, PsModel
from connectors.prestashop.query import CHANGE_ORDER, Query, Sort, between, greater_than
from ingest.prestashop_poller.bundles import BundleReader, payment_snapshots, row_snapshot
from ingest.prestashop_poller.freshness import FreshReads
from ingest.prestashop_poller.pages import first_page
from ingest.prestashop_poller.raw import RAW_TOPIC_BY_RESOURCE, RawRecord, produce_raw, snapshot
from ingest.prestashop_poller.window import (
    AckTracker,
    RecentVersions,
    Version,
    Window,
    format_shop_time,
    parse_shop_time,
    shop_now,
)
from pipeline.errors import RetryableError
from pipeline.metrics import MESSAGES
from pipeline.producer import Delivery, PipelineProducer
from pipeline.settings import PollerSettings
from pipeline.watermarks import WatermarkStore

log = logging.getLogger(__name__)

STAGE = "ingest-prestashop-poller"
Position = tuple[datetime, int]
"""``(date_upd, id)``: the read order of an incremental loop."""


@dataclass(frozen=True, slots=True)
class ChangeFeed:
    """A resource read by ``date_upd`` windows (module docstring).

    ``backstop``: the loop stands behind the resource's webhook notifications, so a first run starts at
    its first pass's "now" (not at ``start_at``) and a version a notification's read already wrote is
    not read again. The orders loop is the authoritative path of orders and writes every version.
    """

    model: type[PsModel]
    backstop: bool

    @property
    def resource(self) -> str:
        return self.model.RESOURCE


ORDERS = ChangeFeed(Order, backstop=False)
CUSTOMERS = ChangeFeed(Customer, backstop=True)
ADDRESSES = ChangeFeed(Address, backstop=True)
PRODUCTS = ChangeFeed(Product, backstop=True)
BACKSTOP_FEEDS = (CUSTOMERS, ADDRESSES, PRODUCTS)
"""The loops behind the customer and product notifications."""


def watermark_key(shop_id: int, resource: str = "orders") -> str:
    """The ``state.watermarks`` key of a resource's date_upd watermark: ``prestashop:{shop}:{resource}``."""
    return f"prestashop:{shop_id}:{resource}"


@dataclass(frozen=True, slots=True)
class PassReport:
    """What one pass did."""

    window: Window
    written: int
    duplicates: int
    watermark: datetime
    seconds: float


class ChangesPoller:
    """Polls one feed's resource by ``date_upd`` into its raw topic; see the module docstring."""

    def __init__(
        self,
        client: PrestaShopClient,
        producer: PipelineProducer,
        store: WatermarkStore,
        *,
        settings: PollerSettings,
        shop_id: int,
        page_size: int,
        poll_run_id: str,
        beat: Callable[[], None] = lambda: None,
        clock: Callable[[tzinfo], datetime] = shop_now,
        fresh: FreshReads | None = None,
        feed: ChangeFeed = ORDERS,
    ) -> None:
        self._feed = feed
        self._client = client
        self._fresh = fresh
        self._producer = producer
        self._store = store
        self._settings = settings
        self._shop_id = shop_id
        self._page_size = page_size
        self._run_id = poll_run_id
        self._beat = beat
        self._clock = clock
        self._key = watermark_key(shop_id, feed.resource)
        self._topic = f"{settings.topic_prefix}{RAW_TOPIC_BY_RESOURCE[feed.resource]}"
        start = parse_shop_time(settings.start_at)
        assert start is not None  # validated by PollerSettings
        self._watermark: datetime = start
        # A first run of a backstop feed starts at its first pass's "now" instead (module docstring).
        self._start_at_first_pass = feed.backstop
        self._confirmed = RecentVersions()
        self._restored = False
        self._bundles = BundleReader(client)

    def read_started(self) -> float | None:
        """The wall-clock stamp of a page read about to start (None without a FreshReads to tell)."""
        return self._fresh.now() if self._fresh is not None else None

    @property
    def feed(self) -> ChangeFeed:
        return self._feed

    @property
    def watermark(self) -> datetime:
        """The last persisted-or-safe watermark (shop-local)."""
        return self._watermark

    def restore(self) -> bool:
        """Take the watermark and dedupe memory from the loaded store; False when none was stored."""
        self._restored = True
        value = self._store.get(self._key)
        first = "the first pass's now" if self._feed.backstop else "start_at"
        if value is None:
            log.info(
                "no stored watermark: starting at %s",
                first,
                extra={"resource": self._feed.resource, "start_at": self._settings.start_at},
            )
            return False
        stored = parse_shop_time(str(value.get("watermark", "")))
        if stored is None:
            log.warning("stored watermark unreadable: starting at %s", first, extra={"key": self._key})
            return False
        self._watermark = stored
        self._start_at_first_pass = False
        versions: list[Version] = []
        for item in value.get("recent", []):
            moment = parse_shop_time(str(item[1])) if isinstance(item, list) and len(item) == 2 else None
            if moment is not None:
                versions.append((int(item[0]), moment))
        self._confirmed = RecentVersions(versions)
        log.info(
            "resuming from stored watermark",
            extra={
                "resource": self._feed.resource,
                "watermark": format_shop_time(stored),
                "recent_versions": len(versions),
            },
        )
        return True

    async def poll_once(self, stop: asyncio.Event | None = None) -> PassReport:
        """Read the window from the watermark to now and write every new version; see module docstring.

        Returns after every written record was acknowledged and the watermark persisted. Raises
        RetryableError (shop or broker unavailable, a record not delivered); the watermark then stays
        at the last acknowledged prefix.
        """
        if not self._restored:
            raise RuntimeError("restore() must run before the first pass")
        started = time.monotonic()
        zone = await self._client.shop_time_zone()
        now = self._clock(zone)
        if self._start_at_first_pass:
            self._watermark, self._start_at_first_pass = now.replace(microsecond=0), False
        window = Window.after(self._watermark, overlap_s=self._settings.overlap_s, now=now)
        wall_started = time.time()  # after `now` was taken: a row stamped later may lie past the window
        resource = self._feed.resource
        log.debug(
            "%s pass started",
            resource,
            extra={"window_low": format_shop_time(window.low), "window_high": format_shop_time(window.high)},
        )
        run = _Pass(self, window, started, zone)
        try:
            await run.read(stop)
            remaining = await asyncio.to_thread(self._producer.flush, 30.0)
            if run.tracker.failure is not None:
                raise RetryableError(f"{resource} pass: a record was not delivered: {run.tracker.failure}")
            if remaining or run.tracker.pending:
                raise RetryableError(
                    f"{resource} pass: {max(remaining, run.tracker.pending)} records not acked"
                )
            await run.checkpoint(force=True)
        except BaseException:
            # Keep what the broker did acknowledge; versions still in flight will be read again.
            await asyncio.shield(run.checkpoint(force=True, tolerate_failure=True))
            raise
        report = PassReport(window, run.written, run.duplicates, self._watermark, time.monotonic() - started)
        # Logged for every pass (DEBUG when it found nothing): the wall-clock bounds let an auditor
        # check that a version current throughout a completed pass is on the topic.
        level = (
            logging.INFO
            if report.written or report.seconds > self._settings.progress_interval_s
            else logging.DEBUG
        )
        fields = _report_fields(report) | {"started_at": wall_started, "ended_at": time.time()}
        log.log(level, "%s pass done", resource, extra=fields)
        return report


class _Pass:
    """The state of one pass: the cursor, the tracker, the versions in flight, progress counters."""

    def __init__(self, poller: ChangesPoller, window: Window, started: float, zone: tzinfo) -> None:
        self.p = poller
        self.zone = zone
        self.window = window
        self.started = started
        self.tracker: AckTracker[Position] = AckTracker()
        self.inflight: deque[Version] = deque()
        self.inflight_set: set[Version] = set()
        self.written = 0
        self.duplicates = 0
        self.last_checkpoint = time.monotonic()
        self.last_progress = time.monotonic()

    async def read(self, stop: asyncio.Event | None) -> None:
        p = self.p
        cursor, last_id = self.window.low, 0
        while True:
            # The rest of the cursor's second, by id.
            while True:
                q = Query(
                    filters=(between("date_upd", cursor, cursor), greater_than("id", last_id)),
                    sort=(Sort("id"),),
                )
                read_at = p.read_started()
                rows: list[Fetched[Any]] = await first_page(p._client, p._feed.model, q, p._page_size)
                await self.write(rows, read_at)
                if rows:
                    last_id = rows[-1].model.id
                await self.after_page()
                if len(rows) < p._page_size:
                    break
            rest = self.window.seconds_after(cursor)
            if rest is None or (stop is not None and stop.is_set()):
                return
            q = Query(filters=(between("date_upd", rest.low, rest.high),), sort=tuple(CHANGE_ORDER))
            read_at = p.read_started()
            rows = await first_page(p._client, p._feed.model, q, p._page_size)
            await self.write(rows, read_at)
            await self.after_page()
            if len(rows) < p._page_size:
                return
            last = rows[-1].model
            assert last.date_upd is not None  # inside a BETWEEN window, so a real date
            cursor, last_id = last.date_upd, last.id

    async def write(self, rows: list[Fetched[Any]], read_at: float | None = None) -> None:
        """Write the bundles of the new versions among ``rows`` (read by a page read that started at
        ``read_at``, wall clock: notifications received before it need no read of their own)."""
        p = self.p
        new: list[Fetched[Any]] = []
        for fetched in rows:
            model = fetched.model
            if model.date_upd is None:
                continue  # a zero date never matches a BETWEEN window; defensive only
            version: Version = (model.id, model.date_upd.replace(microsecond=0))
            if version in p._confirmed or version in self.inflight_set or self.answered(model):
                self.duplicates += 1
                MESSAGES.labels(STAGE, p._topic, "duplicate").inc()
                continue
            new.append(fetched)
        # The related rows are read after the page: they are at least as new as the row.
        if p._feed.model is Order:
            written = await self._order_records(new)
        else:
            written = [(fetched, [await self._row_record(fetched)]) for fetched in new]
        for fetched, records in written:
            date_upd = fetched.model.date_upd.replace(microsecond=0)
            # Every record of a version is registered at its position, the version's own last: the
            # tracker's safe prefix reaches this version only once all of them were acknowledged.
            for record in records:
                ticket = self.tracker.register((date_upd, fetched.model.id))
                produce_raw(
                    p._producer,
                    record,
                    topic_prefix=p._settings.topic_prefix,
                    on_delivery=self._on_delivery(ticket),
                )
            MESSAGES.labels(STAGE, p._topic, "ok").inc(len(records))
            version = (fetched.model.id, date_upd)
            self.inflight.append(version)
            self.inflight_set.add(version)
            self.written += 1
        if p._fresh is not None and read_at is not None:
            # Only the versions written now: a duplicate's bundle was read before this page.
            p._fresh.record(p._feed.resource, [fetched.model.id for fetched in new], read_at)

    def answered(self, model: Any) -> bool:
        """Whether a backstop feed's row version was already written by a read that started after it
        (a notification's, recorded in FreshReads once acknowledged): its bundle is not read again.

        The version changed at the latest by the end of its ``date_upd`` second, in the shop's zone.
        """
        p = self.p
        if not p._feed.backstop or p._fresh is None:
            return False
        changed_by = model.date_upd.replace(microsecond=0, tzinfo=self.zone).timestamp() + 1.0
        return p._fresh.answered(p._feed.resource, model.id, changed_by)

    async def _order_records(self, new: list[Fetched[Any]]) -> list[tuple[Fetched[Any], list[RawRecord]]]:
        """Per new order version: its payment bundles, then its order bundle (read per page)."""
        p = self.p
        bundles = await p._bundles.bundles(new)
        written: list[tuple[Fetched[Any], list[RawRecord]]] = []
        for fetched, bundle in zip(new, bundles, strict=True):
            order = fetched.model
            correlation_id = uuid.uuid4().hex
            raw = snapshot(
                shop_id=p._shop_id,
                resource="orders",
                node="order",
                id_=order.id,
                record=bundle,
                date_upd=format_shop_time(order.date_upd.replace(microsecond=0)),
                poll_run_id=p._run_id,
                trigger="poll",
                correlation_id=correlation_id,
                kind="bundle",
            )
            payments = payment_snapshots(
                bundle,
                shop_id=p._shop_id,
                poll_run_id=p._run_id,
                trigger="poll",
                correlation_id=correlation_id,
            )
            written.append((fetched, [*payments, raw]))
        return written

    async def _row_record(self, fetched: Fetched[Any]) -> RawRecord:
        """The bundle of a customer, product or address row, as the notification reader writes it."""
        p = self.p
        model, record, kind = await p._bundles.for_row(fetched)
        return row_snapshot(
            model,
            record,
            kind,
            shop_id=p._shop_id,
            poll_run_id=p._run_id,
            trigger="poll",
            correlation_id=uuid.uuid4().hex,
        )

    def _on_delivery(self, ticket: int) -> Callable[[Delivery], None]:
        tracker = self.tracker

        def done(delivery: Delivery) -> None:
            if delivery.error is None:
                tracker.ack(ticket)
            else:
                tracker.fail(ticket, delivery.error)

        return done

    async def after_page(self) -> None:
        self.p._beat()
        if self.tracker.failure is not None:
            raise RetryableError(
                f"{self.p._feed.resource} pass: a record was not delivered: {self.tracker.failure}"
            )
        now = time.monotonic()
        if now - self.last_progress >= self.p._settings.progress_interval_s:
            self.last_progress = now
            elapsed = max(now - self.started, 1e-9)
            log.info(
                "%s backfill progress",
                self.p._feed.resource,
                extra={
                    "written": self.written,
                    "duplicates": self.duplicates,
                    "records_per_s": round(self.written / elapsed, 1),
                    "watermark": format_shop_time(self.p._watermark),
                    "window_high": format_shop_time(self.window.high),
                    "in_flight": self.tracker.pending,
                },
            )
        await self.checkpoint()

    async def checkpoint(self, *, force: bool = False, tolerate_failure: bool = False) -> None:
        """Advance the watermark to the acknowledged prefix and persist it (rate-limited unless forced)."""
        p = self.p
        safe = self.tracker.safe()
        advanced = False
        if safe is not None:
            # Versions up to the safe position are acknowledged: they join the dedupe memory.
            while self.inflight and (self.inflight[0][1], self.inflight[0][0]) <= safe:
                version = self.inflight.popleft()
                self.inflight_set.discard(version)
                p._confirmed.add(version)
            if safe[0] > p._watermark:
                p._watermark = safe[0]
                advanced = True
        if tolerate_failure:
            # After a failure nothing in flight may be trusted: forget it so it is written again.
            self.inflight.clear()
            self.inflight_set.clear()
        now = time.monotonic()
        due = now - self.last_checkpoint >= p._settings.checkpoint_interval_s
        if not (advanced or force) or not (due or force):
            return
        horizon = p._watermark.replace(microsecond=0)
        horizon = Window.after(horizon, overlap_s=p._settings.overlap_s, now=horizon).low
        p._confirmed.forget_before(horizon)
        value: dict[str, Any] = {
            "watermark": format_shop_time(p._watermark),
            "recent": [[id_, format_shop_time(moment)] for id_, moment in p._confirmed],
            "poll_run_id": p._run_id,
            "written_at": time.time(),
        }
        try:
            await asyncio.to_thread(p._store.put, p._key, value)
        except Exception:
            if not tolerate_failure:
                raise
            log.warning("watermark not persisted while ending a failed pass", exc_info=True)
            return
        self.last_checkpoint = now


def _report_fields(report: PassReport) -> dict[str, object]:
    return {
        "window_low": format_shop_time(report.window.low),
        "window_high": format_shop_time(report.window.high),
        "written": report.written,
        "duplicates": report.duplicates,
        "watermark": format_shop_time(report.watermark),
        "seconds": round(report.seconds, 3),
        "records_per_s": round(report.written / max(report.seconds, 1e-9), 1),
    }
