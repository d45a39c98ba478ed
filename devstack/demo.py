"""``psinfor demo``: a narrated order-to-cash run on the sandbox stack, then a failure and its fix.

For each of a handful of orders (a returning customer paying by card in EUR with a product and a
variant; a new customer paying by bank wire in USD; a returning customer paying by cheque in GBP) the
demo places the order in the PrestaShop sandbox and prints each step as it happens, with the time since
the order was placed::

    +0.1s  webhook     order.created received, on raw.prestashop.orders (webhook-id msg_...)
    +0.2s  raw         order bundle read back from the webservice (raw.prestashop.orders 3@17)
    +0.4s  canonical   canonical.order.v1 1:12: 2 lines, 118.20 EUR, payment paid
    +0.9s  Infor       sales order 1000012346 for customer PS000003 (status 22)
    +2.1s  shipment    canonical.shipment.v1: delivery 5000001235, UPS, tracking 1ZKZ37P5R566W33W93
    +2.3s  PrestaShop  tracking 1ZKZ37P5R566W33W93 on the order's carrier; state "Shipped" (M3 status)
    +2.6s  invoice     canonical.invoice.v1: invoice 700124, 118.20 EUR gross, 118.20 open
    +2.8s  payment     PrestaShop payment status: paid (state "Shipped")

Every order state is posted by one sink, ``prestashop-status``: "Shipped" from M3's order status, the
paid state from what ``prestashop-payment`` concluded from the invoice (it emits that on
``canonical.order-status.v1``). ``prestashop-tracking`` sets only the tracking number, so the demo
waits for both before printing that step.

Orders paid later (bank wire, cheque) are paid in Infor once invoiced (the customer pays the invoice),
and the demo waits for that payment to reach the canonical invoice and PrestaShop.

Then the failure: a rules change makes the sinks pass the shop's SKU to M3 as typed
(``variants.item_number.case: keep``), a shop employee types a product's reference in lower case, and
the next order for it is refused by M3 (unknown item) and dead-lettered, with M3's error in the DLQ
headers. The rule is fixed (``case: upper``), the processors and sinks reload it, ``psinfor dlq
replay`` puts the order back, and it becomes exactly one Infor sales order.

The demo observes the topics with a group-less consumer from their end at start, the sandboxes through
their admin APIs, and reaches the stack through its ``stack.json`` (:class:`StackEndpoints`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

import httpx
from confluent_kafka import Consumer, TopicPartition

from devstack.sandbox_admin import (
    CheckoutRequest,
    InforSandboxAdmin,
    JsonObject,
    NewCustomerRequest,
    OrderLineRequest,
    PrestaShopSandboxAdmin,
)
from devstack.setup import Catalogue, CatalogueEntry
from devstack.stack import StackEndpoints
from devstack.stack_rules import item_case, with_item_case
from pipeline.records import SourceRecord
from pipeline.settings import RegistrySettings, env_name
from schemas.codec import AvroCodec, AvroDatum
from schemas.registry import registry_client

SHOP_ID = "1"
RAW_ORDERS = "raw.prestashop.orders"
ORDERS = "canonical.order.v1"
SHIPMENTS = "canonical.shipment.v1"
INVOICES = "canonical.invoice.v1"
DLQ_INFOR = "dlq.sink-infor"
WATCHED = (RAW_ORDERS, ORDERS, SHIPMENTS, INVOICES, DLQ_INFOR)
RECORDS = {ORDERS: "Order", SHIPMENTS: "Shipment", INVOICES: "Invoice"}
PAID_AT_CHECKOUT = frozenset({"stripe_official"})
INFOR_ORDERS_SINK = "infor-orders"


class DemoFailedError(Exception):
    """A step did not happen in time (the message says which, and where to look)."""


@dataclass(frozen=True)
class Tapped:
    """One record read from a watched topic (``topic`` is the catalogue name)."""

    topic: str
    key: str
    headers: dict[str, str]
    value: bytes | None
    partition: int
    offset: int


class TopicTap:
    """Reads the watched topics from their end (at :meth:`start`) on a thread; nothing is committed."""

    def __init__(self, bootstrap: str, topics: dict[str, str]) -> None:
        """``topics``: actual topic name → catalogue name."""
        self._topics = topics
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "psinfor-demo",
                "enable.auto.commit": False,
                "enable.partition.eof": False,
                "log_level": 0,
            }
        )
        self._records: list[Tapped] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-tap", daemon=True)

    def start(self) -> TopicTap:
        """Assign every partition of the watched topics at its current end, then start reading."""
        metadata = self._consumer.list_topics(timeout=10)
        assignment = []
        for actual in self._topics:
            topic = metadata.topics.get(actual)
            if topic is None:
                continue
            for partition in topic.partitions:
                _, high = self._consumer.get_watermark_offsets(TopicPartition(actual, partition), timeout=10)
                assignment.append(TopicPartition(actual, partition, high))
        self._consumer.assign(assignment)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop reading and close the consumer."""
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()

    def records(self, topic: str, key: str) -> list[Tapped]:
        """What was read so far from catalogue topic ``topic`` under ``key``, in read order."""
        with self._lock:
            return [r for r in self._records if r.topic == topic and r.key == key]

    def dead_letters(self, topic: str, original_key: str) -> list[Tapped]:
        """DLQ records whose ``dlq.original_key`` is ``original_key``."""
        with self._lock:
            return [
                r
                for r in self._records
                if r.topic == topic and r.headers.get("dlq.original_key") == original_key and r.value
            ]

    def _run(self) -> None:
        while not self._stop.is_set():
            for message in self._consumer.consume(200, timeout=0.2):
                error = message.error()
                if error is not None:
                    continue
                source = SourceRecord.from_message(message)
                record = Tapped(
                    topic=self._topics[source.topic],
                    key=(source.key or b"").decode("utf-8", errors="replace"),
                    headers={name: value.decode("utf-8", errors="replace") for name, value in source.headers},
                    value=source.value,
                    partition=source.partition,
                    offset=source.offset,
                )
                with self._lock:
                    self._records.append(record)


def format_step(elapsed_s: float, system: str, text: str) -> str:
    """``  +1.2s  Infor       sales order ...``: one narrated step."""
    return f"  {f'+{elapsed_s:.1f}s':>7}  {system:<11} {text}"


def money(amount: object, currency: str) -> str:
    """``118.20 EUR``."""
    return f"{Decimal(str(amount)).quantize(Decimal('0.01'))} {currency}"


@dataclass(frozen=True)
class DemoOrder:
    """One order the demo places, and how it is described."""

    story: str
    checkout: CheckoutRequest
    units: Sequence[CatalogueEntry]

    @property
    def paid_at_checkout(self) -> bool:
        """Whether the shop records the payment at checkout (card) or waits for it (wire, cheque)."""
        return self.checkout.payment_module in PAID_AT_CHECKOUT


def demo_orders(catalogue: Catalogue, *, tag: str, count: int = 3) -> list[DemoOrder]:
    """The scripted orders: variants, new and returning customers, three currencies, three payments."""
    simple = [e for e in catalogue.matched if e.sellable and e.combination_id == 0]
    variants = [e for e in catalogue.matched if e.sellable and e.combination_id != 0]
    if len(simple) < 3 or len(variants) < 2:
        raise ValueError(
            "the shared catalogue is too small for the demo (start the stack with more products)"
        )
    scripted = [
        DemoOrder(
            "a returning customer buys a product and a variant, pays by card, in EUR",
            CheckoutRequest(
                lines=(
                    OrderLineRequest(simple[0].product_id, 0, 2),
                    OrderLineRequest(variants[0].product_id, variants[0].combination_id, 1),
                ),
                currency="EUR",
                payment_module="stripe_official",
                customer_id=3,
            ),
            (simple[0], variants[0]),
        ),
        DemoOrder(
            "a new customer from Berlin buys a variant, pays by bank wire, in USD",
            CheckoutRequest(
                lines=(OrderLineRequest(variants[1].product_id, variants[1].combination_id, 1),),
                currency="USD",
                payment_module="ps_wirepayment",
                new_customer=NewCustomerRequest(
                    email=f"demo.{tag}@example.com",
                    firstname="Greta",
                    lastname="Demo",
                    address1="Friedrichstrasse 101",
                    city="Berlin",
                    postcode="10117",
                    country_iso="DE",
                ),
            ),
            (variants[1],),
        ),
        DemoOrder(
            "a returning customer buys three of a product, pays by cheque, in GBP",
            CheckoutRequest(
                lines=(OrderLineRequest(simple[1].product_id, 0, 3),),
                currency="GBP",
                payment_module="ps_checkpayment",
                customer_id=5,
            ),
            (simple[1],),
        ),
    ]
    return scripted[: max(1, count)]


@dataclass(frozen=True)
class ShopOrderState:
    """A PrestaShop order state by name, with the flags that say what it means."""

    name: str
    paid: bool
    shipped: bool


class Demo:
    """The narrated run against a running stack; :meth:`run` returns 0 when every step happened."""

    def __init__(
        self,
        endpoints: StackEndpoints,
        out: TextIO,
        *,
        step_timeout_s: float = 90.0,
        reload: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.endpoints = endpoints
        self._out = out
        self._timeout = step_timeout_s
        self._clock = clock
        self._reload = reload
        self._shop_http = httpx.Client(base_url=endpoints.prestashop_url, timeout=30.0)
        self._infor_http = httpx.Client(base_url=endpoints.infor_url, timeout=30.0)
        self._probe = httpx.Client(timeout=5.0)
        self.shop = PrestaShopSandboxAdmin(self._shop_http)
        self.infor = InforSandboxAdmin(self._infor_http)
        self._tap = TopicTap(endpoints.bootstrap, {endpoints.topic(name): name for name in WATCHED})
        self._registry = registry_client(RegistrySettings(url=endpoints.registry_url))
        self._codecs = {topic: AvroCodec(self._registry, record) for topic, record in RECORDS.items()}
        self._state_names: dict[str, ShopOrderState] = {}
        self.infor_orders: dict[str, str] = {}
        """Shop reference → M3 order number, for every order the demo saw created."""

    def close(self) -> None:
        """Release every client."""
        for close in (self._shop_http.close, self._infor_http.close, self._probe.close):
            close()

    def say(self, text: str = "") -> None:
        """Print a line of narration."""
        self._out.write(text + "\n")
        self._out.flush()

    def run(self, *, orders: int = 3, failure: bool = True) -> int:
        """The order-to-cash orders, then (``failure``) the dead-letter and replay; 0 when all went."""
        catalogue = Catalogue.load(Path(self.endpoints.catalogue_path))
        tag = f"{os.getpid()}{int(time.time()) % 100_000}"
        self._tap.start()
        try:
            scripted = demo_orders(catalogue, tag=tag, count=orders)
            for number, order in enumerate(scripted, start=1):
                self.say(f"\nOrder {number} of {len(scripted)}: {order.story}")
                self.order_to_cash(order)
            if failure:
                self.say("\nWhen something goes wrong")
                self.failure_and_replay(catalogue, tag)
            self.say("\nDemo complete: every step happened.")
            return 0
        except DemoFailedError as exc:
            self.say(f"\ndemo stopped: {exc}")
            self.say(f"the services' logs are in {self.endpoints.logs_dir}")
            return 1
        finally:
            self._tap.stop()

    # -- order to cash ---------------------------------------------------------------------------------

    def order_to_cash(self, order: DemoOrder) -> str:
        """Place ``order`` and narrate it to its payment status; returns the shop order id."""
        items = ", ".join(
            f"{line.quantity} x {unit.name} ({unit.item_number})"
            for line, unit in zip(order.checkout.lines, order.units, strict=True)
        )
        placed = self.shop.place_order(order.checkout)
        started = self._clock()
        order_id = str(placed["id"])
        reference = str(placed["reference"])
        total = money(placed.get("total_paid", "0"), order.checkout.currency)
        self._step(
            started, "PrestaShop", f"order #{order_id} placed, reference {reference}, {total}: {items}"
        )
        key = f"{SHOP_ID}:{order_id}"
        raw_key = f"{SHOP_ID}:orders:{order_id}"
        webhook = self._wait(
            lambda: self._first(
                RAW_ORDERS, raw_key, lambda r: r.headers.get("event_type") == "order.created"
            ),
            "the order.created webhook on raw.prestashop.orders",
        )
        self._step(
            started,
            "webhook",
            f"{webhook.headers.get('event_type', '?')} received, on raw.prestashop.orders "
            f"(webhook-id {webhook.headers.get('webhook_id', '?')})",
        )
        raw = self._wait(
            lambda: self._first(RAW_ORDERS, raw_key, lambda r: r.headers.get("source") == "prestashop-poll"),
            "the order bundle on raw.prestashop.orders",
        )
        self._step(
            started,
            "raw",
            f"{raw.headers.get('event_type', 'order')} read back from the webservice "
            f"(raw.prestashop.orders {raw.partition}@{raw.offset}, "
            f"trigger {raw.headers.get('trigger', '?')})",
        )
        canonical = self._wait(lambda: self._decoded(ORDERS, key), f"canonical.order.v1 {key}")
        totals = canonical["totals"]["grand_total"]
        self._step(
            started,
            "canonical",
            f"canonical.order.v1 {key}: {len(canonical['lines'])} line(s), "
            f"{money(totals['amount'], totals['currency'])}, "
            f"payment {str(canonical['payment_status']).lower()}",
        )
        head = self._wait(lambda: self._infor_order(reference), f"the Infor sales order for {reference}")
        orno = str(head["ORNO"])
        self.infor_orders[reference] = orno
        self._step(
            started, "Infor", f"sales order {orno} for customer {head['CUNO']} (status {head['ORST']})"
        )
        shipment = self._wait(lambda: self._decoded(SHIPMENTS, key), f"canonical.shipment.v1 {key}")
        carrier = shipment.get("carrier") or {}
        carrier_name = carrier.get("code") or carrier.get("name") or "?"
        tracking = ", ".join(shipment.get("tracking_numbers") or []) or "(none)"
        self._step(
            started,
            "shipment",
            f"canonical.shipment.v1: delivery {shipment['shipment_id']}, {carrier_name}, tracking {tracking}",
        )
        carrier_row = self._wait(
            lambda: self._tracking(order_id), f"the tracking number on PrestaShop order {order_id}"
        )
        shipped = self._wait(
            lambda: self._state_if(order_id, lambda state: state.shipped),
            f"PrestaShop order {order_id} shipped",
        )
        self._step(
            started,
            "PrestaShop",
            f'tracking {carrier_row} on the order\'s carrier; state "{shipped.name}" (M3 status)',
        )
        invoice = self._wait(lambda: self._decoded(INVOICES, key), f"canonical.invoice.v1 {key}")
        currency = invoice["gross"]["currency"]
        gross, still_open = invoice["gross"]["amount"], invoice["amount_open"]["amount"]
        self._step(
            started,
            "invoice",
            f"canonical.invoice.v1: invoice {invoice['invoice_number']}, {money(gross, currency)} gross, "
            f"{money(still_open, currency)} open",
        )
        if not order.paid_at_checkout and Decimal(str(invoice["amount_open"]["amount"])) > 0:
            self.infor.pay_invoice(int(invoice["invoice_number"]))
            self._step(
                started, "Infor", f"the customer pays invoice {invoice['invoice_number']}; Infor records it"
            )
            paid = self._wait(
                lambda: self._decoded(INVOICES, key, lambda d: Decimal(str(d["amount_open"]["amount"])) == 0),
                f"the paid invoice on canonical.invoice.v1 {key}",
            )
            self._step(
                started,
                "invoice",
                f"canonical.invoice.v1: invoice {paid['invoice_number']} "
                f"{str(paid['status']).lower()}, nothing open",
            )
        paid_state = self._wait(
            lambda: self._state_if(order_id, lambda state: state.paid), f"PrestaShop order {order_id} paid"
        )
        self._step(started, "payment", f'PrestaShop payment status: paid (state "{paid_state.name}")')
        return order_id

    # -- failure and replay ------------------------------------------------------------------------

    def failure_and_replay(self, catalogue: Catalogue, tag: str) -> None:
        """The dead-letter and the fix, narrated (see the module docstring)."""
        used = {e.product_id for e in catalogue.matched[:6]}
        unit = next(
            e for e in catalogue.matched if e.sellable and e.combination_id == 0 and e.product_id not in used
        )
        rules_path = Path(self.endpoints.rules_path)
        original_rules = rules_path.read_text(encoding="utf-8")
        if item_case(original_rules) != "keep":
            self.say("  A colleague deploys a rules change: SKUs go to M3 as the shop types them")
            self.say(
                f"  (variants.item_number.case: keep in {rules_path}); the processors and sinks reload it."
            )
            self._rewrite_rules(with_item_case(original_rules, "keep"))
        else:
            self.say("  The deployed rules pass SKUs to M3 as the shop types them")
            self.say(f"  (variants.item_number.case: keep in {rules_path}).")
        lowered = unit.reference.lower()
        self.shop.edit_product(unit.product_id, {"reference": lowered})
        self.say(
            f'  A shop employee retypes the reference of "{unit.name}" as {lowered!r} '
            f"(M3 knows {unit.item_number})."
        )
        try:
            placed = self.shop.place_order(
                CheckoutRequest(
                    lines=(OrderLineRequest(unit.product_id, 0, 1),),
                    currency="EUR",
                    payment_module="stripe_official",
                    customer_id=4,
                )
            )
            started = self._clock()
            order_id, reference = str(placed["id"]), str(placed["reference"])
            key = f"{SHOP_ID}:{order_id}"
            self._step(
                started, "PrestaShop", f"order #{order_id} placed, reference {reference}: 1 x {unit.name}"
            )
            dead = self._wait(
                lambda: self._first_dead_letter(key), f"the dead letter of {key} on dlq.sink-infor"
            )
            h = dead.headers
            m3_message = h.get("dlq.detail.m3_message", h.get("dlq.error.message", ""))
            stage, reason, field_path = h.get("dlq.stage"), h.get("dlq.reason"), h.get("dlq.field_path")
            self._step(
                started,
                "DLQ",
                f"dlq.sink-infor: stage {stage}, reason {reason}, field {field_path}",
            )
            self._step(
                started,
                "DLQ",
                f"M3 said {h.get('dlq.detail.m3_code', '?')} on {h.get('dlq.detail.m3_field', '?')} "
                f"({h.get('dlq.detail.transaction', '?')}): {m3_message}",
            )
            if self.infor.orders(customer_order_number=reference):
                raise DemoFailedError(f"M3 has an order for {reference} although it was dead-lettered")
            self.say("  The fix: SKUs go to M3 in upper case again (variants.item_number.case: upper).")
            self._rewrite_rules(with_item_case(rules_path.read_text(encoding="utf-8"), "upper"))
            command = self._replay_command(key)
            self.say(f"  $ psinfor {' '.join(command)}")
            replay = self._run_psinfor(command)
            for line in (replay.stdout + replay.stderr).strip().splitlines()[-4:]:
                self.say(f"    {line}")
            if replay.returncode != 0:
                raise DemoFailedError(f"dlq replay exited with {replay.returncode}")
            replayed = self._clock()
            head = self._wait(
                lambda: self._infor_order(reference),
                f"the Infor sales order for {reference} after the replay",
            )
            self._step(replayed, "Infor", f"sales order {head['ORNO']} created from the replayed order")
            time.sleep(2.0)  # anything created twice would show by now
            count = len(self.infor.orders(customer_order_number=reference))
            self._step(replayed, "Infor", f"{count} sales order for reference {reference}: created once")
            if count != 1:
                raise DemoFailedError(f"{count} Infor orders for {reference}")
            self.infor_orders[reference] = str(head["ORNO"])
        finally:
            self.shop.edit_product(unit.product_id, {"reference": unit.reference})
            if rules_path.read_text(encoding="utf-8") != original_rules:
                rules_path.write_text(original_rules, encoding="utf-8")

    def _rewrite_rules(self, text: str) -> None:
        """Write the rules and wait until the process running the infor-orders sink restarted with them."""
        sink_service = next(
            (name for name, sinks in self.endpoints.sinks_by_service.items() if INFOR_ORDERS_SINK in sinks),
            None,
        )
        base = self.endpoints.services.get(sink_service or "")
        before = self._start_time(base) if base else None
        Path(self.endpoints.rules_path).write_text(text, encoding="utf-8")
        if self._reload is not None:
            self._reload()
        if base is None:
            return
        started = self._clock()
        self._wait(lambda: self._restarted(base, before), f"{sink_service} to restart with the new rules")
        self.say(f"  ({sink_service} restarted with the new rules in {self._clock() - started:.1f} s)")

    def _replay_command(self, key: str) -> list[str]:
        prefix = self.endpoints.topic_prefix
        topic = ["--topic", f"{DLQ_INFOR}={prefix}{DLQ_INFOR}"] if prefix else ["--topic", DLQ_INFOR]
        return ["dlq", "replay", *topic, "--stage", INFOR_ORDERS_SINK, "--key", key, "--yes", "--by", "demo"]

    def _run_psinfor(self, args: Sequence[str]) -> subprocess.CompletedProcess[str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("PSINFOR_")}
        env[env_name("kafka", "bootstrap_servers")] = self.endpoints.bootstrap
        env[env_name("registry", "url")] = self.endpoints.registry_url
        return subprocess.run(
            [sys.executable, "-m", "cli.main", *args],
            env=env,
            cwd=Path(__file__).resolve().parent.parent,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    # -- observations --------------------------------------------------------------------------------

    def _step(self, started: float, system: str, text: str) -> None:
        self.say(format_step(self._clock() - started, system, text))

    def _wait(self, found: Callable[[], Any], what: str) -> Any:
        deadline = self._clock() + self._timeout
        nagged = self._clock() + 15.0
        while True:
            value = found()
            if value is not None and value is not False:
                return value
            now = self._clock()
            if now > deadline:
                raise DemoFailedError(f"{what} did not happen within {self._timeout:.0f} s")
            if now > nagged:
                self.say(f"           (still waiting for {what})")
                nagged = now + 15.0
            time.sleep(0.1)

    def _first(self, topic: str, key: str, accept: Callable[[Tapped], bool]) -> Tapped | None:
        return next((r for r in self._tap.records(topic, key) if accept(r)), None)

    def _first_dead_letter(self, original_key: str) -> Tapped | None:
        found = self._tap.dead_letters(DLQ_INFOR, original_key)
        return found[0] if found else None

    def _decoded(
        self, topic: str, key: str, accept: Callable[[AvroDatum], bool] = lambda datum: True
    ) -> AvroDatum | None:
        for record in self._tap.records(topic, key):
            if record.value is None:
                continue
            datum = self._codecs[topic].decode(record.value, self.endpoints.topic(topic))
            if accept(datum):
                return datum
        return None

    def _infor_order(self, reference: str) -> JsonObject | None:
        found = self.infor.orders(customer_order_number=reference)
        return found[0] if found else None

    def _tracking(self, order_id: str) -> str | None:
        for row in self.shop.order_carriers(int(order_id)):
            if row.get("tracking_number"):
                return str(row["tracking_number"])
        return None

    def _state(self, order_id: str) -> ShopOrderState:
        state_id = str(self.shop.row("orders", int(order_id)).get("current_state", "0"))
        if state_id not in self._state_names:
            row = self.shop.row("order_states", int(state_id))
            name = row.get("name")
            text = str(next(iter(name.values()))) if isinstance(name, dict) else str(name)
            self._state_names[state_id] = ShopOrderState(
                text, paid=str(row.get("paid", "0")) == "1", shipped=str(row.get("shipped", "0")) == "1"
            )
        return self._state_names[state_id]

    def _state_if(self, order_id: str, accept: Callable[[ShopOrderState], bool]) -> ShopOrderState | None:
        state = self._state(order_id)
        return state if accept(state) else None

    def _restarted(self, base: str, before: float | None) -> bool:
        """Whether the process behind ``base`` is a new one (another start time) and ready."""
        now = self._start_time(base)
        return now is not None and now != before and self._ready(base)

    def _start_time(self, base: str) -> float | None:
        try:
            response = self._probe.get(f"{base}/metrics")
        except httpx.HTTPError:
            return None
        for line in response.text.splitlines():
            if line.startswith("process_start_time_seconds "):
                return float(line.split()[1])
        return None

    def _ready(self, base: str) -> bool:
        try:
            return self._probe.get(f"{base}/readyz").is_success
        except httpx.HTTPError:
            return False
