"""Order bundles read from the sandbox shop (loopback HTTP) map to valid canonical Orders.

The contract between the poller (``ingest/prestashop_poller/bundles.py`` writes the bundle) and the
orders flow (``processors/prestashop_orders.py`` maps it), on a seeded shop whose standard states are
renumbered and whose clock is not UTC: every seeded order becomes a schema-valid Order, and the
statuses follow the states' config keys, not their ids.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar, cast
from zoneinfo import ZoneInfo

import httpx
import pytest
from pydantic import SecretStr

from connectors.prestashop.client import Fetched, PrestaShopClient
from connectors.prestashop.models import (
    Address,
    Combination,
    Customer,
    Order,
    OrderCarrier,
    OrderDetail,
    Product,
    PsModel,
)
from connectors.prestashop.query import Query, Sort, equals
from ingest.prestashop_poller.bundles import REFERENCE_CONFIGURATION, BundleReader
from ingest.prestashop_poller.raw import snapshot
from processors import prestashop_customers as customers_flow
from processors import prestashop_orders as flow
from processors import prestashop_products as products_flow
from rules.engine import load_rules
from sandbox.prestashop.config import KeyPermissions, SandboxConfig
from sandbox.prestashop.server import SandboxServer
from tests.unit.test_processors_prestashop_orders import assert_valid

M = TypeVar("M", bound=PsModel)
KEY = "BUNDLESANDBOXKEY0123456789ABCDEF"
RENUMBERED = {"PS_OS_PAYMENT": 22, "PS_OS_SHIPPING": 24, "PS_OS_DELIVERED": 25, "PS_OS_CANCELED": 26}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def shop() -> Iterator[SandboxServer]:
    config = SandboxConfig(
        keys=(KeyPermissions(KEY),), customers=20, orders=25, products=60, seed=5, order_state_ids=RENUMBERED
    )
    with SandboxServer(config) as server:
        yield server


async def _lowest(client: PrestaShopClient, model: type[M]) -> Fetched[M]:
    """The row of ``model`` with the lowest id."""
    rows = [f async for f in client.iterate_fetched(model, Query(sort=(Sort("id"),)))]
    return rows[0]


async def _orders(client: PrestaShopClient) -> list[Fetched[Order]]:
    return [f async for f in client.iterate_fetched(Order, Query(sort=(Sort("id"),)))]


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_every_seeded_order_bundle_maps_to_a_valid_canonical_order(shop: SandboxServer) -> None:
    rules = load_rules()
    async with httpx.AsyncClient(timeout=10) as http:
        client = PrestaShopClient(http, shop.base_url, SecretStr(KEY), page_size=10)
        orders = await _orders(client)
        reader = BundleReader(client)
        bundles = await reader.bundles(orders)
        zone = await client.shop_time_zone()
    assert len(bundles) == len(orders) == 25
    codes: set[str] = set()
    for fetched, bundle in zip(orders, bundles, strict=True):
        order = fetched.model
        assert bundle["order"] == fetched.record  # the order exactly as returned
        assert {int(d["id_order"]) for d in bundle["order_details"]} == {order.id}
        assert {int(a["id"]) for a in bundle["addresses"]} == {
            order.id_address_invoice,
            order.id_address_delivery,
        }
        assert [int(s["id"]) for s in bundle["order_states"]] == [order.current_state]
        names = {row["name"] for row in bundle["configuration"]}
        assert (
            {"PS_TIMEZONE", "PS_CURRENCY_DEFAULT", "PS_OS_SHIPPING"} <= names <= set(REFERENCE_CONFIGURATION)
        )

        raw = snapshot(
            shop_id=1,
            resource="orders",
            node="order",
            id_=order.id,
            record=bundle,
            date_upd=None,
            poll_run_id="test",
            trigger="poll",
            kind="bundle",
        )
        event = flow.decode(raw.value, raw.headers)
        assert isinstance(event, flow.OrderEvent)
        canonical = flow.to_order(event, rules, ingested_at=datetime.now(UTC), correlation_id="c")
        assert_valid(canonical)
        assert canonical["order_key"] == f"1:{order.id}"
        assert order.date_upd is not None
        expected_version = int(order.date_upd.replace(tzinfo=ZoneInfo(str(zone))).timestamp() * 1000)
        assert canonical["meta"]["version"] == flow.version(event) == expected_version
        assert len(canonical["lines"]) == len(order.rows)
        codes.add(canonical["source_status"]["code"])
        if canonical["source_status"]["code"] == "PS_OS_SHIPPING":
            assert canonical["fulfillment_status"] == "SHIPPED"
        # Raw bytes are canonical JSON: the same shop state gives the same bytes.
        assert json.loads(raw.value) == bundle
    assert codes & set(RENUMBERED), f"no seeded order is in a renumbered standard state: {codes}"


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_reference_data_is_read_once_per_max_age(shop: SandboxServer) -> None:
    now = [0.0]
    calls: list[str] = []

    async def count(request: httpx.Request) -> None:
        calls.append(request.url.path)

    async with httpx.AsyncClient(timeout=10, event_hooks={"request": [count]}) as http:
        client = PrestaShopClient(http, shop.base_url, SecretStr(KEY))
        reader = BundleReader(client, reference_max_age_s=60, clock=lambda: now[0])
        first = await reader.reference()
        before = len(calls)
        assert await reader.reference() is first
        assert len(calls) == before
        now[0] = 61.0
        assert await reader.reference() is not first
        assert len(calls) > before
    assert first.order_states[RENUMBERED["PS_OS_SHIPPING"]]["shipped"] in ("1", 1, True)


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_customer_and_product_bundles_map_to_valid_canonical_records(shop: SandboxServer) -> None:
    rules = load_rules()
    async with httpx.AsyncClient(timeout=10) as http:
        client = PrestaShopClient(http, shop.base_url, SecretStr(KEY), page_size=50)
        reader = BundleReader(client)
        customers = [f async for f in client.iterate_fetched(Customer, Query(sort=(Sort("id"),)))]
        customer_bundles = [await reader.customer_bundle(c) for c in customers]
        products = [f async for f in client.iterate_fetched(Product, Query(sort=(Sort("id"),)))]
        product_bundles = [await reader.product_bundle(p) for p in products]
    assert len(customer_bundles) == 20
    with_addresses = 0
    for fetched, bundle in zip(customers, customer_bundles, strict=True):
        raw = snapshot(
            shop_id=1,
            resource="customers",
            node="customer",
            id_=fetched.model.id,
            record=bundle,
            date_upd=None,
            poll_run_id="t",
            trigger="notification",
            kind="bundle",
        )
        assert raw.topic == "raw.prestashop.customers"
        event = customers_flow.decode(raw.value, raw.headers)
        assert isinstance(event, customers_flow.CustomerEvent)
        canonical = customers_flow.to_customer(
            event, rules, ingested_at=datetime.now(UTC), correlation_id="c"
        )
        assert canonical is not None
        assert_valid(canonical, "Customer")
        assert canonical["customer_key"] == f"1:{fetched.model.id}"
        live = [a for a in bundle["addresses"] if str(a["deleted"]) != "1"]
        assert {int(a["id_customer"]) for a in bundle["addresses"]} <= {fetched.model.id}
        assert len(canonical["addresses"]) == len(live)
        with_addresses += bool(live)
    assert with_addresses > 0
    skus: list[str] = []
    combinations = 0
    for product, bundle in zip(products, product_bundles, strict=True):
        raw = snapshot(
            shop_id=1,
            resource="products",
            node="product",
            id_=product.model.id,
            record=bundle,
            date_upd=None,
            poll_run_id="t",
            trigger="notification",
            kind="bundle",
        )
        product_event = products_flow.decode(raw.value, raw.headers)
        assert isinstance(product_event, products_flow.ProductEvent)
        records = products_flow.to_products(
            product_event, rules, ingested_at=datetime.now(UTC), correlation_id="c"
        )
        assert len(records) == max(1, len(bundle["combinations"]))
        combinations += len(bundle["combinations"])
        for record in records:
            assert_valid(record, "Product")
            assert record["product_id"] == str(product.model.id)
            assert record["price"]["currency"] == "EUR"
            assert record["names"]
        skus += [r["sku"] for r in records]
    assert combinations > 0
    assert (
        len(skus)
        == len(set(skus))
        == len(products) - sum(bool(b["combinations"]) for b in product_bundles) + combinations
    )


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_id_lists_answered_from_the_index_equal_single_reads(shop: SandboxServer) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        client = PrestaShopClient(http, shop.base_url, SecretStr(KEY))
        by_list = [
            f.model.id
            async for f in client.iterate_fetched(Order, Query(filters=(equals("id", 9, 3, 3, 999, 17),)))
        ]
        assert by_list == [3, 9, 17]  # id order, duplicates once, unknown ids absent
        orders = [await client.get(Order, i) for i in (3, 9)]
        details = [
            f.model.id_order
            async for f in client.iterate_fetched(
                OrderDetail, Query(filters=(equals("id_order", *(o.id for o in orders)),))
            )
        ]
        assert set(details) == {3, 9}
        assert len(details) == sum(len(o.rows) for o in orders)


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_a_re_read_address_or_combination_becomes_its_owners_bundle(shop: SandboxServer) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        client = PrestaShopClient(http, shop.base_url, SecretStr(KEY))
        reader = BundleReader(client)
        address = await _lowest(client, Address)
        model, record, kind = await reader.for_row(address)
        assert (kind, type(model), model.id) == ("bundle", Customer, address.model.id_customer)
        assert address.record in cast(list[Any], record["addresses"])
        combination = await _lowest(client, Combination)
        model, record, kind = await reader.for_row(combination)
        assert (kind, type(model), model.id) == ("bundle", Product, combination.model.id_product)
        assert combination.record in cast(list[Any], record["combinations"])
        assert record["languages"]
        assert record["currencies"]
        order = await client.get_fetched(Order, 1)
        model, record, kind = await reader.for_row(order)
        assert (kind, record["order"]) == ("bundle", order.record)
        carrier = await _lowest(client, OrderCarrier)
        assert await reader.for_row(carrier) == (carrier.model, carrier.record, "snapshot")
