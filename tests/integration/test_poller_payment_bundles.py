"""Card payments to ``canonical.payment.v1``: the poller writes payment bundles, the flow maps them.

The PrestaShop sandbox (real HTTP) holds a card order, paid at checkout (the shop recorded one payment),
and a bank-wire order (no payment yet). The poller's orders loop (in process, real broker) writes both
order bundles and one payment bundle; the card order is then shipped, and the next pass writes its
new version with the same payment again. The processor worker (``python -m processors.main --flows
prestashop_payments``, real broker and registry) turns the two copies into exactly ONE canonical
Payment, the shop's payment id as its source id: the second copy has the same key and version.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka.admin import AdminClient
from pydantic import SecretStr

from connectors.prestashop.client import PrestaShopClient
from ingest.prestashop_poller.changes import ChangesPoller
from pipeline.producer import PipelineProducer
from pipeline.settings import KafkaSettings, PollerSettings, RegistrySettings
from pipeline.topics import apply_topics
from pipeline.watermarks import WatermarkStore
from sandbox.prestashop.config import KeyPermissions, SandboxConfig
from sandbox.prestashop.server import SandboxServer
from schemas.catalogue import load_catalogue
from schemas.codec import AvroCodec
from schemas.registry import SubjectSchema, register_schemas, registry_client
from tests.integration.processor_worker import processor_worker
from tests.integration.test_processor_runtime_production import _consume, _headers, _key, _value

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

KEY = "PAYMENTBUNDLESKEY0123456789ABCDE"
TOPICS = ("raw.prestashop.orders", "state.watermarks", "canonical.payment.v1", "dlq.processors")


@pytest.fixture
def prefix(kafka_bootstrap: str, registry_url: str) -> str:
    """A unique prefix with this test's catalogue topics created under it, the Payment schema registered."""
    prefix = f"t.payments.{uuid.uuid4().hex[:10]}."
    specs = [s for s in load_catalogue().topic_specs(prefix=prefix) if s.name[len(prefix) :] in TOPICS]
    apply_topics(AdminClient({"bootstrap.servers": kafka_bootstrap}), specs)
    with registry_client(RegistrySettings(url=registry_url)) as client:
        results = register_schemas(client, [SubjectSchema(f"{prefix}canonical.payment.v1-value", "Payment")])
    assert all(result.outcome in ("registered", "unchanged") for result in results), results
    return prefix


@pytest.fixture
def shop() -> Iterator[SandboxServer]:
    config = SandboxConfig(keys=(KeyPermissions(KEY),), products=5, customers=3, orders=0, seed=5)
    with SandboxServer(config) as server:
        yield server


def admin(shop: SandboxServer, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    response = httpx.request(method, f"{shop.base_url}/_sandbox/{path}", json=body, timeout=10)
    assert response.is_success, f"{method} {path}: {response.status_code} {response.text}"
    return response.json()


def place(shop: SandboxServer, module: str) -> dict[str, Any]:
    lines = [{"product_id": 1, "combination_id": 0, "quantity": 2}]
    found: dict[str, Any] = admin(
        shop, "POST", "orders", {"customer_id": 1, "lines": lines, "payment_module": module}
    )
    return found


def poll_once(shop: SandboxServer, kafka_bootstrap: str, prefix: str) -> int:
    """One pass of the orders loop from the stored watermark; returns how many order versions it wrote."""

    async def run() -> int:
        kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
        producer = PipelineProducer(kafka, client_id_suffix="test-payment-bundles")
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                client = PrestaShopClient(http, shop.base_url, SecretStr(KEY), page_size=50)
                store = WatermarkStore(kafka, producer, f"{prefix}state.watermarks")
                await asyncio.to_thread(store.load)
                settings = PollerSettings(topic_prefix=prefix, overlap_s=1)
                poller = ChangesPoller(
                    client, producer, store, settings=settings, shop_id=1, page_size=50, poll_run_id="test"
                )
                poller.restore()
                return (await poller.poll_once()).written
        finally:
            await asyncio.to_thread(producer.close, 10.0)

    return asyncio.run(run())


def test_a_card_payment_written_with_every_order_version_becomes_one_canonical_payment(
    kafka_bootstrap: str,
    registry_url: str,
    prefix: str,
    shop: SandboxServer,
    new_group: Callable[[], str],
    tmp_path: Path,
) -> None:
    card = place(shop, "stripe_official")  # paid at checkout: the shop records the payment
    place(shop, "ps_wirepayment")  # pays later: no payment yet
    [payment] = [
        p for p in admin(shop, "GET", "resources/order_payments") if p["order_reference"] == card["reference"]
    ]
    assert poll_once(shop, kafka_bootstrap, prefix) == 2
    time.sleep(1.1)  # the shop's date_upd has whole seconds: the next version must fall in a later one
    admin(shop, "POST", f"orders/{card['id']}/state", {"state": "PS_OS_SHIPPING"})
    assert poll_once(shop, kafka_bootstrap, prefix) == 1

    raw_topic = f"{prefix}raw.prestashop.orders"
    with processor_worker(
        bootstrap=kafka_bootstrap,
        registry_url=registry_url,
        flows=["prestashop_payments"],
        app_id=new_group(),
        topics={name: f"{prefix}{name}" for name in TOPICS},
        log=tmp_path / "worker.log",
    ) as worker:
        deadline = time.monotonic() + 60
        raw = _consume(kafka_bootstrap, raw_topic, 5, deadline, worker)
        canonical = _consume(kafka_bootstrap, f"{prefix}canonical.payment.v1", 1, deadline, worker)
        dead = _consume(kafka_bootstrap, f"{prefix}dlq.processors", 0, time.monotonic() + 1, worker)

    payment_key = f"1:order_payments:{payment['id']}".encode()
    assert len(raw) == 5  # two versions of the card order, one of the wire order, the payment twice
    assert {_key(m) for m in raw if _key(m).startswith(b"1:order_payments:")} == {payment_key}  # none: wire
    copies = [m for m in raw if _key(m) == payment_key]
    assert len(copies) == 2
    assert {_headers(m)["event_type"] for m in copies} == {b"order_payment.bundle"}
    # Written with each version of its order (the second one shipped).
    assert len({json.loads(_value(m))["order"]["current_state"] for m in copies}) == 2
    assert dead == []
    [record] = canonical
    assert _key(record) == f"1:{card['id']}".encode()
    with registry_client(RegistrySettings(url=registry_url)) as client:
        datum = AvroCodec(client, "Payment").decode(_value(record), f"{prefix}canonical.payment.v1")
    assert datum["meta"]["source_id"] == str(payment["id"])
    assert datum["external_ids"]["prestashop"] == str(payment["id"])
    assert datum["amount"]["amount"] == Decimal(card["total_paid_tax_incl"])
    assert datum["recorded_by"] == "PRESTASHOP"
