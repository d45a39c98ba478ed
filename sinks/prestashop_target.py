"""What every PrestaShop sink shares: the shop client, order keys, order-state writes and the SKU catalogue.

- :func:`open_shop_client`: the one way a PrestaShop sink gets its client. One ``httpx.AsyncClient``
  per sink, paced by :class:`~pipeline.ratelimit.RateLimitedTransport` with the limiter of the shop's
  webservice key (shared by every PrestaShop sink of the process on that key: the quota, when a host
  enforces one, is the key's, not the sink's), timeouts from the settings, closed on exit.
- :func:`order_id_of`: ``{shop_id}:{id_order}`` → the order id in *this* sink's shop, or None for
  another shop's order (the sink skips it).
- :class:`OrderStateWriter`: moves an order forward through ``POST order_histories`` when the rules
  say the shop's current state is behind, and only then. Only ``prestashop-status`` uses it: one
  writer per order, keyed by order, so two reads of the same old state can never both post (the
  tracking and payment sinks emit their conclusions on ``canonical.order-status.v1`` instead, see
  ``sinks/order_status_emitter.py``). The decision is the pure :func:`plan_status_write`. Around
  every state it posts with the ``paid`` flag it keeps a :class:`PaidStateMark` (below), so the
  payment the shop invents for it is known as the pipeline's echo and never applied to M3.
- :class:`ShopCatalogue`: SKU → sellable unit (product, combination) from the shop's references,
  cached and reloaded on a miss at most once per interval; an unknown SKU raises
  ``InvalidMessage("unknown_sku")`` with the closest references and names as suggestions.

**Paid-state echo.** PrestaShop records an ``order_payments`` row for the remaining amount whenever
an order enters a state flagged ``paid`` (PS_OS_PAYMENT, and PS_OS_SHIPPING too). When the PIPELINE
posts such a state (a bank-wire order shipped by M3 → "Shipped"), that row is not money the customer
paid: it must not reach M3 as a shop payment (``sinks/infor_payments.py``). Nothing in the row says
who caused it, and clocks of two systems are not compared, so the writer brackets its own write::

    key   echo:prestashop:paid-state:{stage}:{order_key}      (on the compacted ``state.erp-links``)
    value {"order_key": "1:42", "stage": "prestashop-status", "state": 4,
           "before": ["17"], "after": null | ["17", "18"], "echo": ["18"], "writes": []}

``before``: the order's payment ids read just before the POST (the record is acknowledged before the
POST is sent); ``after``: read just after it (the record written again, "closed"); ``echo``: every
payment id that appeared across this stage's paid-state writes of the order (``after - before``,
cumulative). An OPEN mark (``after`` null: the process died between the two writes) is closed by the
next :meth:`OrderStateWriter.move` of the order (the runner redelivers the record it was applying)
with the payments read then. One record per stage and order, so each has one writer (the sink's key
order) and the cumulative set is never lost to a concurrent writer. Only ``prestashop-status`` writes
marks now; marks of the stages that posted states before it became the only writer
(``prestashop-tracking``, ``prestashop-payment``, ``prestashop-payment-records``) stay on the topic and
are still read by the Infor payment sinks, which judge a payment by the marks of every stage. ``writes`` is
always empty: the customer sinks read ``echo:*`` keys as their ledger (``sinks/echo.py``) and
so see "no customer writes" instead of an unreadable record. Limit: a genuine payment the shop
records within the few milliseconds between the two reads is taken for the echo (logged).

Errors are the client's (:mod:`connectors.prestashop.transport` classifies every HTTP outcome): a 4xx
that blames the payload is an ``InvalidMessage`` whose ``details`` carry the request line, status and
PrestaShop error codes/messages (truncated); 5xx, 429 after the limiter's replays, timeouts and
connection errors are ``RetryableError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import hashlib
import json
import logging
import re
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Protocol
from zoneinfo import ZoneInfo

import httpx

from connectors.prestashop.client import PrestaShopClient
from connectors.prestashop.models import Combination, OrderState, Product
from connectors.prestashop.order_states import StandardState
from connectors.prestashop.query import Query
from pipeline.errors import InvalidMessage
from pipeline.producer import AckedProducer
from pipeline.ratelimit import AdaptiveRateLimiter, RateLimitedTransport, RatePolicy
from pipeline.settings import PrestaShopSettings
from processors.erp_links import LINKS_TOPIC, ErpLinkIndex, ErpLinkStore
from rules.canonical_status import FulfillmentStatus, Lifecycle, OrderStatus, PaymentStatus, StatusUpdate
from rules.engine import Rules
from rules.status import MergeOutcome, ShopStates, StatusRules
from schemas.codec import AvroDatum
from sinks.base import SinkResources

log = logging.getLogger(__name__)

TARGET = "prestashop"
"""The ``target`` of every PrestaShop sink: one circuit breaker and one DLQ (``dlq.sink-prestashop``)."""

DEFAULT_SEND_EMAIL = False
"""``sendemail`` on status and tracking writes when the caller passes no settings: the customer mails
are the shop's business (``PSINFOR_PRESTASHOP__SEND_EMAIL`` turns them on)."""


def shop_rate_policy(shop: PrestaShopSettings) -> RatePolicy:
    """The pace of one webservice key. PrestaShop core has no quota (reference §1.13); hosts and WAFs
    do. The default 50 requests/s (``PSINFOR_PRESTASHOP__REQUESTS_PER_SECOND``) is more than a typical
    PHP shop answers in time, and the limiter's AIMD finds a host's lower limit from its 429s."""
    return RatePolicy(ceiling=shop.requests_per_second, burst=10.0, default_backoff=2.0)


CATALOGUE_MIN_RELOAD_S = 60.0
"""A SKU miss reloads the shop's catalogue at most this often (a burst of unknown SKUs reads it once)."""

STATES_MIN_RELOAD_S = 5.0
"""An order in a state the cached order_states lack reloads them at most this often."""

SUGGESTION_LIMIT = 5
SUGGESTION_CUTOFF = 0.5
"""Similarity (0..1, difflib ratio) a reference or name needs to be offered as a near match."""


# --- the client ----------------------------------------------------------------------------------------

_LIMITERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, AdaptiveRateLimiter]] = (
    weakref.WeakKeyDictionary()
)
"""Limiters per event loop and credential. Per loop because a limiter's lock belongs to one loop (tests
run several loops in one process); per credential because the shop's quota is per webservice key."""


def credential_id(shop: PrestaShopSettings) -> str:
    """A stable, non-secret id of the shop's webservice key (metric-safe, log-safe)."""
    digest = hashlib.sha256(f"{shop.base_url}|{shop.ws_key.get_secret_value()}".encode()).hexdigest()
    return f"ws-{digest[:12]}"


def shop_limiter(shop: PrestaShopSettings, policy: RatePolicy | None = None) -> AdaptiveRateLimiter:
    """The process's limiter for this shop's webservice key (created on first use, on this loop)."""
    per_loop = _LIMITERS.setdefault(asyncio.get_running_loop(), {})
    limiter = per_loop.get(credential_id(shop))
    if limiter is None:
        limiter = AdaptiveRateLimiter(policy or shop_rate_policy(shop), target=TARGET)
        per_loop[credential_id(shop)] = limiter
    return limiter


@asynccontextmanager
async def open_shop_client(
    shop: PrestaShopSettings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    rate_policy: RatePolicy | None = None,
) -> AsyncIterator[PrestaShopClient]:
    """A client on the shop of ``shop``, rate-limited per webservice key; the connections close on exit.

    ``transport`` replaces the network below the limiter (tests).
    """
    inner = transport if transport is not None else httpx.AsyncHTTPTransport()
    http = httpx.AsyncClient(
        transport=RateLimitedTransport(inner, shop_limiter(shop, rate_policy)),
        timeout=httpx.Timeout(shop.timeout_s, connect=shop.connect_timeout_s),
    )
    try:
        yield PrestaShopClient(
            http,
            shop.base_url,
            shop.ws_key,
            page_size=shop.page_size,
            time_zone=ZoneInfo(shop.time_zone) if shop.time_zone else None,
        )
    finally:
        await http.aclose()


# --- records -------------------------------------------------------------------------------------------


def source_system(datum: AvroDatum) -> str:
    """``meta.source_system`` of a canonical datum (``PRESTASHOP``, ``INFOR``, ``PIPELINE``)."""
    return str(datum["meta"]["source_system"])


def is_from_shop(datum: AvroDatum) -> bool:
    """True when the record states what the shop itself said: writing it back would be an echo."""
    return source_system(datum) == "PRESTASHOP"


def order_id_of(order_key: str, shop_id: int, *, field_path: str = "order_key") -> int | None:
    """The ``id_order`` of ``{shop_id}:{id_order}`` when the order is this shop's; None for another shop.

    Raises InvalidMessage ``invalid_order_key`` for a key of another shape (an ERP-only key such as
    ``?:1000004711`` never names a shop order).
    """
    shop, sep, local = order_key.partition(":")
    if not sep or not shop.strip().isdigit() or not local.strip().isdigit() or int(local) <= 0:
        raise InvalidMessage(
            "invalid_order_key",
            f"{order_key!r} is not a shop order key {{shop_id}}:{{id_order}}",
            field_path=field_path,
        )
    return int(local) if int(shop) == shop_id else None


def desired_status(datum: AvroDatum) -> OrderStatus:
    """The three status dimensions of an ``OrderStatusChange`` datum."""
    return OrderStatus(
        payment=PaymentStatus(datum["payment_status"]),
        fulfillment=FulfillmentStatus(datum["fulfillment_status"]),
        lifecycle=Lifecycle(datum["lifecycle"]),
    )


# --- order states --------------------------------------------------------------------------------------


class PlanReason(StrEnum):
    """Why a status write is or is not planned (a bounded label for ``Applied.facts``)."""

    FORWARD = "forward"
    """The shop's order is behind: the planned state moves it forward."""
    ALREADY_THERE = "already_there"
    """The shop's current state already says everything the desired status says."""
    BACKWARDS = "backwards"
    """The desired status would move a dimension backwards (a late or replayed event)."""
    NO_STATE = "no_state"
    """No write-back rule names a shop state for the desired status (e.g. ON_HOLD, PARTIALLY_PAID)."""


@dataclass(frozen=True)
class StatusPlan:
    """The state to post (``target``; None = no write) and why."""

    target: int | None
    reason: PlanReason


def as_update(status: OrderStatus) -> StatusUpdate:
    """``status`` as an update that says nothing where the status is ``UNKNOWN``."""
    return StatusUpdate(
        payment=None if status.payment is PaymentStatus.UNKNOWN else status.payment,
        fulfillment=None if status.fulfillment is FulfillmentStatus.UNKNOWN else status.fulfillment,
        lifecycle=None if status.lifecycle is Lifecycle.UNKNOWN else status.lifecycle,
    )


def plan_status_write(
    rules: StatusRules, desired: OrderStatus, current_state: int, states: ShopStates
) -> StatusPlan:
    """Which shop state (if any) makes the order reflect ``desired``, never moving it backwards (pure).

    The rules' write-back picks the state (first rule whose condition holds and whose state moves the
    order forward, each dimension only along its progression or an explicit transition); without one,
    the reason says whether the shop is already there, the event is late, or no state fits. Raises
    InvalidMessage ``unknown_order_state`` when the shop lacks ``current_state``.
    """
    target = rules.prestashop_target(desired, current_state, states)
    if target is not None:
        return StatusPlan(target, PlanReason.FORWARD)
    current = rules.from_prestashop(current_state, states).update.as_status()
    merged = rules.merge(current, as_update(desired))
    if merged.outcome is MergeOutcome.REFUSED:
        return StatusPlan(None, PlanReason.BACKWARDS)
    if merged.outcome is MergeOutcome.UNCHANGED:
        return StatusPlan(None, PlanReason.ALREADY_THERE)
    return StatusPlan(None, PlanReason.NO_STATE)


@dataclass(frozen=True)
class StatusWriteResult:
    """What :meth:`OrderStateWriter.move` did: the plan, the state the order was in, and if it wrote."""

    plan: StatusPlan
    previous_state: int

    @property
    def written(self) -> bool:
        """True when an order_histories row was posted."""
        return self.plan.target is not None


# --- paid-state echo marks (see the module docstring) -------------------------------------------------

PAID_STATE_PREFIX: Final = "echo:prestashop:paid-state:"
"""Key prefix of the paid-state marks on ``state.erp-links``: ``{prefix}{stage}:{order_key}``."""


def _ids(values: Iterable[object]) -> frozenset[str]:
    return frozenset(str(value).strip() for value in values if str(value).strip())


@dataclass(frozen=True)
class PaidStateMark:
    """One stage's bracket around its paid-state writes of one order (see the module docstring)."""

    order_key: str
    stage: str
    state: int
    """The paid state posted last (or about to be)."""
    before: frozenset[str]
    """The order's payment ids read just before that POST."""
    after: frozenset[str] | None
    """... and just after it; None while the mark is open (the POST's outcome not recorded yet)."""
    echo: frozenset[str] = frozenset()
    """Every payment id the shop created for this stage's paid-state writes of the order (cumulative)."""

    @property
    def open(self) -> bool:
        """True between the acknowledged "before" record and the "after" one."""
        return self.after is None

    @property
    def key(self) -> bytes:
        """The mark's key on ``state.erp-links``."""
        return f"{PAID_STATE_PREFIX}{self.stage}:{self.order_key}".encode()

    @classmethod
    def opened(
        cls,
        order_key: str,
        stage: str,
        state: int,
        before: Iterable[str],
        previous: PaidStateMark | None = None,
    ) -> PaidStateMark:
        """The open mark of a paid-state write about to be posted; keeps ``previous``'s echo ids."""
        echo = previous.echo if previous is not None else frozenset()
        return cls(order_key, stage, state, _ids(before), None, echo)

    def closed(self, after: Iterable[str]) -> PaidStateMark:
        """This mark closed with the payment ids read after the POST: what appeared is echo."""
        seen = _ids(after)
        return PaidStateMark(
            self.order_key, self.stage, self.state, self.before, seen, self.echo | (seen - self.before)
        )

    def to_json(self) -> bytes:
        """The record's value (UTF-8 JSON, ids sorted numerically)."""
        value = {
            "order_key": self.order_key,
            "stage": self.stage,
            "state": self.state,
            "before": _sorted_ids(self.before),
            "after": None if self.after is None else _sorted_ids(self.after),
            "echo": _sorted_ids(self.echo),
            "writes": [],
        }
        return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_record(cls, key: bytes, value: bytes | None) -> PaidStateMark | None:
        """The mark a record states; None for another record, a tombstone or a value it cannot read."""
        if value is None or not key.startswith(PAID_STATE_PREFIX.encode()):
            return None
        try:
            data = json.loads(value)
            after = data.get("after")
            return cls(
                order_key=str(data["order_key"]),
                stage=str(data["stage"]),
                state=int(data["state"]),
                before=_ids(data["before"]),
                after=None if after is None else _ids(after),
                echo=_ids(data.get("echo") or ()),
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            log.warning(
                "unreadable paid-state mark ignored", extra={"mark_key": key.decode("utf-8", "replace")}
            )
            return None


def _sorted_ids(ids: Iterable[str]) -> list[str]:
    return sorted(ids, key=lambda id_: (len(id_), id_))


class PaymentOrigin(StrEnum):
    """Who made a shop payment, as far as the paid-state marks tell (:func:`payment_origin`)."""

    GENUINE = "genuine"
    """Not created by any paid-state write of the pipeline: money the shop recorded."""
    ECHO = "echo"
    """Created by the shop because the pipeline posted a paid state."""
    UNKNOWN = "unknown"
    """A paid-state write of the order is under way (open mark) and the payment may be its echo."""


def payment_origin(marks: Iterable[PaidStateMark], payment_id: str) -> PaymentOrigin:
    """Whether payment ``payment_id`` of an order is the pipeline's echo, judged by the order's marks
    of every stage (pure): echo when any mark's echo set has it; unknown when a mark is open and the
    payment was not there before that write began; else genuine."""
    found = list(marks)
    if any(payment_id in mark.echo for mark in found):
        return PaymentOrigin.ECHO
    if any(mark.open and payment_id not in mark.before for mark in found):
        return PaymentOrigin.UNKNOWN
    return PaymentOrigin.GENUINE


class PaidStateMarks:
    """The paid-state marks by order and stage, in memory; one thread updates, any may read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._marks: dict[str, dict[str, PaidStateMark]] = {}

    def apply(self, key: bytes | None, value: bytes | None) -> bool:
        """Take one ``state.erp-links`` record; True when it was a paid-state mark (or its tombstone)."""
        if key is None or not key.startswith(PAID_STATE_PREFIX.encode()):
            return False
        mark = PaidStateMark.from_record(key, value)
        if mark is not None:
            self.remember(mark)
        elif value is None:
            stage, _, order_key = key.decode("utf-8", "replace")[len(PAID_STATE_PREFIX) :].partition(":")
            with self._lock:
                self._marks.get(order_key, {}).pop(stage, None)
        return True

    def remember(self, mark: PaidStateMark) -> None:
        """Hold ``mark`` (written just now, or read from the topic)."""
        with self._lock:
            self._marks.setdefault(mark.order_key, {})[mark.stage] = mark

    def of_order(self, order_key: str) -> tuple[PaidStateMark, ...]:
        """Every stage's mark of the order."""
        with self._lock:
            return tuple(self._marks.get(order_key, {}).values())

    def of_stage(self, order_key: str, stage: str) -> PaidStateMark | None:
        """One stage's mark of the order, or None."""
        with self._lock:
            return self._marks.get(order_key, {}).get(stage)


class PaidStateIndex(ErpLinkIndex):
    """The links index that also keeps the paid-state marks of ``state.erp-links``."""

    def __init__(self) -> None:
        super().__init__()
        self.marks = PaidStateMarks()

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """A paid-state mark here; anything else as the links index does."""
        if not self.marks.apply(key, value):
            super().apply(key, value)


class PaidStateLedger(Protocol):
    """Where :class:`OrderStateWriter` keeps its paid-state marks (:class:`StoredPaidStateLedger`)."""

    @property
    def stage(self) -> str:
        """The writing sink's stage name (one mark per stage and order)."""
        ...

    def order_key(self, id_order: int) -> str:
        """The canonical order key of this shop's order ``id_order``."""
        ...

    async def mark(self, order_key: str) -> PaidStateMark | None:
        """This stage's current mark of the order (RetryableError while the topic cannot be read)."""
        ...

    async def record(self, mark: PaidStateMark) -> None:
        """Write ``mark``; returns only after the broker acknowledged it."""
        ...


class StoredPaidStateLedger:
    """:class:`PaidStateLedger` on ``state.erp-links``: a :class:`PaidStateIndex` followed by an ErpLinkStore.

    The topic is read on first use, not when the sink is built (a sink builds without a broker; a
    record that meets an unreadable topic is retried like any outage). This stage is the only writer
    of its marks and acknowledged each one before going on, so after that first read the index holds
    the current mark of every order without waiting for the topic again.
    """

    def __init__(self, store: ErpLinkStore, producer: AckedProducer, *, stage: str, shop_id: int) -> None:
        if not isinstance(store.index, PaidStateIndex):
            raise TypeError("the store must be built with a PaidStateIndex (see open_paid_state_ledger)")
        self._store = store
        self._marks = store.index.marks
        self._producer = producer
        self._stage = stage
        self._shop_id = shop_id
        self._started = False
        self._starting = threading.Lock()

    @property
    def stage(self) -> str:
        """See :class:`PaidStateLedger`."""
        return self._stage

    def order_key(self, id_order: int) -> str:
        """See :class:`PaidStateLedger`."""
        return f"{self._shop_id}:{id_order}"

    def _ready(self) -> None:
        with self._starting:
            if not self._started:
                self._store.start()
                self._started = True

    def close(self) -> None:
        """Stop following the topic (if it was ever read)."""
        with self._starting:
            if self._started:
                self._store.close()
                self._started = False

    async def mark(self, order_key: str) -> PaidStateMark | None:
        """See :class:`PaidStateLedger`."""
        await asyncio.to_thread(self._ready)
        return self._marks.of_stage(order_key, self._stage)

    async def record(self, mark: PaidStateMark) -> None:
        """See :class:`PaidStateLedger`."""
        await asyncio.to_thread(self._ready)
        await self._producer.produce_acked(self._store.topic, mark.key, mark.to_json())
        self._marks.remember(mark)


@contextlib.asynccontextmanager
async def open_paid_state_ledger(
    resources: SinkResources, *, stage: str, sync_timeout_s: float = 10.0
) -> AsyncIterator[StoredPaidStateLedger]:
    """The paid-state ledger of sink ``stage`` on ``state.erp-links`` (read on first use); closed on exit."""
    store = ErpLinkStore(
        resources.settings.kafka,
        resources.topic(LINKS_TOPIC),
        client_id_suffix=f"sink-{stage}-paid-states",
        sync_timeout_s=sync_timeout_s,
    )
    store.index = PaidStateIndex()
    ledger = StoredPaidStateLedger(
        store, resources.producer, stage=stage, shop_id=resources.settings.require_prestashop().shop_id
    )
    try:
        yield ledger
    finally:
        await asyncio.to_thread(ledger.close)


class OrderStateWriter:
    """Moves shop orders forward by the rules; loads the shop's order states once (again on an unknown id).

    With ``paid_states`` (``prestashop-status``'s ``build`` passes it) a state flagged ``paid`` is
    posted between the two records of a :class:`PaidStateMark`; without it (unit tests) nothing is
    marked.
    Safe for concurrent use by the keys of one sink on one event loop.
    """

    def __init__(
        self,
        client: PrestaShopClient,
        rules: Rules,
        *,
        paid_states: PaidStateLedger | None = None,
        send_email: bool = DEFAULT_SEND_EMAIL,
        min_reload_s: float = STATES_MIN_RELOAD_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._rules = rules
        self._paid_states = paid_states
        self._send_email = send_email
        self._min_reload_s = min_reload_s
        self._clock = clock
        self._states: ShopStates | None = None
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()

    @property
    def status_rules(self) -> StatusRules:
        """The rules' status section the writer plans with."""
        return self._rules.status

    async def states_knowing(self, id_state: int) -> ShopStates:
        """The shop's states, reloaded when ``id_state`` is new to them (a state the merchant just added)."""
        async with self._lock:
            stale = self._states is None or (
                id_state not in self._states.by_id and self._clock() - self._loaded_at >= self._min_reload_s
            )
            if stale:
                self._states = await self._load()
                self._loaded_at = self._clock()
            assert self._states is not None
            return self._states

    async def _load(self) -> ShopStates:
        states = [state async for state in self._client.iterate(OrderState)]
        keys = {key.value for key in StandardState}
        keys |= {rule.key for rule in self._rules.model.status.prestashop.states if rule.key is not None}
        keys |= {rule.key for rule in self._rules.model.status.prestashop.writeback}
        configuration = await self._client.configuration_values(*sorted(keys))
        return ShopStates.build(states, configuration)

    async def move(self, id_order: int, desired: OrderStatus) -> StatusWriteResult:
        """Post the state that moves order ``id_order`` towards ``desired``, when the rules allow one.

        Idempotent: the order's current state is read first, so a redelivered record finds the order
        already there and writes nothing (the shop itself does not dedupe order_histories).
        """
        current = await self._client.current_state_of(id_order)
        states = await self.states_knowing(current)
        plan = plan_status_write(self._rules.status, desired, current, states)
        ledger = self._paid_states
        if ledger is None:
            if plan.target is not None:
                await self._post(id_order, plan.target)
            return StatusWriteResult(plan, current)
        order_key = ledger.order_key(id_order)
        mark = await ledger.mark(order_key)
        reference: str | None = None
        if mark is not None and mark.open:
            # The process stopped between posting and recording what followed: what the shop holds
            # now includes that write's payment (if it was posted at all).
            reference = await self._reference(id_order)
            mark = mark.closed(await self._payment_ids(reference))
            await ledger.record(mark)
            log.info("open paid-state mark closed", extra={"order_key": order_key, "echo": len(mark.echo)})
        if plan.target is None:
            return StatusWriteResult(plan, current)
        if not states.state(plan.target).paid:
            await self._post(id_order, plan.target)
            return StatusWriteResult(plan, current)
        reference = reference or await self._reference(id_order)
        opened = PaidStateMark.opened(
            order_key, ledger.stage, plan.target, await self._payment_ids(reference), mark
        )
        await ledger.record(opened)  # acknowledged before the shop can create the payment
        await self._post(id_order, plan.target)
        closed = opened.closed(await self._payment_ids(reference))
        await ledger.record(closed)
        if closed.echo != opened.echo:
            log.info(
                "the shop recorded a payment for the pipeline's paid state: marked as echo",
                extra={
                    "order_key": order_key,
                    "state": plan.target,
                    "payments": ",".join(sorted(closed.echo)),
                },
            )
        return StatusWriteResult(plan, current)

    async def _post(self, id_order: int, id_state: int) -> None:
        await self._client.add_order_history(
            id_order, id_state, send_email=self._send_email, skip_if_current=False
        )

    async def _reference(self, id_order: int) -> str:
        return (await self._client.get_order(id_order)).reference

    async def _payment_ids(self, reference: str) -> list[str]:
        if not reference:
            return []
        return [str(payment.id) for payment in await self._client.order_payments_for(reference)]


class ShopCurrencies:
    """The shop's currencies (id → ISO code) and its default currency, read once."""

    def __init__(self, client: PrestaShopClient) -> None:
        self._client = client
        self._iso: dict[int, str] | None = None
        self._default: int | None = None
        self._lock = asyncio.Lock()

    async def iso_of(self, id_currency: int) -> str:
        """The ISO 4217 code of ``id_currency``; InvalidMessage ``unknown_currency`` if the shop lacks it."""
        iso = (await self._load()).get(id_currency)
        if iso is None:
            raise InvalidMessage(
                "unknown_currency",
                f"the shop has no currency {id_currency}",
                details={"id_currency": str(id_currency)},
            )
        return iso

    async def default_iso(self) -> str:
        """The shop's default currency (PS_CURRENCY_DEFAULT), the currency of catalogue prices."""
        await self._load()
        if self._default is None:
            raise InvalidMessage(
                "prestashop_configuration",
                "the shop's PS_CURRENCY_DEFAULT is not a currency id",
                details={"configuration": "PS_CURRENCY_DEFAULT"},
            )
        return await self.iso_of(self._default)

    async def _load(self) -> dict[int, str]:
        async with self._lock:
            if self._iso is None:
                currencies = await self._client.list_currencies()
                value = (await self._client.configuration_values("PS_CURRENCY_DEFAULT")).get(
                    "PS_CURRENCY_DEFAULT", ""
                )
                self._default = int(value) if value.strip().isdigit() else None
                self._iso = {currency.id: currency.iso_code.strip().upper() for currency in currencies}
            return self._iso


# --- the SKU catalogue ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SellableUnit:
    """One sellable unit of the shop: a product without combinations, or one combination.

    ``sku`` is what the product flows call its SKU: the combination's reference, else the product's.
    """

    sku: str
    id_product: int
    id_product_attribute: int
    """The combination id; 0 for a product without combinations."""
    name: str
    """The product's name (the shop's first language), for humans reading suggestions."""


_NOT_ALNUM = re.compile(r"[^0-9A-Z]+")


def _normal(text: str) -> str:
    """Upper-case with every run of non-alphanumerics as one ``-`` (``mug cer/350`` ~ ``MUG-CER-350``)."""
    return _NOT_ALNUM.sub("-", text.upper()).strip("-")


@dataclass(frozen=True)
class SkuCatalogue:
    """An immutable snapshot of the shop's sellable units by SKU (build with :meth:`build`)."""

    units: tuple[SellableUnit, ...]
    _by_sku: Mapping[str, tuple[SellableUnit, ...]] = field(repr=False)
    _by_folded: Mapping[str, tuple[SellableUnit, ...]] = field(repr=False)

    @classmethod
    def build(cls, products: Iterable[Product], combinations: Iterable[Combination]) -> SkuCatalogue:
        """From the shop's products (id, reference, name) and combinations (id, id_product, reference).

        A product with combinations is not itself sellable (its stock row is their sum); its
        combinations are, each under its own reference or, lacking one, the product's.
        """
        combos_of: dict[int, list[Combination]] = {}
        for combination in combinations:
            combos_of.setdefault(combination.id_product, []).append(combination)
        units: list[SellableUnit] = []
        for product in sorted(products, key=lambda p: p.id):
            name = next((text for _, text in sorted(product.name.items()) if text), "")
            combos = sorted(combos_of.get(product.id, []), key=lambda c: c.id)
            if not combos:
                if product.reference.strip():
                    units.append(SellableUnit(product.reference.strip(), product.id, 0, name))
                continue
            for combination in combos:
                sku = combination.reference.strip() or product.reference.strip()
                if sku:
                    units.append(SellableUnit(sku, product.id, combination.id, name))
        by_sku: dict[str, list[SellableUnit]] = {}
        by_folded: dict[str, list[SellableUnit]] = {}
        for unit in units:
            by_sku.setdefault(unit.sku, []).append(unit)
            by_folded.setdefault(unit.sku.casefold(), []).append(unit)
        return cls(
            units=tuple(units),
            _by_sku={sku: tuple(found) for sku, found in by_sku.items()},
            _by_folded={sku: tuple(found) for sku, found in by_folded.items()},
        )

    def find(self, sku: str) -> tuple[SellableUnit, ...]:
        """The units sold as ``sku``: exact reference first, else case-insensitively (M3 upper-cases)."""
        exact = self._by_sku.get(sku.strip())
        if exact:
            return exact
        return self._by_folded.get(sku.strip().casefold(), ())

    def suggestions(
        self, sku: str, *, limit: int = SUGGESTION_LIMIT, cutoff: float = SUGGESTION_CUTOFF
    ) -> list[SellableUnit]:
        """The units whose reference or name looks most like ``sku``, best first (pure)."""
        wanted = _normal(sku)
        if not wanted:
            return []
        matcher = difflib.SequenceMatcher(autojunk=False)
        matcher.set_seq2(wanted)
        scored: list[tuple[float, str, SellableUnit]] = []
        for unit in self.units:
            best = 0.0
            for candidate in (_normal(unit.sku), _normal(unit.name)):
                if not candidate:
                    continue
                matcher.set_seq1(candidate)
                # The cheap upper bounds first, as difflib.get_close_matches does.
                if matcher.real_quick_ratio() < cutoff or matcher.quick_ratio() < cutoff:
                    continue
                best = max(best, matcher.ratio())
            if best >= cutoff:
                scored.append((best, unit.sku, unit))
        scored.sort(key=lambda entry: (-entry[0], entry[1]))
        return [unit for _, _, unit in scored[:limit]]


def unknown_sku(sku: str, catalogue: SkuCatalogue, *, field_path: str = "sku") -> InvalidMessage:
    """``InvalidMessage("unknown_sku")`` with the closest references (and their names) as suggestions."""
    near = catalogue.suggestions(sku)
    return InvalidMessage(
        "unknown_sku",
        f"PrestaShop sells nothing under SKU {sku!r}"
        + (f" (closest: {', '.join(unit.sku for unit in near)})" if near else ""),
        field_path=field_path,
        details={
            "sku": sku,
            "suggestions": ",".join(unit.sku for unit in near),
            "suggestion_names": " | ".join(unit.name for unit in near)[:300],
            "catalogue_size": str(len(catalogue.units)),
        },
    )


class ShopCatalogue:
    """The shop's :class:`SkuCatalogue`, read lazily and reloaded on a miss at most every ``min_reload_s``.

    Safe for concurrent use by the keys of one sink on one event loop.
    """

    def __init__(
        self,
        client: PrestaShopClient,
        *,
        min_reload_s: float = CATALOGUE_MIN_RELOAD_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._min_reload_s = min_reload_s
        self._clock = clock
        self._catalogue: SkuCatalogue | None = None
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()
        self.loads = 0
        """How often the catalogue was read from the shop (for tests and logs)."""

    async def unit(self, sku: str, *, field_path: str = "sku") -> SellableUnit:
        """The one unit sold as ``sku``.

        Raises InvalidMessage ``unknown_sku`` (with suggestions) when the shop has none, also after a
        reload, and ``ambiguous_sku`` when several units share the reference.
        """
        catalogue = await self._current(reload_on_miss=sku)
        found = catalogue.find(sku)
        if not found:
            raise unknown_sku(sku, catalogue, field_path=field_path)
        if len(found) > 1:
            raise InvalidMessage(
                "ambiguous_sku",
                f"{len(found)} sellable units of the shop carry the reference {sku!r}",
                field_path=field_path,
                details={
                    "sku": sku,
                    "units": ",".join(f"{u.id_product}:{u.id_product_attribute}" for u in found)[:300],
                },
            )
        return found[0]

    async def forget(self) -> None:
        """Drop the snapshot so the next lookup reads the shop again (a unit found but gone)."""
        async with self._lock:
            self._catalogue = None

    async def _current(self, *, reload_on_miss: str) -> SkuCatalogue:
        async with self._lock:
            catalogue = self._catalogue
            if catalogue is None or (
                not catalogue.find(reload_on_miss) and self._clock() - self._loaded_at >= self._min_reload_s
            ):
                catalogue = await self._load()
                self._catalogue = catalogue
                self._loaded_at = self._clock()
            return catalogue

    async def _load(self) -> SkuCatalogue:
        self.loads += 1
        products = self._client.iterate(Product, Query(display=("id", "reference", "name")))
        combinations = self._client.iterate(Combination, Query(display=("id", "id_product", "reference")))
        return SkuCatalogue.build([p async for p in products], [c async for c in combinations])


def facts(**values: Any) -> dict[str, str]:
    """``Applied.facts`` from keyword values (every value as text; None left out)."""
    return {name: str(value) for name, value in values.items() if value is not None}
