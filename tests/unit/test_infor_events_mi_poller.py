"""The MI poller's cursor rule without network: the cursor moves only after every record of a pass was
acknowledged, a failed pass stores nothing and is read again, a restarted poller resumes from the
stored cursor (re-emitting only the overlap window), and what each feed asks M3 for."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from connectors.infor.mi import MiValue
from ingest.infor_events.mi_poller import FEEDS, MiPoller, lmts_of
from ingest.infor_events.routing import InforEntity
from pipeline.errors import RetryableError
from pipeline.producer import HeaderList

TOPICS = {entity: f"t.{entity.value}" for entity in InforEntity}


class StandInMi:
    """LstNewBalances over an in-memory table: rows with LMTS > the input, in LMTS order."""

    cono = "100"
    divi = "AAA"

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, str]] = {}
        self.queries: list[tuple[str, str, dict[str, MiValue]]] = []
        self.events: list[str] = []

    def change(self, whlo: str, itno: str, lmts: int, stqt: int = 1) -> None:
        self.rows[f"{whlo}/{itno}"] = {"WHLO": whlo, "ITNO": itno, "STQT": str(stqt), "LMTS": str(lmts)}

    async def paginate(
        self,
        program: str,
        transaction: str,
        record: Mapping[str, MiValue],
        *,
        restart_from: Mapping[str, str],
        page_size: int = 500,
    ) -> AsyncIterator[Mapping[str, str]]:
        self.queries.append((program, transaction, dict(record)))
        since = int(str(record["LMTS"]))
        for row in sorted(self.rows.values(), key=lambda r: int(r["LMTS"])):
            if int(row["LMTS"]) > since:
                yield dict(row)


class StandInProducer:
    """Acknowledges (or fails) each record; logs acks into the shared event list."""

    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.records: list[tuple[str, bytes | None, bytes | None, dict[str, bytes]]] = []
        self.fail_keys: set[bytes] = set()

    async def produce_acked(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: HeaderList = (),
        ack_timeout_s: float = 10.0,
    ) -> tuple[int, int]:
        await asyncio.sleep(0)
        if key in self.fail_keys:
            raise RetryableError(f"record to {topic} not acknowledged within 1s")
        self.records.append((topic, key, value, dict(headers)))
        self.events.append(f"ack:{key!r}")
        return 0, len(self.records) - 1


class DictStore:
    def __init__(self, events: list[str]) -> None:
        self.values: dict[str, dict[str, Any]] = {}
        self.events = events

    def get(self, key: str) -> dict[str, Any] | None:
        value = self.values.get(key)
        return dict(value) if value is not None else None

    def put(self, key: str, value: Mapping[str, Any]) -> None:
        self.values[key] = dict(value)
        self.events.append(f"put:{value['lmts']}")


def _poller(mi: StandInMi, producer: StandInProducer, store: DictStore, overlap_ms: int = 0) -> MiPoller:
    return MiPoller(
        mi,
        producer,
        store,
        topics=TOPICS,
        feeds=[FEEDS["inventory"]],
        overlap_ms=overlap_ms,
        clock=lambda: 1e9,
    )


def test_first_pass_emits_every_change_and_stores_the_cursor_after_the_last_ack() -> None:
    mi = StandInMi()
    producer, store = StandInProducer(mi.events), DictStore(mi.events)
    for n in range(5):
        mi.change("001", f"ITEM{n}", 1000 + n, stqt=n)
    result = asyncio.run(_poller(mi, producer, store).poll(FEEDS["inventory"]))
    assert (result.read, result.emitted, result.cursor_before, result.cursor_after) == (5, 5, 0, 1004)
    assert store.values["infor-mi:100:AAA:inventory"]["lmts"] == 1004
    assert mi.events[-1] == "put:1004"
    assert mi.events[:-1] == [f"ack:{f'001-ITEM{n}'.encode()!r}" for n in range(5)]
    topic, key, value, headers = producer.records[2]
    assert (topic, key) == ("t.inventory", b"001-ITEM2")
    assert value is not None
    assert json.loads(value) == {"WHLO": "001", "ITNO": "ITEM2", "STQT": "2", "LMTS": "1002"}
    assert headers["source"] == b"infor-mi"
    assert headers["lmts"] == b"1002"
    assert (headers["program"], headers["transaction"]) == (b"OIS100MI", b"LstNewBalances")
    assert headers["correlation_id"] == b"m3:OIS100MI:001-ITEM2:1002"


def test_a_failed_ack_keeps_the_cursor_and_the_next_pass_reads_the_changes_again() -> None:
    mi = StandInMi()
    producer, store = StandInProducer(mi.events), DictStore(mi.events)
    poller = _poller(mi, producer, store)
    for n in range(3):
        mi.change("001", f"ITEM{n}", 1000 + n)
    asyncio.run(poller.poll(FEEDS["inventory"]))
    mi.change("001", "ITEM0", 2000)
    mi.change("001", "ITEM1", 2001)
    producer.fail_keys = {b"001-ITEM1"}
    with pytest.raises(RetryableError):
        asyncio.run(poller.poll(FEEDS["inventory"]))
    assert store.values["infor-mi:100:AAA:inventory"]["lmts"] == 1002  # not moved past the unacked record
    producer.fail_keys = set()
    result = asyncio.run(poller.poll(FEEDS["inventory"]))
    # ITEM0@2000 was acknowledged in the failed pass: not emitted twice by this process.
    assert (result.read, result.emitted, result.cursor_after) == (2, 1, 2001)
    assert [key for _, key, _, _ in producer.records].count(b"001-ITEM0") == 2  # @1000 and @2000
    assert mi.queries[-1][2] == {"LMTS": "1002"}


def test_a_restarted_poller_resumes_from_the_stored_cursor_and_re_emits_only_the_overlap() -> None:
    mi = StandInMi()
    store = DictStore(mi.events)
    for n in range(100):
        mi.change("001", f"ITEM{n:03d}", 10_000 + n * 10)
    asyncio.run(_poller(mi, StandInProducer(mi.events), store, overlap_ms=25).poll(FEEDS["inventory"]))
    assert store.values["infor-mi:100:AAA:inventory"]["lmts"] == 10_990
    mi.change("002", "NEW", 20_000)

    restarted = StandInProducer(mi.events)
    result = asyncio.run(_poller(mi, restarted, store, overlap_ms=25).poll(FEEDS["inventory"]))
    assert mi.queries[-1][2] == {"LMTS": str(10_990 - 25)}
    # The overlap re-reads changes stamped 10_970..10_990 (a fresh process cannot know they were sent).
    assert [key for _, key, _, _ in restarted.records] == [
        b"001-ITEM097",
        b"001-ITEM098",
        b"001-ITEM099",
        b"002-NEW",
    ]
    assert (result.emitted, result.cursor_after) == (4, 20_000)


def test_a_pass_without_changes_stores_nothing() -> None:
    mi = StandInMi()
    store = DictStore(mi.events)
    result = asyncio.run(_poller(mi, StandInProducer(mi.events), store).poll(FEEDS["inventory"]))
    assert (result.read, result.emitted, result.cursor_after) == (0, 0, 0)
    assert store.values == {}


def test_each_feed_asks_for_changes_since_the_cursor_and_keys_like_its_bod() -> None:
    assert FEEDS["inventory"].query(123) == {"LMTS": "123"}
    assert FEEDS["customers"].query(123) == {"CUNO": "", "LMTS": "123"}
    assert FEEDS["items"].query(1_741_162_000_000) == {"FLMD": "20250305"}
    assert FEEDS["inventory"].key({"WHLO": "001", "ITNO": "SKU-1"}) == "001-SKU-1"
    assert FEEDS["customers"].key({"CUNO": "C0001 "}) == "C0001"
    assert FEEDS["items"].entity is InforEntity.ITEMS


def test_lmts_falls_back_to_the_change_date() -> None:
    assert lmts_of({"LMTS": "1741162000123"}) == 1_741_162_000_123
    assert lmts_of({"LMDT": "20250305"}) == 1_741_132_800_000
    assert lmts_of({}) == 0


def test_the_items_feed_leaves_the_from_date_out_until_it_has_a_watermark() -> None:
    """FLMD is an M3 date field: 00000000 is refused, so the first pass asks for every item."""
    from ingest.infor_events.mi_poller import FEEDS

    items = FEEDS["items"]
    assert items.query(0) == {}
    assert items.query(1_700_000_000_000) == {"FLMD": "20231114"}
