"""The webhook receiver end to end: real HTTP server (uvicorn on a free loopback port), real broker.

(a) 10,000 concurrent webhooks, mixed entities, duplicates, bad signatures, oversized and malformed
    bodies: exactly the valid, distinct ones land on the raw topics, byte for byte, with every header;
    every refusal has the right status and reason. The receiver runs in a child process (the
    production server, signals and all), so the sender does not share its interpreter.
(b) The broker is killed (SIGKILL) mid-run and restarted: the sender retries on 503 after Retry-After,
    and every webhook that got a 2xx is on the topic.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from pydantic import SecretStr

from connectors.prestashop.webhook_signature import sign
from ingest.prestashop_webhooks.receiver import Entity
from ingest.prestashop_webhooks.service import ReceiverProcess, ReceiverServer
from pipeline.settings import KafkaSettings, ServiceSettings, Settings, WebhookReceiverSettings
from sandbox.kafka.launcher import KafkaCluster
from tests.conftest import NewTopicFactory

pytestmark = pytest.mark.integration

SECRET = "whsec_" + base64.b64encode(b"integration-secret-0123456789").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"somebody-elses-secret-012345").decode()
SHOP = "shop1"
MAX_BODY = 4096
PARTITIONS = 2

# resource type → (entity, event type) for the generated events
RESOURCES: dict[str, tuple[Entity, str]] = {
    "orders": (Entity.ORDERS, "order.status_changed"),
    "order_carriers": (Entity.ORDERS, "order.tracking_updated"),
    "customers": (Entity.CUSTOMERS, "customer.updated"),
    "addresses": (Entity.CUSTOMERS, "address.created"),
    "products": (Entity.PRODUCTS, "product.updated"),
    "combinations": (Entity.PRODUCTS, "product.updated"),
    "stock_availables": (Entity.STOCK, "stock.changed"),
}


@dataclass
class Webhook:
    """One request to send and what the receiver must answer."""

    webhook_id: str
    body: bytes
    headers: dict[str, str]
    shop: str = SHOP
    expect_status: int = 200
    expect_reason: str | None = None
    resource: str = "orders"
    resource_id: int = 0
    answers: list[int] = field(default_factory=list)
    response: dict[str, object] = field(default_factory=dict)


def _body(webhook_id: str, resource: str, resource_id: int, padding: int = 0) -> bytes:
    _, event_type = RESOURCES[resource]
    event = {
        "id": webhook_id,
        "type": event_type,
        "occurred_at": "2024-05-01T10:22:33+02:00",
        "shop": {"id_shop": 1, "base_url": "https://shop.example"},
        "resource": {"type": resource, "id": resource_id},
        "data": {"id": resource_id, "note": "x" * padding},
        "ps_version": "8.1.7",
    }
    return json.dumps(event, separators=(",", ":")).encode()


def _signed_headers(webhook_id: str, body: bytes, secret: str = SECRET) -> dict[str, str]:
    timestamp = int(time.time())
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, webhook_id, timestamp, body),
    }


def _valid(rng: random.Random, index: int) -> Webhook:
    webhook_id = f"msg_{uuid.uuid4().hex}"
    resource = rng.choice(sorted(RESOURCES))
    body = _body(webhook_id, resource, index + 1)
    correlation = {"x-correlation-id": f"corr-{index}"} if index % 3 == 0 else {}
    return Webhook(
        webhook_id,
        body,
        {**_signed_headers(webhook_id, body), **correlation},
        resource=resource,
        resource_id=index + 1,
    )


def _make_mix(total: int, seed: int = 7) -> tuple[list[Webhook], list[Webhook]]:
    """(requests in send order, the distinct valid webhooks that must land)."""
    rng = random.Random(seed)
    n_dupes, n_bad_sig, n_oversized, n_other = (
        total * 7 // 100,
        total * 5 // 100,
        total * 2 // 100,
        total // 100,
    )
    n_valid = total - n_dupes - n_bad_sig - n_oversized - n_other
    valid = [_valid(rng, i) for i in range(n_valid)]
    requests: list[Webhook] = list(valid)
    for _ in range(n_dupes):
        original = rng.choice(valid)
        requests.append(Webhook(original.webhook_id, original.body, dict(original.headers)))
    for i in range(n_bad_sig):
        webhook_id = f"msg_{uuid.uuid4().hex}"
        body = _body(webhook_id, rng.choice(sorted(RESOURCES)), 10**6 + i)
        if i % 3 == 0:
            headers, reason = _signed_headers(webhook_id, body, OTHER_SECRET), "signature_mismatch"
        elif i % 3 == 1:
            # Signed, then altered in transit.
            headers, reason = _signed_headers(webhook_id, body), "signature_mismatch"
            body = body.replace(b'"ps_version":"8.1.7"', b'"ps_version":"8.1.8"')
        else:
            headers = _signed_headers(webhook_id, body)
            headers["webhook-timestamp"] = str(int(time.time()) - 3600)
            reason = "timestamp_out_of_tolerance"
        requests.append(Webhook(webhook_id, body, headers, expect_status=401, expect_reason=reason))
    for i in range(n_oversized):
        webhook_id = f"msg_{uuid.uuid4().hex}"
        body = _body(webhook_id, "orders", 2 * 10**6 + i, padding=MAX_BODY + rng.randrange(1, 20_000))
        requests.append(
            Webhook(
                webhook_id,
                body,
                _signed_headers(webhook_id, body),
                expect_status=413,
                expect_reason="payload_too_large",
            )
        )
    other_kinds = [
        ("unknown_shop", 401),
        ("unsupported_media_type", 415),
        ("malformed_json", 400),
        ("invalid_event", 400),
        ("unknown_resource", 400),
    ]
    for i in range(n_other):
        reason, status = other_kinds[i % len(other_kinds)]
        webhook_id = f"msg_{uuid.uuid4().hex}"
        body = _body(webhook_id, "orders", 3 * 10**6 + i)
        shop = SHOP
        if reason == "malformed_json":
            body = b'{"type": "order.created", "resource": '
        elif reason == "invalid_event":
            body = b'{"type": "order.created", "resource": {"type": "orders"}}'
        elif reason == "unknown_resource":
            body = b'{"type": "cart.updated", "resource": {"type": "carts", "id": 5}}'
        headers = _signed_headers(webhook_id, body)
        if reason == "unknown_shop":
            shop = "shop-unknown"
        elif reason == "unsupported_media_type":
            headers["content-type"] = "application/x-www-form-urlencoded"
        requests.append(
            Webhook(webhook_id, body, headers, shop=shop, expect_status=status, expect_reason=reason)
        )
    rng.shuffle(requests)
    return requests, valid


async def _send_all(
    base_url: str, requests: list[Webhook], *, concurrency: int, retry_until: float | None = None
) -> None:
    """Send every request with ``concurrency`` connections; with ``retry_until``, retry 503s (after
    Retry-After) and transport errors until a non-503 answer or that monotonic deadline."""
    queue: asyncio.Queue[Webhook] = asyncio.Queue()
    for request in requests:
        queue.put_nowait(request)
    # One single-connection client per worker: one pool shared by many connections costs the client
    # O(connections) per request (httpcore checks every pooled connection), more than the server's work.
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)

    async def worker() -> None:
        async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30.0) as client:
            while not queue.empty():
                webhook = queue.get_nowait()
                while True:
                    try:
                        response = await client.post(
                            f"/webhooks/prestashop/{webhook.shop}",
                            content=webhook.body,
                            headers=webhook.headers,
                        )
                    except httpx.TransportError:
                        if retry_until is None or time.monotonic() > retry_until:
                            raise
                        webhook.answers.append(0)
                        await asyncio.sleep(0.5)
                        continue
                    webhook.answers.append(response.status_code)
                    webhook.response = response.json()
                    if response.status_code != 503 or retry_until is None or time.monotonic() > retry_until:
                        break
                    await asyncio.sleep(float(response.headers["retry-after"]))

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def _consume_topics(bootstrap: str, topics: list[str], expected: int, timeout_s: float) -> list[Message]:
    # Assigned, not subscribed: no group coordinator needed (it is still loading after a broker restart).
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False})
    records: list[Message] = []
    try:
        consumer.assign(
            [
                TopicPartition(topic, partition, OFFSET_BEGINNING)
                for topic in topics
                for partition in range(PARTITIONS)
            ]
        )
        deadline = time.monotonic() + timeout_s
        while len(records) < expected and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):
                if message.error() is None:
                    records.append(message)
                else:
                    print("consume error", message.error())
    finally:
        consumer.close()
    return records


def _headers(record: Message) -> dict[str, str]:
    raw = record.headers() or []
    pairs = list(raw.items()) if isinstance(raw, dict) else list(raw)
    return {name: value.decode() if isinstance(value, bytes) else str(value) for name, value in pairs}


def _high_watermarks(bootstrap: str, topics: list[str]) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"wm-{uuid.uuid4().hex[:8]}"})
    try:
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1]
            for topic in topics
            for partition in range(PARTITIONS)
        )
    finally:
        consumer.close()


def _settings(bootstrap: str, **webhooks: Any) -> Settings:
    return Settings(
        kafka=KafkaSettings(bootstrap_servers=bootstrap),
        service=ServiceSettings(log_level="WARNING"),
        webhooks=WebhookReceiverSettings(
            secrets=SecretStr(SECRET), shop_keys=f"{SHOP}=1,shop2=2", max_body_bytes=MAX_BODY, **webhooks
        ),
    )


@pytest.mark.timeout(150)
def test_ten_thousand_webhooks_land_exactly_once_with_their_headers(
    kafka_bootstrap: str, new_topic: NewTopicFactory
) -> None:
    topics = {entity: new_topic(partitions=PARTITIONS) for entity in Entity}
    requests, valid = _make_mix(10_000)
    assert len(requests) == 10_000

    # The receiver runs in a child process: this test's HTTP client (httpx costs more CPU per request
    # than the receiver) must not share the server's interpreter.
    with ReceiverProcess(_settings(kafka_bootstrap), host="127.0.0.1", port=0, topics=topics) as server:
        started = time.monotonic()
        asyncio.run(_send_all(server.url, requests, concurrency=48))
        elapsed = time.monotonic() - started
        metrics_text = httpx.get(server.url + "/metrics").text
    assert server.exitcode == 0, "the receiver did not shut down cleanly (records left undelivered?)"

    # Every answer is the expected one, with a JSON body that says why.
    wrong = [
        (w.expect_status, w.expect_reason, w.answers, w.response)
        for w in requests
        if w.answers != [w.expect_status] or (w.expect_reason and w.response.get("error") != w.expect_reason)
    ]
    assert not wrong, f"{len(wrong)} unexpected answers, e.g. {wrong[:3]}"
    assert all(w.response.get("hint") for w in requests if w.expect_status != 200)
    by_id: dict[str, list[Webhook]] = {}
    for webhook in requests:
        if webhook.expect_status == 200:
            by_id.setdefault(webhook.webhook_id, []).append(webhook)
    accepted_answer: dict[str, dict[str, object]] = {}
    for webhook_id, copies in by_id.items():
        # Whichever copy came first (the shuffle may put a duplicate first) is the one accepted.
        statuses = sorted(str(copy.response["status"]) for copy in copies)
        assert statuses == ["accepted"] + ["duplicate"] * (len(copies) - 1)
        accepted_answer[webhook_id] = next(c.response for c in copies if c.response["status"] == "accepted")

    # Exactly the distinct valid webhooks are on the raw topics: nothing more, nothing less.
    topic_names = list(topics.values())
    assert _high_watermarks(kafka_bootstrap, topic_names) == len(valid)
    records = _consume_topics(kafka_bootstrap, topic_names, len(valid), timeout_s=60)
    assert len(records) == len(valid)
    sent = {w.webhook_id: w for w in valid}
    seen: set[str] = set()
    for record in records:
        headers = _headers(record)
        webhook = sent[headers["webhook_id"]]
        seen.add(webhook.webhook_id)
        entity, event_type = RESOURCES[webhook.resource]
        accepted = accepted_answer[webhook.webhook_id]
        assert record.topic() == topics[entity]
        assert (record.partition(), record.offset()) == (accepted["partition"], accepted["offset"])
        assert record.key() == f"1:{webhook.resource}:{webhook.resource_id}".encode()  # {SHOP} is shop id 1
        assert record.value() == webhook.body
        assert headers["source"] == "prestashop-webhook"
        assert headers["event_type"] == event_type
        assert headers["content_type"] == "application/json"
        assert headers["shop_key"] == SHOP
        assert headers["shop_id"] == "1"
        assert headers["correlation_id"] == accepted["correlation_id"]
        if "x-correlation-id" in webhook.headers:
            assert headers["correlation_id"] == webhook.headers["x-correlation-id"]
        else:
            assert uuid.UUID(headers["correlation_id"])
        received = datetime.fromisoformat(headers["received_at"])
        assert abs(received.timestamp() - time.time()) < 300
        assert list(headers) == [
            "source",
            "event_type",
            "webhook_id",
            "received_at",
            "content_type",
            "correlation_id",
            "shop_key",
            "shop_id",
        ]
    assert seen == set(sent)

    counts = Counter((w.expect_status, w.expect_reason) for w in requests)
    print(
        f"\n10k webhooks in {elapsed:.1f}s ({10_000 / elapsed:.0f}/s): {dict(counts)}; landed {len(records)}"
    )
    assert 'psinfor_webhook_requests_total{outcome="duplicate",source="prestashop-webhook",status="200"}' in (
        metrics_text
    )


# -- (b) the broker goes away mid-run --------------------------------------------------------------


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    with KafkaCluster(1, tmp_path_factory.mktemp("webhook-broker"), stop_grace_s=5) as cluster:
        yield cluster


def _wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _create_topics(bootstrap: str, prefix: str) -> dict[Entity, str]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = {entity: f"{prefix}.{entity.value}" for entity in Entity}
    futures = admin.create_topics([NewTopic(name, PARTITIONS, 1) for name in topics.values()])
    for future in futures.values():
        future.result(timeout=30)
    return topics


def _readyz(url: str) -> int:
    try:
        return httpx.get(url + "/readyz", timeout=5).status_code
    except httpx.TransportError:
        return 0


@pytest.mark.timeout(170)
def test_no_acknowledged_webhook_is_lost_when_the_broker_restarts(own_broker: KafkaCluster) -> None:
    bootstrap = own_broker.bootstrap_servers
    topics = _create_topics(bootstrap, f"restart-{uuid.uuid4().hex[:8]}")
    rng = random.Random(11)
    webhooks = [_valid(rng, i) for i in range(2000)]
    settings = _settings(bootstrap, ack_timeout_s=2.0, retry_after_s=1)

    with ReceiverServer(settings, host="127.0.0.1", port=0, topics=topics) as server:
        _wait_for(lambda: _readyz(server.url) == 200, 15, "/readyz 200 before the run")
        sender_done = asyncio.Event()
        outage: dict[str, float] = {}

        async def chaos() -> None:
            # Kill the broker once a third of the webhooks were acknowledged, bring it back 4 s later.
            while sum(1 for w in webhooks if 200 in w.answers) < len(webhooks) // 3:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            outage["killed_at_acked"] = sum(1 for w in webhooks if 200 in w.answers)
            own_broker.kill_node(0)
            await asyncio.sleep(4.0)
            outage["readyz_during"] = await asyncio.to_thread(_readyz, server.url)
            # Spawned from this (the main) thread: the launcher ties a JVM to the thread that started it,
            # and a to_thread worker exits with the loop.
            own_broker.restart_node(0, wait=False)
            await asyncio.to_thread(own_broker.wait_ready)
            outage["restarted"] = 1

        async def run() -> None:
            chaos_task = asyncio.create_task(chaos())
            await _send_all(server.url, webhooks, concurrency=32, retry_until=time.monotonic() + 120)
            sender_done.set()
            await chaos_task

        asyncio.run(run())
        _wait_for(lambda: _readyz(server.url) == 200, 30, "/readyz 200 after the restart")

    acked = [w for w in webhooks if w.answers and w.answers[-1] == 200]
    refused_503 = sum(w.answers.count(503) for w in webhooks)
    transport_errors = sum(w.answers.count(0) for w in webhooks)
    # Read everything written (503'd records that still landed make copies), not just one per webhook.
    on_topic = _high_watermarks(bootstrap, list(topics.values()))
    records = _consume_topics(bootstrap, list(topics.values()), on_topic, timeout_s=60)
    landed = Counter(_headers(m)["webhook_id"] for m in records)
    missing = [w.webhook_id for w in acked if w.webhook_id not in landed]
    print(
        f"\nbroker restart: sent={len(webhooks)} acked(2xx)={len(acked)} 503s={refused_503} "
        f"transport_errors={transport_errors} killed_after={outage.get('killed_at_acked')} "
        f"readyz_during_outage={outage.get('readyz_during')} on_topic={len(records)} "
        f"distinct={len(landed)} duplicates={len(records) - len(landed)} missing={len(missing)} "
        f"high_watermarks={on_topic}"
    )
    assert outage.get("restarted") == 1
    assert refused_503 > 0, "the outage never reached a sender: the test proved nothing"
    assert outage["readyz_during"] == 503
    assert len(acked) == len(webhooks), "the sender gave up on some webhooks"
    assert not missing, f"{len(missing)} acknowledged webhooks are not on the topic, e.g. {missing[:5]}"
