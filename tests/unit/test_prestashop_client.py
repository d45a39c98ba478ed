"""PrestaShopClient against a MockTransport shop that answers as the reference says (§1, §2, §7).

``FakeShop`` is deliberately small: it renders JSON the way the webservice does (bare ``[]``,
plural-wrapped lists, singular-wrapped ids without ``display``, falsy fields dropped on 8.x), checks
what a real shop checks (``date=1`` for date filters, PATCH only on 8.x, read-only fields refused,
XML-only bodies) and records every request so the tests can assert on the wire.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from pydantic import SecretStr

from connectors.prestashop import query
from connectors.prestashop.client import PrestaShopClient
from connectors.prestashop.models import Country, Customer, Order, Product, StockAvailable
from connectors.prestashop.order_states import StandardState
from connectors.prestashop.transport import PsVersion
from pipeline.errors import InvalidMessage

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]

KEY = SecretStr("ABCDEFGHIJKLMNOPQRSTUVWXYZ012345")
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "prestashop"
NODES = {
    "orders": "order",
    "customers": "customer",
    "addresses": "address",
    "countries": "country",
    "products": "product",
    "stock_availables": "stock_available",
    "order_histories": "order_history",
    "order_carriers": "order_carrier",
    "order_states": "order_state",
    "configurations": "configuration",
    "order_payments": "order_payment",
}
READ_ONLY = {"products": {"quantity", "manufacturer_name"}}
READ_ONLY_8_1 = {"customers": {"secure_key", "last_passwd_gen"}}
NOW = "2024-01-01 12:00:00"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _fixture(stream: str) -> dict[str, Any]:
    for line in (FIXTURES / "airbyte_expected_records_subset.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip() and json.loads(line)["stream"] == stream:
            data: dict[str, Any] = json.loads(line)["data"]
            return data
    raise KeyError(stream)


def _json(status: int, payload: object, version: str) -> httpx.Response:
    return httpx.Response(status, content=json.dumps(payload).encode(), headers={"PSWS-Version": version})


def _error(status: int, code: int, message: str, version: str) -> httpx.Response:
    return _json(status, {"errors": [{"code": code, "message": message}]}, version)


def _matches(value: object, expression: str) -> bool:
    text = "" if value is None else str(value)
    if expression.startswith(">["):
        return Decimal(text) > Decimal(expression[2:-1])
    inner = expression[1:-1]
    if "," in inner:  # BETWEEN, inclusive on both ends, bounds sorted first
        low, high = sorted(inner.split(","))
        return low <= text <= high
    return text in inner.split("|")


class FakeShop:
    """A MockTransport handler speaking the webservice's JSON dialect for a handful of resources."""

    def __init__(self, version: str = "8.1.7", **data: list[dict[str, Any]]) -> None:
        self.version = version
        self.data: dict[str, list[dict[str, Any]]] = {name: list(rows) for name, rows in data.items()}
        self.data.setdefault(
            "configurations",
            [
                {"id": 1, "name": "PS_LANG_DEFAULT", "value": "1"},
                {"id": 2, "name": "PS_TIMEZONE", "value": "Europe/Paris"},
            ],
        )
        self.requests: list[httpx.Request] = []

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handle))

    def client(self, **options: Any) -> PrestaShopClient:
        return PrestaShopClient(self.http(), "https://shop.test/", KEY, **options)

    @property
    def writes(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.method != "GET"]

    def params(self, index: int) -> dict[str, str]:
        return dict(self.requests[index].url.params)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert request.headers["Authorization"] == "Basic QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVowMTIzNDU6"
        parts = request.url.path.removeprefix("/api/").split("/")
        resource = parts[0]
        if request.method == "GET":
            if len(parts) == 2:
                return self._get_one(request, resource, int(parts[1]))
            return self._get_list(request, resource)
        return self._write(request, resource)

    def _get_one(self, request: httpx.Request, resource: str, id_: int) -> httpx.Response:
        row = next((r for r in self.data.get(resource, []) if r["id"] == id_), None)
        if row is None:
            return httpx.Response(404, headers={"PSWS-Version": self.version})  # empty body
        if "display" not in request.url.params:
            shown = dict(row)
            if PsVersion.parse(self.version).supports_patch:  # 8.x+ drops falsy fields here
                shown = {k: v for k, v in row.items() if v not in ("", "0", 0, None)}
            return _json(200, {NODES[resource]: shown}, self.version)
        return _json(200, {resource: [self._displayed(row, request.url.params["display"])]}, self.version)

    @staticmethod
    def _displayed(row: dict[str, Any], display: str) -> dict[str, Any]:
        if display == "full":
            return row
        names = display.strip("[]").split(",")
        return {k: v for k, v in row.items() if k in names}

    def _get_list(self, request: httpx.Request, resource: str) -> httpx.Response:
        params = request.url.params
        rows = list(self.data.get(resource, []))
        for name, expression in params.multi_items():
            if not name.startswith("filter["):
                continue
            field = name[len("filter[") : -1]
            if field in query.DATE_FIELDS and params.get("date") != "1":
                return _error(400, 32, f'This filter does not exist. Did you mean: "{field}"?', self.version)
            rows = [r for r in rows if _matches(r.get(field), expression)]
        for token in reversed(params.get("sort", "").strip("[]").split(",") if "sort" in params else []):
            field, _, direction = token.rpartition("_")
            rows.sort(key=lambda r: str(r.get(field, "")).rjust(20), reverse=direction == "DESC")
        if "limit" in params:
            offset, count = (int(x) for x in params["limit"].split(","))
            rows = rows[offset : offset + count]
        if not rows:
            return _json(200, [], self.version)  # the empty list is a bare array
        display = params.get("display")
        if display is None:
            return _json(200, {resource: [{"id": r["id"]} for r in rows]}, self.version)
        return _json(200, {resource: [self._displayed(r, display) for r in rows]}, self.version)

    def _write(self, request: httpx.Request, resource: str) -> httpx.Response:
        version = PsVersion.parse(self.version)
        if request.method == "PATCH" and not version.supports_patch:
            return _error(405, 23, "Method PATCH is not valid", self.version)
        try:
            document = ET.fromstring(request.content)  # noqa: S314  (our own client's output)
        except ET.ParseError:
            return _error(500, 127, "XML error : String could not be parsed as XML", self.version)
        entity = document.find(NODES[resource])
        assert entity is not None
        fields = {child.tag: child.text or "" for child in entity}
        refused = READ_ONLY.get(resource, set()) | (
            READ_ONLY_8_1.get(resource, set()) if version >= PsVersion(8, 1) else set()
        )
        for name in fields:
            if name in refused:
                return _error(400, 93, f'parameter "{name}" not writable.', self.version)
        rows = self.data.setdefault(resource, [])
        if request.method == "POST":
            row: dict[str, Any] = {"id": max((r["id"] for r in rows), default=0) + 1, **fields}
            rows.append(row)
            return _json(201, {NODES[resource]: row}, self.version)
        id_ = int(fields.pop("id"))
        current = next(r for r in rows if r["id"] == id_)
        if request.method == "PUT":  # full replace: every omitted field is lost
            current.clear()
            current["id"] = id_
        current.update(fields)
        return _json(200, {NODES[resource]: current}, self.version)


def _body(request: httpx.Request) -> dict[str, str]:
    document = ET.fromstring(request.content)  # noqa: S314  (our own client's output)
    assert document.tag == "prestashop"
    (entity,) = list(document)
    return {child.tag: child.text or "" for child in entity}


def _orders(count: int) -> list[dict[str, Any]]:
    return [dict(_fixture("orders"), id=i, reference=f"REF{i:06d}") for i in range(1, count + 1)]


# --- fact 1: JSON reads opt in with the exact value; writes are XML -------------------------------------


async def test_reads_ask_for_json_with_the_exact_uppercase_value_and_basic_auth() -> None:
    shop = FakeShop(orders=_orders(1))
    order = await shop.client().get_order(1)
    assert order.reference == "REF000001"
    request = shop.requests[0]
    assert request.headers["Output-Format"] == "JSON"
    assert "ws_key" not in str(request.url)
    assert request.url.path == "/api/orders/1"


async def test_writes_are_xml_documents_wrapped_in_prestashop() -> None:
    shop = FakeShop(orders=[{"id": 42, "current_state": "2"}])
    await shop.client().add_order_history(42, 4)
    (post,) = shop.writes
    assert post.content.startswith(b"<?xml")
    assert b"<prestashop xmlns:xlink=" in post.content
    assert _body(post) == {"id_order": "42", "id_order_state": "4", "id_employee": "0"}
    assert b"\n" not in post.content.split(b"?>", 1)[1].strip()  # no whitespace around values


# --- fact 2: JSON shape variants ------------------------------------------------------------------------


async def test_single_read_sends_display_full_so_falsy_fields_survive() -> None:
    shop = FakeShop(stock_availables=[{"id": 5, "id_product": "3", "quantity": "0", "out_of_stock": "2"}])
    stock = await shop.client().get(StockAvailable, 5)
    assert shop.params(0) == {"display": "full"}
    assert stock.quantity == Decimal(0)


async def test_singular_wrapped_entity_with_dropped_fields_is_read_too() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return _json(200, {"order": {"id": 7, "reference": "ABC", "total_paid": "10.000000"}}, "8.1.7")

    client = PrestaShopClient(httpx.AsyncClient(transport=httpx.MockTransport(handler)), "https://s", KEY)
    order = await client.get(Order, 7)
    assert (order.id, order.reference, order.total_paid, order.valid, order.rows) == (
        7,
        "ABC",
        Decimal("10.000000"),
        False,
        [],
    )


async def test_empty_list_is_a_bare_array() -> None:
    shop = FakeShop(orders=[])
    assert await shop.client().order_details_for(99) == []
    assert shop.requests[0].url.path == "/api/order_details"


async def test_absent_id_is_404_with_empty_body() -> None:
    shop = FakeShop(orders=[])
    with pytest.raises(InvalidMessage) as caught:
        await shop.client().get_order(404)
    assert caught.value.reason == "prestashop_not_found"


async def test_i18n_plain_string_belongs_to_the_shops_default_language() -> None:
    shop = FakeShop(countries=[_fixture("countries")])
    shop.data["configurations"][0]["value"] = "2"  # PS_LANG_DEFAULT
    client = shop.client()
    assert (await client.get(Country, 1)).name == {2: "Germany"}
    assert (await client.get(Country, 1)).name == {2: "Germany"}
    config_reads = [r for r in shop.requests if r.url.path == "/api/configurations"]
    assert len(config_reads) == 1  # read once, then remembered


# --- fact 3/4: PATCH vs PUT by version, read-only fields never sent -------------------------------------


async def test_update_customer_on_8x_patches_only_the_change() -> None:
    shop = FakeShop(version="8.1.7", customers=[_fixture("customers")])
    client = shop.client()
    await client.get_customer(1)  # any response tells the client the version
    updated = await client.update_customer(1, {"lastname": "Martin"})
    (patch,) = shop.writes
    assert patch.method == "PATCH"
    assert patch.url.path == "/api/customers/1"
    assert _body(patch) == {"lastname": "Martin", "id": "1"}
    assert updated.lastname == "Martin"
    assert shop.data["customers"][0]["secure_key"] == "490f551646c7f55281a5be6e9d70f121"


async def test_update_customer_on_17_puts_everything_it_must_keep() -> None:
    shop = FakeShop(version="1.7.8.8", customers=[_fixture("customers")])
    updated = await shop.client().update_customer(1, {"lastname": "Martin"})
    (put,) = shop.writes
    assert put.method == "PUT"
    sent = _body(put)
    assert sent["id"] == "1"
    assert sent["lastname"] == "Martin"
    # A PUT nulls every omitted field: the secure key (future orders) and date_add must travel.
    assert sent["secure_key"] == "490f551646c7f55281a5be6e9d70f121"
    assert sent["date_add"] == "2021-07-23 23:18:07"
    assert sent["email"] == "anonymous@psgdpr.com"
    assert "associations" not in sent
    assert updated.secure_key == "490f551646c7f55281a5be6e9d70f121"
    assert updated.date_add == datetime(2021, 7, 23, 23, 18, 7)


async def test_version_unknown_update_reads_first_then_chooses() -> None:
    shop = FakeShop(version="8.0.4", addresses=[_fixture("addresses")])
    await shop.client().update_address(1, {"city": "Lyon"})
    assert [r.method for r in shop.requests] == ["GET", "PATCH"]


async def test_read_only_customer_fields_are_refused_before_any_request_on_8_1() -> None:
    shop = FakeShop(version="8.1.0", customers=[_fixture("customers")])
    client = shop.client()
    await client.get_customer(1)
    with pytest.raises(ValueError, match="secure_key"):
        await client.update_customer(1, {"secure_key": "0" * 32})
    assert shop.writes == []


async def test_product_put_on_17_strips_read_only_getters() -> None:
    shop = FakeShop(version="1.7.8.8", products=[_fixture("products")])
    product = await shop.client().update_product(1, {"reference": "demo_1b"})
    sent = _body(shop.writes[0])
    assert "quantity" not in sent
    assert "manufacturer_name" not in sent
    assert sent["reference"] == "demo_1b"
    assert sent["price"] == "23.900000"
    assert isinstance(product, Product)


async def test_product_quantity_is_never_written() -> None:
    shop = FakeShop(products=[_fixture("products")])
    with pytest.raises(ValueError, match="quantity"):
        await shop.client().update_product(1, {"quantity": 5})
    assert shop.writes == []


# --- fact 6/7: date=1, inclusive window in shop time, paging with a stable sort -------------------------


async def test_orders_changed_window_is_inclusive_in_shop_time_with_date_1() -> None:
    rows = [
        dict(_fixture("orders"), id=1, date_upd="2024-01-01 09:59:59"),
        dict(_fixture("orders"), id=2, date_upd="2024-01-01 10:00:00"),
        dict(_fixture("orders"), id=3, date_upd="2024-01-01 12:00:00"),
        dict(_fixture("orders"), id=4, date_upd="2024-01-01 12:00:01"),
    ]
    shop = FakeShop(orders=rows)
    client = shop.client()
    since = datetime(2024, 1, 1, 9, 0, 0, tzinfo=UTC)  # 10:00 in Europe/Paris (the shop's PS_TIMEZONE)
    seen = [f.model.id async for f in client.iter_orders_changed(since, datetime(2024, 1, 1, 12, 0, 0))]
    assert seen == [2, 3]
    order_reads = [r for r in shop.requests if r.url.path == "/api/orders"]
    params = dict(order_reads[0].url.params)
    assert params["filter[date_upd]"] == "[2024-01-01 10:00:00,2024-01-01 12:00:00]"
    assert params["date"] == "1"
    assert params["sort"] == "[date_upd_ASC,id_ASC]"
    assert params["display"] == "full"


async def test_changed_records_come_with_their_raw_source_record() -> None:
    shop = FakeShop(orders=_orders(1))
    fetched = [f async for f in shop.client().iter_orders_changed(datetime(2021, 1, 1), datetime(2022, 1, 1))]
    assert fetched[0].record == shop.data["orders"][0]
    assert fetched[0].model.reference == "REF000001"


async def test_paging_stops_on_a_short_page_with_a_stable_sort() -> None:
    shop = FakeShop(orders=list(reversed(_orders(5))))
    ids = [order.id async for order in shop.client(page_size=2).iterate(Order)]
    assert ids == [1, 2, 3, 4, 5]
    assert [shop.params(i)["limit"] for i in range(3)] == ["0,2", "2,2", "4,2"]
    assert all(shop.params(i)["sort"] == "[id_ASC]" for i in range(3))


async def test_a_full_last_page_costs_one_more_request_that_returns_a_bare_array() -> None:
    shop = FakeShop(orders=_orders(4))
    ids = [order.id async for order in shop.client(page_size=2).iterate(Order)]
    assert ids == [1, 2, 3, 4]
    assert [shop.params(i)["limit"] for i in range(3)] == ["0,2", "2,2", "4,2"]


def test_query_encoding_escapes_every_special_character() -> None:
    q = query.Query(
        filters=(
            query.between("date_upd", datetime(2024, 1, 1), datetime(2024, 1, 31, 23, 59, 59)),
            query.equals("reference", "AB%C", "XYZ"),
        ),
        sort=tuple(query.CHANGE_ORDER),
    ).page(100, 50)
    raw = q.encode()
    assert "filter%5Bdate_upd%5D=%5B2024-01-01%2000%3A00%3A00%2C2024-01-31%2023%3A59%3A59%5D" in raw
    assert "filter%5Breference%5D=%5BAB%25C%7CXYZ%5D" in raw
    assert "limit=100%2C50" in raw
    assert "date=1" in raw
    assert " " not in raw
    assert "+" not in raw
    assert unquote(raw).count("[") == unquote(raw).count("]")


def test_date_filters_and_sorts_always_carry_date_1() -> None:
    assert ("date", "1") in query.Query(sort=(query.Sort("date_add", "DESC"),)).params()
    assert ("date", "1") not in query.Query(filters=(query.equals("id_order", 5),)).params()


@pytest.mark.parametrize("value", ["a|b", "x]", "", "[y"])
def test_filter_values_that_would_change_the_expression_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="cannot be expressed"):
        query.equals("email", value)


def test_aware_datetimes_cannot_sneak_into_a_filter() -> None:
    with pytest.raises(ValueError, match="shop-local"):
        query.between("date_upd", datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2))


# --- fact 8: status through order_histories, states resolved from the shop ------------------------------


def _upgraded_shop_states() -> Iterator[dict[str, Any]]:
    # A shop upgraded from 1.6 plus a custom state: ids differ from a fresh install's.
    yield {"id": 2, "paid": "1", "logable": "1", "name": "Payment accepted"}
    yield {"id": 4, "paid": "1", "logable": "1", "shipped": "1", "delivery": "1", "name": "Shipped"}
    yield {"id": 15, "paid": "1", "logable": "1", "shipped": "1", "delivery": "1", "name": "Shipped (DHL)"}
    yield {"id": 6, "name": "Canceled"}


async def test_order_states_resolve_by_configuration_key_not_by_id() -> None:
    config = [
        {"id": 1, "name": "PS_LANG_DEFAULT", "value": "1"},
        {"id": 10, "name": "PS_OS_SHIPPING", "value": "15"},
        {"id": 11, "name": "PS_OS_CANCELED", "value": "6"},
        {"id": 12, "name": "PS_OS_PAYMENT", "value": "2"},
    ]
    shop = FakeShop(order_states=list(_upgraded_shop_states()), configurations=config)
    catalogue = await shop.client().load_order_states()
    assert catalogue.id_for(StandardState.SHIPPED) == 15
    assert catalogue.state(15).name == {1: "Shipped (DHL)"}
    assert catalogue.key_of(6) is StandardState.CANCELED
    assert [s.id for s in catalogue.matching(shipped=True)] == [4, 15]
    with pytest.raises(LookupError, match="PS_OS_DELIVERED"):
        catalogue.id_for(StandardState.DELIVERED)


async def test_add_order_history_posts_with_sendemail() -> None:
    shop = FakeShop(orders=[{"id": 42, "current_state": "2"}])
    history = await shop.client().add_order_history(42, 4, send_email=True)
    post = shop.writes[0]
    assert (post.method, post.url.path, dict(post.url.params)) == (
        "POST",
        "/api/order_histories",
        {"sendemail": "1"},
    )
    assert history is not None
    assert (history.id_order, history.id_order_state) == (42, 4)


async def test_add_order_history_skips_the_current_state_because_the_shop_does_not_dedupe() -> None:
    shop = FakeShop(orders=[{"id": 42, "current_state": "4"}])
    assert await shop.client().add_order_history(42, 4) is None
    assert shop.writes == []
    assert shop.params(0) == {"display": "[id,current_state]"}


# --- fact 9: changes date_upd cannot see need their own reads and writes --------------------------------


async def test_tracking_number_goes_to_order_carriers_and_leaves_orders_date_upd_alone() -> None:
    shop = FakeShop(orders=_orders(1), order_carriers=[_fixture("order_carriers")])
    client = shop.client()
    await client.get_order(1)
    carrier = await client.set_tracking_number(1, "1Z999AA10123456784", send_email=True)
    patch = shop.writes[0]
    assert (patch.method, patch.url.path, dict(patch.url.params)) == (
        "PATCH",
        "/api/order_carriers/1",
        {"sendemail": "1"},
    )
    assert _body(patch) == {"tracking_number": "1Z999AA10123456784", "id": "1"}
    assert carrier.tracking_number == "1Z999AA10123456784"
    since = datetime(2024, 1, 1)
    assert [f async for f in client.iter_orders_changed(since, datetime(2030, 1, 1))] == []
    assert [c.tracking_number for c in await client.order_carriers_for(1)] == ["1Z999AA10123456784"]


async def test_same_tracking_number_is_not_written_again() -> None:
    row = dict(_fixture("order_carriers"), tracking_number="1Z1")
    shop = FakeShop(order_carriers=[row])
    await shop.client().set_tracking_number(1, "1Z1")
    assert shop.writes == []


async def test_tracking_number_the_shop_would_refuse_is_invalid_before_sending() -> None:
    shop = FakeShop(order_carriers=[_fixture("order_carriers")])
    with pytest.raises(InvalidMessage) as caught:
        await shop.client().set_tracking_number(1, "bad\nvalue")
    assert caught.value.reason == "invalid_tracking_number"
    assert shop.requests == []


async def test_set_stock_locates_the_row_and_patches_quantity() -> None:
    rows = [
        dict(_fixture("stock_availables"), id=1, id_product_attribute="0", quantity="10"),
        dict(_fixture("stock_availables"), id=20, id_product_attribute="1", quantity="3"),
    ]
    shop = FakeShop(stock_availables=rows)
    client = shop.client()
    result = await client.set_stock(1, 1, 7, id_shop=1)
    params = shop.params(0)
    assert params["filter[id_product]"] == "[1]"
    assert params["filter[id_product_attribute]"] == "[1]"
    assert params["filter[id_shop]"] == "[1]"
    (patch,) = shop.writes
    assert patch.url.path == "/api/stock_availables/20"
    assert _body(patch) == {"quantity": "7", "id": "20"}
    assert result.quantity == Decimal(7)
    scanned = {f.model.id: f.model.quantity async for f in client.iter_stock_availables()}
    assert scanned == {1: Decimal(10), 20: Decimal(7)}


async def test_set_stock_on_17_puts_every_required_field() -> None:
    shop = FakeShop(version="1.7.8.8", stock_availables=[_fixture("stock_availables")])
    await shop.client().set_stock(1, 0, 5)
    sent = _body(shop.writes[0])
    assert shop.writes[0].method == "PUT"
    assert sent == {
        "id": "1",
        "id_product": "1",
        "id_product_attribute": "0",
        "id_shop": "1",
        "id_shop_group": "0",
        "quantity": "5",
        "depends_on_stock": "0",
        "out_of_stock": "2",
        "location": "",
    }


async def test_set_stock_is_a_no_op_when_unchanged_and_invalid_when_unknown() -> None:
    shop = FakeShop(stock_availables=[_fixture("stock_availables")])
    client = shop.client()
    await client.set_stock(1, 0, 2958)
    assert shop.writes == []
    with pytest.raises(InvalidMessage) as caught:
        await client.set_stock(999, 0, 1)
    assert caught.value.reason == "unknown_sku"


async def test_payments_are_found_by_order_reference() -> None:
    shop = FakeShop(order_payments=[_fixture("order_payments")])
    payments = await shop.client().order_payments_for("1000")
    assert [p.amount for p in payments] == [Decimal("30.000000")]
    assert shop.params(0)["filter[order_reference]"] == "[1000]"


# --- creates, duplicates and version detection ----------------------------------------------------------


async def test_create_customer_posts_xml_and_returns_the_created_entity() -> None:
    shop = FakeShop(customers=[])
    customer = await shop.client().create_customer(
        {
            "email": "jo@example.test",
            "firstname": "Jo",
            "lastname": "Doe & Co",
            "passwd": "s3cret-pass",
            "active": True,
        }
    )
    assert isinstance(customer, Customer)
    assert customer.id == 1
    assert customer.lastname == "Doe & Co"
    assert _body(shop.writes[0])["active"] == "1"


async def test_create_refuses_an_id_and_read_only_fields() -> None:
    shop = FakeShop(customers=[])
    client = shop.client()
    with pytest.raises(ValueError, match="id"):
        await client.create_customer({"id": 5, "email": "x@y.test"})
    with pytest.raises(ValueError, match="secure_key"):
        await client.create_customer({"email": "x@y.test", "secure_key": "k"})
    assert shop.requests == []


async def test_detect_version_from_the_psws_version_header() -> None:
    shop = FakeShop(version="9.1.0")
    client = shop.client()
    before = client.version
    detected = await client.detect_version()
    assert before is None
    assert detected == PsVersion(9, 1, 0)
    assert client.version == detected
    assert detected.supports_patch
    assert detected.customer_secure_fields_read_only
    assert not PsVersion.parse("1.7.8.8").supports_patch


async def test_tracking_on_17_puts_the_whole_carrier_row() -> None:
    shop = FakeShop(version="1.7.8.8", order_carriers=[_fixture("order_carriers")])
    await shop.client().set_tracking_number(1, "TRK-1")
    put = shop.writes[0]
    assert put.method == "PUT"
    sent = _body(put)
    assert (sent["id"], sent["id_order"], sent["id_carrier"], sent["tracking_number"]) == (
        "1",
        "1",
        "2",
        "TRK-1",
    )
    assert sent["date_add"] == "2021-07-23 23:18:42"
    assert shop.data["order_carriers"][0]["shipping_cost_tax_incl"] == "2.000000"


async def test_i18n_values_are_written_per_language() -> None:
    several = [{"id": "1", "value": "T-shirt"}, {"id": "2", "value": "Tee & <shirt>"}]
    shop = FakeShop(version="1.7.8.8", products=[dict(_fixture("products"), name=several)])
    await shop.client().update_product(1, {"price": Decimal("19.5")})
    document = ET.fromstring(shop.writes[0].content)  # noqa: S314  (our own client's output)
    languages = document.findall("./product/name/language")
    assert [(e.get("id"), e.text) for e in languages] == [("1", "T-shirt"), ("2", "Tee & <shirt>")]
    assert document.findtext("./product/price") == "19.5"
