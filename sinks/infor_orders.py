"""``canonical.order.v1`` → an M3 customer order (OIS100MI batch order entry), created once.

Mapping (:func:`to_sales_order_request`, pure): CUOR is the shop's reference (how the order is found
again); lines carry the ERP item number from the variant rules, the quantity, the unit price before
tax and, as DIA1, the line's discount plus its share of the order-level discounts (allocated in
proportion to the line totals, to the currency's minor unit, so the shares add up exactly); the
shipping fee and gift wrapping travel as header charges; the delivery address is fitted to CUA1-CUA4
without losing text; order type and warehouse come from the record's enrichment; the customer is the
shop customer's M3 customer (see :mod:`sinks.infor_customers`).

:meth:`InforOrdersSink.apply`, idempotent::

    link with an M3 order number? ──yes──▶ unchanged     (a later version: only the first creates)
        │no
    M3 order with CUOR = reference? ─yes─▶ write link ─▶ linked
        │no
    cancelled in the shop? ──yes──▶ not_created
        │no
    resolve the customer (create if new) ─▶ write link, ORNO null (acked) ─▶ create_sales_order
        │ AmbiguousWriteError (Confirm 504 after M3 created it): look up by CUOR again,
        │ found → go on, not found → RetryableError (the adapter re-checks the same batch order)
        ▼
    write link with ORNO (acked) ─▶ written

M3's refusals blame the payload: they become InvalidMessage with M3's code, field, type, message and
transaction in ``details`` and ``field_path`` pointing into the canonical order (an unknown item →
``lines[1].sku``); a refusal that only says a record is busy is retried.

Cancellation: an order cancelled in the shop before it reached M3 is not created (``not_created``).
Cancelling an order M3 already has is not done here: it arrives as a status change on
``canonical.order-status.v1`` and belongs to a status sink (delete the lines, OIS100MI DelLine, while
no line is picked, ORST < 44; else dead-letter it for a credit by hand).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Protocol

from connectors.infor.adapter import (
    Customer,
    ErpOrderRef,
    Item,
    OrderAck,
    OrderCharge,
    SalesOrderLine,
    SalesOrderRequest,
)
from connectors.infor.errors import AmbiguousWriteError, MiBusinessError
from connectors.infor.gateway import TARGET
from pipeline.errors import InvalidMessage, PipelineError, RetryableError
from processors.erp_links import LINKS_TOPIC, CustomerLink, OrderLink
from rules.address import clean
from rules.engine import Rules
from rules.variants import VariantTable
from schemas.codec import AvroDatum
from sinks.base import Applied, SinkContext, SinkResources, Skip
from sinks.infor_customers import (
    CustomerResolver,
    CustomerUpsert,
    ErpLinks,
    InforSinkOptions,
    LinkWriter,
    address_field_paths,
    erp_customer_number,
    m3_address,
    m3_rejection,
    open_links,
    open_m3,
    person_name,
    sink_options,
)

NAME = "infor-orders"
SOURCE_TOPIC = "canonical.order.v1"
RECORD = "Order"

M3_REFERENCE_LENGTH = 20
"""CUOR is A20: the reference must fit whole, it is how the order is found again."""

_HEAD_PATHS: Mapping[str, str] = {
    "CUNO": "customer.customer_key",
    "CUOR": "reference",
    "ORTP": "enrichment.order_type",
    "WHLO": "enrichment.warehouse",
    "CUCD": "totals.grand_total.currency",
    "MODL": "carrier.code",
    "ORDT": "placed_at",
}
_LINE_FIELDS: Mapping[str, str] = {
    "ITNO": "sku",
    "ORQT": "quantity",
    "SAPR": "unit_price_excl_tax.amount",
    "DIA1": "discount_excl_tax.amount",
}


# --------------------------------------------------------------------------------- pure mapping


def _amount(money: Mapping[str, Any]) -> Decimal:
    value = money["amount"]
    if not isinstance(value, Decimal):
        raise TypeError(f"money amount is {type(value).__name__}, not Decimal")
    return value


def _plain(value: Decimal) -> Decimal:
    """``value`` without trailing zeros (the wire scale pads to 6 decimals; M3 needs no padding)."""
    return value.normalize() if value != value.to_integral_value() else value.quantize(Decimal(1))


def _discount_shares(
    discount: Decimal, lines: Sequence[Mapping[str, Any]], rules: Rules, currency: str
) -> list[Decimal]:
    """Each line's share of an order-level discount, in proportion to the line totals, to the cent."""
    if not discount:
        return [Decimal(0)] * len(lines)
    try:
        return rules.currency.allocate(
            discount, [_amount(line["total_excl_tax"]) for line in lines], currency
        )
    except ValueError as exc:  # no lines, or lines worth nothing: nowhere to put the discount
        raise InvalidMessage(
            "discount_without_lines",
            f"an order discount of {discount} {currency} but no line total to take it",
            field_path="totals.discounts",
        ) from exc


def to_sales_order_request(
    datum: AvroDatum,
    rules: Rules,
    *,
    customer_id: str | None = None,
    variants: VariantTable | None = None,
    options: InforSinkOptions | None = None,
) -> SalesOrderRequest:
    """The M3 order of a canonical ``Order`` (see the module docstring); pure.

    ``customer_id`` defaults to the deterministic M3 number of the order's customer. Raises
    InvalidMessage naming the field path when the order cannot be expressed in M3 (no reference, one
    longer than CUOR, an unknown SKU under ``table_only`` rules, an address that does not fit).
    """
    opts = options or InforSinkOptions()
    reference = clean(datum.get("reference"))
    if not reference:
        raise InvalidMessage("missing_reference", "the order has no reference", field_path="reference")
    if len(reference) > M3_REFERENCE_LENGTH:
        raise InvalidMessage(
            "reference_too_long",
            f"reference {reference!r} is longer than M3's CUOR ({M3_REFERENCE_LENGTH} characters)",
            field_path="reference",
        )
    totals = datum["totals"]
    currency = str(totals["grand_total"]["currency"])
    table = variants if variants is not None else VariantTable()
    lines: Sequence[Mapping[str, Any]] = datum["lines"]
    order_discount = _amount(totals["discounts"])
    shares = _discount_shares(order_discount, lines, rules, currency)
    enrichment = datum.get("enrichment") or {}
    carrier = datum.get("carrier") or {}
    wrapping = _amount(totals["wrapping"])
    shipping = _amount(totals["shipping"])
    charges = (
        (OrderCharge(opts.wrapping_charge_id, _plain(wrapping)),)
        if wrapping and opts.wrapping_charge_id
        else ()
    )
    return SalesOrderRequest(
        external_ref=reference,
        customer_id=customer_id
        or erp_customer_number(
            str(datum["customer"]["customer_key"]),
            prefix=opts.customer_number_prefix,
            default_shop_id=opts.default_shop_id,
        ),
        currency=currency,
        order_date=datum["placed_at"].date(),
        lines=tuple(
            SalesOrderLine(
                line_no=index + 1,
                sku=rules.variants.item_number(table, str(line["sku"]), field_path=f"lines[{index}].sku"),
                quantity=_plain(line["quantity"]),
                unit_price=_plain(_amount(line["unit_price_excl_tax"])),
                description=clean(line.get("name")),
                discount_amount=_plain(_amount(line["discount_excl_tax"]) + share) or None,
            )
            for index, (line, share) in enumerate(zip(lines, shares, strict=True))
        ),
        ship_to=m3_address(datum["shipping_address"], rules, field_path="shipping_address"),
        shipping_amount=_plain(shipping) if shipping else None,
        shipping_method=clean(carrier.get("code")) or None,
        order_type=clean(enrichment.get("order_type")) or opts.defaults.order_type,
        warehouse=clean(enrichment.get("warehouse")) or None,
        charges=charges,
    )


def order_customer(
    datum: AvroDatum, rules: Rules, *, options: InforSinkOptions | None = None
) -> CustomerUpsert:
    """The M3 customer an order needs: the order's customer with its billing address; pure."""
    opts = options or InforSinkOptions()
    buyer = datum["customer"]
    name = person_name(buyer.get("company"), buyer.get("first_name"), buyer.get("last_name"))
    name_path = "customer.company" if clean(buyer.get("company")) else "customer.last_name"
    billing = m3_address(datum["billing_address"], rules, field_path="billing_address")
    key = str(buyer["customer_key"])
    return CustomerUpsert(
        customer_key=key,
        customer=Customer(
            customer_id=erp_customer_number(
                key, prefix=opts.customer_number_prefix, default_shop_id=opts.default_shop_id
            ),
            name=name,
            address=replace(billing, name=name),
            email=clean(buyer.get("email")).lower(),
            phone=billing.phone,
        ),
        field_paths={
            "CUNO": "customer.customer_key",
            "MAIL": "customer.email",
            **address_field_paths("billing_address", name_path=name_path),
        },
    )


@dataclass(frozen=True)
class OrderWrite:
    """What :meth:`InforOrdersSink.apply` needs: the M3 order, its customer, and where M3's fields came
    from in the canonical record (to blame the right field when M3 refuses)."""

    order_key: str
    reference: str
    cancelled: bool
    request: SalesOrderRequest
    customer: CustomerUpsert
    address_paths: Mapping[str, str] = field(default_factory=dict)


def to_order_write(
    datum: AvroDatum,
    rules: Rules,
    *,
    variants: VariantTable | None = None,
    options: InforSinkOptions | None = None,
) -> OrderWrite:
    """The sink's model of a canonical ``Order``; pure."""
    shipping = datum["shipping_address"]
    name_path = "shipping_address.company" if clean(shipping.get("company")) else "shipping_address.last_name"
    return OrderWrite(
        order_key=str(datum["order_key"]),
        reference=clean(datum.get("reference")),
        cancelled=str(datum.get("lifecycle")) == "CANCELLED",
        request=to_sales_order_request(datum, rules, variants=variants, options=options),
        customer=order_customer(datum, rules, options=options),
        address_paths=address_field_paths("shipping_address", name_path=name_path),
    )


# -------------------------------------------------------------------------------------- the sink


class SalesOrders(Protocol):
    """The M3 order operations the sink needs (:class:`~connectors.infor.m3.M3Adapter` has them)."""

    async def create_sales_order(self, order: SalesOrderRequest, *, idempotency_key: str) -> OrderAck: ...

    async def find_order_by_external_ref(
        self, external_ref: str, *, customer_id: str | None = None
    ) -> ErpOrderRef | None: ...

    async def get_item(self, sku: str) -> Item | None: ...


class InforOrdersSink:
    """``canonical.order.v1`` → M3 customer order, created once (see the module docstring)."""

    name = NAME
    target = TARGET
    sources = (SOURCE_TOPIC,)
    record = RECORD
    coalesce_s: float | None = None

    def __init__(
        self,
        m3: SalesOrders,
        customers: CustomerResolver,
        links: ErpLinks,
        writer: LinkWriter,
        rules: Rules,
        *,
        cono: str,
        variants: VariantTable | None = None,
        options: InforSinkOptions | None = None,
    ) -> None:
        self._m3 = m3
        self._customers = customers
        self._links = links
        self._writer = writer
        self._rules = rules
        self._cono = cono
        self._variants = variants
        self._options = options or InforSinkOptions()

    def decode(self, datum: AvroDatum, context: SinkContext) -> OrderWrite | Skip:
        """The M3 order of ``datum``; Skip ``not_ours`` for an order that did not come from the shop."""
        if str(datum["meta"]["source_system"]) != "PRESTASHOP":
            return Skip("not_ours")
        return to_order_write(datum, self._rules, variants=self._variants, options=self._options)

    async def apply(self, model: OrderWrite, context: SinkContext) -> Applied:
        """Create the M3 order once and link it; see the module docstring for every path."""
        link = await asyncio.to_thread(self._links.order_link, model.order_key)
        if link is not None and link.cono not in ("", self._cono):
            link = None  # another company's order with the same key (a shared links topic)
        if link is not None and link.erp_order_number:
            return Applied("unchanged", {"erp_order_number": link.erp_order_number})
        found = await self._m3.find_order_by_external_ref(model.reference)
        if found is not None:
            await self._link(model, found.erp_order_id, context)
            return Applied("linked", {"erp_order_number": found.erp_order_id})
        if model.cancelled:
            return Applied("not_created", {"why": "cancelled"})
        resolution = await self._customers.resolve(model.customer, update=False)
        if resolution is None:  # pragma: no cover - resolve(create=True) always answers
            raise RuntimeError("customer resolution without create returned nothing")
        if resolution.found_by != "link":
            link_to = CustomerLink(model.customer.customer_key, self._cono, resolution.customer_id)
            await self._writer.customer(link_to, context.correlation_id)
        if link is None:
            # Before the create: the order-status flow can then tell the M3 order is the shop's as soon as
            # M3 announces it, even if this process dies before learning the order number.
            await self._link(model, "", context)
        request = replace(model.request, customer_id=resolution.customer_id)
        ref, created = await self._create(model, request)
        await self._link(model, ref.erp_order_id, context)
        facts = {"erp_order_number": ref.erp_order_id, "erp_customer_number": resolution.customer_id}
        return Applied("written" if created else "linked", facts)

    async def _create(self, model: OrderWrite, request: SalesOrderRequest) -> tuple[ErpOrderRef, bool]:
        try:
            ack = await self._m3.create_sales_order(request, idempotency_key=model.order_key)
        except AmbiguousWriteError as exc:
            found = await self._m3.find_order_by_external_ref(
                model.reference, customer_id=request.customer_id
            )
            if found is None:
                raise RetryableError(
                    f"order {model.order_key}: {exc.operation} outcome unknown and M3 has no order with "
                    f"reference {model.reference} yet; retrying",
                    retry_after=exc.retry_after,
                    status=exc.status,
                ) from exc
            return found, True
        except MiBusinessError as exc:
            raise await self._blame(exc, model) from exc
        return ack.ref, ack.created

    async def _link(self, model: OrderWrite, erp_order_number: str, context: SinkContext) -> None:
        link = OrderLink(model.order_key, self._cono, model.reference, erp_order_number)
        await self._writer.order(link, context.correlation_id)

    async def _blame(self, exc: MiBusinessError, model: OrderWrite) -> PipelineError:
        quartet = exc.error
        path: str | None = None
        paths: Mapping[str, str] = _HEAD_PATHS
        if quartet.transaction == "AddBatchLine":
            index = await self._failing_line(model, quartet.error_message, quartet.error_field)
            if quartet.error_field == "WHLO":
                path = "enrichment.warehouse"
            elif index is None:
                path = "lines"
            else:
                path = f"lines[{index}].{_LINE_FIELDS.get(quartet.error_field, 'sku')}"
        elif quartet.transaction == "AddBatchAddress":
            paths = model.address_paths
        elif quartet.transaction == "AddBatchHeadChg":
            path = "totals"
        return m3_rejection(exc, paths, field_path=path)

    async def _failing_line(self, model: OrderWrite, message: str, m3_field: str) -> int | None:
        """The index of the line M3 refused: the one whose item M3 names, else (for ITNO) the first whose
        item M3 does not know."""
        items = [line.sku for line in model.request.lines]
        for index, item in enumerate(items):
            if item and item in message:
                return index
        if m3_field == "ITNO":
            for index, item in enumerate(items):
                if not item or await self._m3.get_item(item) is None:
                    return index
        return None


# ------------------------------------------------------------------------------ wiring (build)


def build_with(
    resources: SinkResources, options: InforSinkOptions, *, variants: VariantTable | None = None
) -> contextlib.AbstractAsyncContextManager[InforOrdersSink]:
    """:func:`build` with explicit options (and the product flows' variant table, if the process has one)."""

    @contextlib.asynccontextmanager
    async def opened() -> AsyncIterator[InforOrdersSink]:
        async with (
            open_m3(resources.settings, options) as m3,
            open_links(resources, stage=NAME, sync_timeout_s=options.links_sync_timeout_s) as links,
        ):
            writer = LinkWriter(resources.producer, resources.topic(LINKS_TOPIC), links)
            resolver = CustomerResolver(m3.adapter, cono=m3.cono, links=links)
            yield InforOrdersSink(
                m3.adapter,
                resolver,
                links,
                writer,
                resources.rules,
                cono=m3.cono,
                variants=variants,
                options=options,
            )

    return opened()


def build(resources: SinkResources) -> contextlib.AbstractAsyncContextManager[InforOrdersSink]:
    """The ``infor-orders`` sink with its M3 connection and links reader (a :data:`SinkFactory`)."""
    return build_with(resources, sink_options(resources))
