"""Validation: required fields and formats, types with field paths, totals consistency.

Everything here raises :class:`~pipeline.errors.InvalidMessage` with a bounded reason and the field
path, so the DLQ says what is wrong and where:

* ``missing_field`` — a required value is absent or empty;
* ``wrong_type`` — a value of the wrong type (a string where a number belongs); ``details`` carries
  ``expected`` and ``got``;
* ``invalid_format`` — right type, wrong shape (an e-mail without ``@``, a currency that is not ISO 4217);
* ``totals_mismatch`` — the stated total differs from the recomputed one by more than the tolerance;
  ``details`` carries every figure.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from pydantic import ValidationError

from pipeline.errors import InvalidMessage
from rules import model

# Source models' own parsers (BeforeValidator) raise ``ValueError("not a decimal: ...")``; the words
# after "not a"/"not an" name the expected type.
_NOT_A = re.compile(
    r"^(?:Value error, )?not an? (?:PrestaShop )?(decimal|integer|boolean|string|date|number)\b"
)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_ISO4217 = re.compile(r"^[A-Z]{3}$")

# pydantic error types → the expected type named in the DLQ.
_EXPECTED = {
    "int_parsing": "integer",
    "int_type": "integer",
    "int_from_float": "integer",
    "float_parsing": "number",
    "float_type": "number",
    "decimal_parsing": "decimal",
    "decimal_type": "decimal",
    "bool_parsing": "boolean",
    "bool_type": "boolean",
    "string_type": "string",
    "datetime_parsing": "datetime",
    "datetime_from_date_parsing": "datetime",
    "date_parsing": "date",
    "date_from_datetime_parsing": "date",
    "list_type": "list",
    "dict_type": "object",
    "model_type": "object",
    "model_attributes_type": "object",
}


def json_path(location: Sequence[str | int]) -> str:
    """A pydantic/YAML location as a path: ``("lines", 2, "qty")`` → ``lines[2].qty``."""
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def invalid_from_validation_error(exc: ValidationError, *, prefix: str = "") -> InvalidMessage:
    """The first problem of a source model's ValidationError as an InvalidMessage with its field path.

    ``wrong_type`` (with the expected type) for type errors, ``missing_field`` for absent required
    fields, ``invalid_format`` otherwise. Raise it ``from exc`` so the full error stays attached.
    """
    errors = exc.errors(include_url=False)
    first = errors[0]
    location = [part for part in first["loc"] if isinstance(part, str | int)]
    path = json_path(([prefix] if prefix else []) + location)
    kind = first["type"]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    if kind == "missing":
        return InvalidMessage("missing_field", f"required field {path} is missing{more}", field_path=path)
    got = first.get("input")
    got_text = type(got).__name__ if got is not None else "null"
    declared = _NOT_A.match(first["msg"]) if kind == "value_error" else None
    if kind in _EXPECTED or declared:
        expected = declared.group(1) if declared else _EXPECTED[kind]
        return InvalidMessage(
            "wrong_type",
            f"{path}: expected {expected}, got {got_text} {_short(got)}{more}",
            field_path=path,
            details={"expected": expected, "got": got_text},
        )
    return InvalidMessage("invalid_format", f"{path}: {first['msg']}{more}", field_path=path)


def require(value: object, path: str) -> None:
    """Raise ``missing_field`` when ``value`` is None, empty or only whitespace."""
    empty = value is None or (isinstance(value, str) and not value.strip())
    if empty or (isinstance(value, list | dict | tuple) and not value):
        raise InvalidMessage("missing_field", f"required field {path} is missing or empty", field_path=path)


def expect_decimal(value: object, path: str) -> Decimal:
    """``value`` as a Decimal: a Decimal, an int or a numeric string; ``wrong_type`` otherwise.

    Floats are refused: money that went through a binary float has already lost its cents.
    """
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    if isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            result = None
        if result is not None and result.is_finite():
            return result
    raise _wrong_type(path, "decimal", value)


def expect_int(value: object, path: str) -> int:
    """``value`` as an int: an int or a string of digits (optionally signed); ``wrong_type`` otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
        return int(value.strip())
    raise _wrong_type(path, "integer", value)


def expect_str(value: object, path: str) -> str:
    """``value`` if it is a string; ``wrong_type`` otherwise."""
    if isinstance(value, str):
        return value
    raise _wrong_type(path, "string", value)


def check_email(value: str, path: str) -> str:
    """``value`` trimmed and lower-cased if it looks like an e-mail address; ``invalid_format`` otherwise."""
    text = value.strip()
    if not _EMAIL.match(text):
        raise InvalidMessage("invalid_format", f"{path}: {text!r} is not an e-mail address", field_path=path)
    return text.lower()


def check_currency(value: str, path: str) -> str:
    """``value`` upper-cased if it is an ISO 4217 code; ``invalid_format`` otherwise."""
    code = value.strip().upper()
    if not _ISO4217.match(code):
        raise InvalidMessage("invalid_format", f"{path}: {value!r} is not an ISO 4217 code", field_path=path)
    return code


@dataclass(frozen=True)
class Totals:
    """An order's amounts as the source states them, all in one currency and one tax convention.

    ``tax_included``: True when lines, shipping, wrapping, discounts and total all include tax (then
    ``tax`` is informative and not added); False when they exclude it and ``total`` includes it (then
    ``tax`` is added). A source whose total excludes tax too passes ``tax=0``.
    """

    currency: str
    lines: Sequence[Decimal]
    shipping: Decimal
    wrapping: Decimal
    discounts: Decimal
    tax: Decimal
    total: Decimal
    tax_included: bool

    def expected_total(self) -> Decimal:
        """Σ lines + shipping + wrapping - discounts (+ tax when amounts exclude it)."""
        base = sum(self.lines, Decimal(0)) + self.shipping + self.wrapping - self.discounts
        return base if self.tax_included else base + self.tax


class ValidationRules:
    """Validation with the rules' tolerances (build through :class:`rules.engine.Rules`)."""

    def __init__(self, rules: model.ValidationRules) -> None:
        self._rules = rules

    @property
    def totals_tolerance(self) -> Decimal:
        """The accepted gap between stated and recomputed totals."""
        return self._rules.totals_tolerance

    def check_totals(self, totals: Totals, *, field_path: str = "total_paid") -> None:
        """Raise ``totals_mismatch`` (with every figure in ``details``) when the total does not add up."""
        expected = totals.expected_total()
        gap = totals.total - expected
        if abs(gap) <= self._rules.totals_tolerance:
            return
        lines = sum(totals.lines, Decimal(0))
        convention = "incl" if totals.tax_included else "excl"
        raise InvalidMessage(
            "totals_mismatch",
            (
                f"total {totals.total} {totals.currency} != lines {lines} + shipping {totals.shipping} "
                f"+ wrapping {totals.wrapping} - discounts {totals.discounts}"
                + ("" if totals.tax_included else f" + tax {totals.tax}")
                + f" = {expected} (tax {convention}; gap {gap}, tolerance {self._rules.totals_tolerance})"
            ),
            field_path=field_path,
            details={
                "total": str(totals.total),
                "expected": str(expected),
                "lines": str(lines),
                "shipping": str(totals.shipping),
                "wrapping": str(totals.wrapping),
                "discounts": str(totals.discounts),
                "tax": str(totals.tax),
                "tax_convention": convention,
                "gap": str(gap),
                "currency": totals.currency,
            },
        )


def _wrong_type(path: str, expected: str, value: object) -> InvalidMessage:
    got = "null" if value is None else type(value).__name__
    return InvalidMessage(
        "wrong_type",
        f"{path}: expected {expected}, got {got} {_short(value)}",
        field_path=path,
        details={"expected": expected, "got": got},
    )


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
