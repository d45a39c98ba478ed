"""The IMS receiver end to end: the Infor sandbox's IMS pusher POSTs v3 multipart BODs over loopback
HTTP to the receiver (uvicorn on a free port), which writes them to a real broker of its own.

5,000 Sync.InventoryCount BODs (a stock drift burst) with 10% sent twice and 10% held back and
released out of order; the broker is SIGKILLed after the first ~1,500 and restarted once the pusher
has seen a 503. Every distinct BOD (BODID + variationID) must be on the raw topic, the pusher must have
given up on none, and a malformed document is refused with 400 and a reason.
"""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.cimpl import NewTopic
from pydantic import SecretStr

from connectors.infor.ims import ImsParameters, build_multipart_message
from ingest.infor_events.routing import InforEntity
from ingest.infor_events.service import ImsReceiverServer
from pipeline.settings import InforEventsSettings, KafkaSettings, Settings
from sandbox.infor.app import SandboxOptions
from sandbox.infor.server import InforSandboxServer
from sandbox.kafka.launcher import KafkaCluster

pytestmark = pytest.mark.integration

TOKEN = "ims-integration-token-0123456789"
OUR_LID = "lid://infor.ims.prestashop"
BODS = 5_000
KILL_AFTER_SENT = 1_500


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    with KafkaCluster(1, tmp_path_factory.mktemp("ims-broker"), stop_grace_s=5) as cluster:
        yield cluster


def _create_topics(cluster: KafkaCluster) -> dict[InforEntity, str]:
    run = uuid.uuid4().hex[:8]
    topics = {entity: f"ims-{run}.raw.infor.{entity.value}" for entity in InforEntity}
    admin = cluster.admin()  # kept referenced until the futures resolve: a collected client cancels them
    futures = admin.create_topics([NewTopic(name, 2, 1) for name in topics.values()])
    for future in futures.values():
        future.result(timeout=30)
    return topics


def _wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(0.05)


def _read_topic(bootstrap: str, topic: str, timeout_s: float = 60.0) -> list[Any]:
    """Every record of ``topic`` up to its end as of now."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"read-{uuid.uuid4().hex}", "enable.auto.commit": False}
    )
    try:
        ends = {}
        for partition in range(2):
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            ends[partition] = high
        consumer.assign([TopicPartition(topic, p, 0) for p, end in ends.items() if end > 0])
        records: list[Any] = []
        positions = dict.fromkeys(ends, 0)
        deadline = time.monotonic() + timeout_s
        while any(positions[p] < ends[p] for p in ends):
            assert time.monotonic() < deadline, f"{topic} not read to its end"
            for message in consumer.consume(1000, 0.5):
                assert message.error() is None, message.error()
                records.append(message)
                positions[message.partition() or 0] = (message.offset() or 0) + 1
        return records
    finally:
        consumer.close()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_every_pushed_bod_lands_despite_duplicates_reordering_and_a_broker_restart(
    own_broker: KafkaCluster,
) -> None:
    bootstrap = own_broker.bootstrap_servers
    topics = _create_topics(own_broker)
    settings = Settings(
        kafka=KafkaSettings(bootstrap_servers=bootstrap),
        infor_events=InforEventsSettings(
            tokens=SecretStr(TOKEN), to_logical_ids=OUR_LID, ack_timeout_s=2.0, retry_after_s=1
        ),
    )
    with ImsReceiverServer(settings, topics=topics) as receiver:
        options = SandboxOptions(
            items=300, customers=5, ims_push_url=receiver.multipart_url, ims_push_token=TOKEN
        )
        with (
            InforSandboxServer(options) as sandbox,
            httpx.Client(base_url=sandbox.base_url, timeout=150) as admin,
        ):
            # Quiet background drift; the burst below is the only traffic.
            assert admin.put("/_sandbox/warehouse", json={"stock_drift_interval_s": 0.0}).status_code == 200
            pusher = {
                "duplicate_probability": 0.1,
                "reorder_probability": 0.1,
                "reorder_hold": 5,
                "max_attempts": 1000,
                "initial_backoff_s": 0.2,
                "max_backoff_s": 1.0,
                "to_logical_id": OUR_LID,
            }
            assert admin.put("/_sandbox/ims/pusher", json=pusher).status_code == 200

            # A malformed document is refused with 400 and a reason (and is not retried into Kafka).
            parameters = ImsParameters("Sync.InventoryCount", "bad-1", "lid://infor.m3.m3", OUR_LID)
            body, content_type = build_multipart_message(parameters, b"<SyncInventoryCount><unclosed>")
            refused = httpx.post(
                receiver.multipart_url,
                content=body,
                headers={"content-type": content_type, "authorization": f"Bearer {TOKEN}"},
            )
            assert (refused.status_code, refused.json()["error"]) == (400, "malformed_xml")
            assert "not well-formed" in refused.json()["message"]

            def pusher_stats() -> dict[str, Any]:
                stats: dict[str, Any] = admin.get("/_sandbox/ims/pusher/stats").json()
                return stats

            started = time.monotonic()
            assert admin.post("/_sandbox/warehouse/drift", json={"changes": BODS}).json() == {
                "balances_changed": BODS
            }
            _wait_for(lambda: pusher_stats()["sent"] >= KILL_AFTER_SENT, 120, f"{KILL_AFTER_SENT} BODs sent")
            # The broker goes away abruptly while the pusher is busy; it comes back once the sender has
            # been told 503. Restarted from this (the main) thread: the launcher ties a JVM to the
            # thread that spawned it.
            own_broker.kill_node(0)
            killed_at = time.monotonic()
            _wait_for(lambda: pusher_stats()["statuses"].get("503", 0) > 0, 60, "the pusher to get a 503")
            own_broker.restart_node(0)
            outage_s = time.monotonic() - killed_at
            waited = admin.post("/_sandbox/ims/pusher/wait", json={"timeout_s": 120})
            stats = waited.json()
            elapsed = time.monotonic() - started
            assert waited.status_code == 200, stats
            pushed = {entry["bodId"] for entry in sandbox.sandbox.pusher.log}

    records = _read_topic(bootstrap, topics[InforEntity.INVENTORY])
    others = [name for entity, name in topics.items() if entity is not InforEntity.INVENTORY]
    assert all(not _read_topic(bootstrap, name, 10) for name in others)
    on_topic: Counter[tuple[str, str]] = Counter()
    for record in records:
        headers = {name: value.decode() for name, value in record.headers()}
        bodid, variation = headers["bodid"], headers["variation_id"]
        assert headers["source"] == "infor-ims"
        assert headers["document_name"] == "Sync.InventoryCount"
        # The value is the BOD as sent; its BODID and document id are the header and the key.
        assert f"<BODID>{bodid.replace('&', '&amp;')}</BODID>".encode() in record.value()
        match = re.search(rb'<ID [^>]*variationID="(\d+)"[^>]*>([^<]+)</ID>', record.value())
        assert match is not None
        assert (match.group(1).decode(), match.group(2)) == (variation, record.key())
        on_topic[(bodid, variation)] += 1

    print(
        f"\nIMS burst: {BODS} BODs in {elapsed:.1f}s, pusher stats {stats}, "
        f"outage {outage_s:.1f}s, "
        f"records on topic {len(records)}, distinct {len(on_topic)}, "
        f"copies>1 {sum(1 for count in on_topic.values() if count > 1)}"
    )
    assert stats["queued"] == BODS
    assert (stats["failed"], stats["dropped"]) == (0, 0)
    assert stats["duplicates"] > BODS * 0.05
    assert stats["reordered"] > BODS * 0.05
    assert stats["statuses"].get("503", 0) > 0  # the outage was seen by the sender
    assert len(pushed) == BODS
    assert {bodid for bodid, _ in on_topic} == pushed
    assert len(on_topic) == BODS
    # Redeliveries were answered from the BODID memory: the only extra copies are records whose ack
    # timed out (503) and that librdkafka still delivered after the restart.
    assert len(records) - len(on_topic) <= stats["statuses"]["503"]
