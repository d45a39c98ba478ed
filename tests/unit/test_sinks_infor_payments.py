"""Payment reconciliation: shop payments applied to M3 invoices (ARS040MI) through the Infor sandbox.

An order is created through the orders sink, the sandbox's warehouse is stepped until M3 invoiced it,
and the payment is applied before or after that invoice. Invoices' remaining amounts and the payment
batches are read back through the sandbox's admin API; the emitted statuses are real Avro bodies of
``OrderStatusChange`` (written and read with the schema, without a registry).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import logging
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastavro import schemaless_reader, schemaless_writer

from connectors.infor.adapter import CustomerPayment, ErpOrderRef, InvoiceBalance, PaymentAllocation
from connectors.infor.ionapi import IonApiCredentials
from pipeline.errors import InvalidMessage
from processors.erp_links import OrderLink
from sandbox.infor.server import InforSandboxServer
from schemas.codec import AvroDatum
from schemas.loader import parsed_schema
from sinks.base import Applied, Skip
from sinks.infor_orders import OrderWrite
from sinks.infor_payments import (
    InforInvoicePaymentsSink,
    InforPaymentsSink,
    InvoiceArrived,
    LinksAndPayments,
    PaymentProgress,
    PaymentReconciler,
    Receivables,
    allocate,
    next_round,
    payment_batch_id,
    payment_status,
    payment_status_change,
    round_posted,
    to_payment_progress,
)
from sinks.prestashop_target import PaidStateMark
from tests.unit.test_sinks_infor_support import (
    LINKS_TOPIC,
    InforProcess,
    admin_client,
    context,
    credentials_of,
    example,
    infor_process,
    money,
    run,
    running_sandbox,
    sandbox_order,
)

pytestmark = pytest.mark.timeout(60)

STATUS_TOPIC = "canonical.order-status.v1"
NOW = dt.datetime(2024, 5, 5, 12, 0, tzinfo=dt.UTC)
STATUS_SCHEMA = parsed_schema("OrderStatusChange")


def encode(datum: AvroDatum, topic: str) -> bytes:
    """The Avro body of ``datum`` (fails as the codec would when it does not fit the schema)."""
    out = io.BytesIO()
    schemaless_writer(out, STATUS_SCHEMA, datum, strict_allow_default=True)
    return out.getvalue()


def decode(body: bytes) -> Any:
    return schemaless_reader(io.BytesIO(body), STATUS_SCHEMA, None)


@pytest.fixture(scope="module")
def server() -> Iterator[InforSandboxServer]:
    with running_sandbox() as running:
        yield running


@pytest.fixture
def admin(server: InforSandboxServer) -> Iterator[httpx.Client]:
    with admin_client(server) as client:
        client.put("/warehouse", json={"paused": True}).raise_for_status()
        yield client


@pytest.fixture
def credentials(server: InforSandboxServer, tmp_path: Path) -> IonApiCredentials:
    return credentials_of(server, tmp_path)


def card_payment(amount: str = "65.88", **changes: Any) -> AvroDatum:
    datum = example("Payment", "card-capture")
    datum["amount"] = money(amount)
    datum.update(changes)
    return datum


def invoice_datum(invoice_number: str = "700123") -> AvroDatum:
    datum = example("Invoice", "open-eur")
    datum["invoice_number"] = invoice_number
    return datum


# -- pure parts --------------------------------------------------------------------------------------


def test_a_card_payment_maps_to_a_batch_numbered_by_shop_and_payment() -> None:
    progress = to_payment_progress(example("Payment", "card-capture"))

    assert isinstance(progress, PaymentProgress)
    assert (progress.order_key, progress.payment_id, progress.batch_id) == ("1:1042", "877", 10000000877)
    assert (progress.amount, progress.currency) == (Decimal("65.88"), "EUR")
    assert progress.paid_on == dt.date(2024, 5, 2)
    assert progress.reference == "pi_3PBx2kLkdIwHu7ix0sQ1"
    assert (progress.shop_id, progress.status, progress.allocations) == ("1", "waiting", ())
    assert progress.event_id == "5cf68fcb-0994-522f-8a12-a657afa4f9d8"


def test_a_payment_without_external_ids_is_named_by_its_source_id() -> None:
    progress = to_payment_progress(example("Payment", "partial-bank-wire-usd"))

    assert isinstance(progress, PaymentProgress)
    assert (progress.payment_id, progress.batch_id, progress.currency) == ("903", 20000000903, "USD")
    assert progress.amount == Decimal(200)
    assert progress.reference == ""


def test_payments_not_recorded_by_the_shop_and_zero_amounts_are_skipped_refunds_are_invalid() -> None:
    assert to_payment_progress(card_payment(recorded_by="INFOR")) == Skip("not_ours")
    assert to_payment_progress(card_payment("0")) == Skip("zero_amount")
    with pytest.raises(InvalidMessage) as caught:
        to_payment_progress(card_payment("-10.00"))
    assert (caught.value.reason, caught.value.field_path) == ("refund_not_supported", "amount.amount")


def test_batch_numbers_need_numeric_ids_that_fit() -> None:
    assert payment_batch_id("12", "0000000042") == 120000000042
    for shop, payment in (("1", "pay-42"), ("1", "12345678901"), ("1", "1000000000"), ("100000", "1")):
        with pytest.raises(InvalidMessage) as caught:
            payment_batch_id(shop, payment)
        assert caught.value.reason == "payment_id_not_numeric"


def test_each_round_of_a_payment_has_its_own_batch_number_and_round_0_keeps_the_old_one() -> None:
    assert payment_batch_id("1", "877", 0) == payment_batch_id("1", "877") == 1 * 10**10 + 877
    assert payment_batch_id("1", "877", 1) == 11000000877
    assert payment_batch_id("3", "999999999", 9) == 39999999999
    assert payment_batch_id("99999", "999999999", 9) == 10**15 - 1  # PBID is numeric 15
    ids = [(shop, pay, r) for shop in ("1", "2") for pay in ("1", "10", "999999999") for r in range(10)]
    assert len({payment_batch_id(*id_) for id_ in ids}) == len(ids) == 60
    with pytest.raises(InvalidMessage) as caught:
        payment_batch_id("1", "877", 10)
    assert (caught.value.reason, caught.value.details) == (
        "payment_rounds_exhausted",
        {"payment_id": "877", "round": "10"},
    )


def _balance(invoice: str, open_amount: str, gross: str = "100") -> InvoiceBalance:
    return InvoiceBalance(invoice, "2024", "PS000318", "EUR", Decimal(gross), Decimal(open_amount))


def test_a_payment_covers_the_oldest_open_invoices_first_and_never_more_than_is_open() -> None:
    balances = [_balance("1", "0"), _balance("2", "30"), _balance("3", "50")]

    assert allocate(Decimal(60), balances) == (
        PaymentAllocation("2", "2024", Decimal(30)),
        PaymentAllocation("3", "2024", Decimal(30)),
    )
    assert sum(a.amount for a in allocate(Decimal(500), balances)) == Decimal(80)
    assert allocate(Decimal(10), [_balance("1", "0")]) == ()


def _waiting(amount: str) -> PaymentProgress:
    progress = to_payment_progress(card_payment(amount))
    assert isinstance(progress, PaymentProgress)
    return progress


def _allocation(invoice: str, amount: str) -> PaymentAllocation:
    return PaymentAllocation(invoice, "2024", Decimal(amount))


def test_a_payment_larger_than_what_is_open_is_applied_in_rounds_until_nothing_is_left() -> None:
    waiting = _waiting("100.00")

    first = next_round(waiting, [_balance("1", "60")], "1000012345")
    assert first is not None
    assert (first.status, first.round_number, first.batch_id, first.posted) == (
        "applying",
        0,
        10000000877,
        Decimal(0),
    )
    assert (first.allocations, first.erp_order_number) == ((_allocation("1", "60"),), "1000012345")
    after_first = round_posted(first)
    assert (after_first.status, after_first.posted, after_first.unposted) == (
        "partly_applied",
        Decimal(60),
        Decimal(40),
    )
    # Nothing open (the first invoice is paid, the second not issued yet): the remainder waits.
    assert next_round(after_first, [_balance("1", "0")], "1000012345") is None

    second = next_round(after_first, [_balance("1", "0"), _balance("2", "30")], "1000012345")
    assert second is not None
    assert (second.round_number, second.batch_id, second.posted) == (1, 11000000877, Decimal(60))
    assert second.allocations == (_allocation("2", "30"),)
    after_second = round_posted(second)
    assert (after_second.status, after_second.unposted) == ("partly_applied", Decimal(10))

    third = next_round(after_second, [_balance("1", "0"), _balance("2", "0"), _balance("3", "50")], "")
    assert third is not None
    assert (third.round_number, third.batch_id) == (2, 12000000877)
    assert third.allocations == (_allocation("3", "10"),)  # only what is left, the rest stays open
    done = round_posted(third)
    assert (done.status, done.posted, done.unposted) == ("applied", Decimal(100), Decimal(0))
    assert next_round(done, [_balance("3", "40")], "") is None


def test_a_round_beyond_the_last_batch_number_is_refused_and_a_foreign_currency_is_invalid() -> None:
    last = replace(_waiting("100.00"), status="partly_applied", round_number=9, posted=Decimal(90))

    with pytest.raises(InvalidMessage) as exhausted:
        next_round(last, [_balance("4", "50")], "1")
    assert exhausted.value.reason == "payment_rounds_exhausted"
    assert next_round(last, [_balance("4", "0")], "1") is None  # nothing to post: nothing refused
    usd = InvoiceBalance("4", "2024", "PS000318", "USD", Decimal(50), Decimal(50))
    with pytest.raises(InvalidMessage) as foreign:
        next_round(_waiting("10"), [usd], "1")
    assert foreign.value.reason == "currency_mismatch"


def test_the_order_is_paid_when_no_invoice_has_anything_open() -> None:
    assert payment_status([_balance("1", "0"), _balance("2", "0")]) == "PAID"
    assert payment_status([_balance("1", "0"), _balance("2", "0.01")]) == "PARTIALLY_PAID"


def test_progress_records_survive_the_topic_and_the_index_tracks_what_is_unsettled() -> None:
    progress = to_payment_progress(example("Payment", "card-capture"))
    assert isinstance(progress, PaymentProgress)
    applying = replace(
        progress, status="applying", allocations=(PaymentAllocation("700123", "2024", Decimal("65.88")),)
    )
    index = LinksAndPayments()

    index.apply(applying.key, applying.to_json())
    index.apply(
        b"order:1:1042", b'{"order_key":"1:1042","cono":"100","reference":"R","erp_order_number":"1"}'
    )

    assert PaymentProgress.from_json(applying.to_json()) == applying
    partly = replace(applying, status="partly_applied", round_number=3, posted=Decimal("40.10"))
    assert PaymentProgress.from_json(partly.to_json()) == partly
    assert index.unsettled("1:1042") == [applying]
    assert index.order_link("1:1042") == OrderLink("1:1042", "100", "R", "1")
    index.apply(applying.key, partly.to_json())
    assert index.unsettled("1:1042") == [partly]  # a remainder stays parked
    index.apply(applying.key, replace(applying, status="applied").to_json())
    assert index.unsettled("1:1042") == []
    index.apply(applying.key, None)
    assert index.payment("1:1042", "877") is None


def test_a_record_written_before_rounds_existed_reads_as_round_0_with_nothing_posted() -> None:
    legacy = (
        b'{"allocations":[{"amount":"65.88","invoice_id":"700123","year":"2024"}],"amount":"65.88",'
        b'"batch_id":10000000877,"correlation_id":"c","currency":"EUR","erp_order_number":"1",'
        b'"event_id":"e","order_key":"1:1042","paid_on":"2024-05-02","payment_id":"877",'
        b'"reference":"","shop_id":"1","status":"applying"}'
    )

    progress = PaymentProgress.from_json(legacy)

    assert progress is not None
    assert (progress.round_number, progress.posted, progress.unposted) == (0, Decimal(0), Decimal("65.88"))
    assert round_posted(progress).status == "applied"


def test_the_emitted_status_is_a_valid_order_status_change_stating_only_payment() -> None:
    progress = to_payment_progress(example("Payment", "card-capture"))
    assert isinstance(progress, PaymentProgress)
    progress = replace(progress, erp_order_number="1000012345")

    datum = payment_status_change(progress, "PAID", [_balance("700123", "0")], changed_at=NOW)
    again = payment_status_change(
        progress, "PAID", [_balance("700123", "0")], changed_at=NOW + dt.timedelta(1)
    )
    record = decode(encode(datum, STATUS_TOPIC))

    assert record["payment_status"] == "PAID"
    assert (record["fulfillment_status"], record["lifecycle"]) == ("UNKNOWN", "UNKNOWN")
    assert record["erp_order_number"] == "1000012345"
    assert record["meta"]["causation_id"] == progress.event_id
    assert record["meta"]["correlation_id"] == "0b8e4c1e-3f7a-4c55-9d7e-5b1f0e2a6c01"
    assert record["external_ids"] == {"prestashop": "1042", "infor": "1000012345"}
    assert datum["meta"]["event_id"] == again["meta"]["event_id"]  # the same fact, the same event


# -- against the sandbox ---------------------------------------------------------------------------


class Scene:
    """One process's sinks: orders (to create the order), payments and invoice-payments."""

    def __init__(self, process: InforProcess, *, echo_wait_s: float = 0.3) -> None:
        self.process = process
        self.state = LinksAndPayments()
        process.links = self.state
        self.reconciler = PaymentReconciler(
            process.adapter,
            self.state,
            process.producer,
            encode,
            links_topic=LINKS_TOPIC,
            status_topic=STATUS_TOPIC,
            echo_wait_s=echo_wait_s,
            clock=lambda: NOW,
        )
        self.payments = InforPaymentsSink(self.reconciler)
        self.invoices = InforInvoicePaymentsSink(self.reconciler, self.state)

    async def order(self) -> str:
        sink = self.process.orders_sink()
        model = sink.decode(sandbox_order(), context())
        assert isinstance(model, OrderWrite)
        applied = await sink.apply(model, context())
        assert applied.facts is not None
        return applied.facts["erp_order_number"]

    async def pay(self, datum: AvroDatum) -> Applied:
        model = self.payments.decode(datum, context(topic="canonical.payment.v1"))
        assert isinstance(model, PaymentProgress)
        return await self.payments.apply(model, context(topic="canonical.payment.v1"))

    async def invoice_arrives(self, invoice_number: str) -> Applied:
        model = self.invoices.decode(invoice_datum(invoice_number), context(topic="canonical.invoice.v1"))
        assert isinstance(model, InvoiceArrived)
        return await self.invoices.apply(model, context(topic="canonical.invoice.v1"))

    def statuses(self) -> list[Any]:
        return [decode(r.value or b"") for r in self.process.producer.records if r.topic == STATUS_TOPIC]

    def progress(self) -> list[str]:
        return [value["status"] for key, value in self.process.producer.links() if key.startswith("payment:")]


def invoice_everything(admin: httpx.Client, orno: str) -> dict[str, str]:
    """Step the paused warehouse until M3 invoiced the order (allocate, pick, deliver, invoice)."""
    admin.post("/warehouse/step", json={"times": 4}).raise_for_status()
    invoices = [i for i in admin.get("/invoices").json() if i["ORNO"] == orno]
    assert len(invoices) == 1
    found: dict[str, str] = invoices[0]
    return found


def open_amount(admin: httpx.Client, ivno: str) -> str:
    return str(next(i["RAFC"] for i in admin.get("/invoices").json() if i["IVNO"] == ivno))


def test_a_payment_for_an_invoiced_order_is_applied_once_and_the_order_reported_paid(
    admin: httpx.Client, credentials: IonApiCredentials
) -> None:
    async def scenario() -> tuple[Scene, str, dict[str, str], Applied, Applied]:
        async with infor_process(credentials) as process:
            scene = Scene(process)
            orno = await scene.order()
            invoice = invoice_everything(admin, orno)
            first = await scene.pay(card_payment())
            again = await scene.pay(card_payment())  # redelivery
            return scene, orno, invoice, first, again

    scene, orno, invoice, first, again = run(scenario())

    assert invoice["AMT1"] == "65.88"  # 49.90 of lines + 5.00 shipping, 20 % VAT
    assert first == Applied("written", {"payment_batch": "10000000877", "payment_status": "PAID"})
    assert again == Applied("unchanged", {"payment_batch": "10000000877"})
    assert open_amount(admin, invoice["IVNO"]) == "0.00"
    batches = admin.get("/payment-batches").json()
    assert len(batches) == 1
    assert batches[0]["STAT"] == "90"
    line = batches[0]["lines"][0]
    assert (line["CINO"], line["INYR"], line["CUNO"], line["PYAM"], line["CKNO"], line["LPDT"]) == (
        invoice["IVNO"],
        invoice["YEA4"],
        "PS000318",
        "65.88",
        "pi_3PBx2kLkdIwHu7ix0sQ1",
        "20240502",
    )
    [status] = scene.statuses()
    assert (status["order_key"], status["payment_status"], status["erp_order_number"]) == (
        "1:1042",
        "PAID",
        orno,
    )
    assert scene.progress() == ["applying", "applied"]


def test_a_payment_before_its_invoice_waits_durably_and_the_invoice_applies_it(
    admin: httpx.Client, credentials: IonApiCredentials
) -> None:
    async def scenario() -> tuple[Scene, Applied, Applied, Applied, dict[str, str]]:
        async with infor_process(credentials) as process:
            scene = Scene(process)
            orno = await scene.order()
            waiting = await scene.pay(card_payment("30.00"))
            invoice = invoice_everything(admin, orno)
            # A restarted process: everything it knows comes from the records written so far.
            restarted = Scene(process)
            process.producer.replay_into(restarted.state)
            applied = await restarted.invoice_arrives(invoice["IVNO"])
            redelivered = await restarted.invoice_arrives(invoice["IVNO"])
            return scene, waiting, applied, redelivered, invoice

    scene, waiting, applied, redelivered, invoice = run(scenario())

    assert waiting == Applied("waiting", {"why": "no_open_invoice"})
    assert applied == Applied(
        "written", {"payments": "1", "payment_batch": "10000000877", "payment_status": "PARTIALLY_PAID"}
    )
    assert redelivered == Applied("no_payment_waiting")
    assert open_amount(admin, invoice["IVNO"]) == "35.88"
    assert scene.progress() == ["waiting", "applying", "applied"]
    assert [s["payment_status"] for s in scene.statuses()] == ["PARTIALLY_PAID"]


def test_a_retry_after_the_batch_was_posted_but_not_recorded_posts_nothing_twice(
    admin: httpx.Client, credentials: IonApiCredentials
) -> None:
    async def scenario() -> tuple[Applied, dict[str, str]]:
        async with infor_process(credentials) as process:
            scene = Scene(process)
            invoice = invoice_everything(admin, await scene.order())
            await scene.pay(card_payment())
            # The process died after ControlBatch, before writing "applied": it reads "applying" back.
            assert scene.state.unsettled("1:1042") == []
            known = scene.state.payment("1:1042", "877")
            assert known is not None
            scene.state.remember(replace(known, status="applying"))
            return await scene.pay(card_payment()), invoice

    retried, invoice = run(scenario())

    assert retried == Applied("unchanged", {"payment_batch": "10000000877", "payment_status": "PAID"})
    assert open_amount(admin, invoice["IVNO"]) == "0.00"  # not -65.88
    assert len(admin.get("/payment-batches").json()[0]["lines"]) == 1


def test_the_payment_and_the_invoice_sink_racing_on_one_payment_apply_it_once(
    admin: httpx.Client, credentials: IonApiCredentials
) -> None:
    async def scenario() -> tuple[list[Applied], dict[str, str]]:
        async with infor_process(credentials) as process:
            scene = Scene(process)
            orno = await scene.order()
            await scene.pay(card_payment())  # parked: no invoice yet
            invoice = invoice_everything(admin, orno)
            results = await asyncio.gather(scene.pay(card_payment()), scene.invoice_arrives(invoice["IVNO"]))
            return list(results), invoice

    results, invoice = run(scenario())

    assert {result.outcome for result in results} <= {"written", "unchanged"}
    assert open_amount(admin, invoice["IVNO"]) == "0.00"
    [batch] = admin.get("/payment-batches").json()
    assert (batch["STAT"], len(batch["lines"])) == ("90", 1)


def test_a_payment_in_another_currency_than_the_invoice_is_invalid(
    admin: httpx.Client, credentials: IonApiCredentials
) -> None:
    async def scenario() -> InvalidMessage:
        async with infor_process(credentials) as process:
            scene = Scene(process)
            invoice_everything(admin, await scene.order())
            with pytest.raises(InvalidMessage) as caught:
                await scene.pay(card_payment(amount="65.88") | {"amount": money("65.88", "USD")})
            return caught.value

    error = run(scenario())

    assert (error.reason, error.field_path) == ("currency_mismatch", "amount.currency")
    assert admin.get("/payment-batches").json() == []


def test_an_invoice_without_parked_payments_and_a_credit_note_do_nothing(
    admin: httpx.Client, credentials: IonApiCredentials
) -> None:
    async def scenario() -> tuple[Applied, Any]:
        async with infor_process(credentials) as process:
            scene = Scene(process)
            credit = invoice_datum()
            credit["status"] = "CREDITED"
            return await scene.invoice_arrives("700123"), scene.invoices.decode(credit, context())

    nothing, credit = run(scenario())

    assert nothing == Applied("no_payment_waiting")
    assert credit == Skip("credit_note")


# -- the shop's answer to a paid state the pipeline posted (sinks/prestashop_target.py) -----------------


def mark(*, before: tuple[str, ...] = (), after: tuple[str, ...] | None = None) -> PaidStateMark:
    """The tracking sink's paid-state mark of order 1:1042 (payment 877 is the example's)."""
    opened = PaidStateMark.opened("1:1042", "prestashop-tracking", 4, before)
    return opened if after is None else opened.closed(after)


def test_a_payment_the_shop_made_for_the_pipelines_paid_state_is_never_applied(
    admin: httpx.Client, credentials: IonApiCredentials
) -> None:
    async def scenario() -> tuple[Scene, dict[str, str], Applied, Applied]:
        async with infor_process(credentials) as process:
            scene = Scene(process)
            invoice = invoice_everything(admin, await scene.order())
            closed = mark(after=("877",))
            scene.state.apply(closed.key, closed.to_json())
            return (
                scene,
                invoice,
                await scene.pay(card_payment()),
                await scene.invoice_arrives(invoice["IVNO"]),
            )

    scene, invoice, paid, invoiced = run(scenario())

    assert paid == Applied("echo", {"payment_id": "877"})
    assert invoiced == Applied("no_payment_waiting")
    assert open_amount(admin, invoice["IVNO"]) == "65.88"
    assert admin.get("/payment-batches").json() == []
    assert scene.progress() == []
    assert scene.statuses() == []


def test_a_payment_of_an_order_whose_paid_state_write_is_open_is_parked_and_never_applied_as_echo(
    admin: httpx.Client, credentials: IonApiCredentials
) -> None:
    async def scenario() -> tuple[Scene, dict[str, str], list[Applied]]:
        async with infor_process(credentials) as process:
            scene = Scene(process)
            invoice = invoice_everything(admin, await scene.order())
            # The tracking sink recorded its open mark, posted Shipped and died before closing it.
            opened = mark(before=())
            scene.state.apply(opened.key, opened.to_json())
            outcomes = [await scene.pay(card_payment()), await scene.invoice_arrives(invoice["IVNO"])]
            # Its redelivered shipment closed the mark: the payment was the shop's answer to Shipped.
            closed = mark(before=(), after=("877",))
            scene.state.apply(closed.key, closed.to_json())
            outcomes += [
                await scene.invoice_arrives(invoice["IVNO"]),
                await scene.invoice_arrives(invoice["IVNO"]),
            ]
            outcomes.append(await scene.pay(card_payment()))  # the payment redelivered
            return scene, invoice, outcomes

    scene, invoice, outcomes = run(scenario())

    assert outcomes == [
        Applied("waiting", {"why": "paid_state_open"}),
        Applied("waiting", {"why": "paid_state_open"}),
        Applied("echo", {"payments": "1"}),
        Applied("no_payment_waiting"),
        Applied("echo", {"payment_id": "877"}),
    ]
    assert scene.progress() == ["waiting", "echo"]
    assert admin.get("/payment-batches").json() == []
    assert open_amount(admin, invoice["IVNO"]) == "65.88"


def test_a_genuine_payment_parked_behind_an_open_mark_is_applied_with_the_next_invoice(
    admin: httpx.Client, credentials: IonApiCredentials
) -> None:
    async def scenario() -> tuple[Applied, Applied, dict[str, str]]:
        async with infor_process(credentials) as process:
            scene = Scene(process)
            orno = await scene.order()
            opened = mark(before=("500",))
            scene.state.apply(opened.key, opened.to_json())
            parked = await scene.pay(card_payment())
            # The write closed without creating 877 (the order was paid): 877 is the customer's money.
            closed = mark(before=("500",), after=("500",))
            scene.state.apply(closed.key, closed.to_json())
            invoice = invoice_everything(admin, orno)
            return parked, await scene.invoice_arrives(invoice["IVNO"]), invoice

    parked, applied, invoice = run(scenario())

    assert parked == Applied("waiting", {"why": "paid_state_open"})
    assert applied.outcome == "written"
    assert open_amount(admin, invoice["IVNO"]) == "0.00"


def test_a_payment_that_was_there_before_an_open_paid_state_write_is_applied_without_waiting(
    admin: httpx.Client, credentials: IonApiCredentials
) -> None:
    async def scenario() -> tuple[Applied, dict[str, str]]:
        async with infor_process(credentials) as process:
            scene = Scene(process, echo_wait_s=30.0)  # a wait would time the test out
            invoice = invoice_everything(admin, await scene.order())
            opened = mark(before=("877",))
            scene.state.apply(opened.key, opened.to_json())
            return await scene.pay(card_payment()), invoice

    applied, invoice = run(scenario())

    assert applied == Applied("written", {"payment_batch": "10000000877", "payment_status": "PAID"})
    assert open_amount(admin, invoice["IVNO"]) == "0.00"


# -- a payment larger than what the order's invoices have open: rounds ---------------------------------


def first_delivery(admin: httpx.Client, orno: str) -> dict[str, str]:
    """Deliver and invoice only the first line: the second line's item has no stock (a backorder)."""
    admin.put("/balances/001/SKU-2002", json={"stqt": 0}).raise_for_status()
    return invoice_everything(admin, orno)


def second_delivery(admin: httpx.Client, orno: str) -> dict[str, str]:
    """Stock arrives for the backordered line: it is delivered and invoiced on its own invoice."""
    admin.put("/balances/001/SKU-2002", json={"stqt": 100}).raise_for_status()
    admin.post("/warehouse/step", json={"times": 4}).raise_for_status()
    invoices = [i for i in admin.get("/invoices").json() if i["ORNO"] == orno]
    assert len(invoices) == 2
    second: dict[str, str] = invoices[1]
    return second


def gross(*invoices: dict[str, str]) -> Decimal:
    return sum((Decimal(i["AMT1"]) for i in invoices), Decimal(0))


def test_a_payment_of_the_whole_order_applied_to_its_first_invoice_pays_the_second_in_a_new_batch(
    admin: httpx.Client, credentials: IonApiCredentials
) -> None:
    async def scenario() -> tuple[Scene, list[Applied], list[dict[str, str]]]:
        async with infor_process(credentials) as process:
            scene = Scene(process)
            orno = await scene.order()
            first = first_delivery(admin, orno)
            paid = await scene.pay(card_payment("65.88"))
            second = second_delivery(admin, orno)
            # The invoice sink of a restarted process: all it knows comes from the records written.
            restarted = Scene(process)
            process.producer.replay_into(restarted.state)
            outcomes = [
                paid,
                await restarted.invoice_arrives(second["IVNO"]),
                await restarted.invoice_arrives(second["IVNO"]),  # redelivered
                await restarted.pay(card_payment("65.88")),  # the payment redelivered
            ]
            return scene, outcomes, [first, second]

    scene, outcomes, (first, second) = run(scenario())

    assert gross(first, second) == Decimal("65.88")  # one line with the shipping charge, one without
    left = str(Decimal("65.88") - Decimal(first["AMT1"]))
    assert outcomes == [
        Applied("written", {"payment_batch": "10000000877", "payment_status": "PAID", "left": left}),
        Applied("written", {"payments": "1", "payment_batch": "11000000877", "payment_status": "PAID"}),
        Applied("no_payment_waiting"),
        Applied("unchanged", {"payment_batch": "11000000877"}),
    ]
    assert (open_amount(admin, first["IVNO"]), open_amount(admin, second["IVNO"])) == ("0.00", "0.00")
    batches = admin.get("/payment-batches").json()
    assert [(b["PBID"], b["STAT"]) for b in batches] == [("10000000877", "90"), ("11000000877", "90")]
    assert [[(line["CINO"], line["PYAM"]) for line in b["lines"]] for b in batches] == [
        [(first["IVNO"], first["AMT1"])],
        [(second["IVNO"], left)],
    ]
    assert scene.progress() == ["applying", "partly_applied", "applying", "applied"]
    rounds = [v for k, v in scene.process.producer.links() if k.startswith("payment:")]
    assert [(r["round_number"], r["posted"]) for r in rounds] == [
        (0, "0"),
        (0, first["AMT1"]),
        (1, first["AMT1"]),
        (1, "65.88"),
    ]
    assert [s["payment_status"] for s in scene.statuses()] == ["PAID", "PAID"]


class CrashingM3:
    """The M3 adapter of a process that dies (a bug, SIGKILL) in one payment batch: before posting it, or
    right after M3 posted it and before anything else happened."""

    def __init__(self, m3: Receivables, *, batch_id: int, after_post: bool) -> None:
        self._m3 = m3
        self._batch_id = batch_id
        self._after_post = after_post

    async def invoice_balances(self, ref: ErpOrderRef) -> list[InvoiceBalance]:
        return await self._m3.invoice_balances(ref)

    async def apply_customer_payment(self, payment: CustomerPayment, *, batch_type: str) -> bool:
        if payment.batch_id != self._batch_id:
            return await self._m3.apply_customer_payment(payment, batch_type=batch_type)
        if self._after_post:
            await self._m3.apply_customer_payment(payment, batch_type=batch_type)
        raise ProcessDied(payment.batch_id)


class ProcessDied(Exception):
    """The simulated death of the sink process."""


@pytest.mark.parametrize("after_post", [False, True], ids=["before-posting", "after-posting"])
def test_a_crash_in_the_second_round_is_finished_by_the_restarted_process_with_the_recorded_lines(
    admin: httpx.Client, credentials: IonApiCredentials, after_post: bool
) -> None:
    async def scenario() -> tuple[Scene, Applied, list[dict[str, str]], dict[str, Any]]:
        async with infor_process(credentials) as process:
            scene = Scene(process)
            scene.reconciler = PaymentReconciler(
                CrashingM3(process.adapter, batch_id=11000000877, after_post=after_post),
                scene.state,
                process.producer,
                encode,
                links_topic=LINKS_TOPIC,
                status_topic=STATUS_TOPIC,
                clock=lambda: NOW,
            )
            scene.payments = InforPaymentsSink(scene.reconciler)
            scene.invoices = InforInvoicePaymentsSink(scene.reconciler, scene.state)
            orno = await scene.order()
            first = first_delivery(admin, orno)
            await scene.pay(card_payment("65.88"))
            second = second_delivery(admin, orno)
            with pytest.raises(ProcessDied):
                await scene.invoice_arrives(second["IVNO"])
            [*_, recorded] = [v for k, v in process.producer.links() if k.startswith("payment:")]
            restarted = Scene(process)
            process.producer.replay_into(restarted.state)
            return scene, await restarted.invoice_arrives(second["IVNO"]), [first, second], recorded

    scene, retried, (first, second), recorded = run(scenario())

    left = str(Decimal("65.88") - Decimal(first["AMT1"]))
    assert (recorded["status"], recorded["round_number"]) == ("applying", 1)
    assert recorded["batch_id"] == 11000000877
    assert recorded["allocations"] == [{"invoice_id": second["IVNO"], "year": second["YEA4"], "amount": left}]
    # The invoice sink reports "written" for applied payments either way; the batches below tell.
    assert retried == Applied(
        "written", {"payments": "1", "payment_batch": "11000000877", "payment_status": "PAID"}
    )
    assert (open_amount(admin, first["IVNO"]), open_amount(admin, second["IVNO"])) == ("0.00", "0.00")
    batches = admin.get("/payment-batches").json()
    assert [(b["PBID"], b["STAT"], len(b["lines"])) for b in batches] == [
        ("10000000877", "90", 1),
        ("11000000877", "90", 1),
    ]
    assert scene.progress() == ["applying", "partly_applied", "applying", "applied"]


def test_an_overpayment_is_applied_as_far_as_invoices_are_open_and_the_rest_stays_parked(
    admin: httpx.Client, credentials: IonApiCredentials, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> tuple[Scene, list[Applied], dict[str, str]]:
        async with infor_process(credentials) as process:
            scene = Scene(process)
            invoice = invoice_everything(admin, await scene.order())
            outcomes = [
                await scene.pay(card_payment("100.00")),
                await scene.invoice_arrives(invoice["IVNO"]),
                await scene.pay(card_payment("100.00")),
            ]
            return scene, outcomes, invoice

    with caplog.at_level(logging.INFO, logger="sinks.infor_payments"):
        scene, outcomes, invoice = run(scenario())

    assert outcomes == [
        Applied("written", {"payment_batch": "10000000877", "payment_status": "PAID", "left": "34.12"}),
        Applied("waiting", {"why": "no_open_invoice", "left": "34.12"}),
        Applied("unchanged", {"payment_batch": "10000000877", "left": "34.12"}),
    ]
    assert open_amount(admin, invoice["IVNO"]) == "0.00"  # never more than was open
    assert [b["PBID"] for b in admin.get("/payment-batches").json()] == ["10000000877"]
    assert scene.progress() == ["applying", "partly_applied"]
    [parked] = scene.state.unsettled("1:1042")
    assert (parked.status, parked.unposted) == ("partly_applied", Decimal("34.12"))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [(r.getMessage(), getattr(r, "left", None)) for r in warnings] == [
        ("payment exceeds what the order's invoices have open; the rest waits for later invoices", "34.12")
    ]


def payment_of(payment_id: str, amount: str) -> AvroDatum:
    """Another shop payment of order 1:1042."""
    datum = card_payment(amount)
    datum["external_ids"] = {"prestashop": payment_id}
    datum["meta"] |= {"source_id": payment_id, "event_id": f"payment-{payment_id}"}
    return datum


def test_a_parked_remainder_keeps_the_echo_guard_a_shop_echo_is_never_applied_with_it(
    admin: httpx.Client, credentials: IonApiCredentials
) -> None:
    async def scenario() -> tuple[Scene, list[Applied], list[dict[str, str]]]:
        async with infor_process(credentials) as process:
            scene = Scene(process, echo_wait_s=30.0)  # a wait would time the test out
            orno = await scene.order()
            first = first_delivery(admin, orno)
            outcomes = [await scene.pay(card_payment("65.88"))]
            # Shipped posted by the pipeline (mark closed): the shop invented payment 878 for it.
            closed = mark(before=("877",), after=("877", "878"))
            scene.state.apply(closed.key, closed.to_json())
            outcomes.append(await scene.pay(payment_of("878", "20.00")))
            # Another paid-state write of the order is under way: 877 was there before it began.
            opened = PaidStateMark.opened("1:1042", "prestashop-status", 5, ("877", "878"))
            scene.state.apply(opened.key, opened.to_json())
            second = second_delivery(admin, orno)
            outcomes.append(await scene.invoice_arrives(second["IVNO"]))
            return scene, outcomes, [first, second]

    scene, outcomes, (first, second) = run(scenario())

    assert [o.outcome for o in outcomes] == ["written", "echo", "written"]
    assert outcomes[2].facts == {"payments": "1", "payment_batch": "11000000877", "payment_status": "PAID"}
    assert (open_amount(admin, first["IVNO"]), open_amount(admin, second["IVNO"])) == ("0.00", "0.00")
    batches = admin.get("/payment-batches").json()
    assert [b["PBID"] for b in batches] == ["10000000877", "11000000877"]  # nothing of 878
    assert scene.progress() == ["applying", "partly_applied", "applying", "applied"]
