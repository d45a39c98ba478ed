"""The ION API gateway in front of everything under ``/{TENANT}/`` except the authorization server.

Per request, in order (infor.md §1.4, §8):

1. bearer validation: a missing, unknown, expired or revoked token is answered 401 immediately;
2. per-client quota (off by default): a sliding window of N requests per ``quota_window_s``; beyond it
   429 with ``Retry-After`` (whole seconds until the oldest request leaves the window); refused
   requests do not count against the quota;
3. injected faults, matched per program/transaction (MI) or path fragment, each with a rate:
   ``error`` answers 502/503 without calling the backend; ``latency`` makes the backend slower;
   ``timeout`` answers 504 once the gateway timeout has passed, with ``execute=True`` meaning the
   backend call still ran to completion first (the ambiguous case: "Confirm answers 504 after creating
   the order") and ``execute=False`` meaning it never ran;
4. the gateway timeout (default 60 s): a backend slower than it gets a 504 while it keeps running.

Gateway error bodies are small JSON ``{"error": ..., "message": ...}``; the real bodies are not
documented, so clients must not depend on them.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import asdict, dataclass, field
from typing import Any

from sandbox.infor.oauth import TokenStore

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_MI_PATH = re.compile(r"/M3/m3api-rest/v2/execute/([^/;]+)/([^/;?]+)")
_MI_BULK = re.compile(r"/M3/m3api-rest/v2/execute/?$")


@dataclass
class FaultRule:
    """One injected fault. Empty ``program``/``transaction``/``path_contains`` match everything.

    ``kind``: ``error`` (``status`` 502 or 503), ``latency`` (``latency_s`` added before the backend),
    ``timeout`` (504 after the gateway timeout; ``execute`` says whether the backend ran first).
    ``rate`` is the probability per matching request; ``remaining`` (if set) limits how many requests
    the rule still hits.
    """

    kind: str
    program: str = ""
    transaction: str = ""
    path_contains: str = ""
    rate: float = 1.0
    status: int = 503
    latency_s: float = 0.0
    execute: bool = True
    remaining: int | None = None

    def matches(self, path: str, program: str, transactions: list[str]) -> bool:
        """Whether this rule targets a request to ``path`` running ``program``/``transactions``."""
        if self.path_contains and self.path_contains not in path:
            return False
        if self.program and self.program != program:
            return False
        return not (self.transaction and self.transaction not in transactions)


@dataclass
class GatewayConfig:
    """The gateway's knobs; the admin API replaces them at run time."""

    timeout_s: float = 60.0
    quota_requests: int = 0
    """Requests allowed per client per window; 0 turns the quota off (the default)."""
    quota_window_s: float = 60.0
    rules: list[FaultRule] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        """The configuration as JSON for the admin API."""
        return asdict(self)


@dataclass
class GatewayStats:
    """What the gateway answered, for the admin API and tests."""

    statuses: Counter[int] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    requests: int = 0

    def describe(self) -> dict[str, Any]:
        """Counts as JSON."""
        return {
            "requests": self.requests,
            "statuses": {str(code): count for code, count in sorted(self.statuses.items())},
            "faults": dict(self.faults),
        }


class Quota:
    """Sliding-window request counter per client id."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[str, deque[float]] = {}

    def admit(self, client: str, limit: int, window_s: float) -> float | None:
        """Record one request and return None, or refuse it and return seconds until a slot frees."""
        now = self._clock()
        window = self._windows.setdefault(client, deque())
        while window and window[0] <= now - window_s:
            window.popleft()
        if len(window) >= limit:
            return window[0] + window_s - now
        window.append(now)
        return None

    def reset(self) -> None:
        """Forget every window."""
        self._windows.clear()


async def _send_json(
    send: Send, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> None:
    payload = json.dumps(body).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw_headers += [(key.lower().encode(), value.encode()) for key, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload})


class Gateway:
    """ASGI middleware playing the ION API gateway in front of ``inner``."""

    def __init__(
        self,
        inner: ASGIApp,
        *,
        tenant_id: str,
        tokens: TokenStore,
        config: GatewayConfig,
        rng: random.Random,
        exempt_prefixes: tuple[str, ...] = ("/_sandbox",),
    ) -> None:
        self.inner = inner
        self.tenant_prefix = f"/{tenant_id}/"
        self.auth_prefix = f"/{tenant_id}/as/"
        self.tokens = tokens
        self.config = config
        self.rng = rng
        self.quota = Quota()
        self.stats = GatewayStats()
        self.exempt_prefixes = exempt_prefixes
        self.background: set[asyncio.Task[None]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if (
            scope["type"] != "http"
            or not path.startswith(self.tenant_prefix)
            or path.startswith(self.auth_prefix)
            or path.startswith(self.exempt_prefixes)
        ):
            await self.inner(scope, receive, send)
            return
        self.stats.requests += 1
        status = await self._handle(scope, receive, send, path)
        self.stats.statuses[status] += 1

    async def _handle(self, scope: Scope, receive: Receive, send: Send, path: str) -> int:
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
        scheme, _, token = headers.get("authorization", "").partition(" ")
        check = self.tokens.check_access(token.strip()) if scheme.lower() == "bearer" and token else None
        if check is None or not check.ok:
            reason = check.reason if check is not None else "missing_token"
            await _send_json(
                send,
                401,
                {"error": "unauthorized", "message": f"OAuth bearer token {reason.replace('_', ' ')}"},
                {"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
            return 401
        if self.config.quota_requests > 0:
            wait = self.quota.admit(check.client_id, self.config.quota_requests, self.config.quota_window_s)
            if wait is not None:
                await _send_json(
                    send,
                    429,
                    {"error": "too_many_requests", "message": "Quota exceeded for this client"},
                    {"Retry-After": str(max(1, math.ceil(wait)))},
                )
                return 429
        body = await _read_body(receive)
        program, transactions = _mi_target(path, body)
        latency, fault = self._pick_faults(path, program, transactions)
        if fault is not None and fault.kind == "error":
            self.stats.faults[f"error_{fault.status}"] += 1
            await _send_json(
                send, fault.status, {"error": "bad_gateway", "message": "Injected backend failure"}
            )
            return fault.status
        started = time.monotonic()
        if fault is not None and not fault.execute:
            self.stats.faults["timeout_not_executed"] += 1
            await asyncio.sleep(self.config.timeout_s)
            await _send_json(
                send, 504, {"error": "gateway_timeout", "message": "Target did not respond in time"}
            )
            return 504
        captured: list[Message] = []
        task = asyncio.create_task(self._backend(scope, body, captured, latency))
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        done, _ = await asyncio.wait({task}, timeout=self.config.timeout_s)
        if task in done and fault is not None:
            # Ambiguous timeout: the backend finished (e.g. the order exists), the caller sees a 504.
            self.stats.faults["timeout_executed"] += 1
            await asyncio.sleep(max(0.0, self.config.timeout_s - (time.monotonic() - started)))
        if task not in done or fault is not None:
            if task not in done:
                self.stats.faults["timeout_slow_backend"] += 1
            await _send_json(
                send, 504, {"error": "gateway_timeout", "message": "Target did not respond in time"}
            )
            return 504
        task.result()
        status = 500
        for message in captured:
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)
        return status

    async def _backend(self, scope: Scope, body: bytes, captured: list[Message], latency: float) -> None:
        if latency > 0:
            await asyncio.sleep(latency)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # the client is gone as far as the backend is concerned
            return {"type": "http.disconnect"}

        async def capture(message: Message) -> None:
            captured.append(message)

        await self.inner(scope, replay, capture)

    def _pick_faults(
        self, path: str, program: str, transactions: list[str]
    ) -> tuple[float, FaultRule | None]:
        latency = 0.0
        fault: FaultRule | None = None
        for rule in self.config.rules:
            if rule.remaining is not None and rule.remaining <= 0:
                continue
            if not rule.matches(path, program, transactions) or self.rng.random() >= rule.rate:
                continue
            if rule.kind == "latency":
                latency += rule.latency_s
                self.stats.faults["latency"] += 1
            elif fault is None and rule.kind in ("error", "timeout"):
                fault = rule
            else:
                continue
            if rule.remaining is not None:
                rule.remaining -= 1
        return latency, fault


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _mi_target(path: str, body: bytes) -> tuple[str, list[str]]:
    """The MI program and transaction names a request runs ("" and [] for non-MI paths)."""
    match = _MI_PATH.search(path)
    if match:
        return match.group(1), [match.group(2)]
    if _MI_BULK.search(path) and body:
        try:
            data = json.loads(body)
        except ValueError:
            return "", []
        if isinstance(data, dict):
            names = [
                str(item.get("transaction", ""))
                for item in data.get("transactions", [])
                if isinstance(item, dict)
            ]
            return str(data.get("program", "")), names
    return "", []
