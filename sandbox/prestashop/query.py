"""GET parameters: parsing and evaluation of display, filter, sort, limit, date, language, schema.

Follows ``WebserviceRequest::setFieldsToDisplay / manageFilters / getSQLRetrieveFilter /
filterLanguage`` as reference §1.6 describes them, including the documented 400 codes and the
inclusive BETWEEN. Values compare like MySQL would: numerically for numeric columns,
case-insensitively for text, as text for dates (their format sorts correctly).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from sandbox.prestashop.errors import WsError
from sandbox.prestashop.resources import Field, Resource
from sandbox.prestashop.store import Entity, Store, Value

DATE_FIELDS = ("date_add", "date_upd")
NUMERIC_KINDS = ("int", "uint", "float", "bool")
_BRACKETED = re.compile(r"^(.*)\[(.*)\](.*)$", re.DOTALL)
_RANGE = re.compile(r"^([\d.:\-\s]+),([\d.:\-\s]+)$")
_NUMERIC = re.compile(r"^-?\d+(\.\d+)?$")
_PHP_INT = re.compile(r"^\s*([+-]?\d+)")

Predicate = Callable[[Entity], bool]


@dataclass(slots=True)
class Display:
    """What to render: ``minimum`` (ids), ``full`` or chosen ``fields`` / ``assocs``.

    ``present`` records whether a ``display`` parameter was in the query string at all: the JSON
    renderer switches to the plural list wrapping on that alone (reference §1.8).
    """

    mode: Literal["minimum", "full", "fields"]
    fields: list[str] = field(default_factory=list)
    assocs: dict[str, list[str] | None] = field(default_factory=dict)
    present: bool = False


@dataclass(slots=True)
class ListQuery:
    """A parsed GET: display, filter predicates, sort keys, limit window, languages."""

    display: Display
    predicates: list[Predicate]
    sorts: list[tuple[Field, bool]]
    offset: int
    count: int | None
    languages: list[int]
    equality: tuple[str, tuple[str, ...]] | None = None
    """``(field, values)`` of one ``filter[field]=[v]`` or ``[v1|v2|...]`` on ``id`` or an indexed
    column: :func:`select` then reads only those rows instead of scanning the table (the predicates
    still decide, so the answer is the same)."""


def php_int(text: str) -> int:
    """PHP ``(int)`` cast: leading integer or 0."""
    match = _PHP_INT.match(text)
    return int(match.group(1)) if match else 0


def _quoted(names: Iterable[str]) -> str:
    return ", ".join(f'"{n}"' for n in names)


def _split_top(text: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    current = ""
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def parse_display(raw: str | None, resource: Resource, store: Store, *, single: bool) -> Display:
    """``display``: absent → minimum on lists and full on a single id; ``full``; ``[f1,assoc[x]]``."""
    if raw is None:
        return Display("full" if single else "minimum")
    if raw == "full":
        return Display("full", present=True)
    match = re.match(r"^\[(.*)\]$", raw, re.DOTALL)
    if match is None:
        raise WsError(400, 36, 'The "display" syntax is incorrect. You can set "full" or "[field_1,field_2]"')
    available = [f.name for f in resource.fields_for(store.version)] + [a.name for a in resource.associations]
    display = Display("fields", present=True)
    for item in _split_top(match.group(1)):
        sub = re.match(r"^(\w+)\[(.*)\]$", item)
        name = sub.group(1) if sub else item
        assoc = resource.association(name)
        if assoc is not None:
            if sub is None:
                display.assocs[name] = None
                continue
            wanted = _split_top(sub.group(2))
            for w in wanted:
                if w not in assoc.fields:
                    raise WsError(
                        400,
                        35,
                        f'Unable to display this field "{w}" of the association "{name}". '
                        f"However, these are available: {_quoted(assoc.fields)}",
                    )
            display.assocs[name] = wanted
            continue
        if sub is not None or name not in available:
            raise WsError(
                400,
                35,
                f'Unable to display this field "{name}". However, these are available: {_quoted(available)}',
            )
        display.fields.append(name)
    return display


def filterable_fields(resource: Resource, store: Store, *, with_dates: bool) -> dict[str, Field]:
    """Fields usable in ``filter`` / ``sort``: non-getter fields; dates only with ``date=1``."""
    out = {f.name: f for f in resource.fields_for(store.version) if not f.getter}
    if not with_dates:
        for name in DATE_FIELDS:
            out.pop(name, None)
    return out


def _num(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _like(pattern: str) -> re.Pattern[str]:
    regex = "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern)
    return re.compile(f"^{regex}$", re.IGNORECASE | re.DOTALL)


def _values(entity: Entity, fdef: Field, languages: list[int]) -> list[str]:
    if fdef.name == "id":
        return [str(entity.id)]
    raw: Value = entity.values.get(fdef.name)
    if isinstance(raw, dict):
        return [raw.get(lang, "") for lang in languages]
    return ["" if raw is None else str(raw)]


def _comparator(fdef: Field) -> Callable[[str], float | str | None]:
    if fdef.kind in NUMERIC_KINDS or fdef.name == "id":
        return _num
    if fdef.kind in ("date", "day"):
        return lambda s: s
    return lambda s: s.casefold()


def build_predicate(fdef: Field, raw: str, languages: list[int]) -> Predicate | None:
    """One ``filter[field]=raw`` as a row predicate (``None``: PrestaShop adds no SQL for it)."""
    key = _comparator(fdef)

    def test(check: Callable[[float | str | None], bool]) -> Predicate:
        return lambda e: any(check(key(v)) for v in _values(e, fdef, languages))

    match = _BRACKETED.match(raw)
    if match is None:
        target = key(raw)
        return test(lambda v: v is not None and v == target)
    prefix, inner, suffix = match.groups()
    if prefix == "%" or suffix == "%":
        pattern = _like(prefix + inner + suffix)
        return lambda e: any(pattern.match(v) is not None for v in _values(e, fdef, languages))
    if prefix == "" and suffix == "":
        if inner.find("|") > 0:
            targets = {key(part) for part in inner.split("|")}
            return test(lambda v: v in targets)
        rng = _RANGE.match(inner)
        if rng is not None:
            lo, hi = sorted((rng.group(1), rng.group(2)))  # PHP sorts the bounds as strings
            klo, khi = key(lo), key(hi)
            if isinstance(klo, float) and isinstance(khi, float) and klo > khi:
                klo, khi = khi, klo
            return test(lambda v: v is not None and klo <= v <= khi)  # type: ignore[operator]
        target = key(inner)
        return test(lambda v: v is not None and v == target)
    if prefix in (">", "<"):
        bound = key(inner)
        if bound is None:
            return lambda e: False
        if prefix == ">":
            return test(lambda v: v is not None and v > bound)  # type: ignore[operator]
        return test(lambda v: v is not None and v < bound)  # type: ignore[operator]
    if prefix == "!":
        excluded = {key(part) for part in inner.split("|")}
        return lambda e: all(key(v) not in excluded for v in _values(e, fdef, languages))
    return None


def parse_languages(raw: str | None, store: Store) -> list[int]:
    """``language=1`` | ``[1|3]`` | ``[1,3]`` (range) → installed language ids to render."""
    installed = store.language_ids
    if raw is None:
        return installed
    if raw.isdigit():
        wanted = [int(raw)]
    else:
        match = re.match(r"^\[([\d|,]*)\]$", raw)
        if match is None:
            raise WsError(400, 79, f'The "language" value "{raw}" is not valid; use "1", "[1|2]" or "[1,3]"')
        inner = match.group(1)
        if "," in inner:
            bounds = [p for p in inner.split(",") if p]
            if len(bounds) != 2:
                raise WsError(400, 80, "The language range has to be formed as [first,last]")
            lo, hi = sorted(int(b) for b in bounds)
            wanted = list(range(lo, hi + 1))
        else:
            wanted = [int(p) for p in inner.split("|") if p]
    chosen = [lang for lang in installed if lang in wanted]
    if not chosen:
        raise WsError(400, 81, "language is not available")
    return chosen


def parse_list_query(
    params: Mapping[str, str], resource: Resource, store: Store, *, single: bool
) -> ListQuery:
    """Parse every GET parameter that shapes the answer; raises ``WsError`` with PrestaShop's codes."""
    languages = parse_languages(params.get("language"), store)
    display = parse_display(params.get("display"), resource, store, single=single)
    with_dates = params.get("date") == "1"
    allowed = filterable_fields(resource, store, with_dates=with_dates)
    all_fields = {f.name: f for f in resource.fields_for(store.version)}
    predicates: list[Predicate] = []
    equality: tuple[str, tuple[str, ...]] | None = None
    for key, raw in params.items():
        if not (key.startswith("filter[") and key.endswith("]")):
            continue
        name = key[len("filter[") : -1]
        if raw == "":
            raise WsError(400, 33, f'The filter "{name}" is malformed.')
        fdef = allowed.get(name)
        if fdef is None:
            if name in all_fields and all_fields[name].getter:
                raise WsError(
                    400,
                    34,
                    f'The field "{name}" is dynamic. It is not possible to filter GET query with this field.',
                )
            if with_dates and name in DATE_FIELDS and not resource.has_dates:
                raise WsError(500, 46, f"Unknown column 'main.{name}' in 'where clause'")
            close = difflib.get_close_matches(name, list(allowed), n=1)
            hint = f' Did you mean: "{close[0]}"?' if close else ""
            raise WsError(400, 32, f"This filter does not exist.{hint} The full list is: {_quoted(allowed)}")
        predicate = build_predicate(fdef, raw, languages)
        if predicate is not None:
            predicates.append(predicate)
        if equality is None:
            equality = _lookup(name, fdef, raw, resource, store)
    sorts: list[tuple[Field, bool]] = []
    raw_sort = params.get("sort")
    if raw_sort:
        inner = raw_sort[1:-1] if raw_sort.startswith("[") and raw_sort.endswith("]") else raw_sort
        for item in (p.strip() for p in inner.split(",") if p.strip()):
            name, _, direction = item.rpartition("_")
            if not name or direction not in ("ASC", "DESC"):
                raise WsError(
                    400,
                    37,
                    'The "sort" value has to be formed as this example: "field_ASC" or '
                    '"[field_1_DESC,field_2_ASC,field_3_ASC,...]" ("field" has to be an available field)',
                )
            fdef = allowed.get(name)
            if fdef is None:
                if with_dates and name in DATE_FIELDS and not resource.has_dates:
                    raise WsError(500, 46, f"Unknown column 'main.{name}' in 'order clause'")
                raise WsError(
                    400,
                    38,
                    f"Unable to filter by this field. However, these are available: {_quoted(allowed)}",
                )
            sorts.append((fdef, direction == "DESC"))
    offset, count = 0, None
    raw_limit = params.get("limit")
    if raw_limit is not None and raw_limit != "":
        parts = raw_limit.split(",")
        if len(parts) > 2:
            raise WsError(400, 39, 'The "limit" value has to be formed as this example: "5,25" or "10"')
        if len(parts) == 2:
            offset, count = max(php_int(parts[0]), 0), max(php_int(parts[1]), 0)
        else:
            count = max(php_int(parts[0]), 0)
    return ListQuery(display, predicates, sorts, offset, count, languages, equality)


def _lookup(
    name: str, fdef: Field, raw: str, resource: Resource, store: Store
) -> tuple[str, tuple[str, ...]] | None:
    """The values of an exact-match filter an index can answer, or None (see ``ListQuery.equality``).

    Only lists of plain values qualify (no ``%``, ``!``, ranges or brackets inside), and for numeric
    columns only canonical integers, whose text form the index keys agree with.
    """
    if name != "id" and not store.indexed(resource.name, name):
        return None
    plain = re.match(r"^\[([^\[\],%!]*)\]$", raw)
    if plain is None:
        return None
    values = tuple(plain.group(1).split("|"))
    if len(values) > 1 and not all(values):
        return None  # "[|5]" is not a list to PrestaShop (see build_predicate): leave it to the scan
    numeric = fdef.kind in NUMERIC_KINDS or name == "id"
    if numeric and not all(re.fullmatch(r"0|[1-9]\d*", value) for value in values):
        return None
    return name, values


def _sort_key(fdef: Field, languages: list[int]) -> Callable[[Entity], tuple[int, float | str]]:
    key = _comparator(fdef)

    def sort_key(entity: Entity) -> tuple[int, float | str]:
        value = key(_values(entity, fdef, languages)[0])
        if value is None:
            return (0, 0.0)  # NULL / non-numeric sorts first, as MySQL puts NULL first
        return (1, value)

    return sort_key


def select(store: Store, resource: Resource, query: ListQuery) -> list[Entity]:
    """The rows a list GET returns: filtered, sorted, windowed. Linear in the candidate rows."""
    if query.equality is not None:
        name, values = query.equality
        found: dict[int, Entity] = {}
        for value in dict.fromkeys(values):
            if name == "id":
                row = store.get(resource.name, int(value))
                if row is not None:
                    found[row.id] = row
            else:
                found.update((row.id, row) for row in store.find(resource.name, name, value))
        candidates: Iterable[Entity] = [found[id_] for id_ in sorted(found)]  # id order, like a scan
    else:
        candidates = store.all(resource.name)
    rows = [e for e in candidates if all(p(e) for p in query.predicates)]
    for fdef, descending in reversed(query.sorts):
        rows.sort(key=_sort_key(fdef, query.languages), reverse=descending)
    end = None if query.count is None else query.offset + query.count
    return rows[query.offset : end]
