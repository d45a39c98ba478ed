"""Addresses: ISO codes, postcodes per country, whitespace, and fitting M3's CUA1-CUA4 without losing text."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.errors import InvalidMessage
from rules.address import clean, fit_lines
from rules.engine import default_rules_text, load_rules, parse_rules

ADDRESS = load_rules().address


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("FR", "FR"),
        ("fr", "FR"),
        ("FRA", "FR"),
        ("France", "FR"),
        ("  united   kingdom ", "GB"),
        ("Deutschland", "DE"),
        ("Österreich", "AT"),
        ("osterreich", "AT"),
        ("Holland", "NL"),
        ("USA", "US"),
        ("Korea, Republic of", "KR"),
        (8, "FR"),
        ("21", "US"),
    ],
)
def test_country_codes_from_codes_names_aliases_and_prestashop_ids(value: str | int, expected: str) -> None:
    assert ADDRESS.country_code(value) == expected


@pytest.mark.parametrize("value", ["Atlantis", "XX", "999", 999])
def test_unknown_countries_are_invalid_with_the_field_path(value: str | int) -> None:
    with pytest.raises(InvalidMessage) as caught:
        ADDRESS.country_code(value, field_path="address_delivery.id_country")
    assert caught.value.reason == "unknown_country"
    assert caught.value.field_path == "address_delivery.id_country"


@pytest.mark.parametrize(
    ("country", "value", "expected"),
    [
        ("US", "NY", "US-NY"),
        ("US", "us-ny", "US-NY"),
        ("US", "New York", "US-NY"),
        ("CA", "Québec", "CA-QC"),
        ("CA", "ON", "CA-ON"),
        ("IT", "MI", "IT-MI"),
        ("US", "", None),
        ("US", None, None),
    ],
)
def test_region_codes_are_iso_3166_2(country: str, value: str | None, expected: str | None) -> None:
    assert ADDRESS.region_code(country, value) == expected


def test_a_region_of_another_country_is_invalid() -> None:
    with pytest.raises(InvalidMessage) as caught:
        ADDRESS.region_code("US", "CA-QC")
    assert caught.value.reason == "unknown_region"


@pytest.mark.parametrize(
    ("country", "raw", "expected"),
    [
        ("FR", " 69 003 ", "69003"),
        ("DE", "10115", "10115"),
        ("GB", "sw1a1aa", "SW1A 1AA"),
        ("GB", "SW1A   1AA", "SW1A 1AA"),
        ("GB", "m1 1ae", "M1 1AE"),
        ("GB", "gir0aa", "GIR 0AA"),
        ("US", "12345", "12345"),
        ("US", "12345 6789", "12345-6789"),
        ("US", "123456789", "12345-6789"),
        ("NL", "1234ab", "1234 AB"),
        ("NL", "1234 - ab", "1234 AB"),
        ("BE", "1000", "1000"),
        ("ES", "28013", "28013"),
        ("IT", "00184", "00184"),
        ("CA", "k1a0b1", "K1A 0B1"),
        ("CA", "K1A-0B1", "K1A 0B1"),
        ("PT", "1000001", "1000-001"),
        ("LU", "l-1234", "L-1234"),
        ("JP", " 100-0001 ", "100-0001"),  # no shape configured: cleaned and upper-cased only
    ],
)
def test_postcodes_take_the_countrys_standard_form(country: str, raw: str, expected: str) -> None:
    assert ADDRESS.postal_code(country, raw) == expected


def test_an_invalid_postcode_is_kept_or_rejected_as_the_rules_say() -> None:
    assert ADDRESS.postal_code("ES", "99999") == "99999"
    assert ADDRESS.postal_code("NL", "0123AB") == "0123AB"
    text = default_rules_text().replace("on_invalid_postcode: keep", "on_invalid_postcode: invalid")
    strict = parse_rules(text)
    with pytest.raises(InvalidMessage) as caught:
        strict.address.postal_code("ES", "99999", field_path="address.postcode")
    assert (caught.value.reason, caught.value.field_path) == ("invalid_postcode", "address.postcode")


def test_standardise_cleans_every_field_and_keeps_every_line() -> None:
    address = ADDRESS.standardise(
        country="united kingdom",
        lines=["  10\tDowning   Street ", "", None, "Westminster\u00a0"],
        city="  London ",
        postal_code="sw1a2aa",
        region=None,
        first_name=" Ada ",
        last_name="Lovelace",
        company="",
        phone=" +44 20 7925 0918 ",
        vat_number="gb 123 4567 89",
    )
    assert address.country_code == "GB"
    assert address.lines == ("10 Downing Street", "Westminster")
    assert (address.city, address.postal_code, address.region_code) == ("London", "SW1A 2AA", None)
    assert (address.first_name, address.company, address.phone) == ("Ada", None, "+44 20 7925 0918")
    assert address.vat_number == "GB123456789"


def test_lines_that_fit_are_kept_as_they_are() -> None:
    lines = ["12 rue des Lilas", "Bâtiment B, 3e étage"]
    assert ADDRESS.fit_lines(lines, "m3") == tuple(lines)


def test_long_lines_wrap_at_word_boundaries_into_36_character_fields() -> None:
    fitted = ADDRESS.fit_lines(
        ["Résidence les Jardins de la Tour Eiffel, Bâtiment C, Escalier 4", "12 avenue Gustave Eiffel"]
    )
    assert fitted == (
        "Résidence les Jardins de la Tour",
        "Eiffel, Bâtiment C, Escalier 4",
        "12 avenue Gustave Eiffel",
    )
    assert all(len(field) <= 36 for field in fitted)


def test_text_that_cannot_fit_is_invalid_not_truncated() -> None:
    too_long = ["word " * 40]
    with pytest.raises(InvalidMessage) as caught:
        ADDRESS.fit_lines(too_long, "m3", field_path="shipping_address.lines")
    assert caught.value.reason == "address_does_not_fit"
    assert caught.value.field_path == "shipping_address.lines"
    assert caught.value.details["width"] == "36"


# Words as shops see them: letters with accents, digits, punctuation; sometimes longer than a field.
_WORDS = st.text(
    alphabet=st.characters(whitelist_categories=("Lu", "Ll", "Nd", "Po", "Pd"), max_codepoint=0x17F),
    min_size=1,
    max_size=45,
)
_LINES = st.lists(
    st.lists(_WORDS, min_size=0, max_size=8).map(lambda words: " ".join(words)), min_size=0, max_size=6
)


@given(
    lines=_LINES, fields=st.integers(min_value=1, max_value=6), width=st.integers(min_value=10, max_value=60)
)
def test_fitting_never_loses_text(lines: list[str], fields: int, width: int) -> None:
    words = " ".join(lines).split()
    try:
        fitted = fit_lines(lines, fields=fields, width=width)
    except InvalidMessage as exc:
        reason = exc.reason
        assert reason == "address_does_not_fit"
        # Never refused when the text obviously fits: all of it in one field, or one word per field.
        assert len(" ".join(words)) > width
        assert len(words) > fields or any(len(word) > width for word in words)
        return
    assert len(fitted) <= fields
    assert all(0 < len(field) <= width for field in fitted)
    # Concatenating the fields gives back the words (a word longer than a field appears in pieces).
    assert "".join("".join(field.split()) for field in fitted) == "".join(words)
    if all(len(word) <= width for word in words):
        assert " ".join(fitted).split() == words


@given(text=st.text(max_size=80))
def test_cleaning_collapses_whitespace_and_keeps_every_other_character(text: str) -> None:
    cleaned = clean(text)
    assert cleaned == cleaned.strip()
    assert "  " not in cleaned
    assert "".join(cleaned.split()) == "".join(clean(text).split())
    assert clean(cleaned) == cleaned


@given(
    country=st.sampled_from(["FR", "DE", "GB", "US", "NL", "BE", "ES", "IT", "CA"]),
    data=st.data(),
)
def test_standard_postcodes_are_fixed_points(country: str, data: st.DataObject) -> None:
    samples = {
        "FR": st.from_regex(r"\A\d{5}\Z"),
        "DE": st.from_regex(r"\A\d{5}\Z"),
        "IT": st.from_regex(r"\A\d{5}\Z"),
        "ES": st.from_regex(r"\A(0[1-9]|[1-4]\d|5[0-2])\d{3}\Z"),
        "BE": st.from_regex(r"\A[1-9]\d{3}\Z"),
        "NL": st.from_regex(r"\A[1-9]\d{3} [A-Z]{2}\Z"),
        "GB": st.from_regex(r"\A[A-Z]{1,2}\d[A-Z\d]? \d[A-Z]{2}\Z"),
        "US": st.from_regex(r"\A\d{5}(-\d{4})?\Z"),
        "CA": st.from_regex(r"\A[ABCEGHJ-NPRSTVXY]\d[ABCEGHJ-NPRSTV-Z] \d[ABCEGHJ-NPRSTV-Z]\d\Z"),
    }
    standard = data.draw(samples[country])
    assert ADDRESS.postal_code(country, standard) == standard
    # Any spacing/case of it comes back to the same standard form.
    messy = data.draw(st.sampled_from([standard.lower(), standard.replace(" ", ""), f"  {standard}  "]))
    assert ADDRESS.postal_code(country, messy) == standard
