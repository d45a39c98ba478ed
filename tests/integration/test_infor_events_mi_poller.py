"""The MI poller against the Infor sandbox (ION API gateway, OAuth, M3 MI over loopback HTTP) and the
real broker: a stock drift of N changes lands on raw.infor.inventory, the cursor is in
state.watermarks, and a restarted poller (fresh process state, cursor loaded from the topic) resumes
without re-emitting everything."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition

from ingest.infor_events.main import mi_client
from ingest.infor_events.mi_poller import FEEDS, MiPoller, PassResult
from ingest.infor_events.routing import InforEntity
from pipeline.producer import PipelineProducer
from pipeline.settings import InforSettings, KafkaSettings
from pipeline.watermarks import WatermarkStore
from sandbox.infor.app import SandboxOptions
from sandbox.infor.server import InforSandboxServer
from tests.conftest import NewTopicFactory

pytestmark = pytest.mark.integration

DRIFT = 400


def _read_all(bootstrap: str, topic: str) -> list[Any]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"read-{uuid.uuid4().hex}", "enable.auto.commit": False}
    )
    try:
        _, end = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        consumer.assign([TopicPartition(topic, 0, 0)])
        records: list[Any] = []
        deadline = time.monotonic() + 30
        while end and (not records or (records[-1].offset() or 0) + 1 < end):
            assert time.monotonic() < deadline, f"{topic} not read to its end"
            records.extend(m for m in consumer.consume(1000, 0.5) if m.error() is None)
        return records
    finally:
        consumer.close()


def _changed_since(server: InforSandboxServer, lmts: int) -> dict[str, int]:
    """From the sandbox's own state (not through MI): ``{WHLO}-{ITNO}`` → LMTS of every company-100
    balance changed after ``lmts``."""
    return {
        f"{whlo}-{itno}": balance.lmts
        for (cono, whlo, itno), balance in list(server.sandbox.state.balances.items())
        if cono == 100 and balance.lmts > lmts
    }


@pytest.mark.timeout(120)
def test_stock_drift_lands_once_at_least_and_a_restart_resumes_from_the_stored_cursor(
    kafka_bootstrap: str, new_topic: NewTopicFactory, tmp_path: Path
) -> None:
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    inventory = new_topic(partitions=1)
    watermarks = new_topic(partitions=1, config={"cleanup.policy": "compact"})
    topics = {entity: inventory if entity is InforEntity.INVENTORY else "unused" for entity in InforEntity}

    with InforSandboxServer(SandboxOptions(items=150, customers=5)) as server:
        infor = InforSettings(
            ionapi_path=server.write_ionapi(tmp_path / "sandbox.ionapi"), cono="100", divi="AAA"
        )
        with httpx.Client(base_url=server.base_url) as admin:
            assert admin.put("/_sandbox/warehouse", json={"stock_drift_interval_s": 0.0}).status_code == 200

            def drift(changes: int) -> None:
                assert admin.post("/_sandbox/warehouse/drift", json={"changes": changes}).status_code == 200

            def run_process(action: Callable[[MiPoller], Any]) -> Any:
                """One poller "process": its own producer, cursors loaded from the topic, its own memory."""

                async def go(producer: PipelineProducer) -> Any:
                    store = WatermarkStore(kafka, producer, watermarks, client_id_suffix="test-mi-state")
                    await asyncio.to_thread(store.load, 30)
                    async with mi_client(infor) as mi:
                        poller = MiPoller(
                            mi,
                            producer,
                            store,
                            topics=topics,
                            feeds=[FEEDS["inventory"]],
                            page_size=100,
                            overlap_ms=0,
                        )
                        return await action(poller)

                with PipelineProducer(kafka, client_id_suffix="test-mi") as producer:
                    return asyncio.run(go(producer))

            async def two_passes(poller: MiPoller) -> tuple[PassResult, PassResult, int]:
                baseline = await poller.poll(FEEDS["inventory"])
                drift(DRIFT)
                return baseline, await poller.poll(FEEDS["inventory"]), poller.cursor(FEEDS["inventory"])

            seeded = _changed_since(server, 0)
            first_cursor = max(seeded.values())
            baseline, after_drift, cursor = run_process(two_passes)
            changed = _changed_since(server, first_cursor)

            # The restart: a new process loads the cursor from state.watermarks; no change → nothing.
            drift(25)
            changed_late = _changed_since(server, cursor)
            resumed = run_process(lambda poller: poller.poll(FEEDS["inventory"]))

    assert (baseline.emitted, baseline.cursor_after) == (len(seeded), first_cursor)
    assert after_drift.cursor_before == first_cursor
    assert after_drift.emitted == len(changed)  # balances drifted more than once are one latest state
    assert 0 < len(changed) <= DRIFT
    assert cursor == max(changed.values())
    assert resumed.cursor_before == cursor  # loaded from state.watermarks by a fresh process
    assert resumed.emitted == len(changed_late) < len(seeded) + len(changed)
    assert resumed.cursor_after == max(changed_late.values())

    records = _read_all(kafka_bootstrap, inventory)
    on_topic = {(r.key().decode(), int(dict(r.headers())["lmts"])) for r in records}
    assert len(records) == len(seeded) + len(changed) + len(changed_late)  # nothing emitted twice
    for expected in (seeded, changed, changed_late):
        assert {(key, lmts) for key, lmts in expected.items()} <= on_topic
    sample = json.loads(records[-1].value())
    assert sample["LMTS"] == dict(records[-1].headers())["lmts"].decode()
    assert {"WHLO", "ITNO", "STQT", "AV01"} <= set(sample)
    assert dict(records[-1].headers())["source"] == b"infor-mi"

    stored = {r.key(): json.loads(r.value()) for r in _read_all(kafka_bootstrap, watermarks)}
    assert stored[b"infor-mi:100:AAA:inventory"]["lmts"] == resumed.cursor_after
