"""The Infor sinks as ``psinfor sink`` builds them: settings → M3 connection, links read from Kafka, writes
acked by the real broker, payment statuses encoded with the registry's schema.

Each ``build`` opens the gateway from ``settings.infor`` (the sandbox's ``.ionapi``) and reads
``state.erp-links`` with the real reader; a second ``build`` is a restarted process that knows only
what the broker kept.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import Schema

from pipeline.producer import PipelineProducer
from pipeline.ratelimit import RatePolicy
from pipeline.settings import InforSettings, KafkaSettings, RegistrySettings, Settings
from sandbox.infor.server import InforSandboxServer
from schemas.codec import AvroCodec
from schemas.loader import schema_string
from schemas.registry import registry_client
from sinks import infor_customers, infor_orders, infor_payments
from sinks.base import Applied, SinkResources
from sinks.infor_customers import CustomerUpsert, InforSinkOptions
from sinks.infor_orders import OrderWrite
from sinks.infor_payments import InvoiceArrived, PaymentProgress
from tests.conftest import NewTopicFactory
from tests.unit.test_sinks_infor_support import (
    OPTIONS,
    RULES,
    admin_client,
    context,
    example,
    money,
    run,
    running_sandbox,
    sandbox_order,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

FAST = InforSinkOptions(
    defaults=OPTIONS.defaults,
    wrapping_charge_id=OPTIONS.wrapping_charge_id,
    quota=RatePolicy.per_window(6000, 60.0),
)


@pytest.fixture(scope="module")
def server() -> Iterator[InforSandboxServer]:
    with running_sandbox() as running:
        yield running


@pytest.fixture
def admin(server: InforSandboxServer) -> Iterator[httpx.Client]:
    with admin_client(server) as client:
        client.put("/warehouse", json={"paused": True}).raise_for_status()
        yield client


def _read_all(bootstrap: str, topic: str, group: str) -> list[tuple[bytes | None, bytes | None]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = sorted(metadata.topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions
        }
        seen = dict.fromkeys(partitions, 0)
        records: list[tuple[bytes | None, bytes | None]] = []
        while any(seen[p] < ends[p] for p in partitions):
            message = consumer.poll(1.0)
            if message is None or message.error() is not None:
                continue
            records.append((message.key(), message.value()))
            seen[message.partition() or 0] = (message.offset() or 0) + 1
        return records
    finally:
        consumer.close()


def test_the_built_sinks_create_link_reconcile_and_remember_across_a_restart(
    admin: httpx.Client,
    server: InforSandboxServer,
    tmp_path: Path,
    kafka_bootstrap: str,
    registry_url: str,
    new_topic: NewTopicFactory,
    new_group: Callable[[], str],
) -> None:
    links = new_topic(partitions=3, config={"cleanup.policy": "compact"})
    statuses = new_topic()
    with registry_client(RegistrySettings(url=registry_url)) as registry:
        registry.register_schema(f"{statuses}-value", Schema(schema_string("OrderStatusChange"), "AVRO"))
    settings = Settings(
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap),
        registry=RegistrySettings(url=registry_url),
        infor=InforSettings(
            ionapi_path=server.write_ionapi(tmp_path / "sandbox.ionapi"), cono="100", divi="AAA"
        ),
    )
    names = {"state.erp-links": links, "canonical.order-status.v1": statuses}

    with PipelineProducer(settings.kafka, client_id_suffix="test-sinks-infor") as producer:
        resources = SinkResources(settings, RULES, producer, topic=lambda name: names.get(name, name))

        async def scenario() -> dict[str, Any]:
            results: dict[str, Any] = {}
            order = sandbox_order()
            async with infor_orders.build_with(resources, FAST) as sink:
                created = sink.decode(order, context())
                assert isinstance(created, OrderWrite)
                results["created"] = await sink.apply(created, context())
            async with infor_orders.build_with(resources, FAST) as restarted:
                later = restarted.decode(dict(order, payment_status="PAID"), context())
                assert isinstance(later, OrderWrite)
                results["later_version"] = await restarted.apply(later, context())
            async with infor_customers.build_with(resources, FAST) as customers:
                datum = example("Customer", "registered-fr")
                datum["external_ids"] = {"prestashop": "318"}
                customer = customers.decode(datum, context("1:318"))
                assert isinstance(customer, CustomerUpsert)
                results["customer"] = await customers.apply(customer, context("1:318"))
            await asyncio.to_thread(admin.post, "/warehouse/step", json={"times": 4})
            paid = example("Payment", "card-capture")
            paid["amount"] = money("65.88")
            async with infor_payments.build_with(resources, FAST) as payments:
                payment = payments.decode(paid, context())
                assert isinstance(payment, PaymentProgress)
                results["payment"] = await payments.apply(payment, context())
            async with infor_payments.build_invoices_with(resources, FAST) as invoices:
                invoice = invoices.decode(example("Invoice", "open-eur"), context())
                assert isinstance(invoice, InvoiceArrived)
                results["invoice"] = await invoices.apply(invoice, context())
            return results

        results = run(scenario())

    orno = admin.get("/orders", params={"cuor": "XKBKNABJK"}).json()[0]["ORNO"]
    assert results["created"] == Applied(
        "written", {"erp_order_number": orno, "erp_customer_number": "PS000318"}
    )
    assert results["later_version"] == Applied("unchanged", {"erp_order_number": orno})
    assert results["customer"] == Applied(
        "unchanged", {"erp_customer_number": "PS000318", "found_by": "link"}
    )
    assert results["payment"] == Applied(
        "written", {"payment_batch": "10000000877", "payment_status": "PAID"}
    )
    assert results["invoice"] == Applied("no_payment_waiting")

    written = {
        key.decode(): json.loads(value)
        for key, value in _read_all(kafka_bootstrap, links, new_group())
        if key and value
    }
    assert written["order:1:1042"]["erp_order_number"] == orno
    assert written["customer:1:318"]["erp_customer_number"] == "PS000318"
    assert written["payment:1:1042:877"]["status"] == "applied"
    [(key, body)] = _read_all(kafka_bootstrap, statuses, new_group())
    assert key == b"1:1042"
    assert body is not None
    with registry_client(RegistrySettings(url=registry_url)) as registry:
        status = AvroCodec(registry, "OrderStatusChange").decode(body, statuses)
    assert (status["payment_status"], status["erp_order_number"]) == ("PAID", orno)
