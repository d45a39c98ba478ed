"""``psinfor config``: the real console script fails bad configuration with one line and exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from cli.main import main
from pipeline.settings import supported_variables

pytestmark = pytest.mark.timeout(30)

# The console script installed next to the interpreter running the tests (.venv/bin/psinfor).
PSINFOR = Path(sys.executable).with_name("psinfor")
BOOTSTRAP = "PSINFOR_KAFKA__BOOTSTRAP_SERVERS"


def run_psinfor(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed console script with only ``env`` as its PSINFOR_* configuration."""
    environ = {key: value for key, value in os.environ.items() if not key.upper().startswith("PSINFOR_")}
    environ.update(env or {})
    return subprocess.run(
        [str(PSINFOR), *args], env=environ, capture_output=True, text=True, timeout=20, check=False
    )


def assert_one_line_failure(result: subprocess.CompletedProcess[str], *names: str) -> str:
    assert result.returncode == 2, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for name in names:
        assert name in lines[0]
    return lines[0]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.upper().startswith("PSINFOR_"):
            monkeypatch.delenv(key)


# --- the console script, as an operator runs it -------------------------------------------------------


@pytest.mark.parametrize("action", ["check", "show"])
def test_missing_bootstrap_is_one_line_and_exit_2(action: str) -> None:
    line = assert_one_line_failure(run_psinfor("config", action), BOOTSTRAP)

    assert line == f"psinfor: configuration error: {BOOTSTRAP} is required but not set"


def test_unreadable_secret_file_names_the_file_variable(tmp_path: Path) -> None:
    env = {
        BOOTSTRAP: "127.0.0.1:9092",
        "PSINFOR_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "PSINFOR_KAFKA__SASL_MECHANISM": "PLAIN",
        "PSINFOR_KAFKA__SASL_USERNAME": "psinfor",
        "PSINFOR_KAFKA__SASL_PASSWORD_FILE": str(tmp_path / "not-mounted"),
    }

    line = assert_one_line_failure(
        run_psinfor("config", "check", env=env), "PSINFOR_KAFKA__SASL_PASSWORD_FILE"
    )

    assert "cannot read secret file" in line


def test_secret_file_without_read_permission_is_one_line(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("pw", encoding="utf-8")
    secret.chmod(0)
    if os.access(secret, os.R_OK):
        # root reads any file; a directory in its place is unreadable as a file for everyone.
        secret.unlink()
        secret.mkdir()
    env = {
        BOOTSTRAP: "127.0.0.1:9092",
        "PSINFOR_REGISTRY__URL": "http://127.0.0.1:8081",
        "PSINFOR_REGISTRY__BASIC_AUTH_USER": "u",
        "PSINFOR_REGISTRY__BASIC_AUTH_PASSWORD_FILE": str(secret),
    }

    assert_one_line_failure(
        run_psinfor("config", "check", env=env), "PSINFOR_REGISTRY__BASIC_AUTH_PASSWORD_FILE"
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PSINFOR_SERVICE__HTTP_PORT", "abc"),
        ("PSINFOR_DLQ__MAX_INVALID_RATIO", "2"),
        ("PSINFOR_KAFKA", "{not json"),
        ("PSINFOR_KAFKA__BOOTSTRAP_SERVER", "127.0.0.1:9092"),
    ],
)
def test_malformed_value_names_the_variable(variable: str, value: str) -> None:
    env = {BOOTSTRAP: "127.0.0.1:9092", variable: value}

    line = assert_one_line_failure(run_psinfor("config", "check", env=env), variable)

    assert line.startswith(f"psinfor: configuration error: {variable}")


def test_check_passes_on_good_configuration() -> None:
    result = run_psinfor("config", "check", env={BOOTSTRAP: "127.0.0.1:9092"})

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith("configuration OK")


# --- show and env, in process -------------------------------------------------------------------------


def test_show_prints_effective_settings_as_json_with_secrets_masked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(BOOTSTRAP, "b1:9092, b2:9092")
    monkeypatch.setenv("PSINFOR_REGISTRY__URL", "http://r:8081")
    monkeypatch.setenv("PSINFOR_REGISTRY__BASIC_AUTH_USER", "reg")
    monkeypatch.setenv("PSINFOR_REGISTRY__BASIC_AUTH_PASSWORD", "hunter2")
    monkeypatch.setenv("PSINFOR_SERVICE__HTTP_PORT", "9100")

    assert main(["config", "show"]) == 0

    out = capsys.readouterr().out
    assert "hunter2" not in out
    shown = json.loads(out)
    assert shown["kafka"]["bootstrap_servers"] == "b1:9092,b2:9092"
    assert shown["registry"]["basic_auth_password"] == "**********"
    assert shown["service"]["http_port"] == 9100
    assert shown["dlq"]["max_invalid_ratio"] == 0.5


def test_show_table_lists_every_setting_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(BOOTSTRAP, "b1:9092")
    monkeypatch.setenv("PSINFOR_KAFKA__SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("PSINFOR_KAFKA__SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("PSINFOR_KAFKA__SASL_USERNAME", "u")
    monkeypatch.setenv("PSINFOR_KAFKA__SASL_PASSWORD", "hunter2")

    assert main(["config", "show", "--format", "table"]) == 0

    lines = capsys.readouterr().out.splitlines()
    rows = dict([*line.split(maxsplit=1), ""][:2] for line in lines[1:])
    assert lines[0].split() == ["variable", "value"]
    assert rows[BOOTSTRAP] == "b1:9092"
    assert rows["PSINFOR_KAFKA__SASL_PASSWORD"] == "**********"
    assert rows["PSINFOR_KAFKA__SSL_CHECK_HOSTNAME"] == "true"
    assert rows["PSINFOR_REGISTRY__URL"] == ""
    settings_rows = [row.name for row in supported_variables() if not row.name.endswith("_FILE")]
    assert list(rows) == settings_rows


def test_env_lists_every_variable_with_default_and_description(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "env", "--format", "json"]) == 0

    listed = json.loads(capsys.readouterr().out)
    by_name = {row["name"]: row for row in listed}
    assert by_name[BOOTSTRAP]["default"] == "(required)"
    assert by_name["PSINFOR_SERVICE__LOG_FORMAT"]["default"] == "json"
    assert by_name["PSINFOR_KAFKA__SASL_PASSWORD_FILE"]["type"] == "path"
    assert all(row["description"] for row in listed)
    assert len(listed) == len(supported_variables())


def test_env_markdown_is_a_table_with_one_row_per_variable(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "env", "--format", "markdown"]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["| variable | type | default | description |", "|---|---|---|---|"]
    assert len(lines) == 2 + len(supported_variables())
    for line in lines[2:]:
        # Four cells each: escaped pipes inside a cell must not add columns.
        assert line.replace("\\|", "").count("|") == 5, line


def test_env_table_needs_no_configuration(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "env"]) == 0

    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["variable", "type", "default", "description"]
    assert BOOTSTRAP in out
