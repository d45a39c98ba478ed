"""The anomaly history: order values per shop, catalogue prices, stock levels; seeding; the runner feeding it.

Orders are mapped by the real orders flow from the unit tests' Lyon bundle (65.88 EUR) and from small
one-mug orders of the same shop (11.88 or 23.76 EUR), so the history holds exactly what the runner
would feed it.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from pipeline.dlq import DeadLetterProducer, DlqLimit
from pipeline.producer import Delivery, DeliveryCallback, HeaderList, PipelineProducer
from pipeline.records import SourceRecord
from pipeline.retry import Backoff
from pipeline.settings import DlqSettings, RetrySettings
from processors import prestashop_orders as orders_flow
from processors.history import AnomalyHistory, SeedCount, TailRecord, seed_from_records
from processors.runner import FlowRunner
from processors.staleness import VersionTable
from rules.anomalies import ORDER_VALUE_OUTLIER, PRICE_DEVIATION, STOCK_DROP, Anomaly
from rules.engine import Rules, load_rules
from schemas.codec import AvroCodec, AvroDatum
from schemas.examples import load_examples
from schemas.loader import schema_string
from tests.unit.test_processors_prestashop_orders import SNAPSHOT_HEADERS, assert_valid, lyon_bundle

INGESTED = datetime(2024, 5, 2, 9, 30, tzinfo=UTC)
D = Decimal


@pytest.fixture(scope="module")
def rules() -> Rules:
    return load_rules()


def small_bundle(order_id: int, mugs: int) -> dict[str, Any]:
    """The Lyon customer's order of ``mugs`` ceramic mugs (9.90 + 20 % VAT each), no shipping charged."""
    bundle = copy.deepcopy(lyon_bundle())
    mug = bundle["order_details"][1]
    excl, incl = D("9.90") * mugs, D("11.88") * mugs
    mug.update(
        id_order=str(order_id),
        product_quantity=str(mugs),
        total_price_tax_excl=str(excl),
        total_price_tax_incl=str(incl),
    )
    bundle["order_details"] = [mug]
    bundle["order"].update(
        id=order_id,
        total_products=str(excl),
        total_products_wt=str(incl),
        total_paid=str(incl),
        total_paid_tax_incl=str(incl),
        total_paid_tax_excl=str(excl),
        total_paid_real=str(incl),
        total_shipping="0",
        total_shipping_tax_incl="0",
        total_shipping_tax_excl="0",
    )
    return bundle


def order_of(bundle: dict[str, Any], rules: Rules, history: AnomalyHistory | None = None) -> dict[str, Any]:
    event = orders_flow.decode(json.dumps(bundle).encode(), SNAPSHOT_HEADERS)
    assert isinstance(event, orders_flow.OrderEvent)
    datum = orders_flow.to_order(event, rules, ingested_at=INGESTED, correlation_id="c", history=history)
    assert_valid(datum)
    return datum


def usual_orders(history: AnomalyHistory, rules: Rules, count: int, first_id: int = 2000) -> None:
    """``count`` usual orders of shop 1: two of one mug for each of two mugs (median 11.88 EUR)."""
    for number in range(count):
        history.observe(
            "Order", order_of(small_bundle(first_id + number, 2 if number % 3 == 0 else 1), rules)
        )


def product(sku: str, amount: str, currency: str, shop_id: str | None) -> AvroDatum:
    datum = copy.deepcopy(load_examples("Product")[1].datum())
    datum["sku"] = sku
    datum["price"] = {"amount": D(amount), "currency": currency}
    datum["meta"]["shop_id"] = shop_id
    return datum


def codes(order: Mapping[str, Any]) -> list[str]:
    return [flag["code"] for flag in order["anomalies"]]


# --- order value --------------------------------------------------------------------------------------


def test_an_outlier_order_is_flagged_only_once_the_shop_has_enough_history(rules: Rules) -> None:
    history = AnomalyHistory(rules.anomalies.order_value_window)
    usual_orders(history, rules, 29)
    assert codes(order_of(lyon_bundle(), rules, history)) == []  # 29 < min_history 30: no basis yet

    usual_orders(history, rules, 1, first_id=3000)
    flagged = order_of(lyon_bundle(), rules, history)
    assert codes(flagged) == [ORDER_VALUE_OUTLIER]
    (flag,) = flagged["anomalies"]
    assert flag["score"] > 3.5
    assert "order value 65.880000 EUR vs median 11.880000 EUR for shop 1 over 30 orders" in flag["reason"]
    as_flag = Anomaly(flag["code"], flag["score"], flag["reason"])
    assert rules.anomalies.destination([as_flag], "canonical.order.v1") == "review.order.v1"
    # A usual order of the same shop stays unflagged against the same history.
    assert codes(order_of(small_bundle(4000, 1), rules, history)) == []


def test_other_shops_orders_are_no_history_for_this_one(rules: Rules) -> None:
    history = AnomalyHistory()
    for number in range(40):
        other = order_of(small_bundle(5000 + number, 1), rules)
        other["meta"]["shop_id"] = "2"
        other["order_key"] = f"2:{5000 + number}"
        history.observe("Order", other)
    assert len(history.order_values("2")) == 40
    assert history.order_values("1") == []
    assert codes(order_of(lyon_bundle(), rules, history)) == []


def test_a_new_version_of_an_order_replaces_its_value_and_is_no_evidence_about_itself(rules: Rules) -> None:
    history = AnomalyHistory(order_window=3)
    for number, mugs in ((1, 1), (2, 2), (3, 1)):
        history.observe("Order", order_of(small_bundle(number, mugs), rules))
    assert history.order_values("1") == [D("11.880000"), D("23.760000"), D("11.880000")]
    history.observe("Order", order_of(small_bundle(1, 2), rules))  # order 1 again, now two mugs
    assert history.order_values("1") == [D("23.760000"), D("11.880000"), D("23.760000")]
    history.observe("Order", order_of(small_bundle(4, 1), rules))  # the window keeps the last three
    assert history.order_values("1") == [D("11.880000"), D("23.760000"), D("11.880000")]
    assert history.order_values("1", excluding="1:1") == [D("11.880000"), D("11.880000")]


def test_an_order_already_in_the_history_is_still_judged_against_the_others(rules: Rules) -> None:
    history = AnomalyHistory()
    usual_orders(history, rules, 30)
    history.observe("Order", order_of(lyon_bundle(), rules))  # an earlier version of order 1042
    assert len(history.order_values("1")) == 31
    assert codes(order_of(lyon_bundle(), rules, history)) == [ORDER_VALUE_OUTLIER]


# --- unit price against the catalogue -----------------------------------------------------------------


def without_catalogue_prices() -> dict[str, Any]:
    """The Lyon order as the webservice creates it for a marketplace: no ``original_product_price``."""
    bundle = lyon_bundle()
    for detail in bundle["order_details"]:
        detail["original_product_price"] = "0.000000"
    return bundle


def test_a_unit_price_far_from_the_last_catalogue_price_is_flagged(rules: Rules) -> None:
    history = AnomalyHistory()
    assert codes(order_of(without_catalogue_prices(), rules, history)) == []
    history.observe("Product", product("TSH-ORG-M-BLU", "50.00", "EUR", "1"))
    history.observe("Product", product("MUG-CER-350", "9.90", "EUR", "1"))
    flagged = order_of(without_catalogue_prices(), rules, history)
    assert codes(flagged) == [PRICE_DEVIATION]
    assert flagged["anomalies"][0]["reason"].startswith(
        "TSH-ORG-M-BLU: unit price 20.000000 vs catalogue 50.00"
    )
    assert flagged["anomalies"][0]["score"] == 0.6


def test_the_catalogue_price_counts_only_in_the_orders_currency_and_the_shops_price_first(
    rules: Rules,
) -> None:
    history = AnomalyHistory()
    history.observe("Product", product("TSH-ORG-M-BLU", "50.00", "USD", "1"))
    assert codes(order_of(without_catalogue_prices(), rules, history)) == []
    history.observe("Product", product("TSH-ORG-M-BLU", "50.00", "EUR", None))  # the ERP's list price
    assert codes(order_of(without_catalogue_prices(), rules, history)) == [PRICE_DEVIATION]
    assert history.catalogue_price("TSH-ORG-M-BLU", "2", "EUR") == D("50.00")
    assert history.catalogue_price("TSH-ORG-M-BLU", "1", "USD") == D("50.00")
    history.observe("Product", product("TSH-ORG-M-BLU", "21.00", "EUR", "1"))  # the shop's own wins
    assert history.catalogue_price("TSH-ORG-M-BLU", "1", "EUR") == D("21.00")
    assert codes(order_of(without_catalogue_prices(), rules, history)) == []


def test_the_lines_own_catalogue_price_comes_before_the_history(rules: Rules) -> None:
    history = AnomalyHistory()
    history.observe("Product", product("TSH-ORG-M-BLU", "50.00", "EUR", "1"))
    assert codes(order_of(lyon_bundle(), rules, history)) == []  # the line says 20.00, as charged


# --- stock levels -------------------------------------------------------------------------------------


def test_a_stock_drop_beyond_the_threshold_is_flagged_against_the_last_level(rules: Rules) -> None:
    history = AnomalyHistory()
    level = copy.deepcopy(load_examples("InventoryLevel")[1].datum())
    sku, warehouse = level["sku"], level["warehouse"]
    assert history.last_available(sku, warehouse) is None
    level["available"] = D(500)
    history.observe("InventoryLevel", level)
    assert history.last_available(sku, warehouse) == D(500)
    drop = rules.anomalies.stock_drop(sku, warehouse, history.last_available(sku, warehouse), D(20))
    assert drop is not None
    assert drop.code == STOCK_DROP
    assert f"{sku}@{warehouse}: stock fell from 500 to 20" in drop.reason
    small = rules.anomalies.stock_drop(sku, warehouse, history.last_available(sku, warehouse), D(300))
    assert small is None  # 40 % is within the rules' 80 %
    assert history.last_available(sku, "OTHER") is None
    level["available"] = D(20)
    history.observe("InventoryLevel", level)
    assert history.last_available(sku, warehouse) == D(20)


# --- seeding ------------------------------------------------------------------------------------------


@pytest.fixture
def registry() -> SchemaRegistryClient:
    client: SchemaRegistryClient = SchemaRegistryClient.new_client({"url": "mock://history-unit"})
    for topic, record in (
        ("canonical.order.v1", "Order"),
        ("canonical.product.v1", "Product"),
        ("canonical.inventory.v1", "InventoryLevel"),
    ):
        client.register_schema(f"{topic}-value", Schema(schema_string(record), "AVRO"))
    return client


TOPICS = {
    "Order": "canonical.order.v1",
    "Product": "canonical.product.v1",
    "InventoryLevel": "canonical.inventory.v1",
}


def seed_examples(
    history: AnomalyHistory, registry: SchemaRegistryClient, record: str, *, unreadable_at: int | None = None
) -> SeedCount:
    """Seed ``history`` from the schema examples of ``record`` as written to its canonical topic."""
    codec, topic = AvroCodec(registry, record), TOPICS[record]
    examples = sorted(load_examples(record), key=lambda example: example.name)
    records = [
        TailRecord(0, offset, 1_714_000_000_000 + offset, codec.encode(example.datum(), topic))
        for offset, example in enumerate(examples)
    ]
    if unreadable_at is not None:
        records.insert(unreadable_at, TailRecord(0, 99, 1_714_000_000_500, b"not an avro record"))
    return seed_from_records(history, record, topic, records, codec)


def test_seeding_reads_back_the_canonical_records_and_skips_unreadable_ones(
    registry: SchemaRegistryClient,
) -> None:
    history = AnomalyHistory()
    assert seed_examples(history, registry, "Order", unreadable_at=1) == SeedCount(observed=2, skipped=1)
    assert history.order_values("1") == [D("65.88")]
    assert history.order_values("2") == [D("292.2218")]  # the USD order, by its base-currency total

    assert seed_examples(history, registry, "Product") == SeedCount(observed=2)
    assert history.catalogue_price("TSH-ORG-M-BLU", "1", "EUR") == D("20.00")
    assert history.catalogue_price("BEAN-ETH-1KG", "1", "EUR") == D("13.4200")  # the ERP's
    assert history.catalogue_price("BEAN-ETH-1KG", "1", "USD") is None

    assert seed_examples(history, registry, "InventoryLevel") == SeedCount(observed=2)
    assert history.last_available("BEAN-ETH-1KG", "NJ1") == D("34.5")
    assert history.last_available("TSH-ORG-M-BLU", "LYO") == D(128)


# --- the runner feeds it ------------------------------------------------------------------------------


class _Producer:
    """Acknowledges every record at once and keeps (topic, key) in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: HeaderList,
        on_delivery: DeliveryCallback,
    ) -> None:
        assert key is not None
        self.sent.append((topic, key))
        on_delivery(Delivery(topic, 0, len(self.sent) - 1, None))


class _Versions:
    """No version known yet; remembers nothing (staleness is not under test here)."""

    def last(self, key: bytes) -> int | None:
        return None

    async def remember(self, versions: Mapping[bytes, tuple[int, int]], *, timeout_s: float) -> None:
        return None


def raw(bundle: dict[str, Any], offset: int) -> SourceRecord:
    key = f"1:orders:{bundle['order']['id']}".encode()
    return SourceRecord(
        "raw.prestashop.orders", 0, offset, key, json.dumps(bundle).encode(), SNAPSHOT_HEADERS
    )


def orders_runner(
    rules: Rules, registry: SchemaRegistryClient
) -> tuple[_Producer, AnomalyHistory, FlowRunner[Any]]:
    """The orders flow's runner routing to ``review.order.v1``, on a recording producer and a fresh
    history."""
    registry.register_schema("review.order.v1-value", Schema(schema_string("Order"), "AVRO"))
    producer = _Producer()
    history = AnomalyHistory(rules.anomalies.order_value_window)
    runner: FlowRunner[Any] = FlowRunner(
        orders_flow.FLOW,
        output="canonical.order.v1",
        codec=AvroCodec(registry, "Order"),
        producer=cast(PipelineProducer, producer),
        dead_letters=cast(DeadLetterProducer, object()),
        dlq_limit=DlqLimit(DlqSettings()),
        versions=cast(VersionTable, _Versions()),
        backoff=Backoff(RetrySettings()),
        rules=rules,
        review_output="review.order.v1",
        history=history,
    )
    return producer, history, runner


def test_the_runner_feeds_canonical_orders_and_routes_the_outlier_to_review(
    rules: Rules, registry: SchemaRegistryClient
) -> None:
    producer, history, runner = orders_runner(rules, registry)
    usual = [raw(small_bundle(2000 + n, 2 if n % 3 == 0 else 1), n) for n in range(30)]
    asyncio.run(runner.handle([*usual, raw(lyon_bundle(), 30), raw(small_bundle(2100, 1), 31)]))

    assert [topic for topic, _ in producer.sent].count("canonical.order.v1") == 31
    assert [entry for entry in producer.sent if entry[0] == "review.order.v1"] == [
        ("review.order.v1", b"1:1042")
    ]
    # The history holds what went to canonical.order.v1 (what a restart reads back), not the held order.
    values = history.order_values("1")
    assert len(values) == 31
    assert D("65.88") not in values


def test_a_later_version_of_a_held_order_stays_held_even_when_its_flags_would_not_hold_it(
    rules: Rules, registry: SchemaRegistryClient
) -> None:
    producer, history, runner = orders_runner(rules, registry)
    usual = [raw(small_bundle(2000 + n, 2 if n % 3 == 0 else 1), n) for n in range(30)]
    asyncio.run(runner.handle([*usual, raw(lyon_bundle(), 30)]))
    assert producer.sent[-1] == ("review.order.v1", b"1:1042")
    # A later version of order 1042, of an ordinary value: unflagged, yet its order is held.
    later = small_bundle(1042, 1)
    later["order"]["date_upd"] = "2030-01-01 00:00:00"
    asyncio.run(runner.handle([raw(later, 31), raw(small_bundle(2100, 1), 32)]))
    assert producer.sent[-2:] == [("review.order.v1", b"1:1042"), ("canonical.order.v1", b"1:2100")]
    assert history.held("Order", b"1:1042")
    assert not history.held("Order", b"1:2100")
