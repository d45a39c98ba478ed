"""What the pipeline asks of an ERP, independent of which Infor product answers (M3 MI, CSI IDO, BODs).

Sinks call an :class:`ErpAdapter`; ingest reads an :class:`ErpEventSource`. The inputs and outputs
are small frozen dataclasses in ERP-neutral terms (SKU, warehouse, customer id, money as ``Decimal``
with its currency, dates as ``date``); each adapter translates them to its product's vocabulary, so a
CloudSuite Industrial (IDO) or LN (BOD) adapter is one new module and nothing else changes.
Native codes are kept beside the neutral ones (``status_native``) because vocabularies differ per ERP.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Protocol


class OrderStatus(StrEnum):
    """The ERP-neutral order progress an adapter reports (reference §6.3); grows at the end only."""

    UNKNOWN = "unknown"
    PENDING_ERP = "pending_erp"
    QUOTATION = "quotation"
    PRELIMINARY = "preliminary"
    OPEN = "open"
    ALLOCATED = "allocated"
    PICKING = "picking"
    PARTIALLY_SHIPPED = "partially_shipped"
    SHIPPED = "shipped"
    INVOICED = "invoiced"
    CANCELLED = "cancelled"
    ON_HOLD = "on_hold"


@dataclass(frozen=True)
class Address:
    """A postal address already fitted to the ERP's field lengths by the rules."""

    name: str
    lines: tuple[str, ...]
    city: str
    postal_code: str
    country_code: str
    state_code: str = ""
    phone: str = ""


@dataclass(frozen=True)
class SalesOrderLine:
    """One order line; ``sku`` is the ERP item number (variant already resolved)."""

    line_no: int
    sku: str
    quantity: Decimal
    unit_price: Decimal | None = None
    warehouse: str | None = None
    description: str = ""
    discount_amount: Decimal | None = None
    """The line's discount as an amount in the order currency (its share of order-level discounts
    included); None or zero: no discount is sent."""


@dataclass(frozen=True)
class OrderCharge:
    """A header charge beside the lines (gift wrapping, ...); ``charge_id`` is the ERP's charge code."""

    charge_id: str
    amount: Decimal


@dataclass(frozen=True)
class SalesOrderRequest:
    """An order to create in the ERP. ``external_ref`` (the PrestaShop reference) finds it again."""

    external_ref: str
    customer_id: str
    currency: str
    order_date: dt.date
    lines: tuple[SalesOrderLine, ...]
    ship_to: Address | None = None
    shipping_amount: Decimal | None = None
    shipping_method: str | None = None
    requested_delivery: dt.date | None = None
    order_type: str | None = None
    warehouse: str | None = None
    your_reference: str = ""
    charges: tuple[OrderCharge, ...] = ()
    """Further header charges; shipping travels in ``shipping_amount``."""


@dataclass(frozen=True)
class ErpOrderRef:
    """The ERP's (final) order number, with our reference when known."""

    erp_order_id: str
    external_ref: str = ""


@dataclass(frozen=True)
class OrderAck:
    """The outcome of :meth:`ErpAdapter.create_sales_order`.

    ``created`` is False when the order already existed (found by its external reference), which is
    the idempotent path of a redelivered or retried message.
    """

    ref: ErpOrderRef
    created: bool
    status_native: str = ""
    status: OrderStatus = OrderStatus.UNKNOWN
    erp_temp_id: str | None = None
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class OrderLineState:
    """Progress of one order line, quantities in the order's unit."""

    line_no: int
    sku: str
    qty_ordered: Decimal
    qty_allocated: Decimal
    qty_shipped: Decimal
    qty_invoiced: Decimal
    status: OrderStatus
    status_native: str


@dataclass(frozen=True)
class OrderState:
    """The ERP's view of an order. ``status_native`` keeps the product's own codes (M3: ORSL/ORST)."""

    ref: ErpOrderRef
    status: OrderStatus
    status_native: Mapping[str, str]
    customer_id: str
    currency: str
    total: Decimal | None
    lines: tuple[OrderLineState, ...] = ()


@dataclass(frozen=True)
class Customer:
    """A customer master record. ``customer_id`` is the ERP customer number (deterministic from the
    source id, which is what makes upserts idempotent)."""

    customer_id: str
    name: str
    address: Address | None = None
    email: str = ""
    phone: str = ""
    currency: str = ""
    status_native: str = ""


@dataclass(frozen=True)
class CustomerRef:
    """The ERP customer number, and whether the upsert created it."""

    customer_id: str
    created: bool = False
    changed: bool = False


@dataclass(frozen=True)
class Item:
    """An item master record (the fields the web shop needs)."""

    sku: str
    description: str
    status_native: str
    unit: str = ""
    item_group: str = ""
    extended_description: str = ""
    net_weight: Decimal | None = None
    changed_on: dt.date | None = None


@dataclass(frozen=True)
class StockLevel:
    """On-hand figures of one item in one warehouse; ``available`` is what the shop may sell."""

    sku: str
    warehouse: str
    available: Decimal
    on_hand: Decimal | None = None
    allocated: Decimal | None = None
    change_stamp: str = ""


@dataclass(frozen=True)
class ShipmentLine:
    """A shipped quantity of one item."""

    sku: str
    quantity: Decimal
    line_no: int | None = None


@dataclass(frozen=True)
class Shipment:
    """A delivery of (part of) an order, with tracking where the ERP knows it."""

    shipment_id: str
    order_id: str
    status_native: str
    carrier: str = ""
    tracking_numbers: tuple[str, ...] = ()
    bill_of_lading: str = ""
    shipped_on: dt.date | None = None
    lines: tuple[ShipmentLine, ...] = ()


@dataclass(frozen=True)
class Invoice:
    """An invoice header for an order."""

    invoice_id: str
    order_id: str
    customer_id: str
    currency: str
    gross: Decimal | None
    net: Decimal | None
    invoice_date: dt.date | None = None
    due_date: dt.date | None = None
    year: str = ""
    delivery_id: str = ""


@dataclass(frozen=True)
class InvoiceBalance:
    """What is still to be paid on one invoice (M3: OIS350MI LstAllInvByCO RAFC)."""

    invoice_id: str
    year: str
    customer_id: str
    currency: str
    gross: Decimal | None
    open_amount: Decimal


@dataclass(frozen=True)
class PaymentAllocation:
    """The part of a payment applied to one invoice."""

    invoice_id: str
    year: str
    amount: Decimal


@dataclass(frozen=True)
class CustomerPayment:
    """A customer's payment to apply to invoices.

    ``batch_id`` names it in the ERP: the same payment always gets the same id, which is what makes
    applying it again (a retry, a second process) a no-op. ``reference`` is the payment provider's
    transaction id, kept on the ERP's payment line.
    """

    batch_id: int
    customer_id: str
    currency: str
    paid_on: dt.date
    reference: str
    allocations: tuple[PaymentAllocation, ...]


@dataclass(frozen=True)
class ErpEvent:
    """One change the ERP announced (a BOD or a polled record), delivered at least once.

    Dedupe on (``type``, ``entity_key``, ``variation``); ``raw`` is the document exactly as received.
    """

    event_id: str
    type: str
    source: str
    entity_key: str
    variation: str
    occurred_at: dt.datetime | None
    raw: bytes
    document_name: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EventCursor:
    """Where a polling source stands (M3 LMTS, a change date), persisted by :meth:`ErpEventSource.commit`."""

    source: str
    position: str


class ErpAdapter(Protocol):
    """One ERP API surface (M3 MI, CSI IDO, BOD). Failures are raised as pipeline errors.

    Writes are idempotent: ``create_sales_order`` looks the external reference up before creating
    and after an ambiguous outcome; ``upsert_customer`` never creates a second customer.
    """

    name: str
    capabilities: frozenset[str]

    async def create_sales_order(self, order: SalesOrderRequest, *, idempotency_key: str) -> OrderAck: ...

    async def find_order_by_external_ref(
        self, external_ref: str, *, customer_id: str | None = None
    ) -> ErpOrderRef | None: ...

    async def get_sales_order(self, ref: ErpOrderRef) -> OrderState: ...

    async def upsert_customer(self, customer: Customer) -> CustomerRef: ...

    async def get_customer(self, ref: CustomerRef) -> Customer | None: ...

    async def get_item(self, sku: str) -> Item | None: ...

    async def get_stock(self, skus: list[str], warehouses: list[str] | None = None) -> list[StockLevel]: ...

    async def list_shipments(self, ref: ErpOrderRef) -> list[Shipment]: ...

    async def list_invoices(self, ref: ErpOrderRef) -> list[Invoice]: ...


class ErpEventSource(Protocol):
    """A stream of ERP changes (IMS push receiver, MI poller, IDO poller), at least once."""

    def events(self) -> AsyncIterator[ErpEvent]: ...

    async def commit(self, cursor: EventCursor) -> None: ...
