"""Echo suppression: a change the pipeline wrote into one system comes back from it and is not sent again.

Customers sync both ways at once: ``infor-customers`` writes the shop's changes into M3 and
``prestashop-customers`` writes M3's changes into the shop. Every such write comes back from the system
written to (a Sync.CustomerPartyMaster BOD or a CRS610MI poll record; a webhook and the poller's
re-read) as a NEW canonical record of that system, under the same ``customer_key``. The sinks already
skip records whose ``meta.source_system`` is their own target; what this module adds is the
recognition of a record that came from the *other* system but only says what the pipeline itself put
there, so that it is not propagated back (a ping-pong, or worse: a stale echo overwriting a newer
change made meanwhile).

**Origin marker or comparison.** Neither system marks the pipeline's writes in what comes back: the
BOD's sender is M3's logical id for every change, the canonical ``Customer`` carries no "changed by"
(M3's CHID is not in the BOD nor mapped by the processor), and PrestaShop keeps no author on a
customer. So the echo is recognised by comparing with what the pipeline last wrote, kept on
``state.erp-links`` (records ``echo:{system}:customer:{customer_key}``, written by the sink that wrote
``system``; format below). (``SourceSystem.PIPELINE`` and ``meta.causation_id`` could carry an origin
marker if a source ever exposes one; :func:`decide` would then not be needed for that source.)

**Facts.** Both sinks compare what a record says in the ERP's terms (:func:`customer_facts`): the name
M3 keeps (the company, else first and last name, compared whole), the e-mail, the phone, the first
address (street compared without spacing or punctuation, since M3 re-wraps it into CUA1-CUA4;
postcode, city, country) and the region. A fact a record does not state (the BOD carries no phone
and no region) says nothing and is never compared. Facts are kept as digests, so the state topic holds
no personal data.

**The decision** (:func:`decide`, pure), per fact, for a record from system S to be written into D:

1. *changed*: only facts that differ from the previous record of S for this key are considered (kept
   in memory; after a restart the record behind the sink's own newest write stands in), so a fact
   the other side changed meanwhile is not re-sent because an unrelated one moved;
2. *origin*: a changed value the pipeline itself wrote into S (within :data:`DEFAULT_WINDOW_S`)
   keeps the origin recorded with that write — where (S or D) and when the value first appeared;
   any other value is a genuine change of S, whose origin is S at the record's ``meta.occurred_at``
   (and never before the origin of the value it replaced, which a coarse clock could claim);
3. a value that came from D is an ``echo``: D holds it, or something newer. Unless this sink wrote
   an older change into D *after* that value appeared there (or may have: the write was under way):
   the two directions crossed (both systems changed the field at once, each write overwrote the
   other's value), and the newer value is written back into D;
4. any other value is written into D unless this sink already put that value there, or its own
   newest write of the fact into D carries a newer origin (a genuine change older than what the sink
   already wrote is ``superseded``: last change wins; a tie goes to the ERP, :data:`PRECEDENCE`).

So a change crosses once and its echo stops at the first sink; when the shop and M3 change the same
field at once, both systems end on the later change, and each sink writes a fact only with a strictly
newer origin (or once more to undo its own crossing write), so the writes per entity stay bounded
by the number of changes. Other facts of the same records go their own way: a shop change of the name
and an M3 change of the e-mail both survive.

Nothing to write is outcome ``echo`` (or ``superseded``, ``no_change``). The sink writes only the
facts the verdict names, and records the write (:meth:`EchoGuard.will_write`, acknowledged) *before*
it calls the target, so the echo can never overtake its record.

Ledger record on ``state.erp-links`` (one writer per system: the sink writing that system)::

    key   echo:{infor|prestashop}:customer:{customer_key}
    value {"system": "INFOR", "entity": "customer", "key": "1:42",
           "writes": [{"facts": {"email": "<digest>", ...},
                       "origins": {"email": [<ms>, "PRESTASHOP", <ms seen>]},
                       "written_at": <ms>, "done_at": <ms>}, ...]}   (newest last, at most 8)

``facts`` are all the facts of the record written, ``origins`` the facts actually sent with the
origin of their value (when, in which system, and when the pipeline first saw it), ``written_at`` and
``done_at`` the pipeline's clock just before the target was called and once it answered (the record
is written twice; a write whose end is unknown counts as having taken effect up to
:data:`WRITE_SLACK_S` later: a re-assert too many is only a no-op at the target). Times of both
systems and the pipeline are compared with each other: this assumes their clocks agree to well under
the time a change takes to cross (NTP). Whole-second clocks (PrestaShop's ``date_upd``, the BOD's
creation time) make ties likely: a change of one field on both sides in the same second goes to the
ERP (:data:`PRECEDENCE`); changes of one system within one second keep the order they arrived in.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final, Protocol, TypeVar

from connectors.infor.adapter import Address as M3Address
from connectors.infor.adapter import Customer as M3Customer
from pipeline.producer import AckedProducer, HeaderList
from processors.erp_links import LINKS_TOPIC, ErpLinkIndex, ErpLinkStore
from schemas.codec import AvroDatum
from sinks.base import SinkResources

log = logging.getLogger(__name__)

INFOR: Final = "INFOR"
PRESTASHOP: Final = "PRESTASHOP"
SYSTEMS: Final = (INFOR, PRESTASHOP)
"""The two systems, spelled as ``meta.source_system``."""

CUSTOMER: Final = "customer"

CUSTOMER_FACTS: Final = ("name", "email", "phone", "address", "region")
"""What a customer record says that the two customer sinks write, in the ERP's terms."""

ADDRESS_FACTS: Final = frozenset({"address", "region", "phone"})
"""The facts the shop keeps on an address (the shop customer has no phone of its own)."""

ECHO_PREFIX: Final = "echo:"
MAX_WRITES: Final = 8
"""Writes remembered per system and entity: enough for the echoes in flight of a busy customer."""
DEFAULT_WINDOW_S: Final = 6 * 3600.0
"""How long a write can still explain an echo (a backlog after an outage included)."""

WRITE_SLACK_S: Final = 60.0
"""How long after it began a write whose end was not recorded may have taken effect (the targets'
timeouts are shorter)."""

OUTCOME_ECHO: Final = "echo"
OUTCOME_NO_CHANGE: Final = "no_change"
OUTCOME_SUPERSEDED: Final = "superseded"


# ------------------------------------------------------------------------------------------ facts

_WHITESPACE = re.compile(r"\s+")
_STREET_NOISE = re.compile(r"[\s,;.\-/]+")
_POSTCODE_NOISE = re.compile(r"[\s-]+")
_PHONE_NOISE = re.compile(r"[^0-9+]+")

Facts = Mapping[str, str]
"""Fact name → digest of its normalised value; only the facts the record states."""


def _text(value: object) -> str:
    return _WHITESPACE.sub(" ", str(value)).strip() if value is not None else ""


def _digest(name: str, value: str) -> str:
    return hashlib.sha256(f"{name}\x00{value}".encode()).hexdigest()[:16]


def customer_fact_values(datum: AvroDatum) -> dict[str, str]:
    """The normalised values a canonical ``Customer`` states, in the ERP's terms (pure, readable).

    ``name`` is what M3 keeps as CUNM (the company, else first and last name) case-folded;
    ``address`` the first address as street (no spacing or punctuation, as M3 re-wraps it),
    postcode (no spacing), city and country; ``region`` its subdivision code; ``phone`` the digits.
    Empty values are left out: a fact a record does not state is not compared.
    """
    company = _text(datum.get("company"))
    person = _text(f"{_text(datum.get('first_name'))} {_text(datum.get('last_name'))}")
    values = {
        "name": (company or person).casefold(),
        "email": _text(datum.get("email")).casefold(),
        "phone": _PHONE_NOISE.sub("", _text(datum.get("phone"))),
    }
    addresses = datum.get("addresses") or []
    if addresses:
        first: Mapping[str, Any] = addresses[0]
        street = _STREET_NOISE.sub("", " ".join(_text(line) for line in first.get("lines") or [])).casefold()
        postcode = _POSTCODE_NOISE.sub("", _text(first.get("postal_code"))).upper()
        city = _text(first.get("city")).casefold()
        country = _text(first.get("country_code")).upper()
        if street or city:
            values["address"] = "|".join((street, postcode, city, country))
        values["region"] = _text(first.get("region_code")).rpartition("-")[2].upper()
        if not values["phone"]:
            values["phone"] = _PHONE_NOISE.sub("", _text(first.get("phone")))
    return {name: value for name, value in values.items() if value}


def customer_facts(datum: AvroDatum) -> dict[str, str]:
    """:func:`customer_fact_values` as digests (what is compared and stored)."""
    return {name: _digest(name, value) for name, value in customer_fact_values(datum).items()}


def occurred_at_ms(datum: AvroDatum) -> int:
    """The record's ``meta.occurred_at`` as epoch milliseconds."""
    moment = datum["meta"]["occurred_at"]
    if isinstance(moment, datetime):
        return int(moment.timestamp() * 1000)
    return int(moment)


# ---------------------------------------------------------------------------------- the decision


PRECEDENCE: Final = {PRESTASHOP: 0, INFOR: 1}
"""Who wins a tie (both systems changed a field in the same millisecond, which whole-second clocks make
likely: PrestaShop's ``date_upd``, the BOD's creation time): the ERP, the customer master's system of
record (see :mod:`sinks.prestashop_customers`)."""


@dataclass(frozen=True)
class Origin:
    """Where and when a value first appeared: the last-change-wins clock of a fact."""

    at_ms: int
    """When the system says the change happened (``meta.occurred_at``)."""
    system: str
    seen_ms: int = 0
    """When the pipeline first saw it: orders the changes one system made within one tick of its clock
    (its records arrive in order)."""

    def rank(self) -> tuple[int, int, int]:
        """The order of origins: the later change wins, a tie goes to :data:`PRECEDENCE`."""
        return self.at_ms, PRECEDENCE.get(self.system, -1), self.seen_ms


@dataclass(frozen=True)
class Write:
    """One write the pipeline made into a system for one entity (see the module docstring)."""

    facts: Facts
    """Every fact of the record written (what the pipeline believes the target holds afterwards)."""
    origins: Mapping[str, Origin]
    """The facts actually sent → the origin of the value sent."""
    written_at_ms: int
    """The pipeline's clock just before the target was called."""
    done_at_ms: int | None = None
    """... and once it answered; None while unknown (in flight, or the sink stopped meanwhile)."""

    @property
    def written(self) -> frozenset[str]:
        """The facts actually sent."""
        return frozenset(self.origins)

    @property
    def landed_by_ms(self) -> int:
        """When the write had taken effect at the latest (:data:`WRITE_SLACK_S` when it never said)."""
        if self.done_at_ms is not None:
            return self.done_at_ms
        return self.written_at_ms + int(WRITE_SLACK_S * 1000)

    def to_json(self) -> dict[str, Any]:
        """The JSON object of this write in a ledger record."""
        return {
            "facts": dict(sorted(self.facts.items())),
            "origins": {name: [o.at_ms, o.system, o.seen_ms] for name, o in sorted(self.origins.items())},
            "written_at": self.written_at_ms,
            "done_at": self.done_at_ms,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Write:
        """A write read back from a ledger record (ValueError/TypeError/KeyError when malformed)."""
        facts, origins = value["facts"], value["origins"]
        if not isinstance(facts, Mapping) or not isinstance(origins, Mapping):
            raise TypeError("facts and origins must be objects")
        return cls(
            facts={str(k): str(v) for k, v in facts.items()},
            origins={str(k): Origin(int(v[0]), str(v[1]), int(v[2])) for k, v in origins.items()},
            written_at_ms=int(value["written_at"]),
            done_at_ms=None if value.get("done_at") is None else int(value["done_at"]),
        )


@dataclass(frozen=True)
class Verdict:
    """What to do with a record from the other system: the facts to write, and why the rest are not."""

    write: Mapping[str, Origin] = field(default_factory=dict)
    """Facts to write into the target → the origin of the value written."""
    echo: frozenset[str] = frozenset()
    """Changed facts that only repeat what the pipeline wrote into the record's system."""
    superseded: frozenset[str] = frozenset()
    """Changed facts older than what this sink last wrote into its target (last change wins)."""

    @property
    def outcome(self) -> str | None:
        """None when something is to be written; else ``echo``, ``superseded`` or ``no_change``."""
        if self.write:
            return None
        if self.echo:
            return OUTCOME_ECHO
        return OUTCOME_SUPERSEDED if self.superseded else OUTCOME_NO_CHANGE


def _newest(writes: Iterable[Write]) -> Write | None:
    found = list(writes)
    return max(found, key=lambda write: write.written_at_ms) if found else None


def decide(
    facts: Facts,
    previous: Facts | None,
    *,
    source: str,
    target: str,
    occurred_at_ms: int,
    into_source: Sequence[Write],
    into_target: Sequence[Write],
    now_ms: int,
    window_ms: int = int(DEFAULT_WINDOW_S * 1000),
) -> Verdict:
    """The verdict for a record of system ``source`` stating ``facts``, which changed there at
    ``occurred_at_ms``, for the sink writing ``target`` (see the module docstring; pure).

    ``previous``: the facts of the previous record of the same system and key; None when unknown, in
    which case the record behind the sink's own newest write stands in (and with no write either,
    every stated fact counts as changed). ``into_source``: the pipeline's writes into the record's own
    system; ``into_target``: this sink's writes into its target.
    """
    if previous is None:
        own_newest = _newest(into_target)
        previous = own_newest.facts if own_newest is not None else None
    changed = [name for name in sorted(facts) if previous is None or previous.get(name) != facts[name]]
    recent = [write for write in into_source if now_ms - write.written_at_ms <= window_ms]
    write: dict[str, Origin] = {}
    echo: set[str] = set()
    superseded: set[str] = set()
    for name in changed:
        value = facts[name]
        explaining = _newest(w for w in recent if name in w.origins and w.facts.get(name) == value)
        origin = explaining.origins[name] if explaining is not None else None
        if origin is None:
            # A change made on top of a value the pipeline knows the origin of (it wrote it into
            # either system) is later than that value, whatever a coarse clock says.
            replaced = previous.get(name) if previous is not None else None
            under = _newest(
                w for w in (*recent, *into_target) if name in w.origins and w.facts.get(name) == replaced
            )
            floor = under.origins[name].at_ms + 1 if under is not None else occurred_at_ms
            origin = Origin(max(occurred_at_ms, floor), source, now_ms)
        own = _newest(w for w in into_target if name in w.origins)
        if own is not None and own.facts.get(name) == value:
            # This sink already put that value into its target.
            (echo if explaining is not None else superseded).add(name)
        elif origin.system == target:
            # The value came from the target itself, which still holds it (or a newer one) unless
            # this sink overwrote it since with an older change: the two directions crossed.
            if (
                own is not None
                and own.origins[name].rank() < origin.rank()
                and origin.at_ms < own.landed_by_ms
            ):
                write[name] = origin
            else:
                echo.add(name)
        elif own is None or own.origins[name].rank() < origin.rank():
            write[name] = origin
        else:
            (echo if explaining is not None else superseded).add(name)
    return Verdict(write, frozenset(echo), frozenset(superseded))


# ------------------------------------------------------------------------------ narrowing writes


def keep_m3_fields(customer: M3Customer, write: Collection[str]) -> M3Customer:
    """``customer`` with the fields of facts not in ``write`` blanked (M3 leaves blank inputs alone).

    ``address`` governs the street lines, postcode, city and country, ``region`` the state (ECAR).
    """
    address = customer.address
    if address is not None:
        has_street = "address" in write
        address = M3Address(
            name=address.name,
            lines=address.lines if has_street else (),
            city=address.city if has_street else "",
            postal_code=address.postal_code if has_street else "",
            country_code=address.country_code if has_street else "",
            state_code=address.state_code if "region" in write else "",
            phone=address.phone if "phone" in write else "",
        )
    return replace(
        customer,
        name=customer.name if "name" in write else "",
        email=customer.email if "email" in write else "",
        phone=customer.phone if "phone" in write else "",
        address=address,
    )


class ShopCustomerModel(Protocol):
    """The fields of the shop customers sink's model that the ERP's facts govern."""

    @property
    def email(self) -> str: ...

    @property
    def last_name(self) -> str: ...

    @property
    def address(self) -> Any: ...


ShopModelT = TypeVar("ShopModelT", bound=ShopCustomerModel)


def keep_shop_fields(model: ShopModelT, write: Collection[str]) -> ShopModelT:
    """The shop customers sink's model with what ``write`` does not name left out (pure).

    The sink changes no e-mail when it is empty, no name when the last name is empty, and no address
    when there is none; the shop keeps phone and region on the address, so any of the address facts
    keeps the whole address.
    """
    changes: dict[str, Any] = {}
    if "email" not in write:
        changes["email"] = ""
    if "name" not in write:
        changes["last_name"] = ""
    if not ADDRESS_FACTS.intersection(write):
        changes["address"] = None
    return replace(model, **changes)  # type: ignore[type-var]


# --------------------------------------------------------------------------------------- ledger


def ledger_key(system: str, entity: str, key: str) -> bytes:
    """The ledger record key of ``system``'s writes for one entity."""
    return f"{ECHO_PREFIX}{system.lower()}:{entity}:{key}".encode()


def ledger_record(system: str, entity: str, key: str, writes: Sequence[Write]) -> tuple[bytes, bytes]:
    """(key, value) of the ledger record of ``system``'s writes for one entity."""
    value = {"system": system, "entity": entity, "key": key, "writes": [w.to_json() for w in writes]}
    return ledger_key(system, entity, key), json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def parse_ledger(key: bytes, value: bytes | None) -> tuple[tuple[str, str, str], tuple[Write, ...]] | None:
    """((system, entity, key), writes) of a ledger record; writes empty for a tombstone; None for a record
    that is not one (never raises: the topic is shared, and an unreadable record only costs an echo)."""
    name = key.decode("utf-8", "replace")
    if not name.startswith(ECHO_PREFIX):
        return None
    system, _, rest = name[len(ECHO_PREFIX) :].partition(":")
    entity, _, entity_key = rest.partition(":")
    if system.upper() not in SYSTEMS or not entity or not entity_key:
        return None
    where = (system.upper(), entity, entity_key)
    if value is None:
        return where, ()
    try:
        decoded = json.loads(value)
        writes = tuple(Write.from_json(item) for item in decoded["writes"])
    except (ValueError, TypeError, KeyError, AttributeError):
        log.warning("unreadable echo ledger record ignored", extra={"ledger_key": name})
        return None
    return where, writes


class EchoIndex(ErpLinkIndex):
    """The links index that also keeps the echo ledger records of ``state.erp-links`` in memory."""

    def __init__(self) -> None:
        super().__init__()
        self._ledger_lock = threading.Lock()
        self._writes: dict[tuple[str, str, str], tuple[Write, ...]] = {}

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """Apply one record: a ledger record here, anything else as the links index does."""
        if key is not None and key.startswith(ECHO_PREFIX.encode()):
            parsed = parse_ledger(key, value)
            if parsed is not None:
                self.remember(*parsed)
            return
        super().apply(key, value)

    def remember(self, where: tuple[str, str, str], writes: Sequence[Write]) -> None:
        """Hold ``writes`` as the ledger of ``where`` = (system, entity, key)."""
        with self._ledger_lock:
            if writes:
                self._writes[where] = tuple(writes)
            else:
                self._writes.pop(where, None)

    def writes(self, system: str, entity: str, key: str) -> tuple[Write, ...]:
        """The remembered writes of ``system`` for one entity, oldest first."""
        with self._ledger_lock:
            return self._writes.get((system, entity, key), ())


class EchoLedger(Protocol):
    """Where the guard keeps and finds the pipeline's writes (:class:`StoredEchoLedger` on Kafka)."""

    def ready(self) -> None:
        """Block until the ledger is loaded (RetryableError while Kafka or the topic is unavailable)."""
        ...

    def writes(self, system: str, entity: str, key: str) -> tuple[Write, ...]:
        """The writes known now (no waiting)."""
        ...

    def catch_up(self) -> None:
        """Block until every ledger record on the topic when called is known (RetryableError on timeout)."""
        ...

    async def record(self, system: str, entity: str, key: str, write: Write, correlation_id: str) -> None:
        """Add ``write`` (or update the one begun at the same ``written_at_ms``); returns only after the
        broker acknowledged the record."""
        ...


class StoredEchoLedger:
    """:class:`EchoLedger` on ``state.erp-links``: an :class:`EchoIndex` followed by an ErpLinkStore.

    The topic is read on first use (:meth:`ready`), not when the sink is built: a record that meets an
    unreadable topic is retried by the runner like any other target outage, and building a sink needs
    no broker.
    """

    def __init__(self, store: ErpLinkStore, producer: AckedProducer) -> None:
        if not isinstance(store.index, EchoIndex):
            raise TypeError("the store must be built with an EchoIndex (see open_echo_guard)")
        self._store = store
        self._index: EchoIndex = store.index
        self._producer = producer
        self._started = False
        self._starting = threading.Lock()

    def ready(self) -> None:
        """See :class:`EchoLedger`: the first call reads the topic to its end and starts following it."""
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

    def writes(self, system: str, entity: str, key: str) -> tuple[Write, ...]:
        """See :class:`EchoLedger`."""
        return self._index.writes(system, entity, key)

    def catch_up(self) -> None:
        """See :class:`EchoLedger`."""
        self._store.sync()

    async def record(self, system: str, entity: str, key: str, write: Write, correlation_id: str) -> None:
        """See :class:`EchoLedger`; the record keeps the newest :data:`MAX_WRITES` writes."""
        kept = [w for w in self._index.writes(system, entity, key) if w.written_at_ms != write.written_at_ms]
        writes = (*kept, write)[-MAX_WRITES:]
        record_key, value = ledger_record(system, entity, key, writes)
        headers: HeaderList = (("correlation_id", correlation_id.encode()),) if correlation_id else ()
        await self._producer.produce_acked(self._store.topic, record_key, value, headers)
        self._index.remember((system, entity, key), writes)


# ---------------------------------------------------------------------------------------- guard


@dataclass(frozen=True)
class EchoSubject:
    """What the guard needs of a record (computed in ``decode``, screened in ``apply``)."""

    key: str
    facts: Facts
    occurred_at_ms: int


@dataclass(frozen=True)
class Screening:
    """A subject with its verdict; ``skip`` when the sink has nothing to write."""

    subject: EchoSubject
    verdict: Verdict

    @property
    def skip(self) -> bool:
        """True when nothing is to be written (outcome ``echo`` or ``no_change``)."""
        return self.verdict.outcome is not None

    @property
    def outcome(self) -> str:
        """The sink's outcome label when skipped."""
        return self.verdict.outcome or "written"


class EchoGuard:
    """One sink's echo screening: the previous record per key, and the ledger of both systems' writes.

    ``target`` is the system the sink writes (``INFOR`` or ``PRESTASHOP``); the records it screens come
    from the other one. The previous record per key is kept in memory: after a restart the first
    record of a key compares every fact (the sinks' own compare-with-target keeps that idempotent).
    """

    def __init__(
        self,
        ledger: EchoLedger,
        *,
        target: str,
        stage: str,
        entity: str = CUSTOMER,
        window_s: float = DEFAULT_WINDOW_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if target not in SYSTEMS:
            raise ValueError(f"target must be one of {SYSTEMS}")
        self.target = target
        self.source = INFOR if target == PRESTASHOP else PRESTASHOP
        self.stage = stage
        self._ledger = ledger
        self._entity = entity
        self._window_ms = int(window_s * 1000)
        self._clock = clock
        self._previous: dict[str, Facts] = {}
        self._begun: dict[str, Write] = {}

    def subject(self, datum: AvroDatum) -> EchoSubject:
        """The subject of a canonical ``Customer`` datum (pure)."""
        return EchoSubject(str(datum["customer_key"]), customer_facts(datum), occurred_at_ms(datum))

    def _decide(self, subject: EchoSubject) -> Verdict:
        return decide(
            subject.facts,
            self._previous.get(subject.key),
            source=self.source,
            target=self.target,
            occurred_at_ms=subject.occurred_at_ms,
            into_source=self._ledger.writes(self.source, self._entity, subject.key),
            into_target=self._ledger.writes(self.target, self._entity, subject.key),
            now_ms=int(self._clock() * 1000),
            window_ms=self._window_ms,
        )

    async def screen(self, subject: EchoSubject) -> Screening:
        """The verdict on ``subject``. A fact that looks genuine is checked again once the ledger has
        read everything on the topic: the other sink's record of its write may just be arriving."""
        await asyncio.to_thread(self._ledger.ready)
        verdict = self._decide(subject)
        if verdict.write or verdict.superseded:
            await asyncio.to_thread(self._ledger.catch_up)
            verdict = self._decide(subject)
        log.info(
            "echo screened",
            extra={
                "sink": self.stage,
                "customer_key": subject.key,
                "echo_outcome": verdict.outcome or "write",
                "write": ",".join(sorted(verdict.write)),
                "echo": ",".join(sorted(verdict.echo)),
                "superseded": ",".join(sorted(verdict.superseded)),
            },
        )
        return Screening(subject, verdict)

    async def will_write(self, screening: Screening, correlation_id: str = "") -> None:
        """Record the write about to be made (acknowledged before the target is called)."""
        subject = screening.subject
        write = Write(
            facts=subject.facts,
            origins=dict(screening.verdict.write),
            written_at_ms=int(self._clock() * 1000),
        )
        await self._ledger.record(self.target, self._entity, subject.key, write, correlation_id)
        self._begun[subject.key] = write

    async def written(self, screening: Screening, correlation_id: str = "") -> None:
        """The write :meth:`will_write` announced was made: note when, and :meth:`handled` the record."""
        begun = self._begun.pop(screening.subject.key, None)
        if begun is not None:
            done = replace(begun, done_at_ms=int(self._clock() * 1000))
            await self._ledger.record(self.target, self._entity, screening.subject.key, done, correlation_id)
        self.handled(screening)

    def handled(self, screening: Screening) -> None:
        """The record is done (written, unchanged or echo): the next one of its key compares with it."""
        self._previous[screening.subject.key] = screening.subject.facts


@contextlib.asynccontextmanager
async def open_echo_guard(
    resources: SinkResources, *, target: str, stage: str, sync_timeout_s: float = 10.0
) -> AsyncIterator[EchoGuard]:
    """A guard on ``state.erp-links`` (read to its end on first use, then followed); closed on exit."""
    store = ErpLinkStore(
        resources.settings.kafka,
        resources.topic(LINKS_TOPIC),
        client_id_suffix=f"sink-{stage}-echo",
        sync_timeout_s=sync_timeout_s,
    )
    store.index = EchoIndex()
    ledger = StoredEchoLedger(store, resources.producer)
    try:
        yield EchoGuard(ledger, target=target, stage=stage)
    finally:
        await asyncio.to_thread(ledger.close)


__all__ = [
    "ADDRESS_FACTS",
    "CUSTOMER_FACTS",
    "INFOR",
    "MAX_WRITES",
    "PRESTASHOP",
    "EchoGuard",
    "EchoIndex",
    "EchoLedger",
    "EchoSubject",
    "Origin",
    "Screening",
    "StoredEchoLedger",
    "Verdict",
    "Write",
    "customer_fact_values",
    "customer_facts",
    "decide",
    "keep_m3_fields",
    "keep_shop_fields",
    "ledger_record",
    "open_echo_guard",
    "parse_ledger",
]
