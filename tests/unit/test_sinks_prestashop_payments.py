"""The payment sinks: settlement decisions (pure) and the payment state written against the sandbox."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from pipeline.errors import InvalidMessage, RetryableError
from rules.canonical_status import PaymentStatus
from sandbox.prestashop.server import SandboxServer
from sinks.base import Skip
from sinks.prestashop_payments import (
    InvoicePaymentSink,
    PaymentRecordSink,
    Settlement,
    invoice_settlement,
    payment_settlement,
    settled_status,
)
from sinks.prestashop_target import OrderStateWriter, ShopCurrencies
from tests.unit.test_sinks_prestashop_support import (
    SHOP_ID,
    VERSIONS,
    Admin,
    admin,
    context,
    datum,
    rules,
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
    paid = invoice_settlement(datum("Invoice", "open-eur", order_key="1:5"), shop_id=1)
    assert paid == Settlement("1:5", 5, Decimal("65.88"), "EUR", PaymentStatus.PAID, "invoice 2024-90001817")
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


def _invoice_sink(client: Any) -> InvoicePaymentSink:
    return InvoicePaymentSink(
        client, OrderStateWriter(client, rules()), ShopCurrencies(client), shop_id=SHOP_ID, tolerance=CENT
    )


async def test_a_paid_invoice_moves_an_unpaid_order_to_payment_accepted_once(shop: SandboxServer) -> None:
    async with admin(shop) as a, sink_client(shop) as client:
        id_order, total = await _unpaid_order(a)
        before = len(await a.histories_of(id_order))
        sink = _invoice_sink(client)
        model = sink.decode(_invoice(id_order, total, "0"), context())
        assert isinstance(model, Settlement)

        first = await sink.apply(model, context())
        again = await sink.apply(model, context(attempt=2))

        payment = await a.state_id("PS_OS_PAYMENT")
        assert first.outcome == "written"
        assert again.outcome == "unchanged"
        assert int((await a.row("orders", id_order))["current_state"]) == payment
        assert len(await a.histories_of(id_order)) == before + 1


async def test_an_invoice_covering_part_of_the_order_writes_no_paid_state(shop: SandboxServer) -> None:
    async with admin(shop) as a, sink_client(shop) as client:
        id_order, total = await _unpaid_order(a)
        before = await a.histories_of(id_order)
        sink = _invoice_sink(client)
        # The invoice itself is settled, but it bills only part of the order.
        part = str((Decimal(total) / 2).quantize(CENT))
        model = sink.decode(_invoice(id_order, part, "0"), context())
        assert isinstance(model, Settlement)

        applied = await sink.apply(model, context())

        assert applied.outcome == "unchanged"
        assert applied.facts is not None
        assert (applied.facts["payment"], applied.facts["why"]) == ("PARTIALLY_PAID", "no_state")
        assert await a.histories_of(id_order) == before


async def test_a_503_reading_the_order_is_retryable(shop: SandboxServer) -> None:
    async with admin(shop) as a, sink_client(shop) as client:
        id_order, total = await _unpaid_order(a)
        sink = _invoice_sink(client)
        model = sink.decode(_invoice(id_order, total, "0"), context())
        assert isinstance(model, Settlement)
        await a.fail_next("orders", status=503)

        with pytest.raises(RetryableError):
            await sink.apply(model, context())
        assert (await sink.apply(model, context(attempt=2))).outcome == "written"


async def test_an_erp_payment_in_another_currency_than_the_order_is_invalid(shop: SandboxServer) -> None:
    async with admin(shop) as a, sink_client(shop) as client:
        id_order, total = await _unpaid_order(a)
        sink = PaymentRecordSink(
            client, OrderStateWriter(client, rules()), ShopCurrencies(client), shop_id=SHOP_ID, tolerance=CENT
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
        assert (await sink.apply(eur, context())).outcome == "written"
