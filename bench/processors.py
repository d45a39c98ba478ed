"""Processor throughput (inventory and orders) on one process, beside a raw consume+produce ceiling.

``python -m bench.processors --bootstrap HOST:PORT --registry URL [--events N] [--kinds inventory,orders]
[--take-max N] [--linger-ms N] [--faust-sensor] [--profile DIR]``

For each kind:

1. creates a raw source topic (4 partitions), an output topic and a DLQ topic under a unique prefix and
   registers the canonical schema under the output subject;
2. pre-produces ``N`` raw events (inventory: a small JSON stock event, ~200 bytes; orders: a
   PrestaShop-like JSON order with three rows, ~1.5 KB), every one a new version, so each must become
   one canonical record;
3. ceiling: a bare confluent-kafka consumer + idempotent producer forwarding the same bytes, one
   process, same linger;
4. the processor: ``python -m processors.main`` with the bench flow (the production runner, faust
   worker, Avro encode, staleness table), one process. With ``--profile`` it runs under py-spy
   (``py-spy record --format raw``); the hottest frames and the share of samples inside each stage
   (flow decode, ``to_record``, Avro encode, the rest: faust, aiokafka, the producer) are printed.

Before the broker runs, the CPU cost of each pure stage (decode, ``to_record``, ``AvroCodec.encode``, and
confluent-kafka's ``AvroSerializer`` for comparison) is timed in-process on one representative event,
best of several repeats, against an in-memory registry: a loaded machine distorts these least.

Rates are measured from the first to the last record on the output topic (start-up excluded): records
per second of wall time. Run by hand; not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import timeit
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, topic_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from pydantic import BaseModel, ConfigDict, ValidationError

from pipeline.errors import InvalidMessage
from pipeline.records import Headers, SourceRecord
from pipeline.settings import RegistrySettings
from processors.runner import Flow, FlowContext
from schemas.codec import AvroCodec, AvroDatum
from schemas.examples import load_examples
from schemas.loader import schema_string
from schemas.registry import SubjectSchema, register_schemas, registry_client

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = uuid.UUID("b7a3f0d2-41c6-4a0e-8f65-0f3c2d9e1a77")
SOURCE_PARTITIONS = 4

# -- the bench flows (pure, as production flows are) -------------------------------------------------


class StockEvent(BaseModel):
    """A raw stock event (MI-record-like JSON)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    ITNO: str
    WHLO: str
    STQT: Decimal
    ALQT: Decimal
    LMTS: int


class OrderRow(BaseModel):
    """One PrestaShop order row."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: int
    product_id: int
    product_attribute_id: int
    product_reference: str
    product_name: str
    product_quantity: int
    unit_price_tax_excl: Decimal
    unit_price_tax_incl: Decimal


class OrderAssociations(BaseModel):
    """The associations block of a PrestaShop order."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    order_rows: list[OrderRow]


class PrestaShopOrder(BaseModel):
    """The fields of a PrestaShop webservice order the bench flow reads."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: int
    id_shop: int
    id_customer: int
    reference: str
    date_upd_ms: int
    total_products: Decimal
    total_shipping_tax_excl: Decimal
    total_discounts: Decimal
    total_paid_tax_incl: Decimal
    associations: OrderAssociations


def _invalid(exc: ValidationError) -> InvalidMessage:
    first = exc.errors()[0]
    return InvalidMessage(
        "schema_violation", first["msg"], field_path=".".join(str(p) for p in first["loc"]) or None
    )


def decode_stock(raw: bytes, _headers: Headers) -> StockEvent:
    """JSON bytes → StockEvent, or InvalidMessage."""
    try:
        return StockEvent.model_validate_json(raw)
    except ValidationError as exc:
        raise _invalid(exc) from exc


def decode_order(raw: bytes, _headers: Headers) -> PrestaShopOrder:
    """JSON bytes → PrestaShopOrder, or InvalidMessage."""
    try:
        return PrestaShopOrder.model_validate_json(raw)
    except ValidationError as exc:
        raise _invalid(exc) from exc


def _meta(entity: str, source_id: str, version: int, system: str, context: FlowContext) -> dict[str, Any]:
    occurred = datetime.fromtimestamp(version / 1000, UTC)
    return {
        "event_id": str(uuid.uuid5(NAMESPACE, f"{system}|{entity}|{source_id}|{version}")),
        "source_system": system,
        "source_entity": entity,
        "source_id": source_id,
        "version": version,
        "occurred_at": occurred,
        "ingested_at": context.ingested_at,
        "correlation_id": context.correlation_id,
        "causation_id": None,
        "shop_id": None,
    }


def stock_record(event: StockEvent, context: FlowContext) -> AvroDatum:
    """StockEvent → canonical InventoryLevel."""
    as_of = datetime.fromtimestamp(event.LMTS / 1000, UTC)
    return {
        "meta": _meta("MMS060MI", f"{event.ITNO}@{event.WHLO}", event.LMTS, "INFOR", context),
        "sku": event.ITNO,
        "erp_item_number": event.ITNO,
        "warehouse": event.WHLO,
        "on_hand": event.STQT,
        "allocated": event.ALQT,
        "available": event.STQT - event.ALQT,
        "as_of": as_of,
        "external_ids": {"infor": event.ITNO},
    }


@cache
def _order_template() -> dict[str, Any]:
    # The reference example supplies the parts the bench payload does not vary (addresses, customer).
    example = next(e for e in load_examples("Order") if e.name == "eur-two-lines-variant")
    return example.datum()


def _money(amount: Decimal, currency: str = "EUR") -> dict[str, Any]:
    return {"amount": amount.quantize(Decimal("0.000001")), "currency": currency}


def order_record(order: PrestaShopOrder, context: FlowContext) -> AvroDatum:
    """PrestaShopOrder → canonical Order (lines, totals; the rest from the reference example)."""
    template = _order_template()
    line_template = template["lines"][0]
    lines = []
    for row in order.associations.order_rows:
        quantity = Decimal(row.product_quantity)
        lines.append(
            {
                **line_template,
                "line_id": str(row.id),
                "product_id": str(row.product_id),
                "variant_id": str(row.product_attribute_id) if row.product_attribute_id else None,
                "sku": row.product_reference,
                "name": row.product_name,
                "quantity": quantity,
                "unit_price_excl_tax": _money(row.unit_price_tax_excl),
                "unit_price_incl_tax": _money(row.unit_price_tax_incl),
                "total_excl_tax": _money(row.unit_price_tax_excl * quantity),
                "total_incl_tax": _money(row.unit_price_tax_incl * quantity),
            }
        )
    totals = {
        **template["totals"],
        "products": _money(order.total_products),
        "shipping": _money(order.total_shipping_tax_excl),
        "discounts": _money(order.total_discounts),
        "grand_total": _money(order.total_paid_tax_incl),
    }
    source_id = str(order.id)
    meta = _meta("orders", source_id, order.date_upd_ms, "PRESTASHOP", context)
    meta["shop_id"] = str(order.id_shop)
    return {
        **template,
        "meta": meta,
        "order_key": f"{order.id_shop}:{order.id}",
        "reference": order.reference,
        "lines": lines,
        "totals": totals,
    }


INVENTORY: Flow[StockEvent] = Flow(
    name="bench_inventory",
    sources=("raw.infor.inventory",),
    output="canonical.inventory.v1",
    record="InventoryLevel",
    decode=decode_stock,
    to_record=stock_record,
    key=lambda event: event.ITNO,
    version=lambda event: event.LMTS,
)

ORDERS: Flow[PrestaShopOrder] = Flow(
    name="bench_orders",
    sources=("raw.prestashop.orders",),
    output="canonical.order.v1",
    record="Order",
    decode=decode_order,
    to_record=order_record,
    key=lambda order: f"{order.id_shop}:{order.id}",
    version=lambda order: order.date_upd_ms,
)

KINDS: dict[str, tuple[str, Flow[Any]]] = {
    "inventory": ("INVENTORY", INVENTORY),
    "orders": ("ORDERS", ORDERS),
}

# -- payloads --------------------------------------------------------------------------------------


def stock_payload(index: int) -> tuple[bytes, bytes]:
    """(key, value) of the index-th raw stock event: 2,000 items, each event a newer LMTS."""
    item = f"ITEM-{index % 2000:05d}"
    value = {
        "CONO": 100,
        "ITNO": item,
        "WHLO": "NJ1",
        "STQT": f"{index % 500}.5",
        "ALQT": "2",
        "LMTS": 1_700_000_000_000 + index,
        "RESP": "BENCH",
        "TX40": "Bench item description",
    }
    return item.encode(), json.dumps(value).encode()


def order_payload(index: int) -> tuple[bytes, bytes]:
    """(key, value) of the index-th raw PrestaShop order: three rows, every order new."""
    rows = [
        {
            "id": index * 10 + row,
            "product_id": 50 + row,
            "product_attribute_id": 140 + row if row else 0,
            "product_reference": f"SKU-{row:03d}",
            "product_name": f"Bench product {row} - Size: M",
            "product_quantity": 1 + row,
            "unit_price_tax_excl": "14.500000",
            "unit_price_tax_incl": "17.400000",
            "product_ean13": "0850012345678",
        }
        for row in range(3)
    ]
    value = {
        "id": index + 1,
        "id_shop": 1,
        "id_customer": 1200 + index % 300,
        "id_cart": 9000 + index,
        "id_currency": 1,
        "current_state": 2,
        "reference": f"REF{index:08d}",
        "payment": "Bank wire",
        "module": "ps_wirepayment",
        "date_add": "2024-05-03 17:41:58",
        "date_upd_ms": 1_714_758_130_000 + index,
        "total_products": "87.000000",
        "total_shipping_tax_excl": "5.000000",
        "total_discounts": "0.000000",
        "total_paid_tax_incl": "110.400000",
        "associations": {"order_rows": rows},
    }
    return f"1:orders:{index + 1}".encode(), json.dumps(value).encode()


PAYLOADS = {"inventory": stock_payload, "orders": order_payload}

# -- measurement -----------------------------------------------------------------------------------


def _create_topics(bootstrap: str, names: dict[str, int]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=n, replication_factor=1) for name, n in names.items()]
    )
    for future in futures.values():
        future.result(timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        metadata = admin.list_topics(timeout=5)
        if all(name in metadata.topics and not metadata.topics[name].error for name in names):
            return
        time.sleep(0.1)
    raise RuntimeError(f"topics {sorted(names)} not ready")


def _fill(bootstrap: str, topic: str, kind: str, events: int) -> int:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True})
    payload = PAYLOADS[kind]
    size = 0
    for index in range(events):
        key, value = payload(index)
        size += len(value)
        while True:
            try:
                producer.produce(topic, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.05)
        if index % 5000 == 0:
            producer.poll(0)
    if producer.flush(60):
        raise RuntimeError("pre-produce did not finish")
    return size // max(events, 1)


def _output_count(consumer: Consumer, topic: str, partitions: int) -> int:
    return sum(
        consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)
    )


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def _worker_pid(process: subprocess.Popen[bytes], profiled: bool) -> int:
    """The worker's pid: the child itself, or py-spy's child when profiling."""
    if not profiled:
        return process.pid
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.05)
    raise RuntimeError("py-spy did not start the worker")


def _wait_output(
    bootstrap: str, topic: str, partitions: int, events: int, process: subprocess.Popen[bytes], pid: int
) -> tuple[float, float]:
    """Wall seconds and worker CPU seconds from the first output record to the ``events``-th."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-watch-{uuid.uuid4().hex}"})
    try:
        first: float | None = None
        first_cpu = 0.0
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            count = _output_count(consumer, topic, partitions)
            now = time.monotonic()
            if count and first is None:
                first, first_cpu = now, _cpu_seconds(pid)
            if count >= events and first is not None:
                return now - first, _cpu_seconds(pid) - first_cpu
            if process.poll() is not None:
                raise RuntimeError(f"worker exited with {process.returncode}")
            time.sleep(0.02)
        raise RuntimeError("the processor did not finish in time")
    finally:
        consumer.close()


def ceiling(bootstrap: str, source: str, target: str, events: int, linger_ms: int) -> tuple[float, float]:
    """Records/s and CPU µs per record of a bare confluent-kafka consume → produce of the same bytes."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-ceiling-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": linger_ms, "enable.idempotence": True, "acks": "all"}
    )
    consumer.subscribe([source])
    seen = 0
    started: float | None = None
    started_cpu = 0.0
    try:
        while seen < events:
            for message in consumer.consume(1000, timeout=1.0):
                if message.error() is not None:
                    continue
                if started is None:
                    started, started_cpu = time.monotonic(), time.process_time()
                while True:
                    try:
                        producer.produce(
                            target, key=message.key(), value=message.value(), headers=message.headers()
                        )
                        break
                    except BufferError:
                        producer.poll(0.01)
                seen += 1
            producer.poll(0)
            consumer.commit(asynchronous=True)
        producer.flush(60)
        cpu = time.process_time() - started_cpu
    finally:
        consumer.close()
    return events / (time.monotonic() - (started or time.monotonic())), cpu / events * 1e6


def processor(
    args: argparse.Namespace, kind: str, topics: dict[str, str], profile: Path | None
) -> tuple[float, float, Path | None]:
    """Records/s and CPU µs per record of the processor worker, and the py-spy profile if asked for."""
    attribute, flow = KINDS[kind]
    argv = [
        sys.executable,
        "-m",
        "processors.main",
        "--flows",
        f"bench.processors:{attribute}",
        "--app-id",
        f"bench-{kind}-{uuid.uuid4().hex[:8]}",
        "--take-max",
        str(args.take_max),
        "--linger-ms",
        str(args.linger_ms),
        "--topic",
        f"{flow.sources[0]}={topics['source']}",
        "--topic",
        f"{flow.output}={topics['output']}",
        "--topic",
        f"dlq.processors={topics['dlq']}",
    ]
    if args.faust_sensor:
        argv.append("--faust-sensor")
    output: Path | None = None
    if profile is not None:
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        output = profile / f"{kind}.txt"
        # --gil: only samples holding the GIL, so threads blocked in select()/poll() do not pass for work.
        record = [spy, "record", "--gil", "--format", "raw", "--rate", "250", "--output", str(output)]
        argv = [*record, "--", *argv]
    env = {
        "PSINFOR_KAFKA__BOOTSTRAP_SERVERS": args.bootstrap,
        "PSINFOR_REGISTRY__URL": args.registry,
        "PSINFOR_SERVICE__LOG_LEVEL": "WARNING",
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(REPO),
    }
    process = subprocess.Popen(argv, cwd=REPO, env=env)
    try:
        pid = _worker_pid(process, profile is not None)
        seconds, cpu = _wait_output(args.bootstrap, topics["output"], 3, args.events, process, pid)
    finally:
        process.send_signal(signal.SIGINT if profile is not None else signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return args.events / seconds, cpu / args.events * 1e6, output


def stage_costs(kind: str, repeat: int = 7) -> dict[str, float]:
    """CPU µs per event of each pure stage of ``kind``'s flow, best of ``repeat`` runs, no broker.

    ``encode`` is the pipeline's AvroCodec; ``confluent encode`` is confluent-kafka's AvroSerializer with
    the configuration the codec used before it framed records itself, for comparison.
    """
    _, flow = KINDS[kind]
    key, value = PAYLOADS[kind](0)
    output = f"bench.{kind}.stages"
    client: SchemaRegistryClient = SchemaRegistryClient.new_client({"url": f"mock://bench-{kind}"})
    client.register_schema(f"{output}-value", Schema(schema_string(flow.record), "AVRO"))
    codec = AvroCodec(client, flow.record)
    serializer = AvroSerializer(
        client,
        schema_string(flow.record),
        conf={
            "auto.register.schemas": False,
            "validate.strict.allow.default": True,
            "subject.name.strategy": topic_subject_name_strategy,
        },
    )
    source = SourceRecord(topic=flow.sources[0], partition=0, offset=0, key=key, value=value)
    context = FlowContext(record=source, correlation_id="bench", source_event_id="bench:0:0")
    model = flow.decode(value, ())
    produced = flow.to_record(model, context)
    if not isinstance(produced, dict):
        raise RuntimeError(f"the {kind} bench flow must return exactly one record")
    datum: AvroDatum = produced
    ctx = SerializationContext(output, MessageField.VALUE)
    stages: dict[str, Any] = {
        "decode": lambda: flow.decode(value, ()),
        "to_record": lambda: flow.to_record(model, context),
        "encode": lambda: codec.encode(datum, output),
        "confluent encode": lambda: serializer(dict(datum), ctx),
    }
    costs: dict[str, float] = {}
    for name, call in stages.items():
        call()
        # CPU time, not wall time: other processes on a busy machine then inflate the figure far less.
        # Aim for ~50 ms per run whatever the stage costs.
        number = max(1, int(0.05 / max(timeit.timeit(call, number=1), 1e-6)))
        runs = timeit.repeat(call, number=number, repeat=repeat, timer=time.process_time)
        costs[name] = min(runs) / number * 1e6
    return costs


def hottest(profile: Path, top: int = 18) -> list[tuple[float, str]]:
    """The frames with the most self time in a py-spy ``raw`` (collapsed stacks) profile."""
    own: Counter[str] = Counter()
    total = 0
    for line in profile.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frame = stack.split(";")[-1]
        own[frame] += int(count)
        total += int(count)
    return [(100.0 * n / max(total, 1), frame) for frame, n in own.most_common(top)]


# Frames that mark a stage in a collapsed py-spy stack (function name and file, as py-spy prints them).
_STAGE_FRAMES = {
    "flow decode": ("decode_stock (bench/processors.py", "decode_order (bench/processors.py"),
    "to_record": ("stock_record (bench/processors.py", "order_record (bench/processors.py"),
    "Avro encode": ("AvroCodec.encode (schemas/codec.py",),
    "start-up (imports)": ("_find_and_load (", "_get_module_details ("),
}
_OTHER_THREADS = "other threads (producer poll, executor)"
_WAITING = "event loop waiting in select()"
_MACHINERY = "rest of the event loop (faust, aiokafka, runner, producer calls)"


def stage_shares(profile: Path) -> dict[str, float]:
    """The share (%) of the samples of a py-spy ``raw`` profile in each stage, largest first.

    Besides the pure stages: start-up imports, threads other than the event loop, the event loop blocked
    in ``select()`` (waiting for the broker), and everything else on the event loop, which is the
    framework's per-event machinery.
    """
    inside: Counter[str] = Counter()
    total = 0
    for line in profile.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        total += int(count)
        for stage, markers in _STAGE_FRAMES.items():
            if any(marker in stack for marker in markers):
                inside[stage] += int(count)
                break
        else:
            if stack.startswith("Thread._bootstrap"):
                inside[_OTHER_THREADS] += int(count)
            elif ".select (selectors.py" in stack.rpartition(";")[2]:
                inside[_WAITING] += int(count)
            else:
                inside[_MACHINERY] += int(count)
    return {stage: 100.0 * n / max(total, 1) for stage, n in inside.most_common()}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the bench for the chosen kinds and print the figures side by side."""
    parser = argparse.ArgumentParser(prog="python -m bench.processors", description=__doc__)
    parser.add_argument("--bootstrap", required=True, help="host:port of the broker")
    parser.add_argument("--registry", required=True, help="Confluent-compatible registry base URL")
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--kinds", default="inventory,orders")
    parser.add_argument("--take-max", type=int, default=500)
    parser.add_argument("--linger-ms", type=int, default=5)
    parser.add_argument("--faust-sensor", action="store_true")
    parser.add_argument("--profile", type=Path, default=None, help="directory for py-spy profiles")
    args = parser.parse_args(argv)
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    rows = []
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    print("CPU µs per event of each pure stage (in-process, best of 7):")
    for kind in kinds:
        costs = stage_costs(kind)
        print(f"  {kind:<10} " + "  ".join(f"{name} {us:.1f}" for name, us in costs.items()))
    for kind in kinds:
        _, flow = KINDS[kind]
        prefix = f"bench.{kind}.{uuid.uuid4().hex[:8]}."
        topics = {
            "source": prefix + "raw",
            "output": prefix + "canonical",
            "dlq": prefix + "dlq",
            "ceil": prefix + "ceiling",
        }
        _create_topics(
            args.bootstrap,
            {topics["source"]: SOURCE_PARTITIONS, topics["output"]: 3, topics["dlq"]: 1, topics["ceil"]: 3},
        )
        with registry_client(RegistrySettings(url=args.registry)) as client:
            register_schemas(client, [SubjectSchema(f"{topics['output']}-value", flow.record)])
        size = _fill(args.bootstrap, topics["source"], kind, args.events)
        raw_rate, raw_us = ceiling(
            args.bootstrap, topics["source"], topics["ceil"], args.events, args.linger_ms
        )
        rate, us, profile = processor(args, kind, topics, args.profile)
        rows.append((kind, size, raw_rate, raw_us, rate, us))
        print(
            f"{kind}: {args.events} events of ~{size} B: ceiling {raw_rate:,.0f}/s, processor {rate:,.0f}/s"
        )
        if profile is not None and profile.exists():
            print(f"  hottest frames (self time) of the processor, from {profile}:")
            for share, frame in hottest(profile):
                print(f"    {share:5.1f}%  {frame}")
            print("  share of samples inside each stage:")
            for stage, share in stage_shares(profile).items():
                print(f"    {share:5.1f}%  {stage}")
    # CPU µs per event is what a busy machine distorts least; 1e6 / µs is the rate one full core allows.
    print(
        "\nkind        bytes  ceiling/s  ceiling µs CPU/event  processor/s  processor µs CPU/event"
        "  per core/s"
    )
    for kind, size, raw_rate, raw_us, rate, us in rows:
        print(
            f"{kind:<10} {size:>6}  {raw_rate:>9,.0f}  {raw_us:>20.1f}  {rate:>11,.0f}  {us:>22.1f}  "
            f"{1e6 / us:>10,.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
