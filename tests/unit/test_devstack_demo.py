"""The demo's script and its narration lines (the run itself is in tests/integration/test_dev_up.py)."""

from __future__ import annotations

import pytest

from devstack.demo import PAID_AT_CHECKOUT, demo_orders, format_step, money
from devstack.setup import Catalogue, CatalogueEntry


def catalogue(simple: int, variants: int) -> Catalogue:
    entries = [CatalogueEntry(n, 0, f"SKU-{n}", f"thing {n}", f"SKU-{n}", True) for n in range(1, simple + 1)]
    entries += [
        CatalogueEntry(100 + n, 200 + n, f"SKU-V{n}", f"variant {n}", f"SKU-V{n}", True)
        for n in range(variants)
    ]
    entries.append(CatalogueEntry(99, 0, "SKU-X", "not for sale", "SKU-X", False))
    return Catalogue(matched=tuple(entries), shop_only=(), infor_only=())


def test_the_scripted_orders_cover_variants_new_and_returning_customers_currencies_and_payments() -> None:
    orders = demo_orders(catalogue(4, 3), tag="t1")
    assert len(orders) == 3
    checkouts = [order.checkout for order in orders]
    assert [c.currency for c in checkouts] == ["EUR", "USD", "GBP"]
    assert [c.payment_module for c in checkouts] == ["stripe_official", "ps_wirepayment", "ps_checkpayment"]
    assert [order.paid_at_checkout for order in orders] == [True, False, False]
    assert checkouts[1].new_customer is not None
    assert checkouts[1].new_customer.email == "demo.t1@example.com"
    assert checkouts[0].customer_id is not None
    assert checkouts[2].customer_id is not None
    assert any(line.combination_id for line in checkouts[0].lines)
    assert any(line.combination_id == 0 for line in checkouts[0].lines)
    for order in orders:
        assert len(order.units) == len(order.checkout.lines)
        assert all(unit.sellable for unit in order.units)
        assert [(u.product_id, u.combination_id) for u in order.units] == [
            (line.product_id, line.combination_id) for line in order.checkout.lines
        ]
    assert len(demo_orders(catalogue(4, 3), tag="t1", count=1)) == 1
    assert "stripe_official" in PAID_AT_CHECKOUT


def test_a_catalogue_too_small_for_the_script_is_refused() -> None:
    with pytest.raises(ValueError, match="too small"):
        demo_orders(catalogue(2, 3), tag="t")


def test_narration_lines_align_time_and_system() -> None:
    assert format_step(0.04, "webhook", "received") == "    +0.0s  webhook     received"
    assert format_step(12.345, "PrestaShop", "placed") == "   +12.3s  PrestaShop  placed"
    assert money("118.2", "EUR") == "118.20 EUR"
    assert money(7, "GBP") == "7.00 GBP"
