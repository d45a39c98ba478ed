"""Standard Webhooks verification vectors and the legacy X-PS-Signature alias."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from pydantic import SecretStr

from connectors.prestashop import webhook_signature as ws
from connectors.prestashop.webhook_signature import Rejection, SignatureRejectedError

SECRET = "whsec_" + base64.b64encode(b"first-secret-bytes-0123456789abc").decode()
NEW_SECRET = "whsec_" + base64.b64encode(b"second-secret-bytes-0123456789ab").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"somebody-else-entirely-987654321").decode()
MSG_ID = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
NOW = 1_714_551_753
BODY = (
    b'{"id":"msg_2KWPBgLlAfxdpx2AI54pPJ85f4W","type":"order.status_changed",'
    b'"resource":{"type":"orders","id":42}}'
)


def _independent_signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks recipe written out here, so sign() is checked, not trusted."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _headers(signature: str, timestamp: int = NOW) -> dict[str, str]:
    return {"Webhook-Id": MSG_ID, "Webhook-Timestamp": str(timestamp), "Webhook-Signature": signature}


def test_sign_follows_the_standard_recipe() -> None:
    assert ws.sign(SECRET, MSG_ID, NOW, BODY) == _independent_signature(SECRET, MSG_ID, NOW, BODY)


def test_valid_signature_is_accepted() -> None:
    signature = _independent_signature(SECRET, MSG_ID, NOW, BODY)
    ws.verify_request(_headers(signature), BODY, secrets=[SecretStr(SECRET)], now=NOW + 10)


def test_wrong_secret_is_refused() -> None:
    signature = _independent_signature(OTHER_SECRET, MSG_ID, NOW, BODY)
    with pytest.raises(SignatureRejectedError) as caught:
        ws.verify_request(_headers(signature), BODY, secrets=[SECRET], now=NOW)
    assert caught.value.reason is Rejection.SIGNATURE_MISMATCH


def test_tampered_body_is_refused() -> None:
    signature = _independent_signature(SECRET, MSG_ID, NOW, BODY)
    tampered = BODY.replace(b'"id":42', b'"id":43')
    assert tampered != BODY
    with pytest.raises(SignatureRejectedError) as caught:
        ws.verify_request(_headers(signature), tampered, secrets=[SECRET], now=NOW)
    assert caught.value.reason is Rejection.SIGNATURE_MISMATCH


def test_tampered_id_is_refused() -> None:
    signature = _independent_signature(SECRET, MSG_ID, NOW, BODY)
    headers = _headers(signature) | {"Webhook-Id": "msg_other"}
    with pytest.raises(SignatureRejectedError):
        ws.verify_request(headers, BODY, secrets=[SECRET], now=NOW)


@pytest.mark.parametrize("skew", [-301, 301, 3600])
def test_timestamp_beyond_tolerance_is_refused_both_ways(skew: int) -> None:
    signature = _independent_signature(SECRET, MSG_ID, NOW, BODY)
    with pytest.raises(SignatureRejectedError) as caught:
        ws.verify_request(_headers(signature), BODY, secrets=[SECRET], now=NOW + skew)
    assert caught.value.reason is Rejection.TIMESTAMP_OUT_OF_TOLERANCE


def test_timestamp_at_the_tolerance_edge_is_accepted() -> None:
    signature = _independent_signature(SECRET, MSG_ID, NOW, BODY)
    ws.verify_request(_headers(signature), BODY, secrets=[SECRET], now=NOW + 300)


def test_rotation_sender_lists_two_signatures_receiver_knows_only_the_new_secret() -> None:
    header = " ".join(
        [
            _independent_signature(SECRET, MSG_ID, NOW, BODY),
            _independent_signature(NEW_SECRET, MSG_ID, NOW, BODY),
        ]
    )
    ws.verify_request(_headers(header), BODY, secrets=[NEW_SECRET], now=NOW)


def test_rotation_receiver_holds_old_and_new_secret() -> None:
    signature = _independent_signature(SECRET, MSG_ID, NOW, BODY)
    ws.verify_request(_headers(signature), BODY, secrets=[NEW_SECRET, SECRET], now=NOW)
    with pytest.raises(SignatureRejectedError):
        ws.verify_request(_headers(signature), BODY, secrets=[NEW_SECRET], now=NOW)


def test_unknown_schemes_and_garbage_in_the_header_are_skipped() -> None:
    header = "v1a,c29tZXRoaW5n v1,!!notbase64!! " + _independent_signature(SECRET, MSG_ID, NOW, BODY)
    ws.verify_request(_headers(header), BODY, secrets=[SECRET], now=NOW)
    with pytest.raises(SignatureRejectedError) as caught:
        ws.verify_request(_headers("v1a,c29tZXRoaW5n"), BODY, secrets=[SECRET], now=NOW)
    assert caught.value.reason is Rejection.MALFORMED_SIGNATURE


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"webhook-signature": "v1,abc"}, Rejection.MISSING_HEADERS),
        (
            {"webhook-id": MSG_ID, "webhook-timestamp": "soon", "webhook-signature": "v1,x"},
            Rejection.BAD_TIMESTAMP,
        ),
        ({}, Rejection.MISSING_HEADERS),
    ],
)
def test_missing_or_malformed_headers(headers: dict[str, str], reason: Rejection) -> None:
    with pytest.raises(SignatureRejectedError) as caught:
        ws.verify_request(headers, BODY, secrets=[SECRET], now=NOW)
    assert caught.value.reason is reason


def test_legacy_alias_valid_and_invalid() -> None:
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    header = "sha256=" + hmac.new(key, BODY, hashlib.sha256).hexdigest()
    assert ws.sign_legacy(SECRET, BODY) == header
    ws.verify_request({"X-PS-Signature": header}, BODY, secrets=[SECRET], now=NOW)
    with pytest.raises(SignatureRejectedError) as caught:
        ws.verify_request({"X-PS-Signature": header}, BODY + b" ", secrets=[SECRET], now=NOW)
    assert caught.value.reason is Rejection.SIGNATURE_MISMATCH
    with pytest.raises(SignatureRejectedError) as malformed:
        ws.verify_request({"X-PS-Signature": "md5=abc"}, BODY, secrets=[SECRET], now=NOW)
    assert malformed.value.reason is Rejection.MALFORMED_SIGNATURE


def test_legacy_alias_can_be_switched_off() -> None:
    header = ws.sign_legacy(SECRET, BODY)
    with pytest.raises(SignatureRejectedError) as caught:
        ws.verify_request({"X-PS-Signature": header}, BODY, secrets=[SECRET], now=NOW, accept_legacy=False)
    assert caught.value.reason is Rejection.MISSING_HEADERS


@pytest.mark.parametrize("secret", ["not-prefixed", "whsec_", "whsec_***"])
def test_malformed_secrets_are_a_configuration_error(secret: str) -> None:
    with pytest.raises(ValueError, match="secret"):
        ws.decode_secret(secret)
