"""The IMS receiver's HTTP contract without a broker: auth, 202 only after the (stand-in) ack, BODID
dedupe, 503 + Retry-After, the IMS protocol endpoints, probes and OpenAPI. The real broker is in
tests/integration/test_infor_events_receiver.py."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from connectors.infor.ims import ImsParameters, build_multipart_message
from ingest.infor_events.app import IMS_BASE, MULTIPART_PATHS, bearer_matches, create_app
from ingest.infor_events.routing import ImsRouter, InforEntity
from pipeline.dedupe import DeliveryDeduper
from pipeline.errors import ProduceError, RetryableError
from pipeline.health import HealthState
from pipeline.producer import HeaderList

BODS = Path(__file__).resolve().parents[2] / "connectors" / "infor" / "testdata" / "bod"
TOKEN = "ims-token-0123456789abcdef"
OLD_TOKEN = "ims-token-old-0123456789"
TOPICS = {entity: f"t.{entity.value}" for entity in InforEntity}


class StandInProducer:
    """Records what was produced; ``fail_with`` makes the next writes fail like the real producer."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None, bytes | None, HeaderList]] = []
        self.fail_with: Exception | None = None
        self.gate: asyncio.Event | None = None

    async def produce_acked(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: HeaderList = (),
        ack_timeout_s: float = 10.0,
    ) -> tuple[int, int]:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        self.records.append((topic, key, value, headers))
        return 0, len(self.records) - 1

    def broker_reachable(self, timeout_s: float = 2.0) -> bool:
        return self.fail_with is None


@pytest.fixture
def producer() -> StandInProducer:
    return StandInProducer()


@pytest.fixture
def client(producer: StandInProducer) -> Iterator[TestClient]:
    router = ImsRouter(
        topics=TOPICS,
        accepted_documents=frozenset({"Sync.SalesOrder", "Sync.Invoice"}),
        to_logical_ids=frozenset({"lid://infor.ims.prestashop"}),
        max_body_bytes=64 * 1024,
    )
    app = create_app(
        router,
        producer,
        tokens=[SecretStr(OLD_TOKEN), SecretStr(TOKEN)],
        health=HealthState("test-ims", heartbeat_timeout_s=30),
        deduper=DeliveryDeduper(window_s=60, max_entries=100),
        ack_timeout_s=1.0,
        retry_after_s=7,
        readiness_interval_s=0.05,
    )
    with TestClient(app) as test_client:
        yield test_client


def _message(fixture: str = "SyncSalesOrder.xml", *, message_id: str = "m-1") -> tuple[bytes, dict[str, str]]:
    name = "Sync." + fixture.removeprefix("Sync").removesuffix(".xml")
    parameters = ImsParameters(
        document_name=name,
        message_id=message_id,
        from_logical_id="lid://infor.m3.m3",
        to_logical_id="lid://infor.ims.prestashop",
    )
    body, content_type = build_multipart_message(parameters, (BODS / fixture).read_bytes())
    return body, {"content-type": content_type, "authorization": f"Bearer {TOKEN}"}


def test_bearer_matching_is_exact_and_scheme_checked() -> None:
    tokens = [SecretStr(TOKEN)]
    assert bearer_matches(f"Bearer {TOKEN}", tokens)
    assert bearer_matches(f"bearer {TOKEN}", tokens)
    assert not bearer_matches(f"Bearer {TOKEN}x", tokens)
    assert not bearer_matches(f"Basic {TOKEN}", tokens)
    assert not bearer_matches("Bearer ", tokens)
    assert not bearer_matches(None, tokens)


@pytest.mark.parametrize("path", [f"{IMS_BASE}/ping", f"{IMS_BASE}/protocol", f"{IMS_BASE}/versions"])
def test_every_ims_endpoint_requires_the_token(client: TestClient, path: str) -> None:
    refused = client.get(path, headers={"authorization": "Bearer wrong-token-0123456789"})
    assert refused.status_code == 401
    assert refused.json()["error"] == "unauthorised"
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert client.get(path).status_code == 401
    assert client.get(path, headers={"authorization": f"Bearer {OLD_TOKEN}"}).status_code == 200


def test_protocol_answers_say_v3_multipart_without_discovery(client: TestClient) -> None:
    auth = {"authorization": f"Bearer {TOKEN}"}
    assert client.get(f"{IMS_BASE}/ping", headers=auth).json() == {"status": "OK"}
    assert client.get(f"{IMS_BASE}/protocol", headers=auth).json() == {
        "messageMethod": "multipartMessage",
        "version": "v3",
        "hasDiscovery": False,
    }


def test_unauthorised_message_is_not_produced(client: TestClient, producer: StandInProducer) -> None:
    body, headers = _message()
    headers["authorization"] = "Bearer not-the-token-0123456789"
    assert client.post(MULTIPART_PATHS[0], content=body, headers=headers).status_code == 401
    assert producer.records == []


@pytest.mark.parametrize("path", MULTIPART_PATHS)
def test_accepted_message_answers_202_with_its_position(
    client: TestClient, producer: StandInProducer, path: str
) -> None:
    body, headers = _message()
    answer = client.post(path, content=body, headers=headers)
    assert answer.status_code == 202
    assert answer.json() | {"correlation_id": None} == {
        "status": "accepted",
        "message_id": "m-1",
        "bodid": "infor-nid:ACME_TST:100_AAA::1000012345:3?SalesOrder&verb=Sync",
        "correlation_id": None,
        "topic": "t.salesorders",
        "partition": 0,
        "offset": 0,
    }
    [(topic, key, value, _)] = producer.records
    assert (topic, key, value) == ("t.salesorders", b"1000012345", (BODS / "SyncSalesOrder.xml").read_bytes())


def test_a_redelivered_bod_answers_202_duplicate_without_producing(
    client: TestClient, producer: StandInProducer
) -> None:
    body, headers = _message(message_id="m-1")
    again, again_headers = _message(message_id="m-2")  # ION retry: same BOD, maybe a new messageId
    assert client.post(MULTIPART_PATHS[0], content=body, headers=headers).json()["status"] == "accepted"
    answer = client.post(MULTIPART_PATHS[0], content=again, headers=again_headers)
    assert (answer.status_code, answer.json()["status"]) == (202, "duplicate")
    assert len(producer.records) == 1


def test_kafka_unavailable_answers_503_with_retry_after_and_the_retry_then_lands(
    client: TestClient, producer: StandInProducer
) -> None:
    body, headers = _message()
    producer.fail_with = RetryableError("record to t.salesorders not acknowledged within 1s")
    refused = client.post(MULTIPART_PATHS[0], content=body, headers=headers)
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "7"
    assert refused.json()["error"] == "kafka_unavailable"
    producer.fail_with = None
    assert client.post(MULTIPART_PATHS[0], content=body, headers=headers).json()["status"] == "accepted"
    assert len(producer.records) == 1


def test_a_record_refused_for_good_answers_500(client: TestClient, producer: StandInProducer) -> None:
    body, headers = _message()
    producer.fail_with = ProduceError("too large", topic="t.salesorders")
    answer = client.post(MULTIPART_PATHS[0], content=body, headers=headers)
    assert (answer.status_code, answer.json()["error"]) == (500, "kafka_refused")


def test_malformed_and_unexpected_messages_get_400_and_412(client: TestClient) -> None:
    body, headers = _message()
    broken = body.replace(b"</SyncSalesOrder>", b"</SyncSalesOrdr>")
    answer = client.post(MULTIPART_PATHS[0], content=broken, headers=headers)
    assert (answer.status_code, answer.json()["error"]) == (400, "malformed_xml")
    shipment, headers = _message("SyncShipment.xml")
    answer = client.post(MULTIPART_PATHS[0], content=shipment, headers=headers)
    assert (answer.status_code, answer.json()["error"]) == (412, "unexpected_document")


def test_declared_oversize_is_refused_413(client: TestClient) -> None:
    body, headers = _message()
    padded = body + b"x" * (64 * 1024)
    answer = client.post(MULTIPART_PATHS[0], content=padded, headers=headers)
    assert (answer.status_code, answer.json()["error"]) == (413, "payload_too_large")


def test_probes_metrics_and_openapi(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    for _ in range(100):
        if ready.status_code == 200:
            break
        ready = client.get("/readyz")
    assert ready.status_code == 200
    body, headers = _message()
    client.post(MULTIPART_PATHS[0], content=body, headers=headers)
    metrics = client.get("/metrics").text
    assert 'psinfor_webhook_requests_total{outcome="accepted",source="infor-ims",status="202"}' in metrics
    spec = client.get("/openapi.json").json()
    operation = spec["paths"][MULTIPART_PATHS[0]]["post"]
    assert {"202", "400", "401", "412", "413", "503"} <= set(operation["responses"])
    assert "multipart/form-data" in operation["requestBody"]["content"]
