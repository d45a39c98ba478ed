"""The anomaly history in the real worker: seeded from canonical.order.v1, fed live, routing to review.

Before the worker starts, its (test) ``canonical.order.v1`` already holds 29 usual orders of shop 1
(11.88 or 23.76 EUR), as a previous run would have left them. The worker (``python -m processors.main
--flows prestashop_orders``, real broker and registry) seeds its history from that tail, so:

1. the Lyon order 1042 (65.88 EUR) meets 29 orders, one short of the rules' ``min_history``: no
   flag, it goes to ``canonical.order.v1`` and into the history;
2. the same basket as order 1043 now meets 30 orders (1042 among them): a robust-z outlier,
   ``order_value_outlier`` routes it to ``review.order.v1``;
3. a usual one-mug order afterwards stays on ``canonical.order.v1``.
"""

from __future__ import annotations

import copy
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from pipeline.settings import KafkaSettings, RegistrySettings
from processors import prestashop_orders as orders_flow
from processors.history import AnomalyHistory
from processors.review_decisions import RELEASED, Decision, ReviewFollower
from rules.engine import load_rules
from schemas.codec import AvroCodec, AvroDatum
from schemas.registry import SubjectSchema, register_schemas, registry_client
from tests.conftest import NewTopicFactory
from tests.integration.processor_worker import processor_worker
from tests.integration.test_processor_runtime_production import Topics, _by_key, _consume, _produce
from tests.unit.test_processors_history import INGESTED, small_bundle
from tests.unit.test_processors_prestashop_orders import SNAPSHOT_HEADERS, lyon_bundle

pytestmark = pytest.mark.integration

GroupFactory = Callable[[], str]
SEEDED = 29


def orders_flow_topics(new_topic: NewTopicFactory, registry_url: str) -> Topics:
    """The orders flow's topics for one test (review decisions included), the Order schemas registered."""
    made = Topics(
        {
            "raw.prestashop.orders": new_topic(),
            "canonical.order.v1": new_topic(partitions=2),
            "review.order.v1": new_topic(),
            "canonical.product.v1": new_topic(),
            "canonical.inventory.v1": new_topic(),
            "dlq.processors": new_topic(),
            "state.review-decisions": new_topic(),
        }
    )
    subjects = [
        SubjectSchema(f"{made['canonical.order.v1']}-value", "Order"),
        SubjectSchema(f"{made['review.order.v1']}-value", "Order"),
    ]
    with registry_client(RegistrySettings(url=registry_url)) as client:
        results = register_schemas(client, subjects)
    assert all(result.outcome in ("registered", "unchanged") for result in results), results
    return made


@pytest.fixture
def topics(new_topic: NewTopicFactory, registry_url: str) -> Topics:
    return orders_flow_topics(new_topic, registry_url)


def _order(bundle: dict[str, Any]) -> AvroDatum:
    event = orders_flow.decode(json.dumps(bundle).encode(), SNAPSHOT_HEADERS)
    assert isinstance(event, orders_flow.OrderEvent)
    return orders_flow.to_order(event, load_rules(), ingested_at=INGESTED, correlation_id="seed")


def seed_usual_orders(kafka_bootstrap: str, registry_url: str, canonical: str) -> list[str]:
    """The usual orders a previous run left on canonical.order.v1 (the worker's history seeds on
    them); returns their keys."""
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    keys: list[str] = []
    with registry_client(RegistrySettings(url=registry_url)) as client:
        codec = AvroCodec(client, "Order")
        for number in range(SEEDED):
            datum = _order(small_bundle(2000 + number, 2 if number % 3 == 0 else 1))
            key = str(datum["order_key"])
            # As the runner writes them: the event id travels as a header too.
            headers: list[tuple[str, str | bytes | None]] = [("event_id", str(datum["meta"]["event_id"]))]
            producer.produce(
                canonical, key=key.encode(), value=codec.encode(datum, canonical), headers=headers
            )
            keys.append(key)
    assert producer.flush(30) == 0
    return keys


@pytest.fixture
def seeded(kafka_bootstrap: str, registry_url: str, topics: Topics) -> list[str]:
    return seed_usual_orders(kafka_bootstrap, registry_url, topics["canonical.order.v1"])


@pytest.fixture
def worker(
    kafka_bootstrap: str,
    registry_url: str,
    topics: Topics,
    seeded: list[str],
    new_group: GroupFactory,
    tmp_path: Path,
) -> Iterator[subprocess.Popen[bytes]]:
    """The worker of the orders flow, started once the canonical topic holds the ``seeded`` orders."""
    with processor_worker(
        bootstrap=kafka_bootstrap,
        registry_url=registry_url,
        flows=["prestashop_orders"],
        app_id=new_group(),
        topics=topics.by_name,
        log=tmp_path / "worker.log",
    ) as process:
        yield process


def _bundle(order_id: int, date_upd: str) -> bytes:
    bundle = copy.deepcopy(lyon_bundle())
    bundle["order"]["id"] = order_id
    bundle["order"]["date_upd"] = date_upd
    for detail in bundle["order_details"]:
        detail["id_order"] = str(order_id)
    return json.dumps(bundle).encode()


@pytest.mark.timeout(90)
def test_a_seeded_history_flags_the_outlier_and_routes_it_to_review(
    kafka_bootstrap: str,
    registry_url: str,
    topics: Topics,
    seeded: list[str],
    worker: subprocess.Popen[bytes],
) -> None:
    raw = topics["raw.prestashop.orders"]
    usual = small_bundle(2100, 1)
    _produce(
        kafka_bootstrap,
        [
            (raw, b"1:orders:1042", _bundle(1042, "2024-05-02 11:15:00"), SNAPSHOT_HEADERS),
            (raw, b"1:orders:1043", _bundle(1043, "2024-05-02 11:40:00"), SNAPSHOT_HEADERS),
            (raw, b"1:orders:2100", json.dumps(usual).encode(), SNAPSHOT_HEADERS),
        ],
    )
    deadline = time.monotonic() + 60
    with registry_client(RegistrySettings(url=registry_url)) as client:
        codec = AvroCodec(client, "Order")
        canonical, review = topics["canonical.order.v1"], topics["review.order.v1"]
        placed = _by_key(_consume(kafka_bootstrap, canonical, SEEDED + 2, deadline, worker), codec, canonical)
        held = _by_key(_consume(kafka_bootstrap, review, 1, deadline, worker), codec, review)

    assert sorted(placed) == sorted([*seeded, "1:1042", "1:2100"])
    assert placed["1:1042"][0]["anomalies"] == []  # 29 earlier orders: no basis for a flag yet
    assert placed["1:2100"][0]["anomalies"] == []
    assert list(held) == ["1:1043"]
    (flagged,) = held["1:1043"]
    assert [flag["code"] for flag in flagged["anomalies"]] == ["order_value_outlier"]
    reason = flagged["anomalies"][0]["reason"]
    assert "order value 65.880000 EUR vs median 11.880000 EUR for shop 1 over 30 orders" in reason


def test_a_worker_knows_every_held_key_and_every_release_from_the_topics_at_start_and_while_running(
    kafka_bootstrap: str, new_topic: NewTopicFactory
) -> None:
    review, decisions = new_topic(partitions=2), new_topic()
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for key, version in ((b"1:7", b"100"), (b"1:8", b"100"), (b"1:7", b"200")):
        producer.produce(review, key=key, value=b"held order bytes", headers=[("version", version)])
    producer.produce(review, key=b"1:6", value=b"held before records carried a version")
    producer.produce(review, key=None, value=b"no key: nothing to hold")
    released = Decision("Order", "1:8", RELEASED, 100, "e", "tester", "2026-11-27T10:00:00.000Z")
    producer.produce(decisions, key=released.topic_key, value=released.to_bytes())
    assert producer.flush(10) == 0
    history = AnomalyHistory()
    follower = ReviewFollower(
        history,
        KafkaSettings(bootstrap_servers=kafka_bootstrap),
        review_topics={review: "Order"},
        decisions_topic=decisions,
        tail=100,
    )
    try:
        count = follower.catch_up(timeout_s=30)
        # At start (a restarted worker, or one that takes over a partition): held, released, held.
        assert (count.held, count.released) == (4, 1)
        assert history.held("Order", b"1:7")
        assert history.held("Order", b"1:6")
        assert not history.held("Order", b"1:8")
        assert not history.held("Order", b"1:9")

        # While running: another worker holds 1:9; a person releases 1:7 at version 100 (not its newest).
        producer.produce(review, key=b"1:9", value=b"held order bytes", headers=[("version", b"50")])
        early = Decision("Order", "1:7", RELEASED, 100, "e", "tester", "2026-11-27T10:01:00.000Z")
        producer.produce(decisions, key=early.topic_key, value=early.to_bytes())
        assert producer.flush(10) == 0
        deadline = time.monotonic() + 30
        while not history.held("Order", b"1:9") and time.monotonic() < deadline:
            follower.poll_new()
            time.sleep(0.1)
        for _ in range(20):  # the decision too, whichever topic is fetched first
            follower.poll_new()
            time.sleep(0.1)
        assert history.held("Order", b"1:9")
        assert history.held("Order", b"1:7")  # version 200 was held after the release of 100
    finally:
        follower.close()
