"""Inventory over the whole stack: Infor's stock movements end as the shop's stock of every SKU.

For 30 s the Infor warehouse that feeds the shop (001) receives goods, corrects counts down (to zero
now and then) and books fractional quantities, about ten movements a second over every catalogue item
(each item at least once, in random order, then at random), through the sandbox's admin API: M3
stamps each balance, pushes a Sync.InventoryCount and lists it in the MI changed-since feed, the
processors turn both into ``canonical.inventory.v1`` and the stock sink writes the shop's
``stock_availables``. Afterwards the shop must show, for every SKU, what Infor holds free: on hand minus
allocated, whole units (PrestaShop stock is an integer), never below zero. The sandbox's own random
stock drift is paused meanwhile so the end state is Infor's last word.

``canonical.inventory.v1`` is keyed by SKU alone, so the levels of every warehouse of a SKU share the
stock sink's coalescing window; a level of another warehouse arriving right after the shop's
warehouse's must not hide it (the sink skips the other warehouse's, and the runner then applies the
newest record it does not skip).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Mapping
from decimal import ROUND_FLOOR, Decimal

import pytest

from devstack.setup import CatalogueEntry
from tests.e2e.running_stack import STACK_START_ALLOWANCE_S, RunningStack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(STACK_START_ALLOWANCE_S + 300)]

WAREHOUSE = "001"
"""The warehouse the stack's rules map to shop 1 (``warehouses.to_prestashop_shops``)."""
OTHER_WAREHOUSE = "002"
MOVEMENT_S = 30.0
MOVEMENTS_PER_S = 10.0
SEED = 7
CONVERGE_TIMEOUT_S = 120.0
STOCK_SINK = "prestashop-stock"


def shop_quantity_of(balance: Mapping[str, str]) -> int:
    """What the shop should show for an Infor balance: free (on hand - allocated), whole, >= 0."""
    free = Decimal(balance["STQT"]) - Decimal(balance["ALQT"])
    return max(0, int(free.to_integral_value(rounding=ROUND_FLOOR)))


def shop_stock(stack: RunningStack) -> dict[tuple[int, int], int]:
    """(id_product, id_product_attribute) → the shop's quantity (shop 1)."""
    return {
        (int(row["id_product"]), int(row["id_product_attribute"])): int(row["quantity"])
        for row in stack.shop.rows("stock_availables")
        if str(row.get("id_shop")) == "1"
    }


def disagreements(stack: RunningStack, units: list[CatalogueEntry]) -> list[str]:
    """Units whose shop quantity is not what Infor's balance says (empty: all agree)."""
    shown = shop_stock(stack)
    found: list[str] = []
    for unit in units:
        balance = stack.infor.balance(WAREHOUSE, unit.item_number)
        assert balance is not None
        wanted = shop_quantity_of(balance)
        quantity = shown.get((unit.product_id, unit.combination_id))
        if quantity != wanted:
            found.append(
                f"{unit.item_number}: shop {quantity}, Infor {wanted} "
                f"(STQT {balance['STQT']}, ALQT {balance['ALQT']})"
            )
    return found


@pytest.fixture
def drift_paused(stack: RunningStack) -> Iterator[None]:
    """The Infor sandbox's own random stock drift off for the test, then back as it was."""
    interval = float(stack.infor.warehouse()["stock_drift_interval_s"])
    stack.infor.configure_warehouse(stock_drift_interval_s=0.0)
    try:
        yield
    finally:
        stack.infor.configure_warehouse(stock_drift_interval_s=interval)


def units_with_stock(stack: RunningStack) -> list[CatalogueEntry]:
    """Catalogue units whose M3 item has a balance in the shop's warehouse."""
    return [unit for unit in stack.catalogue.matched if stack.infor.balance(WAREHOUSE, unit.item_number)]


def test_random_infor_stock_movements_for_30_s_end_as_the_shops_stock_of_every_sku(
    stack: RunningStack, drift_paused: None
) -> None:
    units = units_with_stock(stack)
    items = sorted({unit.item_number for unit in units})
    rng = random.Random(SEED)
    sink_service = stack.service_of_sink(STOCK_SINK)
    outcomes_before = stack.outcomes(sink_service, STOCK_SINK)
    writes_before = stack.metric(
        sink_service, "psinfor_target_request_duration_seconds_count", operation="update_stock_available"
    )
    crashes_before = len(stack.crashes())
    first_round = rng.sample(items, len(items))
    moved: dict[str, int] = {}
    kinds = {"receipt": 0, "correction": 0, "to_zero": 0, "fractional": 0}
    started = time.monotonic()
    count = 0
    while time.monotonic() - started < MOVEMENT_S:
        due = started + count / MOVEMENTS_PER_S
        if due > time.monotonic():
            time.sleep(due - time.monotonic())
        item = first_round[count] if count < len(first_round) else rng.choice(items)
        count += 1
        balance = stack.infor.balance(WAREHOUSE, item)
        assert balance is not None
        on_hand, allocated = Decimal(balance["STQT"]), Decimal(balance["ALQT"])
        roll = rng.random()
        if roll < 0.6:
            kinds["receipt"] += 1
            target = on_hand + rng.randint(1, 40)
        elif roll < 0.85:
            kinds["correction"] += 1
            target = on_hand - rng.randint(1, 5)
        elif roll < 0.93:
            kinds["to_zero"] += 1
            target = Decimal(0)
        else:
            kinds["fractional"] += 1
            target = on_hand + Decimal(rng.randint(1, 9)) / 4
        stack.infor.set_on_hand(WAREHOUSE, item, max(allocated, target))
        moved[item] = moved.get(item, 0) + 1
    moving_s = time.monotonic() - started
    assert set(moved) == set(items), "every item moved at least once"

    stopped = time.monotonic()
    stack.wait_until(
        lambda: not disagreements(stack, units), CONVERGE_TIMEOUT_S, "the shop's stock to equal Infor's"
    )
    converged_s = time.monotonic() - stopped
    time.sleep(3.0)  # nothing late may move it again
    left = disagreements(stack, units)
    outcomes = stack.outcomes(sink_service, STOCK_SINK)
    delta = {name: int(outcomes.get(name, 0) - outcomes_before.get(name, 0)) for name in sorted(outcomes)}
    writes = stack.metric(
        sink_service, "psinfor_target_request_duration_seconds_count", operation="update_stock_available"
    )
    print(
        f"\ninventory: {count} Infor stock movements in {moving_s:.1f} s over {len(items)} items ({kinds}); "
        f"the shop showed Infor's free stock for all {len(units)} units {converged_s:.1f} s after the last "
        f"movement; stock sink outcomes {delta}; {int(writes - writes_before)} stock writes "
        f"({(writes - writes_before) / len(items):.2f} per item)"
    )
    assert left == [], left[:10]
    assert stack.crashes()[crashes_before:] == []


def test_a_level_of_another_warehouse_right_after_does_not_hide_the_shops_warehouse_level(
    stack: RunningStack, drift_paused: None
) -> None:
    unit = next(
        unit
        for unit in stack.sellable_units()
        if stack.infor.balance(WAREHOUSE, unit.item_number)
        and stack.infor.balance(OTHER_WAREHOUSE, unit.item_number)
    )
    ours = stack.infor.balance(WAREHOUSE, unit.item_number)
    other = stack.infor.balance(OTHER_WAREHOUSE, unit.item_number)
    assert ours is not None
    assert other is not None
    wanted = shop_stock(stack)[(unit.product_id, unit.combination_id)] + 17
    shown = None
    try:
        stack.infor.set_on_hand(WAREHOUSE, unit.item_number, Decimal(ours["ALQT"]) + wanted)
        stack.infor.set_on_hand(OTHER_WAREHOUSE, unit.item_number, Decimal(other["STQT"]) + 3)
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline:
            shown = shop_stock(stack)[(unit.product_id, unit.combination_id)]
            if shown == wanted:
                break
            time.sleep(0.5)
    finally:
        # Leave the shop agreeing with Infor: one more movement of 001 alone reaches it.
        stack.infor.set_on_hand(WAREHOUSE, unit.item_number, Decimal(ours["ALQT"]) + wanted + 1)
    print(f"\n{unit.item_number}: Infor 001 free {wanted}, then a 002 movement; the shop shows {shown}")
    assert shown == wanted
