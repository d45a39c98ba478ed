"""One writer of each shop order's state: a SHIPPED from M3 and a PAID concluded from an invoice, at once.

The race this pins: for a bank-wire order, M3's order status 66 (SHIPPED on canonical.order-status.v1)
and the order's paid invoice (canonical.invoice.v1) arrive together. When ``prestashop-payment`` posted
"Payment accepted" itself, it and ``prestashop-status`` could both read "awaiting bank wire" and both
post, so a paid state landed after "Shipped". Now the payment sink emits its conclusion on the status
topic (keyed by order) and only ``prestashop-status`` posts, one order's changes one after the other.

Both sinks are built by their production factories (the status sink with its paid-state ledger on a
links topic of the test's own, the payment sink with its status emitter) and run by the real
:class:`~sinks.runner.SinkRunner` on the session broker and registry, against the PrestaShop sandbox
over HTTP. Both runners are started first; then, for 20 orders, the SHIPPED change and the paid invoice
are produced together (half with the invoice first), so the payment sink emits while the status sink
is applying. Every order must end "Shipped", with exactly one Shipped history row and no paid state
posted after it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from pipeline.producer import PipelineProducer
from pipeline.settings import (
    DlqSettings,
    KafkaSettings,
    RegistrySettings,
    RetrySettings,
    ServiceSettings,
    Settings,
    SinkSettings,
)
from sandbox.prestashop.server import SandboxServer
from schemas.codec import AvroCodec, AvroDatum
from schemas.registry import SubjectSchema, register_schemas, registry_client
from sinks import prestashop_order_status, prestashop_payments
from sinks.base import SinkResources
from sinks.runner import SinkRunner
from tests.conftest import NewTopicFactory
from tests.unit.test_sinks_prestashop_support import (
    SHOP_ID,
    Admin,
    admin,
    datum,
    rules,
    running_shop,
    shop_settings,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ORDERS = 20
PARTITIONS = 3
STATUS = "canonical.order-status.v1"
INVOICES = "canonical.invoice.v1"
LINKS = "state.erp-links"


@dataclass(frozen=True)
class Topics:
    status: str
    invoices: str
    links: str
    dead_letters: str

    def of(self, catalogue_name: str) -> str:
        return {STATUS: self.status, INVOICES: self.invoices, LINKS: self.links}.get(
            catalogue_name, catalogue_name
        )


@pytest.fixture
def shop() -> Iterator[SandboxServer]:
    with running_shop("8.1.7") as server:
        yield server


@pytest.fixture
def topics(registry_url: str, new_topic: NewTopicFactory) -> Topics:
    found = Topics(
        status=new_topic(partitions=PARTITIONS),
        invoices=new_topic(partitions=PARTITIONS),
        links=new_topic(partitions=3, config={"cleanup.policy": "compact"}),
        dead_letters=new_topic(),
    )
    with registry_client(RegistrySettings(url=registry_url)) as registry:
        register_schemas(
            registry,
            [
                SubjectSchema(f"{found.status}-value", "OrderStatusChange"),
                SubjectSchema(f"{found.invoices}-value", "Invoice"),
            ],
        )
    return found


def shipped_by_m3(id_order: int) -> AvroDatum:
    """What the M3 order flow makes of status 66: shipped, nothing said about payment."""
    return datum(
        "OrderStatusChange",
        "infor-order-stop",
        order_key=f"{SHOP_ID}:{id_order}",
        payment_status="UNKNOWN",
        fulfillment_status="SHIPPED",
        lifecycle="OPEN",
        source_status={"system": "INFOR", "code": "66/66", "name": "Delivered"},
        meta={"event_id": str(uuid.uuid4()), "shop_id": str(SHOP_ID)},
    )


def paid_invoice(id_order: int, total: str, number: int) -> AvroDatum:
    """The order's invoice, settled in full."""
    return datum(
        "Invoice",
        "open-eur",
        order_key=f"{SHOP_ID}:{id_order}",
        invoice_number=str(90_000_000 + number),
        gross={"amount": total, "currency": "EUR"},
        amount_open={"amount": "0", "currency": "EUR"},
        status="PAID",
        meta={"event_id": str(uuid.uuid4()), "shop_id": str(SHOP_ID)},
    )


def end_offsets(bootstrap: str, topic: str, partitions: int = PARTITIONS) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"wm-{uuid.uuid4().hex}"})
    try:
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(partitions)
        }
    finally:
        consumer.close()


def committed_all(bootstrap: str, group: str, topic: str) -> bool:
    """The group committed every record the topic holds now (partitions without records count as done)."""
    ends = end_offsets(bootstrap, topic)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
    finally:
        consumer.close()
    offsets = {tp.partition: tp.offset for tp in found}
    return all(end == 0 or offsets.get(p) == end for p, end in ends.items())


def read_all(bootstrap: str, topic: str, codec: AvroCodec) -> list[tuple[str, AvroDatum]]:
    """Every record of ``topic`` now, as (key, decoded datum)."""
    ends = end_offsets(bootstrap, topic)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    found: list[tuple[str, AvroDatum]] = []
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        deadline = time.monotonic() + 20
        while len(found) < sum(ends.values()):
            assert time.monotonic() < deadline, f"read {len(found)} of {sum(ends.values())} records"
            message = consumer.poll(0.2)
            if message is None or message.error() is not None:
                continue
            found.append(((message.key() or b"").decode(), codec.decode(message.value() or b"", topic)))
    finally:
        consumer.close()
    return found


@dataclass(frozen=True)
class Outcome:
    orders: dict[int, dict[str, Any]]
    added_states: dict[int, list[int]]
    """The history rows each order got after checkout (state ids, oldest first)."""
    current: dict[int, int]
    shipping: int
    paid_states: frozenset[int]
    emitted: list[tuple[str, AvroDatum]]
    dead_letters: int


async def scenario(
    bootstrap: str, registry_url: str, topics: Topics, group: Callable[[], str], shop: SandboxServer
) -> Outcome:
    settings = Settings(
        kafka=KafkaSettings(bootstrap_servers=bootstrap),
        registry=RegistrySettings(url=registry_url),
        prestashop=shop_settings(shop),
        retry=RetrySettings(initial_backoff_s=0.05, max_backoff_s=0.2),
        service=ServiceSettings(commit_interval_s=0.2),
        dlq=DlqSettings(delivery_timeout_s=10.0),
        sinks=SinkSettings(session_timeout_s=10.0, shutdown_timeout_s=5.0),
    )
    producer = PipelineProducer(settings.kafka, client_id_suffix="test-one-state-writer")
    resources = SinkResources(settings=settings, rules=rules(), producer=producer, topic=topics.of)
    groups = {"status": group(), "payment": group()}
    with registry_client(settings.require_registry()) as registry:
        status_codec, invoice_codec = AvroCodec(registry, "OrderStatusChange"), AvroCodec(registry, "Invoice")
        async with admin(shop) as a, AsyncExitStack() as stack:
            orders = {
                o["id"]: o for o in [await a.place_order(state="PS_OS_BANKWIRE") for _ in range(ORDERS)]
            }
            before = {id_order: len(await a.histories_of(id_order)) for id_order in orders}
            status_sink = await stack.enter_async_context(prestashop_order_status.build(resources))
            payment_sink = await stack.enter_async_context(prestashop_payments.build(resources))
            runners = [
                SinkRunner(
                    settings,
                    sink,
                    topics=[topics.of(source) for source in sink.sources],
                    group_id=groups[kind],
                    dlq_topic=topics.dead_letters,
                    codec=AvroCodec(registry, sink.record),
                    producer=producer,
                )
                for kind, sink in (("status", status_sink), ("payment", payment_sink))
            ]
            tasks = [asyncio.create_task(runner.run()) for runner in runners]
            try:
                await asyncio.to_thread(
                    produce_together, bootstrap, topics, status_codec, invoice_codec, orders
                )
                await wait_until_done(bootstrap, topics, groups, tasks)
            finally:
                for runner in runners:
                    runner.stop()
                await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
            outcome = await judge(a, orders, before)
    emitted = await asyncio.to_thread(read_all, bootstrap, topics.status, status_codec)
    dead = sum((await asyncio.to_thread(end_offsets, bootstrap, topics.dead_letters, 1)).values())
    await asyncio.to_thread(producer.close, 10.0)
    return Outcome(orders, *outcome, emitted=emitted, dead_letters=dead)


def produce_together(
    bootstrap: str,
    topics: Topics,
    status_codec: AvroCodec,
    invoice_codec: AvroCodec,
    orders: dict[int, dict[str, Any]],
) -> None:
    """Each order's SHIPPED change and paid invoice back to back (every other order invoice first)."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 0})
    for number, (id_order, order) in enumerate(orders.items()):
        key = f"{SHOP_ID}:{id_order}".encode()
        shipped = (topics.status, status_codec.encode(shipped_by_m3(id_order), topics.status))
        total = str(Decimal(order["total_paid_tax_incl"]))
        invoice = (
            topics.invoices,
            invoice_codec.encode(paid_invoice(id_order, total, number), topics.invoices),
        )
        for topic, value in (shipped, invoice) if number % 2 else (invoice, shipped):
            producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0


async def wait_until_done(
    bootstrap: str, topics: Topics, groups: dict[str, str], tasks: list[asyncio.Task[None]]
) -> None:
    """The payment group committed every invoice (so every PAID it concluded is on the status topic,
    acknowledged before its invoice completed), then the status group every status record."""
    deadline = time.monotonic() + 60
    while True:
        for task in tasks:
            assert not task.done(), task.exception()
        invoices_done = await asyncio.to_thread(committed_all, bootstrap, groups["payment"], topics.invoices)
        if invoices_done and await asyncio.to_thread(
            committed_all, bootstrap, groups["status"], topics.status
        ):
            return
        assert time.monotonic() < deadline, "the sinks did not commit every record in 60 s"
        await asyncio.sleep(0.2)


async def judge(
    a: Admin, orders: dict[int, dict[str, Any]], before: dict[int, int]
) -> tuple[dict[int, list[int]], dict[int, int], int, frozenset[int]]:
    histories = await a.rows("order_histories")
    added = {
        id_order: [int(row["id_order_state"]) for row in histories if int(row["id_order"]) == id_order][
            before[id_order] :
        ]
        for id_order in orders
    }
    current = {id_order: int((await a.row("orders", id_order))["current_state"]) for id_order in orders}
    paid = frozenset(int(row["id"]) for row in await a.rows("order_states") if int(row["paid"]))
    return added, current, await a.state_id("PS_OS_SHIPPING"), paid


def test_a_shipped_change_and_a_paid_invoice_at_once_end_shipped_once_with_no_paid_state_after_it(
    kafka_bootstrap: str,
    registry_url: str,
    topics: Topics,
    new_group: Callable[[], str],
    shop: SandboxServer,
) -> None:
    outcome = asyncio.run(scenario(kafka_bootstrap, registry_url, topics, new_group, shop))

    concluded = [
        (key, value) for key, value in outcome.emitted if value["meta"]["source_system"] == "PIPELINE"
    ]
    paid_first = sum(1 for states in outcome.added_states.values() if len(states) == 2)
    print(
        f"\n[one state writer] {ORDERS} bank-wire orders, SHIPPED and a paid invoice at once: "
        f"{len(concluded)} PAID concluded by prestashop-payment; {paid_first} orders got Payment accepted "
        f"then Shipped, {ORDERS - paid_first} Shipped only (the PAID after it: already there)"
    )
    assert outcome.dead_letters == 0
    # The payment sink posted nothing itself: it said PAID once per order, keyed by the order.
    assert sorted(key for key, _ in concluded) == sorted(
        f"{SHOP_ID}:{id_order}" for id_order in outcome.orders
    )
    for _, value in concluded:
        assert (value["payment_status"], value["fulfillment_status"], value["lifecycle"]) == (
            "PAID",
            "UNKNOWN",
            "UNKNOWN",
        )
        assert value["meta"]["source_entity"] == prestashop_payments.INVOICES_NAME
    for id_order, states in outcome.added_states.items():
        assert outcome.current[id_order] == outcome.shipping, (id_order, states)
        assert states.count(outcome.shipping) == 1, (id_order, states)
        after_shipped = states[states.index(outcome.shipping) + 1 :]
        assert not [state for state in after_shipped if state in outcome.paid_states], (id_order, states)
        # Nothing but (at most) "Payment accepted" before Shipped: no state was posted twice.
        assert len(states) == len(set(states)) <= 2, (id_order, states)
