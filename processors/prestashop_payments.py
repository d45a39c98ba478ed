"""PrestaShop order_payments → ``canonical.payment.v1``: what the shop recorded as paid for an order.

Input: a PAYMENT BUNDLE on ``raw.prestashop.orders`` (event_type ``order_payment.bundle``, key
``{shop_id}:order_payments:{id}``): ``{"order_payment": {...}, "order": {...}, "currencies": [...],
"configuration": [...]}``, each record as the webservice returned it. order_payments link to orders by
reference, not id, and carry a naive shop-local ``date_add``: the bundle brings the order (for the
order key) and ``PS_TIMEZONE`` (for the clock), so the flow stays a pure function of one raw record.
Payments are immutable rows without ``date_upd``: the version is ``date_add`` (UTC epoch ms), so the
copies the poller writes with every order version (``ingest/prestashop_poller/bundles.py``
``payment_snapshots``: one payment bundle per ``order_payments`` row of each order bundle) collapse as
duplicates in the runner, whose version table is keyed by the raw key ``{shop_id}:order_payments:{id}``.
Everything that is not a payment bundle (order bundles, carrier snapshots, notifications) is skipped.

A payment the shop created because the PIPELINE posted a paid state (PrestaShop adds one for the
remaining amount on every ``paid`` state, "Shipped" included) is mapped like any other: recognising it
is the Infor payment sinks' job, from the writer's paid-state marks (``sinks/prestashop_target.py``).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from connectors.prestashop.models import Currency, Order, OrderPayment
from pipeline.errors import InvalidMessage
from processors.prestashop_source import Bundle, BundleEvent, BundleIdentity, Skipped, bundle_flow, meta
from rules.engine import Rules
from rules.validation import check_currency
from schemas.codec import AvroDatum

NAME = "prestashop_payments"
SOURCE_TOPIC = "raw.prestashop.orders"
OUTPUT_TOPIC = "canonical.payment.v1"
RECORD = "Payment"
EVENT_TYPE = "order_payment.bundle"
ENTITY = "order_payments"


class PaymentBundle(Bundle):
    """The payment bundle as the poller writes it."""

    def identity(self) -> BundleIdentity:
        """Keyed by the order (a payment travels with it); versioned by ``date_add`` (no date_upd)."""
        return BundleIdentity(self.order.id, self.order_payment.date_add, "order_payment.date_add")

    order_payment: OrderPayment
    order: Order
    currencies: list[Currency] = Field(default_factory=list)


class PaymentEvent(BundleEvent[PaymentBundle]):
    """One payment bundle of one shop."""


def to_payment(event: PaymentEvent, rules: Rules, *, ingested_at: datetime, correlation_id: str) -> AvroDatum:
    """The canonical ``Payment`` datum of one bundle (pure; InvalidMessage for a bad bundle)."""
    bundle, shop_id = event.bundle, event.shop_id
    payment, order = bundle.order_payment, bundle.order
    if not order.reference or payment.order_reference != order.reference:
        raise InvalidMessage(
            "invalid_format",
            f"payment {payment.id} is for order reference {payment.order_reference!r}, the bundle's order "
            f"{order.id} has {order.reference!r}",
            field_path="order_payment.order_reference",
        )
    paid_at = bundle.clock().required(payment.date_add, "order_payment.date_add")
    currency = next((c for c in bundle.currencies if c.id == payment.id_currency), None)
    if currency is None:
        raise InvalidMessage(
            "missing_field",
            f"the bundle has no currency {payment.id_currency}",
            field_path="order_payment.id_currency",
        )
    method = payment.payment_method.strip() or order.payment.strip()
    if not method:
        raise InvalidMessage(
            "missing_field", "the payment names no method", field_path="order_payment.payment_method"
        )
    return {
        "meta": meta(
            ENTITY, shop_id, str(payment.id), paid_at, ingested_at=ingested_at, correlation_id=correlation_id
        ),
        "order_key": f"{shop_id}:{order.id}",
        "amount": {
            "amount": rules.currency.quantize(payment.amount),
            "currency": check_currency(currency.iso_code, "currencies.iso_code"),
        },
        "method": method,
        "transaction_id": payment.transaction_id.strip() or None,
        "paid_at": paid_at,
        "recorded_by": "PRESTASHOP",
        "external_ids": {"prestashop": str(payment.id), "prestashop_order": str(order.id)},
    }


PaymentInput = PaymentEvent | Skipped
decode, key, version, to_record, FLOW = bundle_flow(
    NAME, SOURCE_TOPIC, OUTPUT_TOPIC, RECORD, EVENT_TYPE, PaymentBundle, PaymentEvent, to_payment
)
