"""Status and transport failures become the pipeline's errors, classified in one place."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
from pydantic import SecretStr

from connectors.prestashop.client import PrestaShopClient
from connectors.prestashop.models import Order
from connectors.prestashop.transport import DuplicateEmailError, PrestaShopProtocolError, parse_retry_after
from pipeline.errors import InvalidMessage, RetryableError

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]

KEY = SecretStr("ABCDEFGHIJKLMNOPQRSTUVWXYZ012345")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _errors(*pairs: tuple[int, str]) -> bytes:
    return json.dumps({"errors": [{"code": c, "message": m} for c, m in pairs]}).encode()


def _client(handler: Callable[[httpx.Request], httpx.Response]) -> PrestaShopClient:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return PrestaShopClient(http, "https://shop.test", KEY, language_id=1)


def _answer(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> PrestaShopClient:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers={"PSWS-Version": "8.1.7", **(headers or {})})

    return _client(handler)


@pytest.mark.parametrize(
    ("status", "body", "reason", "code"),
    [
        (
            400,
            _errors((93, 'parameter "secure_key" not writable. Please remove this attribute')),
            "prestashop_rejected",
            "93",
        ),
        (400, _errors((32, 'This filter does not exist. Did you mean: "id"?')), "prestashop_rejected", "32"),
        (401, b"401 Unauthorized", "prestashop_auth", ""),
        (
            401,
            _errors((26, 'Resource of type "orders" is not allowed with this authentication key')),
            "prestashop_auth",
            "26",
        ),
        (403, _errors((132, "No permission for this key on this shop")), "prestashop_auth", "132"),
        (404, b"", "prestashop_not_found", ""),
        (405, _errors((23, "Method PATCH is not valid")), "prestashop_method_not_allowed", "23"),
        (
            500,
            _errors((133, "You cannot update the available stock when it depends on stock.")),
            "prestashop_rejected",
            "133",
        ),
        (501, _errors((124, "specific management missing")), "prestashop_unsupported", "124"),
    ],
)
async def test_statuses_that_blame_the_request_are_invalid_messages(
    status: int, body: bytes, reason: str, code: str
) -> None:
    client = _answer(status, body)
    with pytest.raises(InvalidMessage) as caught:
        await client.get(Order, 42)
    error = caught.value
    assert error.reason == reason
    assert error.details["http_status"] == str(status)
    assert error.details["prestashop_codes"] == code
    assert error.details["request"] == "GET /api/orders/42"
    assert "ABCDEFGH" not in str(error.details)  # the key never leaks into a DLQ header


async def test_xml_error_documents_are_read_too() -> None:
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<prestashop xmlns:xlink="http://www.w3.org/1999/xlink">\n'
        b"<errors>\n<error>\n<code><![CDATA[41]]></code>\n"
        b'<message><![CDATA[parameter "id_order_state" required]]></message>\n'
        b"</error>\n</errors>\n</prestashop>"
    )
    with pytest.raises(InvalidMessage) as caught:
        await _answer(400, body).get(Order, 1)
    assert caught.value.details["prestashop_codes"] == "41"
    assert caught.value.details["prestashop_message"] == 'parameter "id_order_state" required'


@pytest.mark.parametrize(
    ("status", "headers", "retry_after"),
    [
        (429, {"Retry-After": "7"}, 7.0),
        (500, {}, None),
        (502, {}, None),
        (503, {"Retry-After": "120"}, 120.0),
        (504, {}, None),
        (408, {}, None),
    ],
)
async def test_transient_statuses_are_retryable_with_retry_after(
    status: int, headers: dict[str, str], retry_after: float | None
) -> None:
    with pytest.raises(RetryableError) as caught:
        await _answer(status, _errors((22, "The PrestaShop webservice is disabled")), headers).get(Order, 1)
    assert caught.value.status == status
    assert caught.value.retry_after == retry_after


def test_retry_after_as_http_date() -> None:
    from datetime import UTC, datetime

    now = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Wed, 01 May 2024 10:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("garbage") is None


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError("connection refused"),
        httpx.ReadTimeout("read timed out"),
        httpx.RemoteProtocolError("server disconnected without sending a response"),
    ],
)
async def test_transport_failures_are_retryable(failure: httpx.HTTPError) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise failure

    with pytest.raises(RetryableError) as caught:
        await _client(handler).get(Order, 1)
    assert caught.value.__cause__ is failure


async def test_xml_parse_error_is_our_bug_not_the_messages_fault() -> None:
    body = _errors((127, "XML error : String could not be parsed as XML\nXML length : 7\nOriginal XML : {}"))
    with pytest.raises(PrestaShopProtocolError) as caught:
        await _answer(500, body).create_customer({"lastname": "Doe"})
    assert not isinstance(caught.value, InvalidMessage | RetryableError)


async def test_duplicate_email_is_classified_so_the_caller_can_link() -> None:
    body = _errors(
        (140, "The email is already used, please choose another one"), (46, "Unable to save resource")
    )
    with pytest.raises(DuplicateEmailError) as caught:
        await _answer(500, body).create_customer(
            {"email": "a@b.test", "firstname": "A", "lastname": "B", "passwd": "secret123"}
        )
    assert isinstance(caught.value, InvalidMessage)
    assert caught.value.reason == "prestashop_duplicate_email"
    assert caught.value.details["prestashop_codes"] == "140,46"


async def test_a_2xx_body_the_shop_never_sends_is_retryable() -> None:
    with pytest.raises(RetryableError, match="unexpected body"):
        await _answer(200, b"<html>maintenance</html>").get(Order, 1)
