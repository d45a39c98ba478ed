"""The order-status sink: the forward-only decision (pure) and its writes against the sandbox over HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connectors.prestashop.models import OrderState
from pipeline.errors import InvalidMessage, RetryableError
from rules.canonical_status import FulfillmentStatus, Lifecycle, OrderStatus, PaymentStatus
from rules.status import ShopStates
from sandbox.prestashop.server import SandboxServer
from sinks.base import Applied, Skip
from sinks.prestashop_order_status import OrderStatusSink, StatusChange, to_status_change
from sinks.prestashop_target import OrderStateWriter, PlanReason, plan_status_write
from tests.unit.test_sinks_prestashop_support import (
    SHOP_ID,
    VERSIONS,
    admin,
    context,
    datum,
    rules,
    running_shop,
    sink_client,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

# id, key, paid, shipped, delivery, logable, invoice: the default install (reference §2.8), but with
# Shipped and Delivered renumbered as on a shop upgraded from 1.6, so no test can lean on default ids.
_STATES = (
    (1, "PS_OS_CHEQUE", 0, 0, 0, 0, 0),
    (2, "PS_OS_PAYMENT", 1, 0, 0, 1, 1),
    (3, "PS_OS_PREPARATION", 1, 0, 1, 1, 1),
    (24, "PS_OS_SHIPPING", 1, 1, 1, 1, 1),
    (25, "PS_OS_DELIVERED", 1, 1, 1, 1, 1),
    (6, "PS_OS_CANCELED", 0, 0, 0, 0, 0),
    (7, "PS_OS_REFUND", 0, 0, 0, 0, 1),
    (8, "PS_OS_ERROR", 0, 0, 0, 0, 0),
    (10, "PS_OS_BANKWIRE", 0, 0, 0, 0, 0),
    (30, None, 1, 1, 0, 1, 0),  # a custom "handed to carrier" state: matched by flags only
)


def _shop_states() -> ShopStates:
    states = [
        OrderState(id=i, paid=bool(p), shipped=bool(s), delivery=bool(d), logable=bool(lg), invoice=bool(inv))
        for i, _, p, s, d, lg, inv in _STATES
    ]
    return ShopStates.build(states, {key: str(i) for i, key, *_ in _STATES if key is not None})


SHIPPED = OrderStatus(PaymentStatus.PAID, FulfillmentStatus.SHIPPED, Lifecycle.OPEN)
DELIVERED = OrderStatus(PaymentStatus.PAID, FulfillmentStatus.DELIVERED, Lifecycle.CLOSED)
CANCELLED = OrderStatus(PaymentStatus.PENDING, FulfillmentStatus.UNFULFILLED, Lifecycle.CANCELLED)
ON_HOLD = OrderStatus(PaymentStatus.PENDING, FulfillmentStatus.UNFULFILLED, Lifecycle.ON_HOLD)


# --- the decision (pure) ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "desired", "target", "reason"),
    [
        (2, SHIPPED, 24, PlanReason.FORWARD),  # paid → shipped: the shop's own id for PS_OS_SHIPPING
        (10, SHIPPED, 24, PlanReason.FORWARD),
        (3, DELIVERED, 25, PlanReason.FORWARD),
        (10, CANCELLED, 6, PlanReason.FORWARD),
        (24, SHIPPED, None, PlanReason.ALREADY_THERE),  # already there: no second history row
        (30, DELIVERED, 25, PlanReason.FORWARD),  # a custom state is read by its flags (shipped)
        (25, SHIPPED, None, PlanReason.BACKWARDS),  # delivered never goes back to shipped
        (25, CANCELLED, None, PlanReason.BACKWARDS),  # a closed order cannot be cancelled
        (6, SHIPPED, None, PlanReason.BACKWARDS),  # CANCELLED is terminal
        (10, ON_HOLD, None, PlanReason.NO_STATE),  # no shop state means "on hold"
    ],
)
def test_plan_moves_forward_only(
    current: int, desired: OrderStatus, target: int | None, reason: PlanReason
) -> None:
    plan = plan_status_write(rules().status, desired, current, _shop_states())
    assert (plan.target, plan.reason) == (target, reason)


def test_plan_refuses_a_state_the_shop_does_not_have() -> None:
    with pytest.raises(InvalidMessage) as caught:
        plan_status_write(rules().status, SHIPPED, 99, _shop_states())
    assert caught.value.reason == "unknown_order_state"


def test_decode_keeps_this_shops_erp_changes_and_skips_echoes_and_other_shops() -> None:
    erp = datum("OrderStatusChange", "infor-order-stop", order_key="1:17")
    assert to_status_change(erp, shop_id=1) == StatusChange("1:17", 17, ON_HOLD)
    assert to_status_change(erp, shop_id=2) == Skip("not_ours")
    from_shop = datum("OrderStatusChange", "prestashop-shipped", order_key="1:17")
    assert to_status_change(from_shop, shop_id=1) == Skip("echo")
    with pytest.raises(InvalidMessage) as caught:
        to_status_change(datum("OrderStatusChange", "infor-order-stop", order_key="?:1000004712"), shop_id=1)
    assert (caught.value.reason, caught.value.field_path) == ("invalid_order_key", "order_key")


@pytest.mark.parametrize(
    ("fulfillment", "payment", "lifecycle", "kept"),
    [
        ("ALLOCATED", "UNKNOWN", "OPEN", False),  # M3's steps before delivery name no shop state
        ("PICKING", "UNKNOWN", "OPEN", False),
        ("UNFULFILLED", "UNKNOWN", "OPEN", False),
        ("SHIPPED", "UNKNOWN", "OPEN", True),
        ("UNKNOWN", "PAID", "UNKNOWN", True),
        ("UNFULFILLED", "UNKNOWN", "CANCELLED", True),
    ],
)
def test_decode_skips_a_status_no_write_back_rule_names_without_reading_the_order(
    fulfillment: str, payment: str, lifecycle: str, kept: bool
) -> None:
    change = _change(17, payment_status=payment, fulfillment_status=fulfillment, lifecycle=lifecycle)
    decoded = to_status_change(change, shop_id=1, status_rules=rules().status)
    assert isinstance(decoded, StatusChange) is kept
    if not kept:
        assert decoded == Skip("no_state")


def test_decode_keeps_shipped_and_a_payment_only_change_from_the_pipeline() -> None:
    # This sink is the one writer of order states: M3's SHIPPED (status 66) is posted here, and so is
    # the PAID the payment sinks conclude and emit with only the payment dimension stated.
    only_shipped = _change(17, payment_status="UNKNOWN", fulfillment_status="SHIPPED", lifecycle="UNKNOWN")
    assert to_status_change(only_shipped, shop_id=1) == StatusChange(
        "1:17", 17, OrderStatus(fulfillment=FulfillmentStatus.SHIPPED)
    )
    paid_and_shipped = _change(17, payment_status="PAID", fulfillment_status="SHIPPED", lifecycle="OPEN")
    assert to_status_change(paid_and_shipped, shop_id=1) == StatusChange("1:17", 17, SHIPPED)
    concluded_paid = datum(
        "OrderStatusChange",
        "infor-order-stop",
        order_key="1:17",
        payment_status="PAID",
        fulfillment_status="UNKNOWN",
        lifecycle="UNKNOWN",
        meta={"source_system": "PIPELINE", "source_entity": "prestashop-payment"},
    )
    assert to_status_change(concluded_paid, shop_id=1) == StatusChange(
        "1:17", 17, OrderStatus(payment=PaymentStatus.PAID)
    )


# --- against the sandbox ---------------------------------------------------------------------------


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=VERSIONS)
def shop(request: pytest.FixtureRequest) -> Iterator[SandboxServer]:
    # Shipped and Delivered off their default ids: the sink must resolve them from the shop.
    with running_shop(request.param, order_state_ids={"PS_OS_SHIPPING": 24, "PS_OS_DELIVERED": 25}) as server:
        yield server


def _change(
    id_order: int, *, payment_status: str, fulfillment_status: str, lifecycle: str
) -> dict[str, object]:
    return datum(
        "OrderStatusChange",
        "infor-order-stop",
        order_key=f"{SHOP_ID}:{id_order}",
        payment_status=payment_status,
        fulfillment_status=fulfillment_status,
        lifecycle=lifecycle,
    )


def _delivered_for(id_order: int) -> dict[str, object]:
    return _change(id_order, payment_status="PAID", fulfillment_status="DELIVERED", lifecycle="CLOSED")


async def test_a_forward_change_is_written_once_and_a_redelivery_is_unchanged(shop: SandboxServer) -> None:
    async with admin(shop) as a, sink_client(shop) as client:
        order = await a.place_order(state="PS_OS_PAYMENT")
        before = len(await a.histories_of(order["id"]))
        sink = OrderStatusSink(OrderStateWriter(client, rules()), shop_id=SHOP_ID)
        model = sink.decode(_delivered_for(order["id"]), context())
        assert isinstance(model, StatusChange)

        first = await sink.apply(model, context())
        again = await sink.apply(model, context(attempt=2))

        delivered = await a.state_id("PS_OS_DELIVERED")
        assert delivered == 25
        assert first.outcome == "written"
        assert first.facts is not None
        assert first.facts["to_state"] == "25"
        assert again == Applied(
            "unchanged", {"id_order": str(order["id"]), "state": "25", "why": "already_there"}
        )
        assert int((await a.row("orders", order["id"]))["current_state"]) == delivered
        histories = await a.histories_of(order["id"])
        assert len(histories) == before + 1
        assert int(histories[-1]["id_order_state"]) == delivered


async def test_a_late_event_never_moves_the_order_backwards(shop: SandboxServer) -> None:
    async with admin(shop) as a, sink_client(shop) as client:
        order = await a.place_order(state="PS_OS_DELIVERED")
        before = await a.histories_of(order["id"])
        sink = OrderStatusSink(OrderStateWriter(client, rules()), shop_id=SHOP_ID)
        cancelled = _change(
            order["id"], payment_status="PENDING", fulfillment_status="UNFULFILLED", lifecycle="CANCELLED"
        )
        model = sink.decode(cancelled, context())
        assert isinstance(model, StatusChange)

        applied = await sink.apply(model, context())

        assert applied.outcome == "unchanged"
        assert applied.facts is not None
        assert applied.facts["why"] == "backwards"
        assert await a.histories_of(order["id"]) == before
        assert int((await a.row("orders", order["id"]))["current_state"]) == 25


async def test_a_503_is_retryable_and_the_retry_writes_exactly_once(shop: SandboxServer) -> None:
    async with admin(shop) as a, sink_client(shop) as client:
        order = await a.place_order(state="PS_OS_PAYMENT")
        before = len(await a.histories_of(order["id"]))
        sink = OrderStatusSink(OrderStateWriter(client, rules()), shop_id=SHOP_ID)
        model = sink.decode(_delivered_for(order["id"]), context())
        assert isinstance(model, StatusChange)
        await a.fail_next("order_histories", status=503)

        with pytest.raises(RetryableError) as caught:
            await sink.apply(model, context())
        assert caught.value.status == 503
        assert len(await a.histories_of(order["id"])) == before

        assert (await sink.apply(model, context(attempt=2))).outcome == "written"
        assert (await sink.apply(model, context(attempt=3))).outcome == "unchanged"
        assert len(await a.histories_of(order["id"])) == before + 1


async def test_an_order_the_shop_does_not_have_is_invalid_with_the_request_summary(
    shop: SandboxServer,
) -> None:
    async with sink_client(shop) as client:
        sink = OrderStatusSink(OrderStateWriter(client, rules()), shop_id=SHOP_ID)
        model = sink.decode(_delivered_for(987_654), context())
        assert isinstance(model, StatusChange)
        with pytest.raises(InvalidMessage) as caught:
            await sink.apply(model, context())
    assert caught.value.reason == "prestashop_not_found"
    assert caught.value.details["http_status"] == "404"
    assert caught.value.details["request"] == "GET /api/orders/987654"


async def test_shipped_and_a_concluded_paid_in_either_order_end_shipped_with_one_shipped_row(
    shop: SandboxServer,
) -> None:
    shipped_only = OrderStatus(fulfillment=FulfillmentStatus.SHIPPED)
    paid_only = OrderStatus(payment=PaymentStatus.PAID)
    async with admin(shop) as a, sink_client(shop) as client:
        sink = OrderStatusSink(OrderStateWriter(client, rules()), shop_id=SHOP_ID)
        shipping, payment = await a.state_id("PS_OS_SHIPPING"), await a.state_id("PS_OS_PAYMENT")
        outcomes: dict[str, list[str]] = {}
        for name, changes in (
            ("paid_first", (paid_only, shipped_only)),
            ("shipped_first", (shipped_only, paid_only)),
        ):
            order = await a.place_order(state="PS_OS_BANKWIRE")
            before = len(await a.histories_of(order["id"]))
            for desired in changes:
                applied = await sink.apply(
                    StatusChange(f"{SHOP_ID}:{order['id']}", order["id"], desired), context()
                )
                outcomes.setdefault(name, []).append(applied.outcome)
            added = [int(row["id_order_state"]) for row in (await a.histories_of(order["id"]))[before:]]
            assert int((await a.row("orders", order["id"]))["current_state"]) == shipping
            assert added == ([payment, shipping] if name == "paid_first" else [shipping]), (name, added)

    # A PAID after Shipped is already there (Shipped is a paid state): nothing is posted after it.
    assert outcomes == {"paid_first": ["written", "written"], "shipped_first": ["written", "unchanged"]}
