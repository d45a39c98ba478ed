"""Webhook signature verification: Standard Webhooks, plus our legacy ``X-PS-Signature`` alias.

Pure functions over the raw request bytes and headers; the receiver decides what to answer.

Standard Webhooks (reference §3.4): headers ``webhook-id``, ``webhook-timestamp`` (unix seconds) and
``webhook-signature: v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{raw body}")>``; the header may
list several space-separated signatures (the sender signs with every active secret while rotating),
and we may hold several secrets (old and new) — any pair that matches is accepted. Secrets are
``whsec_<base64>``. A timestamp more than ``tolerance`` seconds from now, either way, is refused
(replay protection).

Legacy alias: ``X-PS-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>`` for simple modules; it
carries no timestamp, so it has no replay protection — accept it only where that is acceptable.

All comparisons are constant-time (``hmac.compare_digest``) and every candidate is checked, so the
time taken does not reveal which secret or signature came close.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from enum import StrEnum

from pydantic import SecretStr

DEFAULT_TOLERANCE_SECONDS = 300
SECRET_PREFIX = "whsec_"  # noqa: S105  (the format marker, not a secret)
SIGNATURE_VERSION = "v1"
LEGACY_HEADER = "x-ps-signature"
LEGACY_PREFIX = "sha256="


class Rejection(StrEnum):
    """Why a webhook was refused (a bounded code for metrics and the 401 body)."""

    MISSING_HEADERS = "missing_signature_headers"
    BAD_TIMESTAMP = "malformed_timestamp"
    TIMESTAMP_OUT_OF_TOLERANCE = "timestamp_out_of_tolerance"
    MALFORMED_SIGNATURE = "malformed_signature"
    SIGNATURE_MISMATCH = "signature_mismatch"


class SignatureRejectedError(Exception):
    """The request is not signed by a holder of one of our secrets (or is too old)."""

    def __init__(self, reason: Rejection, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def decode_secret(secret: str | SecretStr) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret; raises ValueError when it is not one."""
    text = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    if not text.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret starts with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(text[len(SECRET_PREFIX) :], validate=True)
    except binascii.Error as exc:
        raise ValueError("a webhook secret is whsec_ followed by base64") from exc
    if not key:
        raise ValueError("a webhook secret must not be empty")
    return key


def _standard_digest(key: bytes, msg_id: str, timestamp: str, body: bytes) -> bytes:
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    return hmac.new(key, signed, hashlib.sha256).digest()


def sign(secret: str | SecretStr, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value (``v1,<base64>``) a sender holding ``secret`` would send."""
    digest = _standard_digest(decode_secret(secret), msg_id, str(timestamp), body)
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def sign_legacy(secret: str | SecretStr, body: bytes) -> str:
    """The ``X-PS-Signature`` value (``sha256=<hex>``) for ``body``."""
    return LEGACY_PREFIX + hmac.new(decode_secret(secret), body, hashlib.sha256).hexdigest()


def _any_match(candidates: Sequence[bytes], expected: Sequence[bytes]) -> bool:
    # No early exit: every pair is compared so timing does not depend on which one matched.
    matched = False
    for candidate in candidates:
        for digest in expected:
            matched |= hmac.compare_digest(candidate, digest)
    return matched


def verify(
    *,
    secrets: Sequence[str | SecretStr],
    msg_id: str,
    timestamp: str,
    signature_header: str,
    body: bytes,
    now: float,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
) -> None:
    """Return if ``signature_header`` holds a valid v1 signature of ``body`` by one of ``secrets``.

    Raises :class:`SignatureRejectedError` otherwise; ``now`` is the receiver's unix time.
    """
    if not secrets:
        raise ValueError("at least one webhook secret is needed")
    if not msg_id or not timestamp or not signature_header:
        raise SignatureRejectedError(
            Rejection.MISSING_HEADERS, "webhook-id, -timestamp and -signature needed"
        )
    try:
        sent_at = int(timestamp.strip())
    except ValueError:
        raise SignatureRejectedError(
            Rejection.BAD_TIMESTAMP, "webhook-timestamp is not unix seconds"
        ) from None
    if abs(now - sent_at) > tolerance:
        raise SignatureRejectedError(
            Rejection.TIMESTAMP_OUT_OF_TOLERANCE, f"webhook-timestamp is more than {tolerance:g} s from now"
        )
    candidates: list[bytes] = []
    for token in signature_header.split():
        version, _, encoded = token.partition(",")
        if version != SIGNATURE_VERSION:
            continue  # other schemes (e.g. v1a asymmetric) may be listed; we only speak v1
        try:
            candidates.append(base64.b64decode(encoded, validate=True))
        except binascii.Error:
            continue
    if not candidates:
        raise SignatureRejectedError(Rejection.MALFORMED_SIGNATURE, "no v1,<base64> signature in the header")
    expected = [_standard_digest(decode_secret(s), msg_id, timestamp.strip(), body) for s in secrets]
    if not _any_match(candidates, expected):
        raise SignatureRejectedError(Rejection.SIGNATURE_MISMATCH, "no signature matches any secret")


def verify_legacy(*, secrets: Sequence[str | SecretStr], signature_header: str, body: bytes) -> None:
    """Return if ``signature_header`` is ``sha256=<hex>`` of ``body`` under one of ``secrets``."""
    if not secrets:
        raise ValueError("at least one webhook secret is needed")
    text = signature_header.strip()
    if not text.lower().startswith(LEGACY_PREFIX):
        raise SignatureRejectedError(Rejection.MALFORMED_SIGNATURE, "X-PS-Signature is sha256=<hex>")
    try:
        candidate = bytes.fromhex(text[len(LEGACY_PREFIX) :])
    except ValueError:
        raise SignatureRejectedError(Rejection.MALFORMED_SIGNATURE, "X-PS-Signature is not hex") from None
    expected = [hmac.new(decode_secret(s), body, hashlib.sha256).digest() for s in secrets]
    if not _any_match([candidate], expected):
        raise SignatureRejectedError(Rejection.SIGNATURE_MISMATCH, "no signature matches any secret")


def verify_request(
    headers: Mapping[str, str],
    body: bytes,
    *,
    secrets: Sequence[str | SecretStr],
    now: float,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    accept_legacy: bool = True,
) -> None:
    """Verify a request by its headers: Standard Webhooks when ``webhook-signature`` is present,
    else the legacy ``X-PS-Signature`` (when ``accept_legacy``). Header names are case-insensitive.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    if "webhook-signature" in lowered or not accept_legacy or LEGACY_HEADER not in lowered:
        verify(
            secrets=secrets,
            msg_id=lowered.get("webhook-id", ""),
            timestamp=lowered.get("webhook-timestamp", ""),
            signature_header=lowered.get("webhook-signature", ""),
            body=body,
            now=now,
            tolerance=tolerance,
        )
        return
    verify_legacy(secrets=secrets, signature_header=lowered[LEGACY_HEADER], body=body)
