"""The rules file: the packaged default loads, and every kind of problem is reported with its YAML path."""

from __future__ import annotations

import argparse
import json
from enum import StrEnum
from pathlib import Path

import pytest
import yaml

from cli.rules import register as register_rules_cli
from rules.canonical_status import FulfillmentStatus, Lifecycle, PaymentStatus
from rules.engine import Problem, RulesFileError, default_rules_text, load_rules, parse_rules
from schemas.loader import AVRO_DIR


def _default() -> dict[str, object]:
    data: dict[str, object] = yaml.safe_load(default_rules_text())
    return data


def _problems(text: str) -> list[Problem]:
    with pytest.raises(RulesFileError) as caught:
        parse_rules(text, source="test.yaml")
    return caught.value.problems


def test_the_default_rules_file_loads_and_builds_every_section() -> None:
    rules = load_rules()
    assert rules.currency.base_currency == "EUR"
    assert rules.address.fitting("m3").width == 36
    assert rules.address.fitting("m3").fields == 4
    assert rules.anomalies.destination([], "canonical.order.v1") == "canonical.order.v1"
    assert rules.source == "rules/default.yaml"


@pytest.mark.parametrize(
    ("enum", "avsc"),
    [(PaymentStatus, "PaymentStatus"), (FulfillmentStatus, "FulfillmentStatus"), (Lifecycle, "Lifecycle")],
)
def test_status_enums_equal_the_avro_enums(enum: type[StrEnum], avsc: str) -> None:
    symbols = json.loads((AVRO_DIR / f"{avsc}.avsc").read_text(encoding="utf-8"))["symbols"]
    assert [member.value for member in enum] == symbols


def test_an_unknown_key_is_reported_with_its_path() -> None:
    data = _default()
    data["currency"]["base_curency"] = "EUR"  # type: ignore[index]
    problems = _problems(yaml.safe_dump(data))
    assert Problem("currency.base_curency", "unknown key (a typo?)") in problems


def test_a_wrong_status_symbol_is_reported_with_the_list_index() -> None:
    data = _default()
    data["status"]["prestashop"]["states"][3]["payment"] = "PAYED"  # type: ignore[index]
    problems = _problems(yaml.safe_dump(data))
    assert [p.path for p in problems] == ["status.prestashop.states[3].payment"]
    assert "PAID" in problems[0].message


def test_several_problems_are_all_reported() -> None:
    data = _default()
    del data["version"]
    data["currency"]["rates"]["usd"] = "-1"  # type: ignore[index]
    data["address"]["postcodes"]["GB"][0]["pattern"] = "([A-Z"  # type: ignore[index]
    paths = {p.path for p in _problems(yaml.safe_dump(data, allow_unicode=True))}
    assert paths == {"version", "currency.rates", "address.postcodes.GB[0].pattern"}


def test_a_float_free_decimal_is_read_from_its_text() -> None:
    data = _default()
    data["currency"]["rates"]["USD"] = 0.1  # type: ignore[index]
    rules = parse_rules(yaml.safe_dump(data, allow_unicode=True))
    assert str(rules.model.currency.rates["USD"]) == "0.1"


def test_a_postcode_format_using_a_missing_group_is_a_problem() -> None:
    data = _default()
    data["address"]["postcodes"]["FR"][0]["format"] = "{1} {2}"  # type: ignore[index]
    problems = _problems(yaml.safe_dump(data, allow_unicode=True))
    assert [p.path for p in problems] == ["address.postcodes.FR[0].format"]


def test_invalid_yaml_names_the_line() -> None:
    problems = _problems("version: 1\nstatus: [unclosed\n")
    assert problems[0].path.startswith("line ")


def test_a_missing_file_is_one_clear_problem(tmp_path: Path) -> None:
    with pytest.raises(RulesFileError) as caught:
        load_rules(tmp_path / "nope.yaml")
    assert "cannot read the file" in str(caught.value)


def test_cli_check_prints_a_summary_or_each_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The group on its own parser, as cli/main.py's build_parser registers it.
    parser = argparse.ArgumentParser(prog="psinfor")
    register_rules_cli(parser.add_subparsers())
    good = tmp_path / "good.yaml"
    good.write_text(default_rules_text(), encoding="utf-8")
    args = parser.parse_args(["rules", "check", str(good)])
    assert args.handler(args) == 0
    assert "OK" in capsys.readouterr().out

    data = _default()
    data["status"]["m3"]["rules"][0]["low_min"] = 12  # type: ignore[index]
    data["anomalies"]["extra"] = 1  # type: ignore[index]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    args = parser.parse_args(["rules", "check", str(bad)])
    assert args.handler(args) == 1
    err = capsys.readouterr().err
    assert "status.m3.rules[0].low_min:" in err
    assert "anomalies.extra: unknown key" in err
