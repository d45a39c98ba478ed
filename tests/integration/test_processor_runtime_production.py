"""The production flows through the real worker: PrestaShop order bundles and Infor stock balances.

One worker subprocess (``python -m processors.main --flows prestashop_orders,infor_inventory``, the
way ``psinfor process`` runs them) reads test topics mapped onto the catalogue names, with the real
broker and registry. The order bundles are the committed unit-test bundle (a realistic Lyon order) and
variants of it; the stock records are M3 MI balances and the reference Sync.InventoryCount BOD. The
canonical records are decoded with the production codec and compared field by field, including an
order the rules route to ``review.order.v1`` and the dead-lettered and dropped events.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition

from pipeline.records import Headers
from pipeline.settings import RegistrySettings
from processors.infor_source import event_id as infor_event_id
from schemas.codec import AvroCodec
from schemas.registry import SubjectSchema, register_schemas, registry_client
from tests.conftest import NewTopicFactory
from tests.unit.test_processors_infor_support import fixture
from tests.unit.test_processors_prestashop_orders import SNAPSHOT_HEADERS, lyon_bundle

pytestmark = pytest.mark.integration

GroupFactory = Callable[[], str]
REPO = Path(__file__).resolve().parents[2]

MI_HEADERS: Headers = (
    ("source", b"infor-mi"),
    ("program", b"MMS200MI"),
    ("transaction", b"GetItmWhsBal"),
    ("received_at", b"2025-03-05T08:07:00.000Z"),
)
WEBHOOK_HEADERS: Headers = (
    ("source", b"prestashop-webhook"),
    ("event_type", b"order.updated"),
    ("shop_id", b"1"),
)


@dataclass(frozen=True)
class Topics:
    """The test's actual topics, by catalogue name."""

    by_name: dict[str, str]

    def __getitem__(self, name: str) -> str:
        return self.by_name[name]


@pytest.fixture
def topics(new_topic: NewTopicFactory, registry_url: str) -> Topics:
    made = Topics(
        {
            "raw.prestashop.orders": new_topic(partitions=2),
            "raw.infor.inventory": new_topic(partitions=2),
            "canonical.order.v1": new_topic(partitions=2),
            "review.order.v1": new_topic(),
            "canonical.inventory.v1": new_topic(partitions=2),
            "dlq.processors": new_topic(),
        }
    )
    subjects = [
        SubjectSchema(f"{made['canonical.order.v1']}-value", "Order"),
        SubjectSchema(f"{made['review.order.v1']}-value", "Order"),
        SubjectSchema(f"{made['canonical.inventory.v1']}-value", "InventoryLevel"),
    ]
    with registry_client(RegistrySettings(url=registry_url)) as client:
        results = register_schemas(client, subjects)
    assert all(result.outcome in ("registered", "unchanged") for result in results), results
    return made


def _bundle(order_id: int, date_upd: str, *, catalogue_price: str | None = None) -> bytes:
    """The unit tests' Lyon bundle as order ``order_id`` updated at ``date_upd`` (shop time)."""
    bundle = copy.deepcopy(lyon_bundle())
    bundle["order"]["id"] = order_id
    bundle["order"]["date_upd"] = date_upd
    for detail in bundle["order_details"]:
        detail["id_order"] = str(order_id)
    if catalogue_price is not None:
        bundle["order_details"][0]["original_product_price"] = catalogue_price
    return json.dumps(bundle).encode()


def _balance(item: str, lmts: int, on_hand: str, allocated: str, warehouse: str = "001") -> bytes:
    return json.dumps(
        {"WHLO": warehouse, "ITNO": item, "STQT": on_hand, "ALQT": allocated, "LMTS": str(lmts)}
    ).encode()


def _paris_ms(text: str) -> int:
    """Epoch ms of a shop time (Europe/Paris, CEST in May: UTC+2)."""
    local = datetime.fromisoformat(text)
    return int((local.replace(tzinfo=UTC).timestamp() - 2 * 3600) * 1000)


def _produce(bootstrap: str, records: list[tuple[str, bytes, bytes, Headers]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    failures: list[str] = []

    def report(error: Any, _message: Any) -> None:
        if error is not None:
            failures.append(str(error))

    for topic, key, value, headers in records:
        producer.produce(topic, value=value, key=key, headers=list(headers), on_delivery=report)
    assert producer.flush(30) == 0
    assert not failures, failures


def _consume(
    bootstrap: str, topic: str, count: int, deadline: float, process: subprocess.Popen[bytes]
) -> list[Message]:
    """The first ``count`` records of ``topic`` (every partition, from the start), then a wait for extras."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"reader-{topic}", "enable.auto.commit": False}
    )
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        found: list[Message] = []
        settle: float | None = None
        while time.monotonic() < deadline:
            assert process.poll() is None, f"the worker exited with {process.returncode}"
            for message in consumer.consume(100, timeout=0.5):
                assert message.error() is None, message.error()
                found.append(message)
            if len(found) >= count:
                # Anything beyond ``count`` would be a defect: give it a moment to show up.
                settle = settle or time.monotonic() + 1.5
                if time.monotonic() >= settle:
                    break
        return found
    finally:
        consumer.close()


def _headers(message: Message) -> dict[str, bytes]:
    found = message.headers() or []
    pairs = found.items() if isinstance(found, dict) else found
    return {name: value.encode() if isinstance(value, str) else value or b"" for name, value in pairs}


def _key(message: Message) -> bytes:
    key = message.key()
    assert isinstance(key, bytes)
    return key


def _value(message: Message) -> bytes:
    value = message.value()
    assert isinstance(value, bytes)
    return value


def _by_key(messages: list[Message], codec: AvroCodec, topic: str) -> dict[str, list[dict[str, Any]]]:
    """Decoded records per key, in partition order (one key lives in one partition)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for message in sorted(messages, key=lambda m: (m.partition(), m.offset())):
        datum = codec.decode(_value(message), topic)
        assert _headers(message)["event_id"].decode() == str(datum["meta"]["event_id"])
        found.setdefault(_key(message).decode(), []).append(datum)
    return found


@pytest.fixture
def worker(
    kafka_bootstrap: str, registry_url: str, topics: Topics, new_group: GroupFactory, tmp_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PSINFOR_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "PSINFOR_REGISTRY__URL": registry_url,
        "PSINFOR_SERVICE__LOG_FORMAT": "text",
    }
    argv = [sys.executable, "-m", "processors.main", "--flows", "prestashop_orders,infor_inventory"]
    argv += ["--app-id", new_group(), "--session-timeout", "6"]
    for name, actual in topics.by_name.items():
        argv += ["--topic", f"{name}={actual}"]
    log = tmp_path / "worker.log"
    with log.open("ab") as sink:
        process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        sys.stderr.write(log.read_text(errors="replace")[-4000:])


@pytest.fixture
def codecs(registry_url: str) -> Iterator[tuple[AvroCodec, AvroCodec]]:
    """The production codecs of Order and InventoryLevel on the test registry."""
    with registry_client(RegistrySettings(url=registry_url)) as client:
        yield AvroCodec(client, "Order"), AvroCodec(client, "InventoryLevel")


@pytest.mark.timeout(90)
def test_real_order_and_inventory_flows_produce_canonical_review_and_dlq_records(
    kafka_bootstrap: str,
    topics: Topics,
    worker: subprocess.Popen[bytes],
    codecs: tuple[AvroCodec, AvroCodec],
) -> None:
    orders, stock = topics["raw.prestashop.orders"], topics["raw.infor.inventory"]
    _produce(
        kafka_bootstrap,
        [
            (orders, b"1:orders:1042", _bundle(1042, "2024-05-02 11:15:00"), SNAPSHOT_HEADERS),
            # A thin webhook notification for the same order: skipped, and not mistaken for a version.
            (orders, b"1:orders:1042", b'{"id_order": 1042}', WEBHOOK_HEADERS),
            (orders, b"1:orders:1042", _bundle(1042, "2024-05-02 11:20:00"), SNAPSHOT_HEADERS),
            (orders, b"1:orders:1042", _bundle(1042, "2024-05-02 11:10:00"), SNAPSHOT_HEADERS),  # stale
            # Sold at 20.00 against a catalogue price of 50.00: price_deviation, a review code.
            (
                orders,
                b"1:orders:1043",
                _bundle(1043, "2024-05-02 12:00:00", catalogue_price="50.000000"),
                SNAPSHOT_HEADERS,
            ),
            (orders, b"1:orders:1044", b"{not json", SNAPSHOT_HEADERS),
            (stock, b"001-ITEM-A", _balance("ITEM-A", 1_741_161_600_000, "10", "2"), MI_HEADERS),
            (stock, b"001-ITEM-A", _balance("ITEM-A", 1_741_161_660_000, "12", "0"), MI_HEADERS),
            (stock, b"001-ITEM-A", _balance("ITEM-A", 1_741_161_630_000, "99", "0"), MI_HEADERS),  # stale
            (stock, b"001-ITEM-B", _balance("ITEM-B", 1_741_161_600_000, "5.5", "0"), MI_HEADERS),
            (stock, b"001-ITEM-B", _balance("ITEM-B", 1_741_161_600_000, "5.5", "0"), MI_HEADERS),  # dup
            (stock, b"001-ITEM-C", _balance("ITEM-C", 1_741_161_600_000, "ten", "0"), MI_HEADERS),
            (stock, b"001-SKU-1001", fixture("bod/SyncInventoryCount.xml"), (("source", b"infor-ion"),)),
        ],
    )
    deadline = time.monotonic() + 60
    order_codec, stock_codec = codecs

    canonical = topics["canonical.order.v1"]
    placed = _by_key(_consume(kafka_bootstrap, canonical, 2, deadline, worker), order_codec, canonical)
    assert list(placed) == ["1:1042"]
    first, second = placed["1:1042"]
    assert [first["meta"]["version"], second["meta"]["version"]] == [
        _paris_ms("2024-05-02 11:15:00"),
        _paris_ms("2024-05-02 11:20:00"),
    ]
    assert first["meta"]["event_id"] != second["meta"]["event_id"]
    assert (first["meta"]["source_system"], first["meta"]["source_id"], first["meta"]["shop_id"]) == (
        "PRESTASHOP",
        "1042",
        "1",
    )
    assert (first["order_key"], first["reference"]) == ("1:1042", "XKBKNABJK")
    assert first["customer"]["email"] == "camille.durand@example.org"
    assert first["shipping_address"]["lines"] == ["12 rue des Lilas", "Bâtiment B, 3e étage"]
    assert (first["shipping_address"]["postal_code"], first["shipping_address"]["country_code"]) == (
        "69003",
        "FR",
    )
    assert [(line["sku"], line["quantity"]) for line in first["lines"]] == [
        ("TSH-ORG-M-BLU", Decimal("2.0000")),
        ("MUG-CER-350", Decimal("1.0000")),
    ]
    totals = first["totals"]
    assert (totals["grand_total"], totals["tax"], totals["shipping"]) == (
        {"amount": Decimal("65.880000"), "currency": "EUR"},
        {"amount": Decimal("10.980000"), "currency": "EUR"},
        {"amount": Decimal("5.000000"), "currency": "EUR"},
    )
    assert (first["payment_status"], first["fulfillment_status"], first["lifecycle"]) == (
        "PAID",
        "UNFULFILLED",
        "OPEN",
    )
    assert first["enrichment"]["warehouse"] == "LYO"
    assert first["anomalies"] == []

    review = topics["review.order.v1"]
    held = _by_key(_consume(kafka_bootstrap, review, 1, deadline, worker), order_codec, review)
    assert list(held) == ["1:1043"]
    (flagged,) = held["1:1043"]
    assert flagged["order_key"] == "1:1043"
    assert [anomaly["code"] for anomaly in flagged["anomalies"]] == ["price_deviation"]
    assert flagged["lines"][0]["unit_price_excl_tax"]["amount"] == Decimal("20.000000")

    inventory = topics["canonical.inventory.v1"]
    levels = _by_key(_consume(kafka_bootstrap, inventory, 4, deadline, worker), stock_codec, inventory)
    assert sorted(levels) == ["ITEM-A", "ITEM-B", "SKU-1001"]
    figures = {
        key: [(d["meta"]["version"], d["on_hand"], d["allocated"], d["available"]) for d in datums]
        for key, datums in levels.items()
    }
    assert figures["ITEM-A"] == [
        (1_741_161_600_000, Decimal(10), Decimal(2), Decimal(8)),
        (1_741_161_660_000, Decimal(12), Decimal(0), Decimal(12)),
    ]
    assert figures["ITEM-B"] == [(1_741_161_600_000, Decimal("5.5"), Decimal(0), Decimal("5.5"))]
    assert figures["SKU-1001"] == [(1, Decimal(123), Decimal(0), Decimal(123))]
    item_b = levels["ITEM-B"][0]
    assert (item_b["warehouse"], item_b["erp_item_number"], item_b["meta"]["source_id"]) == (
        "001",
        "ITEM-B",
        "001-ITEM-B",
    )
    assert str(item_b["meta"]["event_id"]) == infor_event_id(
        "MMS200MI.GetItmWhsBal", "001-ITEM-B", 1_741_161_600_000
    )
    assert item_b["as_of"] == datetime(2025, 3, 5, 8, 0, tzinfo=UTC)

    dead = _consume(kafka_bootstrap, topics["dlq.processors"], 2, deadline, worker)
    # The DLQ record is keyed by the source coordinates; the original key travels as a header.
    reasons = {_headers(message)["dlq.original_key"]: _headers(message) for message in dead}
    assert sorted(reasons) == [b"001-ITEM-C", b"1:orders:1044"]
    assert reasons[b"1:orders:1044"]["dlq.reason"] == b"undecodable"
    assert (reasons[b"001-ITEM-C"]["dlq.reason"], reasons[b"001-ITEM-C"]["dlq.field_path"]) == (
        b"wrong_type",
        b"STQT",
    )
    assert {_value(message) for message in dead} == {
        b"{not json",
        _balance("ITEM-C", 1_741_161_600_000, "ten", "0"),
    }
