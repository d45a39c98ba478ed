"""The receiver's HTTP face without a network or broker: every answer's status, headers and JSON body,
the probes, the metrics and the OpenAPI document of the webhook route.

The producer is a stand-in implementing the app's ``AckingProducer`` protocol (the real producer's
contract is proven against the broker in tests/integration/test_webhook_receiver_producer.py).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient

from connectors.prestashop.webhook_signature import sign
from ingest.prestashop_webhooks.app import create_app
from ingest.prestashop_webhooks.dedupe import WebhookDeduper
from ingest.prestashop_webhooks.receiver import Entity, WebhookReceiver
from pipeline.errors import ProduceError, RetryableError
from pipeline.health import HealthState
from pipeline.producer import HeaderList

SECRET = "whsec_" + base64.b64encode(b"unit-app-secret-0123456789").decode()
TOPICS = {entity: f"t.{entity.value}" for entity in Entity}
MAX_BODY = 2048


class _Producer:
    """Acknowledges every record at the next offset of partition 3, or raises ``fail`` when set."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None, bytes | None, tuple[tuple[str, bytes], ...]]] = []
        self.fail: Exception | None = None
        self.hold: asyncio.Event | None = None

    async def produce_acked(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: HeaderList = (),
        ack_timeout_s: float = 10.0,
    ) -> tuple[int, int]:
        if self.hold is not None:
            await self.hold.wait()
        if self.fail is not None:
            raise self.fail
        self.records.append((topic, key, value, tuple(headers)))
        return 3, len(self.records) - 1

    def broker_reachable(self, timeout_s: float = 2.0) -> bool:
        return True


@pytest.fixture
def producer() -> _Producer:
    return _Producer()


@pytest.fixture(params=["asgi", "fastapi"])
def client(request: pytest.FixtureRequest, producer: _Producer) -> Iterator[TestClient]:
    """The served app ("asgi": the webhook route short-cuts FastAPI) or the FastAPI app alone, whose
    documented route runs the same handler: both must answer identically."""
    receiver = WebhookReceiver(
        secrets=[SecretStr(SECRET)],
        shop_keys={"shop1": 1},
        topics=TOPICS,
        max_body_bytes=MAX_BODY,
        tolerance_s=300,
        accept_legacy=False,
    )
    app = create_app(
        receiver,
        producer,
        health=HealthState("unit-webhooks", heartbeat_timeout_s=60),
        deduper=WebhookDeduper(window_s=60, max_entries=100),
        ack_timeout_s=1.0,
        retry_after_s=7,
        readiness_interval_s=0.05,
    )
    served = app if request.param == "asgi" else app.fastapi
    with TestClient(served, raise_server_exceptions=True) as test_client:
        yield test_client


def _event(resource: str = "orders", rid: int = 42, pad: int = 0) -> bytes:
    event = {"type": "order.status_changed", "resource": {"type": resource, "id": rid}, "pad": "x" * pad}
    return json.dumps(event).encode()


def _signed(body: bytes, webhook_id: str | None = None) -> dict[str, str]:
    webhook_id = webhook_id or f"msg_{uuid.uuid4().hex}"
    now = int(time.time())
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(now),
        "webhook-signature": sign(SECRET, webhook_id, now, body),
    }


def _post(client: TestClient, body: bytes, headers: dict[str, str], shop: str = "shop1") -> Any:
    return client.post(f"/webhooks/prestashop/{shop}", content=body, headers=headers)


def test_accepted_answer_names_the_records_position_and_the_record_is_the_body(
    client: TestClient, producer: _Producer
) -> None:
    body = _event("customers", 9)
    headers = {**_signed(body, "wh-accept"), "x-correlation-id": "corr-7"}

    answer = _post(client, body, headers)

    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {
        "status": "accepted",
        "webhook_id": "wh-accept",
        "correlation_id": "corr-7",
        "topic": "t.customers",
        "partition": 3,
        "offset": 0,
    }
    [(topic, key, value, record_headers)] = producer.records
    assert (topic, key, value) == ("t.customers", b"1:customers:9", body)
    assert dict(record_headers)["correlation_id"] == b"corr-7"


def test_a_second_delivery_of_the_same_id_is_a_duplicate_and_not_produced(
    client: TestClient, producer: _Producer
) -> None:
    body = _event()
    headers = _signed(body, "wh-twice")
    assert _post(client, body, headers).json()["status"] == "accepted"

    again = _post(client, body, headers)

    assert again.status_code == 200
    assert again.json() == {"status": "duplicate", "webhook_id": "wh-twice"}
    assert len(producer.records) == 1


@pytest.mark.parametrize(
    ("case", "status", "reason"),
    [
        ("unknown shop", 401, "unknown_shop"),
        ("bad signature", 401, "signature_mismatch"),
        ("no signature", 401, "missing_signature_headers"),
        ("declared too large", 413, "payload_too_large"),
        ("streamed too large", 413, "payload_too_large"),
        ("form body", 415, "unsupported_media_type"),
        ("not json", 400, "malformed_json"),
        ("no resource", 400, "invalid_event"),
        ("unknown resource", 400, "unknown_resource"),
    ],
)
def test_refusals_answer_status_and_a_json_body_that_says_why(
    client: TestClient, producer: _Producer, case: str, status: int, reason: str
) -> None:
    body, shop = _event(), "shop1"
    if case == "not json":
        body = b'{"type": "order.created", '
    elif case == "no resource":
        body = b'{"type": "order.created"}'
    elif case == "unknown resource":
        body = _event("carts")
    elif case in ("declared too large", "streamed too large"):
        body = _event(pad=MAX_BODY)
    headers = _signed(body)
    if case == "unknown shop":
        shop = "shop9"
    elif case == "bad signature":
        headers["webhook-signature"] = sign(SECRET, "another-id", int(time.time()), body)
    elif case == "no signature":
        del headers["webhook-signature"]
    elif case == "form body":
        headers["content-type"] = "application/x-www-form-urlencoded"

    if case == "streamed too large":
        # No Content-Length: the cap must hold while the body streams in.
        answer = client.post(
            f"/webhooks/prestashop/{shop}", content=iter([body[:1000], body[1000:]]), headers=headers
        )
    else:
        answer = _post(client, body, headers, shop)

    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/json"
    payload = answer.json()
    assert set(payload) == {"error", "message", "hint"}
    assert payload["error"] == reason
    assert payload["message"]
    assert payload["hint"]
    assert producer.records == []


def test_kafka_unavailable_is_503_with_retry_after_and_the_id_is_not_remembered(
    client: TestClient, producer: _Producer
) -> None:
    body = _event()
    headers = _signed(body, "wh-outage")
    producer.fail = RetryableError("record to t.orders not acknowledged within 1s")

    answer = _post(client, body, headers)

    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "7"
    assert answer.json() == {
        "error": "kafka_unavailable",
        "message": "the event was not stored: record to t.orders not acknowledged within 1s",
        "hint": "retry the same request (same webhook-id) after 7 s",
    }
    producer.fail = None
    assert _post(client, body, headers).json()["status"] == "accepted"


def test_a_record_refused_by_the_broker_is_500_kafka_refused(client: TestClient, producer: _Producer) -> None:
    body = _event()
    producer.fail = ProduceError("MSG_SIZE_TOO_LARGE", topic="t.orders", code="MSG_SIZE_TOO_LARGE")

    answer = _post(client, body, _signed(body))

    assert answer.status_code == 500
    payload = answer.json()
    assert payload["error"] == "kafka_refused"
    assert payload["message"].startswith("the broker refused the record: ")
    assert payload["hint"] == "the receiver's operators must fix the topic or broker configuration"


def test_answers_are_counted_by_status_and_outcome(client: TestClient) -> None:
    body = _event()
    headers = _signed(body)
    _post(client, body, headers)
    _post(client, body, headers)
    _post(client, b"{}", _signed(b"{}"), shop="nobody")

    metrics = client.get("/metrics").text

    for status, outcome in (("200", "accepted"), ("200", "duplicate"), ("401", "unknown_shop")):
        line = (
            f'psinfor_webhook_requests_total{{outcome="{outcome}",source="prestashop-webhook",'
            f'status="{status}"}}'
        )
        assert line in metrics
    assert 'psinfor_webhook_produce_seconds_count{outcome="acked",source="prestashop-webhook"}' in metrics


def test_probes_answer(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    deadline = time.monotonic() + 5
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "readiness never reported the reachable broker"
        time.sleep(0.02)


def test_other_methods_and_paths_are_not_the_webhook_route(client: TestClient) -> None:
    assert client.get("/webhooks/prestashop/shop1").status_code == 405
    assert client.post("/webhooks/prestashop/shop1/extra", content=b"{}").status_code == 404
    assert client.post("/webhooks/elsewhere", content=b"{}").status_code == 404


def test_openapi_documents_the_webhook_route(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    operation = document["paths"]["/webhooks/prestashop/{shop_key}"]["post"]

    assert operation["summary"] == "Receive one signed PrestaShop webhook"
    parameters = {(p["in"], p["name"]): p for p in operation["parameters"]}
    assert parameters[("path", "shop_key")]["required"] is True
    for header in ("webhook-id", "webhook-timestamp", "webhook-signature", "x-ps-signature"):
        assert ("header", header) in parameters
    body_schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body_schema["required"] == ["type", "resource"]
    assert "orders" in body_schema["properties"]["resource"]["properties"]["type"]["enum"]
    schemas = document["components"]["schemas"]
    accepted = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert set(schemas[accepted.rsplit("/", 1)[1]]["properties"]) == {
        "status",
        "webhook_id",
        "correlation_id",
        "topic",
        "partition",
        "offset",
    }
    for status in ("400", "401", "413", "415", "500", "503"):
        ref = operation["responses"][status]["content"]["application/json"]["schema"]["$ref"]
        assert set(schemas[ref.rsplit("/", 1)[1]]["properties"]) == {"error", "message", "hint"}
    assert "Retry-After" in operation["responses"]["503"]["headers"]
    assert client.get("/docs").status_code == 200
