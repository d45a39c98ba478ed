"""What the anomaly checks remember: the canonical records this worker emitted, seeded from their topics.

A flow's ``to_record`` sees one raw event; some anomaly flags need more (ARCHITECTURE.md §7). The
runner feeds :class:`AnomalyHistory` with every datum it produces on a canonical topic, and flows read
it through ``FlowContext.history`` (never write it, so ``to_record`` stays a function of its inputs):

- orders: the order value in the base currency, per shop, over the last ``order_window`` orders (a
  later version of an order replaces its earlier value) → the robust z-score of a new order's value;
- products: the latest catalogue price per SKU (the shop's own, else the ERP's) → a line's unit price
  against the catalogue, when the order line does not carry the catalogue price itself;
- inventory: the latest available quantity per SKU and warehouse → a stock drop beyond the rules'
  threshold.

At start the worker seeds it from the tail of ``canonical.order.v1``, ``canonical.product.v1`` and
``canonical.inventory.v1`` (the last N records of each partition, decoded with the Avro codec, oldest
first: :func:`seed_history`), so a restart does not forget the shops' recent orders.

It also remembers which keys are held for review, with the newest version held (``hold``/``held``):
held stays held, so a later version of a held order, unflagged because the history moved on, goes to
the review topic too instead of reaching Infor past its held version (seen in the end-to-end run),
until a person releases the newest held version (``release``). Every worker learns the holds of all
workers and the releases from the review and decision topics (``processors/review_decisions.py``), so
a key keeps its hold when its partition moves to another worker.

Flags computed from it are advisory: they depend on what this history held when the event was mapped
(what the worker emitted since its start plus the seeded tail, never the other workers' partitions),
so a replay or a restart may flag an event differently and route it differently (review or canonical).
Its ``event_id`` never changes: that depends on the source event only.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient

from pipeline.errors import InvalidMessage, RetryableError
from pipeline.kafka_config import librdkafka_config
from pipeline.settings import KafkaSettings
from schemas.codec import AvroCodec

log = logging.getLogger(__name__)

HISTORY_TOPICS: Final[Mapping[str, str]] = {
    "Order": "canonical.order.v1",
    "Product": "canonical.product.v1",
    "InventoryLevel": "canonical.inventory.v1",
}
"""Record name → the catalogue topic :func:`seed_history` reads it from."""

DEFAULT_ORDER_WINDOW = 500
DEFAULT_SEED_TAIL = 1000

UNKNOWN_VERSION: Final = -1
"""The held version of a review record without a ``version`` header: any release covers it."""
"""Records read back per partition of each history topic at start (bounded start-up time)."""


@dataclass(frozen=True, slots=True)
class CataloguePrice:
    """A SKU's catalogue unit price (tax excluded) as the latest canonical Product record stated it."""

    amount: Decimal
    currency: str


class AnomalyHistory:
    """Recent canonical facts of one worker, in memory (see the module docstring).

    Not thread-safe; the worker's flows run on one event loop. Memory: ``order_window`` values per
    shop, one price per SKU and one level per SKU and warehouse.
    """

    def __init__(self, order_window: int = DEFAULT_ORDER_WINDOW) -> None:
        if order_window < 1:
            raise ValueError("the order window must hold at least one order")
        self._order_window = order_window
        self._orders: dict[str, OrderedDict[str, Decimal]] = {}
        self._prices: dict[tuple[str, str], CataloguePrice] = {}
        self._stock: dict[tuple[str, str], Decimal] = {}
        self._held: dict[tuple[str, bytes], int] = {}
        self._released: dict[tuple[str, bytes], int] = {}

    def hold(self, record: str, key: bytes, version: int = UNKNOWN_VERSION) -> None:
        """Version ``version`` of ``key`` went to the review topic: its later versions follow it.

        A version a person already released is not held again (the review and decision topics are
        read side by side, so a held record can be read after the release that covers it)."""
        where = (record, key)
        released = self._released.get(where)
        if released is not None and version <= released:
            return
        self._held[where] = max(version, self._held.get(where, UNKNOWN_VERSION))

    def held(self, record: str, key: bytes) -> bool:
        """Whether a version of ``key`` was held for review (flags are advisory and change with the
        history: a later version unflagged must not reach the canonical topic past its held one)."""
        return (record, key) in self._held

    def release(self, record: str, key: bytes, version: int) -> bool:
        """A person released ``version`` of ``key``: un-hold it, unless a later version was held since
        (that one waits for its own decision). True when the key is no longer held."""
        where = (record, key)
        self._released[where] = max(version, self._released.get(where, UNKNOWN_VERSION))
        newest = self._held.get(where)
        if newest is None or newest > version:
            return False
        del self._held[where]
        return True

    def observe(self, record: str, datum: Mapping[str, Any]) -> None:
        """Remember what one canonical ``record`` datum (``Order``, ``Product``, ``InventoryLevel``)
        says; datums of other records are ignored."""
        if record == "Order":
            self._observe_order(datum)
        elif record == "Product":
            shop = datum["meta"].get("shop_id") or ""
            price = datum["price"]
            self._prices[(str(shop), str(datum["sku"]))] = CataloguePrice(price["amount"], price["currency"])
        elif record == "InventoryLevel":
            self._stock[(str(datum["sku"]), str(datum["warehouse"]))] = datum["available"]

    def order_values(self, shop_id: str, *, excluding: str | None = None) -> list[Decimal]:
        """The base-currency values of the shop's recent orders, oldest first, without ``excluding``
        (the order being checked: its own earlier version is no evidence about it)."""
        window = self._orders.get(shop_id)
        if window is None:
            return []
        return [value for key, value in window.items() if key != excluding]

    def catalogue_price(self, sku: str, shop_id: str, currency: str) -> Decimal | None:
        """The SKU's latest catalogue price in ``currency``: the shop's own, else the ERP's (a product
        record of no shop); None when neither was seen in that currency (prices are never converted)."""
        for owner in (shop_id, ""):
            found = self._prices.get((owner, sku))
            if found is not None and found.currency == currency:
                return found.amount
        return None

    def last_available(self, sku: str, warehouse: str) -> Decimal | None:
        """The SKU's latest available quantity in ``warehouse``, or None when none was seen."""
        return self._stock.get((sku, warehouse))

    def _observe_order(self, datum: Mapping[str, Any]) -> None:
        shop = str(datum["meta"].get("shop_id") or "")
        # base_totals is null exactly when the order is in the base currency already.
        totals = datum.get("base_totals") or datum["totals"]
        window = self._orders.setdefault(shop, OrderedDict())
        key = str(datum["order_key"])
        window.pop(key, None)
        window[key] = totals["grand_total"]["amount"]
        while len(window) > self._order_window:
            window.popitem(last=False)


@dataclass(frozen=True, slots=True)
class TailRecord:
    """One record read back from a history topic."""

    partition: int
    offset: int
    timestamp_ms: int
    value: bytes
    key: bytes | None = None


@dataclass(frozen=True, slots=True)
class SeedCount:
    """What seeding from one topic did: records observed, and records skipped as unreadable."""

    observed: int = 0
    skipped: int = 0


def seed_from_records(
    history: AnomalyHistory, record: str, topic: str, records: Iterable[TailRecord], codec: AvroCodec
) -> SeedCount:
    """Decode ``records`` of ``topic`` with ``codec`` and observe them in the order given.

    A record the codec cannot read (InvalidMessage) is skipped and counted: the history is advisory,
    and one foreign record must not stop a worker from starting. RetryableError (registry
    unreachable) propagates.
    """
    observed = skipped = 0
    for item in records:
        try:
            datum = codec.decode(item.value, topic)
        except InvalidMessage as exc:
            skipped += 1
            log.warning(
                "history record not readable; skipped",
                extra={"topic": topic, "partition": item.partition, "offset": item.offset, "error": str(exc)},
            )
            continue
        history.observe(record, datum)
        observed += 1
    return SeedCount(observed, skipped)


def read_tail(
    kafka: KafkaSettings,
    topic: str,
    per_partition: int,
    *,
    timeout_s: float = 60.0,
    client_id_suffix: str = "processors-history",
) -> list[TailRecord]:
    """The last ``per_partition`` records of every partition of ``topic``, oldest first (by record
    time, then partition and offset); [] when the topic does not exist.

    Reads without a consumer group (nothing is committed). What is not read within ``timeout_s`` is
    left out with a warning; RetryableError when the broker cannot be asked at all.
    """
    config = librdkafka_config(kafka, client_id_suffix=client_id_suffix)
    config.update(
        {"group.id": f"{client_id_suffix}-reader", "enable.auto.commit": False, "enable.partition.eof": True}
    )
    consumer = Consumer(config)
    try:
        return _read_tail(consumer, topic, per_partition, timeout_s)
    except KafkaException as exc:
        raise RetryableError(f"reading the tail of {topic}: {exc}") from exc
    finally:
        consumer.close()


def _read_tail(consumer: Consumer, topic: str, per_partition: int, timeout_s: float) -> list[TailRecord]:
    deadline = time.monotonic() + timeout_s
    # All topics, not this one: a metadata request naming a missing topic may create it.
    described = consumer.list_topics(timeout=timeout_s).topics.get(topic)
    if described is None:
        return []
    if described.error is not None:
        raise RetryableError(f"history topic {topic}: {described.error}")
    ends: dict[int, int] = {}
    starts: list[TopicPartition] = []
    for partition in sorted(described.partitions):
        low, high = consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=timeout_s, cached=False
        )
        if high > low:
            ends[partition] = high
            starts.append(TopicPartition(topic, partition, max(low, high - per_partition)))
    found: list[TailRecord] = []
    if not starts:
        return found
    consumer.assign(starts)
    while ends and time.monotonic() < deadline:
        for message in consumer.consume(500, timeout=0.5):
            partition, offset = message.partition() or 0, message.offset() or 0
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    ends.pop(partition, None)
                elif error.fatal():
                    raise KafkaException(error)
                continue
            value = message.value()
            if partition in ends and offset < ends[partition] and value is not None:
                found.append(TailRecord(partition, offset, message.timestamp()[1], value, message.key()))
            if offset + 1 >= ends.get(partition, 0):
                ends.pop(partition, None)
    if ends:
        log.warning(
            "history topic not read to its end in time; starting with what was read",
            extra={"topic": topic, "partitions": sorted(ends), "timeout_s": timeout_s},
        )
    found.sort(key=lambda item: (item.timestamp_ms, item.partition, item.offset))
    return found


def seed_history(
    history: AnomalyHistory,
    kafka: KafkaSettings,
    registry: SchemaRegistryClient,
    topics: Mapping[str, str],
    *,
    per_partition: int = DEFAULT_SEED_TAIL,
    timeout_s: float = 60.0,
) -> dict[str, SeedCount]:
    """Seed ``history`` from the tail of each topic in ``topics`` (record name → actual topic).

    Returns what was observed and skipped per record name. RetryableError when the broker or the
    registry cannot be reached (the worker does not start; its supervisor tries again).
    """
    counts: dict[str, SeedCount] = {}
    for record, topic in topics.items():
        tail = read_tail(kafka, topic, per_partition, timeout_s=timeout_s)
        counts[record] = seed_from_records(history, record, topic, tail, AvroCodec(registry, record))
    log.info(
        "anomaly history seeded",
        extra={record: {"observed": c.observed, "skipped": c.skipped} for record, c in counts.items()},
    )
    return counts
