"""Customers, addresses and products reach their raw topics without any webhook: the backstop loops.

The PrestaShop sandbox (real HTTP) holds seeded customers and products; the poller's customers,
addresses and products loops run in process against the real broker, with no notification reader.
A first run writes nothing of what existed before it (the loops are a backstop of the notifications,
not an initial load). Then the back office renames a customer, a webservice client moves another
customer's address and the back office renames a product: the next passes write the customer bundle
of each customer (the address under its customer's key) and the product bundle, once; a later pass and
a restarted poller write nothing again.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient
from pydantic import SecretStr

from connectors.prestashop.client import PrestaShopClient
from ingest.prestashop_poller.changes import BACKSTOP_FEEDS, ChangesPoller
from ingest.prestashop_poller.freshness import FreshReads
from pipeline.producer import PipelineProducer
from pipeline.settings import KafkaSettings, PollerSettings
from pipeline.topics import apply_topics
from pipeline.watermarks import WatermarkStore
from sandbox.prestashop.config import KeyPermissions, SandboxConfig
from sandbox.prestashop.server import SandboxServer
from schemas.catalogue import load_catalogue
from tests.integration.test_processor_runtime_production import _headers, _key, _value

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

KEY = "BACKSTOPLOOPSKEY0123456789ABCDEF"
TOPICS = ("raw.prestashop.customers", "raw.prestashop.products", "state.watermarks")


@pytest.fixture
def prefix(kafka_bootstrap: str) -> str:
    prefix = f"t.backstop.{uuid.uuid4().hex[:10]}."
    specs = [s for s in load_catalogue().topic_specs(prefix=prefix) if s.name[len(prefix) :] in TOPICS]
    apply_topics(AdminClient({"bootstrap.servers": kafka_bootstrap}), specs)
    return prefix


@pytest.fixture
def shop() -> Iterator[SandboxServer]:
    config = SandboxConfig(keys=(KeyPermissions(KEY),), products=3, customers=3, orders=0, seed=11)
    with SandboxServer(config) as server:
        yield server


def passes(
    shop: SandboxServer,
    kafka_bootstrap: str,
    prefix: str,
    edit: Callable[[PrestaShopClient], Any] | None = None,
    fresh: FreshReads | None = None,
) -> dict[str, int]:
    """Fresh pollers of the three backstop feeds restore from the store and run one pass each, after
    ``edit`` (if any) changed the shop through the webservice; returns the versions each wrote."""

    async def run() -> dict[str, int]:
        kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
        producer = PipelineProducer(kafka, client_id_suffix="test-backstop")
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                client = PrestaShopClient(http, shop.base_url, SecretStr(KEY), page_size=50)
                if edit is not None:
                    await edit(client)
                store = WatermarkStore(kafka, producer, f"{prefix}state.watermarks")
                await asyncio.to_thread(store.load)
                settings = PollerSettings(topic_prefix=prefix, overlap_s=1)
                written: dict[str, int] = {}
                for feed in BACKSTOP_FEEDS:
                    poller = ChangesPoller(
                        client,
                        producer,
                        store,
                        settings=settings,
                        shop_id=1,
                        page_size=50,
                        poll_run_id="test",
                        feed=feed,
                        fresh=fresh,
                    )
                    poller.restore()
                    written[feed.resource] = (await poller.poll_once()).written
                return written
        finally:
            await asyncio.to_thread(producer.close, 10.0)

    return asyncio.run(run())


def admin_patch(shop: SandboxServer, path: str, fields: dict[str, str]) -> None:
    response = httpx.patch(f"{shop.base_url}/_sandbox/{path}", json={"fields": fields}, timeout=10)
    assert response.is_success, response.text


def read_topic(bootstrap: str, topic: str) -> list[tuple[bytes, dict[str, bytes], dict[str, Any]]]:
    """Every record of ``topic`` (key, headers, JSON value), read to the end."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex, "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    found: list[tuple[bytes, dict[str, bytes], dict[str, Any]]] = []
    quiet_since = time.monotonic()
    try:
        while time.monotonic() - quiet_since < 3.0:
            message = consumer.poll(0.2)
            if message is None or message.error() is not None:
                continue
            quiet_since = time.monotonic()
            found.append((_key(message), _headers(message), json.loads(_value(message))))
    finally:
        consumer.close()
    return found


def test_changes_without_webhooks_reach_the_raw_topics_once_and_a_first_run_loads_nothing_older(
    kafka_bootstrap: str, prefix: str, shop: SandboxServer
) -> None:
    time.sleep(1.5)  # the seeded rows fall out of the first window's overlap (1 s, whole seconds)
    assert passes(shop, kafka_bootstrap, prefix) == {"customers": 0, "addresses": 0, "products": 0}

    admin_patch(shop, "customers/1", {"lastname": "Backstop"})
    admin_patch(shop, "products/2", {"reference": "BACKSTOP-2"})
    addresses = httpx.get(f"{shop.base_url}/_sandbox/resources/addresses", timeout=10).json()
    moved = next(a for a in addresses if int(a["id_customer"]) == 2)

    async def move_address(client: PrestaShopClient) -> None:
        await client.update_address(int(moved["id"]), {"address1": "7 Backstop Lane"})

    assert passes(shop, kafka_bootstrap, prefix, move_address) == {
        "customers": 1,
        "addresses": 1,
        "products": 1,
    }
    # Nothing new: the next pass (a restarted poller, restored from state.watermarks) writes nothing.
    assert passes(shop, kafka_bootstrap, prefix) == {"customers": 0, "addresses": 0, "products": 0}

    customers = read_topic(kafka_bootstrap, f"{prefix}raw.prestashop.customers")
    assert sorted(key for key, _, _ in customers) == [b"1:customers:1", b"1:customers:2"]
    for key, headers, value in customers:
        assert headers["event_type"] == b"customer.bundle"
        assert (headers["source"], headers["trigger"]) == (b"prestashop-poll", b"poll")
        if key == b"1:customers:1":
            assert value["customer"]["lastname"] == "Backstop"
        else:
            assert "7 Backstop Lane" in [a["address1"] for a in value["addresses"]]
    [(key, headers, value)] = read_topic(kafka_bootstrap, f"{prefix}raw.prestashop.products")
    assert (key, headers["event_type"]) == (b"1:products:2", b"product.bundle")
    assert value["product"]["reference"] == "BACKSTOP-2"


def test_a_version_a_notification_read_already_wrote_is_not_read_again(
    kafka_bootstrap: str, prefix: str, shop: SandboxServer
) -> None:
    time.sleep(1.5)
    fresh = FreshReads()
    assert passes(shop, kafka_bootstrap, prefix, fresh=fresh) == {
        "customers": 0,
        "addresses": 0,
        "products": 0,
    }
    admin_patch(shop, "customers/1", {"lastname": "Answered"})
    admin_patch(shop, "customers/2", {"lastname": "Unanswered"})
    # The notification reader re-read customer 1 (and wrote its bundle) after the change's second was
    # over, with the clock margin: the loop's version of it is answered. Customer 2 was not re-read.
    time.sleep(2.1)
    fresh.record("customers", [1], fresh.now())
    assert passes(shop, kafka_bootstrap, prefix, fresh=fresh) == {
        "customers": 1,
        "addresses": 0,
        "products": 0,
    }

    [(key, _, value)] = read_topic(kafka_bootstrap, f"{prefix}raw.prestashop.customers")
    assert key == b"1:customers:2"
    assert value["customer"]["lastname"] == "Unanswered"
