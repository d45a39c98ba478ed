"""PrestaShop orders → ``canonical.order.v1``: an order bundle becomes one canonical ``Order``.

Input (decision (a) of issue 5): the poller writes (once its orders loop is switched over, see
``ingest/prestashop_poller/bundles.py``; until then it writes ``order.snapshot``, skipped here) an
ORDER BUNDLE per order version on
``raw.prestashop.orders`` (event_type ``order.bundle``, key ``{shop_id}:orders:{id}``, format in
``ingest/prestashop_poller/raw.py``): the webservice records it read for that order, each exactly as
returned: the order with its order_rows, order_details, customer, both addresses with their countries
and states, currencies (the order's and the shop's default), carrier, order_carriers, order_payments,
and the shop-level reference data the mapping needs, bundled per order rather than kept in a
processor-side table: the order's current ``order_states`` record and the configuration values
``PS_OS_*``, ``PS_CURRENCY_DEFAULT`` and ``PS_TIMEZONE``. So this flow is a pure function of one
raw record (replays and ``psinfor rules preview`` give the same answer), and the raw topic is a
complete audit trail of what the mapping saw. Resolving the state by configuration key needs only the
current state plus the ``PS_OS_*`` values: a key names a state by id.

Mapping (rules via :class:`~rules.engine.Rules`, never re-implemented here):

* lines from ``order_details`` (full line figures); SKU by the rules' variant resolution (the product
  flows' table, else the reference the line carries, which for a combination is the combination's);
  tax rate derived from the line totals; the unit price is after catalogue price rules, so a line
  discount is only what the line total lacks against quantity x unit price;
* totals in the order currency: products/shipping/wrapping/discounts tax excluded, tax = paid incl -
  excl, grand total = ``total_paid_tax_incl``, paid = ``total_paid_real``; checked by the rules'
  totals validation: line totals + shipping + wrapping - discounts (all excl.) + the tax those amounts
  carry (each from its own incl/excl pair) = grand total, within the rules' tolerance;
* base-currency totals and the rate applied (PrestaShop's order ``conversion_rate`` when the shop's
  default currency is the base currency, else the rules' table), null when already in base currency;
* addresses standardised (ISO country from the country record, ISO 3166-2 region from the state);
* the three status dimensions from the current state, resolved by config key then flags;
* enrichment (shipping country, the line's PrestaShop warehouse) and anomaly flags with reasons:
  quantity above the absolute maximum; unit price far from the catalogue price (the line's own
  ``original_product_price``, else the latest canonical product price of the SKU in the order's
  currency, from the worker's history); the order value in the base currency a robust-z outlier
  among the shop's recent orders (from the history, once it holds ``min_history`` of them). The
  history flags are advisory: they depend on what the worker emitted and seeded before
  (``processors.history``), so a replay may flag and route an order differently; its event id is the
  same.

Thin notifications and other records on the topic (order_carrier snapshots, payment bundles) are
:class:`~processors.prestashop_source.Skipped`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import Field

from connectors.prestashop.models import (
    Carrier,
    Currency,
    Customer,
    Order,
    OrderCarrier,
    OrderDetail,
    OrderPayment,
    OrderState,
)
from pipeline.errors import InvalidMessage
from processors.history import AnomalyHistory
from processors.prestashop_source import AddressBook, BundleEvent, BundleIdentity, Skipped, bundle_flow, meta
from rules.anomalies import LineObservation
from rules.canonical_status import OrderStatus
from rules.currency import Rate
from rules.engine import Rules
from rules.status import ShopStates
from rules.validation import Totals, check_currency, check_email
from rules.variants import VariantKey, VariantTable
from schemas.codec import AvroDatum

NAME = "prestashop_orders"
SOURCE_TOPIC = "raw.prestashop.orders"
OUTPUT_TOPIC = "canonical.order.v1"
RECORD = "Order"
EVENT_TYPE = "order.bundle"
ENTITY = "orders"

_QUANTITY = Decimal("0.0001")
_TAX_RATE = Decimal("0.001")


class OrderBundle(AddressBook):
    """The order bundle as the poller writes it; every inner record is a PrestaShop source model."""

    def identity(self) -> BundleIdentity:
        """Keyed by the order; versioned by its ``date_upd``."""
        return BundleIdentity(self.order.id, self.order.date_upd, "order.date_upd")

    order: Order
    order_details: list[OrderDetail] = Field(default_factory=list)
    customer: Customer | None = None
    currencies: list[Currency] = Field(default_factory=list)
    carrier: Carrier | None = None
    order_carriers: list[OrderCarrier] = Field(default_factory=list)
    order_payments: list[OrderPayment] = Field(default_factory=list)
    order_states: list[OrderState] = Field(default_factory=list)


class OrderEvent(BundleEvent[OrderBundle]):
    """One order bundle of one shop."""


def to_order(
    event: OrderEvent,
    rules: Rules,
    *,
    ingested_at: datetime,
    correlation_id: str,
    variants: VariantTable | None = None,
    history: AnomalyHistory | None = None,
) -> AvroDatum:
    """The canonical ``Order`` datum of one bundle (pure; raises InvalidMessage for a bad bundle).

    ``variants`` is the product flows' SKU table when the caller has one; without it a line's SKU is
    the reference on the line, as the rules allow. ``history`` (read only) is the worker's memory of
    recent orders and catalogue prices; without it only the flags the bundle itself supports are set.
    """
    bundle, shop_id = event.bundle, event.shop_id
    order = bundle.order
    config = bundle.settings()
    clock = bundle.clock()
    updated = clock.required(order.date_upd, "order.date_upd")
    currency = _currency_code(bundle, order.id_currency, "order.id_currency")
    money = _Money(rules, currency)

    lines = [
        _line(detail, index, shop_id, money, rules, variants if variants is not None else VariantTable())
        for index, detail in enumerate(_details(bundle))
    ]
    details = _details(bundle)
    # The tax the lines, shipping, wrapping and discounts carry, each from its own incl/excl pair, so
    # the check below compares the stated grand total with an independent sum.
    line_tax = sum((d.total_price_tax_incl - d.total_price_tax_excl for d in details), Decimal(0))
    carried_tax = (
        line_tax
        + (order.total_shipping_tax_incl - order.total_shipping_tax_excl)
        + (order.total_wrapping_tax_incl - order.total_wrapping_tax_excl)
        - (order.total_discounts_tax_incl - order.total_discounts_tax_excl)
    )
    rules.validation.check_totals(
        Totals(
            currency=currency,
            lines=[detail.total_price_tax_excl for detail in details],
            shipping=order.total_shipping_tax_excl,
            wrapping=order.total_wrapping_tax_excl,
            discounts=order.total_discounts_tax_excl,
            tax=carried_tax,
            total=order.total_paid_tax_incl,
            tax_included=False,
        ),
        field_path="order.total_paid_tax_incl",
    )
    tax = order.total_paid_tax_incl - order.total_paid_tax_excl
    amounts = {
        "products": order.total_products,
        "shipping": order.total_shipping_tax_excl,
        "wrapping": order.total_wrapping_tax_excl,
        "discounts": order.total_discounts_tax_excl,
        "tax": tax,
        "grand_total": order.total_paid_tax_incl,
        "paid": order.total_paid_real,
    }
    rate = rules.currency.rate_for(
        currency,
        prestashop_conversion_rate=order.conversion_rate,
        shop_default_currency=_default_currency(bundle, config),
        as_of=updated.date(),
    )

    billing = _address(bundle, order.id_address_invoice, rules, "order.id_address_invoice")
    shipping = _address(bundle, order.id_address_delivery, rules, "order.id_address_delivery")
    status = shop_status(bundle, rules)
    enrichment = rules.enrichment.enrich(
        shop_id=shop_id,
        country_code=shipping["country_code"],
        customer_group=None,
        prestashop_warehouse=next((d.id_warehouse for d in _details(bundle) if d.id_warehouse), None),
    )
    order_key = f"{shop_id}:{order.id}"
    # The shop's order values are compared in the base currency (what the history keeps).
    value = order.total_paid_tax_incl
    anomalies = rules.anomalies.check_order(
        value=value if rate.is_identity else rules.currency.to_base(value, rate),
        currency=rate.base_currency,
        shop_id=shop_id,
        value_history=history.order_values(shop_id, excluding=order_key) if history is not None else (),
        lines=[
            LineObservation(
                sku=line["sku"],
                quantity=detail.product_quantity,
                unit_price=detail.unit_price_tax_excl,
                catalogue_price=_catalogue_price(detail, line["sku"], currency, shop_id, history),
            )
            for line, detail in zip(lines, _details(bundle), strict=True)
        ],
    )
    return {
        "meta": meta(
            ENTITY, shop_id, str(order.id), updated, ingested_at=ingested_at, correlation_id=correlation_id
        ),
        "order_key": order_key,
        "reference": _required_text(order.reference, "order.reference"),
        "cart_id": str(order.id_cart) if order.id_cart else None,
        "customer": _customer(bundle, shop_id),
        "billing_address": billing,
        "shipping_address": shipping,
        "lines": lines,
        "totals": {name: money(amount) for name, amount in amounts.items()},
        "base_totals": None
        if rate.is_identity
        else {name: _base(rules, rate, amount) for name, amount in amounts.items()},
        "currency_conversion": None if rate.is_identity else _conversion(rate),
        "payment": {
            "method": order.payment.strip() or order.module,
            "module": order.module or None,
            "amount_paid": money(order.total_paid_real),
            "transaction_ids": [p.transaction_id for p in bundle.order_payments if p.transaction_id.strip()],
        },
        "carrier": _carrier(bundle),
        "payment_status": str(status[0].payment),
        "fulfillment_status": str(status[0].fulfillment),
        "lifecycle": str(status[0].lifecycle),
        "source_status": status[1],
        "placed_at": clock.required(order.date_add, "order.date_add"),
        "is_gift": order.gift,
        "gift_message": order.gift_message.strip() or None,
        "note": order.note.strip() or None,
        "enrichment": {
            "cost_centre": enrichment.cost_centre,
            "project": enrichment.project,
            "order_type": enrichment.order_type,
            "warehouse": enrichment.warehouse,
        },
        "anomalies": [{"code": a.code, "score": a.score, "reason": a.reason} for a in anomalies],
        "external_ids": {"prestashop": str(order.id)},
    }


class _Money:
    """Amounts of one document currency at the wire scale."""

    def __init__(self, rules: Rules, currency: str) -> None:
        self._rules = rules
        self.currency = currency

    def __call__(self, amount: Decimal) -> dict[str, Any]:
        return {"amount": self._rules.currency.quantize(amount), "currency": self.currency}


def _base(rules: Rules, rate: Rate, amount: Decimal) -> dict[str, Any]:
    return {"amount": rules.currency.to_base(amount, rate), "currency": rate.base_currency}


def _conversion(rate: Rate) -> dict[str, Any]:
    return {
        "base_currency": rate.base_currency,
        "rate": rate.rate,
        "rate_source": rate.source,
        "rate_date": rate.as_of,
    }


def _details(bundle: OrderBundle) -> Sequence[OrderDetail]:
    if not bundle.order_details:
        raise InvalidMessage(
            "missing_field",
            "the order bundle has no order_details (an order has lines)",
            field_path="order_details",
        )
    return bundle.order_details


def _line(
    detail: OrderDetail, index: int, shop_id: str, money: _Money, rules: Rules, table: VariantTable
) -> dict[str, Any]:
    path = f"order_details[{index}]"
    sku = _sku(detail, shop_id, rules, table, f"{path}.product_reference")
    quantity = detail.product_quantity
    if quantity != quantity.quantize(_QUANTITY):
        raise InvalidMessage(
            "invalid_format",
            f"quantity {quantity} has more than 4 decimals",
            field_path=f"{path}.product_quantity",
        )
    expected = quantity * detail.unit_price_tax_excl
    discount = max(expected - detail.total_price_tax_excl, Decimal(0))
    tax_rate = Decimal(0)
    if detail.total_price_tax_excl:
        tax_rate = ((detail.total_price_tax_incl / detail.total_price_tax_excl - 1) * 100).quantize(_TAX_RATE)
    gtin = next(
        (code for code in (detail.product_ean13, detail.product_upc, detail.product_isbn) if code), None
    )
    return {
        "line_id": str(detail.id),
        "product_id": str(detail.product_id),
        "variant_id": str(detail.product_attribute_id) if detail.product_attribute_id else None,
        "sku": sku,
        "gtin": gtin,
        "name": _required_text(detail.product_name, f"{path}.product_name"),
        "quantity": quantity.quantize(_QUANTITY),
        "unit_price_excl_tax": money(detail.unit_price_tax_excl),
        "unit_price_incl_tax": money(detail.unit_price_tax_incl),
        "tax_rate": tax_rate,
        "discount_excl_tax": money(discount),
        "total_excl_tax": money(detail.total_price_tax_excl),
        "total_incl_tax": money(detail.total_price_tax_incl),
    }


def _sku(detail: OrderDetail, shop_id: str, rules: Rules, table: VariantTable, field_path: str) -> str:
    """The line's SKU by the rules' variant resolution; an unknown ERP item number does not block it.

    The canonical order names SKUs; whether the ERP knows the item (or its number fits) is the Infor
    sink's question, answered there with the same rules, so ``unknown_sku`` here keeps the SKU found.
    """
    try:
        return rules.variants.resolve(
            table,
            VariantKey(shop_id, detail.product_id, detail.product_attribute_id),
            order_reference=detail.product_reference,
            field_path=field_path,
        ).sku
    except InvalidMessage as exc:
        if exc.reason == "unknown_sku" and exc.details.get("sku"):
            return exc.details["sku"]
        raise


def _catalogue_price(
    detail: OrderDetail, sku: str, currency: str, shop_id: str, history: AnomalyHistory | None
) -> Decimal | None:
    """The line's catalogue unit price (tax excluded), or None when unknown.

    PrestaShop's own ``original_product_price`` (the catalogue price when the order was placed, in
    the order's currency) comes first; orders created through the webservice often lack it (0), and
    then the latest canonical product price of the SKU serves, when it is in the order's currency.
    """
    if detail.original_product_price:
        return detail.original_product_price
    return history.catalogue_price(sku, shop_id, currency) if history is not None else None


def _currency_code(bundle: OrderBundle, id_currency: int, field_path: str) -> str:
    for currency in bundle.currencies:
        if currency.id == id_currency:
            return check_currency(currency.iso_code, f"currencies[id={id_currency}].iso_code")
    raise InvalidMessage("missing_field", f"the bundle has no currency {id_currency}", field_path=field_path)


def _default_currency(bundle: OrderBundle, config: dict[str, str]) -> str | None:
    value = config.get("PS_CURRENCY_DEFAULT", "").strip()
    if not value.isdigit():
        return None
    return next((c.iso_code for c in bundle.currencies if c.id == int(value)), None)


def _address(bundle: OrderBundle, id_address: int, rules: Rules, field_path: str) -> dict[str, Any]:
    found = next((a for a in bundle.addresses if a.id == id_address), None)
    if found is None:
        raise InvalidMessage(
            "missing_field", f"the bundle has no address {id_address}", field_path=field_path
        )
    return bundle.canonical_address(found, rules, field_path=f"addresses[id={id_address}]")


def _customer(bundle: OrderBundle, shop_id: str) -> dict[str, Any]:
    customer = bundle.customer
    if customer is None or customer.id != bundle.order.id_customer:
        raise InvalidMessage(
            "missing_field",
            f"the bundle lacks the order's customer {bundle.order.id_customer}",
            field_path="customer",
        )
    return {
        "customer_key": f"{shop_id}:{customer.id}",
        "email": check_email(customer.email, "customer.email"),
        "first_name": customer.firstname.strip(),
        "last_name": customer.lastname.strip(),
        "company": customer.company.strip() or None,
        "is_guest": customer.is_guest,
        "group": None,
    }


def _carrier(bundle: OrderBundle) -> dict[str, Any] | None:
    carrier = bundle.carrier
    if carrier is None or not bundle.order.id_carrier:
        return None
    return {
        "code": None,
        "reference_id": str(carrier.id_reference or carrier.id),
        "name": carrier.name,
    }


def shop_status(bundle: OrderBundle, rules: Rules) -> tuple[OrderStatus, dict[str, Any]]:
    """The order's status in the three dimensions (``UNKNOWN`` where its state says nothing) and the
    canonical ``SourceStatus`` of its current state, resolved by config key, then flags (pure).

    InvalidMessage ``unknown_order_state`` / ``unmapped_status`` (``current_state``) as the rules say.
    """
    current = bundle.order.current_state
    states = ShopStates.build(bundle.order_states, bundle.settings())
    resolved = rules.status.from_prestashop(current, states)
    record = next((s for s in bundle.order_states if s.id == current), None)
    language = bundle.order.id_lang
    name = None
    if record is not None and record.name:
        name = record.name.get(language) or next(iter(record.name.values()))
    source = {"system": "PRESTASHOP", "code": resolved.code, "name": name}
    return resolved.update.as_status(), source


def _required_text(value: str, field_path: str) -> str:
    text = value.strip()
    if not text:
        raise InvalidMessage("missing_field", f"{field_path} is empty", field_path=field_path)
    return text


# --- the flow ---------------------------------------------------------------------------------------


OrderInput = OrderEvent | Skipped
decode, key, version, to_record, FLOW = bundle_flow(
    NAME, SOURCE_TOPIC, OUTPUT_TOPIC, RECORD, EVENT_TYPE, OrderBundle, OrderEvent, to_order
)
