"""Structured logging: JSON lines, correlation ids, extras, levels, and secrets that never get out."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from pipeline.log import (
    NOISY_LOGGERS,
    SecretMasker,
    configure_logging,
    correlation_scope,
    current_correlation_id,
)
from pipeline.settings import ServiceSettings

pytestmark = pytest.mark.timeout(10)

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state: put it back after each test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    noisy = {name: logging.getLogger(name).level for name in NOISY_LOGGERS}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, noisy_level in noisy.items():
        logging.getLogger(name).setLevel(noisy_level)


def json_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    err = capsys.readouterr().err
    return [json.loads(line) for line in err.splitlines()]


def test_json_line_has_the_contract_fields(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(ServiceSettings(), stage="sink-infor")

    logging.getLogger("sinks.infor_orders").info("created %s", "SO-1", extra={"order": "X1", "attempt": 2})

    [entry] = json_lines(capsys)
    assert ISO_UTC.match(entry["ts"]), entry["ts"]
    assert entry["level"] == "INFO"
    assert entry["logger"] == "sinks.infor_orders"
    assert entry["message"] == "created SO-1"
    assert entry["stage"] == "sink-infor"
    assert entry["correlation_id"] is None
    assert entry["order"] == "X1"
    assert entry["attempt"] == 2


def test_correlation_id_comes_from_the_scope(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(ServiceSettings(), stage="process")
    log = logging.getLogger("processors.test")

    with correlation_scope("corr-1"):
        log.info("inside")
        with correlation_scope("corr-2"):
            log.info("nested")
        log.info("back")
    log.info("outside")

    assert [entry["correlation_id"] for entry in json_lines(capsys)] == ["corr-1", "corr-2", "corr-1", None]
    assert current_correlation_id() is None


def test_an_explicit_correlation_id_wins(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(ServiceSettings(), stage="process")

    with correlation_scope("ambient"):
        logging.getLogger("x").warning("w", extra={"correlation_id": "explicit"})

    assert json_lines(capsys)[0]["correlation_id"] == "explicit"


def test_correlation_scopes_are_per_task() -> None:
    async def handle(correlation_id: str) -> str | None:
        with correlation_scope(correlation_id):
            await asyncio.sleep(0)
            return current_correlation_id()

    async def both() -> list[str | None]:
        return list(await asyncio.gather(handle("a"), handle("b")))

    assert asyncio.run(both()) == ["a", "b"]


def test_exceptions_are_logged_in_the_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(ServiceSettings(), stage="process")

    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("x").exception("failed")

    [entry] = json_lines(capsys)
    assert entry["level"] == "ERROR"
    assert "ValueError: boom" in entry["exc"]
    assert "Traceback" in entry["exc"]


def test_values_json_cannot_hold_are_written_as_text(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(ServiceSettings(), stage="process")

    logging.getLogger("x").info("odd", extra={"where": {1, 2}.__class__, "n": object.__name__})

    [entry] = json_lines(capsys)
    assert entry["where"] == "<class 'set'>"


def test_level_and_text_format(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(ServiceSettings(log_level="WARNING", log_format="text"), stage="ingest")
    log = logging.getLogger("ingest.webhooks")

    with correlation_scope("c9"):
        log.info("hidden")
        log.warning("shown", extra={"shop": 1})

    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert re.match(r"^\S+Z WARNING ingest\.webhooks \[ingest cid=c9\] shown shop=1$", lines[0]), lines[0]


def test_noisy_libraries_are_kept_at_warning(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(ServiceSettings(log_level="DEBUG"), stage="process")

    logging.getLogger("aiokafka.consumer").info("fetched 500 records")
    logging.getLogger("httpx").info("HTTP Request: GET ...")
    logging.getLogger("uvicorn.access").info("GET /healthz 200")
    logging.getLogger("aiokafka.consumer").warning("rebalancing")
    logging.getLogger("pipeline.runner").debug("ours at debug")

    messages = [entry["message"] for entry in json_lines(capsys)]
    assert messages == ["rebalancing", "ours at debug"]
    assert all(logging.getLogger(name).level == logging.WARNING for name in NOISY_LOGGERS)


def test_configuring_twice_does_not_log_twice(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(ServiceSettings(), stage="a")
    configure_logging(ServiceSettings(), stage="b")

    logging.getLogger("x").info("once")

    entries = json_lines(capsys)
    assert len(entries) == 1
    assert entries[0]["stage"] == "b"


# --- secrets -----------------------------------------------------------------------------------------


def test_known_secret_values_never_reach_the_output(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(ServiceSettings(), stage="sink", secrets=[SecretStr("hunter2"), "s3cr3t-token"])
    log = logging.getLogger("x")

    log.info("connecting with %s", "hunter2")
    log.info("fallback", extra={"detail": "auth s3cr3t-token failed", "pw": SecretStr("hunter2")})
    try:
        raise RuntimeError("login hunter2 refused")
    except RuntimeError:
        log.exception("failed")

    err = capsys.readouterr().err
    assert "hunter2" not in err
    assert "s3cr3t-token" not in err
    assert err.count("**********") >= 4


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        ("POST /token grant password=pa55word&user=x", "pa55word"),
        ('{"client_secret": "abc123xyz", "ok": 1}', "abc123xyz"),
        ("retry with token: tok-987", "tok-987"),
        ("Authorization: Bearer eyJhbGciOi.payload.sig", "eyJhbGciOi"),
        ("GET http://ws_key_user:K3YK3Y@shop.example/api/orders", "K3YK3Y"),
        ("GET /api/orders?ws_key=ABCDEF123&output_format=JSON", "ABCDEF123"),
        ("sasl_password=plain", "=plain"),
    ],
)
def test_credential_shaped_text_is_masked(text: str, leak: str) -> None:
    masked = SecretMasker().mask(text)

    assert leak not in masked
    assert "**********" in masked


def test_ordinary_text_is_left_alone() -> None:
    text = "order 42 shipped; tokens_per_second=5 password_reset_requested"
    assert SecretMasker().mask(text) == text


def test_a_secret_inside_another_is_masked_whole() -> None:
    assert SecretMasker(["abc", "abcdef"]).mask("x abcdef y") == "x ********** y"


def test_masking_happens_before_any_handler_formats(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(ServiceSettings(log_format="text"), stage="s", secrets=["hunter2"])

    logging.getLogger("x").error("dsn=%s", "postgres://u:hunter2@db/x")

    err = capsys.readouterr().err
    assert "hunter2" not in err
    assert "postgres://u:**********@db/x" in err
