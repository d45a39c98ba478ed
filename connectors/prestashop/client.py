"""PrestaShopClient: the typed webservice client, one method per business operation.

Reads are JSON (``Output-Format: JSON``) and always name their fields (``display=full`` unless
fewer fields are asked for), so 8.x's dropped falsy fields never bite; writes are XML. Updates use
PATCH on 8.x+ and, on 1.7 (no PATCH), a PUT that first reads the whole entity and re-sends every
field it must keep — never a lossy PUT. The version comes from the ``PSWS-Version`` header of the
shop's own responses.

Every failure surfaces as the pipeline's ``InvalidMessage``/``RetryableError`` (see
``connectors.prestashop.transport``); a call returns only after the shop confirmed it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
from pydantic import SecretStr, ValidationError

from connectors.prestashop import json_reads, query, xml_writes
from connectors.prestashop.models import (
    MODEL_BY_RESOURCE,
    Address,
    Combination,
    Configuration,
    Country,
    Currency,
    Customer,
    Order,
    OrderCarrier,
    OrderDetail,
    OrderHistory,
    OrderInvoice,
    OrderPayment,
    OrderState,
    Product,
    PsModel,
    State,
    StockAvailable,
    i18n_fields,
)
from connectors.prestashop.order_states import OrderStateCatalogue, StandardState
from connectors.prestashop.query import Query, Sort, equals
from connectors.prestashop.transport import PsVersion, Transport
from pipeline.errors import InvalidMessage, RetryableError

M = TypeVar("M", bound=PsModel)

DEFAULT_PAGE_SIZE = 100
"""Rows per list request: ``display=full`` loads every row fully on the shop (N+1), keep it modest."""

# order_carriers.tracking_number is validated by the shop with isTrackingNumber.
_TRACKING_NUMBER = re.compile(r"^[~:#,%&_=()\[\].? +\-@/a-zA-Z0-9]{1,64}$")
_CONFIG_LANGUAGE = "PS_LANG_DEFAULT"
_CONFIG_TIMEZONE = "PS_TIMEZONE"


@dataclass(frozen=True)
class Fetched(Generic[M]):
    """A record as the shop sent it (for the raw topics) and its parsed model."""

    record: json_reads.JsonRecord
    model: M


class PrestaShopClient:
    """Typed operations on one shop's webservice, over an injected ``httpx.AsyncClient``.

    ``base_url`` is the shop root (``https://shop.example``; a trailing ``/api`` is accepted).
    ``language_id`` is the language a plain-string i18n value belongs to; when None it is read once
    from the shop's ``PS_LANG_DEFAULT``. ``time_zone`` likewise defaults to the shop's PS_TIMEZONE.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        ws_key: SecretStr,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        language_id: int | None = None,
        time_zone: ZoneInfo | None = None,
    ) -> None:
        if page_size <= 0:
            raise ValueError("page_size must be positive")
        self._transport = Transport(http, base_url, ws_key)
        self._page_size = page_size
        self._language_id = language_id
        self._time_zone = time_zone

    # --- shop facts -------------------------------------------------------------------------------

    @property
    def version(self) -> PsVersion | None:
        """The shop's version as last reported by ``PSWS-Version``; None before the first response."""
        return self._transport.version

    async def detect_version(self) -> PsVersion:
        """The shop's version, asking with one small request if no response has told us yet."""
        if self._transport.version is None:
            await self._read_list("configurations", Query(display=("id",), limit=(0, 1)), "detect_version")
        if self._transport.version is None:
            raise RetryableError("PrestaShop response carried no PSWS-Version header")
        return self._transport.version

    async def configuration_values(self, *names: str) -> dict[str, str]:
        """Configuration values by name; a name the shop lacks is absent from the result.

        With multistore rows for one name, the shop-independent row (no id_shop) wins.
        """
        if not names:
            return {}
        rows = [
            self._parse(Configuration, record)
            for record in await self._read_list(
                "configurations", Query(filters=(equals("name", *names),)), "get_configuration"
            )
        ]
        values: dict[str, str] = {}
        for row in sorted(rows, key=lambda r: (r.id_shop or 0, r.id_shop_group or 0), reverse=True):
            values[row.name] = row.value  # sorted so the global (0/None) row is written last and wins
        return values

    async def shop_time_zone(self) -> ZoneInfo:
        """The zone the shop's naive timestamps are in (PS_TIMEZONE), read once."""
        if self._time_zone is None:
            name = (await self.configuration_values(_CONFIG_TIMEZONE)).get(_CONFIG_TIMEZONE, "")
            try:
                self._time_zone = ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise InvalidMessage(
                    "prestashop_configuration",
                    f"PS_TIMEZONE {name!r} is not a known time zone",
                    details={"configuration": _CONFIG_TIMEZONE},
                ) from exc
        return self._time_zone

    async def load_order_states(self) -> OrderStateCatalogue:
        """The shop's order states with the ids its PS_OS_* configuration assigns them."""
        states = [state async for state in self.iterate(OrderState)]
        config = await self.configuration_values(*(key.value for key in StandardState))
        return OrderStateCatalogue.build(states, config)

    # --- generic typed reads --------------------------------------------------------------------------

    async def get(self, model: type[M], id_: int) -> M:
        """One entity by id, all fields; raises InvalidMessage(prestashop_not_found) when absent."""
        return (await self.get_fetched(model, id_)).model

    async def get_fetched(self, model: type[M], id_: int) -> Fetched[M]:
        """One entity by id with its raw record."""
        operation = f"get_{model.NODE}"
        # display=full: without a display parameter 8.x drops every falsy field of a single entity.
        response = await self._transport.send(
            "GET", f"{model.RESOURCE}/{int(id_)}", operation=operation, query="display=full"
        )
        records = self._records(response, model.RESOURCE, model.NODE, operation)
        if not records:
            raise InvalidMessage(
                "prestashop_not_found", f"{model.RESOURCE} {id_} does not exist", details={"id": str(id_)}
            )
        return Fetched(records[0], await self._validate(model, records[0]))

    async def list_all(self, model: type[M], q: Query = Query()) -> list[M]:  # noqa: B008  (Query is immutable)
        """Every entity matching ``q`` (all pages)."""
        return [item async for item in self.iterate(model, q)]

    async def iterate(self, model: type[M], q: Query = Query()) -> AsyncIterator[M]:  # noqa: B008
        """Entities matching ``q``, page by page to the end."""
        async for fetched in self.iterate_fetched(model, q):
            yield fetched.model

    async def iterate_fetched(self, model: type[M], q: Query = Query()) -> AsyncIterator[Fetched[M]]:  # noqa: B008
        """Entities matching ``q`` with their raw records, page by page.

        Paging is ``limit=offset,count`` and stops on the first short page (the shop gives no total
        and no next link). Without a sort in ``q`` the rows are sorted by id, because the shop has no
        default order and an unordered offset can skip or repeat rows.
        """
        if not q.sort:
            q = q.sorted_by(*query.STABLE_ID_ORDER)
        offset = 0
        operation = f"list_{model.RESOURCE}"
        while True:
            records = await self._read_list(model.RESOURCE, q.page(offset, self._page_size), operation)
            for record in records:
                # With language=N the shop sends i18n fields as plain strings in language N.
                yield Fetched(record, await self._validate(model, record, q.language))
            if len(records) < self._page_size:
                return
            offset += self._page_size

    async def iterate_changed(
        self, model: type[M], since: datetime, until: datetime | None = None
    ) -> AsyncIterator[Fetched[M]]:
        """Entities whose ``date_upd`` lies in ``[since, until]``, both inclusive, oldest first.

        Aware datetimes are converted to the shop's time zone (its timestamps are shop-local, naive);
        naive ones are taken as shop-local already. ``until`` defaults to now in shop time. Sorted
        ``[date_upd_ASC,id_ASC]`` so paging is stable; sends ``date=1``. Changes that do not touch
        ``date_upd`` (tracking numbers, stock) are not seen here: read those resources separately.
        """
        low = await self._shop_local(since)
        high = await self._shop_local(until) if until is not None else await self._shop_now()
        q = Query(filters=(query.between("date_upd", low, high),), sort=tuple(query.CHANGE_ORDER))
        async for fetched in self.iterate_fetched(model, q):
            yield fetched

    # --- business reads ---------------------------------------------------------------------------------

    async def get_order(self, id_order: int) -> Order:
        """An order with its order_rows."""
        return await self.get(Order, id_order)

    def iter_orders_changed(
        self, since: datetime, until: datetime | None = None
    ) -> AsyncIterator[Fetched[Order]]:
        """Orders changed in ``[since, until]`` (see :meth:`iterate_changed`)."""
        return self.iterate_changed(Order, since, until)

    async def current_state_of(self, id_order: int) -> int:
        """The order's ``current_state`` id, read alone (a full order read loads every order row).

        Raises InvalidMessage(prestashop_not_found) when the shop has no such order.
        """
        operation = "get_order_state"
        response = await self._transport.send(
            "GET",
            f"orders/{int(id_order)}",
            operation=operation,
            query=query.encode_params([("display", "[id,current_state]")]),
        )
        records = self._records(response, "orders", "order", operation)
        if not records:
            raise InvalidMessage(
                "prestashop_not_found", f"orders {id_order} does not exist", details={"id": str(id_order)}
            )
        return json_reads.to_int(records[0].get("current_state")) or 0

    async def order_details_for(self, id_order: int) -> list[OrderDetail]:
        """The full line items of an order."""
        return await self.list_all(OrderDetail, Query(filters=(equals("id_order", id_order),)))

    async def order_histories_for(self, id_order: int) -> list[OrderHistory]:
        """An order's status changes, oldest first (by date_add, then id)."""
        q = Query(filters=(equals("id_order", id_order),), sort=(Sort("date_add"), Sort("id")))
        return await self.list_all(OrderHistory, q)

    async def order_carriers_for(self, id_order: int) -> list[OrderCarrier]:
        """An order's carrier rows (tracking numbers); changing them does not move orders.date_upd."""
        return await self.list_all(OrderCarrier, Query(filters=(equals("id_order", id_order),)))

    async def order_payments_for(self, reference: str) -> list[OrderPayment]:
        """Payments of an order, found by its reference (order_payments has no id_order)."""
        return await self.list_all(OrderPayment, Query(filters=(equals("order_reference", reference),)))

    async def order_invoices_for(self, id_order: int) -> list[OrderInvoice]:
        """An order's invoices."""
        return await self.list_all(OrderInvoice, Query(filters=(equals("id_order", id_order),)))

    async def get_customer(self, id_customer: int) -> Customer:
        """A customer."""
        return await self.get(Customer, id_customer)

    async def find_customers_by_email(self, email: str) -> list[Customer]:
        """Customers (guests included) with this email, by id; used to link instead of duplicating."""
        return await self.list_all(Customer, Query(filters=(equals("email", email),)))

    async def get_address(self, id_address: int) -> Address:
        """An address, even a soft-deleted one (orders keep pointing at those)."""
        return await self.get(Address, id_address)

    async def get_country(self, id_country: int) -> Country:
        """A country."""
        return await self.get(Country, id_country)

    async def get_state(self, id_state: int) -> State:
        """A state / province."""
        return await self.get(State, id_state)

    async def list_currencies(self) -> list[Currency]:
        """Every currency of the shop."""
        return await self.list_all(Currency)

    async def get_product(self, id_product: int) -> Product:
        """A product with its associations."""
        return await self.get(Product, id_product)

    async def combinations_of(self, id_product: int) -> list[Combination]:
        """The combinations (variants) of a product."""
        return await self.list_all(Combination, Query(filters=(equals("id_product", id_product),)))

    def iter_stock_availables(self) -> AsyncIterator[Fetched[StockAvailable]]:
        """Every stock row, by id: stock has no dates, so a scan is the only way to see changes."""
        return self.iterate_fetched(StockAvailable)

    def iter_order_carriers(self, after_id: int = 0) -> AsyncIterator[Fetched[OrderCarrier]]:
        """Order carrier rows with id > ``after_id``, by id (tracking changes need a periodic full scan)."""
        q = Query(filters=(query.greater_than("id", after_id),)) if after_id else Query()
        return self.iterate_fetched(OrderCarrier, q)

    # --- writes ------------------------------------------------------------------------------------------

    async def add_order_history(
        self, id_order: int, id_state: int, *, send_email: bool = False, skip_if_current: bool = True
    ) -> OrderHistory | None:
        """Move an order to ``id_state`` by POSTing an order_histories row (the shop's status path).

        The shop does not dedupe: posting the current state again re-runs its side effects. So with
        ``skip_if_current`` the order's ``current_state`` is read first and nothing is written when
        it already is ``id_state`` (returns None). ``send_email`` mails the customer the state's
        template. Resolve ``id_state`` with :meth:`load_order_states`, never a literal.
        """
        if skip_if_current:
            response = await self._transport.send(
                "GET",
                f"orders/{int(id_order)}",
                operation="get_order_state",
                query=query.encode_params([("display", "[id,current_state]")]),
            )
            records = self._records(response, "orders", "order", "get_order_state")
            if records and json_reads.to_int(records[0].get("current_state")) == id_state:
                return None
        body = xml_writes.entity_body(
            OrderHistory.NODE, {"id_order": id_order, "id_order_state": id_state, "id_employee": 0}
        )
        params = [("sendemail", "1")] if send_email else []
        return await self._write(
            OrderHistory, "POST", OrderHistory.RESOURCE, body, params, "add_order_history"
        )

    async def set_tracking_number(
        self, id_order: int, tracking_number: str, *, id_carrier: int | None = None, send_email: bool = False
    ) -> OrderCarrier:
        """Set the tracking number on the order's carrier row (the latest one, or ``id_carrier``'s).

        Does nothing when it is already set to that value. ``send_email`` sends the "in transit" mail.
        """
        if not _TRACKING_NUMBER.fullmatch(tracking_number):
            raise InvalidMessage(
                "invalid_tracking_number",
                f"{tracking_number!r} is not a tracking number PrestaShop accepts (isTrackingNumber, ≤ 64)",
                field_path="tracking_number",
            )
        filters = [equals("id_order", id_order)]
        if id_carrier is not None:
            filters.append(equals("id_carrier", id_carrier))
        rows = [f async for f in self.iterate_fetched(OrderCarrier, Query(filters=tuple(filters)))]
        if not rows:
            raise InvalidMessage(
                "prestashop_no_order_carrier",
                f"order {id_order} has no order_carriers row"
                + (f" for carrier {id_carrier}" if id_carrier else ""),
                details={"id_order": str(id_order)},
            )
        current = max(rows, key=lambda f: f.model.id)
        if current.model.tracking_number == tracking_number:
            return current.model
        params = [("sendemail", "1")] if send_email else []
        return await self._update(
            OrderCarrier, current.model.id, {"tracking_number": tracking_number}, current.record, params
        )

    async def set_stock(
        self, id_product: int, id_product_attribute: int, quantity: int, *, id_shop: int | None = None
    ) -> StockAvailable:
        """Set the available quantity of a product/combination (in ``id_shop`` when multistore).

        The row is located by (id_product, id_product_attribute, id_shop); nothing is written when
        it already holds ``quantity``. Raises InvalidMessage(unknown_sku) when the shop has no row.
        """
        filters = [equals("id_product", id_product), equals("id_product_attribute", id_product_attribute)]
        if id_shop is not None:
            filters.append(equals("id_shop", id_shop))
        rows = [f async for f in self.iterate_fetched(StockAvailable, Query(filters=tuple(filters)))]
        where = {"id_product": str(id_product), "id_product_attribute": str(id_product_attribute)}
        if not rows:
            raise InvalidMessage(
                "unknown_sku", "PrestaShop has no stock row for this product/combination", details=where
            )
        if len(rows) > 1:
            raise InvalidMessage(
                "prestashop_ambiguous_stock",
                f"{len(rows)} stock rows match (multistore): give id_shop",
                details=where,
            )
        return await self.set_stock_of(rows[0], quantity)

    async def set_stock_of(self, row: Fetched[StockAvailable], quantity: int) -> StockAvailable:
        """Set the quantity of a stock row the caller already read (``iterate_fetched``): its record is
        written back whole with the new quantity, without reading it again; nothing is written when it
        already holds ``quantity``."""
        if row.model.quantity == quantity:
            return row.model
        return await self._update(StockAvailable, row.model.id, {"quantity": quantity}, row.record, [])

    async def create_customer(self, fields: Mapping[str, xml_writes.XmlValue]) -> Customer:
        """Create a customer (needs passwd, lastname, firstname, email).

        Raises DuplicateEmailError when the email is taken: look the customer up and link instead.
        """
        return await self._create(Customer, fields, "create_customer")

    async def update_customer(self, id_customer: int, changes: Mapping[str, xml_writes.XmlValue]) -> Customer:
        """Change some fields of a customer, keeping every other one (secure_key included)."""
        return await self._update(Customer, id_customer, changes, None, [])

    async def create_address(self, fields: Mapping[str, xml_writes.XmlValue]) -> Address:
        """Create an address (needs id_country, alias, lastname, firstname, address1, city)."""
        return await self._create(Address, fields, "create_address")

    async def update_address(self, id_address: int, changes: Mapping[str, xml_writes.XmlValue]) -> Address:
        """Change some fields of an address, keeping every other one."""
        return await self._update(Address, id_address, changes, None, [])

    async def update_product(self, id_product: int, changes: Mapping[str, xml_writes.XmlValue]) -> Product:
        """Change some fields of a product (never ``quantity``: stock goes through :meth:`set_stock`)."""
        return await self._update(Product, id_product, changes, None, [])

    async def update_combination(
        self, id_combination: int, changes: Mapping[str, xml_writes.XmlValue]
    ) -> Combination:
        """Change some fields of a combination, keeping every other one."""
        return await self._update(Combination, id_combination, changes, None, [])

    # --- internals -------------------------------------------------------------------------------------

    async def _create(self, model: type[M], fields: Mapping[str, xml_writes.XmlValue], operation: str) -> M:
        if "id" in fields:
            raise ValueError("a new entity must not carry an id (the shop answers 400 code 91)")
        # Refuse what any version refuses: creating with a read-only field is always our mistake.
        self._refuse_read_only(model, fields, PsVersion(99))
        body = xml_writes.entity_body(model.NODE, fields)
        created = await self._write(model, "POST", model.RESOURCE, body, [], operation)
        if created is None:
            raise RetryableError(f"PrestaShop {operation}: 2xx without the created entity")
        return created

    async def _update(
        self,
        model: type[M],
        id_: int,
        changes: Mapping[str, xml_writes.XmlValue],
        record: json_reads.JsonRecord | None,
        params: Sequence[tuple[str, str]],
    ) -> M:
        """PATCH ``changes`` on 8.x+; on 1.7 PUT the whole entity with ``changes`` applied."""
        operation = f"update_{model.NODE}"
        if "id" in changes:
            raise ValueError("the id is given separately, not among the changes")
        if record is None and (self.version is None or not self.version.supports_patch):
            record = (await self.get_fetched(model, id_)).record  # also tells us the version
        version = self.version or await self.detect_version()
        self._refuse_read_only(model, changes, version)
        if version.supports_patch:
            method, fields = "PATCH", {"id": id_, **changes}
        else:
            assert record is not None  # read above whenever PATCH is unavailable
            kept = xml_writes.writable_fields(record, resource=model.RESOURCE, version=version)
            method, fields = "PUT", {**kept, **changes, "id": id_}
        body = xml_writes.entity_body(model.NODE, fields)
        updated = await self._write(model, method, f"{model.RESOURCE}/{int(id_)}", body, params, operation)
        return updated if updated is not None else await self.get(model, id_)

    @staticmethod
    def _refuse_read_only(model: type[M], fields: Mapping[str, object], version: PsVersion) -> None:
        refused = xml_writes.read_only_fields(model.RESOURCE, version) & set(fields)
        if refused:
            # A programming error, not bad data: the shop would answer 400 code 93 to every attempt.
            raise ValueError(f"{sorted(refused)} are read-only on {model.RESOURCE} in PrestaShop {version}")

    async def _write(
        self,
        model: type[M],
        method: str,
        path: str,
        body: bytes,
        params: Sequence[tuple[str, str]],
        operation: str,
    ) -> M | None:
        response = await self._transport.send(
            method, path, operation=operation, query=query.encode_params(params), body=body
        )
        if not response.content:
            return None
        records = self._records(response, model.RESOURCE, model.NODE, operation)
        return await self._validate(model, records[0]) if records else None

    async def _read_list(self, resource: str, q: Query, operation: str) -> list[json_reads.JsonRecord]:
        response = await self._transport.send("GET", resource, operation=operation, query=q.encode())
        node = _singular(resource)
        return self._records(response, resource, node, operation)

    @staticmethod
    def _records(
        response: httpx.Response, resource: str, node: str, operation: str
    ) -> list[json_reads.JsonRecord]:
        try:
            return json_reads.extract_records(json_reads.decode_body(response.content), resource, node)
        except json_reads.UnexpectedShapeError as exc:
            # A 2xx the shop would never send itself: a proxy page or a module printing output.
            raise RetryableError(
                f"PrestaShop {operation}: unexpected body: {exc}", status=response.status_code
            ) from exc

    async def _validate(
        self, model: type[M], record: json_reads.JsonRecord, language: int | None = None
    ) -> M:
        """Parse ``record``; a plain-string i18n value is in ``language`` (default: the shop's)."""
        if language is None:
            language = await self._language() if i18n_fields(model) else 0
        return self._parse(model, record, language)

    @staticmethod
    def _parse(model: type[M], record: json_reads.JsonRecord, language: int = 0) -> M:
        try:
            return model.model_validate(record, context={"language_id": language})
        except ValidationError as exc:
            first = exc.errors()[0]
            path = ".".join(str(part) for part in first["loc"])
            raise InvalidMessage(
                "prestashop_unreadable",
                f"{model.RESOURCE} {record.get('id')}: {first['msg']}",
                field_path=path,
                details={"resource": model.RESOURCE, "id": str(record.get("id"))},
            ) from exc

    async def _language(self) -> int:
        if self._language_id is None:
            value = (await self.configuration_values(_CONFIG_LANGUAGE)).get(_CONFIG_LANGUAGE, "")
            if not value.isdigit():
                raise InvalidMessage(
                    "prestashop_configuration",
                    f"PS_LANG_DEFAULT {value!r} is not a language id",
                    details={"configuration": _CONFIG_LANGUAGE},
                )
            self._language_id = int(value)
        return self._language_id

    async def _shop_local(self, moment: datetime) -> datetime:
        if moment.tzinfo is None:
            return moment
        return moment.astimezone(await self.shop_time_zone()).replace(tzinfo=None)

    async def _shop_now(self) -> datetime:
        return datetime.now(await self.shop_time_zone()).replace(tzinfo=None, microsecond=0)


def _singular(resource: str) -> str:
    model = MODEL_BY_RESOURCE.get(resource)
    return model.NODE if model is not None else resource.removesuffix("s")
