"""The PrestaShop sink factories: what ``sinks.main`` gets from each ``build(resources)``.

Built from real settings and a real ``PipelineProducer`` (on the session broker, hence ``integration``),
each sink names its catalogue stage, topics and Avro record; a built sink reaches the shop through the
rate-limited client (a 429 is paced and replayed below the sink, never surfacing), every sink of one
webservice key shares one limiter, and the client is closed on exit.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pipeline.producer import PipelineProducer
from pipeline.settings import KafkaSettings, RegistrySettings, Settings
from sandbox.prestashop.server import SandboxServer
from schemas.catalogue import load_catalogue
from sinks import (
    prestashop_customers,
    prestashop_inventory,
    prestashop_order_status,
    prestashop_payments,
    prestashop_products,
    prestashop_shipments,
)
from sinks.base import SinkFactory, SinkResources
from sinks.prestashop_order_status import StatusChange
from sinks.prestashop_target import TARGET, shop_limiter
from tests.conftest import NewTopicFactory
from tests.unit.test_sinks_prestashop_support import (
    KEY,
    SHOP_ID,
    admin,
    context,
    datum,
    rules,
    running_shop,
    shop_settings,
)

pytestmark = [pytest.mark.integration, pytest.mark.anyio, pytest.mark.timeout(60)]

FACTORIES: dict[str, SinkFactory] = {
    "prestashop-status": prestashop_order_status.build,
    "prestashop-tracking": prestashop_shipments.build,
    "prestashop-payment": prestashop_payments.build,
    "prestashop-payment-records": prestashop_payments.build_payments,
    "prestashop-stock": prestashop_inventory.build,
    "prestashop-products": prestashop_products.build,
    "prestashop-customers": prestashop_customers.build,
}
"""Typed as SinkFactory, so mypy checks every sink against the Sink protocol here."""

RECORDS = {
    "prestashop-status": "OrderStatusChange",
    "prestashop-tracking": "Shipment",
    "prestashop-payment": "Invoice",
    "prestashop-payment-records": "Payment",
    "prestashop-stock": "InventoryLevel",
    "prestashop-products": "Product",
    "prestashop-customers": "Customer",
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def shop() -> Iterator[SandboxServer]:
    with running_shop("8.1.7") as server:
        yield server


@pytest.fixture
def resources(
    kafka_bootstrap: str, registry_url: str, new_topic: NewTopicFactory, shop: SandboxServer
) -> Iterator[SinkResources]:
    settings = Settings(
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap),
        registry=RegistrySettings(url=registry_url),
        prestashop=shop_settings(shop),
    )
    # The echo records of the customer and product sinks live on the links topic: this test's own.
    names = {"state.erp-links": new_topic(partitions=3, config={"cleanup.policy": "compact"})}
    producer = PipelineProducer(settings.kafka, client_id_suffix="test-sinks-prestashop")
    try:
        yield SinkResources(
            settings=settings, rules=rules(), producer=producer, topic=lambda name: names.get(name, name)
        )
    finally:
        producer.close()


async def test_each_sink_names_its_catalogue_stage_topics_and_record(resources: SinkResources) -> None:
    topics = {topic.name: topic for topic in load_catalogue().topics}
    for name, factory in FACTORIES.items():
        async with factory(resources) as sink:
            assert (sink.name, sink.target, sink.record) == (name, TARGET, RECORDS[name])
            assert sink.coalesce_s == (0.25 if name == "prestashop-stock" else None)
            for source in sink.sources:
                assert topics[source].value == sink.record
                assert f"sink-{name}" in topics[source].consumers


async def test_a_built_sink_writes_through_the_rate_limited_client_and_closes_it(
    resources: SinkResources, shop: SandboxServer
) -> None:
    async with admin(shop) as a:
        order = await a.place_order(state="PS_OS_PAYMENT")
        # The shop's host throttles the state read once: paced and replayed below the sink.
        throttle = {"kind": "rate_limit", "resource": "orders", "method": "GET", "next": 1, "retry_after": 0}
        await a.call("POST", "faults", json=throttle)
        record = datum(
            "OrderStatusChange",
            "infor-order-stop",
            order_key=f"{SHOP_ID}:{order['id']}",
            payment_status="PAID",
            fulfillment_status="DELIVERED",
            lifecycle="CLOSED",
        )
        async with prestashop_order_status.build(resources) as sink, prestashop_products.build(resources):
            # Both sinks use the shop's one webservice key: one limiter.
            limiter = shop_limiter(shop_settings(shop))
            throttled = limiter.stats.throttled
            model = sink.decode(record, context())
            assert isinstance(model, StatusChange)
            assert (await sink.apply(model, context())).outcome == "written"
            assert limiter.stats.throttled == throttled + 1
        assert int((await a.row("orders", order["id"]))["current_state"]) == await a.state_id(
            "PS_OS_DELIVERED"
        )
        with pytest.raises(RuntimeError, match="closed"):
            await sink.apply(model, context())


async def test_each_webservice_key_has_its_own_limiter(shop: SandboxServer) -> None:
    one = shop_settings(shop)
    other = shop_settings(shop, ws_key="B" * 32)
    assert one.ws_key.get_secret_value() == KEY
    assert shop_limiter(one) is shop_limiter(shop_settings(shop))
    assert shop_limiter(other) is not shop_limiter(one)
