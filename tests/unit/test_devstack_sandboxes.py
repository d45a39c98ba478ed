"""The setup step and the traffic generator against both sandboxes, served in-process on loopback.

The setup gives the shop's sellable units the M3 item numbers (read through the ION API gateway
with the sandbox's own ``.ionapi``) and switches the shop's webhooks on; the traffic driver then places
orders of those units through the admin API and moves M3 stock. No Kafka: what is checked is what
the two sandboxes hold afterwards.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from devstack.sandbox_admin import InforSandboxAdmin, PrestaShopSandboxAdmin
from devstack.setup import apply_catalogue, assign_items, infor_items, shop_units
from devstack.traffic import ShopperModel, StockMovements, TrafficDriver
from sandbox.infor.app import SandboxOptions
from sandbox.infor.server import InforSandboxServer
from sandbox.prestashop.config import KeyPermissions, SandboxConfig
from sandbox.prestashop.server import SandboxServer

pytestmark = pytest.mark.timeout(60)

KEY = "DEVSTACKSANDBOXKEY0123456789ABCD"


@pytest.fixture
def sandboxes(tmp_path: Path) -> Iterator[tuple[SandboxServer, InforSandboxServer, Path]]:
    shop = SandboxConfig(keys=(KeyPermissions(KEY),), products=30, customers=10, orders=0, seed=3)
    with (
        SandboxServer(shop) as prestashop,
        InforSandboxServer(SandboxOptions(items=25, customers=5)) as infor,
    ):
        ionapi = infor.write_ionapi(tmp_path / "sandbox.ionapi")
        yield prestashop, infor, ionapi


def test_setup_shares_the_catalogue_and_the_traffic_orders_it_and_moves_m3_stock(
    sandboxes: tuple[SandboxServer, InforSandboxServer, Path],
) -> None:
    prestashop, infor_server, ionapi = sandboxes
    with (
        httpx.Client(base_url=prestashop.base_url, timeout=30) as shop_http,
        httpx.Client(base_url=infor_server.base_url, timeout=30) as infor_http,
    ):
        shop = PrestaShopSandboxAdmin(shop_http, ws_key=KEY)
        infor = InforSandboxAdmin(infor_http)
        items = asyncio.run(infor_items(ionapi))
        assert {"SKU-1001", "SKU-2002", "SKU-BLOCKED"} <= {item.item_number for item in items}
        assert not any(item.item_number.startswith("ZZ-") for item in items)  # the other company's
        catalogue = assign_items(shop_units(shop.rows("products"), shop.rows("combinations")), items)
        assert apply_catalogue(shop, catalogue) == len(items)
        assert catalogue.infor_only == ()

        # The shop now sells M3's items under M3's numbers, combinations included.
        units = shop_units(shop.rows("products"), shop.rows("combinations"))
        references = {(u.product_id, u.combination_id): u.reference for u in units}
        for entry in catalogue.matched:
            assert references[(entry.product_id, entry.combination_id)] == entry.item_number
        assert any(entry.combination_id for entry in catalogue.matched)
        for entry in catalogue.shop_only:
            assert references[(entry.product_id, entry.combination_id)].startswith("PSI-")
        shop.set_webhooks("http://127.0.0.1:9/webhooks/prestashop/devshop", ["whsec_" + "A" * 44])

        sellable = [entry for entry in catalogue.matched if entry.sellable]
        rng = random.Random(5)
        before = {e.item_number: infor.balance("001", e.item_number) for e in sellable}
        lines: list[str] = []
        driver = TrafficDriver(
            shop,
            infor,
            ShopperModel(rng, sellable, [1, 2, 3], tag="t"),
            StockMovements(rng, [e.item_number for e in sellable]),
            rate=20.0,
            emit=lines.append,
            report_every_s=0.5,
        )
        driver.start()
        time.sleep(1.6)
        counts = driver.stop()

        assert counts.failures == 0
        assert 15 <= counts.orders <= 40
        assert counts.stock_movements >= 1
        orders = shop.rows("orders")
        assert len(orders) == counts.orders
        details = shop.rows("order_details")
        sold = {row["product_reference"] for row in details}
        assert sold <= {e.item_number for e in sellable}
        currencies = {row["id_currency"] for row in orders}
        assert len(currencies) >= 2
        after = {e.item_number: infor.balance("001", e.item_number) for e in sellable}
        moved = [
            item
            for item in after
            if before[item] is not None
            and Decimal(str(after[item]["STQT"])) != Decimal(str(before[item]["STQT"]))  # type: ignore[index]
        ]
        assert len(moved) >= 1
        assert any(line.startswith("traffic: ") and " orders (" in line for line in lines)
