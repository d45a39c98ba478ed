"""What the PrestaShop sink acceptance tests run on: a journaled sandbox shop, the sink worker process,
and the Kafka side (topics with the registered schema, Avro records, committed offsets, the DLQ).

- :class:`JournaledShop` serves the PrestaShop sandbox over real HTTP on a fixed loopback port through
  :class:`RequestJournal`, an ASGI layer outside the sandbox's own fault injection that notes every
  webservice request it answered (time, method, path, status, the body of writes) and can refuse the
  writes of chosen paths (one SKU's stock row: the poison record). The shop can go offline (the port
  refuses connections) and come back with its data intact.
- :func:`sink_worker` runs ``python -m sinks.main`` as a subprocess configured only through ``PSINFOR_*``
  variables, as a deployment runs it, with its ``/metrics`` on a known port; it is SIGTERMed (then killed)
  when the block ends.
- :class:`StockFeed` produces ``InventoryLevel`` records to a test topic with the registered schema and
  remembers where each landed and when.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.types import Message as AsgiMessage

from pipeline.settings import RegistrySettings
from sandbox.prestashop.app import SandboxApp, create_app
from sandbox.prestashop.config import KeyPermissions, SandboxConfig
from sandbox.prestashop.server import free_port
from schemas.codec import AvroCodec, AvroDatum
from schemas.registry import SubjectSchema, register_schemas, registry_client
from sinks.registry import SINKS

REPO = Path(__file__).resolve().parents[2]
SHOP_KEY = "ACCEPTANCEKEY0123456789ABCDEFGHI"
SHOP_ID = 1
WAREHOUSE = "LYO"
"""The ERP warehouse the default rules map to shop 1 (``warehouses.to_prestashop_shops``)."""
RECORD = "InventoryLevel"
SOURCE = "canonical.inventory.v1"
DLQ = "dlq.sink-prestashop"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH"})
_STOCK_ROW_PATH = re.compile(r"^/api/stock_availables/(\d+)$")
_QUANTITY = re.compile(rb"<quantity>(?:<!\[CDATA\[)?\s*(-?\d+)\s*(?:\]\]>)?</quantity>")


def sink_name_for(factory: str) -> str:
    """The ``--sinks`` name :data:`sinks.registry.SINKS` gives ``module:factory`` (names may be renamed)."""
    [name] = [name for name, target in SINKS.items() if target == factory]
    return name


# -- the shop ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShopRequest:
    """One webservice request the shop answered."""

    at: float
    """Wall-clock time (``time.time()``) the answer was sent, comparable with Kafka timestamps."""
    method: str
    path: str
    status: int
    body: bytes
    """The request body of a write (empty for reads)."""

    @property
    def stock_row(self) -> int | None:
        """The stock_availables id a write addresses, else None."""
        found = _STOCK_ROW_PATH.match(self.path)
        return int(found.group(1)) if found and self.method in WRITE_METHODS else None

    @property
    def quantity(self) -> int | None:
        """The quantity a stock write sets (from its XML body), else None."""
        found = _QUANTITY.search(self.body)
        return int(found.group(1)) if found else None


class RequestJournal:
    """ASGI layer in front of the sandbox: notes every ``/api`` request and refuses poisoned writes.

    ``refuse_writes`` maps a path to how many more writes on it are answered ``503`` with
    ``Retry-After`` (the shop "keeps failing" for that one row). Appends happen on the server's thread;
    readers take :meth:`snapshot`.
    """

    def __init__(self, app: ASGIApp, *, retry_after_s: int = 1) -> None:
        self._app = app
        self._requests: list[ShopRequest] = []
        self._lock = threading.Lock()
        self.refuse_writes: dict[str, int] = {}
        self.retry_after_s = retry_after_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith("/api"):
            await self._app(scope, receive, send)
            return
        method, path = str(scope["method"]), str(scope["path"])
        body = b""
        if method in WRITE_METHODS:
            body = await _read_body(receive)
            receive = _replay(body, receive)
        status = 0

        async def noting(message: AsgiMessage) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        refusals = self.refuse_writes.get(path, 0) if method in WRITE_METHODS else 0
        if refusals > 0:
            self.refuse_writes[path] = refusals - 1
            await _answer(noting, 503, b"Service Unavailable (poisoned row)", self.retry_after_s)
        else:
            await self._app(scope, receive, noting)
        with self._lock:
            self._requests.append(ShopRequest(time.time(), method, path, status, body))

    def snapshot(self) -> list[ShopRequest]:
        """Every request answered so far, in answer order."""
        with self._lock:
            return list(self._requests)

    def stock_writes(self, *, ok_only: bool = True) -> list[ShopRequest]:
        """The stock row writes answered so far (only the accepted ones unless ``ok_only`` is False)."""
        return [
            r for r in self.snapshot() if r.stock_row is not None and (not ok_only or 200 <= r.status < 300)
        ]


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, original: Receive) -> Receive:
    """``receive`` for the app: the body read already, then whatever the connection says next."""
    sent = False

    async def receive() -> AsgiMessage:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await original()

    return receive


async def _answer(send: Send, status: int, text: bytes, retry_after_s: int) -> None:
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(text)).encode()),
        (b"retry-after", str(retry_after_s).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": text})


@dataclass(frozen=True)
class SellableUnit:
    """A SKU of the shop and its stock row (read from the sandbox's tables, not through the client)."""

    sku: str
    id_product: int
    id_product_attribute: int
    stock_row: int
    name: str


class JournaledShop:
    """The PrestaShop sandbox served on ``127.0.0.1:<port>`` through a :class:`RequestJournal`.

    :meth:`go_offline` stops listening (connections are refused) and :meth:`go_online` serves the same
    shop again on the same port. Always stopped when the ``with`` block ends.
    """

    def __init__(self, config: SandboxConfig) -> None:
        self.app: SandboxApp = create_app(config)
        self.journal = RequestJournal(self.app)
        self.host = "127.0.0.1"
        self.port = free_port(self.host)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://{self.host}:{self.port}"

    def go_online(self, timeout_s: float = 10.0) -> None:
        """Serve the shop; returns once the port accepts connections."""
        server = uvicorn.Server(
            uvicorn.Config(self.journal, host=self.host, port=self.port, log_level="warning", lifespan="on")
        )
        thread = threading.Thread(target=server.run, name=f"journaled-shop-{self.port}", daemon=True)
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.go_offline()
                raise RuntimeError(f"the sandbox shop did not start on {self.base_url}")
            time.sleep(0.01)

    def go_offline(self, timeout_s: float = 10.0) -> None:
        """Stop listening (idempotent): from now on connections to the port are refused."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._server, self._thread = None, None

    def __enter__(self) -> JournaledShop:
        self.go_online()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.go_offline()

    # The tables are read on the test's thread while the server's loop may write them: plain dict reads
    # of values the loop replaces whole are safe under the GIL, and the tests read settled state.

    def sellable_units(self) -> list[SellableUnit]:
        """Every sellable unit (a product without combinations, or a combination) with its stock row."""
        store = self.app.sandbox.store
        rows = {
            (int(str(r.values["id_product"])), int(str(r.values["id_product_attribute"]))): r.id
            for r in list(store.all("stock_availables"))
        }
        combos: dict[int, list[Any]] = {}
        for combination in list(store.all("combinations")):
            combos.setdefault(int(str(combination.values["id_product"])), []).append(combination)
        units = []
        for product in list(store.all("products")):
            names = product.values.get("name")
            name = next(iter(names.values()), "") if isinstance(names, dict) else str(names or "")
            mine = combos.get(product.id, [])
            if not mine:
                units.append(
                    SellableUnit(str(product.values["reference"]), product.id, 0, rows[(product.id, 0)], name)
                )
            for combination in mine:
                reference = str(combination.values["reference"])
                row = rows[(product.id, combination.id)]
                units.append(SellableUnit(reference, product.id, combination.id, row, name))
        return units

    def stock(self, row: int) -> int:
        """The quantity a stock row holds now."""
        entity = self.app.sandbox.store.get("stock_availables", row)
        assert entity is not None, f"no stock row {row}"
        return int(str(entity.values["quantity"]))

    def fail_every_call(self, status: int = 503) -> None:
        """The sandbox's own fault injection: every webservice call answers ``status`` from now on."""
        response = httpx.post(
            f"{self.base_url}/_sandbox/faults", json={"kind": "error", "status": status}, timeout=5.0
        )
        assert response.status_code == 201, response.text


def shop_config(products: int) -> SandboxConfig:
    """A seeded 8.1.7 shop with ``products`` products (about 40 % with 2-4 combinations each)."""
    return SandboxConfig(
        version="8.1.7", keys=(KeyPermissions(SHOP_KEY),), products=products, customers=5, orders=5, seed=6
    )


# -- the sink worker ---------------------------------------------------------------------------------


@dataclass
class SinkWorker:
    """A running ``python -m sinks.main`` and what can be observed from outside: metrics and logs."""

    process: subprocess.Popen[bytes]
    metrics_url: str
    log: Path

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """The worker's ``/metrics`` samples by (name, labels)."""
        text = httpx.get(self.metrics_url, timeout=5.0).text
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def metric(self, name: str, **labels: str) -> float:
        """One sample (0 when the worker has not reported it yet)."""
        return self.metrics().get((name, frozenset(labels.items())), 0.0)

    def log_events(self) -> list[dict[str, Any]]:
        """The worker's JSON log lines so far."""
        events = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line cut by the read: the next read sees it whole
        return events

    def tail(self, chars: int = 4000) -> str:
        """The end of the worker's log (for failure messages)."""
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def assert_alive(self) -> None:
        """Fail with the log's tail when the worker has exited."""
        code = self.process.poll()
        assert code is None, f"the sink worker exited with {code}:\n{self.tail()}"


@contextmanager
def sink_worker(
    *,
    bootstrap: str,
    registry_url: str,
    shop: JournaledShop,
    sink: str,
    topics: Mapping[str, str],
    group_prefix: str,
    log: Path,
    env: Mapping[str, str] | None = None,
) -> Iterator[SinkWorker]:
    """``python -m sinks.main --sinks <sink>`` on the shop, catalogue topics renamed by ``topics``.

    Configured through ``PSINFOR_*`` variables only; ``env`` adds or overrides some. SIGTERM, then
    SIGKILL after 20 s, when the block ends.
    """
    port = free_port()
    variables = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PSINFOR_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "PSINFOR_REGISTRY__URL": registry_url,
        "PSINFOR_PRESTASHOP__BASE_URL": shop.base_url,
        "PSINFOR_PRESTASHOP__WS_KEY": SHOP_KEY,
        "PSINFOR_PRESTASHOP__SHOP_ID": str(SHOP_ID),
        "PSINFOR_PRESTASHOP__TIMEOUT_S": "10",
        "PSINFOR_PRESTASHOP__CONNECT_TIMEOUT_S": "2",
        "PSINFOR_SERVICE__HTTP_PORT": str(port),
        "PSINFOR_SERVICE__LOG_FORMAT": "json",
        "PSINFOR_SERVICE__COMMIT_INTERVAL_S": "0.5",
        "PSINFOR_SINKS__SESSION_TIMEOUT_S": "10",
        **(env or {}),
    }
    argv = [sys.executable, "-m", "sinks.main", "--sinks", sink, "--group-prefix", group_prefix]
    for catalogue, actual in topics.items():
        argv += ["--topic", f"{catalogue}={actual}"]
    with log.open("ab") as out:
        process = subprocess.Popen(argv, cwd=REPO, env=variables, stdout=out, stderr=subprocess.STDOUT)
    worker = SinkWorker(process, f"http://127.0.0.1:{port}/metrics", log)
    try:
        yield worker
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# -- Kafka ---------------------------------------------------------------------------------------------


def register_source(registry_url: str, topic: str) -> None:
    """Register InventoryLevel under ``<topic>-value`` (what ``psinfor schemas register`` does)."""
    with registry_client(RegistrySettings(url=registry_url)) as client:
        results = register_schemas(client, [SubjectSchema(f"{topic}-value", RECORD)])
    assert all(result.outcome in ("registered", "unchanged") for result in results), results


def inventory_datum(sku: str, *, on_hand: Decimal, allocated: Decimal, version: int) -> AvroDatum:
    """An ERP inventory level of ``sku`` in the shop's warehouse; available = on hand - allocated.

    Built field by field (the codec checks it against the schema): 200,000 of these must be cheap.
    """
    now = datetime.now(UTC)
    return {
        "meta": {
            "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"inventory/{sku}/{version}")),
            "source_system": "INFOR",
            "source_entity": "MMS060MI",
            "source_id": f"{sku}@{WAREHOUSE}",
            "version": version,
            "occurred_at": now,
            "ingested_at": now,
            "correlation_id": str(uuid.uuid4()),
            "causation_id": None,
            "shop_id": None,
        },
        "sku": sku,
        "erp_item_number": sku,
        "warehouse": WAREHOUSE,
        "on_hand": on_hand,
        "allocated": allocated,
        "available": on_hand - allocated,
        "as_of": now,
        "external_ids": {"infor": sku},
    }


def shop_quantity(datum: AvroDatum) -> int:
    """What the shop must show for an inventory level: whole units of what is free, never below 0.

    Written here from the issue's words (never above Infor's available), not imported from the sink.
    """
    free = min(datum["available"], datum["on_hand"] - datum["allocated"])
    return max(0, int(free.to_integral_value(rounding=ROUND_FLOOR)))


@dataclass(frozen=True)
class Landed:
    """Where a produced record landed, and when the broker stamped it."""

    key: bytes
    partition: int
    offset: int
    timestamp_s: float
    value: bytes


@dataclass
class StockFeed:
    """Produces InventoryLevel records (key = SKU) to ``topic``; remembers where each landed."""

    bootstrap: str
    codec: AvroCodec
    topic: str
    landed: list[Landed] = field(default_factory=list)
    _producer: Producer | None = None

    def _open(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(
                {
                    "bootstrap.servers": self.bootstrap,
                    "enable.idempotence": True,
                    "linger.ms": 20,
                    "batch.num.messages": 10000,
                    "queue.buffering.max.messages": 500000,
                }
            )
        return self._producer

    def send(self, datum: AvroDatum) -> None:
        """Queue one level (call :meth:`flush` to wait for the acks)."""
        self.send_raw(str(datum["sku"]).encode(), self.codec.encode(datum, self.topic))

    def send_raw(self, key: bytes, value: bytes) -> None:
        """Queue bytes as they are (a record another producer wrote)."""
        producer = self._open()

        def landed(error: Any, message: Message) -> None:
            assert error is None, error
            _, stamp = message.timestamp()
            offset, partition = message.offset(), message.partition()
            assert offset is not None
            assert partition is not None
            self.landed.append(Landed(key, partition, offset, stamp / 1000, value))

        while True:
            try:
                producer.produce(self.topic, key=key, value=value, on_delivery=landed)
                break
            except BufferError:
                producer.poll(0.05)  # the local queue is full: let deliveries drain
        producer.poll(0)

    def flush(self) -> None:
        """Wait until the broker acknowledged everything sent."""
        assert self._open().flush(60) == 0

    def end_offsets(self) -> dict[int, int]:
        """Per partition that got records: the offset after the last one acknowledged."""
        ends: dict[int, int] = {}
        for item in self.landed:
            ends[item.partition] = max(ends.get(item.partition, 0), item.offset + 1)
        return ends


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offset per partition (negative when none)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in found}


def all_committed(bootstrap: str, group: str, topic: str, ends: Mapping[int, int]) -> bool:
    """True when the group committed exactly ``ends`` on every partition named there."""
    found = committed(bootstrap, group, topic, max(ends, default=0) + 1)
    return all(found.get(partition, -1) == end for partition, end in ends.items())


def read_topic(bootstrap: str, topic: str, *, expected: int, timeout_s: float = 15.0) -> list[Message]:
    """The records of ``topic`` from the start: returns once ``expected`` arrived (or after the
    timeout); with ``expected=0`` it reads for a few seconds once positioned, to say "empty"."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    messages: list[Message] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout_s
        positioned_at: float | None = None
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                messages.append(message)
            if expected and len(messages) >= expected:
                break
            if not expected and consumer.assignment():
                positioned_at = positioned_at or time.monotonic()
                if time.monotonic() - positioned_at > 2.0:
                    break
    finally:
        consumer.close()
    return messages


def headers_of(message: Message) -> dict[str, str]:
    """A record's headers as text."""
    found = message.headers() or []
    assert isinstance(found, list)  # a consumed record's headers are a list of (name, bytes | None)
    return {
        name: value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")
        for name, value in found
    }


def wait_for(
    condition: Callable[[], bool], timeout_s: float, what: str, worker: SinkWorker | None = None
) -> float:
    """Poll ``condition`` until it holds; returns the seconds it took. Fails with the worker's log tail."""
    started = time.monotonic()
    while not condition():
        if worker is not None:
            worker.assert_alive()
        if time.monotonic() - started > timeout_s:
            tail = f"\nworker log:\n{worker.tail()}" if worker is not None else ""
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}{tail}")
        time.sleep(0.1)
    return time.monotonic() - started


def writes_per_row(writes: Sequence[ShopRequest]) -> Counter[int]:
    """How many accepted writes each stock row received."""
    return Counter(w.stock_row for w in writes if w.stock_row is not None)
