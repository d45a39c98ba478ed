"""Fault injection for the webservice routes: latency, 5xx, 429, hangs and dropped connections.

Rules are set through the admin API, per resource (``orders``) or global (``None``), optionally per
method, and fire either with a probability (seeded random, so a run is repeatable) or for the next
N matching requests. Latency adds up across matching rules; the first matching terminal fault
(error, rate limit, timeout, drop) decides the answer. The admin API itself is never faulted.

Applied by :class:`FaultMiddleware`, the outermost ASGI layer, which is the only place that can
close a connection without a response: on uvicorn it aborts the socket's transport; under an
in-process ASGI transport (tests) it raises :class:`DroppedConnectionError` instead, which the client
sees as a transport error — the same thing a dropped connection is to it.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import asdict, dataclass
from typing import Any, Literal
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send

FaultKind = Literal["latency", "error", "rate_limit", "timeout", "drop"]


class DroppedConnectionError(ConnectionError):
    """Raised in place of closing the socket when no real socket exists (in-process tests)."""


@dataclass(slots=True)
class FaultRule:
    """One fault: what, where (``resource`` / ``method``; ``None`` = any) and how often.

    ``remaining`` set → fires for exactly the next N matching requests (``probability`` ignored);
    otherwise fires with ``probability``. ``status`` is the 5xx for ``error``; ``retry_after`` the
    seconds in the 429's ``Retry-After``; ``hang_seconds`` how long ``timeout`` holds the request
    before answering 504 (make it longer than the client's timeout); ``latency_ms`` the delay added.
    """

    kind: FaultKind
    resource: str | None = None
    method: str | None = None
    probability: float = 1.0
    remaining: int | None = None
    status: int = 503
    retry_after: int = 1
    hang_seconds: float = 30.0
    latency_ms: int = 0
    id: int = 0
    fired: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON view for the admin API."""
        return asdict(self)


class FaultInjector:
    """The active rules and the seeded random source deciding probabilistic ones."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)
        self.rules: list[FaultRule] = []
        self._next_id = 1

    def add(self, rule: FaultRule) -> FaultRule:
        """Activate a rule; returns it with its id."""
        rule.id = self._next_id
        self._next_id += 1
        self.rules.append(rule)
        return rule

    def remove(self, rule_id: int) -> bool:
        """Deactivate one rule; False when no such rule."""
        before = len(self.rules)
        self.rules = [r for r in self.rules if r.id != rule_id]
        return len(self.rules) != before

    def clear(self, seed: int | None = None) -> None:
        """Remove every rule (and reseed when ``seed`` is given)."""
        self.rules = []
        if seed is not None:
            self.rng = random.Random(seed)

    def decide(self, resource: str | None, method: str) -> tuple[int, FaultRule | None]:
        """For one request: total added latency (ms) and the terminal fault to apply, if any."""
        latency = 0
        terminal: FaultRule | None = None
        for rule in self.rules:
            if rule.resource not in (None, resource) or rule.method not in (None, method):
                continue
            if terminal is not None and rule.kind != "latency":
                continue
            if rule.remaining is not None:
                if rule.remaining <= 0:
                    continue
                rule.remaining -= 1
            elif self.rng.random() >= rule.probability:
                continue
            rule.fired += 1
            if rule.kind == "latency":
                latency += rule.latency_ms
            else:
                terminal = rule
                latency += rule.latency_ms
        return latency, terminal


def resource_of(scope: Scope) -> str | None:
    """The webservice resource a request addresses (``None`` for the root or non-API paths)."""
    path: str = scope.get("path", "")
    if path.startswith("/api"):
        url = path[len("/api") :]
    elif path.startswith("/webservice/dispatcher.php"):
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        url = query.get("url", [""])[0]
    else:
        return None
    first = url.strip("/").split("/", 1)[0]
    return first or None


class FaultMiddleware:
    """Outermost ASGI layer applying :class:`FaultInjector` decisions to webservice requests."""

    def __init__(self, app: ASGIApp, injector: FaultInjector) -> None:
        self.app = app
        self.injector = injector

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path.startswith("/api") or path.startswith("/webservice/")):
            await self.app(scope, receive, send)
            return
        latency, rule = self.injector.decide(resource_of(scope), scope.get("method", "GET"))
        if latency:
            await asyncio.sleep(latency / 1000)
        if rule is None:
            await self.app(scope, receive, send)
            return
        if rule.kind == "drop":
            await self._drop(send)
            return
        if rule.kind == "timeout":
            await asyncio.sleep(rule.hang_seconds)
            await _plain(send, 504, b"Gateway Timeout (sandbox fault)", [])
            return
        if rule.kind == "rate_limit":
            await _plain(
                send,
                429,
                b"Too Many Requests (sandbox fault)",
                [(b"retry-after", str(rule.retry_after).encode())],
            )
            return
        await _plain(send, rule.status, f"{rule.status} (sandbox fault)".encode(), [])

    @staticmethod
    async def _drop(send: Send) -> None:
        # uvicorn's send is a bound method of its request cycle, which holds the socket transport.
        transport = getattr(getattr(send, "__self__", None), "transport", None)
        if transport is None:
            raise DroppedConnectionError("sandbox fault: connection dropped without a response")
        transport.abort()
        await asyncio.sleep(0)


async def _plain(send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]]) -> None:
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
