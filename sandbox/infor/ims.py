"""ION Messaging Service: the inbound endpoints for BODs we publish, and the outbound pusher.

Inbound, under ``/{TENANT}/IONSERVICES/api/ion/messaging/service/`` behind the gateway (infor.md §4.5):
``GET ping``, ``GET versions``, ``GET v3/{logicalId}/acceptedDocuments``, ``POST v2/message`` (JSON, 201),
``POST v2/multipartMessage`` (201) and ``POST v3/multipartMessage`` (202) with the parts
``ParameterRequest`` (JSON) and ``MessagePayload`` (the BOD). Refusals: 403 when ``fromLogicalId`` is not
the logical id bound to the OAuth client, 412 when the connection point is inactive or the document is
not on its Documents tab, 400 for an invalid message (missing property or part, unknown encoding,
undecodable payload, XML that is not well-formed or whose root is not ``{Verb}{Noun}``).

Outbound, the pusher POSTs IMS v3 multipart messages to a configured receiver URL for every Sync BOD
the state changes produce. Authentication towards our receiver is ``Authorization: Bearer <token>``
with a token configured here (the receiver compares it with its own setting); ``basic`` sends
``ci:cs``-style Basic credentials instead. Payload ``encoding`` is ``NONE``, ``BASE64`` or ``DEFLATE``
(zlib stream, as Java's Deflater writes it). Knobs: duplicate probability (the same message, same
messageId, sent again), reordering (a message held back and released after ``reorder_hold`` later
messages), late delivery (probability and delay), retries on non-2xx or transport errors with
exponential backoff (honouring ``Retry-After``), a bounded queue (overflow is counted as dropped).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import random
import uuid
import xml.etree.ElementTree as ET
import zlib
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from sandbox.infor.bod import NS, Bod
from sandbox.infor.tenant import Tenant

DEFAULT_ACCEPTED = (
    "Process.SalesOrder",
    "Process.CustomerPartyMaster",
    "Sync.CustomerPartyMaster",
    "Process.ItemMaster",
    "Sync.InventoryCount",
    "Process.InventoryAdjustment",
)
ENCODINGS = ("NONE", "BASE64", "DEFLATE")


# -- inbound ---------------------------------------------------------------------------------------
@dataclass
class InboundConfig:
    """The "IMS through ION API" connection point our app publishes to."""

    active: bool = True
    accepted_documents: list[str] = field(default_factory=lambda: list(DEFAULT_ACCEPTED))


@dataclass
class InboundStore:
    """Messages accepted from our app (newest last), and refusal counts."""

    messages: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=10000))
    accepted: int = 0
    refused: Counter[int] = field(default_factory=Counter)

    def describe(self, last: int = 20) -> dict[str, Any]:
        """Counts plus the last messages (without payload bytes)."""
        return {
            "accepted": self.accepted,
            "refused": {str(code): count for code, count in self.refused.items()},
            "messages": list(self.messages)[-last:],
        }


class ImsRefusedError(Exception):
    """A message IMS refuses; ``status`` is 400, 403 or 412."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def decode_payload(raw: bytes, encoding: str) -> bytes:
    """The BOD bytes from a payload in ``encoding`` (NONE, BASE64, DEFLATE zlib or raw deflate)."""
    if encoding == "NONE":
        return raw
    if encoding == "BASE64":
        try:
            return base64.b64decode(raw, validate=True)
        except binascii.Error as exc:
            raise ImsRefusedError(400, f"MessagePayload is not valid BASE64: {exc}") from exc
    if encoding == "DEFLATE":
        for wbits in (zlib.MAX_WBITS, -zlib.MAX_WBITS):
            try:
                return zlib.decompress(raw, wbits)
            except zlib.error:
                continue
        raise ImsRefusedError(400, "MessagePayload is not a DEFLATE stream")
    raise ImsRefusedError(400, f"Unsupported encoding {encoding!r}; use one of {', '.join(ENCODINGS)}")


def check_message(
    tenant: Tenant, config: InboundConfig, parameters: dict[str, Any], payload: bytes
) -> dict[str, Any]:
    """Validate one inbound message; the record to store, or :class:`ImsRefusedError`."""
    for name in ("documentName", "messageId", "fromLogicalId"):
        if not isinstance(parameters.get(name), str) or not parameters[name]:
            raise ImsRefusedError(400, f"Missing property {name}")
    if parameters["fromLogicalId"] != tenant.ims_logical_id:
        raise ImsRefusedError(
            403,
            f"fromLogicalId {parameters['fromLogicalId']} is not bound to this client"
            f" ({tenant.ims_logical_id})",
        )
    document_name = parameters["documentName"]
    if not config.active:
        raise ImsRefusedError(412, "Connection point is not active")
    if document_name not in config.accepted_documents:
        raise ImsRefusedError(412, f"Document {document_name} is not configured on the connection point")
    encoding = str(parameters.get("encoding") or "NONE").upper()
    body = decode_payload(payload, encoding)
    try:
        root = ET.fromstring(body)  # noqa: S314 - our own trusted test traffic, no DTDs involved
    except ET.ParseError as exc:
        raise ImsRefusedError(400, f"MessagePayload is not well-formed XML: {exc}") from exc
    verb, _, noun = document_name.partition(".")
    if root.tag != f"{{{NS}}}{verb}{noun}":
        raise ImsRefusedError(400, f"Root element {root.tag} does not match documentName {document_name}")
    return {
        "documentName": document_name,
        "messageId": parameters["messageId"],
        "fromLogicalId": parameters["fromLogicalId"],
        "toLogicalId": parameters.get("toLogicalId", ""),
        "encoding": encoding,
        "size": len(body),
        "document": body.decode("utf-8", errors="replace"),
    }


def build_inbound_router(tenant: Tenant, config: InboundConfig, store: InboundStore) -> APIRouter:
    """The IMS routes our app calls (behind the gateway)."""
    router = APIRouter()
    base = f"/{tenant.tenant_id}/IONSERVICES/api/ion/messaging/service"

    def refused(exc: ImsRefusedError) -> JSONResponse:
        store.refused[exc.status] += 1
        return JSONResponse({"error": "refused", "message": exc.message}, status_code=exc.status)

    def accept(record: dict[str, Any], status: int) -> JSONResponse:
        store.accepted += 1
        store.messages.append(record)
        return JSONResponse({"status": "OK", "message": "Published successfully"}, status_code=status)

    @router.get(base + "/ping")
    async def ping() -> dict[str, str]:
        return {"status": "OK"}

    @router.get(base + "/versions")
    async def versions() -> dict[str, list[str]]:
        return {"versions": ["v2", "v3"]}

    @router.get(base + "/v3/{logical_id:path}/acceptedDocuments")
    async def accepted_documents(logical_id: str) -> Response:
        if logical_id != tenant.ims_logical_id:
            return refused(ImsRefusedError(403, f"Logical id {logical_id} is not bound to this client"))
        if not config.active:
            return refused(ImsRefusedError(412, "Connection point is not active"))
        return JSONResponse({"documents": list(config.accepted_documents)})

    @router.post(base + "/v2/message")
    async def message_v2(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
            document = body["document"] if isinstance(body, dict) else None
            if not isinstance(document, dict) or not isinstance(document.get("value"), str):
                raise ImsRefusedError(400, "Missing property document.value")
            parameters = dict(body, encoding=document.get("encoding", "NONE"))
            record = check_message(tenant, config, parameters, document["value"].encode("utf-8"))
        except (ValueError, KeyError):
            return refused(ImsRefusedError(400, "Body must be a JSON message request with a document"))
        except ImsRefusedError as exc:
            return refused(exc)
        return accept(record, 201)

    async def multipart(request: Request, status: int) -> Response:
        try:
            # The form owns spooled upload files: close them however the message ends.
            async with request.form() as form:
                parameter_part, payload_part = form.get("ParameterRequest"), form.get("MessagePayload")
                if parameter_part is None or payload_part is None:
                    raise ImsRefusedError(400, "Parts ParameterRequest and MessagePayload are required")
                raw_parameters = (
                    parameter_part if isinstance(parameter_part, str) else await parameter_part.read()
                )
                payload = (
                    payload_part.encode() if isinstance(payload_part, str) else await payload_part.read()
                )
            parameters = json.loads(raw_parameters)
            if not isinstance(parameters, dict):
                raise ImsRefusedError(400, "ParameterRequest must be a JSON object")
            record = check_message(tenant, config, parameters, payload)
        except ValueError:
            return refused(ImsRefusedError(400, "ParameterRequest is not JSON"))
        except ImsRefusedError as exc:
            return refused(exc)
        return accept(record, status)

    @router.post(base + "/v2/multipartMessage")
    async def multipart_v2(request: Request) -> Response:
        return await multipart(request, 201)

    @router.post(base + "/v3/multipartMessage")
    async def multipart_v3(request: Request) -> Response:
        return await multipart(request, 202)

    return router


# -- outbound --------------------------------------------------------------------------------------
@dataclass
class PusherConfig:
    """Where and how the sandbox pushes its Sync BODs; every field can change at run time."""

    url: str | None = None
    auth: str = "bearer"  # bearer | basic | none
    token: str = ""
    """The bearer token the receiver expects; the app generates a random one unless configured."""
    basic_user: str = "ion"
    basic_password: str = ""
    from_logical_id: str = "lid://infor.m3.m3"
    to_logical_id: str = "lid://infor.ims.prestashop"
    encoding: str = "NONE"
    duplicate_probability: float = 0.0
    reorder_probability: float = 0.0
    reorder_hold: int = 3
    reorder_max_hold_s: float = 1.0
    late_probability: float = 0.0
    late_delay_s: float = 2.0
    max_attempts: int = 5
    initial_backoff_s: float = 0.2
    max_backoff_s: float = 5.0
    request_timeout_s: float = 10.0
    queue_size: int = 20000
    nouns: list[str] = field(
        default_factory=lambda: [
            "SalesOrder",
            "Shipment",
            "Invoice",
            "ItemMaster",
            "InventoryCount",
            "CustomerPartyMaster",
        ]
    )

    def describe(self) -> dict[str, Any]:
        """The configuration as JSON, credentials masked."""
        data = asdict(self)
        data["token"] = "****" if self.token else ""
        data["basic_password"] = "****" if self.basic_password else ""
        return data


@dataclass
class OutboundMessage:
    """One IMS message: the BOD plus its protocol fields; a duplicate reuses the messageId."""

    bod: Bod
    message_id: str
    attempts: int = 0


@dataclass
class PusherStats:
    """Counts for the admin API."""

    queued: int = 0
    sent: int = 0
    failed: int = 0
    retries: int = 0
    duplicates: int = 0
    reordered: int = 0
    late: int = 0
    dropped: int = 0
    unrouted: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    by_document: Counter[str] = field(default_factory=Counter)

    def describe(self) -> dict[str, Any]:
        """Counts as JSON."""
        data = asdict(self)
        data["statuses"] = dict(self.statuses)
        data["by_document"] = dict(self.by_document)
        return data


class Pusher:
    """Sends queued BODs to the receiver, one at a time, in queue order unless the knobs say otherwise."""

    def __init__(self, config: PusherConfig, rng: random.Random) -> None:
        self.config = config
        self.rng = rng
        self.stats = PusherStats()
        self.queue: asyncio.Queue[OutboundMessage] | None = None
        self.held: list[tuple[int, float, OutboundMessage]] = []
        self.log: deque[dict[str, Any]] = deque(maxlen=10000)
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None
        # Every submitted message until its delivery ended (sent or given up): wait_idle must not see a
        # message the getter has taken off the queue but the loop has not yet handed on as "idle".
        self._outstanding = 0

    def submit(self, bod: Bod) -> None:
        """Queue a BOD for delivery (called from the state listeners on the event loop)."""
        noun = bod.document_name.partition(".")[2]
        if noun not in self.config.nouns:
            return
        if self.config.url is None or self.queue is None:
            self.stats.unrouted += 1
            return
        if self.queue.qsize() >= self.config.queue_size:
            self.stats.dropped += 1
            return
        self.queue.put_nowait(OutboundMessage(bod, str(uuid.uuid4())))
        self._outstanding += 1
        self.stats.queued += 1

    def pending(self) -> int:
        """Messages not yet delivered or given up: queued, held back, late or in flight."""
        return self._outstanding

    async def run(self) -> None:
        """The delivery loop (one sender, so order is kept unless reordering is asked for)."""
        self.queue = asyncio.Queue()
        self._client = httpx.AsyncClient(timeout=self.config.request_timeout_s)
        # One long-lived getter, awaited with asyncio.wait: wait_for(queue.get(), timeout) can drop an item
        # on Python 3.11 when the get completes just as the timeout cancels it (lost messages under load).
        getter: asyncio.Task[OutboundMessage] | None = None
        try:
            while True:
                if getter is None:
                    getter = asyncio.ensure_future(self.queue.get())
                done, _ = await asyncio.wait({getter}, timeout=0.05)
                if not done:
                    await self._release_held(advanced=False)
                    continue
                message, getter = getter.result(), None
                if self.rng.random() < self.config.reorder_probability:
                    self.stats.reordered += 1
                    loop = asyncio.get_running_loop()
                    self.held.append(
                        (self.config.reorder_hold, loop.time() + self.config.reorder_max_hold_s, message)
                    )
                    continue
                if self.rng.random() < self.config.late_probability:
                    self.stats.late += 1
                    self._spawn(self._deliver_late(message))
                else:
                    await self._deliver(message)
                await self._release_held()
        finally:
            if getter is not None:
                getter.cancel()
            await self._client.aclose()

    async def flush_held(self) -> None:
        """Release every held-back message now (admin; also used at the end of volume runs)."""
        held, self.held = self.held, []
        for _, _, message in held:
            await self._deliver(message)

    async def _release_held(self, *, advanced: bool = True) -> None:
        # A held message goes out after `reorder_hold` later messages, or after `reorder_max_hold_s`
        # when traffic stops: late, out of order, never lost.
        now = asyncio.get_running_loop().time()
        step = 1 if advanced else 0
        due = [
            message for countdown, deadline, message in self.held if countdown - step <= 0 or deadline <= now
        ]
        self.held = [
            (countdown - step, deadline, message)
            for countdown, deadline, message in self.held
            if countdown - step > 0 and deadline > now
        ]
        for message in due:
            await self._deliver(message)

    def _spawn(self, coroutine: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver_late(self, message: OutboundMessage) -> None:
        await asyncio.sleep(self.config.late_delay_s)
        await self._deliver(message)

    async def _deliver(self, message: OutboundMessage) -> None:
        try:
            if (
                await self._send_with_retries(message)
                and self.rng.random() < self.config.duplicate_probability
            ):
                self.stats.duplicates += 1
                await self._send_with_retries(message)
        finally:
            self._outstanding -= 1

    async def _send_with_retries(self, message: OutboundMessage) -> bool:
        config = self.config
        backoff = config.initial_backoff_s
        for attempt in range(1, config.max_attempts + 1):
            status = await self._post(message)
            self.stats.statuses[status] += 1
            if status.startswith("2"):
                self.stats.sent += 1
                self.stats.by_document[message.bod.document_name] += 1
                self.log.append(
                    {
                        "messageId": message.message_id,
                        "bodId": message.bod.bod_id,
                        "document": message.bod.document_name,
                    }
                )
                return True
            if attempt == config.max_attempts:
                break
            self.stats.retries += 1
            retry_after = self._last_retry_after
            delay = max(retry_after or 0.0, self.rng.uniform(0, backoff))
            await asyncio.sleep(delay)
            backoff = min(backoff * 2, config.max_backoff_s)
        self.stats.failed += 1
        return False

    _last_retry_after: float | None = None

    async def _post(self, message: OutboundMessage) -> str:
        config = self.config
        assert self._client is not None
        if config.url is None:
            return "unrouted"
        payload = message.bod.xml
        if config.encoding == "BASE64":
            payload = base64.b64encode(payload)
        elif config.encoding == "DEFLATE":
            payload = zlib.compress(payload)
        parameters = {
            "documentName": message.bod.document_name,
            "messageId": message.message_id,
            "fromLogicalId": config.from_logical_id,
            "toLogicalId": config.to_logical_id,
            "encoding": config.encoding,
            "characterSet": "UTF-8",
            "documentId": message.bod.document_id,
        }
        headers: dict[str, str] = {}
        if config.auth == "bearer":
            headers["Authorization"] = f"Bearer {config.token}"
        elif config.auth == "basic":
            credentials = f"{config.basic_user}:{config.basic_password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode()
        files = {
            "ParameterRequest": (None, json.dumps(parameters).encode(), "application/json"),
            "MessagePayload": ("payload", payload, "application/octet-stream"),
        }
        self._last_retry_after = None
        try:
            response = await self._client.post(config.url, files=files, headers=headers)
        except httpx.HTTPError as exc:
            return f"error:{type(exc).__name__}"
        retry_after = response.headers.get("retry-after")
        if retry_after is not None:
            try:
                self._last_retry_after = min(float(retry_after), config.max_backoff_s)
            except ValueError:
                self._last_retry_after = None
        return str(response.status_code)

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until nothing is queued, held or in flight; False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            if self.pending() == 0 and (self.queue is None or self.queue.empty()):
                return True
            await asyncio.sleep(0.02)
        return False
