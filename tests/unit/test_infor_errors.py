"""The one Infor error-mapping table (``connectors.infor.errors.classify``), row by row."""

from __future__ import annotations

import email.utils

import httpx
import pytest

from connectors.infor.errors import (
    AmbiguousWriteError,
    InforAuthError,
    InforEndpointError,
    MiBusinessError,
    MiError,
    classify,
    parse_retry_after,
)
from pipeline.errors import ConfigError, InvalidMessage, PipelineError, RetryableError

REQUEST = httpx.Request("GET", "https://gw.example.test/T/M3/m3api-rest/v2/execute/OIS100MI/GetHead")


def response(status: int, **headers: str) -> httpx.Response:
    return httpx.Response(status, headers=headers, text='{"error":"x"}', request=REQUEST)


@pytest.mark.parametrize(
    ("status", "idempotent", "expected"),
    [
        (400, True, InvalidMessage),
        (401, True, InforAuthError),
        (403, True, InforAuthError),
        (404, True, InforEndpointError),
        (405, True, InforEndpointError),
        (412, True, InforEndpointError),
        (409, True, InvalidMessage),
        (429, True, RetryableError),
        (429, False, RetryableError),
        (500, True, RetryableError),
        (502, True, RetryableError),
        (503, True, RetryableError),
        (504, True, RetryableError),
        (502, False, AmbiguousWriteError),
        (503, False, AmbiguousWriteError),
        (504, False, AmbiguousWriteError),
    ],
)
def test_status_table(status: int, idempotent: bool, expected: type[PipelineError]) -> None:
    error = classify(
        response(status), operation="OIS100MI.Confirm", idempotent=idempotent, reference="0000004711"
    )
    assert type(error) is expected or (expected is RetryableError and type(error) is RetryableError)
    if isinstance(error, RetryableError):
        assert error.status == status
    if isinstance(error, AmbiguousWriteError):
        assert error.reference == "0000004711"


def test_auth_and_endpoint_errors_are_configuration_so_the_stage_stops() -> None:
    assert issubclass(InforAuthError, ConfigError)
    assert issubclass(InforEndpointError, ConfigError)
    assert "fromLogicalId" in str(classify(response(403), operation="IMS.v3"))


def test_401_before_any_refresh_is_retryable() -> None:
    error = classify(response(401), operation="x", after_refresh=False)
    assert type(error) is RetryableError


@pytest.mark.parametrize(
    ("error_type", "reason"),
    [
        ("ServerReturnedNOK", "m3_nok"),
        ("MandatoryInputFieldNotFound", "m3_mandatory_field_missing"),
        ("InputFieldTooLong", "m3_field_too_long"),
        ("SomethingNew", "m3_error"),
    ],
)
def test_mi_business_errors_are_invalid_messages_with_the_quartet(error_type: str, reason: str) -> None:
    error = classify(
        MiError(error_type, "WIT0103", "ITNO", "Item number does not exist", "OIS100MI", "AddBatchLine"),
        operation="OIS100MI.AddBatchLine",
    )
    assert isinstance(error, MiBusinessError)
    assert isinstance(error, InvalidMessage)
    assert error.reason == reason
    assert error.field_path == "ITNO"
    assert error.details["errorType"] == error_type
    assert error.details["errorCode"] == "WIT0103"
    assert error.details["errorMessage"] == "Item number does not exist"
    assert "OIS100MI.AddBatchLine" in str(error)


def test_transport_errors() -> None:
    timeout = httpx.ReadTimeout("t", request=REQUEST)
    assert type(classify(timeout, operation="x")) is RetryableError
    assert isinstance(classify(timeout, operation="x", idempotent=False), AmbiguousWriteError)
    connect = httpx.ConnectError("c", request=REQUEST)
    assert type(classify(connect, operation="x", idempotent=False)) is RetryableError


def test_retry_after_forms() -> None:
    assert parse_retry_after("30") == 30
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-5") == 0
    date = email.utils.formatdate(1_000_060, usegmt=True)
    assert parse_retry_after(date, clock=lambda: 1_000_000) == pytest.approx(60)
    error = classify(response(429, **{"Retry-After": date}), operation="x", clock=lambda: 1_000_000)
    assert isinstance(error, RetryableError)
    assert error.retry_after == pytest.approx(60)
