"""Paid-state marks: the writer brackets every paid state it posts, so the shop's invented payment is echo.

The marks themselves are pure (opened, closed, cumulative, read back from their record, judged by
:func:`payment_origin`). The writer runs against the PrestaShop sandbox over real HTTP, with the marks
kept by an in-memory ledger (the Kafka-backed one is exercised in
tests/integration/test_sinks_paid_state_echo.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from rules.canonical_status import FulfillmentStatus, Lifecycle, OrderStatus, PaymentStatus
from sandbox.prestashop.server import SandboxServer
from sinks.prestashop_target import (
    OrderStateWriter,
    PaidStateMark,
    PaidStateMarks,
    PaymentOrigin,
    payment_origin,
)
from tests.unit.test_sinks_prestashop_support import SHOP_ID, Admin, admin, rules, running_shop, sink_client

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

STAGE = "prestashop-status"
"""The one writer of order states, so the one stage that writes paid-state marks."""
SHIPPED = OrderStatus(fulfillment=FulfillmentStatus.SHIPPED)
CANCELLED = OrderStatus(lifecycle=Lifecycle.CANCELLED)


# --- pure ------------------------------------------------------------------------------------------


def test_what_appears_between_before_and_after_is_echo_and_stays_so_over_later_writes() -> None:
    first = PaidStateMark.opened("1:7", STAGE, 4, ["10"])
    assert first.open
    assert first.echo == frozenset()

    closed = first.closed(["10", "11"])
    assert (closed.open, closed.after, closed.echo) == (False, frozenset({"10", "11"}), frozenset({"11"}))

    again = PaidStateMark.opened("1:7", STAGE, 5, ["10", "11"], closed).closed(["10", "11", "12"])
    assert again.echo == frozenset({"11", "12"})
    assert again.state == 5
    # A write after which the shop added nothing keeps what was echo before.
    assert PaidStateMark.opened("1:7", STAGE, 5, ["10", "11", "12"], again).closed(
        ["10", "11", "12"]
    ).echo == (frozenset({"11", "12"}))


def test_a_mark_survives_its_record_and_other_records_are_not_marks() -> None:
    mark = PaidStateMark.opened("1:7", STAGE, 4, ["9", "10"]).closed(["9", "10", "11"])
    assert mark.key == b"echo:prestashop:paid-state:prestashop-status:1:7"
    assert PaidStateMark.from_record(mark.key, mark.to_json()) == mark
    opened = PaidStateMark.opened("1:7", STAGE, 4, ["9"])
    assert PaidStateMark.from_record(opened.key, opened.to_json()) == opened
    assert PaidStateMark.from_record(b"payment:1:7:11", mark.to_json()) is None
    assert PaidStateMark.from_record(mark.key, b"not json") is None
    assert PaidStateMark.from_record(mark.key, None) is None


def test_the_index_keeps_one_mark_per_stage_and_forgets_a_tombstoned_one() -> None:
    index = PaidStateMarks()
    tracking = PaidStateMark.opened("1:7", STAGE, 4, []).closed(["11"])
    # A mark of a stage that posted paid states before prestashop-status became the only writer.
    payment = PaidStateMark.opened("1:7", "prestashop-payment", 2, ["11"])
    assert index.apply(tracking.key, tracking.to_json())
    assert index.apply(payment.key, payment.to_json())
    assert not index.apply(b"order:1:7", b"{}")

    assert set(index.of_order("1:7")) == {tracking, payment}
    assert index.of_stage("1:7", STAGE) == tracking
    index.apply(payment.key, None)
    assert index.of_order("1:7") == (tracking,)


def test_a_payment_is_echo_unknown_or_genuine_by_the_orders_marks() -> None:
    closed = PaidStateMark.opened("1:7", STAGE, 4, ["10"]).closed(["10", "11"])
    open_ = PaidStateMark.opened("1:7", "prestashop-payment", 2, ["10", "11"])

    assert payment_origin([closed], "11") is PaymentOrigin.ECHO
    assert payment_origin([closed], "10") is PaymentOrigin.GENUINE
    assert payment_origin([], "10") is PaymentOrigin.GENUINE
    # While a write is under way, a payment that was not there before it began may be its echo ...
    assert payment_origin([closed, open_], "12") is PaymentOrigin.UNKNOWN
    # ... one that was there is not, and an echo stays one.
    assert payment_origin([closed, open_], "10") is PaymentOrigin.GENUINE
    assert payment_origin([closed, open_], "11") is PaymentOrigin.ECHO


# --- the writer against the sandbox ----------------------------------------------------------------


@dataclass
class MemoryLedger:
    """A :class:`~sinks.prestashop_target.PaidStateLedger` in memory, remembering every record written."""

    stage: str = STAGE
    marks: PaidStateMarks = field(default_factory=PaidStateMarks)
    written: list[PaidStateMark] = field(default_factory=list)

    def order_key(self, id_order: int) -> str:
        return f"{SHOP_ID}:{id_order}"

    async def mark(self, order_key: str) -> PaidStateMark | None:
        return self.marks.of_stage(order_key, self.stage)

    async def record(self, mark: PaidStateMark) -> None:
        self.written.append(mark)
        self.marks.remember(mark)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def shop() -> Iterator[SandboxServer]:
    with running_shop("8.1.7") as server:
        yield server


async def payment_ids(a: Admin, reference: str) -> list[str]:
    return [str(row["id"]) for row in await a.rows("order_payments") if row["order_reference"] == reference]


async def place(a: Admin, module: str) -> dict[str, Any]:
    body = {"customer_id": 1, "lines": [{"product_id": 1, "combination_id": 0, "quantity": 1}]}
    found: dict[str, Any] = await a.call("POST", "orders", json=body | {"payment_module": module})
    return found


async def test_shipping_a_bank_wire_order_marks_the_payment_the_shop_invents_as_echo(
    shop: SandboxServer,
) -> None:
    ledger = MemoryLedger()
    async with admin(shop) as a, sink_client(shop) as client:
        order = await place(a, "ps_wirepayment")
        assert await payment_ids(a, order["reference"]) == []  # the customer has not paid
        writer = OrderStateWriter(client, rules(), paid_states=ledger)

        result = await writer.move(order["id"], SHIPPED)
        again = await writer.move(order["id"], SHIPPED)  # redelivered: already there, nothing marked
        invented = await payment_ids(a, order["reference"])

    assert result.written
    assert not again.written
    assert len(invented) == 1
    opened, closed = ledger.written
    assert (opened.order_key, opened.stage, opened.open, opened.before) == (
        f"{SHOP_ID}:{order['id']}",
        STAGE,
        True,
        frozenset(),
    )
    assert (closed.open, closed.echo) == (False, frozenset(invented))
    assert payment_origin(ledger.marks.of_order(closed.order_key), invented[0]) is PaymentOrigin.ECHO


async def test_shipping_a_card_order_marks_nothing_as_echo(shop: SandboxServer) -> None:
    ledger = MemoryLedger()
    async with admin(shop) as a, sink_client(shop) as client:
        order = await place(a, "stripe_official")  # paid at checkout: the shop recorded the payment then
        [paid] = await payment_ids(a, order["reference"])
        result = await OrderStateWriter(client, rules(), paid_states=ledger).move(order["id"], SHIPPED)

    assert result.written
    assert [mark.open for mark in ledger.written] == [True, False]
    assert ledger.written[-1].echo == frozenset()
    assert payment_origin(ledger.marks.of_order(f"{SHOP_ID}:{order['id']}"), paid) is PaymentOrigin.GENUINE


async def test_an_unpaid_state_is_posted_without_a_mark(shop: SandboxServer) -> None:
    ledger = MemoryLedger()
    async with admin(shop) as a, sink_client(shop) as client:
        order = await place(a, "ps_wirepayment")
        result = await OrderStateWriter(client, rules(), paid_states=ledger).move(order["id"], CANCELLED)

    assert result.written
    assert ledger.written == []


async def test_an_open_mark_left_by_a_crash_is_closed_with_the_payments_the_shop_holds_now(
    shop: SandboxServer,
) -> None:
    ledger = MemoryLedger()
    async with admin(shop) as a, sink_client(shop) as client:
        order = await place(a, "ps_wirepayment")
        order_key = f"{SHOP_ID}:{order['id']}"
        # The process posted Shipped after recording the open mark, and died before closing it.
        await ledger.record(PaidStateMark.opened(order_key, STAGE, await a.state_id("PS_OS_SHIPPING"), []))
        await a.call("POST", f"orders/{order['id']}/state", json={"state": "PS_OS_SHIPPING"})
        invented = await payment_ids(a, order["reference"])

        # The redelivered shipment finds the order shipped: nothing to post, but the mark is closed.
        result = await OrderStateWriter(client, rules(), paid_states=ledger).move(order["id"], SHIPPED)

    assert not result.written
    assert len(invented) == 1
    closed = ledger.written[-1]
    assert (closed.open, closed.echo) == (False, frozenset(invented))


async def test_the_paid_state_a_concluded_payment_moves_the_order_to_is_bracketed_too(
    shop: SandboxServer,
) -> None:
    # The payment sinks emit PAID with only the payment dimension; prestashop-status posts it.
    ledger = MemoryLedger()
    async with admin(shop) as a, sink_client(shop) as client:
        order = await place(a, "ps_checkpayment")
        paid = OrderStatus(payment=PaymentStatus.PAID)
        result = await OrderStateWriter(client, rules(), paid_states=ledger).move(order["id"], paid)
        invented = await payment_ids(a, order["reference"])

    assert result.written
    assert len(invented) == 1
    assert ledger.written[-1].echo == frozenset(invented)
