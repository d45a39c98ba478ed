"""ERP invoices and payments → the shop order's payment state (the state the rules map PAID to).

Two sinks, because a sink reads one record type (``sinks.base.Sink.record``):

- ``prestashop-payment`` (:func:`build`) reads ``canonical.invoice.v1``. What the invoice says about
  the order's payment: the amount settled on it (gross - open) against the shop order's total, in the
  order's currency, makes the order PAID (covered, within the rules' totals tolerance) or
  PARTIALLY_PAID. An invoice in another currency than the order cannot be compared and its own status
  (PAID / PARTIALLY_PAID) is taken as stated. A cancelled or credited invoice, or one with nothing
  settled, says nothing about a payment (``Skip("no_payment")`` / ``unchanged``).
- ``prestashop-payment-records`` (:func:`build_payments`) reads ``canonical.payment.v1``. A payment
  the shop itself recorded is an echo (the shop already knows it): skipped. A payment the ERP or the
  pipeline recorded is compared with the order's total as above; refunds are not payments here.

The payment status then goes through the rules' write-back like any status (PAID → PS_OS_PAYMENT when
the order is still unpaid; the default rules name no state for PARTIALLY_PAID, so that writes
nothing), forward only: an order already paid, shipped or cancelled is left alone (``unchanged``).

Known limit: an order invoiced in several parts is compared invoice by invoice (a sink holds no
state), so it reaches PAID only through an invoice that covers the whole order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal

from connectors.prestashop.client import PrestaShopClient
from pipeline.errors import InvalidMessage
from rules.canonical_status import OrderStatus, PaymentStatus
from schemas.codec import AvroDatum
from sinks.base import Applied, SinkContext, SinkResources, Skip
from sinks.prestashop_target import (
    TARGET,
    OrderStateWriter,
    ShopCurrencies,
    facts,
    is_from_shop,
    open_paid_state_ledger,
    open_shop_client,
    order_id_of,
)

INVOICES_NAME = "prestashop-payment"
"""Stage name of the invoice sink (consumer group ``sink-prestashop-payment`` in the topic catalogue)."""
INVOICES_TOPIC = "canonical.invoice.v1"
PAYMENTS_NAME = "prestashop-payment-records"
"""Stage name of the payment-record sink (its own consumer group: it reads another record type)."""
PAYMENTS_TOPIC = "canonical.payment.v1"

_STATED: dict[str, PaymentStatus] = {
    "PAID": PaymentStatus.PAID,
    "PARTIALLY_PAID": PaymentStatus.PARTIALLY_PAID,
}
_NO_PAYMENT = frozenset({"CANCELLED", "CREDITED"})


@dataclass(frozen=True)
class Settlement:
    """Money received for a shop order, as the ERP reported it; ``stated`` is the ERP's own verdict."""

    order_key: str
    id_order: int
    paid: Decimal
    currency: str
    stated: PaymentStatus | None
    """The invoice's own PAID / PARTIALLY_PAID (None for a payment record, which states none)."""
    source: str
    """``invoice 2024-90001817`` / ``payment pi_...``, for the log line."""


def settled_status(paid: Decimal, total: Decimal, tolerance: Decimal) -> PaymentStatus | None:
    """PAID when ``paid`` covers ``total`` (within ``tolerance``), PARTIALLY_PAID when some was paid,
    None when nothing was (pure)."""
    if paid <= 0:
        return None
    return PaymentStatus.PAID if paid + tolerance >= total else PaymentStatus.PARTIALLY_PAID


def invoice_settlement(datum: AvroDatum, *, shop_id: int) -> Settlement | Skip:
    """The settlement an ``Invoice`` datum reports, or Skip (``echo``, ``not_ours``, ``no_payment``)."""
    if is_from_shop(datum):
        return Skip("echo")
    id_order = order_id_of(str(datum["order_key"]), shop_id)
    if id_order is None:
        return Skip("not_ours")
    status = str(datum["status"])
    gross, open_ = datum["gross"], datum["amount_open"]
    if gross["currency"] != open_["currency"]:
        raise InvalidMessage(
            "invalid_format",
            f"amount_open is in {open_['currency']}, gross in {gross['currency']}",
            field_path="amount_open.currency",
        )
    paid: Decimal = gross["amount"] - open_["amount"]
    if status in _NO_PAYMENT or paid <= 0:
        return Skip("no_payment")
    return Settlement(
        order_key=str(datum["order_key"]),
        id_order=id_order,
        paid=paid,
        currency=str(gross["currency"]),
        stated=_STATED.get(status),
        source=f"invoice {datum['invoice_year']}-{datum['invoice_number']}",
    )


def payment_settlement(datum: AvroDatum, *, shop_id: int) -> Settlement | Skip:
    """The settlement a ``Payment`` datum reports, or Skip (``echo``, ``not_ours``, ``no_payment``)."""
    if is_from_shop(datum) or str(datum["recorded_by"]) == "PRESTASHOP":
        return Skip("echo")
    id_order = order_id_of(str(datum["order_key"]), shop_id)
    if id_order is None:
        return Skip("not_ours")
    amount: Decimal = datum["amount"]["amount"]
    if amount <= 0:
        return Skip("no_payment")  # a refund: the payment state never moves back through this sink
    return Settlement(
        order_key=str(datum["order_key"]),
        id_order=id_order,
        paid=amount,
        currency=str(datum["amount"]["currency"]),
        stated=None,
        source=f"payment {datum['transaction_id'] or datum['meta']['source_id']}",
    )


class _SettlementSink:
    """What both payment sinks do with a settlement: compare with the order, write the payment state."""

    target = TARGET
    coalesce_s: float | None = None

    def __init__(
        self,
        client: PrestaShopClient,
        writer: OrderStateWriter,
        currencies: ShopCurrencies,
        *,
        shop_id: int,
        tolerance: Decimal,
    ) -> None:
        self._client = client
        self._writer = writer
        self._currencies = currencies
        self._shop_id = shop_id
        self._tolerance = tolerance

    async def apply(self, model: Settlement, context: SinkContext) -> Applied:
        """Write the payment state the settlement justifies, forward only; see the module docstring."""
        order = await self._client.get_order(model.id_order)
        order_currency = await self._currencies.iso_of(order.id_currency)
        if order_currency == model.currency:
            status = settled_status(model.paid, order.total_paid_tax_incl, self._tolerance)
        elif model.stated is not None:
            status = model.stated  # amounts in two currencies cannot be compared: the ERP's word stands
        else:
            raise InvalidMessage(
                "currency_mismatch",
                f"{model.source} is in {model.currency}, order {model.id_order} in {order_currency}",
                field_path="amount.currency",
                details={"order_currency": order_currency, "currency": model.currency},
            )
        if status is None:
            return Applied("unchanged", facts(id_order=model.id_order, why="nothing_paid"))
        result = await self._writer.move(model.id_order, OrderStatus(payment=status))
        summary = facts(id_order=model.id_order, payment=status.value, source=model.source)
        if result.written:
            return Applied(
                "written", {**summary, **facts(from_state=result.previous_state, to_state=result.plan.target)}
            )
        return Applied("unchanged", {**summary, **facts(why=result.plan.reason.value)})


class InvoicePaymentSink(_SettlementSink):
    """``canonical.invoice.v1`` → the shop order's payment state."""

    name = INVOICES_NAME
    sources: tuple[str, ...] = (INVOICES_TOPIC,)
    record = "Invoice"

    def decode(self, datum: AvroDatum, context: SinkContext) -> Settlement | Skip:
        """See :func:`invoice_settlement`."""
        return invoice_settlement(datum, shop_id=self._shop_id)


class PaymentRecordSink(_SettlementSink):
    """``canonical.payment.v1`` (payments the ERP or the pipeline recorded) → the order's payment state."""

    name = PAYMENTS_NAME
    sources: tuple[str, ...] = (PAYMENTS_TOPIC,)
    record = "Payment"

    def decode(self, datum: AvroDatum, context: SinkContext) -> Settlement | Skip:
        """See :func:`payment_settlement`."""
        return payment_settlement(datum, shop_id=self._shop_id)


@asynccontextmanager
async def build(
    resources: SinkResources, *, send_email: bool | None = None
) -> AsyncIterator[InvoicePaymentSink]:
    """The invoice sink on the shop of ``resources.settings.prestashop``; its connections close on exit."""
    shop = resources.settings.require_prestashop()
    send_email = shop.send_email if send_email is None else send_email
    async with (
        open_shop_client(shop) as client,
        open_paid_state_ledger(resources, stage=INVOICES_NAME) as paid_states,
    ):
        yield InvoicePaymentSink(
            client,
            OrderStateWriter(client, resources.rules, paid_states=paid_states, send_email=send_email),
            ShopCurrencies(client),
            shop_id=shop.shop_id,
            tolerance=resources.rules.validation.totals_tolerance,
        )


@asynccontextmanager
async def build_payments(
    resources: SinkResources, *, send_email: bool | None = None
) -> AsyncIterator[PaymentRecordSink]:
    """The payment-record sink on the shop of ``resources.settings.prestashop``; closes on exit."""
    shop = resources.settings.require_prestashop()
    send_email = shop.send_email if send_email is None else send_email
    async with (
        open_shop_client(shop) as client,
        open_paid_state_ledger(resources, stage=PAYMENTS_NAME) as paid_states,
    ):
        yield PaymentRecordSink(
            client,
            OrderStateWriter(client, resources.rules, paid_states=paid_states, send_email=send_email),
            ShopCurrencies(client),
            shop_id=shop.shop_id,
            tolerance=resources.rules.validation.totals_tolerance,
        )
