"""Currency: rate sources recorded, Decimal with explicit scale and rounding, no cent lost."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.errors import InvalidMessage
from rules.currency import SOURCE_IDENTITY, SOURCE_PRESTASHOP, SOURCE_TABLE
from rules.engine import default_rules_text, load_rules, parse_rules

CURRENCY = load_rules().currency


def test_the_shops_rate_is_inverted_and_recorded_as_its_source() -> None:
    rate = CURRENCY.rate_for("usd", prestashop_conversion_rate=Decimal("1.0834"), shop_default_currency="EUR")
    assert (rate.currency, rate.base_currency, rate.source) == ("USD", "EUR", SOURCE_PRESTASHOP)
    assert rate.rate == Decimal("0.9230201218")  # 1 / 1.0834 at 10 decimals, HALF_EVEN
    assert CURRENCY.to_base(Decimal("316.60"), rate) == Decimal("292.228171")


def test_the_table_is_used_when_the_shop_default_is_not_the_base_currency() -> None:
    rate = CURRENCY.rate_for("USD", prestashop_conversion_rate=Decimal("1.1"), shop_default_currency="GBP")
    assert (rate.rate, rate.source, str(rate.as_of)) == (Decimal("0.923"), SOURCE_TABLE, "2024-05-03")
    # The canonical example's base totals (schemas/examples/Order/usd-multi-currency-anomaly.json).
    assert CURRENCY.to_base(Decimal("292.50"), rate) == Decimal("269.9775")
    assert CURRENCY.to_base(Decimal("316.60"), rate) == Decimal("292.2218")


def test_the_base_currency_converts_at_one() -> None:
    rate = CURRENCY.rate_for("EUR")
    assert (rate.rate, rate.source, rate.is_identity) == (Decimal(1), SOURCE_IDENTITY, True)


def test_no_rate_anywhere_is_an_invalid_message_naming_the_currency() -> None:
    with pytest.raises(InvalidMessage) as caught:
        CURRENCY.rate_for("JPY")
    assert caught.value.reason == "no_exchange_rate"
    assert caught.value.details["currency"] == "JPY"


def test_source_order_is_the_rules_files() -> None:
    text = default_rules_text().replace("sources: [prestashop, table]", "sources: [table]")
    table_first = parse_rules(text)
    rate = table_first.currency.rate_for(
        "USD", prestashop_conversion_rate=Decimal("1.0834"), shop_default_currency="EUR"
    )
    assert rate.source == SOURCE_TABLE


def test_rounding_mode_is_explicit() -> None:
    assert CURRENCY.round_minor(Decimal("0.125"), "EUR") == Decimal("0.12")  # HALF_EVEN
    half_up = parse_rules(default_rules_text().replace("rounding: HALF_EVEN", "rounding: HALF_UP"))
    assert half_up.currency.round_minor(Decimal("0.125"), "EUR") == Decimal("0.13")
    assert CURRENCY.round_minor(Decimal("1234.5"), "JPY") == Decimal("1234")
    assert CURRENCY.round_minor(Decimal("1.23456"), "KWD") == Decimal("1.235")


_AMOUNTS = st.decimals(min_value=Decimal("-100000"), max_value=Decimal("100000"), places=2)
_RATES = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("20000"), places=6)


@given(amount=_AMOUNTS, shop_rate=_RATES)
def test_converting_and_back_stays_within_the_rates_precision(amount: Decimal, shop_rate: Decimal) -> None:
    rate = CURRENCY.rate_for("USD", prestashop_conversion_rate=shop_rate, shop_default_currency="EUR")
    base = CURRENCY.to_base(amount, rate)
    assert base == base.quantize(Decimal("0.000001"))
    back = CURRENCY.from_base(base, rate)
    assert abs(back - amount) <= CURRENCY.round_trip_tolerance(rate)


@given(
    total=_AMOUNTS,
    weights=st.lists(
        st.decimals(min_value=Decimal("0.01"), max_value=Decimal("10000"), places=2), min_size=1, max_size=30
    ),
    currency=st.sampled_from(["EUR", "JPY", "KWD"]),
)
def test_allocated_parts_add_up_to_the_rounded_total_exactly(
    total: Decimal, weights: list[Decimal], currency: str
) -> None:
    parts = CURRENCY.allocate(total, weights, currency)
    assert sum(parts, Decimal(0)) == CURRENCY.round_minor(total, currency)
    unit = Decimal(1).scaleb(-CURRENCY.minor_units(currency))
    weight_sum = sum(weights, Decimal(0))
    rounded_total = CURRENCY.round_minor(total, currency)
    for part, weight in zip(parts, weights, strict=True):
        # Each part is within one minor unit of its exact share: no cent moves further than it must.
        assert abs(part - rounded_total * weight / weight_sum) < unit
        assert part == part.quantize(unit)


@given(lines=st.lists(_AMOUNTS, min_size=1, max_size=40), shop_rate=_RATES)
def test_summing_rounded_base_lines_stays_within_the_documented_tolerance(
    lines: list[Decimal], shop_rate: Decimal
) -> None:
    # Documented tolerance: each line's base amount is rounded to a cent independently, so the sum of
    # rounded lines may differ from the rounded total by at most half a cent per line (plus half a cent
    # for the total); at the 6-decimal wire scale the gap is bounded the same way in micro-units.
    rate = CURRENCY.rate_for("USD", prestashop_conversion_rate=shop_rate, shop_default_currency="EUR")
    rounded_lines = [CURRENCY.round_minor(CURRENCY.to_base(line, rate), "EUR") for line in lines]
    rounded_total = CURRENCY.round_minor(CURRENCY.to_base(sum(lines, Decimal(0)), rate), "EUR")
    tolerance = Decimal("0.005") * (len(lines) + 1) + Decimal("0.000001") * (len(lines) + 1)
    assert abs(sum(rounded_lines, Decimal(0)) - rounded_total) <= tolerance
    # And allocation removes the gap entirely.
    allocated = CURRENCY.allocate(rounded_total, [abs(line) + Decimal("0.01") for line in lines], "EUR")
    assert sum(allocated, Decimal(0)) == rounded_total
