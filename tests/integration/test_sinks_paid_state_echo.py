"""Shop payments to M3 invoices, without the shop's answers to the pipeline's own paid states.

Real HTTP to both sandboxes, the real broker for ``state.erp-links`` (a compacted topic of the test's
own): the PrestaShop writer (:class:`~sinks.prestashop_target.OrderStateWriter`, as prestashop-status,
the one writer of order states, builds it) keeps its paid-state marks there, and the Infor payment
sinks read them back (topic read to its end) next to the order links. Each shop order has an M3 twin
created by the ``infor-orders`` sink and invoiced by stepping the sandbox's paused warehouse; the order
link is written to the topic as the orders sink would. The canonical Payment of a shop payment is what
the payments flow makes of it: the example card capture re-pointed at the order, the shop's payment id
and amount.

(a) a card order's checkout payment is applied to its M3 invoice (one ARS040MI batch, RAFC 0);
(b) a bank-wire order moved to "Shipped" by the writer: the payment the shop invents for it is
    ``echo``: no batch, the M3 invoice stays open;
(c) the writer died between its open mark and Shipped's outcome: the payment is parked (``waiting``),
    an invoice does not apply it, and once the redelivered status change closed the mark it is ``echo``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.infor.ionapi import IonApiCredentials
from pipeline.producer import PipelineProducer
from pipeline.settings import KafkaSettings
from processors.erp_links import ErpLinkStore, OrderLink, order_link_record
from rules.canonical_status import FulfillmentStatus, OrderStatus
from sandbox.infor.server import InforSandboxServer
from sandbox.prestashop.server import SandboxServer
from schemas.codec import AvroDatum
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
from sinks.prestashop_target import OrderStateWriter, PaidStateIndex, PaidStateMark, StoredPaidStateLedger
from tests.conftest import NewTopicFactory
from tests.unit.test_sinks_infor_payments import encode, invoice_datum, invoice_everything, open_amount
from tests.unit.test_sinks_infor_support import (
    admin_client,
    context,
    credentials_of,
    example,
    infor_process,
    money,
    running_sandbox,
    sandbox_order,
)
from tests.unit.test_sinks_prestashop_support import SHOP_ID, admin, rules, running_shop, sink_client

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

STAGE = "prestashop-status"
SHIPPED = OrderStatus(fulfillment=FulfillmentStatus.SHIPPED)


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


@pytest.fixture
def shop() -> Iterator[SandboxServer]:
    with running_shop("8.1.7") as server:
        yield server


@pytest.fixture
def links_topic(new_topic: NewTopicFactory) -> str:
    return new_topic(partitions=3, config={"cleanup.policy": "compact"})


@dataclass
class World:
    """Both sides as deployed: the shop writer with its marks, the Infor payment sinks, M3's orders."""

    shop: SandboxServer
    m3: httpx.Client
    writer: OrderStateWriter
    ledger: StoredPaidStateLedger
    payments: InforPaymentsSink
    invoices: InforInvoicePaymentsSink
    create_m3_order: Callable[[str, str], Any]
    link: Callable[[str, str, str], Any]

    async def shop_order(self, module: str) -> dict[str, Any]:
        """A checkout of ten units (more than the M3 twin's 65.88 invoice) paid with ``module``."""
        async with admin(self.shop) as a:
            lines = [{"product_id": 1, "combination_id": 0, "quantity": 10}]
            body = {"customer_id": 1, "lines": lines, "payment_module": module}
            found: dict[str, Any] = await a.call("POST", "orders", json=body)
        assert Decimal(found["total_paid_tax_incl"]) >= Decimal("65.88")
        return found

    async def invoiced_twin(self, order: dict[str, Any]) -> dict[str, str]:
        """The order's M3 twin, created, linked and invoiced; returns the invoice."""
        order_key = f"{SHOP_ID}:{order['id']}"
        orno = await self.create_m3_order(order_key, order["reference"])
        await self.link(order_key, order["reference"], orno)
        return invoice_everything(self.m3, orno)

    async def payments_of(self, order: dict[str, Any]) -> list[dict[str, Any]]:
        async with admin(self.shop) as a:
            return [p for p in await a.rows("order_payments") if p["order_reference"] == order["reference"]]

    async def pay(self, order: dict[str, Any], payment: dict[str, Any]) -> Applied:
        """The canonical Payment of a shop payment through ``infor-payments``."""
        datum = payment_datum(order, payment)
        model = self.payments.decode(datum, context(topic="canonical.payment.v1"))
        assert isinstance(model, PaymentProgress)
        return await self.payments.apply(model, context(topic="canonical.payment.v1"))

    async def invoice_arrives(self, order: dict[str, Any], invoice: dict[str, str]) -> Applied:
        datum = invoice_datum(invoice["IVNO"]) | {"order_key": f"{SHOP_ID}:{order['id']}"}
        model = self.invoices.decode(datum, context(topic="canonical.invoice.v1"))
        assert isinstance(model, InvoiceArrived)
        return await self.invoices.apply(model, context(topic="canonical.invoice.v1"))


def payment_datum(order: dict[str, Any], payment: dict[str, Any]) -> AvroDatum:
    """What the payments flow makes of a shop payment (the example capture, re-pointed)."""
    datum = example("Payment", "card-capture")
    datum["order_key"] = f"{SHOP_ID}:{order['id']}"
    datum["amount"] = money(str(Decimal(payment["amount"]).quantize(Decimal("0.01"))))
    datum["transaction_id"] = payment["transaction_id"] or None
    datum["meta"] |= {"source_id": str(payment["id"]), "event_id": f"payment-{payment['id']}"}
    datum["external_ids"] = {"prestashop": str(payment["id"]), "prestashop_order": str(order["id"])}
    return datum


@contextlib.asynccontextmanager
async def world(
    kafka_bootstrap: str,
    links_topic: str,
    shop: SandboxServer,
    m3: httpx.Client,
    credentials: IonApiCredentials,
) -> AsyncIterator[World]:
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    producer = PipelineProducer(kafka, client_id_suffix="test-paid-state-echo")
    marks_store = ErpLinkStore(kafka, links_topic, client_id_suffix="test-status-paid-states")
    marks_store.index = PaidStateIndex()
    ledger = StoredPaidStateLedger(marks_store, producer, stage=STAGE, shop_id=SHOP_ID)
    payments_store = ErpLinkStore(kafka, links_topic, client_id_suffix="test-infor-payments")
    index = LinksAndPayments()
    payments_store.index = index
    await asyncio.to_thread(payments_store.start)
    try:
        async with sink_client(shop) as client, infor_process(credentials) as process:
            state = StoredPaymentState(payments_store, index)
            reconciler = PaymentReconciler(
                process.adapter,
                state,
                producer,
                encode,
                links_topic=links_topic,
                status_topic="canonical.order-status.v1.unused",
                echo_wait_s=0.5,
            )

            async def create_m3_order(order_key: str, reference: str) -> str:
                sink = process.orders_sink()
                model = sink.decode(sandbox_order(order_key, reference), context(order_key))
                assert isinstance(model, OrderWrite)
                applied = await sink.apply(model, context(order_key))
                assert applied.facts is not None
                return applied.facts["erp_order_number"]

            async def link(order_key: str, reference: str, orno: str) -> None:
                key, value = order_link_record(OrderLink(order_key, "100", reference, orno))
                await producer.produce_acked(links_topic, key, value)

            yield World(
                shop,
                m3,
                OrderStateWriter(client, rules(), paid_states=ledger),
                ledger,
                InforPaymentsSink(reconciler),
                InforInvoicePaymentsSink(reconciler, state),
                create_m3_order,
                link,
            )
    finally:
        await asyncio.to_thread(ledger.close)
        await asyncio.to_thread(payments_store.close)
        await asyncio.to_thread(producer.close, 10.0)


def test_a_card_orders_checkout_payment_is_applied_to_its_m3_invoice(
    kafka_bootstrap: str,
    links_topic: str,
    shop: SandboxServer,
    m3: httpx.Client,
    credentials: IonApiCredentials,
) -> None:
    async def scenario() -> tuple[Applied, Applied, dict[str, str]]:
        async with world(kafka_bootstrap, links_topic, shop, m3, credentials) as w:
            order = await w.shop_order("stripe_official")
            invoice = await w.invoiced_twin(order)
            shipped = await w.writer.move(order["id"], SHIPPED)  # paid already: the shop invents nothing
            assert shipped.written
            [paid] = await w.payments_of(order)
            return await w.pay(order, paid), await w.pay(order, paid), invoice

    applied, again, invoice = asyncio.run(scenario())

    assert applied.outcome == "written"
    assert again.outcome == "unchanged"
    assert open_amount(m3, invoice["IVNO"]) == "0.00"
    [batch] = m3.get("/payment-batches").json()
    assert (batch["STAT"], [line["CINO"] for line in batch["lines"]]) == ("90", [invoice["IVNO"]])


def test_the_payment_the_shop_invents_when_the_pipeline_ships_a_bank_wire_order_never_reaches_m3(
    kafka_bootstrap: str,
    links_topic: str,
    shop: SandboxServer,
    m3: httpx.Client,
    credentials: IonApiCredentials,
) -> None:
    async def scenario() -> tuple[list[dict[str, Any]], Applied, Applied, dict[str, str]]:
        async with world(kafka_bootstrap, links_topic, shop, m3, credentials) as w:
            order = await w.shop_order("ps_wirepayment")
            invoice = await w.invoiced_twin(order)
            assert await w.payments_of(order) == []
            assert (await w.writer.move(order["id"], SHIPPED)).written
            invented = await w.payments_of(order)
            return invented, await w.pay(order, invented[0]), await w.invoice_arrives(order, invoice), invoice

    invented, paid, invoiced, invoice = asyncio.run(scenario())

    assert len(invented) == 1  # PrestaShop records the remaining amount on a paid state ("Shipped")
    assert paid == Applied("echo", {"payment_id": str(invented[0]["id"])})
    assert invoiced == Applied("no_payment_waiting")
    assert open_amount(m3, invoice["IVNO"]) == "65.88"
    assert m3.get("/payment-batches").json() == []


def test_a_payment_behind_a_mark_left_open_by_a_crash_is_parked_and_never_applied(
    kafka_bootstrap: str,
    links_topic: str,
    shop: SandboxServer,
    m3: httpx.Client,
    credentials: IonApiCredentials,
) -> None:
    async def scenario() -> tuple[list[Applied], dict[str, str]]:
        async with world(kafka_bootstrap, links_topic, shop, m3, credentials) as w:
            order = await w.shop_order("ps_wirepayment")
            invoice = await w.invoiced_twin(order)
            order_key = f"{SHOP_ID}:{order['id']}"
            async with admin(shop) as a:
                shipping = await a.state_id("PS_OS_SHIPPING")
                # The status sink recorded its open mark, posted Shipped, and died.
                await w.ledger.record(PaidStateMark.opened(order_key, STAGE, shipping, []))
                await a.call("POST", f"orders/{order['id']}/state", json={"state": "PS_OS_SHIPPING"})
            [invented] = await w.payments_of(order)
            outcomes = [await w.pay(order, invented), await w.invoice_arrives(order, invoice)]
            # The restarted sink gets the SHIPPED change again: nothing to post, the mark is closed.
            assert not (await w.writer.move(order["id"], SHIPPED)).written
            outcomes += [await w.invoice_arrives(order, invoice), await w.pay(order, invented)]
            return outcomes, invoice

    outcomes, invoice = asyncio.run(scenario())

    assert [o.outcome for o in outcomes] == ["waiting", "waiting", "echo", "echo"]
    assert outcomes[0].facts == {"why": "paid_state_open"}
    assert open_amount(m3, invoice["IVNO"]) == "65.88"
    assert m3.get("/payment-batches").json() == []
