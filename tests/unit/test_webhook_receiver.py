"""The webhook receiver's pure decision: routing, key, headers, and every refusal with its status."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from pydantic import SecretStr

from connectors.prestashop.webhook_signature import sign, sign_legacy
from ingest.prestashop_webhooks.receiver import (
    RECORD_HEADERS,
    Entity,
    Refusal,
    WebhookReceiver,
    new_correlation_id,
    raw_topics,
    received_at_text,
)
from schemas.catalogue import load_catalogue

OLD = "whsec_" + base64.b64encode(b"old-secret-0123456789").decode()
NEW = "whsec_" + base64.b64encode(b"new-secret-0123456789").decode()
NOW = 1_714_551_753.25
TOPICS = {entity: f"t.{entity.value}" for entity in Entity}


def _receiver(*, legacy: bool = False, max_body: int = 4096) -> WebhookReceiver:
    return WebhookReceiver(
        secrets=[SecretStr(OLD), SecretStr(NEW)],
        shop_keys={"shop1": 1, "shop2": 2},
        topics=TOPICS,
        max_body_bytes=max_body,
        tolerance_s=300,
        accept_legacy=legacy,
    )


def _event(resource: str = "orders", rid: object = 42, type_: str = "order.status_changed") -> bytes:
    return json.dumps({"id": "x", "type": type_, "resource": {"type": resource, "id": rid}}).encode()


def _signed(
    body: bytes, *, secret: str = NEW, ts: float = NOW, webhook_id: str | None = None
) -> dict[str, str]:
    webhook_id = webhook_id or str(uuid.uuid4())
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(ts)),
        "webhook-signature": sign(secret, webhook_id, int(ts), body),
    }


@pytest.mark.parametrize(
    ("resource", "entity"),
    [
        ("orders", Entity.ORDERS),
        ("order_carriers", Entity.ORDERS),
        ("order_histories", Entity.ORDERS),
        ("customers", Entity.CUSTOMERS),
        ("addresses", Entity.CUSTOMERS),
        ("products", Entity.PRODUCTS),
        ("combinations", Entity.PRODUCTS),
        ("stock_availables", Entity.STOCK),
    ],
)
def test_accepted_event_is_routed_keyed_and_kept_byte_for_byte(resource: str, entity: Entity) -> None:
    body = b'{"type": "x.updated",  "resource": {"type": "' + resource.encode() + b'", "id": 7}, "z": 1}'
    headers = _signed(body, webhook_id="wh-1")

    record = _receiver().decide("shop2", headers, body, NOW)

    assert record.topic == TOPICS[entity]
    assert record.entity is entity
    assert record.key == f"2:{resource}:7".encode()  # shop2 is shop id 2: keyed as the poller keys
    assert record.value is body
    assert record.webhook_id == "wh-1"
    assert record.event_type == "x.updated"


def test_record_headers_carry_the_provenance() -> None:
    body = _event()
    headers = {**_signed(body, webhook_id="wh-9"), "content-type": "application/json; charset=utf-8"}
    headers["x-correlation-id"] = "corr-123"

    record = _receiver().decide("shop1", headers, body, NOW)

    assert [name for name, _ in record.headers] == list(RECORD_HEADERS)
    assert dict(record.headers) == {
        "source": b"prestashop-webhook",
        "event_type": b"order.status_changed",
        "webhook_id": b"wh-9",
        "received_at": b"2024-05-01T08:22:33.250Z",
        "content_type": b"application/json; charset=utf-8",
        "correlation_id": b"corr-123",
        "shop_key": b"shop1",
        "shop_id": b"1",
    }


def test_a_new_uuid_is_the_correlation_id_unless_the_sender_gave_a_sane_one() -> None:
    body = _event()
    first = _receiver().decide("shop1", _signed(body), body, NOW)
    odd = {**_signed(body), "x-correlation-id": "has space"}
    second = _receiver().decide("shop1", odd, body, NOW)
    assert str(uuid.UUID(first.correlation_id)) == first.correlation_id
    assert str(uuid.UUID(second.correlation_id)) == second.correlation_id
    assert first.correlation_id != second.correlation_id


def test_either_secret_of_a_rotation_is_accepted() -> None:
    body = _event()
    for secret in (OLD, NEW):
        assert _receiver().decide("shop1", _signed(body, secret=secret), body, NOW).topic == "t.orders"


def test_ps_webhooks_body_is_routed_by_its_entity() -> None:
    body = json.dumps(
        {"action": "update", "entity": "StockAvailable", "data": {"id": 31, "quantity": 4}}
    ).encode()
    record = _receiver().decide("shop1", _signed(body), body, NOW)
    assert (record.topic, record.key, record.event_type) == (
        "t.stock",
        b"1:stock_availables:31",
        "stock_availables.update",
    )


def test_legacy_signature_only_when_enabled() -> None:
    body = _event()
    headers = {"content-type": "application/json", "x-ps-signature": sign_legacy(OLD, body)}
    record = _receiver(legacy=True).decide("shop1", headers, body, NOW)
    assert record.webhook_id is None
    assert "webhook_id" not in dict(record.headers)
    with pytest.raises(Refusal) as refused:
        _receiver(legacy=False).decide("shop1", headers, body, NOW)
    assert (refused.value.status, refused.value.reason) == (401, "missing_signature_headers")


WRONG = "whsec_" + base64.b64encode(b"not-our-secret-12345").decode()


@pytest.mark.parametrize(
    ("case", "status", "reason"),
    [
        ("unknown shop", 401, "unknown_shop"),
        ("wrong secret", 401, "signature_mismatch"),
        ("tampered body", 401, "signature_mismatch"),
        ("stale timestamp", 401, "timestamp_out_of_tolerance"),
        ("no signature", 401, "missing_signature_headers"),
        ("text/plain", 415, "unsupported_media_type"),
        ("too large", 413, "payload_too_large"),
        ("not json", 400, "malformed_json"),
        ("json array", 400, "invalid_event"),
        ("no type", 400, "invalid_event"),
        ("no resource", 400, "invalid_event"),
        ("no resource id", 400, "invalid_event"),
        ("negative id", 400, "invalid_event"),
        ("boolean id", 400, "invalid_event"),
        ("unknown resource", 400, "unknown_resource"),
    ],
)
def test_refusals_name_status_reason_and_what_to_do(case: str, status: int, reason: str) -> None:
    shop, body, headers_secret, ts = "shop1", _event(), NEW, NOW
    signed_body: bytes | None = None
    if case == "unknown shop":
        shop = "shop9"
    elif case == "wrong secret":
        headers_secret = WRONG
    elif case == "tampered body":
        signed_body, body = body, body.replace(b"42", b"43")
    elif case == "stale timestamp":
        ts = NOW - 301
    elif case == "too large":
        body = _event(type_="x" * 5000)
    elif case == "not json":
        body = b"{not json"
    elif case == "json array":
        body = b"[1, 2]"
    elif case == "no type":
        body = b'{"resource": {"type": "orders", "id": 1}}'
    elif case == "no resource":
        body = b'{"type": "order.created"}'
    elif case == "no resource id":
        body = b'{"type": "order.created", "resource": {"type": "orders"}}'
    elif case == "negative id":
        body = _event(rid=-3)
    elif case == "boolean id":
        body = _event(rid=True)
    elif case == "unknown resource":
        body = _event(resource="carts")
    headers = _signed(signed_body or body, secret=headers_secret, ts=ts)
    if case == "no signature":
        del headers["webhook-signature"]
    if case == "text/plain":
        headers["content-type"] = "text/plain"

    with pytest.raises(Refusal) as refused:
        _receiver().decide(shop, headers, body, NOW)

    assert (refused.value.status, refused.value.reason) == (status, reason)
    answer = refused.value.body()
    assert answer["error"] == reason
    assert answer["message"]
    assert answer["hint"]


def test_declared_size_and_type_are_refused_before_the_body_is_read() -> None:
    receiver = _receiver(max_body=4096)
    receiver.check_declared("application/json", "4096")
    receiver.check_declared("application/cloudevents+json", None)
    with pytest.raises(Refusal) as too_big:
        receiver.check_declared("application/json", "4097")
    assert too_big.value.status == 413
    with pytest.raises(Refusal) as no_type:
        receiver.check_declared(None, "10")
    assert no_type.value.status == 415


def test_raw_topics_come_from_the_catalogue_with_the_prefix() -> None:
    topics = raw_topics(load_catalogue(), "staging.")
    assert topics == {
        Entity.ORDERS: "staging.raw.prestashop.orders",
        Entity.CUSTOMERS: "staging.raw.prestashop.customers",
        Entity.PRODUCTS: "staging.raw.prestashop.products",
        Entity.STOCK: "staging.raw.prestashop.stock",
    }


def test_received_at_is_utc_with_milliseconds() -> None:
    assert received_at_text(0.5) == "1970-01-01T00:00:00.500Z"


@pytest.mark.parametrize(
    "body",
    [
        b'{"type": "order.updated", "resource": {"type": "orders", "id": 99999999999999999999}}',
        b'{"type": "order.updated", "resource": {"type": "orders", "id": 5}, "data": {"total": NaN}}',
        b'{"type": "order.updated", "resource": {"type": "orders", "id": 5}, "data": {"note": "\\ud800"}}',
    ],
)
def test_what_the_standard_json_parser_accepts_is_accepted(body: bytes) -> None:
    # The fast parser turns integers beyond 64 bits into floats and refuses NaN and lone surrogate
    # escapes; the receiver must not be stricter than json.loads about the bodies it stores unchanged.
    record = _receiver().decide("shop1", _signed(body), body, NOW)
    assert record.value is body
    assert record.key.startswith(b"1:orders:")


def test_generated_correlation_ids_are_distinct_version_4_uuids() -> None:
    ids = {new_correlation_id() for _ in range(1000)}
    assert len(ids) == 1000
    for text in ids:
        parsed = uuid.UUID(text)
        assert (str(parsed), parsed.version, parsed.variant) == (text, 4, uuid.RFC_4122)


def test_shop_keys_map_to_numeric_shop_ids_so_both_ingest_paths_key_alike() -> None:
    from pydantic import SecretStr, ValidationError

    from pipeline.settings import WebhookReceiverSettings

    settings = WebhookReceiverSettings(secrets=SecretStr(NEW), shop_keys="eu-shop=3, us-shop")
    assert settings.shop_ids(default_shop_id=7) == {"eu-shop": 3, "us-shop": 7}
    with pytest.raises(ValidationError, match="not a shop key"):
        WebhookReceiverSettings(secrets=SecretStr(NEW), shop_keys="eu-shop=0")
