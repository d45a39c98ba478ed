"""``psinfor review``: a held order released to Infor and a rejected one, with the real worker.

The worker (``python -m processors.main --flows prestashop_orders``, real broker and registry) meets 29
usual orders of shop 1 seeded on its canonical topic, then the Lyon order 1042 (no flag yet: one short
of ``min_history``), then the same basket as 1043 and 1044: order value outliers, held on
``review.order.v1``. Then, with the CLI as an operator runs it:

1. ``review list`` shows both pending; ``review release 1:1043`` puts the held version on
   ``canonical.order.v1`` (same event id, ``review_decision=released``); a second release finds it
   done and writes nothing; ``review reject 1:1044`` records the rejection;
2. the shop then edits both orders down to one mug (unflagged later versions): 1043's goes to the
   canonical topic (the running worker learned the release without a restart), 1044's stays held;
3. a restarted worker knows both from the topics: another version of 1043 flows, 1044's stays held.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer

from cli.main import main as psinfor
from pipeline.settings import RegistrySettings
from processors.review_decisions import Decision
from schemas.codec import AvroCodec, AvroDatum
from schemas.registry import registry_client
from tests.conftest import NewTopicFactory
from tests.integration.processor_worker import processor_worker
from tests.integration.test_processor_runtime_production import Topics, _consume, _headers, _key, _produce
from tests.integration.test_processors_history_review import (
    SEEDED,
    _bundle,
    _order,
    orders_flow_topics,
    seed_usual_orders,
)
from tests.unit.test_processors_history import small_bundle
from tests.unit.test_processors_prestashop_orders import SNAPSHOT_HEADERS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

GroupFactory = Callable[[], str]


@pytest.fixture
def topics(new_topic: NewTopicFactory, registry_url: str) -> Topics:
    return orders_flow_topics(new_topic, registry_url)


@pytest.fixture
def cli_env(kafka_bootstrap: str, registry_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``psinfor review`` run in process reaches the session's broker and registry."""
    monkeypatch.setenv("PSINFOR_KAFKA__BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("PSINFOR_REGISTRY__URL", registry_url)


def _keys_on(bootstrap: str, topic: str) -> list[bytes]:
    """The keys of every record of ``topic``, read until nothing more came for 3 s."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex, "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    keys: list[bytes] = []
    quiet_since = time.monotonic()
    try:
        while time.monotonic() - quiet_since < 3.0:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                keys.append(_key(message))
                quiet_since = time.monotonic()
    finally:
        consumer.close()
    return keys


def _one_mug(order_id: int, date_upd: str) -> bytes:
    """The shop edited the order down to one mug: a later, usual version (no flag)."""
    bundle = small_bundle(order_id, 1)
    bundle["order"]["date_upd"] = date_upd
    return json.dumps(bundle).encode()


def _review(capsys: pytest.CaptureFixture[str], topics: Topics, *argv: str) -> tuple[int, str]:
    renames = [
        f"--topic={name}={topics[name]}"
        for name in ("review.order.v1", "canonical.order.v1", "state.review-decisions")
    ]
    code = psinfor(["review", *argv, *renames])
    return code, capsys.readouterr().out


def _decoded(
    kafka_bootstrap: str, registry_url: str, topic: str, count: int, worker: subprocess.Popen[bytes]
) -> list[tuple[str, AvroDatum, dict[str, bytes]]]:
    """(key, datum, headers) of the first ``count`` records of ``topic`` (waits for them; fails on extras
    only through the callers' counts)."""
    messages = _consume(kafka_bootstrap, topic, count, time.monotonic() + 60, worker)
    with registry_client(RegistrySettings(url=registry_url)) as client:
        codec = AvroCodec(client, "Order")
        ordered = sorted(messages, key=lambda m: (m.partition(), m.offset()))
        return [(_key(m).decode(), codec.decode(m.value() or b"", topic), _headers(m)) for m in ordered]


def test_a_released_order_reaches_the_canonical_topic_and_its_later_versions_flow_a_rejected_one_stays_held(
    kafka_bootstrap: str,
    registry_url: str,
    topics: Topics,
    new_group: GroupFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    cli_env: None,
) -> None:
    canonical, review, raw = (
        topics["canonical.order.v1"],
        topics["review.order.v1"],
        topics["raw.prestashop.orders"],
    )
    seed_usual_orders(kafka_bootstrap, registry_url, canonical)
    app_id = new_group()

    def worker() -> AbstractContextManager[subprocess.Popen[bytes]]:
        return processor_worker(
            bootstrap=kafka_bootstrap,
            registry_url=registry_url,
            flows=["prestashop_orders"],
            app_id=app_id,
            topics=topics.by_name,
            log=tmp_path / "worker.log",
        )

    with worker() as process:
        _produce(
            kafka_bootstrap,
            [
                (raw, b"1:orders:1042", _bundle(1042, "2024-05-02 11:15:00"), SNAPSHOT_HEADERS),
                (raw, b"1:orders:1043", _bundle(1043, "2024-05-02 11:40:00"), SNAPSHOT_HEADERS),
                (raw, b"1:orders:1044", _bundle(1044, "2024-05-02 11:41:00"), SNAPSHOT_HEADERS),
            ],
        )
        held = _decoded(kafka_bootstrap, registry_url, review, 2, process)
        assert [key for key, _, _ in held] == ["1:1043", "1:1044"]
        held_1043 = held[0][1]

        # 1. list, release (twice), reject.
        code, listed = _review(capsys, topics, "list")
        assert code == 0
        lines = listed.splitlines()
        assert [line.split()[0] for line in lines[1:]] == ["1:1043", "1:1044"]
        assert all("order_value_outlier" in line and line.endswith("pending") for line in lines[1:])

        code, printed = _review(capsys, topics, "show", "1:1043")
        assert code == 0
        whole = json.loads(printed)
        assert whole["order"]["meta"]["event_id"] == str(held_1043["meta"]["event_id"])
        assert whole["order"]["reference"] == held_1043["reference"]
        assert "order value 65.880000 EUR vs median" in whole["anomalies"][0]["reason"]

        code, said = _review(capsys, topics, "release", "1:1043", "--by", "tester", "--yes")
        assert code == 0, said
        assert said.startswith("released 1:1043 version ")
        code, said = _review(capsys, topics, "release", "1:1043", "--by", "tester", "--yes")
        assert (code, "is already released" in said) == (0, True)
        code, said = _review(capsys, topics, "release", "1:1044", "--by", "tester", "--dry-run")
        assert (code, said.startswith("would release 1:1044 version ")) == (0, True)
        assert (
            psinfor(["review", "reject", "1:1044", "--by", "tester", "--reason", "x"]) == 2
        )  # no --yes, no tty
        assert "confirm with --yes" in capsys.readouterr().err
        code, said = _review(
            capsys, topics, "reject", "1:1044", "--by", "tester", "--reason", "test order", "--yes"
        )
        assert (code, said.strip()) == (
            0,
            f"rejected 1:1044 version {held[1][1]['meta']['version']} by tester",
        )

        # 2. Later, unflagged versions: 1043's flows (the worker learned the release), 1044's stays held.
        _produce(
            kafka_bootstrap,
            [
                (raw, b"1:orders:1043", _one_mug(1043, "2024-05-02 12:00:00"), SNAPSHOT_HEADERS),
                (raw, b"1:orders:1044", _one_mug(1044, "2024-05-02 12:00:00"), SNAPSHOT_HEADERS),
            ],
        )
        placed = _decoded(kafka_bootstrap, registry_url, canonical, SEEDED + 3, process)
        held = _decoded(kafka_bootstrap, registry_url, review, 3, process)

    versions_1043 = [(datum, headers) for key, datum, headers in placed if key == "1:1043"]
    assert len(versions_1043) == 2
    (released, released_headers), (later, _) = versions_1043
    assert released["meta"]["event_id"] == held_1043["meta"]["event_id"]  # the held version, unchanged
    assert released["anomalies"] == held_1043["anomalies"]
    assert released_headers["review_decision"] == b"released"
    assert released_headers["reviewed_by"] == b"tester"
    assert released_headers["event_id"].decode() == str(held_1043["meta"]["event_id"])
    assert later["anomalies"] == []
    assert later["meta"]["version"] > released["meta"]["version"]
    assert [key for key, _, _ in held] == ["1:1043", "1:1044", "1:1044"]  # nothing of 1043 after release
    assert "1:1044" not in {key for key, _, _ in placed}

    # 3. A restarted worker: 1043 is released (decisions read at start), 1044 still held (review topic).
    with worker() as process:
        _produce(
            kafka_bootstrap,
            [
                (raw, b"1:orders:1043", _one_mug(1043, "2024-05-02 12:30:00"), SNAPSHOT_HEADERS),
                (raw, b"1:orders:1044", _one_mug(1044, "2024-05-02 12:30:00"), SNAPSHOT_HEADERS),
            ],
        )
        placed = _decoded(kafka_bootstrap, registry_url, canonical, SEEDED + 4, process)
        held = _decoded(kafka_bootstrap, registry_url, review, 4, process)
    assert [key for key, _, _ in placed].count("1:1043") == 3
    assert [key for key, _, _ in held] == ["1:1043", "1:1044", "1:1044", "1:1044"]

    code, listed = _review(capsys, topics, "list", "--all", "--format", "json")
    shown = {item["key"]: item for item in json.loads(listed)}
    assert shown["1:1043"]["status"] == "released"
    assert shown["1:1044"]["status"] == "pending"  # a version held after the rejection waits again
    assert Decision.from_bytes(json.dumps(shown["1:1043"]["decision"]).encode()).by == "tester"


def test_an_interrupted_release_is_finished_without_writing_the_order_twice(
    kafka_bootstrap: str,
    registry_url: str,
    topics: Topics,
    capsys: pytest.CaptureFixture[str],
    cli_env: None,
) -> None:
    canonical, review, decisions = (
        topics["canonical.order.v1"],
        topics["review.order.v1"],
        topics["state.review-decisions"],
    )
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    held: dict[str, AvroDatum] = {}
    with registry_client(RegistrySettings(url=registry_url)) as client:
        codec = AvroCodec(client, "Order")
        for order_id in (1050, 1051):
            datum = _order(json.loads(_bundle(order_id, "2024-05-02 11:40:00")))
            key = str(datum["order_key"])
            held[key] = datum
            headers: list[tuple[str, str | bytes | None]] = [("event_id", str(datum["meta"]["event_id"]))]
            producer.produce(review, key=key.encode(), value=codec.encode(datum, review), headers=headers)
            # A release that stopped after its first step: the decision `releasing` is written...
            started = Decision(
                "Order",
                key,
                "releasing",
                int(datum["meta"]["version"]),
                str(datum["meta"]["event_id"]),
                "tester",
                "2026-11-27T10:00:00.000Z",
            )
            producer.produce(decisions, key=started.topic_key, value=started.to_bytes())
        # ... and for 1:1050 the order reached the canonical topic too, for 1:1051 it did not.
        written = held["1:1050"]
        producer.produce(
            canonical,
            key=b"1:1050",
            value=codec.encode(written, canonical),
            headers=[("event_id", str(written["meta"]["event_id"]))],
        )
    assert producer.flush(30) == 0

    code, listed = _review(capsys, topics, "list")
    assert code == 0
    assert all(
        line.endswith("releasing by tester at 2026-11-27T10:00:00.000Z") for line in listed.splitlines()[1:]
    )
    for key in ("1:1050", "1:1051"):
        code, said = _review(capsys, topics, "release", key, "--by", "tester", "--yes")
        assert code == 0, said
    assert sorted(_keys_on(kafka_bootstrap, canonical)) == [b"1:1050", b"1:1051"]  # each exactly once
    code, listed = _review(capsys, topics, "list", "--all", "--format", "json")
    assert {item["key"]: item["status"] for item in json.loads(listed)} == {
        "1:1050": "released",
        "1:1051": "released",
    }
