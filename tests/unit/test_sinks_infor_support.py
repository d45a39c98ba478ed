"""Shared helpers of the Infor sink tests: canonical records from the examples, the sandbox, a fake producer.

The sinks talk to the Infor sandbox over real loopback HTTP (its admin API is how the tests read what
M3 holds); the ``state.erp-links`` writes go to :class:`RecordingProducer`, an object with the
producer's ``produce_acked`` interface, because no broker is needed to see what was written.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import httpx

from connectors.infor.gateway import open_gateway
from connectors.infor.ionapi import IonApiCredentials, load_ionapi
from connectors.infor.m3 import M3Adapter, M3OrderDefaults
from pipeline.producer import HeaderList
from pipeline.records import SourceRecord
from processors.erp_links import ErpLinkIndex
from rules.engine import Rules, load_rules
from sandbox.infor.app import SandboxOptions
from sandbox.infor.server import InforSandboxServer
from schemas.codec import AvroDatum
from schemas.examples import load_examples
from sinks.base import SinkContext
from sinks.infor_customers import (
    CustomerResolver,
    InforCustomersSink,
    InforSinkOptions,
    KeyedLocks,
    LinkWriter,
)
from sinks.infor_orders import InforOrdersSink

T = TypeVar("T")
IndexT = TypeVar("IndexT", bound=ErpLinkIndex)

RULES: Rules = load_rules()
LINKS_TOPIC = "state.erp-links"
CONO = "100"
OPTIONS = InforSinkOptions(
    defaults=M3OrderDefaults(
        order_type="CO1", warehouse="001", customer_template="WEBTPL", shipping_charge_id="FREIGHT"
    ),
    wrapping_charge_id="WRAP",
)


def run(coro: Awaitable[T]) -> T:
    """Run one scenario on a fresh event loop."""

    async def main() -> T:
        return await coro

    return asyncio.run(main())


def example(record: str, name: str) -> AvroDatum:
    """A schema example as the Avro datum the runner would hand to ``decode`` (a deep copy)."""
    for found in load_examples(record):
        if found.name == name:
            return copy.deepcopy(found.datum())
    raise LookupError(f"no example {record}/{name}")


def sandbox_order(
    order_key: str = "1:1042",
    reference: str = "XKBKNABJK",
    *,
    customer_key: str = "1:318",
    email: str = "camille.durand@example.org",
    skus: tuple[str, ...] = ("SKU-1001", "SKU-2002"),
) -> AvroDatum:
    """The EUR example order, re-pointed at items and the warehouse the Infor sandbox has."""
    datum = example("Order", "eur-two-lines-variant")
    datum["order_key"] = order_key
    datum["reference"] = reference
    datum["customer"]["customer_key"] = customer_key
    datum["customer"]["email"] = email
    for line, sku in zip(datum["lines"], skus, strict=True):
        line["sku"] = sku
    datum["enrichment"]["warehouse"] = "001"
    datum["enrichment"]["order_type"] = "CO1"
    return datum


def context(
    key: str = "1:1042", *, correlation_id: str = "corr-1", topic: str = "canonical.order.v1"
) -> SinkContext:
    """The context the runner gives ``apply`` for a record of ``key``."""
    record = SourceRecord(topic=topic, partition=0, offset=7, key=key.encode(), value=b"")
    return SinkContext(
        record=record, event_id="00000000-0000-0000-0000-000000000001", correlation_id=correlation_id
    )


@dataclass
class Produced:
    """One record handed to :meth:`RecordingProducer.produce_acked`."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: HeaderList

    def json(self) -> Any:
        """The value as JSON (links are small JSON records)."""
        assert self.value is not None
        return json.loads(self.value)


@dataclass
class RecordingProducer:
    """``produce_acked`` that records each record and "acks" it at once (offsets count up)."""

    records: list[Produced] = field(default_factory=list)

    async def produce_acked(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: HeaderList = (),
        ack_timeout_s: float = 10.0,
    ) -> tuple[int, int]:
        self.records.append(Produced(topic, key, value, tuple(headers)))
        return 0, len(self.records) - 1

    def links(self) -> list[tuple[str, Any]]:
        """The ``state.erp-links`` records written, as (key, JSON value)."""
        return [((r.key or b"").decode(), r.json()) for r in self.records if r.topic == LINKS_TOPIC]

    def replay_into(self, index: IndexT) -> IndexT:
        """Apply every link written to ``index`` (what a restarted process reads from the topic)."""
        for record in self.records:
            if record.topic == LINKS_TOPIC:
                index.apply(record.key, record.value)
        return index


class RecordingTransport(httpx.AsyncBaseTransport):
    """The real network, remembering every MI call as (program/transaction, query parameters)."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.calls: list[tuple[str, dict[str, str]]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if "/m3api-rest/v2/execute/" in path:
            operation = "/".join(path.split("/")[-2:])
            self.calls.append((operation, dict(request.url.params)))
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()

    def count(self, operation: str) -> int:
        """How many calls of ``operation`` (``CRS610MI/Add``) were made."""
        return sum(1 for name, _ in self.calls if name == operation)


@contextlib.contextmanager
def running_sandbox() -> Iterator[InforSandboxServer]:
    """A small Infor sandbox on a free loopback port."""
    with InforSandboxServer(SandboxOptions(items=40, customers=5, credential_seed=7)) as server:
        yield server


@contextlib.contextmanager
def admin_client(server: InforSandboxServer) -> Iterator[httpx.Client]:
    """The sandbox's admin API with everything reset to the seed and no faults."""
    with httpx.Client(base_url=server.base_url + "/_sandbox", timeout=30) as client:
        client.post("/reset").raise_for_status()
        client.delete("/faults").raise_for_status()
        client.put("/gateway", json={"timeout_s": 60.0, "quota_requests": 0}).raise_for_status()
        yield client


def credentials_of(server: InforSandboxServer, directory: Path) -> IonApiCredentials:
    """The sandbox's ``.ionapi`` credentials, written to and read from ``directory``."""
    return load_ionapi(server.write_ionapi(directory / "sandbox.ionapi"))


@dataclass
class InforProcess:
    """What one sink process holds: its M3 connection, links, producer and per-customer locks."""

    adapter: M3Adapter
    transport: RecordingTransport
    producer: RecordingProducer = field(default_factory=RecordingProducer)
    links: ErpLinkIndex = field(default_factory=ErpLinkIndex)
    locks: KeyedLocks = field(default_factory=KeyedLocks)
    options: InforSinkOptions = OPTIONS

    def resolver(self) -> CustomerResolver:
        """A customer resolver on this process's connection, links and locks."""
        return CustomerResolver(self.adapter, cono=CONO, links=self.links, locks=self.locks)

    def writer(self) -> LinkWriter:
        """The links writer of this process."""
        return LinkWriter(self.producer, LINKS_TOPIC, self.links)

    def orders_sink(self, rules: Rules = RULES) -> InforOrdersSink:
        """An ``infor-orders`` sink of this process."""
        return InforOrdersSink(
            self.adapter, self.resolver(), self.links, self.writer(), rules, cono=CONO, options=self.options
        )

    def customers_sink(self, rules: Rules = RULES) -> InforCustomersSink:
        """An ``infor-customers`` sink of this process."""
        return InforCustomersSink(self.resolver(), self.writer(), rules, cono=CONO, options=self.options)


@contextlib.asynccontextmanager
async def infor_process(
    credentials: IonApiCredentials, *, options: InforSinkOptions = OPTIONS
) -> AsyncIterator[InforProcess]:
    """A sink process's M3 connection to the sandbox (closed, tokens revoked, at the end)."""
    transport = RecordingTransport()
    gateway = open_gateway(credentials, transport=transport)
    try:
        adapter = M3Adapter(gateway.mi(cono=int(CONO), divi="AAA"), options.defaults)
        yield InforProcess(adapter, transport, options=options)
    finally:
        await gateway.aclose()


def money(amount: str, currency: str = "EUR") -> dict[str, Any]:
    """A canonical ``Money`` datum."""
    return {"amount": Decimal(amount), "currency": currency}


PLACED_AT = datetime(2024, 5, 2, 9, 14, 52, tzinfo=UTC)
