"""Full scans for changes ``date_upd`` cannot see: ``order_carriers`` (tracking) and ``stock_availables``.

Neither resource has a usable change date (order_carriers only ``date_add``; stock_availables none),
so a scan reads every row (by id) and writes the rows that CHANGED.

What "changed" means, also across a restart: a row has changed when the digest of its canonical
record (:func:`digest`, SHA-256 of the bytes :func:`~ingest.prestashop_poller.raw.canonical_json`
writes) differs from the digest of the version this poller last got ACKNOWLEDGED on the raw topic,
or when the row is new. Those digests are persisted in ``state.watermarks`` (keys
``prestashop:{shop}:{resource}:scan:{chunk}``, one JSON object ``{id: digest}`` per block of
:data:`CHUNK_IDS` ids, so no state record grows past ~40 kB) only after the changed rows were
acknowledged. Hence:

- a restart compares with what is on the topic, not with what an earlier process happened to read: a
  change made while the poller was down is written by the first scan after the restart;
- a crash after the records were acknowledged but before the digests were stored writes those rows
  again (a duplicate the processors absorb), never loses them;
- the very first scan (no digests) writes every row: the baseline;
- a row that disappears is dropped from the digests (nothing is written for it; the sources announce
  deletes through the entities that own them).

Rows are read in id order with offset paging; a row deleted during a scan can shift a later row past
a page boundary, and that row is then seen by the next scan (a scan is eventually complete, the
orders loop is complete in every pass).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from connectors.prestashop.client import PrestaShopClient
from connectors.prestashop.json_reads import JsonRecord
from connectors.prestashop.models import OrderCarrier, PsModel, StockAvailable
from ingest.prestashop_poller.raw import RAW_TOPIC_BY_RESOURCE, canonical_json, produce_raw, snapshot
from pipeline.errors import PipelineError, RetryableError
from pipeline.metrics import MESSAGES
from pipeline.producer import Delivery, PipelineProducer
from pipeline.watermarks import WatermarkStore

log = logging.getLogger(__name__)

STAGE = "ingest-prestashop-poller"
CHUNK_IDS = 1000
"""Ids per persisted digest block."""

SCANNED_MODELS: dict[str, type[PsModel]] = {
    "order_carriers": OrderCarrier,
    "stock_availables": StockAvailable,
}


def digest(record: JsonRecord) -> str:
    """A short, stable fingerprint of a record's canonical bytes (80 bits of SHA-256, hex)."""
    return hashlib.sha256(canonical_json(record)).hexdigest()[:20]


@dataclass(frozen=True, slots=True)
class ScanDiff:
    """What a scan found compared with the acknowledged digests."""

    changed: list[int]
    """New rows and rows whose digest differs, in id order."""
    removed: list[int]
    """Rows that were known but are gone, in id order."""


def diff(previous: Mapping[int, str], current: Mapping[int, str]) -> ScanDiff:
    """Compare the digests of the last acknowledged versions with the digests just read."""
    changed = sorted(id_ for id_, value in current.items() if previous.get(id_) != value)
    removed = sorted(id_ for id_ in previous if id_ not in current)
    return ScanDiff(changed, removed)


def scan_key(shop_id: int, resource: str, chunk: int) -> str:
    """The ``state.watermarks`` key of one digest block."""
    return f"prestashop:{shop_id}:{resource}:scan:{chunk}"


@dataclass
class ScanState:
    """The acknowledged digests of one resource, as persisted in blocks of :data:`CHUNK_IDS` ids."""

    digests: dict[int, str] = field(default_factory=dict)

    @classmethod
    def from_blocks(cls, blocks: Iterable[Mapping[str, object]]) -> ScanState:
        """Rebuild from stored block values (``{"digests": {"<id>": "<digest>"}}``); junk is skipped."""
        digests: dict[int, str] = {}
        for block in blocks:
            stored = block.get("digests")
            if isinstance(stored, dict):
                digests.update(
                    {int(k): str(v) for k, v in stored.items() if str(k).isdigit() and isinstance(v, str)}
                )
        return cls(digests)

    def apply(self, updates: Mapping[int, str], removed: Iterable[int]) -> set[int]:
        """Take acknowledged digests and forget removed rows; returns the blocks that changed."""
        touched: set[int] = set()
        for id_, value in updates.items():
            self.digests[id_] = value
            touched.add(id_ // CHUNK_IDS)
        for id_ in removed:
            if self.digests.pop(id_, None) is not None:
                touched.add(id_ // CHUNK_IDS)
        return touched

    def block(self, chunk: int) -> dict[str, object]:
        """The value stored for block ``chunk``."""
        low, high = chunk * CHUNK_IDS, (chunk + 1) * CHUNK_IDS
        return {"digests": {str(i): d for i, d in sorted(self.digests.items()) if low <= i < high}}


@dataclass(frozen=True, slots=True)
class ScanReport:
    """What one scan did."""

    resource: str
    rows: int
    written: int
    removed: int
    seconds: float


class _Acks:
    """Counts delivery outcomes of one scan (called from the producer's thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.acked: set[int] = set()
        self.failure: PipelineError | None = None

    def callback(self, id_: int) -> Callable[[Delivery], None]:
        def done(delivery: Delivery) -> None:
            with self._lock:
                if delivery.error is None:
                    self.acked.add(id_)
                elif self.failure is None:
                    self.failure = delivery.error

        return done


class Scanner:
    """Scans one resource (``order_carriers`` or ``stock_availables``); see the module docstring."""

    def __init__(
        self,
        client: PrestaShopClient,
        producer: PipelineProducer,
        store: WatermarkStore,
        *,
        resource: str,
        shop_id: int,
        topic_prefix: str,
        poll_run_id: str,
        beat: Callable[[], None] = lambda: None,
    ) -> None:
        self.resource = resource
        self._model = SCANNED_MODELS[resource]
        self._client = client
        self._producer = producer
        self._store = store
        self._shop_id = shop_id
        self._prefix = topic_prefix
        self._run_id = poll_run_id
        self._beat = beat
        self._topic = f"{topic_prefix}{RAW_TOPIC_BY_RESOURCE[resource]}"
        self.state = ScanState()

    def restore(self) -> int:
        """Load the acknowledged digests from the store; returns how many rows they cover."""
        prefix = scan_key(self._shop_id, self.resource, 0).rsplit(":", 1)[0] + ":"
        blocks = [self._store.get(key) or {} for key in self._store.keys_with_prefix(prefix)]
        self.state = ScanState.from_blocks(blocks)
        return len(self.state.digests)

    async def scan_once(self, stop: asyncio.Event | None = None) -> ScanReport:
        """Read every row, write the changed ones, then persist their digests (after the acks).

        Raises RetryableError when the shop or the broker fails; digests are then left as they were,
        so the next scan writes the same rows again. When ``stop`` is set mid-scan the scan ends
        early: the digests of what was acknowledged are kept, removals are not judged.
        """
        started = time.monotonic()
        current: dict[int, str] = {}
        pending: dict[int, str] = {}
        acks = _Acks()
        previous = self.state.digests
        count = 0
        async for fetched in self._client.iterate_fetched(self._model):
            count += 1
            id_ = fetched.model.id
            value = digest(fetched.record)
            current[id_] = value
            if previous.get(id_) == value or pending.get(id_) == value:
                continue
            raw = snapshot(
                shop_id=self._shop_id,
                resource=self.resource,
                node=self._model.NODE,
                id_=id_,
                record=fetched.record,
                date_upd=None,
                poll_run_id=self._run_id,
                trigger="scan",
            )
            produce_raw(self._producer, raw, topic_prefix=self._prefix, on_delivery=acks.callback(id_))
            pending[id_] = value
            MESSAGES.labels(STAGE, self._topic, "ok").inc()
            if count % 100 == 0:
                self._beat()
            if stop is not None and stop.is_set():
                break
        complete = stop is None or not stop.is_set()
        found = diff(previous, current) if complete else ScanDiff([], [])
        remaining = await asyncio.to_thread(self._producer.flush, 30.0)
        if acks.failure is not None or remaining:
            raise RetryableError(f"{self.resource} scan: records not delivered ({acks.failure or remaining})")
        acknowledged = {id_: value for id_, value in pending.items() if id_ in acks.acked}
        if len(acknowledged) != len(pending):
            missing = len(pending) - len(acknowledged)
            raise RetryableError(f"{self.resource} scan: {missing} records not acknowledged")
        for chunk in sorted(self.state.apply(acknowledged, found.removed)):
            await asyncio.to_thread(
                self._store.put, scan_key(self._shop_id, self.resource, chunk), self.state.block(chunk)
            )
        seconds = time.monotonic() - started
        report = ScanReport(self.resource, count, len(pending), len(found.removed), seconds)
        log.info(
            "scan done",
            extra={
                "resource": report.resource,
                "rows": report.rows,
                "written": report.written,
                "removed": report.removed,
                "seconds": round(report.seconds, 3),
            },
        )
        return report
