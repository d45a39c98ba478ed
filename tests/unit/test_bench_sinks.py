"""The pure parts of ``bench/sinks.py``: options, the records it produces, the metrics it reads, its report.

The records are checked the way the worker will see them: Avro round trip (confluent-kafka's in-memory
registry) and the production sinks' own ``decode`` functions, so a bench record the sink would skip or
refuse fails here, not after minutes of a bench run. No broker, no sandbox, no timing.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from bench.sinks import (
    KIND_NAMES,
    KINDS,
    M3_ITEMS,
    STATUS_STEPS,
    BenchConfig,
    Ceiling,
    OrdersInM3,
    QuotaRun,
    SinkRun,
    TargetCounts,
    bench_reference,
    final_stock,
    metric_by_label,
    parse_args,
    sales_orders,
    sellable_skus,
    status_changes,
    stock_levels,
    table,
)
from rules.canonical_status import FulfillmentStatus, Lifecycle, PaymentStatus
from rules.engine import load_rules
from schemas.codec import AvroCodec, AvroDatum
from schemas.loader import schema_string
from sinks import infor_orders, prestashop_inventory, prestashop_order_status
from sinks.infor_orders import OrderWrite, to_order_write
from sinks.prestashop_inventory import StockLevel, to_stock_level
from sinks.prestashop_order_status import StatusChange, to_status_change
from sinks.registry import SINKS

BROKER = ["--bootstrap", "127.0.0.1:9092", "--registry", "http://127.0.0.1:8081/apis/ccompat/v7"]


def _round_trip(record: str, datum: AvroDatum) -> AvroDatum:
    client: SchemaRegistryClient = SchemaRegistryClient.new_client({"url": f"mock://bench-sinks-{record}"})
    client.register_schema("bench-value", Schema(schema_string(record), "AVRO"))
    codec = AvroCodec(client, record)
    return codec.decode(codec.encode(datum, "bench"), "bench")


# -- options -----------------------------------------------------------------------------------------


def test_defaults_run_every_kind_at_16_and_64_keys_with_20_ms_and_the_600_per_minute_quota() -> None:
    config = parse_args(BROKER)
    assert config.kinds == KIND_NAMES == ("stock", "status", "orders")
    assert config.keys_in_flight == (16, 64)
    assert (config.records, config.latency_ms, config.quota) == (600, 20, 600)
    assert config.quota_limiter_rpm == 600  # the sink is told the quota, as configured in production


def test_options_are_parsed_into_the_config() -> None:
    config = parse_args(
        [
            *BROKER,
            "--records",
            "50",
            "--latency-ms",
            "0",
            "--keys-in-flight",
            "4,1,4",
            "--kinds",
            "orders,stock",
            "--quota",
            "0",
            "--quota-ceiling-factor",
            "1.5",
        ]
    )
    assert config.records == 50
    assert config.latency_ms == 0
    assert config.keys_in_flight == (4, 1)  # repeats dropped, order kept
    assert config.kinds == ("orders", "stock")
    assert config.quota == 0
    assert BenchConfig("b:1", "http://r", quota=600, quota_ceiling_factor=1.5).quota_limiter_rpm == 900


@pytest.mark.parametrize(
    "bad",
    [
        ["--kinds", "stock,nope"],
        ["--keys-in-flight", "0"],
        ["--keys-in-flight", "16,x"],
        ["--records", "0"],
        ["--shop-rps", "-1"],
        [],  # --bootstrap/--registry missing
    ],
)
def test_bad_options_exit_with_a_usage_error(bad: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    argv = bad if not bad else [*BROKER, *bad]
    with pytest.raises(SystemExit) as exited:
        parse_args(argv)
    assert exited.value.code == 2
    assert "usage: python -m bench.sinks" in capsys.readouterr().err


def test_each_kind_names_a_production_sink_with_its_source_and_record() -> None:
    modules = {"stock": prestashop_inventory, "status": prestashop_order_status, "orders": infor_orders}
    for kind, module in modules.items():
        spec = KINDS[kind]
        assert spec.sink == module.NAME
        assert spec.sink in SINKS
        assert (spec.source, spec.record) == (module.SOURCE_TOPIC, module.RECORD)
    assert [KINDS[kind].dlq for kind in KIND_NAMES] == [
        "dlq.sink-prestashop",
        "dlq.sink-prestashop",
        "dlq.sink-infor",
    ]
    assert [KINDS[kind].needs_links for kind in KIND_NAMES] == [False, False, True]


# -- records -----------------------------------------------------------------------------------------


def test_stock_levels_cycle_over_the_skus_newer_each_time_and_the_sink_takes_them() -> None:
    levels = stock_levels(["A", "B", "C"], 8)
    assert [sku for sku, _ in levels] == ["A", "B", "C", "A", "B", "C", "A", "B"]
    versions_of_a = [datum["meta"]["version"] for sku, datum in levels if sku == "A"]
    assert versions_of_a == [1, 2, 3]
    assert len({datum["meta"]["event_id"] for _, datum in levels}) == 8
    assert final_stock(levels) == {"A": 30, "B": 31, "C": 22}
    for sku, datum in levels:
        decoded = _round_trip("InventoryLevel", datum)
        model = to_stock_level(decoded, warehouse="LYO")  # shop 1's warehouse in the default rules
        assert isinstance(model, StockLevel)
        assert model.sku == sku
        assert model.quantity == int(datum["on_hand"])
    with pytest.raises(ValueError, match="no SKUs"):
        stock_levels([], 3)


def test_status_changes_pay_then_ship_then_deliver_every_order_and_the_sink_takes_them() -> None:
    changes = status_changes([7, 9], 5)
    assert [key for key, _ in changes] == ["1:7", "1:9", "1:7", "1:9", "1:7"]
    steps = [
        (datum["payment_status"], datum["fulfillment_status"], datum["lifecycle"]) for _, datum in changes
    ]
    assert steps == [STATUS_STEPS[0], STATUS_STEPS[0], STATUS_STEPS[1], STATUS_STEPS[1], STATUS_STEPS[2]]
    for key, datum in changes:
        model = to_status_change(_round_trip("OrderStatusChange", datum), shop_id=1)
        assert isinstance(model, StatusChange), model  # not an echo, not another shop's
        assert model.order_key == key
    last = to_status_change(changes[-1][1], shop_id=1)
    assert isinstance(last, StatusChange)
    assert (last.desired.payment, last.desired.fulfillment, last.desired.lifecycle) == (
        PaymentStatus.PAID,
        FulfillmentStatus.DELIVERED,
        Lifecycle.CLOSED,
    )
    with pytest.raises(ValueError, match="need 3 orders"):
        status_changes([1, 2], 7)


def test_sales_orders_are_distinct_shop_orders_over_fewer_customers_and_the_sink_maps_them() -> None:
    orders = sales_orders(6, customers=3)
    references = [datum["reference"] for _, datum in orders]
    assert references == [bench_reference(index) for index in range(6)]
    assert len(set(references)) == 6
    assert all(len(reference) <= 20 for reference in references)
    assert len({datum["customer"]["customer_key"] for _, datum in orders}) == 3
    rules = load_rules()
    for key, datum in orders:
        write = to_order_write(_round_trip("Order", datum), rules)
        assert isinstance(write, OrderWrite)
        assert write.order_key == key
        assert not write.cancelled
        assert [line.sku for line in write.request.lines] == [line["sku"] for line in datum["lines"]]
        assert all(line.sku in M3_ITEMS for line in write.request.lines)
        assert write.request.warehouse == "001"


def test_sellable_skus_follow_the_stock_sinks_catalogue_rule() -> None:
    products = [
        {"id": "1", "reference": "SIMPLE"},
        {"id": "2", "reference": "PARENT"},  # has combinations: not itself sellable
        {"id": "3", "reference": "DUP"},
        {"id": "4", "reference": "DUP"},  # two units under one reference: ambiguous, left out
        {"id": "5", "reference": ""},  # no reference: nothing to find it by
    ]
    combinations = [
        {"id": "11", "id_product": "2", "reference": "PARENT-RED"},
        {"id": "12", "id_product": "2", "reference": ""},  # sold under the product's reference
    ]
    assert sellable_skus(products, combinations) == ["SIMPLE", "PARENT-RED", "PARENT"]


# -- what the bench reads ----------------------------------------------------------------------------


def test_metrics_are_summed_per_label_for_the_stage_only() -> None:
    exposition = "\n".join(
        [
            "# HELP psinfor_messages_total Messages a stage finished with",
            "# TYPE psinfor_messages_total counter",
            'psinfor_messages_total{stage="prestashop-stock",topic="t1",outcome="written"} 250.0',
            'psinfor_messages_total{stage="prestashop-stock",topic="t2",outcome="written"} 5.0',
            'psinfor_messages_total{stage="prestashop-stock",topic="t1",outcome="coalesced"} 745.0',
            'psinfor_messages_total{stage="other",topic="t1",outcome="written"} 9.0',
            'psinfor_messages_created{stage="prestashop-stock",topic="t1",outcome="written"} 1.7e+09',
            'psinfor_retries_total{stage="prestashop-stock",reason="http_503"} 3.0',
        ]
    )
    outcomes = metric_by_label(
        exposition, "psinfor_messages_total", stage="prestashop-stock", label="outcome"
    )
    assert outcomes == {"written": 255, "coalesced": 745}
    retries = metric_by_label(exposition, "psinfor_retries_total", stage="prestashop-stock", label="reason")
    assert retries == {"http_503": 3}


def test_orders_in_m3_count_missing_and_duplicated_references() -> None:
    found = {bench_reference(0): 1, bench_reference(1): 3, "SOMEONE-ELSE": 1}
    assert OrdersInM3.count(found, 3) == OrdersInM3(created=2, duplicates=2)


# -- the report ---------------------------------------------------------------------------------------


def _run(**changes: Any) -> SinkRun:
    values: dict[str, Any] = {
        "kind": "stock",
        "keys_in_flight": 16,
        "records": 1000,
        "measured": 800,
        "seconds": 2.0,
        "cpu_s": 0.4,
        "outcomes": {"written": 250, "coalesced": 750},
        "interval": TargetCounts(requests=400, writes=200),
        "total": TargetCounts(requests=530, writes=250),
        "retries": 2,
    }
    values.update(changes)
    return SinkRun(**values)


def test_the_table_puts_each_run_beside_its_raw_consume_ceiling() -> None:
    ceiling = Ceiling(records=1000, seconds=0.01, cpu_s=0.003)
    lines = table([(_run(), ceiling), (_run(kind="orders", measured=0, check="3 missing"), ceiling)])
    header, stock, orders = lines
    assert header.split()[:4] == ["kind", "keys", "records", "raw/s"]
    assert stock.split()[:12] == [
        "stock",
        "16",
        "1000",
        "100,000",  # raw consume records/s
        "3.0",  # raw µs CPU per record
        "400.0",  # sink records/s: 800 measured in 2 s
        "500",  # sink µs CPU per record: 0.4 s / 800
        "2,000",  # per core/s
        "0.50",  # requests per record: 400 / 800
        "250",  # writes of the whole run
        "2",  # retries
        "ok",
    ]
    assert stock.endswith("coalesced 750, written 250")
    # Nothing measured (every record completed before the first poll): no rate rather than a wrong one.
    assert orders.split()[5:9] == ["-", "-", "-", "-"]
    assert "3 missing" in orders


def test_target_counts_subtract_to_the_measured_interval() -> None:
    end = TargetCounts(requests=900, writes=300, throttled=12)
    start = TargetCounts(requests=100, writes=0, throttled=2)
    assert end - start == TargetCounts(requests=800, writes=300, throttled=10)


def test_the_quota_report_shows_utilisation_429_share_orders_per_minute_and_the_verdict() -> None:
    run = QuotaRun(
        quota_requests=600,
        window_s=60.0,
        limiter_rpm=600,
        keys_in_flight=16,
        orders=100,
        seconds=100.0,
        calls=TargetCounts(requests=974, throttled=24),
        created=100,
        duplicates=0,
        dead_lettered=0,
        retries=0,
    )
    assert run.admitted == 950
    assert run.admitted_per_min == pytest.approx(570.0)
    assert run.utilisation == pytest.approx(0.95)
    assert run.share_429 == pytest.approx(24 / 974)
    assert run.orders_per_min == pytest.approx(60.0)
    text = "\n".join(run.lines())
    assert "570 admitted/min = 95.0% of the quota (950 admitted, 9.5 per order)" in text
    assert "2.46% (24 of 974 requests)" in text
    assert "60.0 orders/min" in text
    assert text.endswith("nothing failed")
    broken = replace(run, created=97, duplicates=1, dead_lettered=2)
    assert broken.failed == 6
    assert broken.lines()[-1].endswith("6 orders failed")
    # Above the quota rate: only possible while the window that started empty still counts; said so.
    early = replace(run, seconds=80.0)
    assert early.utilisation == pytest.approx(950 / 80 * 60 / 600)
    assert early.lines()[-1].startswith("note             the sliding window starts empty")


def test_decimal_quantities_keep_the_schema_scale() -> None:
    _, datum = stock_levels(["A"], 1)[0]
    assert datum["on_hand"] == Decimal("10.0000")
    assert datum["on_hand"].as_tuple().exponent == -4
