"""Query strings for PrestaShop webservice list reads: filter, display, sort, limit and date.

A :class:`Query` is an immutable value; :meth:`Query.encode` renders it as the query string the
webservice expects, percent-encoding ``[``, ``]``, ``|``, ``%``, ``,`` and spaces itself (httpx would
turn a space into ``+``). Guarantees the builder gives so callers cannot forget them:

- any filter or sort on ``date_add``/``date_upd`` adds ``date=1`` (without it the shop refuses the
  field with code 32/38);
- a list read always names its fields: ``display=full`` unless explicit fields were asked for, so
  falsy fields are never silently missing;
- ``[low,high]`` is SQL ``BETWEEN``, inclusive on both ends (the devdocs' "exclusive" is wrong).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Literal
from urllib.parse import quote

FilterValue = str | int | Decimal | date | datetime
"""What a filter may compare with; dates render as the shop's ``YYYY-MM-DD HH:MM:SS``."""

DATE_FIELDS = frozenset({"date_add", "date_upd"})
"""Fields the webservice only filters or sorts on when ``date=1`` is present."""

# Characters with a meaning inside a filter expression: a value holding one cannot be expressed.
_FILTER_SYNTAX = frozenset("[]|")


def format_value(value: FilterValue) -> str:
    """Render one value the way PrestaShop stores it (dates as shop-local ``YYYY-MM-DD HH:MM:SS``)."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            raise ValueError("PrestaShop timestamps are shop-local: convert to the shop time zone first")
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    text = str(value)
    if not text or _FILTER_SYNTAX.intersection(text):
        raise ValueError(f"filter value {text!r} is empty or contains one of [ ] | and cannot be expressed")
    return text


@dataclass(frozen=True)
class Filter:
    """One ``filter[field]=expression`` term; build it with the functions below, not by hand."""

    field: str
    expression: str


def equals(field: str, *values: FilterValue) -> Filter:
    """``field`` equals one of ``values`` (``[a]`` or ``[a|b|c]``)."""
    if not values:
        raise ValueError("equals() needs at least one value")
    return Filter(field, "[" + "|".join(format_value(v) for v in values) + "]")


def not_equals(field: str, *values: FilterValue) -> Filter:
    """``field`` differs from every one of ``values`` (``![a|b]``)."""
    if not values:
        raise ValueError("not_equals() needs at least one value")
    return Filter(field, "![" + "|".join(format_value(v) for v in values) + "]")


def between(field: str, low: FilterValue, high: FilterValue) -> Filter:
    """``low <= field <= high``: SQL BETWEEN, inclusive on both ends (numbers and dates only)."""
    return Filter(field, f"[{format_value(low)},{format_value(high)}]")


def greater_than(field: str, value: FilterValue) -> Filter:
    """``field > value`` (strict)."""
    return Filter(field, f">[{format_value(value)}]")


def less_than(field: str, value: FilterValue) -> Filter:
    """``field < value`` (strict)."""
    return Filter(field, f"<[{format_value(value)}]")


@dataclass(frozen=True)
class Sort:
    """One sort key; PrestaShop splits ``field_DIR`` on the last underscore, so ``date_upd_ASC`` works."""

    field: str
    direction: Literal["ASC", "DESC"] = "ASC"

    def render(self) -> str:
        """The ``field_DIR`` token."""
        return f"{self.field}_{self.direction}"


def _encode(text: str) -> str:
    # Nothing is left unescaped: PHP decodes every %XX, and a raw space or '+' would be ambiguous.
    return quote(text, safe="")


@dataclass(frozen=True)
class Query:
    """A list read: filters, fields to display, sort order, page and language.

    ``display`` is ``"full"`` or a tuple of field names (association sub-fields as
    ``"order_rows[product_id,product_quantity]"``). ``limit`` is ``(offset, count)``.
    """

    filters: tuple[Filter, ...] = ()
    display: Literal["full"] | tuple[str, ...] = "full"
    sort: tuple[Sort, ...] = ()
    limit: tuple[int, int] | None = None
    language: int | None = None
    extra: tuple[tuple[str, str], ...] = ()

    def where(self, *filters: Filter) -> Query:
        """This query with more filters (ANDed)."""
        return replace(self, filters=self.filters + filters)

    def sorted_by(self, *keys: Sort) -> Query:
        """This query with ``keys`` as its sort order (replacing any previous one)."""
        return replace(self, sort=keys)

    def page(self, offset: int, count: int) -> Query:
        """This query restricted to ``count`` rows starting at the 0-based ``offset``."""
        if offset < 0 or count <= 0:
            raise ValueError("offset must be >= 0 and count > 0")
        return replace(self, limit=(offset, count))

    def fields(self, *names: str) -> Query:
        """This query displaying only ``names`` (plus whatever PrestaShop always adds, such as id)."""
        return replace(self, display=tuple(names))

    def with_param(self, name: str, value: str) -> Query:
        """This query with one more plain parameter (``sendemail``, ``id_shop``, ...)."""
        return replace(self, extra=(*self.extra, (name, value)))

    @property
    def needs_date(self) -> bool:
        """True when a filter or sort touches a date field, so ``date=1`` must be sent."""
        used = {f.field for f in self.filters} | {s.field for s in self.sort}
        return bool(used & DATE_FIELDS)

    def params(self) -> list[tuple[str, str]]:
        """The (name, value) pairs, unencoded, in a stable order."""
        pairs: list[tuple[str, str]] = []
        display = self.display if isinstance(self.display, str) else "[" + ",".join(self.display) + "]"
        pairs.append(("display", display))
        pairs.extend((f"filter[{f.field}]", f.expression) for f in self.filters)
        if self.sort:
            pairs.append(("sort", "[" + ",".join(s.render() for s in self.sort) + "]"))
        if self.limit is not None:
            pairs.append(("limit", f"{self.limit[0]},{self.limit[1]}"))
        if self.needs_date:
            pairs.append(("date", "1"))
        if self.language is not None:
            pairs.append(("language", str(self.language)))
        pairs.extend(self.extra)
        return pairs

    def encode(self) -> str:
        """The percent-encoded query string, without the leading ``?``."""
        return encode_params(self.params())


def encode_params(pairs: Iterable[tuple[str, str]]) -> str:
    """Percent-encode ``pairs`` strictly (``[`` → ``%5B``, space → ``%20``, ``%`` → ``%25``)."""
    return "&".join(f"{_encode(name)}={_encode(value)}" for name, value in pairs)


def by_id(*ids: int) -> Query:
    """A full read of the rows with these ids, sorted by id."""
    return Query(filters=(equals("id", *ids),), sort=(Sort("id"),))


STABLE_ID_ORDER: Sequence[Sort] = (Sort("id"),)
"""The order used when paging a list that has no better key: without a sort the shop has none."""

CHANGE_ORDER: Sequence[Sort] = (Sort("date_upd"), Sort("id"))
"""``sort=[date_upd_ASC,id_ASC]``: the stable order for paging through changes."""
