"""The product sink: owned-field diff (pure) and partial writes of only those fields against the sandbox."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from pipeline.errors import InvalidMessage, RetryableError
from sandbox.prestashop.server import SandboxServer
from sinks.base import Skip
from sinks.prestashop_products import (
    ItemMaster,
    ProductSink,
    desired_fields,
    gtin_field,
    kg_per_unit,
    owned_changes,
    to_item_master,
)
from sinks.prestashop_target import ShopCatalogue, ShopCurrencies
from tests.unit.test_sinks_prestashop_support import (
    VERSIONS,
    Admin,
    Wire,
    admin,
    context,
    datum,
    running_shop,
    sink_client,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

EAN = "4006381333931"


# --- pure ------------------------------------------------------------------------------------------


def test_decode_takes_the_erp_item_and_skips_the_shops_own_catalogue() -> None:
    erp = to_item_master(datum("Product", "erp-item-fractional-weight", gtin=EAN))
    assert erp == ItemMaster(
        sku="BEAN-ETH-1KG",
        price=Decimal("13.420000"),
        currency="EUR",
        weight_kg=Decimal("1.0250"),
        gtin=EAN,
        mpn="ETH-YRG-G1",
    )
    assert to_item_master(datum("Product", "variant-with-attributes")) == Skip("echo")
    with pytest.raises(InvalidMessage) as caught:
        to_item_master(datum("Product", "erp-item-fractional-weight", gtin="12345"))
    assert (caught.value.reason, caught.value.field_path) == ("invalid_format", "gtin")


def test_gtins_and_weight_units_map_to_what_the_shop_holds() -> None:
    assert gtin_field("036000291452") == "upc"
    assert gtin_field(EAN) == "ean13"
    assert gtin_field("96385074") == "ean13"
    assert kg_per_unit("") == kg_per_unit("KG") == Decimal(1)
    assert kg_per_unit("lb") == Decimal("0.45359237")
    with pytest.raises(InvalidMessage):
        kg_per_unit("stone")


def test_a_combination_gets_impacts_on_its_products_price_and_weight() -> None:
    item = ItemMaster("SKU", Decimal("20.00"), "EUR", Decimal("0.9"), None, None)
    assert desired_fields(item, kg_per_shop_unit=Decimal(1), base_price=None, base_weight=None) == {
        "price": Decimal("20.000000"),
        "weight": Decimal("0.900000"),
    }
    assert desired_fields(
        item, kg_per_shop_unit=Decimal(1), base_price=Decimal("18.5"), base_weight=Decimal("1.0")
    ) == {"price": Decimal("1.500000"), "weight": Decimal("-0.100000")}
    in_grams = desired_fields(item, kg_per_shop_unit=Decimal("0.001"), base_price=None, base_weight=None)
    assert in_grams["weight"] == Decimal("900.000000")


def test_owned_changes_are_the_owned_fields_that_differ_and_nothing_else() -> None:
    current: dict[str, Decimal | str] = {
        "price": Decimal("13.420000"),
        "weight": Decimal("1.000000"),
        "ean13": EAN,
        "mpn": "",
    }
    desired: dict[str, Decimal | str] = {
        "price": Decimal("13.42"),  # equal as a number: no write
        "weight": Decimal("1.025000"),
        "ean13": EAN,
        "mpn": "ETH-YRG-G1",
        "name": "Coffee beans",  # not the ERP's to write
        "active": "0",
    }
    assert owned_changes(current, desired) == {"weight": Decimal("1.025000"), "mpn": "ETH-YRG-G1"}
    assert owned_changes(current, {"price": Decimal("13.42")}) == {}


# --- against the sandbox ---------------------------------------------------------------------------


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=VERSIONS)
def shop(request: pytest.FixtureRequest) -> Iterator[SandboxServer]:
    with running_shop(request.param) as server:
        yield server


def _item(sku: str, **changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"sku": sku, "gtin": EAN, "price": {"amount": "13.42", "currency": "EUR"}}
    values.update(changes)
    return datum("Product", "erp-item-fractional-weight", **values)


def _sink(client: Any) -> ProductSink:
    return ProductSink(client, ShopCatalogue(client), ShopCurrencies(client))


async def _decoded(sink: ProductSink, record: dict[str, Any]) -> ItemMaster:
    model = sink.decode(record, context())
    assert isinstance(model, ItemMaster)
    return model


async def _simple_product(a: Admin) -> dict[str, Any]:
    return next(p for p in await a.rows("products") if not p["associations"].get("combinations"))


_OWNED_OR_MOVING = {"price", "weight", "ean13", "upc", "mpn", "date_upd"}


def _empty_is_null(value: Any) -> Any:
    return None if value == "" else value


async def test_a_product_gets_exactly_the_owned_fields_once(shop: SandboxServer) -> None:
    wire = Wire()
    async with admin(shop) as a, sink_client(shop, wire) as client:
        before = await _simple_product(a)
        sink = _sink(client)
        model = await _decoded(sink, _item(before["reference"]))

        first = await sink.apply(model, context())
        writes = len(wire.writes())
        again = await sink.apply(model, context(attempt=2))

        after = await a.row("products", before["id"])
        assert first.outcome == "written"
        assert first.facts is not None
        assert first.facts["fields"] == "ean13,mpn,price,weight"
        assert again.outcome == "unchanged"
        assert writes == 1
        assert len(wire.writes()) == 1  # the redelivery read, and wrote nothing
        assert Decimal(after["price"]) == Decimal("13.42")
        assert Decimal(after["weight"]) == Decimal("1.025")
        assert (after["ean13"], after["mpn"]) == (EAN, "ETH-YRG-G1")
        # Everything the shop owns is untouched: names, descriptions, active, associations, dates. (On 1.7
        # the write is a full PUT, and XML cannot say NULL: a NULL field comes back as an empty one.)
        keep = {name: _empty_is_null(value) for name, value in before.items() if name not in _OWNED_OR_MOVING}
        assert {name: _empty_is_null(after[name]) for name in keep} == keep


async def test_a_combination_gets_impacts_and_its_product_keeps_its_price(shop: SandboxServer) -> None:
    async with admin(shop) as a, sink_client(shop) as client:
        combination = (await a.rows("combinations"))[0]
        product = await a.row("products", int(combination["id_product"]))
        price = Decimal(product["price"]) + Decimal("3.50")
        sink = _sink(client)
        record = _item(
            combination["reference"], price={"amount": str(price), "currency": "EUR"}, weight_kg=None
        )

        assert (await sink.apply(await _decoded(sink, record), context())).outcome == "written"

        stored = await a.row("combinations", combination["id"])
        assert Decimal(stored["price"]) == Decimal("3.50")
        assert Decimal(stored["weight"]) == Decimal(combination["weight"])  # the ERP said nothing
        assert stored["ean13"] == EAN
        assert (await a.row("products", product["id"]))["price"] == product["price"]


async def test_a_503_on_the_write_is_retryable(shop: SandboxServer) -> None:
    async with admin(shop) as a, sink_client(shop) as client:
        product = await _simple_product(a)
        sink = _sink(client)
        model = await _decoded(sink, _item(product["reference"]))
        write = "PUT" if shop.app.sandbox.store.version < (8,) else "PATCH"
        await a.fail_next("products", status=503, method=write)

        with pytest.raises(RetryableError):
            await sink.apply(model, context())
        assert (await a.row("products", product["id"]))["price"] == product["price"]
        assert (await sink.apply(model, context(attempt=2))).outcome == "written"


async def test_unknown_skus_and_foreign_currencies_are_invalid(shop: SandboxServer) -> None:
    async with admin(shop) as a, sink_client(shop) as client:
        product = await _simple_product(a)
        sink = _sink(client)
        with pytest.raises(InvalidMessage) as unknown:
            await sink.apply(await _decoded(sink, _item(product["reference"] + "-X")), context())
        usd = _item(product["reference"], price={"amount": "13.42", "currency": "USD"})
        with pytest.raises(InvalidMessage) as currency:
            await sink.apply(await _decoded(sink, usd), context())
    assert unknown.value.reason == "unknown_sku"
    assert product["reference"] in unknown.value.details["suggestions"].split(",")
    assert (currency.value.reason, currency.value.field_path) == ("currency_mismatch", "price.currency")
