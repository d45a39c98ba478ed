"""Address standardisation and ERP field fitting.

Standardisation: whitespace collapsed (tabs, newlines, non-breaking spaces) and Unicode NFC; country
as ISO 3166-1 alpha-2 from an alpha-2/alpha-3 code, an English or local name, an alias of the rules
file or a PrestaShop ``id_country``; region as ISO 3166-2 (``US-NY``) from a code or a name;
postcode in the country's standard form (``sw1a1aa`` → ``SW1A 1AA``, ``1234ab`` → ``1234 AB``).

Fitting: an ERP with fixed-width address fields (M3: CUA1-CUA4 of 36 characters) gets the lines split
at word boundaries without losing text. The lines are kept as they are when they fit; else each line
is wrapped on its own; else all words flow across the fields. A single word longer than a field is cut
into field-wide pieces (nothing dropped). If the text still needs more fields than there are, the
message is invalid (reason ``address_does_not_fit``): truncating an address ships parcels to the wrong
door.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

from pipeline.errors import InvalidMessage
from rules import model

_WHITESPACE = re.compile(r"\s+")
_POSTCODE_NOISE = re.compile("[\\s.\\-\u2010\u2011\u2013\u2014]+")
_REGION_CODE = re.compile(r"^([A-Z]{2})-([A-Z0-9]{1,3})$")
_REGION_SUFFIX = re.compile(r"^[A-Z0-9]{1,3}$")


@dataclass(frozen=True)
class Iso3166:
    """The built-in ISO 3166 data (``rules/iso3166.yaml``)."""

    alpha3: dict[str, str]
    """alpha-3 → alpha-2."""
    names: dict[str, str]
    """folded name → alpha-2."""
    alpha2: frozenset[str]
    subdivisions: dict[str, dict[str, str]]
    """alpha-2 → folded subdivision name → subdivision suffix."""


def fold(text: str) -> str:
    """A comparison key for names: NFKD without accents, case-folded, whitespace collapsed."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(char for char in decomposed if not unicodedata.combining(char))
    return _WHITESPACE.sub(" ", stripped).strip().casefold()


@cache
def iso3166() -> Iso3166:
    """The built-in table, read once on first use (never at import time)."""
    text = resources.files("rules").joinpath("iso3166.yaml").read_text(encoding="utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    alpha3: dict[str, str] = {}
    names: dict[str, str] = {}
    for code, (three, *spellings) in data["countries"].items():
        alpha3[three] = code
        for name in spellings:
            names[fold(name)] = code
    subdivisions = {
        country: {fold(name): suffix for suffix, name in table.items()}
        for country, table in data["subdivisions"].items()
    }
    return Iso3166(alpha3=alpha3, names=names, alpha2=frozenset(data["countries"]), subdivisions=subdivisions)


def clean(text: str | None) -> str:
    """``text`` in NFC with runs of whitespace (any kind) collapsed to one space and trimmed."""
    if not text:
        return ""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFC", text)).strip()


@dataclass(frozen=True)
class StandardAddress:
    """A standardised address; fields mirror the canonical ``Address`` record."""

    first_name: str
    last_name: str
    company: str | None
    lines: tuple[str, ...]
    postal_code: str | None
    city: str
    region_code: str | None
    country_code: str
    phone: str | None
    vat_number: str | None


class AddressRules:
    """The address section of the rules as operations (build through :class:`rules.engine.Rules`)."""

    def __init__(self, rules: model.AddressRules) -> None:
        self._rules = rules
        self._aliases = {fold(name): code for name, code in rules.country_aliases.items()}
        self._region_aliases = {
            country: {fold(name): suffix for name, suffix in table.items()}
            for country, table in rules.subdivision_aliases.items()
        }
        self._postcodes = {
            country: [(re.compile(shape.pattern), shape.format) for shape in shapes]
            for country, shapes in rules.postcodes.items()
        }

    # --- standardisation -------------------------------------------------------------------------------

    def country_code(self, value: str | int, *, field_path: str = "country") -> str:
        """ISO 3166-1 alpha-2 for a code, name, alias or PrestaShop ``id_country`` (int or digits).

        Raises InvalidMessage ``unknown_country`` naming ``field_path``.
        """
        table = iso3166()
        if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
            found = self._rules.prestashop_country_ids.get(int(value))
            if found is not None:
                return found
        else:
            text = clean(value)
            upper = text.upper()
            if len(upper) == 2 and upper in table.alpha2:
                return upper
            if len(upper) == 3 and upper in table.alpha3:
                return table.alpha3[upper]
            key = fold(text)
            if key in self._aliases:
                return self._aliases[key]
            if key in table.names:
                return table.names[key]
            # An alpha-2 code the built-in table lacks is still a valid shape; accept it only if the
            # rules file names it somewhere (a postcode format) so typos do not pass.
            if len(upper) == 2 and upper in self._postcodes:
                return upper
        raise InvalidMessage(
            "unknown_country",
            f"{value!r} is not a known country (ISO 3166-1 code, name, alias or PrestaShop id)",
            field_path=field_path,
        )

    def region_code(self, country_code: str, value: str | None, *, field_path: str = "state") -> str | None:
        """ISO 3166-2 (``US-NY``) from ``NY``, ``US-NY`` or a name (``New York``); None when empty.

        Raises InvalidMessage ``unknown_region`` when the value is neither a code shape nor a known name,
        or is a full code of another country.
        """
        text = clean(value)
        if not text:
            return None
        upper = text.upper()
        full = _REGION_CODE.match(upper)
        if full:
            if full.group(1) != country_code:
                raise InvalidMessage(
                    "unknown_region",
                    f"region {upper} belongs to {full.group(1)}, not {country_code}",
                    field_path=field_path,
                )
            return upper
        key = fold(text)
        suffix = self._region_aliases.get(country_code, {}).get(key) or iso3166().subdivisions.get(
            country_code, {}
        ).get(key)
        if suffix is not None:
            return f"{country_code}-{suffix}"
        if _REGION_SUFFIX.match(upper):
            return f"{country_code}-{upper}"
        raise InvalidMessage(
            "unknown_region", f"{text!r} is not a known region of {country_code}", field_path=field_path
        )

    def postal_code(
        self, country_code: str, value: str | None, *, field_path: str = "postcode"
    ) -> str | None:
        """The postcode in ``country_code``'s standard form; None when empty.

        A postcode matching none of the country's shapes is kept cleaned and upper-cased, or raises
        InvalidMessage ``invalid_postcode`` when the rules say ``on_invalid_postcode: invalid``.
        Countries without shapes keep the cleaned, upper-cased value.
        """
        text = clean(value).upper()
        if not text:
            return None
        shapes = self._postcodes.get(country_code)
        if not shapes:
            return text
        compact = _POSTCODE_NOISE.sub("", text)
        for pattern, template in shapes:
            match = pattern.match(compact)
            if match:
                return template.format(match.group(0), *match.groups(default=""))
        if self._rules.on_invalid_postcode is model.InvalidPolicy.INVALID:
            raise InvalidMessage(
                "invalid_postcode",
                f"{text!r} is not a valid {country_code} postcode",
                field_path=field_path,
            )
        return text

    def city(self, value: str | None) -> str:
        """The city cleaned, cased as the rules say."""
        text = clean(value)
        return text.upper() if self._rules.city_case is model.TextCase.UPPER else text

    def standardise(
        self,
        *,
        country: str | int,
        lines: Sequence[str | None],
        city: str | None,
        postal_code: str | None = None,
        region: str | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
        company: str | None = None,
        phone: str | None = None,
        vat_number: str | None = None,
        field_path: str = "address",
    ) -> StandardAddress:
        """A standardised address; empty lines are dropped, other text is never shortened.

        Raises InvalidMessage (``unknown_country``, ``unknown_region``, ``invalid_postcode``) with the
        field path under ``field_path``.
        """
        country_code = self.country_code(country, field_path=f"{field_path}.country")
        return StandardAddress(
            first_name=clean(first_name),
            last_name=clean(last_name),
            company=clean(company) or None,
            lines=tuple(line for line in (clean(raw) for raw in lines) if line),
            postal_code=self.postal_code(country_code, postal_code, field_path=f"{field_path}.postcode"),
            city=self.city(city),
            region_code=self.region_code(country_code, region, field_path=f"{field_path}.state"),
            country_code=country_code,
            phone=clean(phone) or None,
            vat_number=clean(vat_number).upper().replace(" ", "") or None,
        )

    # --- ERP field fitting -----------------------------------------------------------------------------

    def fitting(self, target: str) -> model.ErpFieldFitting:
        """The fixed-width field layout of ``target`` (``m3``); the M3 default when not configured."""
        return self._rules.erp_fields.get(target, model.ErpFieldFitting())

    def fit_lines(
        self, lines: Sequence[str], target: str = "m3", *, field_path: str = "address.lines"
    ) -> tuple[str, ...]:
        """``lines`` fitted into ``target``'s fixed-width fields (at most ``fields`` of ``width`` chars).

        Returns only the fields used (the caller pads). Joining the result with spaces gives the words of
        the input in order (a word longer than a field appears cut into field-wide pieces). Raises
        InvalidMessage ``address_does_not_fit`` when more fields would be needed.
        """
        layout = self.fitting(target)
        return fit_lines(lines, fields=layout.fields, width=layout.width, field_path=field_path)


def fit_lines(
    lines: Sequence[str], *, fields: int, width: int, field_path: str = "address.lines"
) -> tuple[str, ...]:
    """See :meth:`AddressRules.fit_lines`; the pure algorithm with an explicit layout."""
    cleaned = [line for line in (clean(raw) for raw in lines) if line]
    if len(cleaned) <= fields and all(len(line) <= width for line in cleaned):
        return tuple(cleaned)
    per_line = [chunk for line in cleaned for chunk in _wrap(line.split(" "), width)]
    if len(per_line) <= fields:
        return tuple(per_line)
    flowed = _wrap([word for line in cleaned for word in line.split(" ")], width)
    if len(flowed) <= fields:
        return tuple(flowed)
    text = " / ".join(cleaned)
    raise InvalidMessage(
        "address_does_not_fit",
        f"address needs {len(flowed)} fields of {width} characters, only {fields} exist: {text!r}",
        field_path=field_path,
        details={"fields": str(fields), "width": str(width), "needed": str(len(flowed))},
    )


def _wrap(words: Sequence[str], width: int) -> list[str]:
    """Greedy word wrap (fewest lines for a fixed width); over-long words are cut into pieces."""
    pieces: list[str] = []
    for word in words:
        if not word:
            continue
        pieces.extend(word[start : start + width] for start in range(0, len(word), width))
    result: list[str] = []
    current = ""
    for piece in pieces:
        if not current:
            current = piece
        elif len(current) + 1 + len(piece) <= width:
            current = f"{current} {piece}"
        else:
            result.append(current)
            current = piece
    if current:
        result.append(current)
    return result
