"""Payment reconciliation: the shop's payments (``canonical.payment.v1``) applied to M3's invoices.

Which M3 transaction: **ARS040MI, "Customer payment interface"** (listed by the reference's source S13,
the generated MI client): ``AddBatchHead`` opens a payment batch, ``AddBatchLine`` pays an amount on one
invoice (invoice number CINO and year INYR, customer, currency, payment date, the provider's
transaction id as check number CKNO), ``ControlBatch`` posts it, which lowers the invoice's remaining
amount (RAFC, read back with OIS350MI LstAllInvByCO). It is the closest documented transaction to
"apply this payment to that invoice"; infor.md names no payment transaction at all. Applying is
idempotent because the batch number is the payment's own identity and round (:func:`payment_batch_id`):
a repeated attempt finds its batch and lines and leaves them, and a posted batch is never posted twice.

Two sinks, because a sink reads one record type and either fact may come first:

- ``infor-payments`` (:class:`InforPaymentsSink`, ``canonical.payment.v1``): the order's M3 number
  (``state.erp-links``), its invoices and their open amounts (M3); none open yet → the payment is
  **parked** and waits;
- ``infor-payment-invoices`` (:class:`InforInvoicePaymentsSink`, ``canonical.invoice.v1``): when an
  invoice arrives, every payment parked for its order is applied.

Waiting durably, simply: the payment's progress is a small JSON record on the compacted
``state.erp-links`` topic, key ``payment:{order_key}:{payment_id}`` (:class:`PaymentProgress`), read back
by :class:`LinksAndPayments`. ``waiting`` parks it; ``applying`` records the round's batch and its
allocations *before* posting (so a retry after a crash posts exactly the same lines, not ones
recomputed from balances the first attempt already lowered); after posting, ``applied`` when nothing of
the payment is left, else ``partly_applied``. The payment sink re-checks M3 once right after parking,
and the invoice sink reads the topic to its end before looking: whichever runs second sees the other's
fact, and if both apply, the shared batch number makes it happen once.

**A payment larger than what the order's invoices have open keeps its remainder** (a card order paid
in full at checkout and delivered in parts gets one M3 invoice per delivery): each application is a
*round* with its own batch, round 0 for the first, and the record says what the rounds posted so far
(``posted``); ``partly_applied`` stays parked, and when the order's next invoice arrives the invoice
sink applies the remainder to the open invoices, oldest first, in the next round's batch. Only when
nothing is left is the payment ``applied``. What no invoice of the order ever opens (an overpayment)
stays parked for good, logged at warning when the first round leaves it: it is never forced onto an
invoice, and whether more invoices will come is not knowable here (M3 may still invoice a backorder).
Batch numbers stay deterministic per (payment, round); the layout and its limits are at
:func:`payment_batch_id` (a remainder needing an eleventh round is refused: the invoice record that
would post it goes to the DLQ as ``payment_rounds_exhausted``). Records written before rounds existed
read as round 0; one already ``applied`` with a remainder is not reopened. One residual race is
accepted: two workers planning the *same* round of one payment from balances read on either side of an
invoice being created (both first read the topic to its end, so each normally sees the other's
``applying`` and posts that instead).

**Echoes of the pipeline's own paid states are never applied.** When a PrestaShop sink posts a state
flagged ``paid`` (e.g. "Shipped" for a bank-wire order M3 shipped), the shop records a payment for the
remaining amount although the customer paid nothing; it comes back here as a payment recorded by
PRESTASHOP. The writer brackets such a post with a paid-state mark on ``state.erp-links``
(:class:`~sinks.prestashop_target.PaidStateMark`, format in ``sinks/prestashop_target.py``): the order's
payment ids before and after. Both sinks read the topic to its end and judge each payment by the
order's marks (:func:`~sinks.prestashop_target.payment_origin`) before anything else: a payment in a
mark's echo set is outcome ``echo`` (nothing posted; a payment parked earlier is recorded ``echo`` so
no invoice picks it up again). While a mark is open (its post under way, or its writer died before
closing it) a payment that was not there before it began may be the echo: the sink waits up to
``echo_wait_s`` for the mark to close (only then: no wait in the common path), and otherwise parks
the payment ``waiting`` without raising (a RetryableError would count against M3's circuit breaker).
The invoice sink settles parked payments with the same check, and the writer closes an open mark at
its next move of the order (the runner redelivers the record it was applying), so a parked echo is
never applied and a genuine payment parked this way goes in with its order's next invoice.

After applying, the resulting payment status of the order (PAID when no invoice of the order has
anything open, else PARTIALLY_PAID) goes to ``canonical.order-status.v1``, the topic CANONICAL.md gives
payment status, as an ``OrderStatusChange`` with only the payment dimension stated.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, replace
from decimal import Decimal
from typing import Protocol

from connectors.infor.adapter import CustomerPayment, ErpOrderRef, InvoiceBalance, PaymentAllocation
from connectors.infor.errors import MiBusinessError
from connectors.infor.gateway import TARGET
from pipeline.errors import InvalidMessage, PipelineError
from pipeline.producer import AckedProducer
from processors.erp_links import LINKS_TOPIC, ErpLinkIndex, ErpLinkStore, OrderLink
from rules.address import clean
from rules.canonical_status import OrderStatus, PaymentStatus
from schemas.codec import AvroCodec, AvroDatum
from schemas.registry import registry_client
from sinks.base import Applied, SinkContext, SinkResources, Skip
from sinks.infor_customers import InforSinkOptions, m3_rejection, open_m3, sink_options
from sinks.order_status_emitter import (
    STATUS_RECORD,
    STATUS_TOPIC,
    Encode,
    SourceStatusFacts,
    StatusEmitter,
    pipeline_status_change,
    status_event_id,
)
from sinks.prestashop_target import PaidStateMark, PaidStateMarks, PaymentOrigin, payment_origin

log = logging.getLogger(__name__)

NAME = "infor-payments"
INVOICES_NAME = "infor-payment-invoices"
PAYMENTS_TOPIC = "canonical.payment.v1"
INVOICES_TOPIC = "canonical.invoice.v1"
PAYMENT_PREFIX = "payment:"

PAYMENT_BATCH_TYPE = "1"
"""ARS040MI BOPE (batch payment type) of the shop's payments: a tenant value, like the order type."""

ECHO_WAIT_S = 5.0
"""How long a payment waits for an open paid-state mark of its order to close before it is parked."""
ECHO_POLL_S = 0.2

_BATCH_SHOP_FACTOR = 10**10
_BATCH_ROUND_FACTOR = 10**9
MAX_SHOP_ID = 10**5 - 1
"""The largest shop id a batch number holds (the five leading digits of PBID's N15)."""
MAX_PAYMENT_ID = 10**9 - 1
"""The largest shop payment id a batch number holds (its nine trailing digits)."""
PAYMENT_ROUNDS = 10
"""How many batches (rounds) one payment may be applied in: the one digit between shop and payment id."""


# --------------------------------------------------------------------------------- the progress


@dataclass(frozen=True)
class PaymentProgress:
    """Where one shop payment stands; the value of ``payment:{order_key}:{payment_id}``."""

    order_key: str
    payment_id: str
    batch_id: int
    amount: Decimal
    currency: str
    paid_on: dt.date
    reference: str
    event_id: str
    correlation_id: str
    shop_id: str
    status: str = "waiting"
    """``waiting`` (nothing posted: no open invoice yet, or its origin not known yet), ``applying``
    (this round's batch and allocations fixed, not known to be posted), ``partly_applied`` (rounds up
    to ``round_number`` posted, some of the amount left: parked for the order's next invoices),
    ``applied`` (nothing left), ``echo`` (the shop's answer to a paid state the pipeline posted: never
    applied)."""
    allocations: tuple[PaymentAllocation, ...] = ()
    """The allocations of round ``round_number`` (the one being posted, or the last one posted)."""
    erp_order_number: str = ""
    round_number: int = 0
    """The round ``batch_id`` and ``allocations`` belong to (0: the first batch)."""
    posted: Decimal = Decimal(0)
    """What the rounds posted so far add up to: for ``applying`` the rounds before this one, for
    ``partly_applied`` and ``applied`` every round up to and including this one."""

    @property
    def unposted(self) -> Decimal:
        """What no posted round has allocated yet (for ``applying``: including this round's lines)."""
        return self.amount - self.posted

    @property
    def key(self) -> bytes:
        """The record's key on ``state.erp-links``."""
        return f"{PAYMENT_PREFIX}{self.order_key}:{self.payment_id}".encode()

    def to_json(self) -> bytes:
        """The record's value (UTF-8 JSON; amounts as strings, never floats)."""
        value = asdict(self)
        value["amount"] = str(self.amount)
        value["posted"] = str(self.posted)
        value["paid_on"] = self.paid_on.isoformat()
        value["allocations"] = [
            {"invoice_id": a.invoice_id, "year": a.year, "amount": str(a.amount)} for a in self.allocations
        ]
        return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, value: bytes) -> PaymentProgress | None:
        """The progress a record states; None for a value this version cannot read."""
        try:
            data = json.loads(value)
            return cls(
                order_key=str(data["order_key"]),
                payment_id=str(data["payment_id"]),
                batch_id=int(data["batch_id"]),
                amount=Decimal(str(data["amount"])),
                currency=str(data["currency"]),
                paid_on=dt.date.fromisoformat(str(data["paid_on"])),
                reference=str(data.get("reference") or ""),
                event_id=str(data.get("event_id") or ""),
                correlation_id=str(data.get("correlation_id") or ""),
                shop_id=str(data.get("shop_id") or ""),
                status=str(data.get("status") or "waiting"),
                allocations=tuple(
                    PaymentAllocation(str(a["invoice_id"]), str(a["year"]), Decimal(str(a["amount"])))
                    for a in data.get("allocations") or []
                ),
                erp_order_number=str(data.get("erp_order_number") or ""),
                # Records written before rounds existed are round 0 with nothing posted before it.
                round_number=int(data.get("round_number") or 0),
                posted=Decimal(str(data.get("posted") or "0")),
            )
        except (ValueError, TypeError, KeyError, ArithmeticError):
            return None


class LinksAndPayments(ErpLinkIndex):
    """The links index, plus the payments' progress records (``payment:`` keys) by order and the
    PrestaShop sinks' paid-state marks."""

    def __init__(self) -> None:
        super().__init__()
        self._payments_lock = threading.Lock()
        self._payments: dict[str, dict[str, PaymentProgress]] = {}
        self._paid_states = PaidStateMarks()

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """Apply one ``state.erp-links`` record (payment progress and paid-state marks here, links to
        the base index)."""
        if self._paid_states.apply(key, value):
            return
        if key is None or not key.startswith(PAYMENT_PREFIX.encode()):
            super().apply(key, value)
            return
        progress = PaymentProgress.from_json(value) if value is not None else None
        if progress is not None:
            self.remember(progress)
            return
        order_key, _, payment_id = key.decode("utf-8", "replace")[len(PAYMENT_PREFIX) :].rpartition(":")
        with self._payments_lock:
            self._payments.get(order_key, {}).pop(payment_id, None)

    def remember(self, progress: PaymentProgress) -> None:
        """Keep ``progress`` (a record just written, or read from the topic)."""
        with self._payments_lock:
            self._payments.setdefault(progress.order_key, {})[progress.payment_id] = progress

    def payment(self, order_key: str, payment_id: str) -> PaymentProgress | None:
        """The progress of one payment, or None."""
        with self._payments_lock:
            return self._payments.get(order_key, {}).get(payment_id)

    def unsettled(self, order_key: str) -> list[PaymentProgress]:
        """The order's payments not yet applied (nor known as echo), oldest payment id first."""
        with self._payments_lock:
            found = list(self._payments.get(order_key, {}).values())
        return sorted(
            (p for p in found if p.status not in ("applied", "echo")), key=lambda p: p.payment_id.zfill(20)
        )

    def paid_state_marks(self, order_key: str) -> tuple[PaidStateMark, ...]:
        """The order's paid-state marks (every PrestaShop sink's), as far as read."""
        return self._paid_states.of_order(order_key)


class PaymentState(Protocol):
    """What reconciliation reads and remembers (blocking: called off the event loop)."""

    def order_link(self, order_key: str) -> OrderLink | None: ...

    def payment(self, order_key: str, payment_id: str) -> PaymentProgress | None: ...

    def unsettled(self, order_key: str) -> list[PaymentProgress]: ...

    def remember(self, progress: PaymentProgress) -> None: ...

    def paid_state_marks(self, order_key: str) -> tuple[PaidStateMark, ...]: ...


class StoredPaymentState:
    """:class:`PaymentState` over a started :class:`ErpLinkStore` whose index is :class:`LinksAndPayments`.

    ``unsettled`` reads the topic to its end first: a payment the other sink parked a moment ago must
    not be missed when its invoice arrives.
    """

    def __init__(self, store: ErpLinkStore, index: LinksAndPayments) -> None:
        self._store = store
        self._index = index

    def order_link(self, order_key: str) -> OrderLink | None:
        """The order's link (the topic read to its end first when unknown)."""
        return self._store.order_link(order_key)

    def payment(self, order_key: str, payment_id: str) -> PaymentProgress | None:
        """The payment's progress as far as read."""
        return self._index.payment(order_key, payment_id)

    def unsettled(self, order_key: str) -> list[PaymentProgress]:
        """The order's payments not applied yet, after reading the topic to its end."""
        self._store.sync()
        return self._index.unsettled(order_key)

    def remember(self, progress: PaymentProgress) -> None:
        """Keep a progress record just written."""
        self._index.remember(progress)

    def paid_state_marks(self, order_key: str) -> tuple[PaidStateMark, ...]:
        """The order's paid-state marks, after reading the topic to its end (a mark is acknowledged
        before the write that makes the shop's payment, so the one behind a payment is always there)."""
        self._store.sync()
        return self._index.paid_state_marks(order_key)


# --------------------------------------------------------------------------------- pure mapping


def payment_batch_id(shop_id: str, payment_id: str, round_number: int = 0) -> int:
    """The ARS040MI batch number (PBID, numeric 15) of round ``round_number`` of a shop payment.

    Layout ``SSSSS R PPPPPPPPP``: shop id x 10^10 + round x 10^9 + the shop's payment id, so round 0
    is the number batches had before rounds existed (shop id x 10^10 + payment id) and every
    (shop, payment, round) has its own number, the same on every attempt. Limits: shop id up to
    :data:`MAX_SHOP_ID`, payment id up to :data:`MAX_PAYMENT_ID` (PrestaShop's order payment ids are
    far below), rounds 0 to :data:`PAYMENT_ROUNDS` - 1. Raises InvalidMessage ``payment_id_not_numeric``
    when an id is not a number or does not fit, ``payment_rounds_exhausted`` for a round beyond.
    """
    if (
        not shop_id.isdigit()
        or not payment_id.isdigit()
        or int(shop_id) > MAX_SHOP_ID
        or int(payment_id) > MAX_PAYMENT_ID
    ):
        raise InvalidMessage(
            "payment_id_not_numeric",
            f"payment {shop_id}/{payment_id}: a batch number needs a numeric shop id up to {MAX_SHOP_ID}"
            f" and payment id up to {MAX_PAYMENT_ID}",
            field_path="meta.source_id",
        )
    if not 0 <= round_number < PAYMENT_ROUNDS:
        raise InvalidMessage(
            "payment_rounds_exhausted",
            f"payment {shop_id}/{payment_id}: round {round_number} has no batch number; a payment is"
            f" applied in at most {PAYMENT_ROUNDS} batches, the rest is left to M3's people",
            field_path="amount.amount",
            details={"payment_id": payment_id, "round": str(round_number)},
        )
    return int(shop_id) * _BATCH_SHOP_FACTOR + round_number * _BATCH_ROUND_FACTOR + int(payment_id)


def to_payment_progress(datum: AvroDatum, context_correlation_id: str = "") -> PaymentProgress | Skip:
    """A canonical ``Payment`` as a payment to apply (status ``waiting``); Skip what is not the shop's.

    Refunds (negative amounts) are InvalidMessage ``refund_not_supported``: in M3 a refund is a credit
    note, not a payment line, and must be handled there.
    """
    meta = datum["meta"]
    if str(meta["source_system"]) != "PRESTASHOP" or str(datum.get("recorded_by")) == "INFOR":
        return Skip("not_ours")
    amount: Decimal = datum["amount"]["amount"]
    if amount == 0:
        return Skip("zero_amount")
    if amount < 0:
        raise InvalidMessage(
            "refund_not_supported",
            f"refund of {amount} for order {datum['order_key']}",
            field_path="amount.amount",
        )
    order_key = str(datum["order_key"])
    shop_id = str(meta.get("shop_id") or order_key.partition(":")[0])
    payment_id = str((datum.get("external_ids") or {}).get("prestashop") or meta["source_id"])
    paid_at: dt.datetime = datum["paid_at"]
    return PaymentProgress(
        order_key=order_key,
        payment_id=payment_id,
        batch_id=payment_batch_id(shop_id, payment_id),
        amount=amount.normalize() if amount != amount.to_integral_value() else amount.quantize(Decimal(1)),
        currency=str(datum["amount"]["currency"]),
        paid_on=paid_at.astimezone(dt.UTC).date(),
        reference=clean(datum.get("transaction_id")),
        event_id=str(meta["event_id"]),
        correlation_id=str(meta.get("correlation_id") or context_correlation_id),
        shop_id=shop_id,
    )


def allocate(amount: Decimal, balances: Sequence[InvoiceBalance]) -> tuple[PaymentAllocation, ...]:
    """``amount`` spread over the invoices' open amounts, oldest invoice first; what no invoice has open
    stays unallocated (it waits for the order's next invoices, never forced onto an invoice)."""
    allocations: list[PaymentAllocation] = []
    left = amount
    for balance in balances:
        if left <= 0:
            break
        share = min(left, balance.open_amount)
        if share > 0:
            allocations.append(PaymentAllocation(balance.invoice_id, balance.year, share))
            left -= share
    return tuple(allocations)


def next_round(
    progress: PaymentProgress, balances: Sequence[InvoiceBalance], erp_order_number: str
) -> PaymentProgress | None:
    """The ``applying`` record of the payment's next round over ``balances``; None when nothing of it
    can be allocated now (no invoice open, or nothing left).

    The next round of a ``partly_applied`` payment follows its last one; any other payment starts
    with round 0. Raises InvalidMessage ``currency_mismatch`` when an invoice is in another currency,
    ``payment_rounds_exhausted`` when the round has no batch number (:func:`payment_batch_id`).
    """
    for balance in balances:
        if balance.currency and balance.currency != progress.currency:
            raise InvalidMessage(
                "currency_mismatch",
                f"payment in {progress.currency}, invoice {balance.invoice_id} in {balance.currency}",
                field_path="amount.currency",
                details={"invoice": balance.invoice_id, "invoice_currency": balance.currency},
            )
    allocations = allocate(progress.unposted, balances) if progress.unposted > 0 else ()
    if not allocations:
        return None
    continues = progress.status == "partly_applied"
    round_number = progress.round_number + 1 if continues else 0
    return replace(
        progress,
        status="applying",
        round_number=round_number,
        batch_id=payment_batch_id(
            progress.shop_id or progress.order_key.partition(":")[0], progress.payment_id, round_number
        ),
        allocations=allocations,
        posted=progress.posted if continues else Decimal(0),
        erp_order_number=erp_order_number,
    )


def round_posted(applying: PaymentProgress) -> PaymentProgress:
    """The record after ``applying``'s batch was posted: ``applied`` when nothing of the payment is left,
    else ``partly_applied`` (parked for the order's next invoices)."""
    posted = applying.posted + sum((a.amount for a in applying.allocations), Decimal(0))
    status = "applied" if posted >= applying.amount else "partly_applied"
    return replace(applying, status=status, posted=posted)


def payment_status(balances: Sequence[InvoiceBalance]) -> str:
    """PAID when no invoice of the order has anything open, PARTIALLY_PAID otherwise."""
    return "PAID" if all(balance.open_amount <= 0 for balance in balances) else "PARTIALLY_PAID"


def payment_status_change(
    progress: PaymentProgress, status: str, balances: Sequence[InvoiceBalance], *, changed_at: dt.datetime
) -> AvroDatum:
    """The ``OrderStatusChange`` stating the order's payment status after ``progress`` was applied.

    Only the payment dimension is stated (the others are UNKNOWN: "no statement"); the event id is a
    function of order, payment and status, so emitting it again after a retry is the same event.
    """
    open_total = sum((b.open_amount for b in balances), Decimal(0))
    invoices = ",".join(b.invoice_id for b in balances)
    return pipeline_status_change(
        stage=NAME,
        event_id=status_event_id(NAME, progress.order_key, progress.payment_id, status),
        order_key=progress.order_key,
        status=OrderStatus(payment=PaymentStatus(status)),
        source_id=f"{progress.order_key}:{progress.payment_id}",
        source_status=SourceStatusFacts(
            "INFOR",
            f"RAFC={open_total}",
            f"open on invoice(s) {invoices} after payment batch {progress.batch_id}",
        ),
        changed_at=changed_at,
        correlation_id=progress.correlation_id or progress.event_id,
        causation_id=progress.event_id or None,
        shop_id=progress.shop_id or None,
        erp_order_number=progress.erp_order_number or None,
        external_ids={
            "prestashop": progress.order_key.partition(":")[2],
            "infor": progress.erp_order_number,
        },
    )


# ---------------------------------------------------------------------------------- reconciling


class Receivables(Protocol):
    """The M3 operations reconciliation needs (:class:`~connectors.infor.m3.M3Adapter` has them)."""

    async def invoice_balances(self, ref: ErpOrderRef) -> list[InvoiceBalance]: ...

    async def apply_customer_payment(self, payment: CustomerPayment, *, batch_type: str) -> bool: ...


class PaymentReconciler:
    """Parks, applies and reports one payment; shared by both sinks (see the module docstring)."""

    def __init__(
        self,
        m3: Receivables,
        state: PaymentState,
        producer: AckedProducer,
        encode: Encode,
        *,
        links_topic: str,
        status_topic: str,
        batch_type: str = PAYMENT_BATCH_TYPE,
        echo_wait_s: float = ECHO_WAIT_S,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._m3 = m3
        self._state = state
        self._producer = producer
        self._statuses = StatusEmitter(producer, encode, status_topic)
        self._links_topic = links_topic
        self._batch_type = batch_type
        self._echo_wait_s = echo_wait_s
        self._clock = clock

    async def settle(self, payment: PaymentProgress, *, park: bool, erp_order_number: str = "") -> Applied:
        """Apply what is left of ``payment`` if its order has an open invoice; else park it (when
        ``park``) and wait.

        ``erp_order_number`` (an invoice names it) is used when the order's link is not known yet.
        Outcomes: ``written`` (a round posted now), ``unchanged`` (applied before; for the payment
        itself also when rounds were posted and the rest waits), ``waiting`` (parked; for an invoice
        also a remainder no invoice has open), ``echo`` (the shop's answer to a paid state the pipeline
        posted: never applied).
        """
        known = await asyncio.to_thread(self._state.payment, payment.order_key, payment.payment_id)
        if known is not None and known.status == "applied":
            return Applied("unchanged", {"payment_batch": str(known.batch_id)})
        if known is not None and known.status == "echo":
            return Applied("echo", {"payment_id": payment.payment_id})
        if known is not None and known.status == "applying":
            return await self._rounds(known)
        origin = await self._origin(payment)
        if origin is PaymentOrigin.ECHO:
            log.info(
                "shop payment created for a paid state the pipeline posted: not applied to M3",
                extra={"order_key": payment.order_key, "payment_id": payment.payment_id},
            )
            if known is not None:
                await self._write(replace(known, status="echo"))
            return Applied("echo", {"payment_id": payment.payment_id})
        if origin is PaymentOrigin.UNKNOWN:
            if park and known is None:
                await self._write(payment)
            return Applied("waiting", {"why": "paid_state_open"})
        # Judging the origin read the topic to its end: a round another worker fixed or finished since
        # ``known`` was read is seen now, and is finished (or skipped), not planned a second time.
        known = await asyncio.to_thread(self._state.payment, payment.order_key, payment.payment_id)
        if known is not None and known.status == "applied":
            return Applied("unchanged", {"payment_batch": str(known.batch_id)})
        if known is not None and known.status == "applying":
            return await self._rounds(known)
        base = known if known is not None and known.status == "partly_applied" else payment
        planned = await self._plan(base, erp_order_number)
        if planned is None and park:
            if known is None:
                await self._write(payment)
            planned = await self._plan(base, erp_order_number)  # an invoice that came meanwhile
        if planned is None and base.status == "partly_applied":
            left = {"payment_batch": str(base.batch_id), "left": str(base.unposted)}
            if park:  # the payment again: M3 has what it can have of it, the rest waits for invoices
                return Applied("unchanged", left)
            return Applied("waiting", {"why": "no_open_invoice", "left": left["left"]})
        if planned is None:
            return Applied("waiting", {"why": "no_open_invoice"})
        await self._write(planned)
        return await self._rounds(planned)

    async def _origin(self, payment: PaymentProgress) -> PaymentOrigin:
        """The payment's origin by its order's paid-state marks; an open mark is waited for (bounded)."""
        deadline = asyncio.get_running_loop().time() + self._echo_wait_s
        while True:
            marks = await asyncio.to_thread(self._state.paid_state_marks, payment.order_key)
            origin = payment_origin(marks, payment.payment_id)
            if origin is not PaymentOrigin.UNKNOWN or asyncio.get_running_loop().time() >= deadline:
                return origin
            await asyncio.sleep(ECHO_POLL_S)

    async def _plan(self, payment: PaymentProgress, erp_order_number: str) -> PaymentProgress | None:
        link = await asyncio.to_thread(self._state.order_link, payment.order_key)
        orno = link.erp_order_number if link is not None and link.erp_order_number else erp_order_number
        if not orno:
            return None
        balances = await self._m3.invoice_balances(ErpOrderRef(orno))
        return next_round(payment, balances, orno)

    async def _rounds(self, planned: PaymentProgress) -> Applied:
        """Post ``planned`` (an ``applying`` record already written), then, while something is left and
        an invoice of the order is open (one that came while an earlier round was being posted), the
        next rounds; the outcome of the last round, ``written`` when any round was posted now."""
        applied, progress, after = await self._apply(planned)
        any_written = applied.outcome == "written"
        while progress.status == "partly_applied":
            following = next_round(progress, after, progress.erp_order_number)
            if following is None:
                break
            await self._write(following)
            applied, progress, after = await self._apply(following)
            any_written = any_written or applied.outcome == "written"
        return Applied("written" if any_written else "unchanged", applied.facts)

    async def _apply(self, planned: PaymentProgress) -> tuple[Applied, PaymentProgress, list[InvoiceBalance]]:
        ref = ErpOrderRef(planned.erp_order_number)
        balances = await self._m3.invoice_balances(ref)
        customer = next(
            (b.customer_id for b in balances if b.invoice_id == planned.allocations[0].invoice_id), ""
        )
        payment = CustomerPayment(
            batch_id=planned.batch_id,
            customer_id=customer,
            currency=planned.currency,
            paid_on=planned.paid_on,
            reference=planned.reference,
            allocations=planned.allocations,
        )
        try:
            posted = await self._m3.apply_customer_payment(payment, batch_type=self._batch_type)
        except MiBusinessError as exc:
            raise _refusal(exc) from exc
        after = await self._m3.invoice_balances(ref)
        status = payment_status(after)
        datum = payment_status_change(planned, status, after, changed_at=self._clock())
        await self._statuses.emit(datum)
        done = round_posted(planned)
        if done.status == "partly_applied":
            facts = {"order_key": done.order_key, "payment_id": done.payment_id, "left": str(done.unposted)}
            if planned.round_number == 0:
                log.warning(
                    "payment exceeds what the order's invoices have open; the rest waits for later invoices",
                    extra=facts,
                )
            else:
                log.info("payment's remainder applied to a later invoice; some is still left", extra=facts)
        await self._write(done)
        facts = {"payment_batch": str(planned.batch_id), "payment_status": status}
        if done.status == "partly_applied":
            facts["left"] = str(done.unposted)
        return Applied("written" if posted else "unchanged", facts), done, after

    async def _write(self, progress: PaymentProgress) -> None:
        headers = (("correlation_id", progress.correlation_id.encode()),) if progress.correlation_id else ()
        await self._producer.produce_acked(self._links_topic, progress.key, progress.to_json(), headers)
        self._state.remember(progress)


def _refusal(exc: MiBusinessError) -> PipelineError:
    paths = {"PYAM": "amount.amount", "CUCD": "amount.currency", "LPDT": "paid_at", "CKNO": "transaction_id"}
    return m3_rejection(exc, paths)


# -------------------------------------------------------------------------------------- the sinks


class InforPaymentsSink:
    """``canonical.payment.v1`` → applied to the order's M3 invoices, or parked until one exists."""

    name = NAME
    target = TARGET
    sources = (PAYMENTS_TOPIC,)
    record = "Payment"
    coalesce_s: float | None = None

    def __init__(self, reconciler: PaymentReconciler) -> None:
        self._reconciler = reconciler

    def decode(self, datum: AvroDatum, context: SinkContext) -> PaymentProgress | Skip:
        """The payment to apply; Skip what the shop did not record, and zero amounts."""
        return to_payment_progress(datum, context.correlation_id)

    async def apply(self, model: PaymentProgress, context: SinkContext) -> Applied:
        """Apply the payment, or park it until its order has an open invoice."""
        return await self._reconciler.settle(model, park=True)


@dataclass(frozen=True)
class InvoiceArrived:
    """An invoice of a shop order: the moment to apply the payments parked for that order."""

    order_key: str
    invoice_number: str
    erp_order_number: str = ""


class InforInvoicePaymentsSink:
    """``canonical.invoice.v1`` → the payments parked for the invoice's order are applied."""

    name = INVOICES_NAME
    target = TARGET
    sources = (INVOICES_TOPIC,)
    record = "Invoice"
    coalesce_s: float | None = None

    def __init__(self, reconciler: PaymentReconciler, state: PaymentState) -> None:
        self._reconciler = reconciler
        self._state = state

    def decode(self, datum: AvroDatum, context: SinkContext) -> InvoiceArrived | Skip:
        """The order whose payments may now be applied; Skip credit notes (nothing to pay)."""
        if str(datum.get("status")) == "CREDITED" or datum["gross"]["amount"] <= 0:
            return Skip("credit_note")
        return InvoiceArrived(
            order_key=str(datum["order_key"]),
            invoice_number=str(datum["invoice_number"]),
            erp_order_number=str(datum.get("erp_order_number") or ""),
        )

    async def apply(self, model: InvoiceArrived, context: SinkContext) -> Applied:
        """Apply each parked payment of the order; ``no_payment_waiting`` when there is none."""
        waiting = await asyncio.to_thread(self._state.unsettled, model.order_key)
        if not waiting:
            return Applied("no_payment_waiting")
        outcomes = [
            await self._reconciler.settle(payment, park=False, erp_order_number=model.erp_order_number)
            for payment in waiting
        ]
        applied = [o for o in outcomes if o.outcome in ("written", "unchanged")]
        if not applied:
            parked = [o for o in outcomes if o.outcome == "waiting"]
            if not parked:
                return Applied("echo", {"payments": str(len(outcomes))})
            return parked[0]
        return Applied("written", {"payments": str(len(applied)), **(applied[-1].facts or {})})


# ------------------------------------------------------------------------------ wiring (build)


@contextlib.asynccontextmanager
async def _open_state(
    resources: SinkResources, *, stage: str, sync_timeout_s: float
) -> AsyncIterator[StoredPaymentState]:
    index = LinksAndPayments()
    store = ErpLinkStore(
        resources.settings.kafka,
        resources.topic(LINKS_TOPIC),
        client_id_suffix=f"sink-{stage}-state",
        sync_timeout_s=sync_timeout_s,
    )
    store.index = index
    await asyncio.to_thread(store.start)
    try:
        yield StoredPaymentState(store, index)
    finally:
        await asyncio.to_thread(store.close)


@contextlib.asynccontextmanager
async def _reconciler(
    resources: SinkResources, options: InforSinkOptions, *, stage: str
) -> AsyncIterator[tuple[PaymentReconciler, StoredPaymentState]]:
    with registry_client(resources.settings.require_registry()) as registry:
        async with (
            open_m3(resources.settings, options) as m3,
            _open_state(resources, stage=stage, sync_timeout_s=options.links_sync_timeout_s) as state,
        ):
            reconciler = PaymentReconciler(
                m3.adapter,
                state,
                resources.producer,
                AvroCodec(registry, STATUS_RECORD).encode,
                links_topic=resources.topic(LINKS_TOPIC),
                status_topic=resources.topic(STATUS_TOPIC),
            )
            yield reconciler, state


def build_with(
    resources: SinkResources, options: InforSinkOptions
) -> contextlib.AbstractAsyncContextManager[InforPaymentsSink]:
    """:func:`build` with explicit options."""

    @contextlib.asynccontextmanager
    async def opened() -> AsyncIterator[InforPaymentsSink]:
        async with _reconciler(resources, options, stage=NAME) as (reconciler, _):
            yield InforPaymentsSink(reconciler)

    return opened()


def build(resources: SinkResources) -> contextlib.AbstractAsyncContextManager[InforPaymentsSink]:
    """The ``infor-payments`` sink (a :data:`~sinks.base.SinkFactory`)."""
    return build_with(resources, sink_options(resources))


def build_invoices_with(
    resources: SinkResources, options: InforSinkOptions
) -> contextlib.AbstractAsyncContextManager[InforInvoicePaymentsSink]:
    """:func:`build_invoices` with explicit options."""

    @contextlib.asynccontextmanager
    async def opened() -> AsyncIterator[InforInvoicePaymentsSink]:
        async with _reconciler(resources, options, stage=INVOICES_NAME) as (reconciler, state):
            yield InforInvoicePaymentsSink(reconciler, state)

    return opened()


def build_invoices(
    resources: SinkResources,
) -> contextlib.AbstractAsyncContextManager[InforInvoicePaymentsSink]:
    """The ``infor-payment-invoices`` sink (``sinks.infor_payments:build_invoices``)."""
    return build_invoices_with(resources, sink_options(resources))
