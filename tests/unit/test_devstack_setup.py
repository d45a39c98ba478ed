"""One world from two sandboxes: the shared catalogue, the stack's rules, and the shoppers."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from devstack.sandbox_admin import CheckoutRequest
from devstack.setup import Catalogue, CatalogueEntry, InforItem, ShopUnit, assign_items, shop_units
from devstack.stack_rules import item_case, stack_rules_text, with_item_case
from devstack.traffic import NEW_CUSTOMER_SHARE, ShopperModel, StockMovements
from rules.engine import default_rules_text, parse_rules


def test_shop_units_are_products_without_combinations_and_each_combination_in_id_order() -> None:
    products = [
        {"id": 2, "reference": "PSI-00002", "name": {"1": "Cap"}},
        {"id": 1, "reference": "PSI-00001", "name": {"1": "Jacket"}},
    ]
    combinations = [
        {"id": 11, "id_product": 2, "reference": "PSI-00002-L-RED"},
        {"id": 10, "id_product": 2, "reference": "PSI-00002-M-RED"},
    ]
    assert shop_units(products, combinations) == [
        ShopUnit(1, 0, "PSI-00001", "Jacket"),
        ShopUnit(2, 10, "PSI-00002-M-RED", "Cap"),
        ShopUnit(2, 11, "PSI-00002-L-RED", "Cap"),
    ]


def test_items_go_to_units_in_order_and_what_is_left_on_either_side_is_reported() -> None:
    units = [ShopUnit(1, 0, "PSI-1", "a"), ShopUnit(2, 5, "PSI-2-M", "b"), ShopUnit(3, 0, "PSI-3", "c")]
    items = [InforItem("SKU-2", "two", True), InforItem("SKU-1", "one", False)]
    catalogue = assign_items(units, items)
    assert catalogue.matched == (
        CatalogueEntry(1, 0, "SKU-1", "a", "SKU-1", False),
        CatalogueEntry(2, 5, "SKU-2", "b", "SKU-2", True),
    )
    assert catalogue.shop_only == (CatalogueEntry(3, 0, "PSI-3", "c"),)
    assert catalogue.infor_only == ()
    fewer_units = assign_items(units[:1], items)
    assert fewer_units.infor_only == ("SKU-2",)


def test_the_catalogue_file_reads_back_as_written(tmp_path: Path) -> None:
    catalogue = assign_items(
        [ShopUnit(1, 0, "PSI-1", "a"), ShopUnit(2, 0, "PSI-2", "b")], [InforItem("SKU-1", "x", True)]
    )
    path = tmp_path / "catalogue.json"
    path.write_text(json.dumps(catalogue.to_json()))
    assert Catalogue.load(path) == catalogue


def test_the_stack_rules_are_the_defaults_with_the_sandbox_warehouses() -> None:
    text = stack_rules_text()
    rules = parse_rules(text)
    default = parse_rules(default_rules_text())
    assert rules.model.warehouses.to_prestashop_shops == {"001": ["1"], "002": ["2"]}
    assert rules.model.warehouses.by_prestashop_warehouse == {1: "001", 2: "002"}
    assert {rule.set.warehouse for rule in rules.model.enrichment} == {"001", "002", None}
    assert rules.model.status == default.model.status
    assert rules.model.variants == default.model.variants
    assert "LYO" not in text.split("\n", 3)[3]  # only the header still names the production warehouse


def test_the_item_number_case_can_be_read_and_changed_without_touching_the_rest() -> None:
    text = stack_rules_text()
    assert item_case(text) == "upper"
    keep = with_item_case(text, "keep")
    assert item_case(keep) == "keep"
    changed = [(a, b) for a, b in zip(text.splitlines(), keep.splitlines(), strict=True) if a != b]
    assert changed == [("    case: upper", "    case: keep")]
    assert with_item_case(keep, "upper") == text
    with pytest.raises(Exception, match="rules"):
        with_item_case(text, "sideways")


def catalogue_units(count: int) -> list[CatalogueEntry]:
    return [
        CatalogueEntry(n, (100 + n) if n % 2 else 0, f"SKU-{n}", f"thing {n}", f"SKU-{n}", True)
        for n in range(1, count + 1)
    ]


def test_shoppers_are_a_realistic_mix_and_the_same_seed_gives_the_same_shoppers() -> None:
    units = catalogue_units(40)

    def run(seed: int) -> list[CheckoutRequest]:
        model = ShopperModel(random.Random(seed), units, [1, 2, 3], tag="t")
        known: list[int] = []
        checkouts = []
        for n in range(600):
            checkout = model.next_checkout(known)
            if checkout.new_customer is not None:
                known.append(1000 + n)
            checkouts.append(checkout)
        return checkouts

    checkouts = run(7)
    assert checkouts == run(7)
    assert checkouts != run(8)
    new = sum(1 for c in checkouts if c.new_customer is not None)
    assert abs(new / len(checkouts) - NEW_CUSTOMER_SHARE) < 0.07
    returning = [c.customer_id for c in checkouts if c.customer_id is not None]
    assert any(cid >= 1000 for cid in returning)
    assert any(cid < 1000 for cid in returning)
    currencies = Counter(c.currency for c in checkouts)
    assert set(currencies) == {"EUR", "USD", "GBP"}
    assert currencies["EUR"] > currencies["USD"] > currencies["GBP"]
    assert {c.payment_module for c in checkouts} == {"stripe_official", "ps_wirepayment", "ps_checkpayment"}
    assert sum(1 for c in checkouts if any(line.combination_id for line in c.lines)) > len(checkouts) / 3
    assert all(1 <= len(c.lines) <= 4 for c in checkouts)
    assert all(
        len({(line.product_id, line.combination_id) for line in c.lines}) == len(c.lines) for c in checkouts
    )
    emails = [c.new_customer.email for c in checkouts if c.new_customer is not None]
    assert len(set(emails)) == len(emails)


def test_stock_movements_are_mostly_receipts_of_catalogue_items() -> None:
    moves = StockMovements(random.Random(1), ["SKU-1", "SKU-2"])
    sample = [moves.next_movement() for _ in range(500)]
    assert {m.item_number for m in sample} == {"SKU-1", "SKU-2"}
    assert {m.warehouse for m in sample} == {"001"}
    receipts = [m.delta for m in sample if m.delta > 0]
    corrections = [m.delta for m in sample if m.delta < 0]
    assert 0.7 < len(receipts) / len(sample) < 0.9
    assert min(receipts) >= 5
    assert max(receipts) <= 40
    assert min(corrections) >= -3
