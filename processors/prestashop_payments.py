"""PrestaShop order_payments → ``canonical.payment.v1``: what the shop recorded as paid for an order.

Input: a PAYMENT BUNDLE on ``raw.prestashop.orders`` (event_type ``order_payment.bundle``, key
``{shop_id}:order_payments:{id}``): ``{"order_payment": {...}, "order": {...}, "currencies": [...],
"configuration": [...]}``, each record as the webservice returned it. order_payments link to orders by
reference, not id, and carry a naive shop-local ``date_add``: the bundle brings the order (for the
order key) and ``PS_TIMEZONE`` (for the clock), so the flow stays a pure function of one raw record.
Payments are immutable rows without ``date_upd``: the version is ``date_add`` (UTC epoch ms), so the
copies the poller writes with every order version collapse as duplicates in the runner.

Not yet written by the poller (see the issue note): until it is, this flow only ever skips.
Everything that is not a payment bundle (order bundles, carrier snapshots, notifications) is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from connectors.prestashop.models import Configuration, Currency, Order, OrderPayment
from pipeline.errors import InvalidMessage
from pipeline.records import Headers
from processors.prestashop_source import (
    SKIP_VERSION,
    ShopClock,
    Skipped,
    configuration_map,
    decode_for_preview,
    meta,
    parse_json,
    parse_model,
    shop_id_of,
    skip_reason,
)
from processors.runner import Flow, FlowContext
from rules.engine import Rules
from rules.preview import register_flow
from rules.validation import check_currency
from schemas.codec import AvroDatum

NAME = "prestashop_payments"
SOURCE_TOPIC = "raw.prestashop.orders"
OUTPUT_TOPIC = "canonical.payment.v1"
RECORD = "Payment"
EVENT_TYPE = "order_payment.bundle"
ENTITY = "order_payments"


class PaymentBundle(BaseModel):
    """The payment bundle as the poller writes it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    order_payment: OrderPayment
    order: Order
    currencies: list[Currency] = Field(default_factory=list)
    configuration: list[Configuration] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PaymentEvent:
    """One payment bundle of one shop."""

    shop_id: str
    bundle: PaymentBundle


PaymentInput = PaymentEvent | Skipped


def decode(raw: bytes, headers: Headers) -> PaymentInput:
    """Raw bytes → :class:`PaymentEvent`, :class:`Skipped` for anything else; InvalidMessage as orders."""
    why = skip_reason(headers, EVENT_TYPE)
    if why is not None:
        return Skipped(why)
    return PaymentEvent(shop_id_of(headers), parse_model(PaymentBundle, parse_json(raw)))


def key(event: PaymentInput) -> str:
    """The order key ``{shop_id}:{id_order}``: a payment travels with its order."""
    return f"{event.shop_id}:{event.bundle.order.id}" if isinstance(event, PaymentEvent) else ""


def _clock(bundle: PaymentBundle) -> ShopClock:
    return ShopClock.from_configuration(configuration_map(bundle.configuration), field_path="configuration")


def version(event: PaymentInput) -> int:
    """The payment's ``date_add`` as UTC epoch ms (payments have no date_upd)."""
    if isinstance(event, Skipped):
        return SKIP_VERSION
    paid_at = _clock(event.bundle).required(event.bundle.order_payment.date_add, "order_payment.date_add")
    return int(paid_at.timestamp() * 1000)


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
    paid_at = _clock(bundle).required(payment.date_add, "order_payment.date_add")
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
            entity=ENTITY,
            shop_id=shop_id,
            source_id=str(payment.id),
            version=int(paid_at.timestamp() * 1000),
            occurred_at=paid_at,
            ingested_at=ingested_at,
            correlation_id=correlation_id,
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


def to_record(event: PaymentInput, context: FlowContext) -> AvroDatum | None:
    """The runner's ``to_record``: None for skipped records."""
    if isinstance(event, Skipped):
        return None
    return to_payment(
        event, context.rules, ingested_at=context.ingested_at, correlation_id=context.correlation_id
    )


FLOW: Flow[PaymentInput] = Flow(
    name=NAME,
    sources=(SOURCE_TOPIC,),
    output=OUTPUT_TOPIC,
    record=RECORD,
    decode=decode,
    to_record=to_record,
    key=key,
    version=version,
)


def preview(raw: bytes, rules: Rules) -> dict[str, Any]:
    """``psinfor rules preview --flow prestashop_payments``: a payment bundle file's canonical Payment."""
    event = decode_for_preview(decode, raw, EVENT_TYPE, "a payment bundle")
    return to_payment(event, rules, ingested_at=datetime.now(UTC), correlation_id="preview")


register_flow(NAME, preview)
