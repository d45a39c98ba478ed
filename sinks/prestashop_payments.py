"""ERP invoices and payments → the order's payment status, concluded here and emitted for prestashop-status.

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

Neither posts an order state. The conclusion goes to ``canonical.order-status.v1`` as an
``OrderStatusChange`` keyed by the order, stating only the payment dimension, ``meta.source_system``
PIPELINE and ``meta.source_entity`` the stage (outcome ``emitted``, acknowledged before the record
completes). ``prestashop-status``, the one writer of the shop's order states, then moves the order
forward only (PAID → PS_OS_PAYMENT while the order is unpaid; the default rules name no state for
PARTIALLY_PAID; an order already paid, shipped or cancelled is left alone). Posting here raced the
Shipped write of the status sink: both read "awaiting bank wire" and a bank-wire order ended in
"Payment accepted" after "Shipped". The emitted event's id is a function of stage, the invoice or
payment and the status (:func:`~sinks.order_status_emitter.status_event_id`), so a retry re-emits the
same event; its ``causation_id`` is the invoice's or payment's event id.

Known limit: an order invoiced in several parts is compared invoice by invoice (a sink holds no
state), so it reaches PAID only through an invoice that covers the whole order.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal

from connectors.prestashop.client import PrestaShopClient
from pipeline.errors import InvalidMessage
from rules.canonical_status import OrderStatus, PaymentStatus
from schemas.codec import AvroDatum
from sinks.base import Applied, SinkContext, SinkResources, Skip
from sinks.order_status_emitter import (
    SourceStatusFacts,
    StatusEmitter,
    open_status_emitter,
    pipeline_status_change,
    status_event_id,
)
from sinks.prestashop_target import (
    TARGET,
    ShopCurrencies,
    facts,
    is_from_shop,
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
class SettlementSource:
    """Where a settlement was read: what the emitted status names as its source and cause."""

    identity: str
    """The invoice or payment, stable across redeliveries (``invoice:2024-90001817``,
    ``payment:INFOR:877``): part of the emitted event id."""
    system: str
    """``meta.source_system`` of the invoice or payment (``INFOR``, ``PIPELINE``)."""
    code: str
    """The invoice's own status (``PAID``, ``PARTIALLY_PAID``, ``OPEN``), ``PAYMENT`` for a payment."""
    event_id: str
    """The invoice's or payment's ``meta.event_id``: the emitted status's ``causation_id``."""
    correlation_id: str
    occurred_at: dt.datetime
    ingested_at: dt.datetime
    erp_order_number: str | None = None


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
    origin: SettlementSource


def _origin(datum: AvroDatum, identity: str, code: str, erp_order_number: str | None) -> SettlementSource:
    meta = datum["meta"]
    return SettlementSource(
        identity=identity,
        system=str(meta["source_system"]),
        code=code,
        event_id=str(meta["event_id"]),
        correlation_id=str(meta["correlation_id"]),
        occurred_at=meta["occurred_at"],
        ingested_at=meta["ingested_at"],
        erp_order_number=erp_order_number,
    )


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
    number = f"{datum['invoice_year']}-{datum['invoice_number']}"
    return Settlement(
        order_key=str(datum["order_key"]),
        id_order=id_order,
        paid=paid,
        currency=str(gross["currency"]),
        stated=_STATED.get(status),
        source=f"invoice {number}",
        origin=_origin(datum, f"invoice:{number}", status, datum["erp_order_number"] or None),
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
        origin=_origin(
            datum, f"payment:{datum['meta']['source_system']}:{datum['meta']['source_id']}", "PAYMENT", None
        ),
    )


def settlement_status_change(
    stage: str, settlement: Settlement, status: PaymentStatus, *, shop_id: int
) -> AvroDatum:
    """The ``OrderStatusChange`` stating ``status`` as the payment of the settlement's order (pure).

    Only the payment dimension is stated; the event id is a function of stage, the settlement's invoice
    or payment and the status, and every time comes from the source record, so a retry emits the same
    event, byte for byte.
    """
    origin = settlement.origin
    ids = {"prestashop": str(settlement.id_order)}
    if origin.erp_order_number:
        ids["infor"] = origin.erp_order_number
    return pipeline_status_change(
        stage=stage,
        event_id=status_event_id(stage, settlement.order_key, origin.identity, status.value),
        order_key=settlement.order_key,
        status=OrderStatus(payment=status),
        source_id=f"{settlement.order_key}:{origin.identity}",
        source_status=SourceStatusFacts(
            origin.system,
            origin.code,
            f"{settlement.source}: {settlement.paid} {settlement.currency} settled",
        ),
        changed_at=origin.occurred_at,
        ingested_at=origin.ingested_at,
        correlation_id=origin.correlation_id,
        causation_id=origin.event_id,
        shop_id=str(shop_id),
        erp_order_number=origin.erp_order_number,
        external_ids=ids,
    )


class _SettlementSink:
    """What both payment sinks do with a settlement: compare with the order, emit the payment status."""

    name: str
    target = TARGET
    coalesce_s: float | None = None

    def __init__(
        self,
        client: PrestaShopClient,
        statuses: StatusEmitter,
        currencies: ShopCurrencies,
        *,
        shop_id: int,
        tolerance: Decimal,
    ) -> None:
        self._client = client
        self._statuses = statuses
        self._currencies = currencies
        self._shop_id = shop_id
        self._tolerance = tolerance

    async def apply(self, model: Settlement, context: SinkContext) -> Applied:
        """Emit the payment status the settlement justifies (``emitted``, after the broker's ack), or
        nothing (``unchanged``) when it settles nothing of the order; see the module docstring."""
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
        datum = settlement_status_change(self.name, model, status, shop_id=self._shop_id)
        await self._statuses.emit(datum)
        return Applied(
            "emitted",
            facts(
                id_order=model.id_order,
                payment=status.value,
                source=model.source,
                event_id=datum["meta"]["event_id"],
            ),
        )


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
async def build(resources: SinkResources) -> AsyncIterator[InvoicePaymentSink]:
    """The invoice sink on the shop of ``resources.settings.prestashop``, emitting on this deployment's
    ``canonical.order-status.v1``; its connections close on exit."""
    shop = resources.settings.require_prestashop()
    async with open_shop_client(shop) as client, open_status_emitter(resources) as statuses:
        yield InvoicePaymentSink(
            client,
            statuses,
            ShopCurrencies(client),
            shop_id=shop.shop_id,
            tolerance=resources.rules.validation.totals_tolerance,
        )


@asynccontextmanager
async def build_payments(resources: SinkResources) -> AsyncIterator[PaymentRecordSink]:
    """The payment-record sink on the shop of ``resources.settings.prestashop``, emitting on this
    deployment's ``canonical.order-status.v1``; its connections close on exit."""
    shop = resources.settings.require_prestashop()
    async with open_shop_client(shop) as client, open_status_emitter(resources) as statuses:
        yield PaymentRecordSink(
            client,
            statuses,
            ShopCurrencies(client),
            shop_id=shop.shop_id,
            tolerance=resources.rules.validation.totals_tolerance,
        )
