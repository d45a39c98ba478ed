"""A sink for the sink runner's tests: records every apply and can be told how to fail.

It consumes InventoryLevel records (catalogue topic ``canonical.inventory.v1``, mapped onto a test topic)
and "applies" ``(sku, meta.version)``. What it does per SKU is set on :class:`Behaviour`: fail with
``RetryableError`` a number of times, be down altogether (every call retryable), refuse with an
``InvalidMessage``, wait for a gate, crash with a bug, or be skipped by ``decode``. It asserts that no
SKU is ever applied twice at the same time (the runner's per-key order) and tracks the concurrency it
saw.

:func:`build_journal_sink` is the factory for worker subprocesses (``--sinks
tests.recording_sink:build_journal_sink``): each apply appends ``start``/``end`` lines to the file named
by ``RECORDING_SINK_JOURNAL`` (one ``O_APPEND`` write per line, so a SIGKILL never tears a line).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import InvalidMessage, RetryableError
from schemas.codec import AvroDatum
from sinks.base import WRITTEN, Applied, SinkContext, SinkResources, Skip

SOURCE = "canonical.inventory.v1"
TARGET = "test"


@dataclass(frozen=True, slots=True)
class StockLevel:
    """The sink's model: which SKU, which version, and where it came from."""

    sku: str
    version: int
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Call:
    """One finished successful apply."""

    sku: str
    version: int
    partition: int
    offset: int
    attempt: int
    started: float
    finished: float


@dataclass
class Behaviour:
    """How the fake target answers; tests change it while the runner runs (same event loop)."""

    delay_s: float = 0.0
    down: bool = False
    """Every apply raises RetryableError (the target is unavailable)."""
    transient: dict[str, int] = field(default_factory=dict)
    """SKU → how many more RetryableErrors to raise before succeeding."""
    retry_after_s: float | None = None
    invalid: dict[str, InvalidMessage] = field(default_factory=dict)
    gates: dict[str, asyncio.Event] = field(default_factory=dict)
    """SKU → apply waits for the event before answering."""
    crash_on: set[str] = field(default_factory=set)
    skip: set[str] = field(default_factory=set)
    skip_versions: set[tuple[str, int]] = field(default_factory=set)
    """(SKU, version) records ``decode`` skips (another warehouse's level of a SKU, say)."""


class RecordingSink:
    """See the module docstring. ``calls`` lists successful applies in completion order."""

    def __init__(
        self,
        behaviour: Behaviour | None = None,
        *,
        name: str = "test-stock",
        coalesce_s: float | None = None,
        journal: Path | None = None,
        active: set[str] | None = None,
    ) -> None:
        self.behaviour = behaviour or Behaviour()
        self.name = name
        self.target = TARGET
        self.sources: tuple[str, ...] = (SOURCE,)
        self.record = "InventoryLevel"
        self.coalesce_s = coalesce_s
        self.calls: list[Call] = []
        self.attempts = 0
        self.failures = 0
        self.max_concurrency = 0
        # Shared by the sinks of several group members to check that no key ever runs on two at once.
        self._active: set[str] = active if active is not None else set()
        self._journal = journal

    def decode(self, datum: AvroDatum, context: SinkContext) -> StockLevel | Skip:
        sku = str(datum["sku"])
        version = int(datum["meta"]["version"])
        if sku in self.behaviour.skip or (sku, version) in self.behaviour.skip_versions:
            return Skip("not_ours")
        record = context.record
        return StockLevel(sku, version, record.partition, record.offset)

    async def apply(self, model: StockLevel, context: SinkContext) -> Applied:
        behaviour = self.behaviour
        assert model.sku not in self._active, f"{model.sku} applied twice at the same time"
        self._active.add(model.sku)
        self.attempts += 1
        self.max_concurrency = max(self.max_concurrency, len(self._active))
        started = time.monotonic()
        self._write("start", model)
        try:
            if behaviour.delay_s:
                await asyncio.sleep(behaviour.delay_s)
            gate = behaviour.gates.get(model.sku)
            if gate is not None:
                await gate.wait()
            if model.sku in behaviour.crash_on:
                raise RuntimeError(f"bug while applying {model.sku}")
            if behaviour.down:
                self.failures += 1
                raise RetryableError("target unavailable", status=503, retry_after=behaviour.retry_after_s)
            remaining = behaviour.transient.get(model.sku, 0)
            if remaining:
                behaviour.transient[model.sku] = remaining - 1
                self.failures += 1
                raise RetryableError("target timed out", status=504, retry_after=behaviour.retry_after_s)
            refusal = behaviour.invalid.get(model.sku)
            if refusal is not None:
                raise refusal
        finally:
            self._active.discard(model.sku)
        self.calls.append(
            Call(
                model.sku,
                model.version,
                model.partition,
                model.offset,
                context.attempt,
                started,
                time.monotonic(),
            )
        )
        self._write("end", model)
        return WRITTEN

    def versions(self) -> dict[str, list[int]]:
        """Per SKU, the versions applied, in completion order."""
        applied: dict[str, list[int]] = {}
        for call in self.calls:
            applied.setdefault(call.sku, []).append(call.version)
        return applied

    def _write(self, event: str, model: StockLevel) -> None:
        if self._journal is None:
            return
        line = f"{event} {model.sku} {model.version} {os.getpid()} {model.partition} {model.offset}\n"
        fd = os.open(self._journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


@asynccontextmanager
async def build_journal_sink(resources: SinkResources) -> AsyncIterator[RecordingSink]:
    """The factory for worker subprocesses; configured by ``RECORDING_SINK_*`` environment variables."""
    journal = Path(os.environ["RECORDING_SINK_JOURNAL"])
    behaviour = Behaviour(
        delay_s=float(os.environ.get("RECORDING_SINK_DELAY_S", "0")),
        crash_on={sku for sku in os.environ.get("RECORDING_SINK_CRASH_ON", "").split(",") if sku},
    )
    yield RecordingSink(behaviour, journal=journal)
