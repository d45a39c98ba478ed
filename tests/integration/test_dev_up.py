"""``psinfor dev up`` as a newcomer runs it: a subprocess that starts everything, then Ctrl-C.

Against the session broker and registry (``--kafka-bootstrap``/``--registry-url``) under a topic prefix
of its own, so the stack's topics, groups and state are this test's alone; the sinks run one process
per target (``--sinks-per-target``) to spare the shared machine. The test waits until every service
is healthy, places one order in the PrestaShop sandbox (a product and a combination of the shared
catalogue) and sees it become exactly one Infor sales order with those items; runs ``psinfor demo``
against the running stack (one narrated order, then the dead letter, the rules fix that makes dev up
restart the processors and sinks, and the replay); then it sends SIGINT and checks that ``dev up``
stopped every child in reverse dependency order and left no process behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from devstack.sandbox_admin import (
    CheckoutRequest,
    InforSandboxAdmin,
    OrderLineRequest,
    PrestaShopSandboxAdmin,
)
from devstack.services import StackOptions, build_services, plan_stack
from devstack.setup import Catalogue
from devstack.stack import STATE_FILE, StackEndpoints

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 240.0


class Output:
    """The subprocess's output lines, collected by a thread."""

    def __init__(self, stream: object) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: object) -> None:
        for line in iter(stream.readline, ""):  # type: ignore[attr-defined]
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    def snapshot(self) -> list[str]:
        with self._lock:
            return list(self.lines)

    def tail(self, count: int = 60) -> str:
        return "\n".join(self.snapshot()[-count:])

    def join(self) -> None:
        self._thread.join(10)


def descendants(root: int) -> set[int]:
    """Every process below ``root`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that contain ``text`` (orphans of the stack would)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and running(int(entry.name)):
            found.append(f"{entry.name}: {cmdline[:200]}")
    return found


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str, output: Output) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what} did not happen within {timeout_s:.0f} s; dev up said:\n{output.tail()}")


@pytest.fixture
def dev_up(
    kafka_bootstrap: str, registry_url: str, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[str], Output, Path, str]]:
    prefix = f"devup.{uuid.uuid4().hex[:8]}."
    data_dir = tmp_path / "stack"
    argv = [
        sys.executable, "-m", "cli.main", "dev", "up",
        "--data-dir", str(data_dir),
        "--kafka-bootstrap", kafka_bootstrap,
        "--registry-url", registry_url,
        "--topic-prefix", prefix,
        "--sinks-per-target",
        "--shop-products", "60",
        "--infor-items", "60",
        "--no-build",
        "--status-interval", "5",
        "--stop-timeout", "60",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("PSINFOR_")}
    process = subprocess.Popen(
        argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    output = Output(process.stdout)
    try:
        yield process, output, data_dir, prefix
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(90)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        output.join()
        if process.stdout is not None:
            process.stdout.close()


@pytest.mark.timeout(480)
def test_dev_up_runs_an_order_into_infor_narrates_the_demo_and_ctrl_c_stops_every_child_in_reverse_order(
    dev_up: tuple[subprocess.Popen[str], Output, Path, str],
) -> None:
    process, output, data_dir, prefix = dev_up
    started = time.monotonic()
    wait_until(
        lambda: StackEndpoints.read(data_dir) is not None or process.poll() is not None,
        START_TIMEOUT_S,
        "every service healthy",
        output,
    )
    assert process.poll() is None, f"dev up exited with {process.returncode}:\n{output.tail()}"
    endpoints = StackEndpoints.read(data_dir)
    assert endpoints is not None
    healthy_after = time.monotonic() - started
    assert endpoints.topic_prefix == prefix
    children = descendants(process.pid)
    assert len(children) >= len(endpoints.services) + 2  # every stage, both sandboxes
    for name, base in endpoints.services.items():
        assert httpx.get(f"{base}/readyz", timeout=5).status_code == 200, name
    lines = output.snapshot()
    assert any("Where to look" in line for line in lines)
    assert any("/_sandbox/" in line for line in lines)
    assert any(line.strip().startswith("metrics") for line in lines)

    # One order: a product without combinations and a combination, both in the shared catalogue.
    catalogue = Catalogue.load(Path(endpoints.catalogue_path))
    simple = next(e for e in catalogue.matched if e.sellable and e.combination_id == 0)
    variant = next(e for e in catalogue.matched if e.sellable and e.combination_id != 0)
    with (
        httpx.Client(base_url=endpoints.prestashop_url, timeout=30) as shop_http,
        httpx.Client(base_url=endpoints.infor_url, timeout=30) as infor_http,
    ):
        shop = PrestaShopSandboxAdmin(shop_http)
        infor = InforSandboxAdmin(infor_http)
        order = shop.place_order(
            CheckoutRequest(
                lines=(
                    OrderLineRequest(simple.product_id, 0, 2),
                    OrderLineRequest(variant.product_id, variant.combination_id, 1),
                ),
                customer_id=3,
                payment_module="stripe_official",
            )
        )
        reference = str(order["reference"])
        placed = time.monotonic()
        wait_until(
            lambda: bool(infor.orders(customer_order_number=reference)), 90, "the Infor sales order", output
        )
        infor_orders = infor.orders(customer_order_number=reference)
        latency = time.monotonic() - placed
        assert len(infor_orders) == 1
        m3_order = infor.order(str(infor_orders[0]["ORNO"]))
        items = sorted((line["ITNO"], line["ORQT"]) for line in m3_order["lines"])
        assert [item for item, _ in items] == sorted([simple.item_number, variant.item_number])
        quantities = {item: float(qty) for item, qty in items}
        assert quantities[simple.item_number] == 2
        assert quantities[variant.item_number] == 1
    # The guided demo on the same stack: one order narrated to its payment, then the dead letter,
    # the rules fix (the running dev up restarts the processors and sinks) and the replay.
    demo_started = time.monotonic()
    demo = subprocess.run(
        [sys.executable, "-m", "cli.main", "demo", "--data-dir", str(data_dir), "--orders", "1"],
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if not k.startswith("PSINFOR_")},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    narration = demo.stdout
    demo_took = time.monotonic() - demo_started
    assert demo.returncode == 0, f"{narration}\n{demo.stderr}\n{output.tail()}"
    for step in (
        "order.created received",
        "read back from the webservice",
        "canonical.order.v1",
        "sales order",
        "canonical.shipment.v1",
        "on the order's carrier",
        "canonical.invoice.v1",
        "PrestaShop payment status: paid",
        "dlq.sink-infor: stage infor-orders, reason m3_nok, field lines[0].sku",
        "restarted with the new rules",
        "replayed 1 of 1",
        "created once",
        "Demo complete",
    ):
        assert step in narration, f"{step!r} missing from the demo:\n{narration}"
    assert any("restarting sinks-infor: rules.yaml changed" in line for line in output.snapshot())
    status_lines = [
        line for line in output.snapshot() if line.startswith("dev up ") and " | services " in line
    ]
    total = len(endpoints.services) + 2 + 3  # stages, sandboxes, and the tasks topics/schemas/setup
    assert any(f"services {total}/{total} up" in line for line in status_lines), status_lines[-3:]

    # Ctrl-C.
    process.send_signal(signal.SIGINT)
    stopping = time.monotonic()
    assert process.wait(120) == 0, output.tail()
    stop_took = time.monotonic() - stopping
    output.join()
    lines = output.snapshot()
    stopped = [
        line.split("stopped ", 1)[1].split(" (exit", 1)[0]
        for line in lines
        if line.startswith("[dev-up]") and " stopped " in line and "(exit" in line
    ]
    assert not [pid for pid in children if running(pid)], output.tail()
    assert processes_mentioning(prefix) == []
    assert processes_mentioning(str(data_dir)) == []
    # Reverse order: every service stopped before anything it depends on.
    specs = build_services(
        plan_stack(
            StackOptions(
                data_dir=data_dir, kafka_bootstrap="x:1", registry_url="http://x", topic_prefix=prefix,
                sink_layout="per-target",
            ),
            free_port=iter(range(40_000, 41_000)).__next__,
        )
    )  # fmt: skip
    services = {s.name for s in specs if s.kind == "service"}
    assert set(stopped) == services, stopped
    position = {name: index for index, name in enumerate(stopped)}
    for spec in specs:
        for dependency in spec.depends_on:
            if spec.name in position and dependency in position:
                assert position[spec.name] < position[dependency], (spec.name, dependency, stopped)
    assert any("processes stopped in reverse order" in line for line in lines)
    assert not (data_dir / STATE_FILE).exists()
    print(
        f"\ndev up: healthy after {healthy_after:.1f} s ({len(children)} processes); order {reference} "
        f"became Infor order {infor_orders[0]['ORNO']} in {latency:.1f} s; demo in {demo_took:.1f} s; "
        "Ctrl-C stopped "
        f"{len(stopped)} services in {stop_took:.1f} s"
    )
