"""PrestaShopClient driven against the PrestaShop sandbox over real loopback HTTP.

Two independent implementations of reference/prestashop/prestashop.md meet here: the client
(``connectors/prestashop``) and the sandbox (``sandbox/prestashop``, which never imports the client).
Each of the reference's "ten facts" (§7) is shown through the client's public operations against a
uvicorn-served sandbox, for every supported version where the fact depends on the version
(1.7.8.8, 8.1.7, 9.1.0). Expectations are read back through the sandbox's admin API (plain JSON,
no client code involved) or the raw webservice, never from the client itself.

The fixture records (tests/fixtures/prestashop) are covered in
``test_prestashop_client_sandbox_fixtures.py``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

import httpx
import pytest
from pydantic import SecretStr

from connectors.prestashop.client import PrestaShopClient
from connectors.prestashop.models import Product, StockAvailable
from connectors.prestashop.order_states import StandardState
from connectors.prestashop.query import Query, between, equals
from connectors.prestashop.transport import DuplicateEmailError, PrestaShopProtocolError, Transport
from pipeline.errors import InvalidMessage, RetryableError
from sandbox.prestashop.config import SUPPORTED_VERSIONS, KeyPermissions, SandboxConfig
from sandbox.prestashop.server import SandboxServer

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

KEY = "CLIENTSANDBOXKEY0123456789ABCDEF"
LIMITED_KEY = "LIMITEDKEY0123456789ABCDEFGHIJKL"
SHOP_TIME_ZONE = "Europe/Paris"
# Each version's shop lives in another zone, so the client has to read PS_TIMEZONE to get windows right.
ZONES = {"1.7.8.8": "America/New_York", "8.1.7": SHOP_TIME_ZONE, "9.1.0": "Asia/Kolkata"}
# 1,000 products (the paging test needs them all); few customers and orders keep the start fast.
SHOP = SandboxConfig(keys=(KeyPermissions(KEY),), customers=40, orders=30, seed=11, timezone=SHOP_TIME_ZONE)
# Standard states moved off their default ids, as on a shop upgraded from 1.6 or with custom states.
RENUMBERED = {
    "PS_OS_PAYMENT": 22,
    "PS_OS_PREPARATION": 23,
    "PS_OS_SHIPPING": 24,
    "PS_OS_DELIVERED": 25,
    "PS_OS_CANCELED": 26,
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module", params=SUPPORTED_VERSIONS)
def shop(request: pytest.FixtureRequest) -> Iterator[SandboxServer]:
    """One seeded sandbox per supported version, shared by the module's tests (each test touches
    its own orders/customers/products, so the order the tests run in does not matter)."""
    version: str = request.param
    config = SandboxConfig(**{**_fields(SHOP), "version": version, "timezone": ZONES[version]})
    with SandboxServer(config) as server:
        yield server


@pytest.fixture(scope="module")
def shop_8() -> Iterator[SandboxServer]:
    """An 8.1.7 shop for the facts that do not depend on the version."""
    with SandboxServer(SandboxConfig(**{**_fields(SHOP), "version": "8.1.7"})) as server:
        yield server


def _fields(config: SandboxConfig) -> dict[str, Any]:
    return {name: getattr(config, name) for name in config.__dataclass_fields__}


@dataclass
class Wire:
    """What went over the wire to ``/api``: (method, path, query, request body, status, content type)."""

    calls: list[tuple[str, str, dict[str, list[str]], bytes, int, str]] = field(default_factory=list)

    async def on_response(self, response: httpx.Response) -> None:
        request = response.request
        if request.url.path.startswith("/api"):
            query = parse_qs(request.url.query.decode(), keep_blank_values=True)
            self.calls.append(
                (
                    request.method,
                    request.url.path,
                    query,
                    request.content,
                    response.status_code,
                    response.headers.get("content-type", ""),
                )
            )

    def methods(self) -> list[str]:
        return [call[0] for call in self.calls]

    def writes(self) -> list[tuple[str, str, bytes]]:
        return [(m, p, body) for m, p, _, body, _, _ in self.calls if m in ("POST", "PUT", "PATCH")]


@dataclass
class Session:
    """A client on a fresh ``httpx.AsyncClient``, the wire it uses and an admin/raw HTTP helper."""

    client: PrestaShopClient
    wire: Wire
    http: httpx.AsyncClient
    server: SandboxServer

    async def admin(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the sandbox's ``/_sandbox`` admin API; fails the test on a non-2xx answer."""
        response = await self.http.request(method, f"{self.server.base_url}/_sandbox/{path}", **kwargs)
        assert response.is_success, response.text
        return response.json()

    async def row(self, resource: str, id_: int) -> dict[str, Any]:
        """One row as the sandbox stores it (admin view, independent of the client)."""
        found: dict[str, Any] = await self.admin("GET", f"resources/{resource}/{id_}")
        return found

    async def rows(self, resource: str) -> list[dict[str, Any]]:
        """Every row of a table, in id order (admin view)."""
        found: list[dict[str, Any]] = await self.admin(
            "GET", f"resources/{resource}", params={"limit": 100_000}
        )
        return found

    async def raw(self, path: str, *, key: str = KEY, **params: str) -> httpx.Response:
        """A raw webservice GET, bypassing the client."""
        return await self.http.get(f"{self.server.api_url}{path}", params=params, auth=(key, ""))

    def transport(self, key: str = KEY) -> Transport:
        """The client's transport on its own, for requests the client's operations never build."""
        return Transport(self.http, self.server.base_url, SecretStr(key))


@asynccontextmanager
async def session(
    server: SandboxServer, *, key: str = KEY, http_timeout: float = 5.0, **client_kwargs: Any
) -> AsyncIterator[Session]:
    wire = Wire()
    async with httpx.AsyncClient(timeout=http_timeout, event_hooks={"response": [wire.on_response]}) as http:
        client = PrestaShopClient(http, server.base_url, SecretStr(key), **client_kwargs)
        yield Session(client, wire, http, server)


def _version(server: SandboxServer) -> tuple[int, ...]:
    return server.app.sandbox.store.version


def _dt(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S")


async def _simple_product(s: Session, *, skip: int = 0) -> int:
    """A product without combinations (its attribute-0 stock row is its own, not a derived sum)."""
    found = [p["id"] for p in await s.rows("products") if not p["associations"].get("combinations")]
    return int(found[skip])


async def _product_with_combinations(s: Session, *, skip: int = 0) -> tuple[int, list[int]]:
    found = [p for p in await s.rows("products") if p["associations"].get("combinations")]
    chosen = found[skip]
    return int(chosen["id"]), [int(c["id"]) for c in chosen["associations"]["combinations"]]


# --- 1. writes are XML only; JSON is read-only and opt-in via the exact value "JSON" ---------------


async def test_fact1_client_writes_xml_and_reads_json(shop: SandboxServer) -> None:
    async with session(shop) as s:
        await s.client.update_customer(3, {"note": "fact 1"})
        states = await s.client.load_order_states()
        await s.client.add_order_history(3, states.id_for(StandardState.PROCESSING), skip_if_current=False)
        writes = s.wire.writes()
        assert [m for m, _, _ in writes] == [
            "PUT" if _version(shop) < (8,) else "PATCH",
            "POST",
        ]
        for _, _, body in writes:
            assert body.startswith(b"<?xml")
            assert ET.fromstring(body).tag == "prestashop"  # noqa: S314 - our own request body
        # Every answer, reads and writes alike, came back as JSON: the header value was exactly "JSON".
        assert {content_type for *_, content_type in s.wire.calls} == {"application/json"}
        assert (await s.client.get_customer(3)).note == "fact 1"


async def test_fact1_a_json_body_is_refused_and_classified_as_a_client_bug(shop_8: SandboxServer) -> None:
    async with session(shop_8) as s:
        with pytest.raises(PrestaShopProtocolError, match="could not parse the XML"):
            await s.transport().send("POST", "customers", operation="probe", body=b'{"customer":{}}')
        # "json" in lower case silently yields XML, which a JSON client cannot read.
        lower = await s.raw("orders", output_format="json")
        assert lower.headers["content-type"].startswith("text/xml")


# --- 2. JSON shapes: bare [], single vs list wrapping, dropped falsy fields, i18n forms -------------


async def test_fact2_empty_list_is_a_bare_array_and_reads_as_nothing(shop: SandboxServer) -> None:
    async with session(shop) as s:
        raw = await s.raw("customers", output_format="JSON", **{"filter[email]": "[nobody@nowhere.test]"})
        assert raw.status_code == 200
        assert raw.text == "[]"
        assert await s.client.find_customers_by_email("nobody@nowhere.test") == []
        assert await s.client.order_carriers_for(987_654) == []


async def test_fact2_falsy_fields_survive_on_every_version(shop: SandboxServer) -> None:
    async with session(shop) as s:
        product = await _simple_product(s, skip=0)
        row = await s.admin("POST", "stock", json={"id_product": product, "quantity": 0})
        bare = (await s.raw(f"stock_availables/{row['id']}", output_format="JSON")).json()["stock_available"]
        # The sandbox shows the quirk: 8.x/9.x drop every falsy field of a single entity.
        assert ("quantity" in bare) is (_version(shop) < (8,))
        fetched = await s.client.get_fetched(StockAvailable, row["id"])
        assert fetched.record["quantity"] == "0"  # present on the wire, not a model default
        assert fetched.record["id_product_attribute"] == "0"
        assert fetched.model.quantity == Decimal(0)
        assert fetched.model.id_product == product
        assert isinstance(fetched.record["id"], int)


async def test_fact2_i18n_is_a_list_with_several_languages_and_a_string_with_one(shop: SandboxServer) -> None:
    async with session(shop) as s:
        stored = (await s.row("products", 5))["name"]
        assert set(stored) == {"1", "2"}
        product = await s.client.get_product(5)
        assert product.name == {1: stored["1"], 2: stored["2"]}
        [french] = await s.client.list_all(Product, Query(filters=(equals("id", 5),), language=2))
        assert s.wire.calls[-1][2]["language"] == ["2"]
        assert french.name == {2: stored["2"]}  # a plain string, attributed to the language asked for


# --- 3. PUT is a full replace; PATCH (8.x+) is partial; 1.7 has no PATCH --------------------------


async def test_fact3_update_keeps_every_field_it_does_not_change(shop: SandboxServer) -> None:
    async with session(shop) as s:
        before = await s.client.get_customer(4)
        stored_before = await s.row("customers", 4)
        after = await s.client.update_customer(4, {"firstname": "Renamed"})
        stored_after = await s.row("customers", 4)
        assert s.wire.writes()[0][0] == ("PUT" if _version(shop) < (8,) else "PATCH")
        assert after.firstname == "Renamed"
        unchanged = {"firstname", "date_upd"}
        assert after.model_dump(exclude=unchanged) == before.model_dump(exclude=unchanged)
        # What the model does not carry survives too: the password hash, date_add, secure_key.
        for name in ("passwd", "secure_key", "date_add", "birthday", "newsletter_date_add"):
            assert stored_after[name] == stored_before[name], name
        assert (await s.client.get_customer(4)) == after


async def test_fact3_product_update_keeps_translations_associations_and_stock(shop: SandboxServer) -> None:
    async with session(shop) as s:
        before = await s.client.get_product(7)
        after = await s.client.update_product(7, {"reference": "FACT3-REF"})
        assert after.reference == "FACT3-REF"
        unchanged = {"reference", "date_upd"}
        assert after.model_dump(exclude=unchanged) == before.model_dump(exclude=unchanged)
        assert after.date_add == before.date_add


async def test_fact3_patch_is_405_on_1_7_and_partial_from_8(shop: SandboxServer) -> None:
    async with session(shop) as s:
        body = b"<prestashop><customer><id>6</id><note>patched</note></customer></prestashop>"
        if _version(shop) < (8,):
            with pytest.raises(InvalidMessage) as caught:
                await s.transport().send("PATCH", "customers/6", operation="probe", body=body)
            assert caught.value.reason == "prestashop_method_not_allowed"
            assert caught.value.details["prestashop_codes"] == "23"
        else:
            before = await s.client.get_customer(6)
            await s.transport().send("PATCH", "customers/6", operation="probe", body=body)
            after = await s.client.get_customer(6)
            assert after.note == "patched"
            assert after.model_dump(exclude={"note", "date_upd"}) == before.model_dump(
                exclude={"note", "date_upd"}
            )


# --- 4. read-only fields are a hard 400 code 93; a 1.7 customer PUT must keep secure_key -----------


async def test_fact4_read_only_customer_fields_per_version(shop: SandboxServer) -> None:
    async with session(shop) as s:
        key = "0123456789abcdef0123456789abcdef"
        body = (
            f"<prestashop><customer><id>8</id><secure_key>{key}</secure_key></customer></prestashop>".encode()
        )
        if _version(shop) < (8, 1):
            updated = await s.client.update_customer(8, {"secure_key": key})
            assert updated.secure_key == key
            assert (await s.row("customers", 8))["secure_key"] == key
            return
        with pytest.raises(ValueError, match="read-only"):
            await s.client.update_customer(8, {"secure_key": key})
        assert s.wire.writes() == []  # refused before anything was sent
        with pytest.raises(InvalidMessage) as caught:
            await s.transport().send("PATCH", "customers/8", operation="probe", body=body)
        assert caught.value.reason == "prestashop_rejected"
        assert caught.value.details["http_status"] == "400"
        assert caught.value.details["prestashop_codes"] == "93"


async def test_fact4_product_quantity_is_never_written(shop: SandboxServer) -> None:
    async with session(shop) as s:
        with pytest.raises(ValueError, match="read-only"):
            await s.client.update_product(9, {"quantity": 5})
        method = "PUT" if _version(shop) < (8,) else "PATCH"
        body = b"<prestashop><product><id>9</id><quantity>5</quantity><price>1</price></product></prestashop>"
        with pytest.raises(InvalidMessage) as caught:
            await s.transport().send(method, "products/9", operation="probe", body=body)
        assert caught.value.details["prestashop_codes"] == "93"


async def test_fact4_1_7_customer_put_keeps_secure_key(shop: SandboxServer) -> None:
    async with session(shop) as s:
        stored = await s.row("customers", 10)
        await s.client.update_customer(10, {"lastname": "Kept"})
        if _version(shop) < (8,):
            [(method, _, body)] = s.wire.writes()
            assert method == "PUT"
            sent = ET.fromstring(body).find("customer")  # noqa: S314 - our own request body
            assert sent is not None
            assert sent.findtext("secure_key") == stored["secure_key"]
            assert sent.findtext("date_add") == stored["date_add"]
        after = await s.row("customers", 10)
        assert after["secure_key"] == stored["secure_key"]
        assert after["passwd"] == stored["passwd"]
        assert after["date_add"] == stored["date_add"]
        assert after["lastname"] == "Kept"


# --- 5. 404 with an empty body, 401 for a resource not granted, duplicate email is 500 ------------


async def test_fact5_missing_entity_is_not_found(shop_8: SandboxServer) -> None:
    async with session(shop_8) as s:
        raw = await s.raw("orders/999999", output_format="JSON")
        assert (raw.status_code, raw.content) == (404, b"")
        with pytest.raises(InvalidMessage) as caught:
            await s.client.get_order(999_999)
        assert caught.value.reason == "prestashop_not_found"


async def test_fact5_resource_not_granted_is_401_and_method_not_granted_is_405(shop_8: SandboxServer) -> None:
    async with session(shop_8, key=LIMITED_KEY) as s:
        await s.admin(
            "POST",
            "keys",
            json={"key": LIMITED_KEY, "resources": {"orders": ["GET"], "configurations": ["GET"]}},
        )
        assert (await s.client.get_order(1)).id == 1
        with pytest.raises(InvalidMessage) as denied:
            await s.client.get_customer(1)
        assert denied.value.reason == "prestashop_auth"
        assert (denied.value.details["http_status"], denied.value.details["prestashop_codes"]) == (
            "401",
            "26",
        )
        body = b"<prestashop><order><id>1</id><note>x</note></order></prestashop>"
        with pytest.raises(InvalidMessage) as refused:
            await s.transport(LIMITED_KEY).send("PATCH", "orders/1", operation="probe", body=body)
        assert refused.value.reason == "prestashop_method_not_allowed"
        assert refused.value.details["prestashop_codes"] == "25"
    async with session(shop_8, key="X" * 32) as s:
        with pytest.raises(InvalidMessage) as unknown:
            await s.client.get_order(1)
        assert unknown.value.reason == "prestashop_auth"


async def test_fact5_duplicate_email_is_classified_for_linking(shop: SandboxServer) -> None:
    async with session(shop) as s:
        existing = await s.client.get_customer(12)
        fields = {"passwd": "secret-pass-1", "lastname": "Twin", "firstname": "Eve", "email": existing.email}
        with pytest.raises(DuplicateEmailError) as caught:
            await s.client.create_customer(fields)
        assert caught.value.reason == "prestashop_duplicate_email"
        assert caught.value.details["http_status"] == "500"
        assert "140" in caught.value.details["prestashop_codes"].split(",")
        # The caller's way out: look the customer up by email and link to it.
        assert [c.id for c in await s.client.find_customers_by_email(existing.email.upper())] == [12]
        # A guest checkout may repeat an email; it is a second customer, found by the same lookup.
        other = await s.client.get_customer(13)
        with pytest.raises(DuplicateEmailError):
            await s.client.update_customer(13, {"email": existing.email})
        assert (await s.client.get_customer(13)).email == other.email
        guest = await s.client.create_customer({**fields, "is_guest": True})
        assert guest.is_guest
        found = await s.client.find_customers_by_email(existing.email)
        assert sorted(c.id for c in found) == sorted([12, guest.id])


# --- 6. date windows: date=1, inclusive BETWEEN, shop-local time, zero dates ----------------------


async def test_fact6_orders_changed_in_an_inclusive_window_in_shop_time(shop: SandboxServer) -> None:
    async with session(shop, page_size=4) as s:
        zone = ZoneInfo((await s.admin("GET", "info"))["timezone"])
        assert zone.key == ZONES[".".join(map(str, _version(shop)))]
        orders = sorted((_dt(o["date_upd"]), o["id"]) for o in await s.rows("orders"))
        low, high = orders[5][0], orders[16][0]
        expected = [(moment, id_) for moment, id_ in orders if low <= moment <= high]
        assert len(expected) > 8  # spans several pages of 4

        def aware(moment: datetime) -> datetime:  # the same instant, told in UTC
            return moment.replace(tzinfo=zone).astimezone(UTC)

        got = [
            (f.model.date_upd, f.model.id)
            async for f in s.client.iter_orders_changed(aware(low), aware(high))
        ]
        assert got == expected  # both bounds included, sorted by date_upd then id, across pages
        calls = [c for c in s.wire.calls if c[1] == "/api/orders"]
        assert all(c[2]["date"] == ["1"] and c[2]["sort"] == ["[date_upd_ASC,id_ASC]"] for c in calls)
        assert calls[0][2]["filter[date_upd]"] == [f"[{low:%Y-%m-%d %H:%M:%S},{high:%Y-%m-%d %H:%M:%S}]"]
        # A one-second window on one order's date_upd finds exactly it: no time-zone shift anywhere.
        moment, id_ = orders[10]
        point = [f.model.id async for f in s.client.iter_orders_changed(aware(moment), aware(moment))]
        assert point == [i for m, i in orders if m == moment]
        assert id_ in point
        naive = [f.model.id async for f in s.client.iter_orders_changed(moment, moment)]
        assert naive == point  # naive datetimes are taken as shop-local already


async def test_fact6_date_filter_needs_date_1_and_zero_dates_read_as_none(shop_8: SandboxServer) -> None:
    async with session(shop_8) as s:
        params = "filter%5Bdate_upd%5D=%5B2020-01-01%2000%3A00%3A00%2C2030-01-01%2000%3A00%3A00%5D"
        with pytest.raises(InvalidMessage) as caught:
            await s.transport().send("GET", "orders", operation="probe", query=params)
        assert caught.value.details["prestashop_codes"] == "32"
        unpaid = next(o for o in await s.rows("orders") if o["invoice_date"] == "0000-00-00 00:00:00")
        order = await s.client.get_order(unpaid["id"])
        assert order.invoice_date is None
        assert order.delivery_date is None
        assert order.date_add == _dt(unpaid["date_add"])


# --- 7. paging: limit=offset,count, no total, no default order ----------------------------------


async def test_fact7_paging_through_every_product_to_the_end(shop_8: SandboxServer) -> None:
    async with session(shop_8, page_size=100) as s:
        ids = [product.id async for product in s.client.iterate(Product)]
        stored = [int(p["id"]) for p in await s.rows("products")]
        assert len(stored) >= 1000
        assert ids == stored  # every product once, in id order
        pages = [c for c in s.wire.calls if c[1] == "/api/products"]
        assert [c[2]["limit"][0] for c in pages] == [
            f"{offset},100" for offset in range(0, len(stored) + 1, 100)
        ]
        assert all(c[2]["sort"] == ["[id_ASC]"] and c[2]["display"] == ["full"] for c in pages)


# --- 8. status changes through order_histories, states resolved from the shop ---------------------


async def test_fact8_add_order_history_side_effects(shop: SandboxServer) -> None:
    async with session(shop) as s:
        states = await s.client.load_order_states()
        unpaid = next(
            o
            for o in await s.rows("orders")
            if o["current_state"] == str(states.id_for(StandardState.AWAITING_CHEQUE))
            or o["current_state"] == str(states.id_for(StandardState.AWAITING_BANK_WIRE))
        )
        id_order = int(unpaid["id"])
        order = await s.client.get_order(id_order)
        assert order.invoice_number == 0
        histories = await s.client.order_histories_for(id_order)
        paid = states.id_for(StandardState.PAYMENT_ACCEPTED)

        added = await s.client.add_order_history(id_order, paid)
        assert added is not None
        assert (added.id_order, added.id_order_state) == (id_order, paid)
        after = await s.client.get_order(id_order)
        assert after.current_state == paid
        assert after.valid  # the new state's logable flag
        assert after.date_upd is not None
        assert order.date_upd is not None
        assert after.date_upd > order.date_upd
        assert after.invoice_number > 0
        assert after.invoice_date is not None
        [invoice] = await s.client.order_invoices_for(id_order)
        assert invoice.number == after.invoice_number
        payments = await s.client.order_payments_for(after.reference)  # joined by reference, not id
        assert sum(p.amount for p in payments) == after.total_paid_tax_incl
        assert len(await s.client.order_histories_for(id_order)) == len(histories) + 1

        # The shop does not dedupe: the client's guard does, and can be switched off.
        assert await s.client.add_order_history(id_order, paid) is None
        assert len(await s.client.order_histories_for(id_order)) == len(histories) + 1
        await s.client.add_order_history(id_order, paid, skip_if_current=False)
        assert len(await s.client.order_histories_for(id_order)) == len(histories) + 2


async def test_fact8_cancel_restocks_the_ordered_quantities(shop: SandboxServer) -> None:
    async with session(shop) as s:
        product = await _simple_product(s, skip=1)
        placed = await s.admin(
            "POST", "orders", json={"customer_id": 14, "lines": [{"product_id": product, "quantity": 3}]}
        )
        [stock] = await s.client.list_all(StockAvailable, Query(filters=(equals("id_product", product),)))
        states = await s.client.load_order_states()
        await s.client.add_order_history(placed["id"], states.id_for(StandardState.CANCELED))
        [restocked] = await s.client.list_all(StockAvailable, Query(filters=(equals("id_product", product),)))
        assert restocked.quantity == stock.quantity + 3
        assert (await s.client.get_order(placed["id"])).valid is False


async def test_fact8_states_are_resolved_by_config_key_on_a_renumbered_shop() -> None:
    config = SandboxConfig(**{**_fields(SHOP), "products": 40, "order_state_ids": RENUMBERED})
    with SandboxServer(config) as server:
        async with session(server) as s:
            states = await s.client.load_order_states()
            shipped = states.id_for(StandardState.SHIPPED)
            assert shipped == RENUMBERED["PS_OS_SHIPPING"]
            assert states.state(shipped).shipped
            assert states.state(shipped).name[1] == "Shipped"
            assert states.key_of(shipped) is StandardState.SHIPPED
            assert 4 not in states.states  # the default id of Shipped means nothing here
            assert {s.id for s in states.matching(shipped=True)} == {24, 25}
            order = next(o for o in await s.rows("orders") if o["current_state"] == "23")
            await s.client.add_order_history(order["id"], shipped)
            after = await s.client.get_order(order["id"])
            assert after.current_state == 24
            assert after.delivery_number > 0  # Shipped's delivery flag did its work


# --- 9. tracking and stock do not move date_upd ----------------------------------------------------


async def test_fact9_tracking_write_does_not_move_the_order(shop: SandboxServer) -> None:
    async with session(shop) as s:
        order = await s.client.get_order(15)
        carrier = await s.client.set_tracking_number(15, "1ZFACT9")
        assert carrier.tracking_number == "1ZFACT9"
        assert s.wire.writes()[0][0] == ("PUT" if _version(shop) < (8,) else "PATCH")
        assert [c.tracking_number for c in await s.client.order_carriers_for(15)] == ["1ZFACT9"]
        after = await s.client.get_order(15)
        assert after.date_upd == order.date_upd
        assert after.shipping_number == "1ZFACT9"
        assert order.date_upd is not None
        window = [f.model.id async for f in s.client.iter_orders_changed(order.date_upd)]
        assert 15 in window  # the window starting at its own date_upd
        later = [
            f.model.id async for f in s.client.iter_orders_changed(order.date_upd + timedelta(seconds=1))
        ]
        assert 15 not in later  # no change since, although its tracking number just changed
        # Only a scan of order_carriers sees it.
        scanned = {f.model.id_order: f.model.tracking_number async for f in s.client.iter_order_carriers()}
        assert scanned[15] == "1ZFACT9"
        # Idempotent: the same number again writes nothing.
        before_writes = len(s.wire.writes())
        await s.client.set_tracking_number(15, "1ZFACT9")
        assert len(s.wire.writes()) == before_writes


async def test_fact9_stock_write_moves_no_date_and_sums_into_the_product_row(shop: SandboxServer) -> None:
    async with session(shop) as s:
        product_id, combinations = await _product_with_combinations(s, skip=2)
        before = await s.client.get_product(product_id)
        written = await s.client.set_stock(product_id, combinations[0], 77)
        assert (written.id_product_attribute, written.quantity) == (combinations[0], Decimal(77))
        assert s.wire.writes()[0][0] == ("PUT" if _version(shop) < (8,) else "PATCH")
        rows = await s.client.list_all(StockAvailable, Query(filters=(equals("id_product", product_id),)))
        by_attribute = {r.id_product_attribute: r.quantity for r in rows}
        assert by_attribute[combinations[0]] == 77
        assert by_attribute[0] == sum(q for a, q in by_attribute.items() if a)  # the derived attr-0 row
        after = await s.client.get_product(product_id)
        assert after.date_upd == before.date_upd
        assert after.quantity == by_attribute[0]
        scanned = {f.model.id: f.model.quantity async for f in s.client.iter_stock_availables()}
        assert scanned[written.id] == 77
        before_writes = len(s.wire.writes())
        await s.client.set_stock(product_id, combinations[0], 77)  # already so: nothing written
        assert len(s.wire.writes()) == before_writes
        with pytest.raises(InvalidMessage) as unknown:
            await s.client.set_stock(999_999, 0, 1)
        assert unknown.value.reason == "unknown_sku"


async def test_fact9_a_direct_product_level_stock_write_holds_until_a_combination_changes(
    shop: SandboxServer,
) -> None:
    async with session(shop) as s:
        product_id, combinations = await _product_with_combinations(s, skip=3)
        written = await s.client.set_stock(product_id, 0, 5)
        assert (written.id_product_attribute, written.quantity) == (0, Decimal(5))
        assert (await s.client.get_product(product_id)).quantity == 5
        await s.client.set_stock(product_id, combinations[0], 9)  # postSave: the sum wins again
        rows = await s.client.list_all(StockAvailable, Query(filters=(equals("id_product", product_id),)))
        by_attribute = {r.id_product_attribute: r.quantity for r in rows}
        assert by_attribute[0] == sum(q for a, q in by_attribute.items() if a)
        assert by_attribute[0] != 5


async def test_fact9_1_7_refuses_stock_that_depends_on_stock(shop: SandboxServer) -> None:
    async with session(shop) as s:
        product_id = await _simple_product(s, skip=2)
        [row] = await s.client.list_all(StockAvailable, Query(filters=(equals("id_product", product_id),)))
        body = (
            f"<prestashop><stock_available><id>{row.id}</id><id_product>{product_id}</id_product>"
            f"<id_product_attribute>0</id_product_attribute><quantity>{row.quantity}</quantity>"
            "<depends_on_stock>1</depends_on_stock><out_of_stock>2</out_of_stock>"
            "</stock_available></prestashop>"
        ).encode()
        method = "PUT" if _version(shop) < (8,) else "PATCH"
        await s.transport().send(method, f"stock_availables/{row.id}", operation="probe", body=body)
        if _version(shop) < (8,):
            with pytest.raises(InvalidMessage) as caught:
                await s.client.set_stock(product_id, 0, 3)
            assert caught.value.reason == "prestashop_rejected"
            assert caught.value.details["prestashop_codes"] == "133"
        else:
            assert (await s.client.set_stock(product_id, 0, 3)).quantity == 3


# --- 10. no webhooks, no rate limits in core: polling stays authoritative, pages stay small;
#         whatever sits in front of the shop may still fail, and that is retryable ------------------


async def test_fact10_list_reads_use_modest_pages(shop_8: SandboxServer) -> None:
    async with session(shop_8) as s:
        await s.client.list_all(StockAvailable, Query(filters=(between("id_product", 1, 3),)))
        limits = [c[2]["limit"][0] for c in s.wire.calls if "limit" in c[2]]
        assert limits
        assert all(0 < int(limit.split(",")[1]) <= 100 for limit in limits)


@pytest.mark.parametrize(
    ("fault", "status"),
    [
        ({"kind": "error", "status": 500}, 500),
        ({"kind": "error", "status": 502}, 502),
        ({"kind": "error", "status": 503}, 503),
        ({"kind": "rate_limit", "retry_after": 7}, 429),
        ({"kind": "drop"}, None),
        ({"kind": "timeout", "hang_seconds": 1.5}, None),
    ],
    ids=["500", "502", "503", "429", "drop", "timeout"],
)
async def test_faults_are_retryable(shop_8: SandboxServer, fault: dict[str, Any], status: int | None) -> None:
    async with session(shop_8, http_timeout=0.5) as s:
        await s.admin("POST", "faults", json={**fault, "resource": "orders", "next": 1})
        try:
            with pytest.raises(RetryableError) as caught:
                await s.client.get_order(2)
            assert caught.value.status == status
            if status == 429:
                assert caught.value.retry_after == 7.0
            if fault["kind"] == "timeout":
                assert "timeout" in str(caught.value)
            assert (await s.client.get_order(2)).id == 2  # the next attempt works
        finally:
            await s.admin("DELETE", "faults")
