"""The preview registry: flows register a function, the CLI prints the record or says why not."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.rules import register
from pipeline.errors import InvalidMessage
from rules.engine import Rules, load_rules
from rules.preview import UnknownFlowError, preview, register_flow, registered_flows, unregister_flow


def _echo(raw: bytes, rules: Rules) -> dict[str, Any]:
    data = json.loads(raw)
    if "total" not in data:
        raise InvalidMessage("missing_field", "total is missing", field_path="total")
    return {"total": data["total"], "base_currency": rules.currency.base_currency}


@pytest.fixture
def echo_flow() -> Iterator[str]:
    name = "test_echo_flow"
    register_flow(name, _echo)
    yield name
    unregister_flow(name)


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="psinfor")
    register(parser.add_subparsers())
    args = parser.parse_args(argv)
    result: int = args.handler(args)
    return result


def test_preview_prints_the_record_a_payload_becomes(
    echo_flow: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = tmp_path / "order.json"
    raw.write_text('{"total": "65.88"}', encoding="utf-8")
    assert _run(["rules", "preview", "--input", str(raw), "--flow", echo_flow]) == 0
    assert json.loads(capsys.readouterr().out) == {"total": "65.88", "base_currency": "EUR"}


def test_a_rejected_payload_prints_the_reason_and_path(
    echo_flow: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = tmp_path / "order.json"
    raw.write_text("{}", encoding="utf-8")
    assert _run(["rules", "preview", "--input", str(raw), "--flow", echo_flow]) == 1
    assert "missing_field at total" in capsys.readouterr().err


def test_an_unknown_flow_is_named_with_the_registered_ones(
    echo_flow: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = tmp_path / "order.json"
    raw.write_text("{}", encoding="utf-8")
    assert _run(["rules", "preview", "--input", str(raw), "--flow", "nope"]) == 2
    err = capsys.readouterr().err
    assert "no flow 'nope'" in err
    assert echo_flow in err


def test_the_registry_refuses_a_second_function_under_one_name(echo_flow: str) -> None:
    assert echo_flow in registered_flows()
    register_flow(echo_flow, _echo)  # the same function again is harmless (module re-import)
    with pytest.raises(ValueError, match="already registered"):
        register_flow(echo_flow, lambda raw, rules: {})


def test_with_nothing_registered_preview_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    # Flows registered by processors/ (if imported in this session) are hidden for this test only.
    monkeypatch.setattr("rules.preview._FLOWS", {})
    with pytest.raises(UnknownFlowError, match="no flow is registered"):
        preview(b"{}", load_rules())
