"""Anomaly flags: pure checks that return :class:`Anomaly` values, and the routing rule for flagged orders.

Every check is a pure function of the value under test and the state the caller passes in (the shop's
recent order values, the SKU's recent line quantities, the catalogue price, the previous stock level),
so the same inputs always give the same flags. Keeping that state is the caller's job: the processors
keep it in ``processors.history.AnomalyHistory`` (what the worker emitted, seeded from the canonical
topics at start), which is why flags are advisory: a replay against another history may flag
differently.

The order-value check is a robust z-score: ``0.6745 · (x - median) / MAD`` over the window, which a few
earlier outliers cannot mask the way they mask a mean/standard-deviation z-score. A window whose MAD is
zero (many identical orders) uses a floor of 1 % of the median (at least 0.01), so one unusual order
still scores high instead of dividing by zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from rules import model

ORDER_VALUE_OUTLIER = "order_value_outlier"
QUANTITY_SPIKE = "quantity_spike"
PRICE_DEVIATION = "price_deviation"
STOCK_DROP = "stock_drop"

_MAD_TO_SIGMA = Decimal("0.6745")
_MAD_FLOOR_SHARE = Decimal("0.01")
_MAD_FLOOR = Decimal("0.01")


@dataclass(frozen=True)
class Anomaly:
    """One flag: a bounded ``code``, a ``score`` (larger is more unusual) and the figures compared."""

    code: str
    score: float
    reason: str


def median(values: Sequence[Decimal]) -> Decimal:
    """The median of a non-empty sequence of decimals (exact: the mean of the middle two if even)."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def robust_z(value: Decimal, history: Sequence[Decimal]) -> Decimal:
    """``0.6745 · (value - median) / MAD`` of ``history`` (MAD floored as the module says)."""
    centre = median(history)
    mad = median([abs(item - centre) for item in history])
    mad = max(mad, abs(centre) * _MAD_FLOOR_SHARE, _MAD_FLOOR)
    return _MAD_TO_SIGMA * (value - centre) / mad


@dataclass(frozen=True)
class LineObservation:
    """One order line as the line checks see it; ``catalogue_price`` / ``history`` may be unknown."""

    sku: str
    quantity: Decimal
    unit_price: Decimal
    catalogue_price: Decimal | None = None
    quantity_history: Sequence[Decimal] = ()


class AnomalyRules:
    """The anomaly section as operations (build through :class:`rules.engine.Rules`)."""

    def __init__(self, rules: model.AnomalyRules) -> None:
        self._rules = rules

    @property
    def order_value_window(self) -> int:
        """How many recent order values per shop the order-value check wants."""
        return self._rules.order_value.window

    def order_value(
        self, value: Decimal, currency: str, shop_id: str, history: Sequence[Decimal]
    ) -> Anomaly | None:
        """Flag an order whose value is a robust-z outlier among ``history`` (the shop's recent values).

        Only the last ``window`` values are used; fewer than ``min_history`` give no flag (no basis).
        Only unusually *high* values are flagged: a small order is not a risk.
        """
        check = self._rules.order_value
        recent = list(history)[-check.window :]
        if not check.enabled or len(recent) < check.min_history:
            return None
        score = robust_z(value, recent)
        if score <= check.threshold:
            return None
        centre = median(recent)
        return Anomaly(
            ORDER_VALUE_OUTLIER,
            _score(score),
            f"order value {value} {currency} vs median {centre} {currency} for shop {shop_id} "
            f"over {len(recent)} orders (robust z-score {_score(score)} > {check.threshold})",
        )

    def quantity_spike(self, line: LineObservation) -> Anomaly | None:
        """Flag a line above ``absolute_max``, or above ``factor`` times the SKU's median line quantity."""
        check = self._rules.quantity_spike
        if not check.enabled:
            return None
        if check.absolute_max is not None and line.quantity > check.absolute_max:
            return Anomaly(
                QUANTITY_SPIKE,
                _score(line.quantity / check.absolute_max),
                f"{line.sku}: quantity {line.quantity} above the absolute maximum {check.absolute_max}",
            )
        if len(line.quantity_history) < check.min_history:
            return None
        centre = median(line.quantity_history)
        if centre <= 0 or line.quantity <= check.factor * centre:
            return None
        return Anomaly(
            QUANTITY_SPIKE,
            _score(line.quantity / centre),
            f"{line.sku}: quantity {line.quantity} is {_score(line.quantity / centre)}x the median "
            f"{centre} of {len(line.quantity_history)} recent lines (limit {check.factor}x)",
        )

    def price_deviation(self, line: LineObservation) -> Anomaly | None:
        """Flag a unit price further than ``max_relative_deviation`` from the catalogue price."""
        check = self._rules.price_deviation
        if not check.enabled or line.catalogue_price is None or line.catalogue_price <= 0:
            return None
        deviation = abs(line.unit_price - line.catalogue_price) / line.catalogue_price
        if deviation <= check.max_relative_deviation:
            return None
        return Anomaly(
            PRICE_DEVIATION,
            _score(deviation),
            f"{line.sku}: unit price {line.unit_price} vs catalogue {line.catalogue_price} "
            f"({_score(deviation * 100)}% off, limit {check.max_relative_deviation * 100}%)",
        )

    def stock_drop(
        self, sku: str, warehouse: str, previous: Decimal | None, current: Decimal
    ) -> Anomaly | None:
        """Flag a stock level that fell by more than the share and the absolute amount at once."""
        check = self._rules.stock_drop
        if not check.enabled or previous is None or previous <= 0:
            return None
        drop = previous - current
        share = drop / previous
        if drop < check.min_absolute_drop or share <= check.max_relative_drop:
            return None
        return Anomaly(
            STOCK_DROP,
            _score(share),
            f"{sku}@{warehouse}: stock fell from {previous} to {current} ({_score(share * 100)}%, "
            f"limit {check.max_relative_drop * 100}% and {check.min_absolute_drop} units)",
        )

    def check_order(
        self,
        *,
        value: Decimal,
        currency: str,
        shop_id: str,
        value_history: Sequence[Decimal],
        lines: Iterable[LineObservation],
    ) -> list[Anomaly]:
        """Every flag an order raises: its value, then each line's quantity and price, in line order."""
        found: list[Anomaly] = []
        flag = self.order_value(value, currency, shop_id, value_history)
        if flag is not None:
            found.append(flag)
        for line in lines:
            for check in (self.quantity_spike, self.price_deviation):
                flag = check(line)
                if flag is not None:
                    found.append(flag)
        return found

    def destination(self, anomalies: Iterable[Anomaly], canonical_topic: str) -> str:
        """Where a record goes: the review topic when any flag's code is a review code, else canonical.

        Flags whose codes are not review codes stay on the record but do not divert it.
        """
        review = set(self._rules.review_codes)
        if any(anomaly.code in review for anomaly in anomalies):
            return self._rules.review_topic
        return canonical_topic


def _score(value: Decimal) -> float:
    # Two decimals are plenty for a human reading the reason and keep records stable across runs.
    return float(round(value, 2))
