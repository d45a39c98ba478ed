"""Anomaly flags: robust z-score per shop, quantity spikes, price deviation, stock drops; review routing."""

from __future__ import annotations

from decimal import Decimal

from rules.anomalies import (
    ORDER_VALUE_OUTLIER,
    PRICE_DEVIATION,
    QUANTITY_SPIKE,
    STOCK_DROP,
    Anomaly,
    LineObservation,
    robust_z,
)
from rules.engine import Rules, load_rules

ANOMALIES = load_rules().anomalies
D = Decimal
HISTORY = [D(v) for v in ["38", "40", "41", "42", "42", "43", "44", "45", "39", "47"] * 4]


def test_robust_z_is_not_masked_by_earlier_outliers() -> None:
    polluted = [*HISTORY, D(5000), D(6000), D(7000)]
    assert robust_z(D("316.60"), polluted) > D("3.5")
    assert abs(robust_z(D(42), polluted)) < 1


def test_an_order_far_above_the_shops_median_is_flagged_with_the_figures() -> None:
    flag = ANOMALIES.order_value(D("316.60"), "USD", "2", HISTORY)
    assert flag is not None
    assert flag.code == ORDER_VALUE_OUTLIER
    assert flag.score > 3.5
    assert "316.60 USD" in flag.reason
    assert "median 42" in flag.reason
    assert "shop 2" in flag.reason


def test_usual_small_or_unbased_orders_are_not_flagged() -> None:
    assert ANOMALIES.order_value(D(44), "USD", "2", HISTORY) is None
    assert ANOMALIES.order_value(D(1), "USD", "2", HISTORY) is None  # small is not a risk
    assert ANOMALIES.order_value(D(9999), "USD", "2", HISTORY[:5]) is None  # below min_history


def test_identical_history_still_flags_an_outlier() -> None:
    flag = ANOMALIES.order_value(D(100), "EUR", "1", [D(42)] * 40)
    assert flag is not None


def test_quantity_spikes_by_history_and_absolute_maximum() -> None:
    usual = [D(1), D(2), D(1), D(1), D(3), D(1), D(2), D(1), D(1), D(2)]
    spike = ANOMALIES.quantity_spike(LineObservation("MUG-CER-350", D(40), D("9.90"), quantity_history=usual))
    assert spike is not None
    assert spike.code == QUANTITY_SPIKE
    assert spike.score == 40.0
    assert ANOMALIES.quantity_spike(LineObservation("MUG", D(5), D("9.90"), quantity_history=usual)) is None
    huge = ANOMALIES.quantity_spike(LineObservation("MUG", D(1500), D("9.90")))
    assert huge is not None
    assert "absolute maximum 1000" in huge.reason


def test_price_far_from_catalogue_is_flagged() -> None:
    cheap = ANOMALIES.price_deviation(LineObservation("TSH", D(1), D("4.00"), catalogue_price=D("20.00")))
    assert cheap is not None
    assert cheap.code == PRICE_DEVIATION
    assert cheap.score == 0.8
    near = LineObservation("TSH", D(1), D("18.00"), catalogue_price=D("20.00"))
    assert ANOMALIES.price_deviation(near) is None
    unknown = LineObservation("TSH", D(1), D("1.00"))
    assert ANOMALIES.price_deviation(unknown) is None


def test_stock_drop_needs_both_share_and_amount() -> None:
    drop = ANOMALIES.stock_drop("SKU-1", "LYO", D(500), D(20))
    assert drop is not None
    assert drop.code == STOCK_DROP
    assert ANOMALIES.stock_drop("SKU-1", "LYO", D(40), D(0)) is None  # 100 % but only 40 units
    assert ANOMALIES.stock_drop("SKU-1", "LYO", D(500), D(200)) is None  # 300 units but 60 %
    assert ANOMALIES.stock_drop("SKU-1", "LYO", None, D(0)) is None


def test_check_order_collects_flags_and_review_codes_route_it() -> None:
    flags = ANOMALIES.check_order(
        value=D("316.60"),
        currency="USD",
        shop_id="2",
        value_history=HISTORY,
        lines=[LineObservation("TSH", D(1), D("4.00"), catalogue_price=D("20.00"))],
    )
    assert [flag.code for flag in flags] == [ORDER_VALUE_OUTLIER, PRICE_DEVIATION]
    assert ANOMALIES.destination(flags, "canonical.order.v1") == "review.order.v1"
    assert ANOMALIES.destination([], "canonical.order.v1") == "canonical.order.v1"
    flag_only = Anomaly(STOCK_DROP, 0.9, "not a review code")
    assert ANOMALIES.destination([flag_only], "canonical.order.v1") == "canonical.order.v1"


def test_disabled_checks_and_empty_review_codes_flag_nothing() -> None:
    base = load_rules().model
    quiet = base.model_copy(
        update={
            "anomalies": base.anomalies.model_copy(
                update={
                    "order_value": base.anomalies.order_value.model_copy(update={"enabled": False}),
                    "review_codes": [],
                }
            )
        }
    )
    assert ANOMALIES.order_value(D(9999), "EUR", "1", HISTORY) is not None
    quiet_rules = Rules(quiet)
    assert quiet_rules.anomalies.order_value(D(9999), "EUR", "1", HISTORY) is None
    any_flag = [Anomaly(ORDER_VALUE_OUTLIER, 9.0, "x")]
    assert quiet_rules.anomalies.destination(any_flag, "canonical.order.v1") == "canonical.order.v1"
