"""Sink throughput against the sandboxes with simulated API latency, and Infor quota utilisation.

``python -m bench.sinks --bootstrap HOST:PORT --registry URL [--records N] [--latency-ms 20]
[--keys-in-flight 16,64] [--kinds stock,status,orders] [--quota 600] [--quota-orders 80]``

For each kind (the production sink it runs in brackets):

- ``stock`` (``prestashop-stock``): ``N`` inventory levels over ``N / --levels-per-sku`` SKUs of the shop,
  level after level, all produced before the worker starts (a burst, as after an outage), so per-SKU
  coalescing shows: the writes column is the number of stock writes the shop received;
- ``status`` (``prestashop-status``): ``N`` order-status changes (paid, shipped, delivered) over the
  shop's seeded orders, each posted to ``order_histories`` only when it moves the order forward;
- ``orders`` (``infor-orders``): ``N`` shop orders of two lines each, over ``N / 2`` customers, created
  as M3 customer orders through MI (customer lookup or create, batch order entry), the M3 orders
  counted afterwards (each reference exactly once).

Per kind: the target sandbox runs as its own process (``psinfor sandbox prestashop|infor``) with
``--latency-ms`` added to every API call through its fault injection; ``N`` canonical records (Avro,
schema registered under a unique topic's subject) are produced once; a bare confluent-kafka consumer
reads them back (the raw consume ceiling on the same broker); then, for each ``--keys-in-flight``
value, the sandbox is reset and the real worker runs as its own process (``python -m sinks.main
--sinks NAME``, ``PSINFOR_SINKS__MAX_IN_FLIGHT_KEYS``). Its ``/metrics`` is polled: the rate counts
records completed (applied, skipped, coalesced or dead-lettered) per second from the first to the last
completion, so start-up (imports, group join, the shop catalogue read) is excluded, and the worker's
CPU (user + system, from ``/proc``) over the same interval gives CPU µs per record. Target requests
per record come from the sandboxes' own counters over that interval.

The sinks pace their calls per credential (PrestaShop ``PSINFOR_PRESTASHOP__REQUESTS_PER_SECOND``,
default 50/s; Infor ``PSINFOR_INFOR__REQUESTS_PER_MINUTE``, default 600/min). The sandboxes enforce
no quota in the throughput runs, so the bench raises both ceilings (``--shop-rps``, ``--infor-rpm``)
to measure latency and parallelism instead of the pacing; pass the defaults to see the paced figures.

Infor quota (``--quota``, 0 skips it): the infor-orders sink against the Infor sandbox whose gateway
allows ``--quota`` requests per 60 s per client (429 + ``Retry-After`` beyond), the sink configured as
in production (``PSINFOR_INFOR__REQUESTS_PER_MINUTE`` = the quota, times ``--quota-ceiling-factor``),
``--quota-orders`` orders. Reported: admitted M3 calls per minute against the quota, the share of 429
answers, orders per minute, and that nothing failed (every order in M3 exactly once, nothing
dead-lettered).

A run on a shared or loaded machine measures that machine: compare figures of one run with each other
(sink against ceiling, 16 against 64 keys), not across runs. Topics, subjects and consumer groups the
bench creates are deleted at the end. Run by hand; not part of the test suite (its pure parts are:
tests/unit/test_bench_sinks.py).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import httpx
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from pipeline.settings import RegistrySettings
from pipeline.topics import TopicSpec, apply_topics
from schemas.catalogue import load_catalogue
from schemas.codec import AvroCodec, AvroDatum
from schemas.examples import load_examples
from schemas.registry import SubjectSchema, register_schemas, registry_client

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = uuid.UUID("3c1f8e52-6a0b-4d7e-9f21-5b8a0c4d2e19")

KIND_NAMES = ("stock", "status", "orders")
LINKS_TOPIC = "state.erp-links"
SHOP_ID = 1
SHOP_WAREHOUSE = "LYO"
"""The ERP warehouse the default rules map to shop 1 (``warehouses.to_prestashop_shops``)."""
M3_CONO = "100"
M3_DIVI = "AAA"
M3_WAREHOUSE = "001"
M3_ORDER_TYPE = "CO1"
M3_ITEMS = tuple(f"SKU-{1002 + n}" for n in range(40))
"""Items the Infor sandbox seeds in company 100 (``SKU-1000`` + n), used for the order lines."""
STATUS_STEPS = (("PAID", "UNFULFILLED", "OPEN"), ("PAID", "SHIPPED", "OPEN"), ("PAID", "DELIVERED", "CLOSED"))
"""The status changes each order goes through, in order (payment, fulfilment, lifecycle)."""
POLL_S = 0.05
PROGRESS_EVERY_S = 5.0


@dataclass(frozen=True)
class SinkKind:
    """One benchmarked sink: its stage name, catalogue source topic, record and target."""

    kind: str
    sink: str
    source: str
    record: str
    target: str

    @property
    def dlq(self) -> str:
        """The catalogue name of the target's sink DLQ."""
        return f"dlq.sink-{self.target}"

    @property
    def needs_links(self) -> bool:
        """The Infor sinks read and write ``state.erp-links``."""
        return self.target == "infor"


KINDS: Mapping[str, SinkKind] = {
    "stock": SinkKind("stock", "prestashop-stock", "canonical.inventory.v1", "InventoryLevel", "prestashop"),
    "status": SinkKind(
        "status", "prestashop-status", "canonical.order-status.v1", "OrderStatusChange", "prestashop"
    ),
    "orders": SinkKind("orders", "infor-orders", "canonical.order.v1", "Order", "infor"),
}


# -- options -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchConfig:
    """The parsed command line."""

    bootstrap: str
    registry: str
    records: int = 600
    latency_ms: int = 20
    keys_in_flight: tuple[int, ...] = (16, 64)
    kinds: tuple[str, ...] = KIND_NAMES
    levels_per_sku: int = 4
    shop_rps: float = 1000.0
    infor_rpm: int = 60_000
    quota: int = 600
    quota_orders: int = 80
    quota_keys: int = 16
    quota_ceiling_factor: float = 1.0
    stall_s: float = 120.0

    @property
    def quota_limiter_rpm(self) -> int:
        """What the quota run tells the sink about the quota (``PSINFOR_INFOR__REQUESTS_PER_MINUTE``)."""
        return max(1, round(self.quota * self.quota_ceiling_factor))


def _positive_ints(value: str) -> tuple[int, ...]:
    try:
        numbers = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a comma-separated list of integers") from None
    if not numbers or any(n < 1 for n in numbers):
        raise argparse.ArgumentTypeError(f"{value!r} must list positive integers")
    return tuple(dict.fromkeys(numbers))


def _kind_list(value: str) -> tuple[str, ...]:
    kinds = tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    unknown = [kind for kind in kinds if kind not in KINDS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown kind(s) {', '.join(unknown)}; use {', '.join(KINDS)}")
    return kinds


def _at_least(minimum: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}")
        return number

    return parse


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not number > 0 or not math.isfinite(number):
        raise argparse.ArgumentTypeError("must be a positive number")
    return number


def build_parser() -> argparse.ArgumentParser:
    """The command line (``--help`` prints the module docstring and every option)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.sinks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--bootstrap", required=True, help="host:port of the broker")
    parser.add_argument("--registry", required=True, help="Confluent-compatible registry base URL")
    parser.add_argument(
        "--records", type=_at_least(1), default=600, help="records per kind (default %(default)s)"
    )
    parser.add_argument(
        "--latency-ms",
        type=_at_least(0),
        default=20,
        help="latency the sandboxes add to every API call (default %(default)s)",
    )
    parser.add_argument(
        "--keys-in-flight",
        type=_positive_ints,
        default=(16, 64),
        metavar="N[,N...]",
        help="one run per value of PSINFOR_SINKS__MAX_IN_FLIGHT_KEYS (default 16,64)",
    )
    parser.add_argument(
        "--kinds",
        type=_kind_list,
        default=KIND_NAMES,
        metavar="KIND[,KIND...]",
        help=f"which sinks to run: {', '.join(KINDS)} (default all)",
    )
    parser.add_argument(
        "--levels-per-sku",
        type=_at_least(1),
        default=4,
        help="stock: levels per SKU, so records / this many SKUs (default %(default)s)",
    )
    parser.add_argument(
        "--shop-rps",
        type=_positive_float,
        default=1000.0,
        help="PSINFOR_PRESTASHOP__REQUESTS_PER_SECOND of the throughput runs (default %(default)s; "
        "production default 50)",
    )
    parser.add_argument(
        "--infor-rpm",
        type=_at_least(1),
        default=60_000,
        help="PSINFOR_INFOR__REQUESTS_PER_MINUTE of the throughput runs (default %(default)s; "
        "production default 600)",
    )
    parser.add_argument(
        "--quota",
        type=_at_least(0),
        default=600,
        help="Infor gateway quota (requests per 60 s) of the quota run; 0 skips it (default %(default)s)",
    )
    parser.add_argument(
        "--quota-orders", type=_at_least(1), default=80, help="orders of the quota run (default %(default)s)"
    )
    parser.add_argument(
        "--quota-keys",
        type=_at_least(1),
        default=16,
        help="PSINFOR_SINKS__MAX_IN_FLIGHT_KEYS of the quota run (default %(default)s)",
    )
    parser.add_argument(
        "--quota-ceiling-factor",
        type=_positive_float,
        default=1.0,
        help="the quota run's sink is told quota x this (default 1: configured as in production; "
        "above 1 it has to find the quota from 429 answers)",
    )
    parser.add_argument(
        "--stall-s",
        type=_positive_float,
        default=120.0,
        help="give up a run when no record completed for this long (default %(default)s)",
    )
    return parser


def parse_args(argv: Sequence[str] | None = None) -> BenchConfig:
    """The command line as a BenchConfig (argparse exits with a usage line on a bad value)."""
    args = build_parser().parse_args(argv)
    return BenchConfig(
        bootstrap=args.bootstrap,
        registry=args.registry,
        records=args.records,
        latency_ms=args.latency_ms,
        keys_in_flight=tuple(args.keys_in_flight),
        kinds=tuple(args.kinds),
        levels_per_sku=args.levels_per_sku,
        shop_rps=args.shop_rps,
        infor_rpm=args.infor_rpm,
        quota=args.quota,
        quota_orders=args.quota_orders,
        quota_keys=args.quota_keys,
        quota_ceiling_factor=args.quota_ceiling_factor,
        stall_s=args.stall_s,
    )


# -- figures -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetCounts:
    """What a sandbox counted: API requests, write requests among them, and 429 answers."""

    requests: int = 0
    writes: int = 0
    throttled: int = 0

    def __sub__(self, other: TargetCounts) -> TargetCounts:
        return TargetCounts(
            self.requests - other.requests, self.writes - other.writes, self.throttled - other.throttled
        )


@dataclass(frozen=True)
class Ceiling:
    """A bare confluent-kafka consume of the same records: wall seconds and CPU seconds, first to last."""

    records: int
    seconds: float
    cpu_s: float

    @property
    def rate(self) -> float | None:
        """Records per second, None when too fast to time."""
        return self.records / self.seconds if self.seconds > 0 else None

    @property
    def cpu_us(self) -> float:
        """CPU µs per record."""
        return self.cpu_s / self.records * 1e6 if self.records else 0.0


@dataclass(frozen=True)
class SinkRun:
    """One worker run: how many records, how long from the first to the last completion, what it cost."""

    kind: str
    keys_in_flight: int
    records: int
    measured: int
    """Records completed after the first completion was seen (the measured interval's work)."""
    seconds: float
    cpu_s: float
    outcomes: Mapping[str, int]
    """Every record's outcome (``written``, ``unchanged``, ``coalesced``, ``invalid`` ...)."""
    interval: TargetCounts
    """Target requests during the measured interval."""
    total: TargetCounts
    """Target requests of the whole run (start-up included)."""
    retries: int = 0
    target_seconds: float = 0.0
    """From the worker's first target request to the last completion (start-up calls included)."""
    check: str = "ok"
    """``ok``, or what the target does not show that it should."""

    @property
    def rate(self) -> float | None:
        """Records per second from the first to the last completion (None: all done at once)."""
        return self.measured / self.seconds if self.measured > 0 and self.seconds > 0 else None

    @property
    def cpu_us(self) -> float | None:
        """Worker CPU µs per record over the measured interval."""
        return self.cpu_s / self.measured * 1e6 if self.measured > 0 else None

    @property
    def requests_per_record(self) -> float | None:
        """Target API requests per completed record over the measured interval."""
        return self.interval.requests / self.measured if self.measured > 0 else None

    @property
    def dead_lettered(self) -> int:
        """Records written to the DLQ."""
        return self.outcomes.get("invalid", 0)


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def outcome_summary(outcomes: Mapping[str, int]) -> str:
    """``written 250, coalesced 750`` (largest first)."""
    return ", ".join(f"{name} {count}" for name, count in Counter(outcomes).most_common() if count)


def table(runs: Sequence[tuple[SinkRun, Ceiling]]) -> list[str]:
    """The throughput table: each sink run beside the raw consume ceiling of the same records."""
    header = (
        f"{'kind':<7} {'keys':>4} {'records':>7}  {'raw/s':>9} {'raw µs':>7}  {'sink/s':>8} {'sink µs':>8} "
        f"{'per core/s':>10}  {'req/rec':>7} {'writes':>6} {'retries':>7}  {'check':<6} outcomes"
    )
    lines = [header]
    for run, ceiling in runs:
        per_core = 1e6 / run.cpu_us if run.cpu_us else None
        lines.append(
            f"{run.kind:<7} {run.keys_in_flight:>4} {run.records:>7}  {_number(ceiling.rate, ',.0f'):>9} "
            f"{ceiling.cpu_us:>7.1f}  {_number(run.rate, ',.1f'):>8} {_number(run.cpu_us, ',.0f'):>8} "
            f"{_number(per_core, ',.0f'):>10}  {_number(run.requests_per_record, '.2f'):>7} "
            f"{run.total.writes:>6} {run.retries:>7}  {run.check:<6} {outcome_summary(run.outcomes)}"
        )
    return lines


TABLE_NOTES = (
    "raw/s, raw µs: a bare confluent-kafka consume of the same records (records/s, CPU µs per record);",
    "sink/s: records completed per second, first to last completion; sink µs: worker CPU per record;",
    "per core/s: 1e6 / sink µs, the rate one full core would allow; req/rec: target API requests per",
    "record; writes: write requests the target received (PrestaShop) or M3 orders created (Infor).",
)


@dataclass(frozen=True)
class QuotaRun:
    """The infor-orders sink under a gateway quota, timed from its first M3 call to its last order."""

    quota_requests: int
    window_s: float
    limiter_rpm: int
    keys_in_flight: int
    orders: int
    seconds: float
    """From the worker's first M3 call to the last order completed (every call of the run inside)."""
    calls: TargetCounts
    """Every M3 request the gateway saw in the run (429 answers in ``throttled``)."""
    created: int
    duplicates: int
    dead_lettered: int
    retries: int

    @property
    def admitted(self) -> int:
        """M3 calls the gateway let through (counted against the quota)."""
        return self.calls.requests - self.calls.throttled

    @property
    def admitted_per_min(self) -> float:
        """Admitted M3 calls per minute."""
        return self.admitted / self.seconds * 60 if self.seconds > 0 else 0.0

    @property
    def quota_per_min(self) -> float:
        """The quota as requests per minute."""
        return self.quota_requests / self.window_s * 60

    @property
    def utilisation(self) -> float:
        """Admitted calls per minute over the quota."""
        return self.admitted_per_min / self.quota_per_min if self.quota_per_min else 0.0

    @property
    def share_429(self) -> float:
        """429 answers over every M3 request of the run."""
        return self.calls.throttled / self.calls.requests if self.calls.requests else 0.0

    @property
    def orders_per_min(self) -> float:
        """Orders completed per minute."""
        return self.orders / self.seconds * 60 if self.seconds > 0 else 0.0

    @property
    def failed(self) -> int:
        """Orders missing in M3, duplicated, or dead-lettered."""
        return (self.orders - self.created) + self.duplicates + self.dead_lettered

    def lines(self) -> list[str]:
        """The human-readable report."""
        return [
            f"quota            {self.quota_requests} requests / {self.window_s:g} s per client "
            f"({self.quota_per_min:g}/min); sink told {self.limiter_rpm}/min, "
            f"{self.keys_in_flight} keys in flight",
            f"orders           {self.orders}: {self.created} in M3, {self.duplicates} duplicated, "
            f"{self.dead_lettered} dead-lettered, {self.retries} retried",
            f"elapsed          {self.seconds:.1f} s from the first M3 call to the last order: "
            f"{self.orders_per_min:.1f} orders/min",
            f"M3 calls         {self.admitted_per_min:.0f} admitted/min = {self.utilisation:.1%} of the "
            f"quota ({self.admitted} admitted, {self.admitted / max(self.orders, 1):.1f} per order)",
            f"429 share        {self.share_429:.2%} "
            f"({self.calls.throttled} of {self.calls.requests} requests)",
            "verdict          " + ("nothing failed" if self.failed == 0 else f"{self.failed} orders failed"),
        ] + (
            [
                "note             the sliding window starts empty: over a run shorter than a few windows "
                "more than the quota rate gets through"
            ]
            if self.utilisation > 1
            else []
        )


# -- the records (pure) ------------------------------------------------------------------------------


def _example(record: str, name: str) -> AvroDatum:
    found = next(example for example in load_examples(record) if example.name == name)
    return found.datum()


def _event_id(*parts: object) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, "|".join(str(part) for part in parts))


def _quantity(value: int) -> Decimal:
    return Decimal(value).quantize(Decimal("0.0001"))


def sellable_skus(
    products: Sequence[Mapping[str, Any]], combinations: Sequence[Mapping[str, Any]]
) -> list[str]:
    """The references the stock sink can place, as its catalogue reads the shop, each sold by one unit.

    A product without combinations sells under its reference; a product with combinations does not
    (its stock is their sum), each combination does, under its own reference or the product's.
    References carried by more than one unit are left out (the sink refuses them as ambiguous).
    """
    combos_of: dict[int, list[Mapping[str, Any]]] = {}
    for combination in combinations:
        combos_of.setdefault(int(combination["id_product"]), []).append(combination)
    found: Counter[str] = Counter()
    order: list[str] = []
    for product in sorted(products, key=lambda row: int(row["id"])):
        reference = str(product.get("reference") or "").strip()
        combos = sorted(combos_of.get(int(product["id"]), []), key=lambda row: int(row["id"]))
        units = (
            [reference]
            if not combos
            else [str(c.get("reference") or "").strip() or reference for c in combos]
        )
        for sku in units:
            if sku:
                if not found[sku]:
                    order.append(sku)
                found[sku] += 1
    return [sku for sku in order if found[sku] == 1]


def stock_levels(skus: Sequence[str], records: int) -> list[tuple[str, AvroDatum]]:
    """``records`` inventory levels of warehouse LYO, SKU after SKU, level after level (pure).

    Each level of a SKU is newer than the one before (``meta.version``) and shows another quantity, so
    without coalescing each would be a write.
    """
    if not skus:
        raise ValueError("no SKUs to produce levels for")
    base = _example("InventoryLevel", "on-hand-change")
    levels: list[tuple[str, AvroDatum]] = []
    for index in range(records):
        sku = skus[index % len(skus)]
        level = index // len(skus) + 1
        on_hand = _quantity(10 * level + index % len(skus) % 7)
        datum = copy.deepcopy(base)
        datum.update(
            sku=sku,
            erp_item_number=sku,
            warehouse=SHOP_WAREHOUSE,
            on_hand=on_hand,
            allocated=_quantity(0),
            available=on_hand,
            external_ids={"infor": sku},
        )
        datum["meta"].update(
            event_id=_event_id("stock", sku, level),
            source_system="INFOR",
            source_id=f"{sku}@{SHOP_WAREHOUSE}",
            version=level,
        )
        levels.append((sku, datum))
    return levels


def final_stock(levels: Sequence[tuple[str, AvroDatum]]) -> dict[str, int]:
    """The quantity each SKU must show once every level was applied: its last level's on hand."""
    return {sku: int(datum["on_hand"]) for sku, datum in levels}


def status_changes(order_ids: Sequence[int], records: int) -> list[tuple[str, AvroDatum]]:
    """``records`` ERP status changes: every order paid, then every order shipped, then delivered (pure).

    Needs ``ceil(records / 3)`` orders at most; raises ValueError with fewer.
    """
    if len(order_ids) * len(STATUS_STEPS) < records:
        raise ValueError(f"{records} status changes need {math.ceil(records / len(STATUS_STEPS))} orders")
    base = _example("OrderStatusChange", "infor-order-stop")
    changed_at = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    changes: list[tuple[str, AvroDatum]] = []
    for index in range(records):
        id_order = order_ids[index % len(order_ids)]
        step = index // len(order_ids)
        payment, fulfillment, lifecycle = STATUS_STEPS[step]
        order_key = f"{SHOP_ID}:{id_order}"
        erp_order = str(1_000_000_000 + id_order)
        datum = copy.deepcopy(base)
        datum.update(
            order_key=order_key,
            payment_status=payment,
            fulfillment_status=fulfillment,
            lifecycle=lifecycle,
            erp_order_number=erp_order,
            external_ids={"prestashop": str(id_order), "infor": erp_order},
            source_status={"system": "INFOR", "code": fulfillment, "name": fulfillment.title()},
            changed_at=changed_at + timedelta(minutes=step),
        )
        datum["meta"].update(
            event_id=_event_id("status", order_key, step),
            source_system="INFOR",
            source_id=erp_order,
            version=step + 1,
            shop_id=str(SHOP_ID),
        )
        changes.append((order_key, datum))
    return changes


def bench_reference(index: int) -> str:
    """The shop reference (M3 CUOR, at most 20 characters) of the index-th bench order."""
    return f"BENCH{index + 1:08d}"


def sales_orders(count: int, *, customers: int) -> list[tuple[str, AvroDatum]]:
    """``count`` shop orders of two lines over ``customers`` customers, as canonical Orders (pure)."""
    base = _example("Order", "eur-two-lines-variant")
    orders: list[tuple[str, AvroDatum]] = []
    for index in range(count):
        id_order = 100_001 + index
        customer = index % max(customers, 1)
        order_key = f"{SHOP_ID}:{id_order}"
        datum = copy.deepcopy(base)
        datum.update(
            order_key=order_key,
            reference=bench_reference(index),
            cart_id=str(500_000 + index),
            external_ids={"prestashop": str(id_order)},
        )
        datum["customer"].update(
            customer_key=f"{SHOP_ID}:{70_001 + customer}", email=f"bench.customer.{customer}@example.org"
        )
        for position, line in enumerate(datum["lines"]):
            line["sku"] = M3_ITEMS[(2 * index + position) % len(M3_ITEMS)]
        datum["enrichment"].update(warehouse=M3_WAREHOUSE, order_type=M3_ORDER_TYPE)
        datum["meta"].update(
            event_id=_event_id("order", order_key),
            source_system="PRESTASHOP",
            source_id=str(id_order),
            shop_id=str(SHOP_ID),
        )
        orders.append((order_key, datum))
    return orders


# -- the worker's metrics (pure) ---------------------------------------------------------------------

_SAMPLE = re.compile(r"^(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def metric_by_label(exposition: str, metric: str, *, stage: str, label: str) -> Counter[str]:
    """The samples of ``metric`` for ``stage`` in a Prometheus text exposition, summed by ``label``."""
    found: Counter[str] = Counter()
    for line in exposition.splitlines():
        match = _SAMPLE.match(line)
        if match is None or match["name"] != metric:
            continue
        labels = dict(_LABEL.findall(match["labels"]))
        if labels.get("stage") != stage:
            continue
        found[labels.get(label, "")] += int(float(match["value"]))
    return found


# -- processes ---------------------------------------------------------------------------------------


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid``, all its threads (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stop(process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def _tail(path: Path, size: int = 3000) -> str:
    return path.read_text(errors="replace")[-size:] if path.exists() else ""


def _child_env(extra: Mapping[str, str]) -> dict[str, str]:
    # The caller's own PSINFOR_* settings must not leak into a child: the bench says everything.
    env = {name: value for name, value in os.environ.items() if not name.startswith("PSINFOR_")}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def _cli(*argv: str) -> list[str]:
    return [sys.executable, "-m", "cli.main", *argv]


class TargetSandbox(Protocol):
    """A sandbox process the worker writes to."""

    def prepare(self, latency_ms: int) -> None:
        """Back to the seed, every API call ``latency_ms`` slower, counters at zero."""
        ...

    def counts(self) -> TargetCounts:
        """What the sandbox counted since :meth:`prepare`."""
        ...

    def worker_env(self, config: BenchConfig) -> dict[str, str]:
        """The ``PSINFOR_*`` settings a sink worker needs to reach it."""
        ...


class ShopSandbox:
    """``psinfor sandbox prestashop`` in its own process, driven through its admin API."""

    def __init__(self, workdir: Path, *, products: int, orders: int) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.ws_key = uuid.uuid4().hex.upper()
        self._log = workdir / "prestashop-sandbox.log"
        argv = _cli(
            "sandbox",
            "prestashop",
            "--port",
            str(self.port),
            "--ws-key",
            self.ws_key,
            "--products",
            str(products),
            "--customers",
            str(max(20, orders // 3)),
            "--orders",
            str(orders),
            "--seed",
            "1",
        )
        with self._log.open("ab") as out:
            self._process = subprocess.Popen(
                argv, cwd=REPO, env=_child_env({}), stdout=out, stderr=subprocess.STDOUT
            )
        self.admin = httpx.Client(base_url=self.base_url + "/_sandbox", timeout=60)

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        """Returns once the admin API answers (seeding a large shop takes a while)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"the PrestaShop sandbox exited:\n{_tail(self._log)}")
            with contextlib.suppress(httpx.TransportError):
                if self.admin.get("/info").is_success:
                    return
            time.sleep(0.2)
        raise RuntimeError("the PrestaShop sandbox did not become ready")

    def rows(self, resource: str) -> list[dict[str, Any]]:
        """Every row of ``resource`` as the admin API shows it."""
        rows: list[dict[str, Any]] = []
        while True:
            page = self.admin.get(f"/resources/{resource}", params={"offset": len(rows), "limit": 500})
            page.raise_for_status()
            batch: list[dict[str, Any]] = page.json()
            rows += batch
            if len(batch) < 500:
                return rows

    def prepare(self, latency_ms: int) -> None:
        self.admin.post("/reset", json={}).raise_for_status()
        self.admin.delete("/faults").raise_for_status()
        # The first rule adds the latency and counts every webservice request; the zero-latency rules
        # only count the write methods.
        self.admin.post("/faults", json={"kind": "latency", "latency_ms": latency_ms}).raise_for_status()
        for method in ("POST", "PUT", "PATCH"):
            self.admin.post(
                "/faults", json={"kind": "latency", "latency_ms": 0, "method": method}
            ).raise_for_status()

    def counts(self) -> TargetCounts:
        rules = self.admin.get("/faults").json()
        everything = next(rule for rule in rules if rule["method"] is None)
        writes = sum(rule["fired"] for rule in rules if rule["method"] is not None)
        return TargetCounts(requests=everything["fired"], writes=writes)

    def worker_env(self, config: BenchConfig) -> dict[str, str]:
        return {
            "PSINFOR_PRESTASHOP__BASE_URL": self.base_url,
            "PSINFOR_PRESTASHOP__WS_KEY": self.ws_key,
            "PSINFOR_PRESTASHOP__SHOP_ID": str(SHOP_ID),
            "PSINFOR_PRESTASHOP__REQUESTS_PER_SECOND": f"{config.shop_rps:g}",
        }

    def stock_by_sku(self) -> dict[str, int]:
        """The quantity the shop shows for each sellable reference (shop 1's own or shared row)."""
        products, combinations = self.rows("products"), self.rows("combinations")
        unit_of: dict[tuple[int, int], str] = {}
        with_combinations = {int(row["id_product"]) for row in combinations}
        for product in products:
            if int(product["id"]) not in with_combinations:
                unit_of[(int(product["id"]), 0)] = str(product.get("reference") or "").strip()
        reference_of = {int(p["id"]): str(p.get("reference") or "").strip() for p in products}
        for combination in combinations:
            reference = str(combination.get("reference") or "").strip()
            id_product = int(combination["id_product"])
            unit_of[(id_product, int(combination["id"]))] = reference or reference_of.get(id_product, "")
        stock: dict[str, int] = {}
        for row in self.rows("stock_availables"):
            if int(row["id_shop"]) not in (SHOP_ID, 0):
                continue
            sku = unit_of.get((int(row["id_product"]), int(row["id_product_attribute"])))
            if sku:
                stock[sku] = int(row["quantity"])
        return stock

    def close(self) -> None:
        """Stop the process and close the admin client."""
        self.admin.close()
        _stop(self._process, 10.0)


class InforSandbox:
    """``psinfor sandbox infor`` in its own process, driven through its admin API."""

    def __init__(self, workdir: Path, *, items: int) -> None:
        self.ionapi_path = workdir / "sandbox.ionapi"
        self._log = workdir / "infor-sandbox.log"
        argv = _cli(
            "sandbox", "infor", "--port", "0", "--items", str(items), "--ionapi-out", str(self.ionapi_path)
        )
        with self._log.open("ab") as out:
            self._process = subprocess.Popen(
                argv, cwd=REPO, env=_child_env({}), stdout=out, stderr=subprocess.STDOUT
            )
        self.base_url = ""
        self._admin: httpx.Client | None = None
        self.quota_requests = 0
        """The gateway quota :meth:`prepare` sets (requests per ``quota_window_s``); 0: none."""
        self.quota_window_s = 60.0

    @property
    def admin(self) -> httpx.Client:
        """The admin API client (after :meth:`wait_ready`)."""
        if self._admin is None:
            raise RuntimeError("the Infor sandbox is not ready yet")
        return self._admin

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Returns once the ``.ionapi`` file is written and the admin API answers."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"the Infor sandbox exited:\n{_tail(self._log)}")
            if self.ionapi_path.exists():
                with contextlib.suppress(ValueError, KeyError, httpx.TransportError):
                    document = json.loads(self.ionapi_path.read_text(encoding="utf-8"))
                    base_url = str(document["iu"]).rstrip("/")
                    if httpx.get(base_url + "/_sandbox/gateway", timeout=5).is_success:
                        self.base_url = base_url
                        self._admin = httpx.Client(base_url=base_url + "/_sandbox", timeout=60)
                        return
            time.sleep(0.2)
        raise RuntimeError("the Infor sandbox did not become ready")

    def prepare(self, latency_ms: int) -> None:
        # Reset clears orders, customers, tokens, fault rules, the quota and the gateway's counters.
        self.admin.post("/reset", json={}).raise_for_status()
        # The warehouse simulation would move the orders on meanwhile: work the bench does not measure.
        self.admin.put("/warehouse", json={"paused": True}).raise_for_status()
        if latency_ms:
            rule = {"kind": "latency", "latency_s": latency_ms / 1000}
            self.admin.post("/faults", json=rule).raise_for_status()
        if self.quota_requests:
            quota = {"quota_requests": self.quota_requests, "quota_window_s": self.quota_window_s}
            self.admin.put("/gateway", json=quota).raise_for_status()

    def counts(self) -> TargetCounts:
        stats = self.admin.get("/gateway/stats").json()
        return TargetCounts(requests=int(stats["requests"]), throttled=int(stats["statuses"].get("429", 0)))

    def worker_env(self, config: BenchConfig) -> dict[str, str]:
        rpm = config.quota_limiter_rpm if self.quota_requests else config.infor_rpm
        return {
            "PSINFOR_INFOR__IONAPI_PATH": str(self.ionapi_path),
            "PSINFOR_INFOR__CONO": M3_CONO,
            "PSINFOR_INFOR__DIVI": M3_DIVI,
            "PSINFOR_INFOR__REQUESTS_PER_MINUTE": str(rpm),
        }

    def orders_by_reference(self) -> Counter[str]:
        """How many M3 orders carry each customer order number (CUOR)."""
        response = self.admin.get("/orders")
        response.raise_for_status()
        return Counter(str(order.get("CUOR", "")).strip() for order in response.json())

    def close(self) -> None:
        """Stop the process and close the admin client."""
        if self._admin is not None:
            self._admin.close()
        _stop(self._process, 10.0)


# -- Kafka -------------------------------------------------------------------------------------------


class BenchTopics:
    """Topics (from the catalogue's specs, under unique names), their value subjects and the workers'
    consumer groups: created by the bench, deleted at the end."""

    def __init__(self, bootstrap: str, registry_url: str) -> None:
        self._bootstrap = bootstrap
        self._registry = RegistrySettings(url=registry_url)
        self._admin = AdminClient({"bootstrap.servers": bootstrap})
        self._catalogue = load_catalogue()
        self.created: list[str] = []
        self.subjects: list[str] = []
        self.groups: list[str] = []
        """Consumer groups of the workers (registered by :func:`run_worker`)."""

    def create(self, catalogue_name: str, tag: str) -> str:
        """A new topic shaped like catalogue topic ``catalogue_name``; returns its name."""
        entry = self._catalogue.topic(catalogue_name)
        name = f"bench.sinks.{tag}.{catalogue_name}"
        spec = TopicSpec(name=name, partitions=entry.partitions, configs=entry.topic_config())
        apply_topics(self._admin, [spec])
        self.created.append(name)
        return name

    def fill(self, topic: str, record: str, records: Sequence[tuple[str, AvroDatum]]) -> None:
        """Register ``record`` under ``topic``'s subject and produce ``records`` (key, datum) as Avro."""
        with registry_client(self._registry) as registry:
            register_schemas(registry, [SubjectSchema(f"{topic}-value", record)])
            self.subjects.append(f"{topic}-value")
            codec = AvroCodec(registry, record)
            producer = Producer(
                {"bootstrap.servers": self._bootstrap, "enable.idempotence": True, "linger.ms": 20}
            )
            for key, datum in records:
                value = codec.encode(datum, topic)
                while True:
                    try:
                        producer.produce(topic, key=key.encode(), value=value)
                        break
                    except BufferError:
                        producer.poll(0.05)
                producer.poll(0)
            if producer.flush(60):
                raise RuntimeError(f"producing to {topic} did not finish")

    def delete_all(self) -> None:
        """Delete every topic, subject and consumer group created (best effort: a bench must not fail on
        its clean-up)."""
        if self.created:
            futures = self._admin.delete_topics(self.created, operation_timeout=30)
            for future in futures.values():
                with contextlib.suppress(Exception):
                    future.result(timeout=30)
            self.created.clear()
        if self.groups:
            for future in self._admin.delete_consumer_groups(self.groups, request_timeout=30).values():
                with contextlib.suppress(Exception):
                    future.result(timeout=30)
            self.groups.clear()
        if self.subjects:
            with registry_client(self._registry) as registry:
                for subject in self.subjects:
                    with contextlib.suppress(Exception):
                        registry.delete_subject(subject)
                        registry.delete_subject(subject, permanent=True)
            self.subjects.clear()


def raw_consume(bootstrap: str, topic: str, records: int, *, group: str) -> Ceiling:
    """A bare confluent-kafka consumer (in ``group``) reading the ``records`` records of ``topic``, timed
    from the first."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    seen = 0
    started: float | None = None
    started_cpu = 0.0
    deadline = time.monotonic() + 120
    try:
        while seen < records:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the raw consumer read {seen} of {records} records")
            for message in consumer.consume(1000, timeout=1.0):
                if message.error() is not None:
                    continue
                if started is None:
                    started, started_cpu = time.monotonic(), time.process_time()
                seen += 1
        finished, cpu = time.monotonic(), time.process_time() - started_cpu
    finally:
        consumer.close()
    return Ceiling(records=records, seconds=finished - (started or finished), cpu_s=cpu)


def dlq_count(bootstrap: str, topic: str) -> int:
    """Records on ``topic`` (end offsets summed)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-sinks-dlq-{uuid.uuid4().hex}"})
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = metadata.topics[topic].partitions
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions
        )
    finally:
        consumer.close()


# -- one worker run ----------------------------------------------------------------------------------


@dataclass
class _Watch:
    """What the polls saw: the target's first request, the first and the last completion, the outcomes."""

    target_started_at: float | None = None
    first_at: float | None = None
    first_done: int = 0
    first_cpu: float = 0.0
    first_counts: TargetCounts = field(default_factory=TargetCounts)
    last_at: float = 0.0
    last_cpu: float = 0.0
    last_counts: TargetCounts = field(default_factory=TargetCounts)
    done: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    retries: int = 0


def run_worker(
    config: BenchConfig,
    kind: SinkKind,
    sandbox: TargetSandbox,
    topics: BenchTopics,
    *,
    source: str,
    records: int,
    keys_in_flight: int,
    workdir: Path,
    label: str = "",
) -> tuple[SinkRun, str]:
    """Reset the sandbox, run the sink worker until every record completed, stop it; the run's figures
    (``check`` still ``ok``) and the DLQ topic's name."""
    tag = f"{kind.kind}-{keys_in_flight}-{uuid.uuid4().hex[:6]}"
    sandbox.prepare(config.latency_ms)
    dlq = topics.create(kind.dlq, tag)
    argv = [
        sys.executable,
        "-m",
        "sinks.main",
        "--sinks",
        kind.sink,
        "--topic",
        f"{kind.source}={source}",
        "--topic",
        f"{kind.dlq}={dlq}",
        "--group-prefix",
        f"bench-sinks-{tag}-",
    ]
    topics.groups.append(f"bench-sinks-{tag}-{kind.sink}")
    if kind.needs_links:
        argv += ["--topic", f"{LINKS_TOPIC}={topics.create(LINKS_TOPIC, tag)}"]
    port = free_port()
    env = _child_env(
        {
            "PSINFOR_KAFKA__BOOTSTRAP_SERVERS": config.bootstrap,
            "PSINFOR_REGISTRY__URL": config.registry,
            "PSINFOR_SERVICE__HTTP_PORT": str(port),
            "PSINFOR_SERVICE__LOG_LEVEL": "WARNING",
            "PSINFOR_SERVICE__LOG_FORMAT": "text",
            "PSINFOR_SINKS__MAX_IN_FLIGHT_KEYS": str(keys_in_flight),
            **sandbox.worker_env(config),
        }
    )
    log = workdir / f"worker-{tag}.log"
    label = label or f"[{kind.kind} keys={keys_in_flight}]"
    with log.open("ab") as out:
        process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as metrics:
            watch = _watch_until_done(
                config, kind, sandbox.counts, process, metrics, records=records, label=label, log=log
            )
    finally:
        code = _stop(process)
    if code != 0:
        print(f"{label} worker exited with {code}:\n{_tail(log)}", file=sys.stderr)
    first_at = watch.first_at if watch.first_at is not None else watch.last_at
    started_at = watch.target_started_at if watch.target_started_at is not None else first_at
    run = SinkRun(
        kind=kind.kind,
        keys_in_flight=keys_in_flight,
        records=records,
        measured=watch.done - watch.first_done,
        seconds=watch.last_at - first_at,
        cpu_s=watch.last_cpu - watch.first_cpu,
        outcomes=dict(watch.outcomes),
        interval=watch.last_counts - watch.first_counts,
        total=sandbox.counts(),
        retries=watch.retries,
        target_seconds=watch.last_at - started_at,
    )
    return run, dlq


def _watch_until_done(
    config: BenchConfig,
    kind: SinkKind,
    sandbox_counts: Callable[[], TargetCounts],
    process: subprocess.Popen[bytes],
    metrics: httpx.Client,
    *,
    records: int,
    label: str,
    log: Path,
) -> _Watch:
    """Poll the worker's /metrics until ``records`` completed (and, until it has one, the sandbox for the
    worker's first request); raises when the worker dies or stalls."""
    watch = _Watch()
    last_progress = time.monotonic()
    last_print = last_progress
    done_before = 0
    while True:
        with contextlib.suppress(httpx.TransportError):
            text = metrics.get("/metrics").text
            watch.outcomes = metric_by_label(text, "psinfor_messages_total", stage=kind.sink, label="outcome")
            watch.retries = sum(
                metric_by_label(text, "psinfor_retries_total", stage=kind.sink, label="reason").values()
            )
        now = time.monotonic()
        done = sum(watch.outcomes.values())
        if watch.target_started_at is None and (done or sandbox_counts().requests):
            watch.target_started_at = now
        if done and watch.first_at is None:
            watch.first_at, watch.first_done = now, done
            watch.first_cpu = process_cpu_seconds(process.pid)
            watch.first_counts = sandbox_counts()
        if done >= records:
            watch.last_at, watch.done = now, done
            watch.last_cpu = process_cpu_seconds(process.pid)
            watch.last_counts = sandbox_counts()
            return watch
        if done != done_before:
            done_before, last_progress = done, now
        if process.poll() is not None:
            raise RuntimeError(f"{label} the worker exited with {process.returncode}:\n{_tail(log)}")
        if now - last_progress > config.stall_s:
            raise RuntimeError(f"{label} no record completed for {config.stall_s:g} s:\n{_tail(log)}")
        if now - last_print >= PROGRESS_EVERY_S:
            last_print = now
            rate = ""
            if watch.first_at is not None and now > watch.first_at:
                rate = f", {(done - watch.first_done) / (now - watch.first_at):,.1f}/s"
            print(f"  {label} {done}/{records} records complete{rate}", flush=True)
        time.sleep(POLL_S)


# -- the kinds ---------------------------------------------------------------------------------------


Finish = Callable[[SinkRun, int], SinkRun]
"""After a run, before the next reset: the run with what the target shows (``check``, and for Infor the
M3 orders created as ``writes``), given the number of records on the run's DLQ topic."""


def _bench_kind(
    config: BenchConfig,
    kind: SinkKind,
    sandbox: TargetSandbox,
    topics: BenchTopics,
    records: Sequence[tuple[str, AvroDatum]],
    finish: Finish,
    workdir: Path,
) -> list[tuple[SinkRun, Ceiling]]:
    """Produce ``records`` once, time the raw consume, then one worker run per keys-in-flight value."""
    source = topics.create(kind.source, f"{kind.kind}-{uuid.uuid4().hex[:6]}")
    topics.fill(source, kind.record, records)
    group = f"bench-sinks-ceiling-{uuid.uuid4().hex[:12]}"
    topics.groups.append(group)
    ceiling = raw_consume(config.bootstrap, source, len(records), group=group)
    print(
        f"[{kind.kind}] {len(records)} records on {source}; raw consume "
        f"{_number(ceiling.rate, ',.0f')}/s, {ceiling.cpu_us:.1f} µs CPU/record",
        flush=True,
    )
    rows: list[tuple[SinkRun, Ceiling]] = []
    for keys in config.keys_in_flight:
        run, dlq = run_worker(
            config,
            kind,
            sandbox,
            topics,
            source=source,
            records=len(records),
            keys_in_flight=keys,
            workdir=workdir,
        )
        run = finish(run, dlq_count(config.bootstrap, dlq))
        print(
            f"[{kind.kind} keys={keys}] {_number(run.rate, ',.1f')} records/s, "
            f"{_number(run.cpu_us, ',.0f')} µs CPU/record, {run.total.writes} writes, "
            f"{outcome_summary(run.outcomes)}; check: {run.check}",
            flush=True,
        )
        rows.append((run, ceiling))
    return rows


def _problems(*found: tuple[int, str]) -> str:
    """``ok``, or the non-zero counts with what they mean (``3 missing; 1 DLQ``)."""
    return "; ".join(f"{count} {what}" for count, what in found if count) or "ok"


def _shop_kinds(config: BenchConfig, topics: BenchTopics, workdir: Path) -> list[tuple[SinkRun, Ceiling]]:
    wanted = [kind for kind in config.kinds if KINDS[kind].target == "prestashop"]
    if not wanted:
        return []
    orders = math.ceil(config.records / len(STATUS_STEPS)) if "status" in wanted else 10
    print(f"[prestashop] starting the sandbox (1000 products, {orders} orders) ...", flush=True)
    shop = ShopSandbox(workdir, products=1000, orders=orders)
    rows: list[tuple[SinkRun, Ceiling]] = []
    try:
        shop.wait_ready()
        if "stock" in wanted:
            skus = sellable_skus(shop.rows("products"), shop.rows("combinations"))
            chosen = skus[: max(1, config.records // config.levels_per_sku)]
            levels = stock_levels(chosen, config.records)
            expected = final_stock(levels)
            print(f"[stock] {config.records} levels over {len(chosen)} SKUs", flush=True)

            def stock_finish(run: SinkRun, dead: int) -> SinkRun:
                shown = shop.stock_by_sku()
                wrong = sum(1 for sku, quantity in expected.items() if shown.get(sku) != quantity)
                return replace(run, check=_problems((wrong, "SKUs wrong"), (dead, "DLQ")))

            rows += _bench_kind(config, KINDS["stock"], shop, topics, levels, stock_finish, workdir)
        if "status" in wanted:
            ids = sorted(int(row["id"]) for row in shop.rows("orders") if int(row["id_shop"]) == SHOP_ID)
            changes = status_changes(ids[: math.ceil(config.records / len(STATUS_STEPS))], config.records)

            def status_finish(run: SinkRun, dead: int) -> SinkRun:
                return replace(run, check=_problems((dead, "DLQ")))

            rows += _bench_kind(config, KINDS["status"], shop, topics, changes, status_finish, workdir)
    finally:
        shop.close()
    return rows


@dataclass(frozen=True)
class OrdersInM3:
    """The bench orders M3 holds: how many references have an order, and extra orders beyond one each."""

    created: int
    duplicates: int

    @classmethod
    def count(cls, by_reference: Mapping[str, int], orders: int) -> OrdersInM3:
        """From M3's orders per CUOR, for the first ``orders`` bench references (pure)."""
        found = [by_reference.get(bench_reference(index), 0) for index in range(orders)]
        return cls(created=sum(1 for n in found if n >= 1), duplicates=sum(n - 1 for n in found if n > 1))


def _orders_finish(infor: InforSandbox) -> Finish:
    def finish(run: SinkRun, dead: int) -> SinkRun:
        m3 = OrdersInM3.count(infor.orders_by_reference(), run.records)
        check = _problems((run.records - m3.created, "missing"), (m3.duplicates, "duplicated"), (dead, "DLQ"))
        return replace(run, check=check, total=replace(run.total, writes=m3.created + m3.duplicates))

    return finish


def _infor_kinds(
    config: BenchConfig, topics: BenchTopics, workdir: Path
) -> tuple[list[tuple[SinkRun, Ceiling]], QuotaRun | None]:
    run_orders = "orders" in config.kinds
    if not run_orders and not config.quota:
        return [], None
    print("[infor] starting the sandbox ...", flush=True)
    infor = InforSandbox(workdir, items=1000)
    rows: list[tuple[SinkRun, Ceiling]] = []
    quota: QuotaRun | None = None
    try:
        infor.wait_ready()
        kind = KINDS["orders"]
        if run_orders:
            orders = sales_orders(config.records, customers=config.records // 2)
            rows = _bench_kind(config, kind, infor, topics, orders, _orders_finish(infor), workdir)
        if config.quota:
            quota = _quota_run(config, infor, topics, workdir)
    finally:
        infor.close()
    return rows, quota


def _quota_run(config: BenchConfig, infor: InforSandbox, topics: BenchTopics, workdir: Path) -> QuotaRun:
    kind = KINDS["orders"]
    orders = sales_orders(config.quota_orders, customers=config.quota_orders // 2)
    source = topics.create(kind.source, f"quota-{uuid.uuid4().hex[:6]}")
    topics.fill(source, kind.record, orders)
    print(
        f"[quota] {len(orders)} orders, gateway quota {config.quota} requests / 60 s, sink told "
        f"{config.quota_limiter_rpm}/min ...",
        flush=True,
    )
    infor.quota_requests, infor.quota_window_s = config.quota, 60.0
    try:
        run, dlq = run_worker(
            config,
            kind,
            infor,
            topics,
            source=source,
            records=len(orders),
            keys_in_flight=config.quota_keys,
            workdir=workdir,
            label=f"[quota keys={config.quota_keys}]",
        )
    finally:
        infor.quota_requests = 0
    m3 = OrdersInM3.count(infor.orders_by_reference(), len(orders))
    return QuotaRun(
        quota_requests=config.quota,
        window_s=60.0,
        limiter_rpm=config.quota_limiter_rpm,
        keys_in_flight=config.quota_keys,
        orders=len(orders),
        seconds=run.target_seconds,
        calls=run.total,
        created=m3.created,
        duplicates=m3.duplicates,
        dead_lettered=max(run.dead_lettered, dlq_count(config.bootstrap, dlq)),
        retries=run.retries,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen kinds and the quota run, print the table; exit 1 when a check failed."""
    config = parse_args(argv)
    print(
        f"sink bench: {config.records} records per kind, {config.latency_ms} ms API latency, keys in flight "
        f"{', '.join(map(str, config.keys_in_flight))}; pacing raised to {config.shop_rps:g} req/s (shop) "
        f"and {config.infor_rpm}/min (Infor)",
        flush=True,
    )
    topics = BenchTopics(config.bootstrap, config.registry)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-sinks-") as tmp:
            workdir = Path(tmp)
            rows = _shop_kinds(config, topics, workdir)
            infor_rows, quota = _infor_kinds(config, topics, workdir)
            rows += infor_rows
    finally:
        topics.delete_all()
    failed = False
    if rows:
        print()
        for line in table(rows):
            print(line)
        for line in TABLE_NOTES:
            print("  " + line)
        failed = any(run.check != "ok" for run, _ in rows)
    if quota is not None:
        print(f"\nInfor quota ({config.latency_ms} ms latency):")
        for line in quota.lines():
            print("  " + line)
        failed = failed or quota.failed > 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
