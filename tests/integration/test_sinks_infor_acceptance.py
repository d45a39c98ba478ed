"""Issue 6 acceptance, Infor side: the ``infor-orders`` sink as deployed, through crashes, a rebalance and
ambiguous 504s; M3's rejections dead-lettered and replayed after the fix; the duplicate-customer race.

Everything is real: the broker and registry of the session (tests/conftest.py), the Infor sandbox served
over loopback HTTP in this process (its admin API is how the tests read what M3 holds; M3's warehouse
clock is paused so orders stay as created), and the sink workers as ``python -m sinks.main``
subprocesses that the tests SIGKILL, add and SIGTERM the way a supervisor would. Canonical orders are
Avro in the Schema Registry wire format, written with the schema registered under the test topic.

1. 2,000 orders (1-4 lines over items M3 knows, customers drawn from 600, so most have several) with
   forced redelivery: three SIGKILLs mid-stream, each followed by a restart, a second instance added
   (a rebalance), and the gateway answering 2 % of the Confirm calls with 504 after M3 created the
   order. Exactly 2,000 M3 orders must come out, one per reference, every line as ordered.
2. M3 refuses an order for an item it does not know and one for a missing mandatory field: both are
   dead-lettered with M3's error code, type and field and the canonical field path, the rest flows;
   after the fix (see the test) ``psinfor dlq replay`` creates each order once, and neither a second
   replay nor the same records delivered again create anything more.
3. Two sink processes apply the orders of one new customer at the same moment: both ask M3 to create
   the customer, M3 takes one, and there is exactly one M3 customer with all the orders on it.
"""

from __future__ import annotations

import copy
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from cli.main import main as psinfor
from pipeline.records import SourceRecord
from pipeline.settings import RegistrySettings
from rules.engine import default_rules_text, parse_rules
from sandbox.infor.app import SandboxOptions
from sandbox.infor.server import InforSandboxServer
from schemas.codec import AvroCodec, AvroDatum
from schemas.examples import load_examples
from schemas.registry import SubjectSchema, register_schemas, registry_client
from sinks.infor_orders import NAME as ORDERS_STAGE
from sinks.registry import SINKS
from tests.conftest import NewTopicFactory
from tests.integration.infor_acceptance_sink import JOURNAL_ENV
from tests.integration.test_sink_runner import committed

pytestmark = pytest.mark.integration

GroupFactory = Callable[[], str]
REPO = Path(__file__).resolve().parents[2]
ORDERS_TOPIC = "canonical.order.v1"
CUSTOMERS_TOPIC = "canonical.customer.v1"
LINKS_TOPIC = "state.erp-links"
DLQ_TOPIC = "dlq.sink-infor"
JOURNALLED_ORDERS = "tests.integration.infor_acceptance_sink:build_journalled_orders"
EUR = "EUR"
CENT = Decimal("0.01")
SANDBOX_ITEMS = [f"SKU-{n}" for n in range(1002, 1200)]
"""Items the sandbox seeds (``items=200``): active, sellable, in warehouse 001."""


def registered_sink(factory: str) -> str:
    """The name ``psinfor sink --sinks`` knows the production ``factory`` by (sinks/registry.py)."""
    names = [name for name, target in SINKS.items() if target == factory]
    assert len(names) == 1, f"{factory} is not registered exactly once: {names}"
    return names[0]


ORDERS_SINK = registered_sink("sinks.infor_orders:build")
CUSTOMERS_SINK = registered_sink("sinks.infor_customers:build")


# -- canonical orders -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LineSpec:
    sku: str
    quantity: Decimal
    unit_price: Decimal


@dataclass(frozen=True)
class OrderSpec:
    """One shop order of the test; the canonical record is built from it by :func:`order_datum`."""

    number: int
    customer_id: int
    lines: tuple[LineSpec, ...]
    billing_lines: tuple[str, ...] = ("12 rue des Lilas", "Bâtiment B")

    @property
    def order_key(self) -> str:
        return f"1:{self.number}"

    @property
    def reference(self) -> str:
        return f"ACC{self.number:07d}"

    @property
    def customer_number(self) -> str:
        """The M3 customer number the shop customer must get (default shop: ``PS`` + six digits)."""
        return f"PS{self.customer_id:06d}"

    @property
    def email(self) -> str:
        return f"buyer.{self.customer_id}@example.org"

    def expected_lines(self) -> list[tuple[str, Decimal, Decimal]]:
        """(ITNO, ORQT, SAPR) per line as M3 must hold them."""
        return [(line.sku.upper(), line.quantity, line.unit_price) for line in self.lines]


def _template(record: str, name: str) -> AvroDatum:
    for example in load_examples(record):
        if example.name == name:
            return example.datum()
    raise LookupError(f"no example {record}/{name}")


ORDER_TEMPLATE = _template("Order", "eur-two-lines-variant")
CUSTOMER_TEMPLATE = _template("Customer", "registered-fr")


def _money(amount: Decimal) -> dict[str, Any]:
    return {"amount": amount, "currency": EUR}


def order_datum(spec: OrderSpec) -> AvroDatum:
    """The canonical ``Order`` of ``spec``: the EUR example re-keyed, its lines and totals recomputed."""
    datum = copy.deepcopy(ORDER_TEMPLATE)
    meta = datum["meta"]
    meta["source_id"] = str(spec.number)
    meta["event_id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"acceptance/orders/{spec.number}/1"))
    meta["correlation_id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"acceptance/flow/{spec.number}"))
    datum["order_key"] = spec.order_key
    datum["reference"] = spec.reference
    datum["cart_id"] = str(spec.number)
    customer = datum["customer"]
    customer["customer_key"] = f"1:{spec.customer_id}"
    customer["email"] = spec.email
    customer["first_name"] = "Buyer"
    customer["last_name"] = f"Number {spec.customer_id}"
    for address in (datum["billing_address"], datum["shipping_address"]):
        address["first_name"], address["last_name"] = customer["first_name"], customer["last_name"]
    datum["billing_address"]["lines"] = list(spec.billing_lines)
    template_line = ORDER_TEMPLATE["lines"][1]
    lines = []
    for index, line in enumerate(spec.lines):
        total = (line.quantity * line.unit_price).quantize(CENT)
        lines.append(
            template_line
            | {
                "line_id": f"{spec.number}-{index + 1}",
                "product_id": str(100 + index),
                "variant_id": None,
                "sku": line.sku,
                "gtin": None,
                "name": f"Item {line.sku}",
                "quantity": line.quantity,
                "unit_price_excl_tax": _money(line.unit_price),
                "unit_price_incl_tax": _money((line.unit_price * Decimal("1.2")).quantize(CENT)),
                "discount_excl_tax": _money(Decimal(0)),
                "total_excl_tax": _money(total),
                "total_incl_tax": _money((total * Decimal("1.2")).quantize(CENT)),
            }
        )
    datum["lines"] = lines
    products = sum((line["total_excl_tax"]["amount"] for line in lines), Decimal(0))
    shipping = Decimal("4.90")
    tax = ((products + shipping) * Decimal("0.2")).quantize(CENT)
    grand_total = products + shipping + tax
    datum["totals"] = {
        "products": _money(products),
        "shipping": _money(shipping),
        "wrapping": _money(Decimal(0)),
        "discounts": _money(Decimal(0)),
        "tax": _money(tax),
        "grand_total": _money(grand_total),
        "paid": _money(grand_total),
    }
    datum["payment"]["amount_paid"] = _money(grand_total)
    # The processors' enrichment picks the warehouse; the sandbox's is 001.
    datum["enrichment"]["warehouse"] = "001"
    datum["external_ids"] = {"prestashop": str(spec.number)}
    return datum


def customer_datum(customer_id: int, email: str, lines: Sequence[str]) -> AvroDatum:
    """A canonical ``Customer`` from the shop with one address."""
    datum = copy.deepcopy(CUSTOMER_TEMPLATE)
    datum["meta"]["source_id"] = str(customer_id)
    datum["meta"]["event_id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"acceptance/customers/{customer_id}"))
    datum["customer_key"] = f"1:{customer_id}"
    datum["email"] = email
    datum["first_name"], datum["last_name"] = "Buyer", f"Number {customer_id}"
    datum["addresses"][0]["lines"] = list(lines)
    datum["addresses"][0]["first_name"], datum["addresses"][0]["last_name"] = "Buyer", f"Number {customer_id}"
    datum["external_ids"] = {"prestashop": str(customer_id)}
    return datum


def random_orders(count: int, *, customers: int, first_number: int, first_customer: int) -> list[OrderSpec]:
    """``count`` distinct orders of 1-4 lines over the sandbox's items; customers repeat (seeded)."""
    rng = random.Random(6)
    specs = []
    for index in range(count):
        lines = tuple(
            LineSpec(
                sku=sku,
                quantity=Decimal(rng.randint(1, 5)),
                unit_price=(Decimal(rng.randint(150, 25000)) / 100).quantize(CENT),
            )
            for sku in rng.sample(SANDBOX_ITEMS, rng.randint(1, 4))
        )
        customer = first_customer + rng.randrange(customers)
        specs.append(OrderSpec(first_number + index, customer, lines))
    return specs


# -- Kafka -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Topics:
    """This test's actual topics, by catalogue name."""

    names: Mapping[str, str]
    partitions: int

    def __getitem__(self, catalogue_name: str) -> str:
        return self.names[catalogue_name]


def make_topics(
    new_topic: NewTopicFactory, registry_url: str, *, partitions: int, customers: bool = False
) -> Topics:
    """The orders topic (Order registered under its subject), the DLQ and links topics (compacted, as
    the catalogue has them) and, when asked, a customers topic (Customer registered)."""
    compacted = {"cleanup.policy": "compact"}
    names = {
        ORDERS_TOPIC: new_topic(partitions=partitions),
        DLQ_TOPIC: new_topic(config=compacted),
        LINKS_TOPIC: new_topic(partitions=3, config=compacted),
    }
    subjects = [SubjectSchema(f"{names[ORDERS_TOPIC]}-value", "Order")]
    if customers:
        names[CUSTOMERS_TOPIC] = new_topic()
        subjects.append(SubjectSchema(f"{names[CUSTOMERS_TOPIC]}-value", "Customer"))
    with registry_client(RegistrySettings(url=registry_url)) as client:
        results = register_schemas(client, subjects)
    assert all(result.outcome in ("registered", "unchanged") for result in results), results
    return Topics(names, partitions)


def produce(
    bootstrap: str,
    topic: str,
    records: Sequence[tuple[str, bytes]],
    *,
    partitions: Sequence[int | None] | None = None,
) -> None:
    """Produce ``(key, value)`` records (idempotent, acked) and wait for every acknowledgement."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 20})
    failures: list[str] = []

    def report(error: Any, _message: Any) -> None:
        if error is not None:
            failures.append(str(error))

    for index, (key, value) in enumerate(records):
        partition = partitions[index] if partitions is not None else None
        headers: list[tuple[str, str | bytes | None]] = [("correlation_id", f"acceptance-{key}".encode())]
        if partition is None:
            producer.produce(topic, key=key.encode(), value=value, headers=headers, on_delivery=report)
        else:
            producer.produce(
                topic, key=key.encode(), value=value, headers=headers, on_delivery=report, partition=partition
            )
        if index % 500 == 499:
            producer.poll(0)
    assert producer.flush(60) == 0
    assert not failures, failures


def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"ends-{uuid.uuid4().hex}"})
    try:
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1]
            for p in range(partitions)
        }
    finally:
        consumer.close()


def read_topic(bootstrap: str, topic: str, partitions: int) -> list[SourceRecord]:
    """Every record of ``topic`` from the beginning to its end now."""
    ends = end_offsets(bootstrap, topic, partitions)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    records: list[SourceRecord] = []
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions) if ends[p] > 0])
        seen = dict.fromkeys(range(partitions), 0)
        deadline = time.monotonic() + 20
        while any(seen[p] < ends[p] for p in range(partitions)):
            assert time.monotonic() < deadline, f"{topic} not read to its end"
            message = consumer.poll(0.2)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                assert error.code() == KafkaError._PARTITION_EOF, error
                continue
            records.append(SourceRecord.from_message(message))
            seen[message.partition() or 0] = (message.offset() or 0) + 1
    finally:
        consumer.close()
    return records


def group_members_with_partitions(admin: AdminClient, group: str) -> int:
    """How many members of ``group`` have partitions assigned now (0 while it rebalances)."""
    description = admin.describe_consumer_groups([group])[group].result(timeout=10)
    return sum(1 for member in description.members if member.assignment.topic_partitions)


# -- sink workers ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JournalEntry:
    event: str
    order_key: str
    what: str
    pid: int
    partition: int
    offset: int


def read_journal(path: Path) -> list[JournalEntry]:
    if not path.exists():
        return []
    entries = []
    for text in path.read_text().splitlines():
        event, order_key, what, pid, partition, offset = text.split()
        entries.append(JournalEntry(event, order_key, what, int(pid), int(partition), int(offset)))
    return entries


@dataclass
class Workers:
    """The sink worker subprocesses of one test: started, SIGKILLed, SIGTERMed; never left running."""

    bootstrap: str
    registry_url: str
    ionapi: Path
    topics: Topics
    group_prefix: str
    directory: Path
    journal: Path
    running: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)

    def start(
        self,
        name: str,
        sinks: str,
        *,
        rules: Path | None = None,
        max_in_flight_keys: int = 16,
        extra_env: Mapping[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "PSINFOR_KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
            "PSINFOR_REGISTRY__URL": self.registry_url,
            "PSINFOR_INFOR__IONAPI_PATH": str(self.ionapi),
            "PSINFOR_INFOR__CONO": "100",
            "PSINFOR_INFOR__DIVI": "AAA",
            "PSINFOR_INFOR__TIMEOUT_S": "15",
            "PSINFOR_SERVICE__LOG_FORMAT": "text",
            "PSINFOR_SERVICE__COMMIT_INTERVAL_S": "0.5",
            # The broker's minimum: a killed worker's partitions move on within seconds.
            "PSINFOR_SINKS__SESSION_TIMEOUT_S": "6",
            "PSINFOR_SINKS__MAX_IN_FLIGHT_KEYS": str(max_in_flight_keys),
            "PSINFOR_RETRY__INITIAL_BACKOFF_S": "0.1",
            "PSINFOR_RETRY__MAX_BACKOFF_S": "2",
            JOURNAL_ENV: str(self.journal),
        }
        if rules is not None:
            env["PSINFOR_RULES__PATH"] = str(rules)
        env.update(extra_env or {})
        argv = [sys.executable, "-m", "sinks.main", "--sinks", sinks, "--group-prefix", self.group_prefix]
        for catalogue_name, actual in self.topics.names.items():
            argv += ["--topic", f"{catalogue_name}={actual}"]
        log = self.logs[name] = self.directory / f"{name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.running[name] = process
        self.pids[name] = process.pid
        return process

    def kill(self, name: str) -> None:
        """SIGKILL: no drain, no commit."""
        process = self.running.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def terminate(self, name: str) -> int:
        """SIGTERM and the exit status (0: drained and committed)."""
        process = self.running.pop(name)
        process.send_signal(signal.SIGTERM)
        return process.wait(timeout=40)

    def check_alive(self) -> None:
        for name, process in self.running.items():
            if process.poll() is not None:
                raise AssertionError(f"worker {name} exited with {process.returncode}:\n{self.tail(name)}")

    def tail(self, name: str) -> str:
        log = self.logs.get(name)
        return log.read_text(errors="replace")[-4000:] if log is not None and log.exists() else ""

    def close(self) -> None:
        for process in self.running.values():
            if process.poll() is None:
                process.kill()
                process.wait()
        self.running.clear()

    def wait_for(self, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            self.check_alive()
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {name}\n{self.tail(name)}" for name in self.logs)
                raise AssertionError(f"timed out after {timeout_s} s waiting for {what}\n{tails}")
            time.sleep(0.2)

    def all_committed(self) -> bool:
        """The group committed the end of the orders topic: every record is complete."""
        topic, partitions = self.topics[ORDERS_TOPIC], self.topics.partitions
        ends = end_offsets(self.bootstrap, topic, partitions)
        marks = committed(self.bootstrap, self.group_prefix + ORDERS_STAGE, topic, partitions)
        # A partition that never held a record has no committed offset (negative): nothing to do there.
        return {p: max(mark, 0) for p, mark in marks.items()} == ends


@pytest.fixture
def workers_factory(
    kafka_bootstrap: str, registry_url: str, new_group: GroupFactory, tmp_path: Path
) -> Iterator[Callable[[InforSandboxServer, Topics], Workers]]:
    made: list[Workers] = []

    def make(server: InforSandboxServer, topics: Topics) -> Workers:
        workers = Workers(
            kafka_bootstrap,
            registry_url,
            server.write_ionapi(tmp_path / "sandbox.ionapi"),
            topics,
            f"{new_group()}-",
            tmp_path,
            tmp_path / "journal",
        )
        made.append(workers)
        return workers

    yield make
    for workers in made:
        workers.close()


# -- the Infor sandbox ----------------------------------------------------------------------------


@pytest.fixture
def sandbox() -> Iterator[InforSandboxServer]:
    with InforSandboxServer(SandboxOptions(items=200, customers=5, credential_seed=29)) as server:
        yield server


@pytest.fixture
def admin(sandbox: InforSandboxServer) -> Iterator[httpx.Client]:
    """The sandbox's admin API; M3's warehouse clock and stock drift stopped (orders stay as created)."""
    with httpx.Client(base_url=sandbox.base_url + "/_sandbox", timeout=30) as client:
        client.put("/warehouse", json={"paused": True, "stock_drift_interval_s": 0.0}).raise_for_status()
        yield client


@dataclass(frozen=True)
class M3Order:
    orno: str
    cuor: str
    cuno: str
    lines: list[tuple[str, Decimal, Decimal]]


def m3_orders(admin: httpx.Client) -> list[M3Order]:
    """Every M3 customer order with its lines, from the admin API."""
    heads = admin.get("/orders").json()
    orders = []
    for head in heads:
        view = admin.get(f"/orders/{head['ORNO']}").json()
        lines = sorted(view["lines"], key=lambda line: int(line["PONR"]))
        orders.append(
            M3Order(
                head["ORNO"],
                head["CUOR"],
                head["CUNO"],
                [(line["ITNO"], Decimal(line["ORQT"]), Decimal(line["SAPR"])) for line in lines],
            )
        )
    return orders


def m3_order_count(admin: httpx.Client) -> int:
    return len(admin.get("/orders").json())


# -- 1. 2,000 orders through SIGKILLs, a rebalance and ambiguous 504s ----------------------------


@pytest.mark.timeout(420)
def test_2000_orders_through_three_sigkills_a_rebalance_and_504s_after_create_are_created_exactly_once(
    kafka_bootstrap: str,
    registry_url: str,
    new_topic: NewTopicFactory,
    sandbox: InforSandboxServer,
    admin: httpx.Client,
    workers_factory: Callable[[InforSandboxServer, Topics], Workers],
) -> None:
    specs = random_orders(2000, customers=600, first_number=100_001, first_customer=10_001)
    by_reference = {spec.reference: spec for spec in specs}
    topics = make_topics(new_topic, registry_url, partitions=6)
    with registry_client(RegistrySettings(url=registry_url)) as registry:
        codec = AvroCodec(registry, "Order")
        source = topics[ORDERS_TOPIC]
        produce(kafka_bootstrap, source, [(s.order_key, codec.encode(order_datum(s), source)) for s in specs])
    # 2 % of the Confirm calls: M3 creates the order, the caller gets 504 once the gateway timeout passed.
    admin.put("/gateway", json={"timeout_s": 2.0}).raise_for_status()
    admin.post(
        "/faults",
        json={
            "kind": "timeout",
            "program": "OIS100MI",
            "transaction": "Confirm",
            "rate": 0.02,
            "execute": True,
        },
    ).raise_for_status()
    workers = workers_factory(sandbox, topics)

    def applied() -> int:
        return len({entry.order_key for entry in read_journal(workers.journal) if entry.event == "applied"})

    def start(name: str) -> None:
        # The sandbox has no quota; the production default (600 MI calls a minute) would make these
        # ~19,000 calls take half an hour, so the worker is told its service account may go faster.
        workers.start(
            name,
            JOURNALLED_ORDERS,
            max_in_flight_keys=24,
            extra_env={"PSINFOR_INFOR__REQUESTS_PER_MINUTE": "600000"},
        )

    started = time.monotonic()
    start("a1")
    workers.wait_for(lambda: applied() >= 300, 120, "300 orders applied")
    workers.kill("a1")
    kills = [applied()]
    start("a2")
    workers.wait_for(lambda: applied() >= 650, 120, "650 orders applied")
    added_at = applied()
    start("b1")  # a second instance: a rebalance
    workers.wait_for(lambda: applied() >= 1000, 120, "1,000 orders applied")
    workers.kill("a2")
    kills.append(applied())
    start("a3")
    workers.wait_for(lambda: applied() >= 1400, 120, "1,400 orders applied")
    workers.kill("b1")
    kills.append(applied())
    start("b2")
    workers.wait_for(lambda: applied() == len(specs), 180, "every order applied")
    workers.wait_for(workers.all_committed, 60, "the group to commit the end of the topic")
    elapsed = time.monotonic() - started
    assert workers.terminate("a3") == 0, workers.tail("a3")
    assert workers.terminate("b2") == 0, workers.tail("b2")

    # What M3 holds, read back through the admin API.
    orders = m3_orders(admin)
    per_reference = Counter(order.cuor for order in orders)
    duplicated = {cuor: n for cuor, n in per_reference.items() if n > 1}
    missing = set(by_reference) - set(per_reference)
    strangers = set(per_reference) - set(by_reference)
    wrong = [
        order.cuor
        for order in orders
        if order.cuor in by_reference
        and (
            order.lines != by_reference[order.cuor].expected_lines()
            or order.cuno != by_reference[order.cuor].customer_number
        )
    ]
    customers = [c for c in admin.get("/customers").json() if c["MAIL"].startswith("buyer.")]
    customers_per_mail = Counter(c["MAIL"] for c in customers)
    unconfirmed = [b for b in admin.get("/batch-orders").json() if b["STAT"] != "90"]
    gateway = admin.get("/gateway/stats").json()
    journal = read_journal(workers.journal)
    applies = [entry for entry in journal if entry.event == "applied"]
    outcomes = Counter(entry.what for entry in applies)
    repeats = len(applies) - len({entry.order_key for entry in applies})
    retries = Counter(entry.what for entry in journal if entry.event == "retry")
    names = {pid: name for name, pid in workers.pids.items()}
    per_worker = Counter(names[entry.pid] for entry in applies)
    confirm_504s = gateway["faults"].get("timeout_executed", 0)
    dead_letters = sum(end_offsets(kafka_bootstrap, topics[DLQ_TOPIC], 1).values())
    print(
        f"\n2,000 orders: {len(orders)} M3 orders, {len(duplicated)} duplicated, {len(missing)} missing, "
        f"{len(wrong)} with a wrong line or customer; {len(customers)} M3 customers for "
        f"{len({s.customer_id for s in specs})} shop customers; SIGKILLs after {kills} orders, second "
        f"instance added after {added_at}; applies per process {dict(sorted(per_worker.items()))}; "
        f"{len(applies)} applies, {repeats} repeats seen "
        f"(outcomes {dict(outcomes)}); Confirm 504 after create: {confirm_504s}; retries "
        f"{dict(retries)}; unconfirmed batch orders left {len(unconfirmed)}; DLQ {dead_letters}; "
        f"gateway {gateway['requests']} MI calls {gateway['statuses']}; {elapsed:.1f} s"
    )
    assert len(orders) == len(specs)
    assert not duplicated
    assert not missing
    assert not strangers
    assert not wrong, wrong[:5]
    assert len(customers) == len({s.customer_id for s in specs})
    assert set(customers_per_mail.values()) == {1}
    assert dead_letters == 0
    assert len(kills) == 3
    # Each of the five processes applied orders: the second instance got partitions in the rebalance.
    assert set(per_worker) == {"a1", "a2", "b1", "a3", "b2"}
    assert confirm_504s > 0, "no Confirm answered 504 after creating the order: the fault did not fire"
    assert repeats > 0, "no order was applied twice: the kills did not force any redelivery"
    # Every repeat found its order (by the link, or by CUOR when the link had no order number yet)
    # instead of creating it again. A process killed between M3's answer and its journal line leaves
    # an order only the next owner reports, as linked or unchanged.
    assert set(outcomes) <= {"written", "linked", "unchanged"}
    written = Counter(entry.order_key for entry in applies if entry.what == "written")
    assert set(written.values()) == {1}


# -- 2. M3 rejections: DLQ with M3's error fields, then the fix and `psinfor dlq replay` ------------

BROKEN_CASE = "    source: table_then_sku\n    case: keep\n"
FIXED_CASE = "    source: table_then_sku\n    case: upper\n"


def _headers(record: SourceRecord) -> dict[str, str]:
    return {name: value.decode() for name, value in record.headers}


@pytest.mark.timeout(180)
def test_m3_rejections_are_dead_lettered_with_m3s_fields_and_replay_after_the_fix_creates_each_order_once(
    kafka_bootstrap: str,
    registry_url: str,
    new_topic: NewTopicFactory,
    sandbox: InforSandboxServer,
    admin: httpx.Client,
    workers_factory: Callable[[InforSandboxServer, Topics], Workers],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    topics = make_topics(new_topic, registry_url, partitions=2, customers=True)
    # The deployed rules keep the SKU's case; this shop types its references in lower case.
    rules = tmp_path / "rules.yaml"
    deployed = default_rules_text().replace(FIXED_CASE, BROKEN_CASE)
    assert deployed != default_rules_text()
    parse_rules(deployed)  # a valid rules file, only wrong for this shop
    rules.write_text(deployed)
    fine = OrderSpec(2001, 20_001, (LineSpec("SKU-1010", Decimal(2), Decimal("12.50")),))
    unknown_item = OrderSpec(
        2002,
        20_002,
        (
            LineSpec("sku-1012", Decimal(1), Decimal("30.00")),
            LineSpec("sku-1013", Decimal(3), Decimal("4.20")),
        ),
    )
    # An imported order whose billing address lost its street: the new M3 customer has no CUA1.
    no_street = OrderSpec(
        2003, 20_003, (LineSpec("SKU-1020", Decimal(1), Decimal("99.00")),), billing_lines=()
    )
    specs = [fine, unknown_item, no_street]
    with registry_client(RegistrySettings(url=registry_url)) as registry:
        codec = AvroCodec(registry, "Order")
        source = topics[ORDERS_TOPIC]
        values = {s.order_key: codec.encode(order_datum(s), source) for s in specs}
        workers = workers_factory(sandbox, topics)
        workers.start("first", ORDERS_SINK, rules=rules)
        produce(kafka_bootstrap, source, list(values.items()))
        workers.wait_for(workers.all_committed, 60, "the three orders to be complete")
        assert workers.terminate("first") == 0, workers.tail("first")

        assert [o.cuor for o in m3_orders(admin)] == [fine.reference]
        dead = {r.header("dlq.original_key"): r for r in read_topic(kafka_bootstrap, topics[DLQ_TOPIC], 1)}
        assert set(dead) == {unknown_item.order_key.encode(), no_street.order_key.encode()}
        item_entry = dead[unknown_item.order_key.encode()]
        field_entry = dead[no_street.order_key.encode()]
        assert item_entry.value == values[unknown_item.order_key]  # the original bytes, unchanged
        assert field_entry.value == values[no_street.order_key]
        item = _headers(item_entry)
        missing = _headers(field_entry)
        assert (item["dlq.stage"], item["dlq.reason"], item["dlq.field_path"]) == (
            ORDERS_STAGE,
            "m3_nok",
            "lines[0].sku",
        )
        assert (item["dlq.detail.m3_code"], item["dlq.detail.m3_field"], item["dlq.detail.m3_type"]) == (
            "WIT0203",
            "ITNO",
            "ServerReturnedNOK",
        )
        assert item["dlq.detail.transaction"] == "OIS100MI.AddBatchLine"
        assert "sku-1012" in item["dlq.detail.m3_message"]
        assert (missing["dlq.stage"], missing["dlq.reason"], missing["dlq.field_path"]) == (
            ORDERS_STAGE,
            "m3_mandatory_field_missing",
            "billing_address.lines",
        )
        assert (missing["dlq.detail.m3_field"], missing["dlq.detail.m3_type"]) == (
            "CUA1",
            "MandatoryInputFieldNotFound",
        )
        assert missing["dlq.detail.transaction"] == "CRS610MI.Add"
        monkeypatch.setenv("PSINFOR_KAFKA__BOOTSTRAP_SERVERS", kafka_bootstrap)
        dlq_option = ["--topic", f"{DLQ_TOPIC}={topics[DLQ_TOPIC]}"]
        assert psinfor(["dlq", "list", *dlq_option]) == 0
        listed = capsys.readouterr().out
        assert "1:2002" in listed
        assert "1:2003" in listed
        with capsys.disabled():
            for name, headers in (("unknown item", item), ("missing field", missing)):
                print(
                    f"\nDLQ {name}: reason={headers['dlq.reason']} field_path={headers['dlq.field_path']} "
                    f"m3_code={headers['dlq.detail.m3_code']!r} m3_type={headers['dlq.detail.m3_type']} "
                    f"m3_field={headers['dlq.detail.m3_field']} "
                    f"transaction={headers['dlq.detail.transaction']} "
                    f"message={headers['dlq.detail.m3_message']!r}"
                )
            print(f"psinfor dlq list:\n{listed.rstrip()}")

        # The fix. Unknown item: the mapping is the rule that turns a shop SKU into an M3 item number
        # (rules variants.item_number); the deployed file is corrected and the sink restarted with it.
        # Missing street: no rule can invent an address; the customer's master data is completed (the
        # shop customer's address arrives on canonical.customer.v1 and infor-customers writes it to M3).
        rules.write_text(default_rules_text())
        workers.start("fixed", f"{ORDERS_SINK},{CUSTOMERS_SINK}", rules=rules)
        customers_topic = topics[CUSTOMERS_TOPIC]
        customer = customer_datum(no_street.customer_id, no_street.email, ["5 place Bellecour"])
        produce(
            kafka_bootstrap,
            customers_topic,
            [
                (
                    f"1:{no_street.customer_id}",
                    AvroCodec(registry, "Customer").encode(customer, customers_topic),
                )
            ],
        )

        def customer_has_street() -> bool:
            found = admin.get(f"/customers/{no_street.customer_number}")
            return found.status_code == 200 and found.json()["CUA1"] == "5 place Bellecour"

        workers.wait_for(customer_has_street, 60, "the completed customer in M3")

        code = psinfor(["dlq", "replay", *dlq_option, "--stage", ORDERS_STAGE, "--yes", "--by", "acceptance"])
        replay_out = capsys.readouterr()
        assert code == 0, replay_out.err
        replayed_lines = [line for line in replay_out.out.splitlines() if line.startswith("replayed ")]
        assert len(replayed_lines) == 2, replay_out.out
        workers.wait_for(
            lambda: m3_order_count(admin) == 3 and workers.all_committed(), 60, "the replayed orders"
        )

        code = psinfor(["dlq", "replay", *dlq_option, "--stage", ORDERS_STAGE, "--yes", "--by", "acceptance"])
        second = capsys.readouterr()
        assert code == 1
        assert "nothing to replay" in second.err

        # A replay's tombstone lost in a crash means the record comes once more: the sink absorbs it.
        replayed = [
            r for r in read_topic(kafka_bootstrap, source, topics.partitions) if r.header("dlq.replayed_from")
        ]
        assert sorted(r.key or b"" for r in replayed) == [b"1:2002", b"1:2003"]
        produce(kafka_bootstrap, source, [((r.key or b"").decode(), r.value or b"") for r in replayed])
        workers.wait_for(workers.all_committed, 60, "the records delivered once more")
        assert workers.terminate("fixed") == 0, workers.tail("fixed")

    orders = {order.cuor: order for order in m3_orders(admin)}
    assert sorted(orders) == sorted(s.reference for s in specs)  # one each, nothing twice
    assert orders[unknown_item.reference].lines == [
        ("SKU-1012", Decimal(1), Decimal("30.00")),
        ("SKU-1013", Decimal(3), Decimal("4.20")),
    ]
    assert orders[no_street.reference].cuno == no_street.customer_number
    assert orders[no_street.reference].lines == no_street.expected_lines()
    code = psinfor(["dlq", "list", *dlq_option])
    left = capsys.readouterr()
    assert code == 1, left.out
    with capsys.disabled():
        print(
            f"\nafter the fix: replay put back {len(replayed_lines)} records and M3 created "
            f"{orders[unknown_item.reference].orno} and {orders[no_street.reference].orno} once; second "
            f"replay: {second.err.strip()!r}; the same records delivered again: {m3_order_count(admin)} M3 "
            "orders for 3 references; DLQ now empty"
        )


# -- 3. The duplicate-customer race ---------------------------------------------------------------


@pytest.mark.timeout(180)
def test_two_processes_racing_to_create_one_new_customer_make_one_m3_customer(
    kafka_bootstrap: str,
    kafka_admin: AdminClient,
    registry_url: str,
    new_topic: NewTopicFactory,
    sandbox: InforSandboxServer,
    admin: httpx.Client,
    workers_factory: Callable[[InforSandboxServer, Topics], Workers],
) -> None:
    topics = make_topics(new_topic, registry_url, partitions=2)
    # Every CRS610MI Add waits 5 s before M3 runs it: both processes are inside their create at once, and
    # the gateway's latency counter says how many Adds were sent.
    admin.post(
        "/faults", json={"kind": "latency", "program": "CRS610MI", "transaction": "Add", "latency_s": 5.0}
    ).raise_for_status()
    specs = [
        OrderSpec(3000 + n, 30_001, (LineSpec(SANDBOX_ITEMS[n], Decimal(n + 1), Decimal("10.00")),))
        for n in range(4)
    ]
    workers = workers_factory(sandbox, topics)
    workers.start("one", ORDERS_SINK)
    workers.start("two", ORDERS_SINK)
    group = workers.group_prefix + ORDERS_STAGE
    workers.wait_for(
        lambda: group_members_with_partitions(kafka_admin, group) == 2, 60, "both processes assigned"
    )
    with registry_client(RegistrySettings(url=registry_url)) as registry:
        codec = AvroCodec(registry, "Order")
        source = topics[ORDERS_TOPIC]
        # Two orders on each partition: each process holds two orders of the new customer at once.
        produce(
            kafka_bootstrap,
            source,
            [(s.order_key, codec.encode(order_datum(s), source)) for s in specs],
            partitions=[0, 1, 0, 1],
        )
    workers.wait_for(lambda: m3_order_count(admin) == 4 and workers.all_committed(), 90, "the four orders")
    assert workers.terminate("one") == 0, workers.tail("one")
    assert workers.terminate("two") == 0, workers.tail("two")

    customers = admin.get("/customers", params={"mail": specs[0].email}).json()
    adds = admin.get("/gateway/stats").json()["faults"].get("latency", 0)
    orders = m3_orders(admin)
    print(
        f"\ncustomer race: 4 orders of new customer 1:30001 on 2 sink processes: {adds} CRS610MI Add sent, "
        f"{len(customers)} M3 customer(s) {[c['CUNO'] for c in customers]}, "
        f"{len(orders)} M3 orders on {sorted({o.cuno for o in orders})}"
    )
    assert adds == 2, "both processes should have tried to create the customer at the same time"
    assert [c["CUNO"] for c in customers] == [specs[0].customer_number]
    assert sorted(o.cuor for o in orders) == sorted(s.reference for s in specs)
    assert {o.cuno for o in orders} == {specs[0].customer_number}
    assert sum(end_offsets(kafka_bootstrap, topics[DLQ_TOPIC], 1).values()) == 0
