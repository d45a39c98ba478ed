"""The five named failure cases (ARCHITECTURE.md §6), end to end over the stack ``dev up`` runs.

1. PrestaShop API unavailable: every webservice call answers 503 for 15 s (the issue-6 acceptance test
   holds the shop down 60 s against one sink process; 15 s is enough here to open the breaker and keep
   it open past several probes) while Infor ships orders and moves stock. The shop sinks retry, open
   the breaker and pause; nothing is dead-lettered; once the shop answers again everything is written,
   each carrier's tracking number and each SKU's stock once.
2. Infor rejects an order: a rules change makes the sinks pass the shop's SKU to M3 as typed, a shop
   employee types a reference in lower case, and M3 refuses the next order for it (unknown item): the
   order is dead-lettered on ``dlq.sink-infor`` with M3's error code, field and transaction. The rule
   is fixed, the stack restarts its processors and sinks with it, ``psinfor dlq replay`` puts the order
   back, and M3 gets it exactly once; a second replay finds nothing.
3. Duplicate customer race: a second ``infor-orders`` sink process joins (as the stage scales out),
   M3's customer creation is slowed to 3 s, and a new customer's first orders arrive at once: both
   processes try to create the customer, M3 takes one, and there is exactly one M3 customer holding
   every order.
4. Inventory for an item unknown to the shop: Infor ION pushes a Sync.InventoryCount for an item the
   shop does not sell: dead-lettered ``unknown_sku`` with the nearest shop references as suggestions.
5. Wrong data types: the back office saves a product price as text: the poller's read of it is
   dead-lettered with the field path (``price``); and a producer writes an inventory level whose
   ``on_hand`` is a string and a double, with its own schema: dead-lettered by the stock sink with the
   field and the type the schema expects.
"""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import Schema
from fastavro import parse_schema, schemaless_writer

from devstack.sandbox_admin import CheckoutRequest, JsonObject, NewCustomerRequest, OrderLineRequest
from devstack.services import (
    INFOR_CONO,
    INFOR_DIVI,
    INFOR_TENANT,
    StackOptions,
    plan_stack,
    stage_environment,
)
from devstack.setup import CatalogueEntry
from devstack.stack import free_port_allocator
from devstack.stack_rules import with_item_case
from pipeline import dlq as dlq_headers
from pipeline.settings import RegistrySettings, env_name
from sandbox.infor.bod import BodContext, inventory_count
from sandbox.infor.m3_state import Balance
from schemas.loader import compose
from schemas.registry import registry_client
from tests.e2e.running_stack import REPO, STACK_START_ALLOWANCE_S, RunningStack
from tests.e2e.topic_reader import TopicRecord

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(STACK_START_ALLOWANCE_S + 420)]

SHOP_ID = "1"
WAREHOUSE = "001"
DLQ_INFOR = "dlq.sink-infor"
DLQ_SHOP = "dlq.sink-prestashop"
DLQ_PROCESSORS = "dlq.processors"
WAIT_S = 120.0


def dead_letters(stack: RunningStack, topic: str, original_key: str) -> list[TopicRecord]:
    """The DLQ records of ``topic`` whose original key is ``original_key`` (tombstones left out)."""
    return [
        record
        for record in stack.topics.read(topic)
        if record.headers.get(dlq_headers.ORIGINAL_KEY) == original_key and record.value is not None
    ]


@pytest.fixture
def warehouse_paused(stack: RunningStack) -> Iterator[None]:
    """Infor's warehouse clock (and its stock drift) stopped; orders move only when the test steps them."""
    stack.infor.configure_warehouse(paused=True)
    try:
        yield
    finally:
        stack.infor.configure_warehouse(paused=False)


def free_quantity(balance: JsonObject) -> int:
    """What the shop should show for an Infor balance (whole units, never below zero)."""
    return max(0, int(Decimal(balance["STQT"]) - Decimal(balance["ALQT"])))


def shop_stock_of(stack: RunningStack, units: list[CatalogueEntry]) -> dict[str, int]:
    """Item number → the shop's stock of its unit (shop 1)."""
    rows = {
        (int(row["id_product"]), int(row["id_product_attribute"])): int(row["quantity"])
        for row in stack.shop.rows("stock_availables")
        if str(row.get("id_shop")) == "1"
    }
    return {unit.item_number: rows[(unit.product_id, unit.combination_id)] for unit in units}


# -- 1. PrestaShop API unavailable ---------------------------------------------------------------------

OUTAGE_S = 15.0
OUTAGE_ORDERS = 8
OUTAGE_SKUS = 20


def test_prestashop_unavailable_for_15_s_pauses_the_shop_sinks_and_then_writes_everything_once(
    stack: RunningStack, warehouse_paused: None
) -> None:
    units = [u for u in stack.sellable_units() if u.combination_id == 0]
    ordered, moved = units[:OUTAGE_ORDERS], units[OUTAGE_ORDERS : OUTAGE_ORDERS + OUTAGE_SKUS]
    for unit in ordered:  # enough stock for M3 to allocate
        balance = stack.infor.balance(WAREHOUSE, unit.item_number)
        assert balance is not None
        stack.infor.set_on_hand(WAREHOUSE, unit.item_number, Decimal(balance["STQT"]) + 10)
    placed = [
        stack.shop.place_order(
            CheckoutRequest(
                lines=(OrderLineRequest(unit.product_id, 0, 1),),
                payment_module="stripe_official",
                customer_id=7,
            )
        )
        for unit in ordered
    ]
    references = {str(row["reference"]): int(row["id"]) for row in placed}
    stack.wait_until(
        lambda: all(stack.infor.orders(customer_order_number=ref) for ref in references),
        WAIT_S,
        "the orders in Infor (held at status 22: the warehouse clock is stopped)",
    )
    sink_service = stack.service_of_sink("prestashop-stock")

    def writes(operation: str) -> float:
        return stack.metric(
            sink_service, "psinfor_target_request_duration_seconds_count", operation=operation
        )

    stack.wait_until(
        lambda: stack.metric(sink_service, "psinfor_sink_buffered_records") == 0,
        WAIT_S,
        "the shop sinks idle",
    )
    before = {
        op: writes(op) for op in ("update_stock_available", "update_order_carrier", "add_order_history")
    }
    changed = ordered + moved
    at_start = shop_stock_of(stack, changed)
    dlq_before = len(stack.topics.read(DLQ_SHOP))
    log_mark = len(stack.log_lines(sink_service))
    crashes_before = len(stack.crashes())

    # The outage: 503 (Retry-After: 1) for every webservice call.
    stack.shop_faults({"kind": "error", "status": 503, "retry_after": 1})
    down_at = time.monotonic()
    try:
        stack.step_warehouse(4)  # allocate, pick, ship, invoice
        for n, unit in enumerate(moved):
            balance = stack.infor.balance(WAREHOUSE, unit.item_number)
            assert balance is not None
            stack.infor.set_on_hand(WAREHOUSE, unit.item_number, Decimal(balance["STQT"]) + 3 + n)
        breaker_states: set[float] = set()
        paused_by_breaker = 0.0
        while time.monotonic() - down_at < OUTAGE_S:
            breaker_states.add(stack.metric(sink_service, "psinfor_circuit_state", target="prestashop"))
            paused_by_breaker = max(
                paused_by_breaker,
                stack.metric(sink_service, "psinfor_sink_paused_partitions", reason="breaker"),
            )
            time.sleep(0.5)
        dead_during = len(stack.topics.read(DLQ_SHOP)) - dlq_before
    finally:
        stack.shop_faults(None)
    back_at = time.monotonic()

    tracking_of = {str(d["RIDN"]): str(d["ETRN"]) for d in stack.m3_deliveries()}
    orno = {ref: str(stack.infor.orders(customer_order_number=ref)[0]["ORNO"]) for ref in references}
    wanted: dict[str, int] = {}
    for unit in changed:
        balance = stack.infor.balance(WAREHOUSE, unit.item_number)
        assert balance is not None
        wanted[unit.item_number] = free_quantity(balance)

    def written() -> bool:
        carriers = {
            str(row["id_order"]): row.get("tracking_number") for row in stack.shop.rows("order_carriers")
        }
        tracked = all(carriers.get(str(oid)) == tracking_of.get(orno[ref]) for ref, oid in references.items())
        return tracked and shop_stock_of(stack, changed) == wanted

    stack.wait_until(written, WAIT_S, "the tracking numbers and stock levels written after the outage")
    recovered_s = time.monotonic() - back_at
    time.sleep(3.0)  # late duplicates would show now
    after = {op: writes(op) for op in before}
    delta = {op: int(after[op] - before[op]) for op in before}
    log = stack.log_lines(sink_service)[log_mark:]
    opened = [line for line in log if "circuit breaker open" in line]
    paused = [line for line in log if "partitions paused" in line and "breaker" in line]
    dead_after = len(stack.topics.read(DLQ_SHOP)) - dlq_before
    print(
        f"\nPrestaShop down {OUTAGE_S:.0f} s (503 on every webservice call) while Infor shipped "
        f"{len(references)} orders and moved {len(moved)} SKUs: breaker states seen "
        f"{sorted(breaker_states)}, "
        f"opened {len(opened)} times, up to {paused_by_breaker:.0f} partitions paused by it "
        f"({len(paused)} pause lines); {dead_during} dead letters during, {dead_after} after; everything "
        f"written {recovered_s:.1f} s after the shop came back; writes {delta}"
    )
    assert opened, "the breaker never opened"
    assert 2.0 in breaker_states
    assert paused_by_breaker > 0
    assert dead_after == 0
    # Written once: one carrier update per shipped order, one stock write per changed SKU.
    assert delta["update_order_carrier"] == len(references)
    assert delta["update_stock_available"] == sum(at_start[item] != wanted[item] for item in wanted)
    assert delta["add_order_history"] >= len(references)
    assert stack.crashes()[crashes_before:] == []


# -- 2. Infor rejects an order ---------------------------------------------------------------------------


def test_an_order_m3_refuses_is_dead_lettered_with_m3s_error_and_replayed_once_after_the_rule_fix(
    stack: RunningStack,
) -> None:
    unit = [u for u in stack.sellable_units() if u.combination_id == 0][-1]
    original_rules = stack.rules_text()
    lowered = unit.reference.lower()
    crashes_before = len(stack.crashes())
    try:
        broke_s = stack.deploy_rules(with_item_case(original_rules, "keep"))
        stack.shop.edit_product(unit.product_id, {"reference": lowered})
        row = stack.shop.place_order(
            CheckoutRequest(
                lines=(OrderLineRequest(unit.product_id, 0, 2),),
                payment_module="stripe_official",
                customer_id=4,
            )
        )
        key, reference = f"{SHOP_ID}:{row['id']}", str(row["reference"])
        [dead] = stack.wait_until(
            lambda: dead_letters(stack, DLQ_INFOR, key), WAIT_S, f"{key} on {DLQ_INFOR}"
        )
        story = dead.headers
        [original] = [
            r
            for r in stack.topics.read("canonical.order.v1")
            if r.partition == int(story[dlq_headers.SOURCE_PARTITION])
            and r.offset == int(story[dlq_headers.SOURCE_OFFSET])
        ]
        refused_in_m3 = stack.infor.orders(customer_order_number=reference)

        fixed_s = stack.deploy_rules(original_rules)
        dlq_option = ("--topic", f"{DLQ_INFOR}={stack.topics.actual(DLQ_INFOR)}")
        replay = stack.psinfor(
            "dlq", "replay", *dlq_option, "--stage", "infor-orders", "--key", key, "--yes", "--by", "e2e"
        )
        assert replay.returncode == 0, replay.stdout + replay.stderr
        [head] = stack.wait_until(
            lambda: stack.infor.orders(customer_order_number=reference),
            WAIT_S,
            f"the replayed order {reference} in M3",
        )
        time.sleep(5.0)  # a second creation would show by now
        created = stack.infor.orders(customer_order_number=reference)
        again = stack.psinfor(
            "dlq", "replay", *dlq_option, "--stage", "infor-orders", "--key", key, "--yes", "--by", "e2e"
        )
        lines = stack.infor.order(str(head["ORNO"]))["lines"]
    finally:
        stack.shop.edit_product(unit.product_id, {"reference": unit.reference})
        if stack.rules_text() != original_rules:
            stack.deploy_rules(original_rules)
    print(
        f"\nM3 refused {reference} ({lowered!r}): {DLQ_INFOR} reason={story[dlq_headers.REASON]} "
        f"field={story[dlq_headers.FIELD_PATH]} m3_code={story.get('dlq.detail.m3_code')} "
        f"m3_field={story.get('dlq.detail.m3_field')} transaction={story.get('dlq.detail.transaction')} "
        f"message={story.get('dlq.detail.m3_message')!r}; rules deployed in {broke_s:.1f} s and fixed in "
        f"{fixed_s:.1f} s (processors and sinks restarted); replay -> M3 order {head['ORNO']}, "
        f"{len(created)} order for the reference; second replay: exit {again.returncode} "
        f"{again.stderr.strip()!r}"
    )
    assert refused_in_m3 == []
    assert dead.value == original.value  # the original bytes, unchanged
    assert story[dlq_headers.STAGE] == "infor-orders"
    assert story[dlq_headers.REASON] == "m3_nok"
    assert story[dlq_headers.FIELD_PATH] == "lines[0].sku"
    assert story["dlq.detail.m3_code"] == "WIT0203"
    assert story["dlq.detail.m3_field"] == "ITNO"
    assert story["dlq.detail.transaction"] == "OIS100MI.AddBatchLine"
    assert lowered in story["dlq.detail.m3_message"]
    assert len(created) == 1
    assert [(line["ITNO"], Decimal(line["ORQT"])) for line in lines] == [(unit.item_number, Decimal(2))]
    assert again.returncode == 1
    assert "nothing to replay" in again.stderr
    assert stack.crashes()[crashes_before:] == []


# -- 3. Duplicate customer race ---------------------------------------------------------------------------

RACE_ORDERS = 6


@dataclass(frozen=True)
class SecondSink:
    """The extra sink process and its log."""

    process: subprocess.Popen[str]
    log_path: Path

    def partitions(self, topic: str) -> set[int]:
        """The partitions of ``topic`` it was last assigned (from its log)."""
        owned: set[int] = set()
        for line in self.log_path.read_text(encoding="utf-8").splitlines():
            if "partitions assigned" in line:
                owned = {int(p) for p in re.findall(re.escape(topic) + r":(\d+)", line)}
        return owned


@pytest.fixture
def second_orders_sink(stack: RunningStack, tmp_path: Path) -> Iterator[SecondSink]:
    """A second ``infor-orders`` sink process in the stack's group, as the stage scales out."""
    data_dir = Path(stack.endpoints.rules_path).parent
    plan = plan_stack(
        StackOptions(
            data_dir=data_dir,
            kafka_bootstrap=stack.endpoints.bootstrap,
            registry_url=stack.endpoints.registry_url,
            topic_prefix=stack.endpoints.topic_prefix,
            sink_layout="per-target",
        ),
        free_port=free_port_allocator(),
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("PSINFOR_")}
    env |= stage_environment(plan)
    port = free_port_allocator()()
    env[env_name("service", "http_port")] = str(port)
    log_path = tmp_path / "second-infor-orders.log"
    log = log_path.open("w", encoding="utf-8")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli.main",
            "sink",
            "--sinks",
            "infor-orders",
            "--group-prefix",
            plan.sink_group_prefix,
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def assigned() -> bool:
        # Ready is not enough: the group must have rebalanced and handed this process partitions.
        if process.poll() is not None:
            raise AssertionError(f"the second infor-orders sink exited with {process.returncode}")
        return "partitions assigned" in log_path.read_text(encoding="utf-8")

    try:
        stack.wait_until(assigned, WAIT_S, "partitions assigned to the second infor-orders sink")
        yield SecondSink(process, log_path)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()


def test_a_new_customers_orders_applied_at_once_by_two_processes_make_one_m3_customer(
    stack: RunningStack, second_orders_sink: SecondSink
) -> None:
    tag = uuid.uuid4().hex[:6]
    email = f"race.{tag}@example.com"
    units = [u for u in stack.sellable_units() if u.combination_id == 0][10 : 10 + RACE_ORDERS]
    stack.infor_faults({"kind": "latency", "program": "CRS610MI", "transaction": "Add", "latency_s": 3.0})
    crashes_before = len(stack.crashes())
    try:
        adds_before = int(stack.infor_gateway_stats()["faults"].get("latency", 0))
        first = stack.shop.place_order(
            CheckoutRequest(
                lines=(OrderLineRequest(units[0].product_id, 0, 1),),
                payment_module="stripe_official",
                new_customer=NewCustomerRequest(
                    email, "Rita", "Racer", "3 rue Merciere", "Lyon", "69002", "FR"
                ),
            )
        )
        customer_id = int(first["id_customer"])
        rows = [first] + [
            stack.shop.place_order(
                CheckoutRequest(
                    lines=(OrderLineRequest(unit.product_id, 0, 1),),
                    payment_module="stripe_official",
                    customer_id=customer_id,
                )
            )
            for unit in units[1:]
        ]
        references = [str(row["reference"]) for row in rows]
        stack.wait_until(
            lambda: all(stack.infor.orders(customer_order_number=ref) for ref in references),
            WAIT_S,
            "every order of the new customer in M3",
        )
        adds = int(stack.infor_gateway_stats()["faults"].get("latency", 0)) - adds_before
    finally:
        stack.infor_faults(None)
    m3 = [c for c in stack.m3_customers() if str(c["MAIL"]).lower() == email]
    shop = [c for c in stack.shop.rows("customers") if str(c["email"]).lower() == email]
    holders = {ref: str(stack.infor.orders(customer_order_number=ref)[0]["CUNO"]) for ref in references}
    counts = {ref: len(stack.infor.orders(customer_order_number=ref)) for ref in references}
    keys = {f"{SHOP_ID}:{row['id']}" for row in rows}
    partitions = {r.partition for r in stack.topics.read("canonical.order.v1") if r.key in keys}
    theirs = second_orders_sink.partitions(stack.topics.actual("canonical.order.v1"))
    both_processes = bool(partitions & theirs) and bool(partitions - theirs)
    print(
        f"\ncustomer race: {RACE_ORDERS} orders of new customer {SHOP_ID}:{customer_id} over two "
        f"infor-orders processes (plus infor-customers): {adds} CRS610MI Add sent (each held 3 s), "
        f"{len(m3)} M3 customer(s) {[c['CUNO'] for c in m3]}, {len(shop)} shop customer(s); orders on "
        f"{sorted(set(holders.values()))}; the orders' partitions {sorted(partitions)}, the second process "
        f"owns {sorted(theirs)}"
    )
    assert len(m3) == 1
    assert len(shop) == 1
    assert set(holders.values()) == {m3[0]["CUNO"]}
    assert set(counts.values()) == {1}
    # Both processes held orders of the customer: both asked M3 to create it (M3 took one).
    assert adds >= (2 if both_processes else 1)
    assert dead_letters_for_keys(stack, {f"{SHOP_ID}:{row['id']}" for row in rows}) == []
    assert stack.crashes()[crashes_before:] == []


def dead_letters_for_keys(stack: RunningStack, keys: set[str]) -> list[TopicRecord]:
    return [r for r in stack.topics.read(DLQ_INFOR) if r.headers.get(dlq_headers.ORIGINAL_KEY) in keys]


# -- 4. Inventory for an item unknown to the shop ---------------------------------------------------------


def push_inventory_count(stack: RunningStack, item: str, on_hand: Decimal) -> None:
    """What ION sends when M3's balance of ``item`` changes: a Sync.InventoryCount, IMS v3 multipart."""
    now = datetime.now(UTC)
    balance = Balance(int(INFOR_CONO), WAREHOUSE, item, on_hand, lmts=int(now.timestamp() * 1000))
    bod = inventory_count(BodContext(INFOR_TENANT, now), balance, INFOR_DIVI, 1, "Replace")
    token = (Path(stack.endpoints.ws_key_file).parent / "ims_token").read_text(encoding="utf-8").strip()
    parameters = {
        "documentName": bod.document_name,
        "messageId": str(uuid.uuid4()),
        "fromLogicalId": "lid://infor.m3.m3",
        "toLogicalId": "lid://infor.ims.prestashop",
        "encoding": "NONE",
        "characterSet": "UTF-8",
        "documentId": bod.document_id,
    }
    response = httpx.post(
        f"{stack.endpoints.services['ingest-infor-events']}/infor/ims/service/v3/multipartMessage",
        files={
            "ParameterRequest": (None, json.dumps(parameters).encode(), "application/json"),
            "MessagePayload": ("payload", bod.xml, "application/octet-stream"),
        },
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert response.is_success, response.text


def test_inventory_for_an_item_the_shop_does_not_sell_is_dead_lettered_unknown_sku_with_suggestions(
    stack: RunningStack,
) -> None:
    references = {unit.reference for unit in stack.catalogue.matched}
    near = next(u.reference for u in stack.sellable_units() if u.reference[-1] != u.reference[-2])
    unknown = near[:-2] + near[-1] + near[-2]
    assert unknown not in references
    crashes_before = len(stack.crashes())
    push_inventory_count(stack, unknown, Decimal(12))
    [dead] = stack.wait_until(
        lambda: dead_letters(stack, DLQ_SHOP, unknown), WAIT_S, f"{unknown} on {DLQ_SHOP}"
    )
    story = dead.headers
    suggestions = story[dlq_headers.DETAIL_PREFIX + "suggestions"].split(",")
    print(
        f"\nunknown item {unknown!r} (Sync.InventoryCount from ION): {DLQ_SHOP} "
        f"stage={story[dlq_headers.STAGE]} "
        f"reason={story[dlq_headers.REASON]} field={story[dlq_headers.FIELD_PATH]} suggestions {suggestions} "
        f"({story.get(dlq_headers.DETAIL_PREFIX + 'suggestion_names')})"
    )
    assert story[dlq_headers.STAGE] == "prestashop-stock"
    assert story[dlq_headers.REASON] == "unknown_sku"
    assert story[dlq_headers.FIELD_PATH] == "sku"
    assert near in suggestions
    assert story[dlq_headers.DETAIL_PREFIX + "suggestion_names"]
    assert stack.crashes()[crashes_before:] == []


# -- 5. Wrong data types --------------------------------------------------------------------------------


def test_a_product_price_saved_as_text_is_dead_lettered_with_the_field_path(stack: RunningStack) -> None:
    unit = [u for u in stack.sellable_units() if u.combination_id == 0][-2]
    original = str(stack.shop.row("products", unit.product_id)["price"])
    raw_key = f"{SHOP_ID}:products:{unit.product_id}"
    crashes_before = len(stack.crashes())
    try:
        stack.shop.edit_product(unit.product_id, {"price": "twelve"})
        [dead, *_] = stack.wait_until(
            lambda: dead_letters(stack, DLQ_PROCESSORS, raw_key), WAIT_S, f"{raw_key} on {DLQ_PROCESSORS}"
        )
    finally:
        stack.shop.edit_product(unit.product_id, {"price": original})
    story = dead.headers

    def product_flows_again() -> bool:
        return any(
            r.key == unit.reference and stack.topics.decode(r)["price"]["amount"] == Decimal(original)
            for r in stack.topics.read("canonical.product.v1")
        )

    stack.wait_until(
        product_flows_again, WAIT_S, "the product with its price restored on canonical.product.v1"
    )
    print(
        f"\nprice 'twelve' on product {unit.product_id}: {DLQ_PROCESSORS} stage={story[dlq_headers.STAGE]} "
        f"reason={story[dlq_headers.REASON]} field={story[dlq_headers.FIELD_PATH]} "
        f"message={story[dlq_headers.ERROR_MESSAGE]!r}; restored price {original} flowed again"
    )
    assert story[dlq_headers.FIELD_PATH] == "price"
    assert story[dlq_headers.REASON] == "prestashop_unreadable"
    assert "not a decimal" in story[dlq_headers.ERROR_MESSAGE]
    assert stack.crashes()[crashes_before:] == []


def foreign_inventory_bytes(
    stack: RunningStack, subject: str, datum: dict[str, Any], on_hand_type: str
) -> bytes:
    """``datum`` in the wire format under a schema registered at ``subject``: InventoryLevel with
    ``on_hand`` of another type (what a producer with the wrong schema sends)."""
    schema = copy.deepcopy(compose("InventoryLevel"))
    for field_ in schema["fields"]:
        if field_["name"] == "on_hand":
            field_["type"] = on_hand_type
    registry = registry_client(RegistrySettings(url=stack.endpoints.registry_url))
    try:
        schema_id = registry.register_schema(subject, Schema(json.dumps(schema), "AVRO"))
    finally:
        registry.close()
    body = BytesIO()
    schemaless_writer(body, parse_schema(schema), datum)
    return struct.pack(">bI", 0, schema_id) + body.getvalue()


def test_inventory_levels_with_a_string_or_a_double_for_a_decimal_are_dead_lettered_with_field_and_type(
    stack: RunningStack,
) -> None:
    topic = stack.topics.actual("canonical.inventory.v1")
    latest = {r.key: r for r in stack.topics.read("canonical.inventory.v1") if r.key}
    text_unit, float_unit = [u for u in stack.sellable_units() if u.reference in latest][:2]
    crashes_before = len(stack.crashes())
    sent: dict[str, bytes] = {}
    wrong: list[tuple[CatalogueEntry, str | float, str]] = [
        (text_unit, "12.5 units", "string"),
        (float_unit, 12.5, "double"),
    ]
    for unit, wrong_value, avro_type in wrong:
        datum = dict(stack.topics.decode(latest[unit.reference]))
        datum["on_hand"] = wrong_value
        datum["meta"] = {**datum["meta"], "event_id": str(uuid.uuid4())}
        sent[unit.reference] = foreign_inventory_bytes(
            stack, f"{topic}.legacy-{avro_type}-value", datum, avro_type
        )
    producer = Producer({"bootstrap.servers": stack.endpoints.bootstrap, "enable.idempotence": True})
    for sku, payload in sent.items():
        producer.produce(topic, key=sku.encode(), value=payload)
    assert producer.flush(30) == 0
    stories: dict[str, list[TopicRecord]] = {}
    for sku in sent:

        def dead_lettered(sku: str = sku) -> list[TopicRecord]:
            return dead_letters(stack, DLQ_SHOP, sku)

        stories[sku] = stack.wait_until(dead_lettered, WAIT_S, f"{sku} on {DLQ_SHOP}")
    for sku, [dead, *_] in stories.items():
        print(
            f"\n{sku} with on_hand as {'string' if sku == text_unit.reference else 'double'}: {DLQ_SHOP} "
            f"reason={dead.headers[dlq_headers.REASON]} field={dead.headers.get(dlq_headers.FIELD_PATH)} "
            f"message={dead.headers[dlq_headers.ERROR_MESSAGE]!r}"
        )
        assert dead.value == sent[sku]  # the original bytes
        assert dead.headers[dlq_headers.FIELD_PATH] == "on_hand"
        assert "decimal(18,4)" in dead.headers[dlq_headers.ERROR_MESSAGE]
    assert stack.crashes()[crashes_before:] == []
