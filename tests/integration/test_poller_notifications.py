"""The poller's notification reader against the PrestaShop sandbox (real HTTP) and the real broker.

Two properties of the real-time path, each seen as what reaches the raw topics:

- lanes: stock notifications that are slow to answer (the shop takes a second per stock row) do not
  hold up an order notification produced after them; the order's bundle is written while the stock
  rows are still being read;
- freshness: a notification that a later read already answered (the orders loop read the order after
  the webhook was received) is not read again, and one received after that read still is.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client import REGISTRY
from pydantic import SecretStr

from connectors.prestashop.client import PrestaShopClient
from ingest.prestashop_poller.freshness import CLOCK_MARGIN_S, FreshReads
from ingest.prestashop_poller.notifications import NotificationReader
from pipeline.producer import PipelineProducer
from pipeline.settings import KafkaSettings, PollerSettings, PrestaShopSettings, Settings
from pipeline.topics import apply_topics
from sandbox.prestashop.config import KeyPermissions, SandboxConfig
from sandbox.prestashop.server import SandboxServer
from schemas.catalogue import load_catalogue

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

KEY = "NOTIFICATIONLANESKEY0123456789AB"
TOPICS = (
    "raw.prestashop.orders",
    "raw.prestashop.customers",
    "raw.prestashop.products",
    "raw.prestashop.stock",
    "dlq.processors",
)
SLOW_STOCK_ROWS = 5
KNOCKS = (
    ("raw.prestashop.orders", "orders", 3),
    ("raw.prestashop.stock", "stock_availables", SLOW_STOCK_ROWS + 1),
)
"""(topic, resource, id) notified until the reader answers: rows the tests do not watch."""
STOCK_READ_LATENCY_MS = 1000


@pytest.fixture
def prefix(kafka_bootstrap: str) -> str:
    prefix = f"t.notify.{uuid.uuid4().hex[:10]}."
    specs = [s for s in load_catalogue().topic_specs(prefix=prefix) if s.name[len(prefix) :] in TOPICS]
    apply_topics(AdminClient({"bootstrap.servers": kafka_bootstrap}), specs)
    return prefix


@pytest.fixture
def shop() -> Iterator[SandboxServer]:
    config = SandboxConfig(keys=(KeyPermissions(KEY),), products=8, customers=3, orders=3, seed=11)
    with SandboxServer(config) as server:
        yield server


def settings_for(shop: SandboxServer, kafka_bootstrap: str, prefix: str) -> Settings:
    return Settings(
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap),
        prestashop=PrestaShopSettings(
            base_url=shop.base_url, ws_key=SecretStr(KEY), shop_id=1, timeout_s=30.0
        ),
        poller=PollerSettings(topic_prefix=prefix, group_id=f"{prefix}poller"),
    )


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def notify(bootstrap: str, topic: str, resource: str, id_: int, *, received_at: float) -> None:
    """A thin webhook notification as the receiver writes it, acknowledged before returning."""
    producer = Producer({"bootstrap.servers": bootstrap})
    headers: list[tuple[str, str | bytes | None]] = [
        ("source", b"prestashop-webhook"),
        ("event_type", b"test.changed"),
        ("resource", resource.encode()),
        ("id", str(id_).encode()),
        ("received_at", iso(received_at).encode()),
        ("correlation_id", uuid.uuid4().hex.encode()),
    ]
    producer.produce(topic, key=f"1:{resource}:{id_}".encode(), value=b"{}", headers=headers)
    assert producer.flush(10) == 0


def end_offsets(consumer: Consumer, topic: str, partitions: Iterable[int]) -> dict[int, int]:
    """High watermarks, waiting out a just-created topic's leader election."""
    deadline = time.monotonic() + 20
    while True:
        try:
            return {
                p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions
            }
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def snapshots(bootstrap: str, topic: str) -> list[tuple[str, int, dict[str, str]]]:
    """(key, timestamp ms, headers) of every snapshot the poller wrote to ``topic`` so far."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex}"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = end_offsets(consumer, topic, partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions if ends[p] > 0])
        found: list[tuple[str, int, dict[str, str]]] = []
        remaining = {p for p, end in ends.items() if end > 0}
        deadline = time.monotonic() + 20
        while remaining and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            partition, offset = message.partition() or 0, message.offset() or 0
            if offset + 1 >= ends[partition]:
                remaining.discard(partition)
            headers = {
                str(name): value.decode() if isinstance(value, bytes) else str(value or "")
                for name, value in list(message.headers() or [])
            }
            key = message.key()
            if headers.get("source") == "prestashop-poll":
                found.append(
                    (key.decode() if isinstance(key, bytes) else str(key), message.timestamp()[1], headers)
                )
        return found
    finally:
        consumer.close()


async def wait_until(what: str, check: Any, timeout_s: float = 40.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await asyncio.to_thread(check):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:g} s: {what}")
        await asyncio.sleep(0.3)


async def run_reader(
    shop: SandboxServer, kafka_bootstrap: str, prefix: str, fresh: FreshReads, scenario: Any
) -> None:
    """Run a NotificationReader until ``scenario()`` returns; every lane is answering when it starts."""
    settings = settings_for(shop, kafka_bootstrap, prefix)
    producer = PipelineProducer(settings.kafka, client_id_suffix="test-notifications")
    stop = asyncio.Event()
    async with httpx.AsyncClient(timeout=30.0) as http:
        client = PrestaShopClient(http, shop.base_url, SecretStr(KEY))
        reader = NotificationReader(
            settings, client, producer, poll_run_id="test", loop=asyncio.get_running_loop(), fresh=fresh
        )
        task = asyncio.create_task(reader.run_until(stop))
        try:
            # A fresh group starts at the end of the topics: knock until each lane answers.
            for topic, resource, knock_id in KNOCKS:

                def answered(topic: str = topic) -> bool:
                    return bool(snapshots(kafka_bootstrap, f"{prefix}{topic}"))

                deadline = time.monotonic() + 40
                while not await asyncio.to_thread(answered):
                    assert not task.done(), task
                    assert time.monotonic() < deadline, f"{topic}: the reader never answered"
                    await asyncio.to_thread(
                        notify,
                        kafka_bootstrap,
                        f"{prefix}{topic}",
                        resource,
                        knock_id,
                        received_at=time.time(),
                    )
                    await asyncio.sleep(1.0)
            await scenario()
        finally:
            stop.set()
            await task
            await asyncio.to_thread(producer.close, 10.0)


def test_an_order_notification_does_not_wait_behind_slow_stock_notifications(
    shop: SandboxServer, kafka_bootstrap: str, prefix: str
) -> None:
    stock_topic, orders_topic = f"{prefix}raw.prestashop.stock", f"{prefix}raw.prestashop.orders"

    async def scenario() -> None:
        fault = {
            "kind": "latency",
            "resource": "stock_availables",
            "method": "GET",
            "next": SLOW_STOCK_ROWS,
            "latency_ms": STOCK_READ_LATENCY_MS,
        }
        response = await asyncio.to_thread(
            httpx.post, f"{shop.base_url}/_sandbox/faults", json=fault, timeout=10
        )
        assert response.is_success, response.text
        for id_ in range(1, SLOW_STOCK_ROWS + 1):
            await asyncio.to_thread(
                notify, kafka_bootstrap, stock_topic, "stock_availables", id_, received_at=time.time()
            )
        await asyncio.to_thread(notify, kafka_bootstrap, orders_topic, "orders", 1, received_at=time.time())

        def all_written() -> bool:
            stock = {key for key, _, _ in snapshots(kafka_bootstrap, stock_topic)}
            orders = {key for key, _, _ in snapshots(kafka_bootstrap, orders_topic)}
            return watched <= stock and "1:orders:1" in orders

        await wait_until("the stock rows and the order re-read", all_written)

    watched = {f"1:stock_availables:{id_}" for id_ in range(1, SLOW_STOCK_ROWS + 1)}
    asyncio.run(run_reader(shop, kafka_bootstrap, prefix, FreshReads(), scenario))
    stock = [at for key, at, _ in snapshots(kafka_bootstrap, stock_topic) if key in watched]
    [order_at] = [at for key, at, _ in snapshots(kafka_bootstrap, orders_topic) if key == "1:orders:1"]
    print(
        f"\norder bundle written {(max(stock) - order_at) / 1000:.1f} s before the last of {len(stock)} slow "
        f"stock rows ({STOCK_READ_LATENCY_MS} ms each)"
    )
    assert len(stock) == SLOW_STOCK_ROWS
    # One consumer for every topic would have read the order only after the five slow stock rows.
    assert order_at < max(stock)


def test_a_notification_a_later_read_answered_is_not_read_again(
    shop: SandboxServer, kafka_bootstrap: str, prefix: str
) -> None:
    orders_topic = f"{prefix}raw.prestashop.orders"
    fresh = FreshReads()
    labels = {"resource": "orders", "outcome": "fresh"}

    async def scenario() -> None:
        fresh_before = REGISTRY.get_sample_value("psinfor_poller_notifications_total", labels) or 0.0
        now = time.time()
        # The orders loop read order 2 five seconds after its webhook was received...
        fresh.record("orders", [2], now - 5)
        await asyncio.to_thread(notify, kafka_bootstrap, orders_topic, "orders", 2, received_at=now - 10)
        # ... and the shop changed it again after that read.
        await asyncio.to_thread(
            notify, kafka_bootstrap, orders_topic, "orders", 2, received_at=now - 5 + CLOCK_MARGIN_S / 2
        )

        def answered_twice() -> bool:
            after = REGISTRY.get_sample_value("psinfor_poller_notifications_total", labels) or 0.0
            bundles = [key for key, _, _ in snapshots(kafka_bootstrap, orders_topic) if key == "1:orders:2"]
            return after - fresh_before >= 1 and len(bundles) >= 1

        await wait_until("both notifications answered", answered_twice)
        await asyncio.sleep(2.0)  # a wrongly read first notification would have been written by now too
        after = REGISTRY.get_sample_value("psinfor_poller_notifications_total", labels) or 0.0
        assert after - fresh_before == 1

    asyncio.run(run_reader(shop, kafka_bootstrap, prefix, fresh, scenario))
    bundles = [headers for key, _, headers in snapshots(kafka_bootstrap, orders_topic) if key == "1:orders:2"]
    assert len(bundles) == 1, bundles  # the second notification only: the first was answered by the read
    assert bundles[0]["trigger"] == "notification"
