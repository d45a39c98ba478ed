"""The payment sinks: settlement decisions (pure), and against the sandbox the payment status they emit
for prestashop-status (real Avro bodies, a recording producer: no Kafka here) while posting no state."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from fastavro import schemaless_reader, schemaless_writer

from pipeline.errors import InvalidMessage, RetryableError
from rules.canonical_status import PaymentStatus
from sandbox.prestashop.server import SandboxServer
from schemas.codec import AvroDatum
from schemas.loader import parsed_schema
from sinks.base import Skip
from sinks.order_status_emitter import STATUS_EVENT_NAMESPACE, StatusEmitter
from sinks.prestashop_payments import (
    INVOICES_NAME,
    PAYMENTS_NAME,
    InvoicePaymentSink,
    PaymentRecordSink,
    Settlement,
    SettlementSource,
    invoice_settlement,
    payment_settlement,
    settled_status,
)
from sinks.prestashop_target import ShopCurrencies
from tests.unit.test_sinks_infor_support import RecordingProducer
from tests.unit.test_sinks_prestashop_support import (
    SHOP_ID,
    VERSIONS,
    Admin,
    admin,
    context,
    datum,
    running_shop,
    sink_client,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

CENT = Decimal("0.01")
INFOR = {"source_system": "INFOR"}


# --- pure ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("paid", "total", "expected"),
    [
        ("65.88", "65.88", PaymentStatus.PAID),
        ("65.87", "65.88", PaymentStatus.PAID),  # within the rules' tolerance
        ("65.86", "65.88", PaymentStatus.PARTIALLY_PAID),
        ("70.00", "65.88", PaymentStatus.PAID),
        ("0", "65.88", None),
    ],
)
def test_settled_status(paid: str, total: str, expected: PaymentStatus | None) -> None:
    assert settled_status(Decimal(paid), Decimal(total), CENT) == expected


def test_an_invoice_reports_what_was_settled_on_it() -> None:
    invoice = datum("Invoice", "open-eur", order_key="1:5")
    paid = invoice_settlement(invoice, shop_id=1)
    meta = invoice["meta"]
    assert paid == Settlement(
        "1:5",
        5,
        Decimal("65.88"),
        "EUR",
        PaymentStatus.PAID,
        "invoice 2024-90001817",
        SettlementSource(
            identity="invoice:2024-90001817",
            system="INFOR",
            code="PAID",
            event_id=str(meta["event_id"]),
            correlation_id=meta["correlation_id"],
            occurred_at=meta["occurred_at"],
            ingested_at=meta["ingested_at"],
            erp_order_number="1000004711",
        ),
    )
    partial = invoice_settlement(datum("Invoice", "partially-paid-usd", order_key="1:5"), shop_id=1)
    assert isinstance(partial, Settlement)
    assert (partial.paid, partial.stated) == (Decimal("200.000000"), PaymentStatus.PARTIALLY_PAID)


@pytest.mark.parametrize(
    ("changes", "skip"),
    [
        ({"status": "CREDITED"}, "no_payment"),
        ({"status": "OPEN", "amount_open": {"amount": "65.88", "currency": "EUR"}}, "no_payment"),
        ({"order_key": "2:5"}, "not_ours"),
    ],
)
def test_an_invoice_without_a_payment_is_skipped(changes: dict[str, Any], skip: str) -> None:
    assert invoice_settlement(
        datum("Invoice", "open-eur", **{"order_key": "1:5", **changes}), shop_id=1
    ) == Skip(skip)


def test_a_payment_the_shop_recorded_is_an_echo() -> None:
    shop_payment = datum("Payment", "card-capture", order_key="1:5")
    assert payment_settlement(shop_payment, shop_id=1) == Skip("echo")
    erp = datum(
        "Payment", "card-capture", order_key="1:5", recorded_by="INFOR", meta={"source_system": "INFOR"}
    )
    settlement = payment_settlement(erp, shop_id=1)
    assert isinstance(settlement, Settlement)
    assert (settlement.paid, settlement.currency, settlement.stated) == (Decimal("65.880000"), "EUR", None)
    refund = datum(
        "Payment",
        "card-capture",
        order_key="1:5",
        recorded_by="INFOR",
        meta=INFOR,
        amount={"amount": "-5", "currency": "EUR"},
    )
    assert payment_settlement(refund, shop_id=1) == Skip("no_payment")


# --- against the sandbox ---------------------------------------------------------------------------

STATUS_TOPIC = "canonical.order-status.v1.test"
STATUS_SCHEMA = parsed_schema("OrderStatusChange")


def encode(value: AvroDatum, topic: str) -> bytes:
    """The Avro body of ``value`` (fails as the codec would when it does not fit the schema)."""
    out = io.BytesIO()
    schemaless_writer(out, STATUS_SCHEMA, value, strict_allow_default=True)
    return out.getvalue()


def emitted(producer: RecordingProducer) -> list[tuple[str, dict[str, Any], dict[str, str]]]:
    """The statuses emitted: key, decoded value and headers (as text)."""
    found = []
    for record in producer.records:
        assert record.topic == STATUS_TOPIC
        value = schemaless_reader(io.BytesIO(record.value or b""), STATUS_SCHEMA, None)
        assert isinstance(value, dict)
        headers = {name: raw.decode() for name, raw in record.headers}
        found.append(((record.key or b"").decode(), value, headers))
    return found


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=VERSIONS)
def shop(request: pytest.FixtureRequest) -> Iterator[SandboxServer]:
    with running_shop(request.param) as server:
        yield server


async def _unpaid_order(a: Admin) -> tuple[int, str]:
    """A bank-wire order awaiting payment, in EUR: its id and total (tax incl.)."""
    order = await a.place_order(state="PS_OS_BANKWIRE")
    return order["id"], str(order["total_paid_tax_incl"])


def _invoice(id_order: int, gross: str, open_: str) -> dict[str, Any]:
    return datum(
        "Invoice",
        "open-eur",
        order_key=f"{SHOP_ID}:{id_order}",
        gross={"amount": gross, "currency": "EUR"},
        amount_open={"amount": open_, "currency": "EUR"},
        status="PAID" if Decimal(open_) == 0 else "PARTIALLY_PAID",
    )


def _invoice_sink(client: Any, producer: RecordingProducer) -> InvoicePaymentSink:
    return InvoicePaymentSink(
        client,
        StatusEmitter(producer, encode, STATUS_TOPIC),
        ShopCurrencies(client),
        shop_id=SHOP_ID,
        tolerance=CENT,
    )


async def test_a_paid_invoice_emits_paid_for_the_order_the_same_event_on_a_retry_and_posts_no_state(
    shop: SandboxServer,
) -> None:
    producer = RecordingProducer()
    async with admin(shop) as a, sink_client(shop) as client:
        id_order, total = await _unpaid_order(a)
        before = await a.histories_of(id_order)
        sink = _invoice_sink(client, producer)
        invoice = _invoice(id_order, total, "0")
        model = sink.decode(invoice, context())
        assert isinstance(model, Settlement)

        first = await sink.apply(model, context())
        again = await sink.apply(model, context(attempt=2))

        assert await a.histories_of(id_order) == before  # prestashop-status posts it, not this sink
        assert int((await a.row("orders", id_order))["current_state"]) == await a.state_id("PS_OS_BANKWIRE")

    event_id = str(
        uuid.uuid5(
            STATUS_EVENT_NAMESPACE,
            f"PIPELINE|{INVOICES_NAME}|{SHOP_ID}:{id_order}|invoice:2024-90001817|PAID",
        )
    )
    assert first.outcome == again.outcome == "emitted"
    assert first.facts is not None
    assert (first.facts["payment"], first.facts["event_id"]) == ("PAID", event_id)
    [(key, value, headers), (key_again, value_again, _)] = emitted(producer)
    assert (key, key_again) == (f"{SHOP_ID}:{id_order}", f"{SHOP_ID}:{id_order}")
    assert value == value_again  # a retry re-emits the same event, byte for byte
    assert (value["payment_status"], value["fulfillment_status"], value["lifecycle"]) == (
        "PAID",
        "UNKNOWN",
        "UNKNOWN",
    )
    meta = value["meta"]
    assert (str(meta["event_id"]), meta["source_system"], meta["source_entity"]) == (
        event_id,
        "PIPELINE",
        INVOICES_NAME,
    )
    assert (meta["causation_id"], meta["correlation_id"]) == (
        str(invoice["meta"]["event_id"]),
        invoice["meta"]["correlation_id"],
    )
    assert meta["shop_id"] == str(SHOP_ID)
    assert value["erp_order_number"] == "1000004711"
    assert value["source_status"]["system"] == "INFOR"
    assert headers == {
        "event_id": event_id,
        "correlation_id": invoice["meta"]["correlation_id"],
        "causation_id": str(invoice["meta"]["event_id"]),
    }


async def test_an_invoice_covering_part_of_the_order_emits_partially_paid(shop: SandboxServer) -> None:
    producer = RecordingProducer()
    async with admin(shop) as a, sink_client(shop) as client:
        id_order, total = await _unpaid_order(a)
        before = await a.histories_of(id_order)
        sink = _invoice_sink(client, producer)
        # The invoice itself is settled, but it bills only part of the order.
        part = str((Decimal(total) / 2).quantize(CENT))
        model = sink.decode(_invoice(id_order, part, "0"), context())
        assert isinstance(model, Settlement)

        applied = await sink.apply(model, context())

        assert await a.histories_of(id_order) == before

    assert applied.outcome == "emitted"
    assert applied.facts is not None
    assert applied.facts["payment"] == "PARTIALLY_PAID"
    [(_, value, _)] = emitted(producer)
    assert value["payment_status"] == "PARTIALLY_PAID"


async def test_a_503_reading_the_order_is_retryable_and_nothing_is_emitted_before_it_succeeds(
    shop: SandboxServer,
) -> None:
    producer = RecordingProducer()
    async with admin(shop) as a, sink_client(shop) as client:
        id_order, total = await _unpaid_order(a)
        sink = _invoice_sink(client, producer)
        model = sink.decode(_invoice(id_order, total, "0"), context())
        assert isinstance(model, Settlement)
        await a.fail_next("orders", status=503)

        with pytest.raises(RetryableError):
            await sink.apply(model, context())
        assert producer.records == []
        assert (await sink.apply(model, context(attempt=2))).outcome == "emitted"
    assert len(producer.records) == 1


async def test_an_erp_payment_in_another_currency_than_the_order_is_invalid(shop: SandboxServer) -> None:
    producer = RecordingProducer()
    async with admin(shop) as a, sink_client(shop) as client:
        id_order, total = await _unpaid_order(a)
        sink = PaymentRecordSink(
            client,
            StatusEmitter(producer, encode, STATUS_TOPIC),
            ShopCurrencies(client),
            shop_id=SHOP_ID,
            tolerance=CENT,
        )
        usd = sink.decode(
            datum(
                "Payment",
                "card-capture",
                order_key=f"{SHOP_ID}:{id_order}",
                amount={"amount": total, "currency": "USD"},
                recorded_by="INFOR",
                meta=INFOR,
            ),
            context(),
        )
        eur = sink.decode(
            datum(
                "Payment",
                "card-capture",
                order_key=f"{SHOP_ID}:{id_order}",
                amount={"amount": total, "currency": "EUR"},
                recorded_by="INFOR",
                meta=INFOR,
            ),
            context(),
        )
        assert isinstance(usd, Settlement)
        assert isinstance(eur, Settlement)

        with pytest.raises(InvalidMessage) as caught:
            await sink.apply(usd, context())
        assert caught.value.reason == "currency_mismatch"
        assert producer.records == []
        assert (await sink.apply(eur, context())).outcome == "emitted"

    [(key, value, _)] = emitted(producer)
    assert key == f"{SHOP_ID}:{id_order}"
    assert (value["payment_status"], value["meta"]["source_entity"]) == ("PAID", PAYMENTS_NAME)
    assert str(value["meta"]["event_id"]) == str(
        uuid.uuid5(
            STATUS_EVENT_NAMESPACE, f"PIPELINE|{PAYMENTS_NAME}|{SHOP_ID}:{id_order}|payment:INFOR:877|PAID"
        )
    )
