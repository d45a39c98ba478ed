"""The shipment sink: tracking number choice (pure), and the number (never a state) against the sandbox."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connectors.prestashop.models import OrderCarrier
from pipeline.errors import InvalidMessage, RetryableError
from sandbox.prestashop.server import SandboxServer
from sinks.base import Skip
from sinks.prestashop_shipments import (
    ShipmentSink,
    ShipmentUpdate,
    carrier_row_to_update,
    to_shipment_update,
    tracking_number_of,
)
from tests.unit.test_sinks_prestashop_support import (
    SHOP_ID,
    VERSIONS,
    admin,
    context,
    datum,
    running_shop,
    sink_client,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

TRACKING = "1Z999AA10123456784"


# --- pure ------------------------------------------------------------------------------------------


def test_the_buyer_gets_the_first_tracking_number_else_the_first_packages() -> None:
    two = datum("Shipment", "two-parcels")
    assert tracking_number_of(two) == "6A12345678901"
    only_packages = datum(
        "Shipment",
        "two-parcels",
        tracking_numbers=[" "],
        packages=[
            {"package_id": "P1", "tracking_number": None, "weight_kg": None},
            {"package_id": "P2", "tracking_number": " PK-2 ", "weight_kg": None},
        ],
    )
    assert tracking_number_of(only_packages) == "PK-2"
    assert tracking_number_of(datum("Shipment", "two-parcels", tracking_numbers=[], packages=[])) is None


def test_decode_keeps_this_shops_orders_only() -> None:
    shipment = datum("Shipment", "two-parcels", order_key="1:42")
    assert to_shipment_update(shipment, shop_id=1) == ShipmentUpdate(
        "1:42", 42, "4000001234", "6A12345678901"
    )
    assert to_shipment_update(shipment, shop_id=2) == Skip("not_ours")
    echo = datum("Shipment", "two-parcels", meta={"source_system": "PRESTASHOP"})
    assert to_shipment_update(echo, shop_id=1) == Skip("echo")


def test_the_latest_carrier_row_is_updated_unless_it_already_holds_the_number() -> None:
    rows = [
        OrderCarrier(id=3, id_order=7, id_carrier=2, tracking_number=""),
        OrderCarrier(id=9, id_order=7, id_carrier=4, tracking_number="OLD"),
    ]
    assert carrier_row_to_update(rows, "NEW", id_order=7) == rows[1]
    assert carrier_row_to_update(rows, "OLD", id_order=7) is None
    with pytest.raises(InvalidMessage) as caught:
        carrier_row_to_update([], "NEW", id_order=7)
    assert caught.value.reason == "prestashop_no_order_carrier"


# --- against the sandbox ---------------------------------------------------------------------------


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=VERSIONS)
def shop(request: pytest.FixtureRequest) -> Iterator[SandboxServer]:
    with running_shop(request.param, order_state_ids={"PS_OS_SHIPPING": 24}) as server:
        yield server


def _shipment(id_order: int, tracking: str = TRACKING) -> dict[str, object]:
    return datum(
        "Shipment", "partial-no-tracking-url", order_key=f"{SHOP_ID}:{id_order}", tracking_numbers=[tracking]
    )


async def _decoded(sink: ShipmentSink, id_order: int, tracking: str = TRACKING) -> ShipmentUpdate:
    model = sink.decode(_shipment(id_order, tracking), context())
    assert isinstance(model, ShipmentUpdate)
    return model


async def test_the_tracking_number_is_written_once_and_no_state_is_posted(shop: SandboxServer) -> None:
    async with admin(shop) as a, sink_client(shop) as client:
        order = await a.place_order(state="PS_OS_PAYMENT")
        [carrier] = [row for row in await a.rows("order_carriers") if int(row["id_order"]) == order["id"]]
        before = await a.histories_of(order["id"])
        sink = ShipmentSink(client, shop_id=SHOP_ID)
        model = await _decoded(sink, order["id"])

        first = await sink.apply(model, context())
        again = await sink.apply(model, context(attempt=2))

        assert first.outcome == "written"
        assert again.outcome == "unchanged"
        assert again.facts is not None
        assert again.facts["why"] == "already_there"
        assert (await a.row("order_carriers", carrier["id"]))["tracking_number"] == TRACKING
        # "Shipped" is prestashop-status's to post (from M3's order status), never this sink's.
        assert int((await a.row("orders", order["id"]))["current_state"]) == await a.state_id("PS_OS_PAYMENT")
        assert await a.histories_of(order["id"]) == before


async def test_a_delivered_order_gets_the_tracking_number_and_stays_delivered(shop: SandboxServer) -> None:
    async with admin(shop) as a, sink_client(shop) as client:
        order = await a.place_order(state="PS_OS_DELIVERED")
        [carrier] = [row for row in await a.rows("order_carriers") if int(row["id_order"]) == order["id"]]
        before = await a.histories_of(order["id"])
        sink = ShipmentSink(client, shop_id=SHOP_ID)

        applied = await sink.apply(await _decoded(sink, order["id"]), context())

        assert applied.outcome == "written"
        assert (await a.row("order_carriers", carrier["id"]))["tracking_number"] == TRACKING
        assert int((await a.row("orders", order["id"]))["current_state"]) == await a.state_id(
            "PS_OS_DELIVERED"
        )
        assert await a.histories_of(order["id"]) == before


async def test_a_shipment_without_a_tracking_number_changes_nothing(shop: SandboxServer) -> None:
    async with admin(shop) as a, sink_client(shop) as client:
        order = await a.place_order(state="PS_OS_PAYMENT")
        before = await a.histories_of(order["id"])
        sink = ShipmentSink(client, shop_id=SHOP_ID)
        bare = datum(
            "Shipment",
            "partial-no-tracking-url",
            order_key=f"{SHOP_ID}:{order['id']}",
            tracking_numbers=[],
            packages=[],
        )
        model = sink.decode(bare, context())
        assert isinstance(model, ShipmentUpdate)

        applied = await sink.apply(model, context())

        assert applied.outcome == "unchanged"
        assert applied.facts is not None
        assert applied.facts["why"] == "no_tracking_number"
        assert await a.histories_of(order["id"]) == before


async def test_a_503_on_the_tracking_write_is_retryable_and_the_retry_writes_once(
    shop: SandboxServer,
) -> None:
    async with admin(shop) as a, sink_client(shop) as client:
        order = await a.place_order(state="PS_OS_PAYMENT")
        [carrier] = [row for row in await a.rows("order_carriers") if int(row["id_order"]) == order["id"]]
        sink = ShipmentSink(client, shop_id=SHOP_ID)
        model = await _decoded(sink, order["id"])
        write = "PUT" if shop.app.sandbox.store.version < (8,) else "PATCH"
        await a.fail_next("order_carriers", status=503, method=write)

        with pytest.raises(RetryableError):
            await sink.apply(model, context())
        assert (await a.row("order_carriers", carrier["id"]))["tracking_number"] != TRACKING

        assert (await sink.apply(model, context(attempt=2))).outcome == "written"
        assert (await sink.apply(model, context(attempt=3))).outcome == "unchanged"
        assert (await a.row("order_carriers", carrier["id"]))["tracking_number"] == TRACKING


async def test_a_tracking_number_the_shop_refuses_is_invalid(shop: SandboxServer) -> None:
    async with admin(shop) as a, sink_client(shop) as client:
        order = await a.place_order(state="PS_OS_PAYMENT")
        sink = ShipmentSink(client, shop_id=SHOP_ID)
        with pytest.raises(InvalidMessage) as caught:
            await sink.apply(await _decoded(sink, order["id"], tracking="NO*STARS"), context())
    assert caught.value.reason == "invalid_tracking_number"
