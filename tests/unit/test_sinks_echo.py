"""Echo suppression (sinks/echo.py): the facts two systems' records state, the pure decision, the ledger
records, the guard, and the shop customers sink screening with it against the PrestaShop sandbox.

The strongest evidence of the decision is :func:`test_random_interleavings_converge_with_bounded_writes`:
two systems, both sinks, users editing both sides, ingestion and sink lag, duplicated deliveries and
re-reads that see only the newest state, in a few thousand seeded interleavings.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import pytest

from connectors.infor.adapter import Address as M3Address
from connectors.infor.adapter import Customer as M3Customer
from pipeline.records import SourceRecord
from processors import infor_customers
from processors.erp_links import CustomerLink, ErpLinkIndex, customer_link_record
from processors.runner import FlowContext
from sandbox.infor.bod import BodContext, customer_party_master
from sandbox.infor.m3_state import Customer as SandboxCustomer
from sinks.base import Applied
from sinks.echo import (
    INFOR,
    MAX_WRITES,
    PRESTASHOP,
    EchoGuard,
    EchoIndex,
    Origin,
    Verdict,
    Write,
    customer_fact_values,
    customer_facts,
    decide,
    keep_m3_fields,
    keep_shop_fields,
    ledger_record,
    parse_ledger,
)
from sinks.infor_customers import to_customer_upsert
from sinks.prestashop_customers import AddressMaster, CustomerMaster, CustomerSink
from tests.unit.test_sinks_prestashop_support import (
    SHOP_ID,
    Wire,
    admin,
    context,
    datum,
    rules,
    running_shop,
    sink_client,
)

pytestmark = pytest.mark.timeout(60)

NOW = 1_800_000_000_000
HOUR = 3_600_000


# ------------------------------------------------------------------------------------------ facts


def _shop_record(**fields: Any) -> dict[str, Any]:
    return datum("Customer", "registered-fr", **fields)


def _echo_through_m3(shop_record: dict[str, Any], *, via: str) -> dict[str, Any]:
    """What comes back when the Infor sink writes ``shop_record`` into M3: the M3 customer the sink
    sends, stored as the sandbox stores it, published as a Sync BOD (or read as a CRS610MI record),
    and mapped by the Infor customers processor, for a linked customer."""
    sent = to_customer_upsert(shop_record, rules()).customer
    assert sent.address is not None
    lines = (*sent.address.lines, "", "", "", "")
    stored = SandboxCustomer(
        cono=100,
        cuno=sent.customer_id,
        cunm=sent.name,
        cua1=lines[0],
        cua2=lines[1],
        cua3=lines[2],
        cua4=lines[3],
        pono=sent.address.postal_code,
        town=sent.address.city,
        cscd=sent.address.country_code,
        ecar=sent.address.state_code,
        phno=sent.phone,
        mail=sent.email,
        lmts=1_714_300_000_000,
    )
    if via == "bod":
        raw = customer_party_master(BodContext("ACME_TST", datetime.now(UTC)), stored, 3, "Change").xml
    else:
        record = {name.upper(): str(value) for name, value in vars(stored).items()}
        raw = json.dumps(record).encode()
    links = ErpLinkIndex()
    links.link_customer(CustomerLink(str(shop_record["customer_key"]), "100", sent.customer_id))
    event = infor_customers.decode(raw, (), links)
    source = SourceRecord(topic="raw.infor.customers", partition=0, offset=0, key=b"k", value=raw)
    context = FlowContext(record=source, correlation_id="c", source_event_id="e", rules=rules())
    echoed = infor_customers.to_customer(event, rules(), context)
    assert echoed is not None
    return echoed


def test_a_shop_record_and_its_echo_from_m3_state_the_same_facts() -> None:
    shop = _shop_record()
    by_bod = _echo_through_m3(shop, via="bod")
    by_poll = _echo_through_m3(shop, via="mi")

    assert (by_bod["meta"]["source_system"], by_bod["customer_key"]) == ("INFOR", shop["customer_key"])
    stated = customer_fact_values(shop)
    assert set(stated) == {"name", "email", "phone", "address"}  # a French address has no region
    # The BOD carries no phone: the echo states less, never something else.
    assert customer_fact_values(by_bod) == {k: v for k, v in stated.items() if k != "phone"}
    assert customer_fact_values(by_poll) == stated
    assert stated["address"] == "12ruedeslilasbâtimentb3eétage|69003|lyon|FR"


def test_facts_say_what_m3_keeps_and_store_no_personal_data() -> None:
    person = customer_fact_values(_shop_record(first_name=" Camille ", last_name="DURAND"))
    company = customer_fact_values(_shop_record(company="Durand & Fils"))
    assert person["name"] == "camille durand"
    assert company["name"] == "durand & fils"  # M3's CUNM is the company when there is one

    facts = customer_facts(_shop_record())
    _, value = ledger_record(
        INFOR, "customer", "1:318", [Write(facts, {"email": Origin(NOW, SHOP, NOW)}, NOW)]
    )
    assert b"camille" not in value.lower()
    assert b"lilas" not in value.lower()
    assert set(facts) == {"name", "email", "phone", "address"}


def test_a_re_wrapped_street_is_the_same_street() -> None:
    one = customer_fact_values(_shop_record(addresses=[_address(["12 rue des Lilas, Bâtiment B"])]))
    two = customer_fact_values(_shop_record(addresses=[_address(["12 rue des", "Lilas Bâtiment B"])]))
    moved = customer_fact_values(_shop_record(addresses=[_address(["14 rue des Lilas"])]))
    assert one["address"] == two["address"] != moved["address"]


def _address(lines: list[str]) -> dict[str, Any]:
    base = dict(_shop_record()["addresses"][0])
    base["lines"] = lines
    return base


# --------------------------------------------------------------------------------- the decision


SHOP, ERP = PRESTASHOP, INFOR


def _write(facts: Mapping[str, str], origins: Mapping[str, Origin], at: int) -> Write:
    return Write(dict(facts), dict(origins), at)


def _at_erp(
    facts: Mapping[str, str],
    previous: Mapping[str, str] | None,
    *,
    occurred: int = NOW,
    into_source: Sequence[Write] = (),
    into_target: Sequence[Write] = (),
    now: int = NOW,
    window_ms: int = 6 * HOUR,
) -> Verdict:
    """The Infor customers sink's verdict on a shop record."""
    return decide(
        facts,
        previous,
        source=SHOP,
        target=ERP,
        occurred_at_ms=occurred,
        into_source=into_source,
        into_target=into_target,
        now_ms=now,
        window_ms=window_ms,
    )


def _at_shop(
    facts: Mapping[str, str],
    previous: Mapping[str, str] | None,
    *,
    occurred: int,
    into_source: Sequence[Write],
    into_target: Sequence[Write],
    now: int,
) -> Verdict:
    """The shop customers sink's verdict on an M3 record."""
    return decide(
        facts,
        previous,
        source=ERP,
        target=SHOP,
        occurred_at_ms=occurred,
        into_source=into_source,
        into_target=into_target,
        now_ms=now,
    )


def test_a_genuine_change_is_written_with_its_own_system_and_time_as_origin() -> None:
    verdict = _at_erp({"name": "b", "email": "e"}, {"name": "a", "email": "e"})
    assert verdict == Verdict(write={"name": Origin(NOW, SHOP, NOW)})
    assert verdict.outcome is None


def test_a_value_the_pipeline_wrote_into_the_source_is_an_echo() -> None:
    # The shop sink wrote M3's new name into the shop; the shop's record of it reaches the Infor sink,
    # whose own last write into M3 (the first sync) is older than that M3 change.
    first_sync = _write({"name": "a"}, {"name": Origin(NOW - HOUR, SHOP)}, NOW - HOUR + 900)
    shop_sink_wrote = _write({"name": "b"}, {"name": Origin(NOW - 5_000, ERP)}, NOW - 4_000)
    verdict = _at_erp(
        {"name": "b", "email": "e"},
        {"name": "a", "email": "e"},
        occurred=NOW - 3_000,
        into_source=[shop_sink_wrote],
        into_target=[first_sync],
    )
    assert verdict == Verdict(echo=frozenset({"name"}))
    assert verdict.outcome == "echo"


def test_only_changed_and_stated_facts_count() -> None:
    # The phone is not stated (a BOD has none) and the e-mail did not change: neither is compared.
    verdict = _at_erp({"name": "a", "email": "e"}, {"name": "a", "email": "e", "phone": "1"})
    assert verdict == Verdict()
    assert verdict.outcome == "no_change"


def test_without_a_previous_record_the_record_behind_the_own_newest_write_stands_in() -> None:
    own = _write({"name": "a", "email": "e"}, {"name": Origin(NOW - HOUR, SHOP)}, NOW - HOUR)
    assert _at_erp({"name": "a", "email": "f"}, None, into_target=[own]) == Verdict(
        write={"email": Origin(NOW, SHOP, NOW)}
    )
    assert _at_erp({"name": "a", "email": "f"}, None) == Verdict(
        write={"name": Origin(NOW, SHOP, NOW), "email": Origin(NOW, SHOP, NOW)}
    )


def test_a_write_older_than_the_window_explains_nothing() -> None:
    old = _write({"name": "b"}, {"name": Origin(NOW - 3 * HOUR, ERP)}, NOW - 3 * HOUR)
    late = _at_erp({"name": "b"}, {"name": "a"}, into_source=[old], window_ms=HOUR)
    assert late == Verdict(write={"name": Origin(NOW, SHOP, NOW)})
    assert _at_erp({"name": "b"}, {"name": "a"}, into_source=[old], window_ms=4 * HOUR).outcome == "echo"


def test_crossing_changes_of_one_field_end_on_the_later_one_on_both_sides() -> None:
    # t=10: the shop sets the e-mail to S; t=20: M3 sets it to M. The Infor sink wrote S into M3 at
    # t=30 (overwriting the newer M), the shop sink wrote M into the shop at t=25.
    shop_sink_wrote = _write({"email": "M"}, {"email": Origin(20, ERP)}, 25)
    infor_sink_wrote = _write({"email": "S"}, {"email": Origin(10, SHOP)}, 30)

    # The echo of S from M3 reaches the shop sink: S is older than the M it wrote there: no write.
    at_shop = _at_shop(
        {"email": "S"},
        {"email": "M"},
        occurred=30,
        into_source=[infor_sink_wrote],
        into_target=[shop_sink_wrote],
        now=40,
    )
    assert at_shop == Verdict(echo=frozenset({"email"}))
    # The echo of M from the shop reaches the Infor sink: M came from M3, but the sink overwrote it
    # there afterwards with the older S: M goes back into M3, with the origin of M3's own change.
    at_m3 = _at_erp(
        {"email": "M"},
        {"email": "S"},
        occurred=26,
        into_source=[shop_sink_wrote],
        into_target=[infor_sink_wrote],
        now=40,
    )
    assert at_m3 == Verdict(write={"email": Origin(20, ERP)})
    # ... and M3's record of that stops at the shop sink, which had already written M there.
    rewritten = _write({"email": "M"}, {"email": Origin(20, ERP)}, 41)
    again = _at_shop(
        {"email": "M"},
        {"email": "S"},
        occurred=42,
        into_source=[infor_sink_wrote, rewritten],
        into_target=[shop_sink_wrote],
        now=50,
    )
    assert again.outcome == "echo"


def test_a_write_still_under_way_when_the_target_changed_may_have_overwritten_it() -> None:
    # The Infor sink began writing the shop's S into M3 at t=100 (origin: the shop at t=90); M3's own
    # change M (t=150) reached the shop meanwhile. Did S land before or after M? Only the end tells.
    shop_sink_wrote = _write({"email": "M"}, {"email": Origin(150, ERP)}, 160)
    kwargs: dict[str, Any] = {"occurred": 170, "into_source": [shop_sink_wrote], "now": 180}
    began = Write({"email": "S"}, {"email": Origin(90, SHOP)}, 100)  # no end recorded: may be late
    assert _at_erp({"email": "M"}, {"email": "S"}, into_target=[began], **kwargs).write == {
        "email": Origin(150, ERP)
    }
    ended_before = replace(began, done_at_ms=120)  # S landed before M3's change: M3 holds M
    assert _at_erp({"email": "M"}, {"email": "S"}, into_target=[ended_before], **kwargs).outcome == "echo"
    ended_after = replace(began, done_at_ms=155)  # S landed after it: M goes back
    assert _at_erp({"email": "M"}, {"email": "S"}, into_target=[ended_after], **kwargs).write


def test_a_genuine_change_older_than_the_sinks_last_write_is_superseded() -> None:
    newer = _write({"name": "later"}, {"name": Origin(50, SHOP)}, 55)
    verdict = _at_erp({"name": "earlier"}, {"name": "a"}, occurred=40, into_target=[newer], now=60)
    assert verdict == Verdict(superseded=frozenset({"name"}))
    assert verdict.outcome == "superseded"


# ------------------------------------------------------------------------ two systems, both sinks

FIELDS = ("name", "email", "address")


@dataclass
class _World:
    """Two systems holding one customer's facts, what each emits, and the two sinks between them."""

    rng: random.Random
    coalesce: bool
    grain: int = 1
    """Records carry their change time rounded down to this many ticks (whole-second clocks: ties)."""
    clock: int = 0
    state: dict[str, dict[str, str]] = field(default_factory=dict)
    emitted: dict[str, list[tuple[str, dict[str, str], int]]] = field(default_factory=dict)
    stream: list[tuple[str, dict[str, str], int]] = field(default_factory=list)
    position: dict[str, int] = field(default_factory=dict)
    previous: dict[str, dict[str, str]] = field(default_factory=dict)
    ledger: dict[str, list[Write]] = field(default_factory=dict)
    writes: dict[str, int] = field(default_factory=dict)
    last_edit: dict[str, str] = field(default_factory=dict)
    decision: Callable[..., Verdict] = decide
    """What the sinks decide with (the control swaps in a naive one)."""

    def __post_init__(self) -> None:
        initial = {name: f"{name}-0" for name in FIELDS}
        self.state = {PRESTASHOP: dict(initial), INFOR: dict(initial)}
        self.emitted = {PRESTASHOP: [], INFOR: []}
        self.position = {PRESTASHOP: 0, INFOR: 0}
        # Synced before the run: each sink remembers the last record it saw of the other system.
        self.previous = {PRESTASHOP: dict(initial), INFOR: dict(initial)}
        self.ledger = {PRESTASHOP: [], INFOR: []}
        self.writes = {PRESTASHOP: 0, INFOR: 0}
        self.last_edit = dict(initial)

    def tick(self) -> int:
        self.clock += 1
        return self.clock

    def change(self, system: str, values: Mapping[str, str]) -> bool:
        """Change ``system``; a real change emits a record of its whole state."""
        moved = {name: value for name, value in values.items() if self.state[system][name] != value}
        self.state[system].update(moved)
        if moved:
            at = self.tick()
            self.emitted[system].append((system, dict(self.state[system]), at - at % self.grain))
        return bool(moved)

    def ingest(self, system: str) -> None:
        """The next record of ``system`` onto the shared canonical stream (a re-read may see only the
        newest state; a delivery may come twice)."""
        queue = self.emitted[system]
        draw = self.rng.random()
        if self.coalesce and draw < 0.2 and len(queue) > 1:
            record = queue[-1]
            queue.clear()
        else:
            record = queue.pop(0)
        self.stream.append(record)
        if self.coalesce and draw > 0.9:
            self.stream.append(record)

    def sink(self, target: str) -> None:
        """The sink writing ``target`` handles its next record of the stream."""
        source = INFOR if target == PRESTASHOP else PRESTASHOP
        system, facts, occurred = self.stream[self.position[target]]
        self.position[target] += 1
        if system == target:
            return
        verdict = self.decision(
            facts,
            self.previous[target],
            source=source,
            target=target,
            occurred_at_ms=occurred,
            into_source=self.ledger[source],
            into_target=self.ledger[target],
            now_ms=self.clock,
        )
        self.previous[target] = facts
        if verdict.write:
            self.writes[target] += 1  # every write the sink decides, also those the target already had
            self.ledger[target].append(Write(dict(facts), dict(verdict.write), self.tick()))
            self.change(target, {name: facts[name] for name in verdict.write})

    def run(self, edits: int, *, max_moves: int = 100_000) -> None:
        left = edits
        for _ in range(max_moves):
            moves: list[Callable[[], None]] = []
            if left:
                moves.append(self.edit)
            for system in (PRESTASHOP, INFOR):
                if self.emitted[system]:
                    moves.append(functools.partial(self.ingest, system))
                if self.position[system] < len(self.stream):
                    moves.append(functools.partial(self.sink, system))
            if not moves:
                return
            move = self.rng.choice(moves)
            if move == self.edit:
                left -= 1
            move()
        raise AssertionError("no quiescence: the sinks kept writing")

    def edit(self) -> None:
        side = self.rng.choice((PRESTASHOP, INFOR))
        name = self.rng.choice(FIELDS)
        value = f"{name}-{side}-{self.clock}"
        if self.change(side, {name: value}):
            self.last_edit[name] = value


@pytest.mark.parametrize(
    ("coalesce", "grain"),
    [(False, 1), (True, 1), (False, 5), (True, 5)],
    ids=["every-record", "re-reads-and-duplicates", "coarse-clocks", "coarse-clocks-re-reads"],
)
def test_random_interleavings_converge_with_bounded_writes(coalesce: bool, grain: int) -> None:
    edits = 8
    worst = 0
    for seed in range(800):
        world = _World(random.Random(seed), coalesce, grain)
        world.run(edits)
        assert world.state[PRESTASHOP] == world.state[INFOR], f"seed {seed} diverged"
        if not coalesce and grain == 1:
            # Every change was seen: the later change of each field wins, in both systems.
            assert world.state[PRESTASHOP] == world.last_edit, f"seed {seed}: not the last change"
        worst = max(worst, sum(world.writes.values()))
    # Each edit crosses once; crossing edits of one field cost at most one more write each.
    assert worst <= 2 * edits


def _write_what_changed(facts: Mapping[str, str], previous: Mapping[str, str] | None, **kw: Any) -> Verdict:
    """A sink without echo decision: every changed fact is written."""
    changed = [name for name in facts if previous is None or previous.get(name) != facts[name]]
    return Verdict(write={name: Origin(kw["occurred_at_ms"], kw["source"]) for name in changed})


def test_the_same_world_without_the_decision_never_settles() -> None:
    """The control: the simulation can fail. Sinks that write whatever changed keep bouncing changes."""
    endless = 0
    for seed in range(20):
        world = _World(random.Random(seed), coalesce=False, decision=_write_what_changed)
        with contextlib.suppress(AssertionError):
            world.run(8, max_moves=2_000)  # the guarded world settles within ~200
            continue
        endless += 1
    assert endless >= 15


# ------------------------------------------------------------------------------------- ledger


def test_ledger_records_round_trip_and_share_the_links_topic() -> None:
    writes = [
        _write({"email": "d1"}, {"email": Origin(NOW, SHOP, NOW)}, NOW),
        _write({"name": "d2"}, {"name": Origin(NOW, ERP)}, NOW + 1),
    ]
    key, value = ledger_record(INFOR, "customer", "1:42", writes)
    assert key == b"echo:infor:customer:1:42"
    assert parse_ledger(key, value) == ((INFOR, "customer", "1:42"), tuple(writes))
    assert parse_ledger(key, None) == ((INFOR, "customer", "1:42"), ())
    assert parse_ledger(b"echo:infor:customer:1:42", b"{not json") is None
    assert parse_ledger(b"echo:sap:customer:1:42", value) is None
    assert parse_ledger(b"customer:1:42", value) is None

    index = EchoIndex()
    index.apply(key, value)
    index.apply(*customer_link_record(CustomerLink("1:42", "100", "PS000042")))
    assert index.writes(INFOR, "customer", "1:42") == tuple(writes)
    assert index.writes(PRESTASHOP, "customer", "1:42") == ()
    assert index.by_erp_customer("100", "PS000042") == "1:42"  # links still work on the same index
    index.apply(key, None)
    assert index.writes(INFOR, "customer", "1:42") == ()


# ---------------------------------------------------------------------------------- narrowing


def test_only_the_facts_to_write_reach_m3() -> None:
    customer = M3Customer(
        customer_id="PS000042",
        name="Jane Doe",
        address=M3Address("Jane Doe", ("1 Main St",), "Paris", "75002", "FR", "IDF", "+331"),
        email="jane@example.org",
        phone="+331",
    )
    kept = keep_m3_fields(customer, {"email"})
    assert (kept.name, kept.email, kept.phone) == ("", "jane@example.org", "")
    assert kept.address is not None
    assert (kept.address.lines, kept.address.city, kept.address.state_code) == ((), "", "")
    assert keep_m3_fields(customer, {"name", "email", "phone", "address", "region"}) == customer


def test_only_the_facts_to_write_reach_the_shop() -> None:
    address = AddressMaster("Jane", "Doe", None, ("1 Main St",), "75002", "Paris", None, "FR", "+331", None)
    model = CustomerMaster("1:42", 42, "jane@example.org", "Jane", "Doe", None, address)
    assert keep_shop_fields(model, {"name"}) == replace(model, email="", address=None)
    assert keep_shop_fields(model, {"phone"}) == replace(model, email="", last_name="")


# -------------------------------------------------------------------------------------- guard


@dataclass
class MemoryLedger:
    """An in-memory :class:`~sinks.echo.EchoLedger` that notes the order of events."""

    log: list[str] = field(default_factory=list)
    held: dict[tuple[str, str, str], list[Write]] = field(default_factory=dict)
    late: dict[tuple[str, str, str], list[Write]] = field(default_factory=dict)
    """Writes another process made that this one only sees after catching up."""

    def ready(self) -> None:
        self.log.append("ready")

    def writes(self, system: str, entity: str, key: str) -> tuple[Write, ...]:
        return tuple(self.held.get((system, entity, key), ())[-MAX_WRITES:])

    def catch_up(self) -> None:
        self.log.append("catch_up")
        for where, writes in self.late.items():
            self.held.setdefault(where, []).extend(writes)
        self.late.clear()

    async def record(self, system: str, entity: str, key: str, write: Write, correlation_id: str) -> None:
        self.log.append(f"record {system}")
        kept = [w for w in self.held.get((system, entity, key), []) if w.written_at_ms != write.written_at_ms]
        self.held[(system, entity, key)] = [*kept, write]


def _from_m3(**fields: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"company": None, "phone": None}
    values.update(fields)
    return datum("Customer", "b2b-from-erp", **values)


def test_the_guard_catches_up_before_calling_a_change_genuine() -> None:
    async def scenario() -> None:
        ledger = MemoryLedger()
        guard = EchoGuard(ledger, target=PRESTASHOP, stage="test", clock=lambda: NOW / 1000)
        first = guard.subject(_from_m3(email="a@example.org"))
        echoed = guard.subject(_from_m3(email="b@example.org"))
        guard.handled(await guard.screen(first))
        # The Infor sink (another process) wrote b@ into M3; its ledger record is not read yet.
        wrote = Write(echoed.facts, {"email": Origin(NOW - 10, PRESTASHOP)}, NOW - 5)
        ledger.late[(INFOR, "customer", echoed.key)] = [wrote]
        ledger.log.clear()
        screening = await guard.screen(echoed)
        assert screening.skip
        assert screening.outcome == "echo"
        assert ledger.log == ["ready", "catch_up"]

    asyncio.run(scenario())


# --------------------------------------------------------------------- the shop sink, screened


@pytest.fixture(scope="module")
def shop() -> Any:
    with running_shop("8.1.7") as server:
        yield server


def _linked(row: Mapping[str, Any], **fields: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "customer_key": f"{SHOP_ID}:{row['id']}",
        "email": row["email"],
        "first_name": row["firstname"],
        "last_name": row["lastname"],
        "company": None,
        "phone": None,
        "addresses": [],
        "external_ids": {"infor": f"PS{int(row['id']):06d}", "prestashop": str(row["id"])},
    }
    values.update(fields)
    return datum(
        "Customer",
        "b2b-from-erp",
        meta={"occurred_at": datetime.now(UTC).isoformat(timespec="milliseconds")},
        **values,
    )


def test_the_shop_sink_skips_an_echo_and_writes_only_a_genuine_fact(shop: Any) -> None:
    async def scenario() -> tuple[Applied, list[tuple[str, str]], Applied, list[tuple[str, str]], Any, Any]:
        wire = Wire()
        ledger = MemoryLedger()
        async with admin(shop) as a, sink_client(shop, wire) as client:
            row = await a.row("customers", 5)
            guard = EchoGuard(ledger, target=PRESTASHOP, stage="prestashop-customers")
            sink = CustomerSink(client, shop_id=SHOP_ID, echo=guard)
            # Seen before: M3 had the shop's name. Then the Infor sink wrote a new last name into M3...
            before = _linked(row)
            guard.handled(await guard.screen(guard.subject(before)))
            renamed = _linked(row, last_name="Echo-Only")
            subject = guard.subject(renamed)
            ledger.held[(INFOR, "customer", subject.key)] = [
                Write(
                    subject.facts,
                    {"name": Origin(subject.occurred_at_ms - 50, PRESTASHOP)},
                    subject.occurred_at_ms - 20,
                )
            ]
            # ... and M3's record of it comes back: nothing to write.
            echo_model = sink.decode(renamed, context())
            assert isinstance(echo_model, CustomerMaster)
            echo = await sink.apply(echo_model, context())
            echo_writes = list(wire.writes())
            # A genuine M3 change of the e-mail: only the e-mail is written, recorded before the write.
            changed = _linked(row, last_name="Echo-Only", email=f"changed.{row['id']}@example.org")
            model = sink.decode(changed, context())
            assert isinstance(model, CustomerMaster)
            written = await sink.apply(model, context())
            [recorded] = ledger.held[(PRESTASHOP, "customer", subject.key)]
            assert ledger.log.count("record PRESTASHOP") == 2  # announced, then ended
            assert recorded.written == {"email"}
            assert recorded.done_at_ms is not None
            assert recorded.done_at_ms >= recorded.written_at_ms
            after = await a.row("customers", 5)
            return echo, echo_writes, written, wire.writes(), row, after

    echo, echo_writes, written, writes, row, after = asyncio.run(scenario())
    assert echo.outcome == "echo"
    assert echo_writes == []
    assert written.outcome == "written"
    assert written.facts is not None
    assert written.facts["fields"] == "email"
    assert writes == [("PATCH", "/api/customers/5")]
    assert after["email"] == "changed.5@example.org"
    assert after["lastname"] == row["lastname"]  # the echoed name was never written


def test_a_subject_is_the_key_the_facts_and_the_change_time_in_milliseconds() -> None:
    record = _shop_record()
    subject = EchoGuard(MemoryLedger(), target=INFOR, stage="test").subject(record)
    assert subject.occurred_at_ms == int(datetime(2024, 4, 28, 10, 1, tzinfo=UTC).timestamp() * 1000)
    assert (subject.key, subject.facts) == ("1:318", customer_facts(record))
