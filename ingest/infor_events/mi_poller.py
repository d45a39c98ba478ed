"""The M3 MI polling source for tenants whose ION does not push: "changed since" lists into raw topics.

Each feed is one MI List transaction that returns what changed after an LMTS (M3's change timestamp,
N18, epoch milliseconds in practice; infor.md §2.4):

=========== =========================== ================================= ======================
feed        transaction                 entity key (= the BOD's key)      topic
=========== =========================== ================================= ======================
inventory   OIS100MI LstNewBalances     ``{WHLO}-{ITNO}``                 raw.infor.inventory
customers   CRS610MI LstByNumber        ``CUNO``                          raw.infor.customers
items       MMS200MI LstItmByChgDate    ``ITNO``                          raw.infor.items
=========== =========================== ================================= ======================

The record value is the MI output record as JSON (field → string, exactly as M3 returned it), with
headers ``source=infor-mi``, ``program``, ``transaction``, ``lmts``, ``received_at``,
``content_type=application/json``, ``correlation_id``.

**The cursor rule.** Per feed the cursor is the highest LMTS of a completed pass, kept in
``state.watermarks`` under ``infor-mi:{cono}:{divi}:{feed}``. A pass asks for changes after
``cursor - overlap_ms`` (a change committed late with an older stamp is still seen), reads every page
(``maxrecs`` always sent, continued by ``positionkey`` or the transaction's restart key), produces
each change, waits until the broker acknowledged **every** record, and only then stores the new
cursor (itself acknowledged before the pass returns). A failed or interrupted pass stores nothing, so
the next pass — or the next process — reads the same changes again: at least once, never lost.
Within one process a change already emitted (same key, same or older LMTS) is not emitted again, so
the overlap costs reads, not duplicates; after a restart the overlap window is re-emitted, the rest
is not. LstItmByChgDate filters by change *date*, so its records are additionally filtered by LMTS.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from connectors.infor.mi import MiValue
from ingest.infor_events.routing import InforEntity, received_at_text
from pipeline.errors import PipelineError, RetryableError
from pipeline.metrics import MESSAGES
from pipeline.producer import AckedProducer

log = logging.getLogger(__name__)

SOURCE = "infor-mi"
STAGE = "ingest-infor-poller"


class MiReader(Protocol):
    """The part of :class:`connectors.infor.mi.MiClient` the poller uses."""

    cono: str
    divi: str

    def paginate(
        self,
        program: str,
        transaction: str,
        record: Mapping[str, MiValue],
        *,
        restart_from: Mapping[str, str],
        page_size: int = 500,
    ) -> AsyncIterator[Mapping[str, str]]:
        """Every record of a List transaction, page by page."""
        ...


class CursorStore(Protocol):
    """Where cursors live (:class:`pipeline.watermarks.WatermarkStore` after ``load()``)."""

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored value of ``key``, or None."""
        ...

    def put(self, key: str, value: Mapping[str, Any]) -> None:
        """Store ``value``; returns only after the broker acknowledged it."""
        ...


@dataclass(frozen=True)
class MiFeed:
    """One changed-since List transaction; see the module docstring's table."""

    name: str
    entity: InforEntity
    program: str
    transaction: str
    key_fields: tuple[str, ...]
    restart_from: Mapping[str, str]
    query: Callable[[int], dict[str, MiValue]]
    """The transaction's input for "changed after this LMTS"."""

    def key(self, record: Mapping[str, str]) -> str:
        """The entity key of a record (the same key the BOD of that entity gets)."""
        return "-".join(record.get(name, "").strip() for name in self.key_fields)


def lmts_of(record: Mapping[str, str]) -> int:
    """The record's LMTS; a record without one (some list transactions) counts by its change date."""
    text = record.get("LMTS", "").strip()
    if text.isdigit():
        return int(text)
    date = record.get("LMDT", "").strip()
    if len(date) == 8 and date.isdigit():
        return int(datetime.strptime(date, "%Y%m%d").replace(tzinfo=UTC).timestamp() * 1000)
    return 0


def _changed_since(lmts: int) -> dict[str, MiValue]:
    """MMS200MI LstItmByChgDate's inputs for items changed since ``lmts``. With no watermark yet the
    from-date is left out (every item): FLMD is a date field, and ``00000000`` is not a date."""
    if lmts <= 0:
        return {}
    return {"FLMD": datetime.fromtimestamp(lmts / 1000, tz=UTC).strftime("%Y%m%d")}


FEEDS: Mapping[str, MiFeed] = {
    "inventory": MiFeed(
        "inventory",
        InforEntity.INVENTORY,
        "OIS100MI",
        "LstNewBalances",
        ("WHLO", "ITNO"),
        {"LMTS": "LMTS"},
        lambda since: {"LMTS": str(since)},
    ),
    "customers": MiFeed(
        "customers",
        InforEntity.CUSTOMERS,
        "CRS610MI",
        "LstByNumber",
        ("CUNO",),
        {"CUNO": "CUNO"},
        lambda since: {"CUNO": "", "LMTS": str(since)},
    ),
    "items": MiFeed(
        "items",
        InforEntity.ITEMS,
        "MMS200MI",
        "LstItmByChgDate",
        ("ITNO",),
        {"FLMD": "LMDT"},
        _changed_since,
    ),
}
"""Every feed the poller knows, by the name used in ``PSINFOR_INFOR_EVENTS__POLL_FEEDS``."""


@dataclass(frozen=True)
class PassResult:
    """What one pass over a feed did."""

    feed: str
    read: int
    emitted: int
    cursor_before: int
    cursor_after: int


class MiPoller:
    """Polls the configured feeds into their raw topics; see the module docstring for the rules."""

    def __init__(
        self,
        mi: MiReader,
        producer: AckedProducer,
        store: CursorStore,
        *,
        topics: Mapping[InforEntity, str],
        feeds: list[MiFeed],
        page_size: int = 500,
        overlap_ms: int = 60_000,
        ack_timeout_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._mi = mi
        self._producer = producer
        self._store = store
        self._topics = dict(topics)
        self.feeds = feeds
        self._page_size = page_size
        self._overlap_ms = overlap_ms
        self._ack_timeout_s = ack_timeout_s
        self._clock = clock
        # Per feed: entity key -> highest LMTS emitted and acknowledged by this process.
        self._emitted: dict[str, dict[str, int]] = {feed.name: {} for feed in feeds}

    def cursor_key(self, feed: MiFeed) -> str:
        """The feed's key in ``state.watermarks``."""
        return f"{SOURCE}:{self._mi.cono}:{self._mi.divi or '-'}:{feed.name}"

    def cursor(self, feed: MiFeed) -> int:
        """The feed's stored cursor (0 before its first completed pass)."""
        stored = self._store.get(self.cursor_key(feed)) or {}
        value = stored.get("lmts", 0)
        return value if isinstance(value, int) and value >= 0 else 0

    async def poll(self, feed: MiFeed) -> PassResult:
        """One pass over ``feed``: read, produce, wait for every ack, then store the new cursor.

        Raises (RetryableError, InvalidMessage, ProduceError from the MI client or the producer) with
        the cursor untouched.
        """
        before = self.cursor(feed)
        since = max(0, before - self._overlap_ms)
        emitted = self._emitted[feed.name]
        topic = self._topics[feed.entity]
        pending: list[tuple[str, int, asyncio.Task[tuple[int, int]]]] = []
        highest, read = before, 0
        try:
            async for record in self._mi.paginate(
                feed.program,
                feed.transaction,
                feed.query(since),
                restart_from=feed.restart_from,
                page_size=self._page_size,
            ):
                read += 1
                key, lmts = feed.key(record), lmts_of(record)
                highest = max(highest, lmts)
                if lmts <= since or emitted.get(key, -1) >= lmts:
                    continue
                pending.append(
                    (key, lmts, asyncio.create_task(self._produce(feed, topic, key, lmts, record)))
                )
            outcomes = await asyncio.gather(*(task for _, _, task in pending), return_exceptions=True)
        finally:
            for _, _, task in pending:
                task.cancel()
        errors = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        for (key, lmts, _), outcome in zip(pending, outcomes, strict=True):
            if not isinstance(outcome, BaseException):
                emitted[key] = max(emitted.get(key, -1), lmts)
        if errors:
            MESSAGES.labels(STAGE, topic, "produce_failed").inc(len(errors))
            first = errors[0]
            if isinstance(first, PipelineError):
                raise first
            raise RetryableError(f"{feed.name}: {len(errors)} record(s) not acknowledged: {first}") from first
        MESSAGES.labels(STAGE, topic, "ok").inc(len(pending))
        if highest > before:
            # Every record of the pass is acknowledged: only now may the cursor move past them.
            value = {"lmts": highest, "updated_at": received_at_text(self._clock())}
            await asyncio.to_thread(self._store.put, self.cursor_key(feed), value)
        result = PassResult(feed.name, read, len(pending), before, max(before, highest))
        log.info(
            "MI feed polled",
            extra={
                "feed": feed.name,
                "read": read,
                "emitted": len(pending),
                "cursor_before": before,
                "cursor_after": result.cursor_after,
            },
        )
        return result

    async def _produce(
        self, feed: MiFeed, topic: str, key: str, lmts: int, record: Mapping[str, str]
    ) -> tuple[int, int]:
        value = json.dumps(dict(record), separators=(",", ":"), ensure_ascii=False).encode()
        headers = (
            ("source", SOURCE.encode()),
            ("program", feed.program.encode()),
            ("transaction", feed.transaction.encode()),
            ("lmts", str(lmts).encode()),
            ("received_at", received_at_text(self._clock()).encode()),
            ("content_type", b"application/json"),
            ("correlation_id", f"m3:{feed.program}:{key}:{lmts}".encode()),
        )
        return await self._producer.produce_acked(
            topic, key.encode(), value, headers, ack_timeout_s=self._ack_timeout_s
        )

    async def run(
        self, stop: asyncio.Event, interval_s: float, heartbeat: Callable[[], None] = lambda: None
    ) -> None:
        """Poll every feed, pause ``interval_s``, repeat until ``stop`` is set.

        A retryable failure of one feed is logged and retried next round (its cursor stays); anything
        else propagates (a bug, or a configuration the operator must fix). ``heartbeat`` is called after
        every feed and every second of the pause (the service's liveness).
        """
        while not stop.is_set():
            for feed in self.feeds:
                try:
                    await self.poll(feed)
                except RetryableError as exc:
                    log.warning(
                        "MI feed pass failed; retrying next round",
                        extra={"feed": feed.name, "error": str(exc)},
                    )
                heartbeat()
            deadline = time.monotonic() + interval_s
            while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), min(1.0, left))
                heartbeat()
