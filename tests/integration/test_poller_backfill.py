"""The PrestaShop poller against the real broker and the sandbox shop, killed with SIGKILL mid-backfill.

The poller runs as a subprocess (``python -m cli.ingest_poller``) against an in-process sandbox seeded
with 5,000 orders, while a thread keeps changing the shop: order state changes (each moves
``date_upd``), tracking numbers and stock (neither moves any ``date_upd``). The poller is SIGKILLed
three times at random points of its backfill, then a final run catches up and is stopped with SIGTERM.

The oracle, and why it is the right one. A version of an order is ``(id, date_upd)``; the test knows
every version the shop had and when it was current (conservatively: from the moment the change was
confirmed to the moment the next change was requested). A poller can only ever see what exists while
it reads, so "every version" must mean every version it had a fair chance to read:

1. every order's FINAL version is on the topic (nothing missed at the end);
2. every version that stayed current during the whole of some completed orders pass whose window
   covered its ``date_upd`` is on the topic (nothing skipped while running: offset shifts, watermark
   jumps past an unacknowledged record, ...). Pass bounds come from the poller's own log;
3. nothing on the topic is a version the shop never had;
4. each restart resumed from the stored watermark (its first window starts at that watermark minus
   the overlap, never at the configured start), and the kills fell inside the backfill;
5. the final tracking number of every order_carrier and the final quantity of every stock row are on
   the topic: the scans see changes ``date_upd`` does not.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from pipeline.records import SourceRecord
from pipeline.topics import apply_topics
from sandbox.prestashop.config import KeyPermissions, SandboxConfig
from sandbox.prestashop.server import SandboxServer
from schemas.catalogue import load_catalogue

pytestmark = pytest.mark.integration

WS_KEY = "PSINFORPOLLERTESTKEY0123456789AB"
ORDERS = 5000
OVERLAP_S = 2
START_AT = "1970-01-02 00:00:00"
SHOP_TIME = "%Y-%m-%d %H:%M:%S"
POLLER_TOPICS = (
    "raw.prestashop.orders",
    "raw.prestashop.customers",
    "raw.prestashop.products",
    "raw.prestashop.stock",
    "state.watermarks",
    "dlq.processors",
)
STATES = ("PS_OS_PREPARATION", "PS_OS_SHIPPING", "PS_OS_DELIVERED", "PS_OS_PAYMENT")


@dataclass
class Lifetime:
    """When one ``(id, date_upd)`` version was surely current: ``[start, end]`` (epoch seconds)."""

    start: float
    end: float = float("inf")


@dataclass
class ShopHistory:
    """Every order version the shop had, filled by the changer thread."""

    versions: dict[int, dict[str, Lifetime]] = field(default_factory=lambda: defaultdict(dict))
    current: dict[int, str] = field(default_factory=dict)
    changes: int = 0
    tracking_changes: int = 0
    stock_changes: int = 0


def _admin_rows(http: httpx.Client, resource: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    while True:
        page = http.get(f"/_sandbox/resources/{resource}", params={"offset": len(rows), "limit": 1000})
        page.raise_for_status()
        rows += page.json()
        if len(page.json()) < 1000:
            return rows


class Changer(threading.Thread):
    """Keeps changing the shop through its admin API and records every order version's lifetime."""

    def __init__(self, base_url: str, history: ShopHistory, rng: random.Random) -> None:
        super().__init__(name="shop-changer", daemon=True)
        self._http = httpx.Client(base_url=base_url, timeout=10)
        self._history = history
        self._rng = rng
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            self.error = exc
        finally:
            self._http.close()

    def _loop(self) -> None:
        history, rng = self._history, self._rng
        products = [row["id_product"] for row in _admin_rows(self._http, "stock_availables")]
        step = 0
        while not self.stopping.is_set():
            step += 1
            order_id = rng.randrange(1, ORDERS + 1)
            if step % 4 == 0:
                tracking = f"TRK{rng.randrange(10**8, 10**9)}"
                self._http.post(f"/_sandbox/orders/{order_id}/tracking", json={"tracking_number": tracking})
                history.tracking_changes += 1
            elif step % 4 == 1:
                product = int(rng.choice(products))
                response = self._http.post("/_sandbox/stock", json={"id_product": product, "delta": 1})
                history.stock_changes += response.is_success
            else:
                requested = time.time()
                self._http.post(f"/_sandbox/orders/{order_id}/state", json={"state": rng.choice(STATES)})
                order = self._http.get(f"/_sandbox/resources/orders/{order_id}").json()
                confirmed = time.time()
                old, new = history.current[order_id], order["date_upd"]
                if new != old:
                    history.versions[order_id][old].end = requested
                    history.versions[order_id].setdefault(new, Lifetime(confirmed))
                    history.current[order_id] = new
                    history.changes += 1
            time.sleep(0.01)


@dataclass
class TopicView:
    """What the raw topics hold, read from the beginning."""

    order_versions: set[tuple[int, str]] = field(default_factory=set)
    tracking: dict[int, set[str]] = field(default_factory=lambda: defaultdict(set))
    stock: dict[int, set[str]] = field(default_factory=lambda: defaultdict(set))
    records: int = 0

    def add(self, key: bytes, value: bytes, headers: dict[str, bytes]) -> None:
        self.records += 1
        _shop, resource, id_text = key.decode().split(":")
        body = json.loads(value)
        if resource == "orders":
            self.order_versions.add((int(id_text), headers["date_upd"].decode()))
        elif resource == "order_carriers":
            self.tracking[int(id_text)].add(str(body.get("tracking_number", "")))
        elif resource == "stock_availables":
            self.stock[int(id_text)].add(str(body.get("quantity")))


@pytest.fixture
def topic_prefix(kafka_bootstrap: str) -> str:
    """A unique prefix with the poller's catalogue topics created under it."""
    prefix = f"t.poller.{uuid.uuid4().hex[:10]}."
    specs = [s for s in load_catalogue().topic_specs(prefix=prefix) if s.name[len(prefix) :] in POLLER_TOPICS]
    apply_topics(AdminClient({"bootstrap.servers": kafka_bootstrap}), specs)
    return prefix


@pytest.fixture
def shop() -> Iterator[SandboxServer]:
    config = SandboxConfig(keys=(KeyPermissions(WS_KEY),), orders=ORDERS, seed=11)
    with SandboxServer(config) as server:
        yield server


def _log_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


class PollerRuns:
    """Starts poller subprocesses with their logs in separate files."""

    def __init__(self, tmp_path: Path) -> None:
        self._tmp = tmp_path
        self.logs: list[Path] = []
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> subprocess.Popen[bytes]:
        log_path = self._tmp / f"poller-{len(self.logs)}.log"
        self.logs.append(log_path)
        with log_path.open("wb") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cli.ingest_poller"], stdout=sink, stderr=subprocess.STDOUT
            )
        return self.process

    def wait_for(self, message: str, timeout_s: float) -> None:
        """Wait until the current run logged ``message`` (fails if it exits or times out first)."""
        deadline = time.monotonic() + timeout_s
        needle = f'"message": "{message}"'
        while needle not in self.logs[-1].read_text(encoding="utf-8"):
            assert self.process is not None
            assert self.process.poll() is None, self.logs[-1].read_text(encoding="utf-8")[-2000:]
            assert time.monotonic() < deadline, f"the poller did not log {message!r} in {timeout_s} s"
            time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def _consume_until(
    bootstrap: str, topics: list[str], view: TopicView, done: Callable[[], bool], timeout_s: float
) -> bool:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"audit-{uuid.uuid4().hex}"})
    try:
        partitions = []
        for topic in topics:
            metadata = consumer.list_topics(topic, timeout=10).topics[topic]
            partitions += [TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.partitions]
        consumer.assign(partitions)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for message in consumer.consume(500, 0.5):
                if message.error() is None:
                    record = SourceRecord.from_message(message)
                    assert record.key is not None
                    assert record.value is not None
                    view.add(record.key, record.value, dict(record.headers))
            if done():
                return True
        return False
    finally:
        consumer.close()


@pytest.mark.timeout(420)
def test_backfill_survives_sigkill_with_every_version_on_the_topic(
    kafka_bootstrap: str,
    topic_prefix: str,
    shop: SandboxServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed = random.randrange(10**6)
    print(f"random seed {seed}")
    rng = random.Random(seed)
    for name, value in {
        "PSINFOR_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "PSINFOR_PRESTASHOP__BASE_URL": shop.base_url,
        "PSINFOR_PRESTASHOP__WS_KEY": WS_KEY,
        "PSINFOR_PRESTASHOP__PAGE_SIZE": "50",
        "PSINFOR_POLLER__TOPIC_PREFIX": topic_prefix,
        "PSINFOR_POLLER__GROUP_ID": f"{topic_prefix}poller",
        "PSINFOR_POLLER__INTERVAL_S": "0.3",
        "PSINFOR_POLLER__OVERLAP_S": str(OVERLAP_S),
        "PSINFOR_POLLER__START_AT": START_AT,
        "PSINFOR_POLLER__CARRIERS_SCAN_INTERVAL_S": "1",
        "PSINFOR_POLLER__STOCK_SCAN_INTERVAL_S": "1",
        "PSINFOR_POLLER__CHECKPOINT_INTERVAL_S": "0.2",
        "PSINFOR_POLLER__PROGRESS_INTERVAL_S": "1",
        "PSINFOR_SERVICE__LOG_LEVEL": "DEBUG",
        "PSINFOR_SERVICE__LOG_FORMAT": "json",
    }.items():
        monkeypatch.setenv(name, value)

    admin = httpx.Client(base_url=shop.base_url, timeout=30)
    history = ShopHistory()
    seeded_at = time.time()
    for row in _admin_rows(admin, "orders"):
        history.current[row["id"]] = row["date_upd"]
        history.versions[row["id"]][row["date_upd"]] = Lifetime(seeded_at)
    seeded_high = max(history.current.values())
    assert len(history.current) == ORDERS

    changer = Changer(shop.base_url, history, rng)
    runs = PollerRuns(tmp_path)
    changer.start()
    try:
        for _ in range(3):
            runs.start()
            # A random point of the backfill (not of the start-up): after the first progress report.
            runs.wait_for("orders backfill progress", timeout_s=30)
            time.sleep(rng.uniform(0.5, 3.0))
            runs.kill()
        changer.stopping.set()
        changer.join(30)
        assert changer.error is None, changer.error
        final_process = runs.start()

        carriers = _admin_rows(admin, "order_carriers")
        final_carriers = {row["id"]: str(row["tracking_number"]) for row in carriers}
        final_stock = {row["id"]: str(row["quantity"]) for row in _admin_rows(admin, "stock_availables")}
        view = TopicView()
        raw_topics = [f"{topic_prefix}raw.prestashop.orders", f"{topic_prefix}raw.prestashop.stock"]

        def caught_up() -> bool:
            return (
                all((id_, d) in view.order_versions for id_, d in history.current.items())
                and all(t in view.tracking[id_] for id_, t in final_carriers.items())
                and all(q in view.stock[id_] for id_, q in final_stock.items())
            )

        # A generous bound: on a loaded 2-core machine the final run needs more than a minute to catch up.
        assert _consume_until(kafka_bootstrap, raw_topics, view, caught_up, timeout_s=240), (
            "final versions missing: "
            f"orders {sum((i, d) not in view.order_versions for i, d in history.current.items())}, "
            f"carriers {sum(t not in view.tracking[i] for i, t in final_carriers.items())}, "
            f"stock {sum(q not in view.stock[i] for i, q in final_stock.items())}"
        )
        final_process.send_signal(signal.SIGTERM)
        assert final_process.wait(60) == 0, "graceful shutdown must exit 0"
    finally:
        changer.stopping.set()
        runs.kill()
        admin.close()

    logs = [_log_lines(path) for path in runs.logs]
    passes = [line for lines in logs for line in lines if line["message"] == "orders pass done"]
    assert passes, "no completed orders pass was logged"

    # 2. Every version current throughout a completed pass covering its date_upd is on the topic.
    required = 0
    for id_, versions in history.versions.items():
        for date_upd, life in versions.items():
            for done in passes:
                if (
                    life.start <= done["started_at"]
                    and life.end >= done["ended_at"]
                    and date_upd <= done["window_high"]
                ):
                    required += 1
                    assert (id_, date_upd) in view.order_versions, f"order {id_} version {date_upd} skipped"
                    break
    assert required >= ORDERS, "the oracle must cover at least every seeded version"

    # 3. No phantoms.
    phantoms = {(i, d) for i, d in view.order_versions if d not in history.versions[i]}
    assert not phantoms, sorted(phantoms)[:5]

    # 4. Each restart resumed from its stored watermark, and the kills fell inside the backfill.
    previous = START_AT
    for number, lines in enumerate(logs[1:], start=1):
        resumed = [line for line in lines if line["message"] == "resuming from stored watermark"]
        assert resumed, f"run {number} did not resume from a stored watermark"
        watermark = resumed[0]["watermark"]
        assert watermark >= previous, "the stored watermark went backwards"
        first_pass = next(line for line in lines if line["message"] == "orders pass started")
        low = (datetime.strptime(watermark, SHOP_TIME) - timedelta(seconds=OVERLAP_S)).strftime(SHOP_TIME)
        assert first_pass["window_low"] == low, "a restart must start at the watermark minus the overlap"
        if number < 3:
            assert watermark < seeded_high, f"kill {number} did not fall inside the backfill"
        previous = watermark

    assert history.changes > 50
    assert history.tracking_changes > 20
    assert history.stock_changes > 20
    print(
        f"records on topic {view.records}, order versions {len(view.order_versions)}, "
        f"required by the oracle {required}, state changes {history.changes}, "
        f"tracking changes {history.tracking_changes}, stock changes {history.stock_changes}"
    )
