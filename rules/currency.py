"""Conversion of document amounts to the base currency: Decimal only, explicit scale and rounding mode.

A :class:`Rate` is "base-currency units per one document-currency unit", quantised to the rules'
``rate_scale`` (10, the scale of ``CurrencyConversion.rate``) *before* use, so the rate recorded on a
record is exactly the rate applied and anyone can recompute the base amounts from it. Converted
amounts keep ``amount_scale`` decimals (6, the wire scale) with the rules' rounding mode: no cent is
lost by the conversion itself. Rounding to a currency's minor unit (cents) is a separate, explicit
step (:meth:`CurrencyRules.round_minor`); :meth:`CurrencyRules.allocate` splits a rounded total over
lines so the rounded parts add up to it exactly.

PrestaShop's ``conversion_rate`` (on ``currencies`` and on each order) is the opposite direction:
units of that currency per one unit of the shop's default currency. It is a valid source only when the
shop's default currency is the base currency; the rate used is then its inverse.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal, localcontext

from pipeline.errors import InvalidMessage
from rules import model

SOURCE_PRESTASHOP = "prestashop.currency.conversion_rate"
"""``rate_source`` of a rate derived from the shop's conversion rate."""
SOURCE_TABLE = "rules.rate_table"
"""``rate_source`` of a rate from the rules file's table."""
SOURCE_IDENTITY = "identity"
"""``rate_source`` when the document is already in the base currency."""

_DEFAULT_MINOR_UNITS = 2


@dataclass(frozen=True)
class Rate:
    """An exchange rate as applied: ``rate`` base units per one ``currency`` unit."""

    currency: str
    base_currency: str
    rate: Decimal
    source: str
    as_of: dt.date | None = None

    @property
    def is_identity(self) -> bool:
        """True when no conversion happens (document already in the base currency)."""
        return self.currency == self.base_currency


class CurrencyRules:
    """The currency section of the rules as operations (build through :class:`rules.engine.Rules`)."""

    def __init__(self, rules: model.CurrencyRules) -> None:
        self._rules = rules
        self._amount_quantum = Decimal(1).scaleb(-rules.amount_scale)
        self._rate_quantum = Decimal(1).scaleb(-rules.rate_scale)
        self._rounding = rules.rounding.decimal_mode
        self._rates_date = dt.date.fromisoformat(rules.rates_date) if rules.rates_date else None

    @property
    def base_currency(self) -> str:
        """ISO 4217 code of the base currency."""
        return self._rules.base_currency

    @property
    def rounding(self) -> str:
        """The :mod:`decimal` rounding mode every operation here uses."""
        return self._rounding

    def rate_for(
        self,
        currency: str,
        *,
        prestashop_conversion_rate: Decimal | None = None,
        shop_default_currency: str | None = None,
        as_of: dt.date | None = None,
    ) -> Rate:
        """The rate to convert ``currency`` into the base currency, from the first source that has one.

        ``prestashop_conversion_rate`` is the shop's rate for ``currency`` (units per one unit of
        ``shop_default_currency``); it is used only when that default currency is the base currency.
        Raises InvalidMessage ``no_exchange_rate`` when no configured source has a rate (the message can
        be replayed once the rules file has one) and ``wrong_type`` for a non-positive shop rate.
        """
        code = currency.strip().upper()
        base = self.base_currency
        if code == base:
            return Rate(code, base, Decimal(1), SOURCE_IDENTITY, as_of)
        for source in self._rules.sources:
            if source is model.RateSource.PRESTASHOP and prestashop_conversion_rate is not None:
                if shop_default_currency is None or shop_default_currency.strip().upper() != base:
                    continue
                if prestashop_conversion_rate <= 0:
                    raise InvalidMessage(
                        "wrong_type",
                        f"conversion_rate must be positive, got {prestashop_conversion_rate}",
                        field_path="conversion_rate",
                        details={"expected": "positive decimal"},
                    )
                inverse = self._quantize_rate(Decimal(1) / prestashop_conversion_rate)
                return Rate(code, base, inverse, SOURCE_PRESTASHOP, as_of)
            if source is model.RateSource.TABLE and code in self._rules.rates:
                rate = self._quantize_rate(self._rules.rates[code])
                return Rate(code, base, rate, SOURCE_TABLE, self._rates_date)
        raise InvalidMessage(
            "no_exchange_rate",
            f"no exchange rate {code}->{base} from sources {[s.value for s in self._rules.sources]}",
            field_path="currency",
            details={"currency": code, "base_currency": base},
        )

    def to_base(self, amount: Decimal, rate: Rate) -> Decimal:
        """``amount`` (in ``rate.currency``) in the base currency, at ``amount_scale`` decimals."""
        return self.quantize(amount * rate.rate)

    def from_base(self, amount: Decimal, rate: Rate) -> Decimal:
        """``amount`` (in the base currency) back in ``rate.currency``, at ``amount_scale`` decimals.

        ``from_base(to_base(x))`` differs from ``x`` by at most half a unit of ``amount_scale`` divided
        by the rate, plus that half unit: the documented round-trip tolerance (:meth:`round_trip_tolerance`).
        """
        return self.quantize(amount / rate.rate)

    def round_trip_tolerance(self, rate: Rate) -> Decimal:
        """Largest ``|from_base(to_base(x)) - x|`` this rate can produce."""
        half = self._amount_quantum / 2
        return half / rate.rate + half

    def quantize(self, amount: Decimal) -> Decimal:
        """``amount`` at the wire scale (``amount_scale``) with the rules' rounding mode."""
        with localcontext() as context:
            context.prec = 40
            return amount.quantize(self._amount_quantum, rounding=self._rounding)

    def minor_units(self, currency: str) -> int:
        """Decimals of ``currency``'s minor unit (2 unless the rules say otherwise, e.g. JPY 0)."""
        return self._rules.minor_units.get(currency.strip().upper(), _DEFAULT_MINOR_UNITS)

    def round_minor(self, amount: Decimal, currency: str) -> Decimal:
        """``amount`` rounded to ``currency``'s minor unit with the rules' rounding mode."""
        quantum = Decimal(1).scaleb(-self.minor_units(currency))
        return amount.quantize(quantum, rounding=self._rounding)

    def allocate(self, total: Decimal, weights: Sequence[Decimal], currency: str) -> list[Decimal]:
        """Split ``total`` (rounded to ``currency``'s minor unit first) in proportion to ``weights``.

        Each part is in minor units and the parts add up to the rounded total exactly (largest
        remainder: parts are rounded down, then the missing minor units go to the largest remainders,
        earliest first on ties). Raises ValueError for no weights or weights that sum to zero while the
        total does not.
        """
        if not weights:
            raise ValueError("allocate needs at least one weight")
        quantum = Decimal(1).scaleb(-self.minor_units(currency))
        rounded_total = self.round_minor(total, currency)
        weight_sum = sum(weights, Decimal(0))
        if weight_sum == 0:
            if rounded_total != 0:
                raise ValueError("cannot allocate a non-zero total over weights that sum to zero")
            return [Decimal(0).quantize(quantum) for _ in weights]
        with localcontext() as context:
            context.prec = 50
            exact = [rounded_total * weight / weight_sum for weight in weights]
            parts = [value.quantize(quantum, rounding=ROUND_DOWN) for value in exact]
            missing = int((rounded_total - sum(parts, Decimal(0))) / quantum)
        step = quantum if missing >= 0 else -quantum
        order = sorted(range(len(weights)), key=lambda index: (-abs(exact[index] - parts[index]), index))
        for index in order[: abs(missing)]:
            parts[index] += step
        return parts

    def _quantize_rate(self, rate: Decimal) -> Decimal:
        with localcontext() as context:
            context.prec = 40
            quantized = rate.quantize(self._rate_quantum, rounding=self._rounding)
        if quantized <= 0:
            raise InvalidMessage(
                "no_exchange_rate",
                f"rate {rate} rounds to zero at {self._rules.rate_scale} decimals",
                field_path="conversion_rate",
            )
        return quantized
