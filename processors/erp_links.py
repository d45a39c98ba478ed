"""The links between shop entities and their M3 twins, read from the compacted ``state.erp-links`` topic.

The Infor flows need them backwards: an M3 event names its order by M3 order number (ORNO) or by the
customer's order number (CUOR = the PrestaShop reference), and its customer by M3 customer number
(CUNO); the canonical records are keyed by the shop's ``order_key`` / ``customer_key``. The Infor sinks
write one record per linked entity (they need the forward direction themselves, to find an earlier
create after a retry); this module keeps every link in memory and indexes it both ways.

Record format (the single definition; :func:`order_link_record` / :func:`customer_link_record` build
it, :func:`parse_link` reads it)::

    key   order:{shop_id}:{id_order}          value {"order_key": "1:1042", "cono": "100",
                                                     "reference": "XKBKNABJK",
                                                     "erp_order_number": "1000012345" | null}
    key   customer:{shop_id}:{id_customer}    value {"customer_key": "1:42", "cono": "100",
                                                     "erp_customer_number": "PS000042"}
    null value (tombstone)                    the link is gone

Values are UTF-8 JSON objects; unknown fields are ignored, so writers may add some (``linked_at``,
``source``). The order sink writes the order record twice: **before** it asks M3 to create the order
(reference and company known, ``erp_order_number`` null), and again once M3 confirmed it with the ORNO.
The first write lets the order-status flow find an order by its CUOR in the window between M3 creating
it and the sink learning its number; shipments and invoices, which name only the ORNO, come later.

Freshness: :class:`ErpLinkStore` loads the topic to its end before the flows start and keeps consuming
it in a background thread. A lookup that misses first waits until the store has read everything the
topic held at that moment (one watermark query, :meth:`ErpLinkStore.sync`) and then asks again, so a
link the sink wrote before the M3 event reached the processor is always found. Only a real miss costs
that round trip: orders keyed in M3 directly (not shop orders) and ERP-only customers.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from pipeline.errors import RetryableError
from pipeline.kafka_config import librdkafka_config
from pipeline.settings import KafkaSettings

log = logging.getLogger(__name__)

LINKS_TOPIC = "state.erp-links"
"""The catalogue name of the links topic (a deployment may map it to another actual name)."""

_Found = TypeVar("_Found")

ORDER_PREFIX = "order:"
CUSTOMER_PREFIX = "customer:"


@dataclass(frozen=True)
class OrderLink:
    """A shop order and its M3 order: ``erp_order_number`` is empty until M3 confirmed the order."""

    order_key: str
    cono: str
    reference: str = ""
    erp_order_number: str = ""


@dataclass(frozen=True)
class CustomerLink:
    """A shop customer and the M3 customer (CUNO in company ``cono``) that stands for it."""

    customer_key: str
    cono: str
    erp_customer_number: str


def order_link_record(link: OrderLink) -> tuple[bytes, bytes]:
    """The (key, value) of ``link`` on ``state.erp-links`` (see the module docstring)."""
    value = {
        "order_key": link.order_key,
        "cono": link.cono,
        "reference": link.reference or None,
        "erp_order_number": link.erp_order_number or None,
    }
    return f"{ORDER_PREFIX}{link.order_key}".encode(), _json(value)


def customer_link_record(link: CustomerLink) -> tuple[bytes, bytes]:
    """The (key, value) of ``link`` on ``state.erp-links`` (see the module docstring)."""
    value = {
        "customer_key": link.customer_key,
        "cono": link.cono,
        "erp_customer_number": link.erp_customer_number,
    }
    return f"{CUSTOMER_PREFIX}{link.customer_key}".encode(), _json(value)


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def parse_link(key: bytes, value: bytes | None) -> OrderLink | CustomerLink | None:
    """The link a record states; None for a tombstone, another entity or a value that is not a link.

    Never raises: the topic is shared with other writers, and a record we cannot read only means a
    lookup misses (the M3 event is then treated as not the shop's), which the sink's own forward
    lookups would also notice.
    """
    if value is None:
        return None
    name = key.decode("utf-8", "replace")
    try:
        decoded: Any = json.loads(value)
    except ValueError:
        return None
    if not isinstance(decoded, dict):
        return None

    def text(field: str) -> str:
        found = decoded.get(field)
        return str(found).strip() if isinstance(found, str | int) and not isinstance(found, bool) else ""

    if name.startswith(ORDER_PREFIX):
        order_key = text("order_key") or name[len(ORDER_PREFIX) :]
        return OrderLink(order_key, text("cono"), text("reference"), text("erp_order_number"))
    if name.startswith(CUSTOMER_PREFIX):
        customer_key = text("customer_key") or name[len(CUSTOMER_PREFIX) :]
        number = text("erp_customer_number")
        return CustomerLink(customer_key, text("cono"), number) if number else None
    return None


class ErpLinkIndex:
    """Every link in memory, indexed both ways; safe to update from one thread while others read.

    Implements :class:`processors.infor_source.OrderKeys` and :class:`processors.infor_source.CustomerKeys`
    (no Kafka: the unit tests' lookup, and the heart of :class:`ErpLinkStore`). A later record of the
    same entity replaces the earlier one entirely, as compaction would.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._links: dict[str, OrderLink | CustomerLink] = {}
        self._by_orno: dict[tuple[str, str], set[str]] = {}
        self._by_reference: dict[str, set[tuple[str, str]]] = {}
        self._by_cuno: dict[tuple[str, str], set[str]] = {}

    def __len__(self) -> int:
        return len(self._links)

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """Apply one ``state.erp-links`` record (a tombstone removes the entity's link)."""
        if key is None:
            return
        name = key.decode("utf-8", "replace")
        link = parse_link(key, value)
        with self._lock:
            self._forget(name)
            if link is not None:
                self._add(name, link)

    def link_order(self, link: OrderLink) -> None:
        """Remember ``link`` as if its record had been read."""
        self.apply(*order_link_record(link))

    def link_customer(self, link: CustomerLink) -> None:
        """Remember ``link`` as if its record had been read."""
        self.apply(*customer_link_record(link))

    def by_erp_order(self, cono: str, erp_order_number: str) -> str | None:
        """The order_key linked to ORNO ``erp_order_number`` of company ``cono``, or None.

        An empty ``cono`` (a record that does not say) matches any company while only one order has
        that number.
        """
        return self._unique(self._by_orno, cono, erp_order_number.strip())

    def by_reference(self, reference: str, cono: str = "") -> str | None:
        """The order_key of the shop order whose reference is ``reference`` (M3's CUOR), or None.

        Two shops may use the same reference: then the company decides, and with no company (or the
        same one) the answer is None rather than a guess.
        """
        with self._lock:
            found = self._by_reference.get(reference.strip(), set())
            keys = {key for company, key in found if not cono or not company or company == cono}
        return next(iter(keys)) if len(keys) == 1 else None

    def by_erp_customer(self, cono: str, erp_customer_number: str) -> str | None:
        """The customer_key linked to CUNO ``erp_customer_number`` of company ``cono``, or None.

        None as well when several shop customers are linked to the one M3 customer: which one the
        record is about cannot be told, so it stays the ERP's own (see :mod:`processors.infor_customers`).
        """
        return self._unique(self._by_cuno, cono, erp_customer_number.strip())

    def order_link(self, order_key: str) -> OrderLink | None:
        """The link of shop order ``order_key`` (the forward direction the Infor sinks need), or None."""
        with self._lock:
            found = self._links.get(f"{ORDER_PREFIX}{order_key}")
        return found if isinstance(found, OrderLink) else None

    def customer_link(self, customer_key: str) -> CustomerLink | None:
        """The link of shop customer ``customer_key``, or None."""
        with self._lock:
            found = self._links.get(f"{CUSTOMER_PREFIX}{customer_key}")
        return found if isinstance(found, CustomerLink) else None

    def _unique(self, index: dict[tuple[str, str], set[str]], cono: str, number: str) -> str | None:
        if not number:
            return None
        with self._lock:
            if cono.strip():
                keys = set(index.get((cono.strip(), number), set())) | index.get(("", number), set())
            else:
                keys = set().union(*(found for (_, n), found in index.items() if n == number))
        return next(iter(keys)) if len(keys) == 1 else None

    def _add(self, name: str, link: OrderLink | CustomerLink) -> None:
        self._links[name] = link
        if isinstance(link, OrderLink):
            if link.erp_order_number:
                self._by_orno.setdefault((link.cono, link.erp_order_number), set()).add(link.order_key)
            if link.reference:
                self._by_reference.setdefault(link.reference, set()).add((link.cono, link.order_key))
        else:
            self._by_cuno.setdefault((link.cono, link.erp_customer_number), set()).add(link.customer_key)

    def _forget(self, name: str) -> None:
        old = self._links.pop(name, None)
        if isinstance(old, OrderLink):
            _discard(self._by_orno, (old.cono, old.erp_order_number), old.order_key)
            _discard(self._by_reference, old.reference, (old.cono, old.order_key))
        elif isinstance(old, CustomerLink):
            _discard(self._by_cuno, (old.cono, old.erp_customer_number), old.customer_key)


def _discard(index: dict[Any, set[Any]], key: Any, member: Any) -> None:
    found = index.get(key)
    if found is not None:
        found.discard(member)
        if not found:
            del index[key]


class ErpLinkStore:
    """The Kafka-backed :class:`ErpLinkIndex`: loaded at :meth:`start`, kept current in the background.

    Implements :class:`processors.infor_source.OrderKeys` and :class:`processors.infor_source.CustomerKeys`.
    Lookups may be called from any thread once :meth:`start` returned. A miss waits for the store to
    catch up with the topic (:meth:`sync`) and asks again; when the broker cannot be reached within
    ``sync_timeout_s`` it raises RetryableError, so the runner retries the event instead of skipping
    an order that may well be the shop's.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        topic: str = LINKS_TOPIC,
        *,
        client_id_suffix: str = "processors-erp-links",
        load_timeout_s: float = 60.0,
        sync_timeout_s: float = 10.0,
    ) -> None:
        self.topic = topic
        self.index = ErpLinkIndex()
        self._kafka = kafka
        self._suffix = client_id_suffix
        self._load_timeout_s = load_timeout_s
        self._sync_timeout_s = sync_timeout_s
        self._consumer: Consumer | None = None
        # Watermark queries get their own client: librdkafka blocks them behind the reader's poll().
        self._probe: Consumer | None = None
        self._probe_lock = threading.Lock()
        self._partitions: list[int] = []
        self._positions: dict[int, int] = {}
        self._progress = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------ life cycle

    def start(self) -> int:
        """Read the topic to its current end, then follow it in a daemon thread; returns the links held.

        Raises RetryableError when the topic is missing or not read to its end within the load timeout.
        """
        if self._thread is not None:
            raise RuntimeError("ErpLinkStore.start() was already called")
        config = librdkafka_config(self._kafka, client_id_suffix=self._suffix)
        # No group membership and no commits: every process reads the whole compacted topic.
        config.update(
            {"group.id": f"{self._suffix}-reader", "enable.auto.commit": False, "enable.partition.eof": True}
        )
        consumer = Consumer(config)
        self._probe = Consumer({**config, "client.id": f"{config['client.id']}-probe"})
        try:
            metadata = consumer.list_topics(self.topic, timeout=self._load_timeout_s)
            described = metadata.topics.get(self.topic)
            if described is None or described.error is not None or not described.partitions:
                raise RetryableError(f"links topic {self.topic} is not available; run `psinfor topics apply`")
            self._partitions = sorted(described.partitions)
            consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in self._partitions])
            self._consumer = consumer
            deadline = time.monotonic() + self._load_timeout_s
            ends = self._high_watermarks(self._load_timeout_s)
            while not self._reached(ends):
                if time.monotonic() > deadline:
                    raise RetryableError(f"{self.topic} not read to its end within {self._load_timeout_s:g}s")
                self._poll_once(0.2)
        except KafkaException as exc:
            self._close_clients()
            raise RetryableError(f"reading {self.topic}: {exc}") from exc
        except BaseException:
            self._close_clients()
            raise
        self._thread = threading.Thread(target=self._follow, name="erp-links", daemon=True)
        self._thread.start()
        log.info("erp links loaded", extra={"topic": self.topic, "links": len(self.index)})
        return len(self.index)

    def close(self) -> None:
        """Stop following the topic and close the consumer (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)
        self._close_clients()

    def _close_clients(self) -> None:
        for client in (self._consumer, self._probe):
            if client is not None:
                client.close()
        self._consumer = self._probe = None

    def sync(self, timeout_s: float | None = None) -> None:
        """Return once the store has read every record the topic held when this call began.

        Raises RetryableError when that takes longer than ``timeout_s`` (default: the sync timeout).
        """
        budget = self._sync_timeout_s if timeout_s is None else timeout_s
        try:
            ends = self._high_watermarks(budget)
        except KafkaException as exc:
            raise RetryableError(f"reading the end of {self.topic}: {exc}") from exc
        deadline = time.monotonic() + budget
        with self._progress:
            while not self._reached(ends):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RetryableError(f"{self.topic} not caught up within {budget:g}s")
                self._progress.wait(remaining)

    # --------------------------------------------------------------------------------- lookups

    def by_erp_order(self, cono: str, erp_order_number: str) -> str | None:
        """See :meth:`ErpLinkIndex.by_erp_order`; a miss is confirmed against the topic's end first."""
        return self._lookup(lambda: self.index.by_erp_order(cono, erp_order_number))

    def by_reference(self, reference: str, cono: str = "") -> str | None:
        """See :meth:`ErpLinkIndex.by_reference`; a miss is confirmed against the topic's end first."""
        return self._lookup(lambda: self.index.by_reference(reference, cono))

    def by_erp_customer(self, cono: str, erp_customer_number: str) -> str | None:
        """See :meth:`ErpLinkIndex.by_erp_customer`; a miss is confirmed against the topic's end first."""
        return self._lookup(lambda: self.index.by_erp_customer(cono, erp_customer_number))

    def order_link(self, order_key: str) -> OrderLink | None:
        """See :meth:`ErpLinkIndex.order_link`; a miss is confirmed against the topic's end first."""
        return self._lookup(lambda: self.index.order_link(order_key))

    def customer_link(self, customer_key: str) -> CustomerLink | None:
        """See :meth:`ErpLinkIndex.customer_link`; a miss is confirmed against the topic's end first."""
        return self._lookup(lambda: self.index.customer_link(customer_key))

    def _lookup(self, ask: Callable[[], _Found | None]) -> _Found | None:
        if self._thread is None:
            raise RuntimeError("ErpLinkStore.start() must run first")
        found = ask()
        if found is not None:
            return found
        self.sync()
        return ask()

    # -------------------------------------------------------------------------------- internals

    def _high_watermarks(self, timeout_s: float) -> dict[int, int]:
        probe = self._probe
        assert probe is not None
        ends: dict[int, int] = {}
        with self._probe_lock:
            for partition in self._partitions:
                _low, high = probe.get_watermark_offsets(
                    TopicPartition(self.topic, partition), timeout=max(0.5, timeout_s), cached=False
                )
                ends[partition] = high
        return ends

    def _reached(self, ends: dict[int, int]) -> bool:
        return all(self._positions.get(p, 0) >= end for p, end in ends.items() if end > 0)

    def _poll_once(self, timeout_s: float) -> None:
        consumer = self._consumer
        assert consumer is not None
        message = consumer.poll(timeout_s)
        if message is None:
            return
        error = message.error()
        partition, offset = message.partition() or 0, message.offset() or 0
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                # The partition's end as of now; compaction gaps never leave us waiting for an offset.
                self._advance(partition, offset)
                return
            if error.fatal():
                raise KafkaException(error)
            log.warning("reading erp links", extra={"topic": self.topic, "error": error.str()})
            return
        self.index.apply(message.key(), message.value())
        self._advance(partition, offset + 1)

    def _advance(self, partition: int, position: int) -> None:
        with self._progress:
            if position > self._positions.get(partition, 0):
                self._positions[partition] = position
                self._progress.notify_all()

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                self._poll_once(0.2)
            except KafkaException:
                # Lookups that miss now time out in sync() and are retried by the runner; a broker
                # that comes back lets this thread resume, so a lasting failure shows as retries.
                log.exception("erp links reader failed; lookups will retry", extra={"topic": self.topic})
                self._stop.wait(1.0)
