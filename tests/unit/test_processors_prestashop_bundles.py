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
from zoneinfo import ZoneInfo

import httpx
import pytest
from pydantic import SecretStr

from connectors.prestashop.client import Fetched, PrestaShopClient
from connectors.prestashop.models import Order
from connectors.prestashop.query import Query, Sort
from ingest.prestashop_poller.bundles import REFERENCE_CONFIGURATION, BundleReader
from ingest.prestashop_poller.raw import snapshot
from processors import prestashop_orders as flow
from rules.engine import load_rules
from sandbox.prestashop.config import KeyPermissions, SandboxConfig
from sandbox.prestashop.server import SandboxServer
from tests.unit.test_processors_prestashop_orders import assert_valid

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
