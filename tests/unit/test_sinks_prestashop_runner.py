"""The stock sink inside the real sink runner: real broker and registry, the sandbox shop over HTTP.

A burst of inventory levels for a few SKUs (all produced before the runner starts, as after an outage)
ends with the shop showing each SKU's last level, written a handful of times at most thanks to the
sink's coalescing; an item the shop does not sell lands on the DLQ as ``unknown_sku`` with suggestions
in its headers; every offset is committed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient

from pipeline import dlq as dlq_headers
from pipeline.settings import (
    DlqSettings,
    KafkaSettings,
    RegistrySettings,
    RetrySettings,
    ServiceSettings,
    Settings,
    SinkSettings,
)
from sandbox.prestashop.server import SandboxServer
from schemas.codec import AvroCodec
from schemas.registry import SubjectSchema, register_schemas, registry_client
from sinks.prestashop_inventory import RECORD, InventorySink
from sinks.prestashop_target import ShopCatalogue
from sinks.runner import SinkRunner
from tests.conftest import NewTopicFactory
from tests.unit.test_sinks_prestashop_support import Wire, admin, datum, rules, running_shop, sink_client

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

LEVELS_PER_SKU = 40
PARTITIONS = 2


@dataclass(frozen=True)
class Cluster:
    bootstrap: str
    registry_url: str
    source: str
    dead_letters: str
    group: str


@pytest.fixture
def shop() -> Iterator[SandboxServer]:
    with running_shop("8.1.7") as server:
        yield server


@pytest.fixture
def cluster(kafka_bootstrap: str, registry_url: str, new_topic: NewTopicFactory) -> Cluster:
    source = new_topic(partitions=PARTITIONS)
    with registry_client(RegistrySettings(url=registry_url)) as registry:
        register_schemas(registry, [SubjectSchema(f"{source}-value", RECORD)])
    return Cluster(kafka_bootstrap, registry_url, source, new_topic(), f"sink-test-{uuid.uuid4().hex[:8]}")


def _settings(cluster: Cluster) -> Settings:
    return Settings(
        kafka=KafkaSettings(bootstrap_servers=cluster.bootstrap),
        registry=RegistrySettings(url=cluster.registry_url),
        retry=RetrySettings(initial_backoff_s=0.05, max_backoff_s=0.2),
        service=ServiceSettings(commit_interval_s=0.2),
        dlq=DlqSettings(delivery_timeout_s=10.0),
        sinks=SinkSettings(session_timeout_s=10.0, shutdown_timeout_s=5.0),
    )


def _produce(cluster: Cluster, codec: AvroCodec, skus: list[str], unknown: str) -> dict[int, int]:
    """Every SKU's levels 1..N (on hand 100*i + level), then one level of ``unknown``; returns the end
    offset of each partition that got records."""
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "enable.idempotence": True})
    for level in range(1, LEVELS_PER_SKU + 1):
        for index, sku in enumerate(skus):
            on_hand = str(Decimal(100 * index + level))
            record = datum(
                "InventoryLevel",
                "on-hand-change",
                sku=sku,
                on_hand=on_hand,
                allocated="0",
                available=on_hand,
                meta={"version": level, "event_id": str(uuid.uuid4())},
            )
            producer.produce(cluster.source, key=sku.encode(), value=codec.encode(record, cluster.source))
    bad = datum("InventoryLevel", "on-hand-change", sku=unknown, meta={"event_id": str(uuid.uuid4())})
    producer.produce(cluster.source, key=unknown.encode(), value=codec.encode(bad, cluster.source))
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": f"wm-{uuid.uuid4().hex}"})
    try:
        marks = {
            p: consumer.get_watermark_offsets(TopicPartition(cluster.source, p), timeout=10)[1]
            for p in range(PARTITIONS)
        }
    finally:
        consumer.close()
    return {p: end for p, end in marks.items() if end > 0}  # a partition no SKU hashed to commits nothing


def _committed(cluster: Cluster) -> dict[int, int]:
    consumer = Consumer(
        {"bootstrap.servers": cluster.bootstrap, "group.id": cluster.group, "enable.auto.commit": False}
    )
    try:
        found = consumer.committed([TopicPartition(cluster.source, p) for p in range(PARTITIONS)], timeout=10)
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in found}


def _dead_letter_story(cluster: Cluster, timeout_s: float = 15.0) -> dict[str, str]:
    """The headers of the first dead-lettered record, as text."""
    reader = f"reader-{uuid.uuid4().hex}"
    consumer = Consumer(
        {"bootstrap.servers": cluster.bootstrap, "group.id": reader, "auto.offset.reset": "earliest"}
    )
    try:
        consumer.subscribe([cluster.dead_letters])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                headers = message.headers() or []
                assert isinstance(headers, list)
                return {
                    name: value.decode() if isinstance(value, bytes) else str(value)
                    for name, value in headers
                }
    finally:
        consumer.close()
    raise AssertionError(f"nothing arrived on {cluster.dead_letters}")


async def _run_until_committed(runner: SinkRunner, cluster: Cluster, ends: dict[int, int]) -> None:
    task = asyncio.create_task(runner.run())
    try:
        deadline = time.monotonic() + 45
        while True:
            found = await asyncio.to_thread(_committed, cluster)
            if all(found.get(p, -1) == end for p, end in ends.items()):
                return
            assert not task.done(), task.exception()
            assert time.monotonic() < deadline, f"committed {found}, expected {ends}"
            await asyncio.sleep(0.2)
    finally:
        runner.stop()
        await asyncio.wait_for(task, timeout=30)


async def _scenario(cluster: Cluster, shop: SandboxServer, registry: SchemaRegistryClient) -> Counter[str]:
    codec = AvroCodec(registry, RECORD)
    async with admin(shop) as a:
        combinations = (await a.rows("combinations"))[:3]
    skus = [row["reference"] for row in combinations]
    ends = await asyncio.to_thread(_produce, cluster, codec, skus, skus[0] + "X")
    wire = Wire()
    async with sink_client(shop, wire) as client:
        sink = InventorySink(client, ShopCatalogue(client), rules(), shop_id=1)
        runner = SinkRunner(
            _settings(cluster),
            sink,
            topics=[cluster.source],
            group_id=cluster.group,
            dlq_topic=cluster.dead_letters,
            codec=codec,
        )
        await _run_until_committed(runner, cluster, ends)
    async with admin(shop) as a:
        rows = await a.rows("stock_availables")
    stock = {
        row["reference"]: next(
            int(s["quantity"]) for s in rows if int(s["id_product_attribute"]) == row["id"]
        )
        for row in combinations
    }
    assert stock == {sku: 100 * index + LEVELS_PER_SKU for index, sku in enumerate(skus)}
    return Counter(path for _, path in wire.writes() if "stock_availables" in path)


def test_a_burst_ends_with_the_last_level_in_the_shop_in_a_few_writes(
    cluster: Cluster, shop: SandboxServer
) -> None:
    with registry_client(RegistrySettings(url=cluster.registry_url)) as registry:
        writes = asyncio.run(_scenario(cluster, shop, registry))

    # 40 levels per SKU collapse into very few writes (one per coalescing window that had news).
    assert len(writes) == 3
    assert all(count <= 3 for count in writes.values()), writes
    story = _dead_letter_story(cluster)
    assert story[dlq_headers.REASON] == "unknown_sku"
    assert story[dlq_headers.STAGE] == "prestashop-stock"
    assert story[dlq_headers.DETAIL_PREFIX + "suggestions"]
