"""A card order paid in full at checkout and delivered in two parts: both M3 invoices get the payment.

Real HTTP to the Infor sandbox, the real broker and registry: ``state.erp-links`` is a compacted topic
of the test's own, where the ``infor-payments`` and ``infor-payment-invoices`` sinks, each in its own
"process" (its own :class:`~processors.erp_links.ErpLinkStore` reading the topic), keep the payment's
progress; the payment status they conclude goes to a status topic of the test's own as real
Schema Registry Avro. The M3 order is created by the ``infor-orders`` sink; the sandbox's paused
warehouse delivers it in two parts because the second line's item has no stock at first (M3 allocates
a line only when its warehouse balance covers it), so M3 issues one invoice per delivery.

The payment of the whole order is applied while only the first invoice is open: round 0's batch pays
that invoice and the rest stays parked (``partly_applied``); when the second invoice arrives, the
invoice sink pays it in round 1's batch. Both invoices end at RAFC 0, in two batches, and a redelivery
of either record posts nothing more.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition

from connectors.infor.ionapi import IonApiCredentials
from pipeline.producer import PipelineProducer
from pipeline.settings import KafkaSettings, RegistrySettings
from processors.erp_links import ErpLinkStore, OrderLink, order_link_record
from sandbox.infor.server import InforSandboxServer
from schemas.codec import AvroCodec, AvroDatum
from schemas.registry import SubjectSchema, register_schemas, registry_client
from sinks.base import Applied
from sinks.infor_orders import OrderWrite
from sinks.infor_payments import (
    InforInvoicePaymentsSink,
    InforPaymentsSink,
    InvoiceArrived,
    LinksAndPayments,
    PaymentProgress,
    PaymentReconciler,
    StoredPaymentState,
)
from tests.conftest import NewTopicFactory
from tests.unit.test_sinks_infor_payments import card_payment, invoice_datum, open_amount
from tests.unit.test_sinks_infor_support import (
    admin_client,
    context,
    credentials_of,
    infor_process,
    running_sandbox,
    sandbox_order,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

ORDER_KEY = "1:1042"
"""The example payment's order (card capture 877 of shop 1)."""


@pytest.fixture(scope="module")
def infor() -> Iterator[InforSandboxServer]:
    with running_sandbox() as running:
        yield running


@pytest.fixture
def m3(infor: InforSandboxServer) -> Iterator[httpx.Client]:
    with admin_client(infor) as client:
        client.put("/warehouse", json={"paused": True}).raise_for_status()
        yield client


@pytest.fixture
def credentials(infor: InforSandboxServer, tmp_path: Path) -> IonApiCredentials:
    return credentials_of(infor, tmp_path)


@dataclass(frozen=True)
class Topics:
    links: str
    status: str


@pytest.fixture
def topics(registry_url: str, new_topic: NewTopicFactory) -> Topics:
    found = Topics(links=new_topic(partitions=3, config={"cleanup.policy": "compact"}), status=new_topic())
    with registry_client(RegistrySettings(url=registry_url)) as registry:
        register_schemas(registry, [SubjectSchema(f"{found.status}-value", "OrderStatusChange")])
    return found


@contextlib.contextmanager
def link_store(
    kafka: KafkaSettings, topic: str, name: str
) -> Iterator[tuple[ErpLinkStore, LinksAndPayments]]:
    """One sink process's view of ``state.erp-links``, read from the topic."""
    store = ErpLinkStore(kafka, topic, client_id_suffix=f"test-{name}")
    index = LinksAndPayments()
    store.index = index
    store.start()
    try:
        yield store, index
    finally:
        store.close()


@dataclass
class Sinks:
    payments: InforPaymentsSink
    invoices: InforInvoicePaymentsSink

    async def pay(self, datum: AvroDatum) -> Applied:
        model = self.payments.decode(datum, context(ORDER_KEY, topic="canonical.payment.v1"))
        assert isinstance(model, PaymentProgress)
        return await self.payments.apply(model, context(ORDER_KEY, topic="canonical.payment.v1"))

    async def invoice_arrives(self, invoice: dict[str, str]) -> Applied:
        datum = invoice_datum(invoice["IVNO"]) | {"erp_order_number": invoice["ORNO"]}
        model = self.invoices.decode(datum, context(ORDER_KEY, topic="canonical.invoice.v1"))
        assert isinstance(model, InvoiceArrived)
        return await self.invoices.apply(model, context(ORDER_KEY, topic="canonical.invoice.v1"))


@contextlib.asynccontextmanager
async def payment_sinks(
    kafka: KafkaSettings, registry_url: str, topics: Topics, credentials: IonApiCredentials
) -> AsyncIterator[Sinks]:
    """The two payment sinks as two processes run them: own producer, M3 connection and links store."""
    async with contextlib.AsyncExitStack() as stack:
        registry = stack.enter_context(registry_client(RegistrySettings(url=registry_url)))

        async def reconciler(name: str) -> tuple[PaymentReconciler, StoredPaymentState]:
            producer = PipelineProducer(kafka, client_id_suffix=f"test-{name}")
            stack.push_async_callback(asyncio.to_thread, producer.close, 10.0)
            store, index = stack.enter_context(link_store(kafka, topics.links, name))
            state = StoredPaymentState(store, index)
            process = await stack.enter_async_context(infor_process(credentials))
            codec = AvroCodec(registry, "OrderStatusChange")
            return (
                PaymentReconciler(
                    process.adapter,
                    state,
                    producer,
                    codec.encode,
                    links_topic=topics.links,
                    status_topic=topics.status,
                    echo_wait_s=0.5,
                ),
                state,
            )

        payments, _ = await reconciler("infor-payments")
        invoices, invoices_state = await reconciler("infor-payment-invoices")
        yield Sinks(InforPaymentsSink(payments), InforInvoicePaymentsSink(invoices, invoices_state))


async def linked_m3_order(kafka: KafkaSettings, topics: Topics, credentials: IonApiCredentials) -> str:
    """The order created in M3 by the ``infor-orders`` sink, its link on ``state.erp-links``."""
    async with infor_process(credentials) as process:
        sink = process.orders_sink()
        model = sink.decode(sandbox_order(ORDER_KEY), context(ORDER_KEY))
        assert isinstance(model, OrderWrite)
        applied = await sink.apply(model, context(ORDER_KEY))
    assert applied.facts is not None
    orno = applied.facts["erp_order_number"]
    producer = PipelineProducer(kafka, client_id_suffix="test-infor-orders")
    try:
        key, value = order_link_record(OrderLink(ORDER_KEY, "100", model.reference, orno))
        await producer.produce_acked(topics.links, key, value)
    finally:
        await asyncio.to_thread(producer.close, 10.0)
    return orno


def deliver(m3: httpx.Client, orno: str, *, second_item_stock: int) -> list[dict[str, str]]:
    """Let the warehouse move the order as far as stock allows; the order's invoices, oldest first."""
    m3.put("/balances/001/SKU-2002", json={"stqt": second_item_stock}).raise_for_status()
    m3.post("/warehouse/step", json={"times": 4}).raise_for_status()
    return [i for i in m3.get("/invoices").json() if i["ORNO"] == orno]


def read_statuses(kafka: KafkaSettings, topic: str, registry_url: str) -> list[AvroDatum]:
    """Every record on the (one-partition) status topic, decoded with the registry."""
    consumer = Consumer(
        {
            "bootstrap.servers": kafka.bootstrap_servers,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    found: list[AvroDatum] = []
    try:
        end = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
        consumer.assign([TopicPartition(topic, 0, 0)])
        with registry_client(RegistrySettings(url=registry_url)) as registry:
            codec = AvroCodec(registry, "OrderStatusChange")
            deadline = time.monotonic() + 20
            while len(found) < end:
                assert time.monotonic() < deadline, f"read {len(found)} of {end} statuses"
                message = consumer.poll(0.2)
                if message is None or message.error() is not None:
                    continue
                found.append(codec.decode(message.value() or b"", topic))
    finally:
        consumer.close()
    return found


def test_a_payment_of_the_whole_order_applied_at_its_first_invoice_also_pays_the_second(
    kafka_bootstrap: str,
    registry_url: str,
    topics: Topics,
    m3: httpx.Client,
    credentials: IonApiCredentials,
) -> None:
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)

    async def scenario() -> tuple[list[Applied], list[dict[str, str]], PaymentProgress | None]:
        orno = await linked_m3_order(kafka, topics, credentials)
        async with payment_sinks(kafka, registry_url, topics, credentials) as sinks:
            [first] = deliver(m3, orno, second_item_stock=0)  # the second line is backordered
            outcomes = [await sinks.pay(card_payment("65.88"))]
            invoices = deliver(m3, orno, second_item_stock=100)
            outcomes += [
                await sinks.invoice_arrives(invoices[1]),
                await sinks.invoice_arrives(invoices[1]),  # redelivered
                await sinks.invoice_arrives(first),  # a late copy of the first invoice
                await sinks.pay(card_payment("65.88")),  # the payment redelivered
            ]
        # A process started now knows where the payment stands from the topic alone.
        with link_store(kafka, topics.links, "restarted") as (_, index):
            return outcomes, invoices, index.payment(ORDER_KEY, "877")

    outcomes, invoices, progress = asyncio.run(scenario())

    first, second = invoices
    assert Decimal(first["AMT1"]) + Decimal(second["AMT1"]) == Decimal("65.88")
    left = str(Decimal("65.88") - Decimal(first["AMT1"]))
    assert [o.outcome for o in outcomes] == [
        "written",
        "written",
        "no_payment_waiting",
        "no_payment_waiting",
        "unchanged",
    ]
    assert outcomes[0].facts == {"payment_batch": "10000000877", "payment_status": "PAID", "left": left}
    assert outcomes[1].facts == {"payments": "1", "payment_batch": "11000000877", "payment_status": "PAID"}
    assert (open_amount(m3, first["IVNO"]), open_amount(m3, second["IVNO"])) == ("0.00", "0.00")
    batches = m3.get("/payment-batches").json()
    assert [(b["PBID"], b["STAT"]) for b in batches] == [("10000000877", "90"), ("11000000877", "90")]
    assert [[(line["CINO"], line["PYAM"]) for line in b["lines"]] for b in batches] == [
        [(first["IVNO"], first["AMT1"])],
        [(second["IVNO"], left)],
    ]
    assert progress is not None
    assert (progress.status, progress.round_number, progress.posted) == ("applied", 1, Decimal("65.88"))
    statuses = read_statuses(kafka, topics.status, registry_url)
    assert [(s["order_key"], s["payment_status"]) for s in statuses] == [(ORDER_KEY, "PAID")] * 2
