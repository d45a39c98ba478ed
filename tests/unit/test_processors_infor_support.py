"""Shared helpers of the Infor flow tests: the sandbox's BODs, a FlowContext, Avro validation."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from fastavro.validation import validate

from pipeline.records import Headers, SourceRecord
from processors.runner import FlowContext
from sandbox.infor.bod import Bod, BodPublisher
from sandbox.infor.m3_state import M3State, OrderHead, OrderLine
from sandbox.infor.seed import SeedSpec, seed_state
from sandbox.infor.warehouse import WarehouseConfig, WarehouseSimulation
from schemas.loader import parsed_schema

FIXTURES = Path(__file__).resolve().parents[2] / "connectors" / "infor" / "testdata"
INGESTED_AT = datetime(2025, 3, 5, 8, 6, tzinfo=UTC)
CLOCK_START = 1_741_161_600.0  # 2025-03-05T08:00:00Z


def fixture(name: str) -> bytes:
    """A reference fixture's bytes (``bod/SyncShipment.xml``, ``m3/...``)."""
    return (FIXTURES / name).read_bytes()


def context(headers: Headers = ()) -> FlowContext:
    """The context the runner would give a record received at :data:`INGESTED_AT`."""
    received = INGESTED_AT.isoformat(timespec="milliseconds").replace("+00:00", "Z").encode()
    record = SourceRecord(
        topic="raw.infor.test",
        partition=0,
        offset=7,
        key=b"k",
        value=b"",
        headers=(*headers, ("received_at", received)),
        timestamp_ms=0,
    )
    return FlowContext(record=record, correlation_id="corr-1", source_event_id="bod-1")


def assert_valid(record: str, datum: dict[str, Any]) -> None:
    """Fail unless ``datum`` is a valid ``record`` (fastavro, the composed schema)."""
    assert validate(datum, parsed_schema(record), raise_errors=True)


@cache
def sandbox_bods() -> tuple[Bod, ...]:
    """Every Sync BOD the Infor sandbox publishes while one web order goes from entry to invoice."""
    published: list[Bod] = []
    ticks = iter(range(10_000))
    state = M3State(clock=lambda: CLOCK_START + next(ticks))
    seed_state(state, SeedSpec(seed=3, items=5, customers=3))
    state.listeners.append(BodPublisher(state, "ACME_TST", published.append))
    head = OrderHead(
        cuno="PS000042", ortp="WEB", faci="A01", whlo="001", cuor="KXJQWVBZT", ordt="20250305",
        rldt="20250305", cucd="EUR", modl="UPS", tedl="DAP", tepy="30D", yref="Jane Doe",
    )  # fmt: skip
    batch = state.new_batch_order(100, "AAA", head)
    batch.lines.append(
        OrderLine(1, "SKU-1001", "Blue mug", Decimal("2"), "001", Decimal("19.90"), "EUR", "20250306")
    )
    state.confirm(batch)
    WarehouseSimulation(state, WarehouseConfig(), random.Random(5)).step(5)
    return tuple(published)


def sandbox_bod(document_name: str, index: int = -1) -> Bod:
    """The ``index``-th sandbox BOD called ``document_name`` (the last by default)."""
    found = [bod for bod in sandbox_bods() if bod.document_name == document_name]
    return found[index]
