"""The stock sink: quantity cap, SKU catalogue and suggestions (pure), stock writes against the sandbox."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from connectors.prestashop.models import Combination, Product, StockAvailable
from pipeline.errors import ConfigError, InvalidMessage, RetryableError
from rules.engine import default_rules_text, parse_rules
from sandbox.prestashop.server import SandboxServer
from sinks.base import Skip
from sinks.prestashop_inventory import (
    COALESCE_S,
    InventorySink,
    StockLevel,
    sellable_quantity,
    stock_row_for_shop,
    to_stock_level,
    warehouse_of_shop,
)
from sinks.prestashop_target import SellableUnit, ShopCatalogue, SkuCatalogue
from tests.unit.test_sinks_prestashop_support import (
    SHOP_ID,
    VERSIONS,
    Admin,
    Wire,
    admin,
    context,
    datum,
    rules,
    running_shop,
    sink_client,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


# --- pure ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("on_hand", "allocated", "available", "expected"),
    [
        ("140", "12", "128", 128),
        ("37.5", "3", "34.5", 34),  # whole units only, rounded down
        ("100", "10", "95", 90),  # available above on hand - allocated: capped
        ("100", "10", "80", 80),  # available below the cap: available
        ("5", "8", "-3", 0),  # a shortfall is not stock
    ],
)
def test_the_shop_never_shows_more_than_the_erp_has_free(
    on_hand: str, allocated: str, available: str, expected: int
) -> None:
    assert sellable_quantity(Decimal(on_hand), Decimal(allocated), Decimal(available)) == expected


def test_only_the_warehouse_feeding_this_shop_is_written() -> None:
    lyo = datum("InventoryLevel", "on-hand-change")
    assert warehouse_of_shop(rules(), 1) == "LYO"
    assert to_stock_level(lyo, warehouse="LYO") == StockLevel("TSH-ORG-M-BLU", "LYO", 128)
    assert to_stock_level(datum("InventoryLevel", "fractional-bulk"), warehouse="LYO") == Skip("not_ours")
    assert to_stock_level(lyo, warehouse=None) == Skip("not_ours")
    echo = datum("InventoryLevel", "on-hand-change", meta={"source_system": "PRESTASHOP"})
    assert to_stock_level(echo, warehouse="LYO") == Skip("echo")


def test_a_shop_fed_by_two_warehouses_is_a_configuration_error() -> None:
    text = default_rules_text().replace('NJ1: ["2"]', 'NJ1: ["1", "2"]')
    assert text != default_rules_text()
    with pytest.raises(ConfigError, match="LYO, NJ1"):
        warehouse_of_shop(parse_rules(text), 1)


def _catalogue() -> SkuCatalogue:
    products = [
        Product(id=1, reference="MUG-CER-350", name={1: "Ceramic mug 350 ml", 2: "Mug céramique"}),
        Product(id=2, reference="TSH-ORG", name={1: "Organic T-shirt"}),
        Product(id=3, reference="BEAN-ETH-1KG", name={1: "Coffee beans Ethiopia 1 kg"}),
        Product(id=4, reference="", name={1: "Gift card"}),
        Product(id=5, reference="POSTER-A2", name={1: "Poster"}),
    ]
    combinations = [
        Combination(id=31, id_product=2, reference="TSH-ORG-M-BLU"),
        Combination(id=32, id_product=2, reference="TSH-ORG-L-BLU"),
        Combination(id=51, id_product=5, reference=""),  # inherits the product's reference
    ]
    return SkuCatalogue.build(products, combinations)


def test_the_catalogue_holds_sellable_units_as_the_product_flows_name_them() -> None:
    catalogue = _catalogue()
    assert catalogue.find("MUG-CER-350") == (SellableUnit("MUG-CER-350", 1, 0, "Ceramic mug 350 ml"),)
    assert catalogue.find("tsh-org-m-blu") == (SellableUnit("TSH-ORG-M-BLU", 2, 31, "Organic T-shirt"),)
    assert catalogue.find("TSH-ORG") == ()  # a product with combinations is sold through them
    assert catalogue.find("POSTER-A2") == (SellableUnit("POSTER-A2", 5, 51, "Poster"),)
    assert len(catalogue.units) == 5  # the product without a reference has no SKU


def test_suggestions_are_the_closest_references_and_names() -> None:
    catalogue = _catalogue()
    assert [u.sku for u in catalogue.suggestions("TSH-ORG-M-BLUE")][:2] == ["TSH-ORG-M-BLU", "TSH-ORG-L-BLU"]
    assert [u.sku for u in catalogue.suggestions("coffee beans ethiopia")] == ["BEAN-ETH-1KG"]
    assert catalogue.suggestions("ZZZZZZZZ") == []


def test_the_row_of_this_shop_wins_over_the_shop_groups_shared_row() -> None:
    unit = SellableUnit("X", 7, 0, "x")
    own = StockAvailable(id=1, id_product=7, id_shop=1)
    shared = StockAvailable(id=2, id_product=7, id_shop=0, id_shop_group=1)
    other = StockAvailable(id=3, id_product=7, id_shop=2)
    assert stock_row_for_shop([other, shared, own], 1, unit) == own
    assert stock_row_for_shop([other, shared], 1, unit) == shared
    assert stock_row_for_shop([other], 1, unit) is None
    with pytest.raises(InvalidMessage) as caught:
        stock_row_for_shop([own, StockAvailable(id=4, id_product=7, id_shop=1)], 1, unit)
    assert caught.value.reason == "prestashop_ambiguous_stock"


# --- against the sandbox ---------------------------------------------------------------------------


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=VERSIONS)
def shop(request: pytest.FixtureRequest) -> Iterator[SandboxServer]:
    with running_shop(request.param) as server:
        yield server


def _level(sku: str, *, on_hand: str, allocated: str = "0", available: str | None = None) -> dict[str, Any]:
    return datum(
        "InventoryLevel",
        "on-hand-change",
        sku=sku,
        on_hand=on_hand,
        allocated=allocated,
        available=available if available is not None else str(Decimal(on_hand) - Decimal(allocated)),
    )


async def _units(a: Admin) -> tuple[dict[str, Any], dict[str, Any]]:
    """A product without combinations and one combination, as stored."""
    products = await a.rows("products")
    simple = next(p for p in products if not p["associations"].get("combinations"))
    combination = (await a.rows("combinations"))[0]
    return simple, combination


async def _stock(a: Admin, id_product: int, id_attribute: int) -> int:
    [row] = [
        r
        for r in await a.rows("stock_availables")
        if int(r["id_product"]) == id_product and int(r["id_product_attribute"]) == id_attribute
    ]
    return int(row["quantity"])


async def test_the_newest_level_is_written_once_per_unit(shop: SandboxServer) -> None:
    async with admin(shop) as a, sink_client(shop) as client:
        simple, combination = await _units(a)
        sink = InventorySink(client, ShopCatalogue(client), rules(), shop_id=SHOP_ID)
        assert sink.coalesce_s == COALESCE_S == 0.25

        for record, id_product, id_attribute in (
            (_level(simple["reference"], on_hand="517", allocated="17"), int(simple["id"]), 0),
            (
                _level(combination["reference"], on_hand="42.7"),
                int(combination["id_product"]),
                combination["id"],
            ),
        ):
            model = sink.decode(record, context())
            assert isinstance(model, StockLevel)
            first = await sink.apply(model, context())
            again = await sink.apply(model, context(attempt=2))
            assert first.outcome == "written"
            assert again.outcome == "unchanged"
            assert await _stock(a, id_product, id_attribute) == model.quantity
        assert await _stock(a, int(simple["id"]), 0) == 500
        assert await _stock(a, int(combination["id_product"]), combination["id"]) == 42


async def test_a_stock_write_reads_the_row_once_and_writes_it_once(shop: SandboxServer) -> None:
    wire = Wire()
    async with admin(shop) as a, sink_client(shop, wire) as client:
        simple, _ = await _units(a)
        catalogue = ShopCatalogue(client)
        await catalogue.unit(
            str(simple["reference"])
        )  # the catalogue is read once per process, not per write
        sink = InventorySink(client, catalogue, rules(), shop_id=SHOP_ID)
        model = sink.decode(_level(simple["reference"], on_hand="321"), context())
        assert isinstance(model, StockLevel)
        wire.calls.clear()
        assert (await sink.apply(model, context())).outcome == "written"
    stock_calls = [(method, path) for method, path in wire.calls if "stock_availables" in path]
    # PUT of the whole record on PrestaShop 8, PATCH on 9.
    assert [method for method, _ in stock_calls] in (["GET", "PUT"], ["GET", "PATCH"]), wire.calls


async def test_an_erp_sku_written_in_capitals_finds_the_shop_reference(shop: SandboxServer) -> None:
    async with admin(shop) as a, sink_client(shop) as client:
        simple, _ = await _units(a)
        await a.call("PATCH", f"products/{simple['id']}", json={"fields": {"reference": "mug-cer-350"}})
        sink = InventorySink(client, ShopCatalogue(client), rules(), shop_id=SHOP_ID)
        model = sink.decode(_level("MUG-CER-350", on_hand="7"), context())
        assert isinstance(model, StockLevel)
        assert (await sink.apply(model, context())).outcome == "written"
        assert await _stock(a, int(simple["id"]), 0) == 7


async def test_a_503_on_the_stock_write_is_retryable(shop: SandboxServer) -> None:
    async with admin(shop) as a, sink_client(shop) as client:
        simple, _ = await _units(a)
        sink = InventorySink(client, ShopCatalogue(client), rules(), shop_id=SHOP_ID)
        model = sink.decode(_level(simple["reference"], on_hand="3"), context())
        assert isinstance(model, StockLevel)
        write = "PUT" if shop.app.sandbox.store.version < (8,) else "PATCH"
        await a.fail_next("stock_availables", status=503, method=write)

        with pytest.raises(RetryableError) as caught:
            await sink.apply(model, context())
        assert caught.value.status == 503
        assert await _stock(a, int(simple["id"]), 0) != 3

        assert (await sink.apply(model, context(attempt=2))).outcome == "written"
        assert await _stock(a, int(simple["id"]), 0) == 3


async def test_an_item_the_shop_does_not_sell_is_unknown_sku_with_suggestions(shop: SandboxServer) -> None:
    async with admin(shop) as a, sink_client(shop) as client:
        _, combination = await _units(a)
        near = combination["reference"][:-1]  # "PSI-00001-XL-BLAC": one letter short of a real SKU
        sink = InventorySink(client, ShopCatalogue(client), rules(), shop_id=SHOP_ID)
        model = sink.decode(_level(near, on_hand="5"), context())
        assert isinstance(model, StockLevel)

        with pytest.raises(InvalidMessage) as caught:
            await sink.apply(model, context())

    error = caught.value
    assert (error.reason, error.field_path) == ("unknown_sku", "sku")
    assert error.details["sku"] == near
    assert error.details["suggestions"].split(",")[0] == combination["reference"]
    assert error.details["suggestion_names"]


async def test_the_catalogue_is_read_again_on_a_miss_at_most_once_per_interval(shop: SandboxServer) -> None:
    async with admin(shop) as a, sink_client(shop) as client:
        simple, _ = await _units(a)
        now = [1000.0]
        catalogue = ShopCatalogue(client, min_reload_s=60.0, clock=lambda: now[0])
        sink = InventorySink(client, catalogue, rules(), shop_id=SHOP_ID)
        model = sink.decode(_level("NEW-IN-SHOP", on_hand="9"), context())
        assert isinstance(model, StockLevel)
        with pytest.raises(InvalidMessage):
            await sink.apply(model, context())
        # The merchant gives the product the ERP's SKU; a miss within the interval does not reread.
        await a.call("PATCH", f"products/{simple['id']}", json={"fields": {"reference": "NEW-IN-SHOP"}})
        with pytest.raises(InvalidMessage):
            await sink.apply(model, context(attempt=2))
        assert catalogue.loads == 1

        now[0] += 61.0
        assert (await sink.apply(model, context(attempt=3))).outcome == "written"
        assert catalogue.loads == 2
        assert await _stock(a, int(simple["id"]), 0) == 9
