"""Order bundles: every webservice record the processors need for one order version, read together.

A canonical order needs more than the ``orders`` row (customer, both addresses, currency, carrier,
lines in full, payments, what its state means), so the poller writes an ``order.bundle`` instead of a
bare order snapshot: a JSON object of the responses it read for that order, each inner record exactly
as the webservice returned it (format: ``ingest/prestashop_poller/raw.py``). The processors stay pure
functions of one raw record, and the raw topic keeps the complete record of what the mapping saw.

Reads are batched per page of orders (one list request per related resource with an id filter
``[a|b|c]``), so a page of N orders costs about eight requests, not eight per order. Shop-level
reference data (order states, currencies, the configuration values below) changes rarely: it is read
once and re-read when older than ``reference_max_age_s``, and every bundle carries the part it needs.

The orders loop and the notification reader write every order as a bundle. What keeps that fast
(5,000 orders with their bundles in the SIGKILL backfill test, ~400 bundled orders/s against the
sandbox on a loaded 2-core machine): the related reads are id lists per page (``filter[id]=[a|b|c]``,
up to 100 ids a request), the shop reference data is cached, and the sandbox answers an id list
or a list on an indexed column from its indexes instead of scanning the table.

Every order bundle written is followed by a PAYMENT BUNDLE per ``order_payments`` row it carries
(:func:`payment_snapshots`, pure): ``order_payment.bundle`` under ``{shop_id}:order_payments:{id}`` on
the same topic, holding the payment, its order, the currencies and the configuration
(``processors/prestashop_payments.py`` maps it). A payment never changes, but the order it belongs to
does, so the same payment is written again with every order version; the payments flow versions it by
``date_add`` and drops the copies (same key, same version: a duplicate).

Customers and products (read when a webhook notification names one, an address or a combination)
are bundles too, for the same reason: the customer with all its addresses and their countries and
states (:meth:`BundleReader.customer_bundle`), the product with its combinations, the shop's languages
and default currency (:meth:`BundleReader.product_bundle`). Formats: ``raw.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, TypeVar

from connectors.prestashop.client import Fetched, PrestaShopClient
from connectors.prestashop.json_reads import JsonRecord
from connectors.prestashop.models import (
    Address,
    Carrier,
    Combination,
    Configuration,
    Country,
    Currency,
    Customer,
    Order,
    OrderCarrier,
    OrderDetail,
    OrderPayment,
    OrderState,
    Product,
    PsModel,
    PsText,
    State,
)
from connectors.prestashop.order_states import StandardState
from connectors.prestashop.query import Query, Sort, equals
from ingest.prestashop_poller.raw import RawRecord, snapshot
from ingest.prestashop_poller.window import format_shop_time
from pipeline.errors import InvalidMessage

M = TypeVar("M", bound=PsModel)

REFERENCE_CONFIGURATION: tuple[str, ...] = (
    "PS_TIMEZONE",
    "PS_CURRENCY_DEFAULT",
    "PS_WEIGHT_UNIT",
    *(key.value for key in StandardState),
)
"""Configuration values every bundle carries: the shop clock, its default currency, the PS_OS_* keys."""


class Language(PsModel):
    """A shop language (``languages``): products name themselves per language id, the canonical
    record per ISO 639-1 code. The connector has no model for it yet, so the reader declares one."""

    RESOURCE: ClassVar[str] = "languages"
    NODE: ClassVar[str] = "language"

    iso_code: PsText = ""


_MAX_IDS_PER_FILTER = 100
"""Ids per ``filter[...]=[a|b|...]`` request, so URLs stay far below server limits."""


@dataclass(frozen=True, slots=True)
class ShopReference:
    """The shop-level records bundles draw from, as returned (raw JSON records)."""

    configuration: tuple[JsonRecord, ...]
    order_states: dict[int, JsonRecord]
    currencies: dict[int, JsonRecord]
    default_currency: int | None
    languages: tuple[JsonRecord, ...] = ()


class BundleReader:
    """Builds order bundles for pages of fetched orders (see the module docstring)."""

    def __init__(
        self,
        client: PrestaShopClient,
        *,
        reference_max_age_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._max_age_s = reference_max_age_s
        self._clock = clock
        self._reference: ShopReference | None = None
        self._read_at = 0.0

    async def reference(self) -> ShopReference:
        """The shop's reference records, re-read when older than ``reference_max_age_s``."""
        now = self._clock()
        if self._reference is None or now - self._read_at > self._max_age_s:
            configuration = await self._records(
                Configuration, Query(filters=(equals("name", *REFERENCE_CONFIGURATION),))
            )
            states = await self._records(OrderState, Query())
            currencies = await self._records(Currency, Query())
            default = next(
                (
                    str(record.model.value).strip()
                    for record in configuration
                    if record.model.name == "PS_CURRENCY_DEFAULT" and record.model.id_shop in (None, 0)
                ),
                "",
            )
            languages = await self._records(Language, Query())
            self._reference = ShopReference(
                configuration=tuple(record.record for record in configuration),
                order_states={record.model.id: record.record for record in states},
                currencies={record.model.id: record.record for record in currencies},
                default_currency=int(default) if default.isdigit() else None,
                languages=tuple(record.record for record in languages),
            )
            self._read_at = now
        return self._reference

    async def bundles(self, orders: Sequence[Fetched[Order]]) -> list[dict[str, Any]]:
        """One bundle per order, in the given order (the related rows as they are now)."""
        if not orders:
            return []
        reference = await self.reference()
        models = [fetched.model for fetched in orders]
        order_ids = [order.id for order in models]
        details = await self._by(OrderDetail, "id_order", order_ids)
        carriers_rows = await self._by(OrderCarrier, "id_order", order_ids)
        payments = await self._by(
            OrderPayment, "order_reference", [o.reference for o in models if o.reference]
        )
        customers = await self._by(Customer, "id", [o.id_customer for o in models if o.id_customer])
        address_ids = {i for o in models for i in (o.id_address_invoice, o.id_address_delivery) if i}
        addresses = await self._by(Address, "id", sorted(address_ids))
        countries = await self._by(
            Country, "id", sorted({a.model.id_country for a in addresses if a.model.id_country})
        )
        states = await self._by(
            State, "id", sorted({a.model.id_state for a in addresses if a.model.id_state})
        )
        carriers = await self._by(Carrier, "id", sorted({o.id_carrier for o in models if o.id_carrier}))

        result: list[dict[str, Any]] = []
        for fetched in orders:
            order = fetched.model
            own_addresses = [
                a for a in addresses if a.model.id in (order.id_address_invoice, order.id_address_delivery)
            ]
            currency_ids = sorted(
                {order.id_currency, *([reference.default_currency] if reference.default_currency else [])}
            )
            result.append(
                {
                    "order": fetched.record,
                    "order_details": _records(d for d in details if d.model.id_order == order.id),
                    "customer": _first(c for c in customers if c.model.id == order.id_customer),
                    "addresses": _records(own_addresses),
                    "countries": _records(
                        c for c in countries if any(a.model.id_country == c.model.id for a in own_addresses)
                    ),
                    "states": _records(
                        s for s in states if any(a.model.id_state == s.model.id for a in own_addresses)
                    ),
                    "currencies": [
                        reference.currencies[i] for i in currency_ids if i in reference.currencies
                    ],
                    "carrier": _first(c for c in carriers if c.model.id == order.id_carrier),
                    "order_carriers": _records(c for c in carriers_rows if c.model.id_order == order.id),
                    "order_payments": _records(
                        p for p in payments if order.reference and p.model.order_reference == order.reference
                    ),
                    "order_states": [reference.order_states[order.current_state]]
                    if order.current_state in reference.order_states
                    else [],
                    "configuration": list(reference.configuration),
                }
            )
        return result

    async def customer_bundle(self, customer: Fetched[Customer]) -> dict[str, Any]:
        """The customer bundle: the customer, ALL its addresses (deleted ones too), their countries and
        states, and the reference configuration (for ``PS_TIMEZONE``)."""
        reference = await self.reference()
        addresses = await self._by(Address, "id_customer", [customer.model.id])
        countries = await self._by(
            Country, "id", sorted({a.model.id_country for a in addresses if a.model.id_country})
        )
        states = await self._by(
            State, "id", sorted({a.model.id_state for a in addresses if a.model.id_state})
        )
        return {
            "customer": customer.record,
            "addresses": _records(addresses),
            "countries": _records(countries),
            "states": _records(states),
            "configuration": list(reference.configuration),
        }

    async def product_bundle(self, product: Fetched[Product]) -> dict[str, Any]:
        """The product bundle: the product, its combinations, the shop's languages, its default currency
        and the reference configuration (``PS_TIMEZONE``, ``PS_CURRENCY_DEFAULT``, ``PS_WEIGHT_UNIT``)."""
        reference = await self.reference()
        combinations = await self._by(Combination, "id_product", [product.model.id])
        default = reference.default_currency
        return {
            "product": product.record,
            "combinations": _records(combinations),
            "languages": list(reference.languages),
            "currencies": [reference.currencies[default]] if default in reference.currencies else [],
            "configuration": list(reference.configuration),
        }

    async def for_row(self, fetched: Fetched[Any]) -> tuple[PsModel, JsonRecord, str]:
        """What the poller writes for one re-read row: ``(row model, record, kind)``.

        An order, customer or product is its bundle (kind ``bundle``); an address or a combination is
        the bundle of its customer or product, whose model is returned (its key and ``date_upd`` name
        the record); anything else, or an address without a customer (a supplier's), is the row's
        own snapshot (kind ``snapshot``).
        """
        model = fetched.model
        if isinstance(model, Order):
            return model, (await self.bundles([Fetched(fetched.record, model)]))[0], "bundle"
        owner: Fetched[Any] = fetched
        if isinstance(model, Address | Combination):
            parent: type[PsModel] = Customer if isinstance(model, Address) else Product
            parent_id = model.id_customer if isinstance(model, Address) else model.id_product
            found = await self._parent(parent, parent_id) if parent_id else None
            if found is None:
                return model, fetched.record, "snapshot"
            owner = found
        if isinstance(owner.model, Customer):
            return owner.model, await self.customer_bundle(owner), "bundle"
        if isinstance(owner.model, Product):
            return owner.model, await self.product_bundle(owner), "bundle"
        return model, fetched.record, "snapshot"

    async def _parent(self, model: type[PsModel], id_: int) -> Fetched[Any] | None:
        try:
            return await self._client.get_fetched(model, id_)
        except InvalidMessage as exc:
            if exc.reason != "prestashop_not_found":
                raise
            return None

    async def _by(self, model: type[M], field: str, values: Sequence[int | str]) -> list[Fetched[M]]:
        found: list[Fetched[M]] = []
        unique = list(dict.fromkeys(values))
        for start in range(0, len(unique), _MAX_IDS_PER_FILTER):
            chunk = unique[start : start + _MAX_IDS_PER_FILTER]
            found += await self._records(model, Query(filters=(equals(field, *chunk),), sort=(Sort("id"),)))
        return found

    async def _records(self, model: type[M], q: Query) -> list[Fetched[M]]:
        return [fetched async for fetched in self._client.iterate_fetched(model, q)]


def _records(rows: Iterable[Fetched[Any]]) -> list[JsonRecord]:
    return [row.record for row in rows]


def _first(rows: Iterable[Fetched[Any]]) -> JsonRecord | None:
    return next((row.record for row in rows), None)


# --- payment bundles ---------------------------------------------------------------------------------

PAYMENT_BUNDLE_PARTS: tuple[str, ...] = ("order", "currencies", "configuration")
"""What a payment bundle takes from its order bundle besides the payment (the payments flow's input)."""


@dataclass(frozen=True, slots=True)
class PaymentBundle:
    """One payment of an order bundle, bundled for the payments flow."""

    id: int
    """The ``order_payments`` id."""
    date_add: str | None
    """Its ``date_add`` as the shop wrote it (the payments flow's version), None when empty."""
    bundle: dict[str, Any]
    """``{"order_payment": {...}, "order": {...}, "currencies": [...], "configuration": [...]}``."""


def payment_bundles(order_bundle: Mapping[str, Any]) -> list[PaymentBundle]:
    """One payment bundle per ``order_payments`` row of ``order_bundle``, in its order (pure).

    Each inner record is the order bundle's own (exactly as the webservice returned it). A payment
    row without a numeric id cannot be keyed and is left out (the shop never returns one).
    """
    found: list[PaymentBundle] = []
    for payment in order_bundle.get("order_payments") or []:
        id_ = str(payment.get("id", "")).strip() if isinstance(payment, Mapping) else ""
        if not id_.isdigit():
            continue
        date_add = str(payment.get("date_add") or "").strip() or None
        bundle = {"order_payment": payment, **{part: order_bundle.get(part) for part in PAYMENT_BUNDLE_PARTS}}
        found.append(PaymentBundle(int(id_), date_add, bundle))
    return found


def payment_snapshots(
    order_bundle: Mapping[str, Any],
    *,
    shop_id: int,
    poll_run_id: str,
    trigger: str,
    correlation_id: str,
    received_at: datetime | None = None,
) -> list[RawRecord]:
    """The raw records of the payment bundles of ``order_bundle`` (see :func:`payment_bundles`).

    Key ``{shop_id}:order_payments:{id}``, event_type ``order_payment.bundle``, headers as every raw
    record's (``raw.py``) with resource ``order_payments``, the payment id, and ``date_add`` (payments
    have no ``date_upd``); ``correlation_id`` is the order bundle's, so both read as one event.
    """
    return [
        snapshot(
            shop_id=shop_id,
            resource="order_payments",
            node="order_payment",
            id_=payment.id,
            record=payment.bundle,
            date_upd=None,
            date_add=payment.date_add,
            poll_run_id=poll_run_id,
            trigger=trigger,
            correlation_id=correlation_id,
            received_at=received_at,
            kind="bundle",
        )
        for payment in payment_bundles(order_bundle)
    ]


def row_snapshot(
    model: PsModel,
    record: JsonRecord,
    kind: str,
    *,
    shop_id: int,
    poll_run_id: str,
    trigger: str,
    correlation_id: str,
) -> RawRecord:
    """The raw record of what :meth:`BundleReader.for_row` returned: keyed by the row it names (for an
    address or a combination, its customer or product) and dated with that row's own ``date_upd``."""
    date_upd = getattr(model, "date_upd", None)
    return snapshot(
        shop_id=shop_id,
        resource=model.RESOURCE,
        node=type(model).NODE,
        id_=model.id,
        record=record,
        date_upd=format_shop_time(date_upd) if date_upd is not None else None,
        poll_run_id=poll_run_id,
        trigger=trigger,
        correlation_id=correlation_id,
        kind=kind,
    )
