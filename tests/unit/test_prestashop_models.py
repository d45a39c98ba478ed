"""Source models against the real fixture records and the JSON quirks of the reference (§1.8)."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connectors.prestashop import json_reads
from connectors.prestashop.models import (
    MODEL_BY_RESOURCE,
    Carrier,
    Currency,
    Customer,
    Order,
    OrderState,
    Product,
    StockAvailable,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "prestashop"
CONTEXT = {"language_id": 1}


def _records() -> list[tuple[str, dict[str, Any]]]:
    lines = (FIXTURES / "airbyte_expected_records_subset.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    return [(row["stream"], row["data"]) for row in rows]


def _record(stream: str) -> dict[str, Any]:
    return next(data for name, data in _records() if name == stream)


def test_the_fixture_file_holds_the_sixteen_documented_records() -> None:
    assert len(_records()) == 16


@pytest.mark.parametrize(("stream", "data"), _records(), ids=[name for name, _ in _records()])
def test_every_fixture_record_validates_and_keeps_its_id(stream: str, data: dict[str, Any]) -> None:
    model = MODEL_BY_RESOURCE[stream].model_validate(data, context=CONTEXT)
    assert model.id == data["id"]


def test_order_fields_are_typed_from_strings() -> None:
    order = Order.model_validate(_record("orders"), context=CONTEXT)
    assert order.reference == "XKBKNABJK"
    assert order.id_customer == 2
    assert order.id_address_delivery == 5
    assert order.current_state == 6
    assert order.total_paid == Decimal("61.800000")
    assert order.total_products_wt == Decimal("59.800000")
    assert order.conversion_rate == Decimal("1.000000")
    assert order.valid is False
    assert order.invoice_date is None  # "0000-00-00 00:00:00"
    assert order.date_upd == datetime(2021, 7, 23, 23, 18, 42)
    assert [(r.id, r.product_id, r.product_attribute_id) for r in order.rows] == [(1, 1, 1), (2, 2, 9)]
    assert order.rows[1].product_name == "Hummingbird printed sweater - Color : White, Size : S"
    assert order.rows[1].unit_price_tax_incl == Decimal("35.900000")
    assert isinstance(order.rows[0].product_quantity, Decimal)


def test_product_i18n_associations_and_nullable_numbers() -> None:
    product = Product.model_validate(_record("products"), context=CONTEXT)
    assert product.name == {1: "Hummingbird printed t-shirt"}
    assert product.link_rewrite == {1: "hummingbird-printed-t-shirt"}
    assert product.price == Decimal("23.900000")
    assert product.low_stock_threshold is None
    assert product.available_date is None  # "0000-00-00"
    assert [c.id for c in product.associations.combinations] == list(range(1, 9))
    assert [(s.id, s.id_product_attribute) for s in product.associations.stock_availables][:2] == [
        (1, 0),
        (20, 1),
    ]
    assert product.associations.product_features[1].id_feature_value == 8


def test_customer_dates_and_groups() -> None:
    customer = Customer.model_validate(_record("customers"), context=CONTEXT)
    assert customer.email == "anonymous@psgdpr.com"
    assert customer.birthday is None
    assert customer.newsletter_date_add is None
    assert customer.last_passwd_gen == datetime(2021, 7, 23, 17, 18, 7)
    assert customer.reset_password_validity == datetime(2025, 1, 1, 10, 30)
    assert [g.id for g in customer.associations.groups] == [3]
    assert not hasattr(customer, "passwd")


def test_stock_and_carrier_accept_native_numbers_too() -> None:
    stock = StockAvailable.model_validate(_record("stock_availables"), context=CONTEXT)
    assert (stock.id_product, stock.id_product_attribute, stock.quantity) == (1, 0, Decimal(2958))
    assert stock.out_of_stock == 2
    carrier = Carrier.model_validate(_record("carriers"), context=CONTEXT)
    assert carrier.shipping_method == 1  # a JSON int in the fixture, unlike its neighbours


def test_newer_php_native_numbers_parse_like_strings() -> None:
    as_strings = StockAvailable.model_validate({"id": 5, "id_product": "7", "quantity": "-3"})
    as_numbers = StockAvailable.model_validate({"id": 5, "id_product": 7, "quantity": -3})
    assert as_strings == as_numbers
    assert Order.model_validate({"id": 1, "total_paid": 12.5}).total_paid == Decimal("12.5")


def test_single_entity_with_falsy_fields_dropped_reads_as_their_falsy_values() -> None:
    # 8.x {"stock_available": {...}} without display drops quantity 0 and depends_on_stock "0".
    stock = StockAvailable.model_validate({"id": 9, "id_product": "3", "out_of_stock": "2"})
    assert stock.quantity == Decimal(0)
    assert stock.depends_on_stock is False
    assert stock.location == ""


def test_i18n_list_form_keeps_every_language() -> None:
    state = OrderState.model_validate(
        {"id": 4, "shipped": "1", "name": [{"id": "1", "value": "Shipped"}, {"id": "2", "value": "Expédié"}]},
        context=CONTEXT,
    )
    assert state.name == {1: "Shipped", 2: "Expédié"}
    assert state.shipped is True


def test_plain_i18n_string_belongs_to_the_context_language() -> None:
    currency = Currency.model_validate(_record("currencies"), context={"language_id": 3})
    assert currency.name == {3: "US Dollar"}
    assert currency.symbol == {3: "$"}


def test_date_upd_in_the_language_list_form_is_still_a_date() -> None:
    # Airbyte PR #34513: a newer shop sent date_upd as [{id, value}].
    order = Order.model_validate({"id": 3, "date_upd": [{"id": "1", "value": "2024-05-01 10:22:33"}]})
    assert order.date_upd == datetime(2024, 5, 1, 10, 22, 33)


def test_bad_scalars_are_refused() -> None:
    with pytest.raises(ValueError, match="integer"):
        json_reads.to_int("12abc")
    with pytest.raises(ValueError, match="boolean"):
        json_reads.to_bool("yes")
    with pytest.raises(ValueError, match="decimal"):
        json_reads.to_decimal("1,5")
    assert json_reads.to_date("1990-05-04") == date(1990, 5, 4)
