"""Validation: totals within a cent with the figures, wrong types with path and expected type."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import BaseModel, ValidationError

from connectors.prestashop.models import Order
from pipeline.errors import InvalidMessage
from rules.engine import load_rules
from rules.validation import (
    Totals,
    check_currency,
    check_email,
    expect_decimal,
    expect_int,
    invalid_from_validation_error,
    require,
)

VALIDATION = load_rules().validation
D = Decimal


def _usd(total: str) -> Totals:
    # schemas/examples/Order/usd-multi-currency-anomaly.json: amounts before tax, total with tax.
    return Totals(
        currency="USD",
        lines=[D("249.00"), D("43.50")],
        shipping=D("12.00"),
        wrapping=D(0),
        discounts=D("10.00"),
        tax=D("22.10"),
        total=D(total),
        tax_included=False,
    )


def test_consistent_totals_pass_within_a_cent() -> None:
    VALIDATION.check_totals(_usd("316.60"))
    VALIDATION.check_totals(_usd("316.61"))
    VALIDATION.check_totals(_usd("316.59"))


def test_a_gap_above_a_cent_is_totals_mismatch_with_every_figure() -> None:
    with pytest.raises(InvalidMessage) as caught:
        VALIDATION.check_totals(_usd("316.62"))
    error = caught.value
    assert error.reason == "totals_mismatch"
    assert error.field_path == "total_paid"
    assert error.details["expected"] == "316.60"
    assert error.details["total"] == "316.62"
    assert error.details["gap"] == "0.02"
    assert error.details["lines"] == "292.50"
    assert error.details["tax_convention"] == "excl"
    assert "316.62 USD" in error.message


def test_tax_included_amounts_do_not_add_tax_again() -> None:
    incl = Totals(
        currency="EUR",
        lines=[D("48.00"), D("11.88")],
        shipping=D("6.00"),
        wrapping=D(0),
        discounts=D(0),
        tax=D("10.98"),
        total=D("65.88"),
        tax_included=True,
    )
    VALIDATION.check_totals(incl)
    with pytest.raises(InvalidMessage):
        VALIDATION.check_totals(Totals(**{**incl.__dict__, "tax_included": False}))


def test_a_string_where_a_number_belongs_names_the_path_and_type() -> None:
    raw = {
        "id": 1,
        "total_paid": "twelve",
        "associations": {"order_rows": [{"id": 1, "product_quantity": "x"}]},
    }
    with pytest.raises(ValidationError) as caught:
        Order.model_validate(raw)
    error = invalid_from_validation_error(caught.value, prefix="order")
    assert error.reason == "wrong_type"
    assert error.field_path == "order.total_paid"
    assert error.details["expected"] == "decimal"
    assert error.details["got"] == "str"
    assert "and 1 more" in error.message


def test_a_missing_required_field_is_missing_field() -> None:
    class Line(BaseModel):
        sku: str
        quantity: int

    with pytest.raises(ValidationError) as caught:
        Line.model_validate({"quantity": 2})
    error = invalid_from_validation_error(caught.value)
    assert (error.reason, error.field_path) == ("missing_field", "sku")


@pytest.mark.parametrize(
    ("value", "expected"), [("12.50", D("12.50")), (3, D(3)), (D("1.1"), D("1.1")), (" 7 ", D(7))]
)
def test_expect_decimal_accepts_exact_numbers(value: object, expected: Decimal) -> None:
    assert expect_decimal(value, "x") == expected


@pytest.mark.parametrize("value", ["abc", 1.5, None, True, "NaN", [1]])
def test_expect_decimal_refuses_everything_else_with_wrong_type(value: object) -> None:
    with pytest.raises(InvalidMessage) as caught:
        expect_decimal(value, "lines[2].unit_price")
    assert caught.value.reason == "wrong_type"
    assert caught.value.field_path == "lines[2].unit_price"
    assert caught.value.details["expected"] == "decimal"


def test_int_email_currency_and_required_checks() -> None:
    assert expect_int("-12", "x") == -12
    with pytest.raises(InvalidMessage):
        expect_int("1.5", "x")
    assert check_email(" Camille.Durand@Example.org ", "email") == "camille.durand@example.org"
    with pytest.raises(InvalidMessage) as bad_email:
        check_email("camille.example.org", "customer.email")
    assert (bad_email.value.reason, bad_email.value.field_path) == ("invalid_format", "customer.email")
    assert check_currency("eur", "currency") == "EUR"
    with pytest.raises(InvalidMessage):
        check_currency("EURO", "currency")
    require("x", "reference")
    empties: list[object] = [None, "", "   ", []]
    for empty in empties:
        with pytest.raises(InvalidMessage) as missing:
            require(empty, "reference")
        assert missing.value.reason == "missing_field"
