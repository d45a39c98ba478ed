"""Normalising the PrestaShop webservice's JSON: envelope shapes and scalar quirks, in one place.

Shapes a read may return (reference §1.8):

- ``{"orders": [{...}, ...]}`` — a list, or a single id read with any ``display`` parameter;
- ``{"order": {...}}`` — a single id read without ``display`` (on 8.x/9.x falsy fields are dropped,
  which is why the client always sends ``display``);
- ``[]`` — an empty list (a bare array, not ``{"orders": []}``); ``{}`` and ``{"orders": []}`` are
  accepted too;
- ``{"errors": [{"code": 41, "message": "..."}]}`` — an error document.

Scalar quirks the model validators rely on: ``id`` is a number, everything else mostly strings
(``"2"``, ``"61.800000"``, ``"1"``), possibly native numbers on newer PHP; ``null`` appears; empty
dates are ``0000-00-00 00:00:00``; i18n fields are a string with one language and
``[{"id": "1", "value": "..."}]`` with several (a ``date_upd`` has been seen in that list form too).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import TypeAlias

JsonValue: TypeAlias = "str | int | float | bool | list[JsonValue] | dict[str, JsonValue] | None"
JsonRecord: TypeAlias = dict[str, JsonValue]
"""One entity as the shop sent it (field name → JSON value)."""

ZERO_DATES = frozenset({"0000-00-00 00:00:00", "0000-00-00", ""})


class UnexpectedShapeError(ValueError):
    """The body is valid JSON but none of the shapes PrestaShop is known to send."""


@dataclass(frozen=True)
class PsErrorEntry:
    """One ``{"code": .., "message": ..}`` entry of an error document (code 0 when absent)."""

    code: int
    message: str


def decode_body(body: bytes) -> JsonValue:
    """Parse a response body; raises :class:`UnexpectedShapeError` when it is not JSON."""
    try:
        value: JsonValue = json.loads(body)
    except ValueError as exc:  # json.JSONDecodeError and UnicodeDecodeError are both ValueErrors
        raise UnexpectedShapeError(f"response is not JSON: {body[:120]!r}") from exc
    return value


def extract_records(payload: JsonValue, plural: str, singular: str) -> list[JsonRecord]:
    """The entity records in ``payload``, whatever envelope the shop chose; [] for an empty list."""
    if isinstance(payload, list):
        if payload:
            raise UnexpectedShapeError(f"a bare JSON array must be empty, got {len(payload)} items")
        return []
    if not isinstance(payload, dict):
        raise UnexpectedShapeError(f"expected an object or [], got {type(payload).__name__}")
    if "errors" in payload:
        raise UnexpectedShapeError("an error document is not a list of records")
    if not payload:
        return []
    for key in (plural, singular):
        if key not in payload:
            continue
        value = payload[key]
        items = value if isinstance(value, list) else [value]
        records: list[JsonRecord] = []
        for item in items:
            if not isinstance(item, dict):
                raise UnexpectedShapeError(f"{key!r} holds a {type(item).__name__}, expected objects")
            records.append(item)
        return records
    raise UnexpectedShapeError(f"expected key {plural!r} or {singular!r}, got {sorted(payload)[:5]}")


def extract_errors(payload: JsonValue) -> list[PsErrorEntry]:
    """The entries of an ``{"errors": [...]}`` document; [] when ``payload`` is not one."""
    if not isinstance(payload, dict):
        return []
    entries = payload.get("errors")
    if not isinstance(entries, list):
        return []
    found: list[PsErrorEntry] = []
    for entry in entries:
        if isinstance(entry, dict):
            code = to_int(entry.get("code")) or 0
            found.append(PsErrorEntry(code=code, message=str(entry.get("message") or "")))
    return found


# --- scalar normalisers (used as pydantic before-validators in models.py) --------------------------


def _first_language_value(value: object) -> object:
    """A date or number sent in the i18n list form: take its first value (Airbyte PR #34513)."""
    if isinstance(value, list) and value and isinstance(value[0], Mapping):
        return value[0].get("value")
    return value


def to_int(value: object) -> int | None:
    """``"2"``, ``2``, ``2.0`` → 2; ``None``/``""`` → None; anything else raises ValueError."""
    value = _first_language_value(value)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
    raise ValueError(f"not an integer: {value!r}")


def to_bool(value: object) -> bool:
    """``"1"``/``1``/``true`` → True; ``"0"``/``0``/``""``/``None`` (or missing) → False."""
    value = _first_language_value(value)
    if value is None or value == "":
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str) and value.strip().lower() in {"0", "1", "true", "false"}:
        return value.strip().lower() in {"1", "true"}
    raise ValueError(f"not a PrestaShop boolean: {value!r}")


def to_decimal(value: object) -> Decimal | None:
    """``"61.800000"`` → Decimal('61.800000') exactly (never through float); ``None``/``""`` → None."""
    value = _first_language_value(value)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(f"not a decimal: {value!r}")
    if isinstance(value, float):
        # A native float only comes from a PHP float column; its repr is the shortest exact text.
        return Decimal(repr(value))
    try:
        return Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise ValueError(f"not a decimal: {value!r}") from exc


def to_text(value: object) -> str:
    """A string field: ``None`` → ``""``, numbers → their text; a list form → its first value."""
    value = _first_language_value(value)
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"not a string: {value!r}")


def to_datetime(value: object) -> datetime | None:
    """``"2021-07-23 23:18:42"`` → naive shop-local datetime; zero/empty dates → None."""
    value = _first_language_value(value)
    if value is None or (isinstance(value, str) and value.strip() in ZERO_DATES):
        return None
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        text = value.strip()
        if len(text) == 10:
            return datetime.fromisoformat(text + " 00:00:00")
        return datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
    raise ValueError(f"not a PrestaShop date: {value!r}")


def to_date(value: object) -> date | None:
    """``"1990-05-04"`` → date; ``0000-00-00`` → None (birthday, available_date)."""
    moment = to_datetime(value)
    return moment.date() if moment is not None else None


def to_i18n(value: object, single_language_id: int) -> dict[int, str]:
    """Any i18n field → ``{language id: text}``.

    A plain string (the shop returned one language) belongs to ``single_language_id``; the list form
    ``[{"id": "1", "value": ".."}, ...]`` carries its ids; ``None``/missing → ``{}``.
    """
    if value is None:
        return {}
    if isinstance(value, Mapping) and all(isinstance(k, int | str) for k in value):
        return {int(k): to_text(v) for k, v in value.items()}
    if isinstance(value, list):
        texts: dict[int, str] = {}
        for item in value:
            if not isinstance(item, Mapping) or "id" not in item:
                raise ValueError(f"not an i18n entry: {item!r}")
            language = to_int(item["id"])
            if language is None:
                raise ValueError(f"i18n entry without a language id: {item!r}")
            texts[language] = to_text(item.get("value"))
        return texts
    return {single_language_id: to_text(value)}
