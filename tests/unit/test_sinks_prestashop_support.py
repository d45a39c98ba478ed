"""Helpers shared by the PrestaShop sink tests (no tests here).

Each sink test runs the sink against a small seeded PrestaShop sandbox served by uvicorn on a free
loopback port (real HTTP, real ``PSWS-Version``), through the same rate-limited client the sink's
``build`` opens (:func:`sinks.prestashop_target.open_shop_client`). What the shop holds afterwards is
read back through the sandbox's admin API (plain JSON, independent of the client under test).

Datums are the schema examples (``schemas/examples``) with fields changed, converted exactly as the
Avro codec hands them to ``decode`` (Decimal, aware datetimes).
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr

from connectors.prestashop.client import PrestaShopClient
from pipeline.records import SourceRecord
from pipeline.settings import PrestaShopSettings
from rules.engine import Rules, load_rules
from sandbox.prestashop.config import KeyPermissions, SandboxConfig
from sandbox.prestashop.server import SandboxServer
from schemas.codec import AvroDatum
from schemas.examples import load_examples, to_datum
from schemas.loader import compose
from sinks.base import SinkContext
from sinks.prestashop_target import open_shop_client

KEY = "SINKTESTKEY0123456789ABCDEFGHIJK"
VERSIONS = ("1.7.8.8", "8.1.7", "9.1.0")
"""Every sandbox version: 1.7 has no PATCH (read-modify PUT), 8.1+ refuses secure_key in a body."""
SHOP_ID = 1


def shop_config(version: str, **changes: Any) -> SandboxConfig:
    """A small seeded shop: 80 products (about a third with combinations), 20 customers, 20 orders."""
    values: dict[str, Any] = {
        "version": version,
        "keys": (KeyPermissions(KEY),),
        "products": 80,
        "customers": 20,
        "orders": 20,
        "seed": 3,
    }
    values.update(changes)
    return SandboxConfig(**values)


@contextmanager
def running_shop(version: str, **changes: Any) -> Iterator[SandboxServer]:
    """A sandbox on a free loopback port, stopped when the block ends (even on failure)."""
    with SandboxServer(shop_config(version, **changes)) as server:
        yield server


def shop_settings(server: SandboxServer, **changes: Any) -> PrestaShopSettings:
    """The settings a sink would get for this sandbox (short timeouts: a hang fails fast)."""
    values: dict[str, Any] = {
        "base_url": server.base_url,
        "ws_key": SecretStr(KEY),
        "shop_id": SHOP_ID,
        "timeout_s": 5.0,
        "connect_timeout_s": 2.0,
    }
    values.update(changes)
    return PrestaShopSettings(**values)


class Wire(httpx.AsyncBaseTransport):
    """A real HTTP transport that remembers each request's method and path (for "wrote nothing")."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.calls: list[tuple[str, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send for real; record ``(method, path)``."""
        self.calls.append((request.method, request.url.path))
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        """Close the real transport."""
        await self._inner.aclose()

    def writes(self) -> list[tuple[str, str]]:
        """The POST/PUT/PATCH requests sent so far."""
        return [(method, path) for method, path in self.calls if method in ("POST", "PUT", "PATCH")]


@asynccontextmanager
async def sink_client(server: SandboxServer, wire: Wire | None = None) -> AsyncIterator[PrestaShopClient]:
    """The client a sink's ``build`` opens (rate-limited per webservice key) on this sandbox;
    ``wire`` (below the limiter, as the network is) records what was sent."""
    async with open_shop_client(shop_settings(server), transport=wire) as client:
        yield client


_RULES: list[Rules] = []


def rules() -> Rules:
    """The packaged default rules (loaded once per test session)."""
    if not _RULES:
        _RULES.append(load_rules())
    return _RULES[0]


def context(attempt: int = 1) -> SinkContext:
    """A SinkContext as the runner builds it (no Kafka involved: decode/apply never read the record)."""
    record = SourceRecord(topic="canonical.test", partition=0, offset=0, key=b"k", value=b"", headers=())
    return SinkContext(record=record, event_id=str(uuid.uuid4()), correlation_id="test", attempt=attempt)


def datum(record: str, example: str, *, meta: Mapping[str, Any] | None = None, **fields: Any) -> AvroDatum:
    """The example ``record/example.json`` with ``fields`` (and ``meta`` entries) replaced, as a datum."""
    [found] = [e for e in load_examples(record) if e.name == example]
    value = copy.deepcopy(dict(found.json_value))
    value.update(fields)
    if meta:
        value["meta"] = {**value["meta"], **meta}
    converted: AvroDatum = to_datum(compose(record), value)
    return converted


@dataclass
class Admin:
    """The sandbox's ``/_sandbox`` admin API: shop state as plain JSON, faults, back-office actions."""

    http: httpx.AsyncClient
    server: SandboxServer

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One admin call; fails the test on a non-2xx answer."""
        response = await self.http.request(method, f"{self.server.base_url}/_sandbox/{path}", **kwargs)
        assert response.is_success, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    async def row(self, resource: str, id_: int) -> dict[str, Any]:
        """One stored row."""
        found: dict[str, Any] = await self.call("GET", f"resources/{resource}/{id_}")
        return found

    async def rows(self, resource: str) -> list[dict[str, Any]]:
        """Every stored row of a table, by id."""
        found: list[dict[str, Any]] = await self.call(
            "GET", f"resources/{resource}", params={"limit": 100_000}
        )
        return found

    async def fail_next(
        self, resource: str, count: int = 1, *, status: int = 503, method: str | None = None
    ) -> None:
        """The next ``count`` requests on ``resource`` (optionally of one method) answer ``status``."""
        body: dict[str, Any] = {"kind": "error", "resource": resource, "next": count, "status": status}
        if method is not None:
            body["method"] = method
        await self.call("POST", "faults", json=body)

    async def clear_faults(self) -> None:
        """Remove every fault rule."""
        await self.call("DELETE", "faults")

    async def state_id(self, key: str) -> int:
        """The shop's id for a PS_OS_* configuration key (read from its configuration table)."""
        for row in await self.rows("configurations"):
            if row["name"] == key:
                return int(row["value"])
        raise AssertionError(f"the shop has no {key}")

    async def place_order(
        self, *, state: str, product_id: int = 1, combination_id: int = 0
    ) -> dict[str, Any]:
        """A checkout by customer 1 in ``state`` (a PS_OS_* key); returns the stored order."""
        body = {
            "customer_id": 1,
            "lines": [{"product_id": product_id, "combination_id": combination_id, "quantity": 1}],
            "state": state,
        }
        found: dict[str, Any] = await self.call("POST", "orders", json=body)
        return found

    async def histories_of(self, id_order: int) -> list[dict[str, Any]]:
        """The order's order_histories rows, by id."""
        return [row for row in await self.rows("order_histories") if int(row["id_order"]) == id_order]


@asynccontextmanager
async def admin(server: SandboxServer) -> AsyncIterator[Admin]:
    """An admin helper on its own plain HTTP client."""
    async with httpx.AsyncClient(timeout=5.0) as http:
        yield Admin(http, server)
