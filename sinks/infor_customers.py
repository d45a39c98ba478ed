"""``canonical.customer.v1`` → the M3 customer (CRS610MI), and the customer resolution all Infor sinks share.

One shop customer must become exactly one M3 customer, even when its first two orders are applied at
the same moment by two processes. :class:`CustomerResolver` does it without a distributed lock:

1. under a per-customer lock in the process (:class:`KeyedLocks`), the candidates are tried in order:
   the M3 number the record names (``external_ids["infor"]``), the link on ``state.erp-links``, and the
   shop customer's deterministic M3 number (:func:`erp_customer_number`); the first one M3 knows is it;
2. else M3's customers with the same e-mail (:class:`CustomerEmails`, kept current from CRS610MI's
   changed-since list, each verified by GetBasicData): the lowest number is linked, so a customer M3
   already had is not created twice;
3. else CRS610MI Add with the deterministic number. Two processes racing here both ask for the SAME
   number; M3 takes one Add and refuses the other as "already exists", which then reads and links
   the customer the winner created.

An existing customer is changed only in the fields that differ (ChgBasicData with those fields); the
link is written to ``state.erp-links`` (acked) whenever the customer was not found through it.

The sink skips records that came from Infor: they are M3's own data coming back (``echo``). A shop
customer without an address is not created (M3 requires CUA1); it is created by its first order,
which always has a billing address (outcome ``deferred``).

This module also holds what the three Infor sinks share: :class:`InforSinkOptions`, the M3 connection
(:func:`open_m3`, one rate limiter per ``.ionapi`` credential in the process), the links reader
(:func:`open_links`) and writer (:class:`LinkWriter`), and the translation of M3's rejections into
the pipeline's errors (:func:`m3_rejection`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import weakref
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from connectors.infor.adapter import Address, Customer, CustomerRef
from connectors.infor.errors import MiBusinessError
from connectors.infor.gateway import TARGET, open_gateway
from connectors.infor.ionapi import load_ionapi
from connectors.infor.m3 import M3Adapter, M3OrderDefaults
from pipeline.errors import InvalidMessage, PipelineError, RetryableError
from pipeline.producer import AckedProducer, HeaderList
from pipeline.ratelimit import AdaptiveRateLimiter, RatePolicy
from pipeline.settings import InforSettings, Settings
from processors.erp_links import (
    LINKS_TOPIC,
    CustomerLink,
    ErpLinkStore,
    OrderLink,
    customer_link_record,
    order_link_record,
)
from rules.address import clean
from rules.engine import Rules
from schemas.codec import AvroDatum
from sinks.base import Applied, SinkContext, SinkResources, Skip
from sinks.echo import INFOR, EchoGuard, EchoSubject, keep_m3_fields, open_echo_guard

log = logging.getLogger(__name__)

NAME = "infor-customers"
SOURCE_TOPIC = "canonical.customer.v1"
RECORD = "Customer"

M3_CUSTOMER_NUMBER_LENGTH = 10
"""CUNO is A10."""


# ------------------------------------------------------------------------------------------ options


@dataclass(frozen=True)
class InforSinkOptions:
    """Tenant values the Infor sinks need that the settings do not carry (yet): one object, passed down.

    ``defaults`` feed batch order entry and CRS610MI Add (order type when the rules' enrichment gives
    none, customer template CUTM, the CRID of the shipping charge; None sends no shipping charge).
    ``wrapping_charge_id`` is the CRID of gift wrapping (None: wrapping is not sent). Customer numbers
    are ``customer_number_prefix`` + the shop's customer id (see :func:`erp_customer_number`).
    ``quota`` paces every call of one ``.ionapi`` credential in the process.
    """

    defaults: M3OrderDefaults = field(
        default_factory=lambda: M3OrderDefaults(order_type="WEB", customer_template="WEB")
    )
    wrapping_charge_id: str | None = None
    customer_number_prefix: str = "PS"
    default_shop_id: str = "1"
    quota: RatePolicy = field(default_factory=lambda: RatePolicy.per_window(600, 60.0))
    links_sync_timeout_s: float = 10.0

    @classmethod
    def from_settings(cls, infor: InforSettings | None, *, shop_id: int = 1) -> InforSinkOptions:
        """The options the settings name (``PSINFOR_INFOR__ORDER_TYPE`` ...); the defaults without them."""
        if infor is None:
            return cls(default_shop_id=str(shop_id))
        return cls(
            defaults=M3OrderDefaults(
                order_type=infor.order_type,
                customer_template=infor.customer_template or None,
                shipping_charge_id=infor.shipping_charge_id,
            ),
            wrapping_charge_id=infor.wrapping_charge_id,
            customer_number_prefix=infor.customer_number_prefix,
            default_shop_id=str(shop_id),
            quota=RatePolicy.per_window(infor.requests_per_minute, 60.0),
        )


def sink_options(resources: SinkResources) -> InforSinkOptions:
    """The Infor sinks' options from the process's settings."""
    settings = resources.settings
    shop_id = settings.prestashop.shop_id if settings.prestashop is not None else 1
    return InforSinkOptions.from_settings(settings.infor, shop_id=shop_id)


# --------------------------------------------------------------------------------- pure mapping


def erp_customer_number(customer_key: str, *, prefix: str = "PS", default_shop_id: str = "1") -> str:
    """The deterministic M3 customer number (CUNO, A10) of shop customer ``customer_key`` (``shop:id``).

    The default shop's customers are ``PS`` + the id zero-padded to six digits (``1:42`` → ``PS000042``);
    other shops put the shop id and a dash before the id (``2:42`` → ``PS2-42``), so numbers of two shops
    never collide (only the default shop's are all digits after the prefix). Deterministic on purpose:
    every process and every retry asks M3 for the same number, which is what makes creation race-free.
    Raises InvalidMessage when the key is malformed or the number would not fit CUNO.
    """
    shop, sep, local_id = customer_key.partition(":")
    if not sep or not shop or not local_id.isdigit():
        raise InvalidMessage(
            "invalid_customer_key",
            f"customer key {customer_key!r} is not '<shop_id>:<id_customer>'",
            field_path="customer_key",
        )
    number = f"{prefix}{int(local_id):06d}" if shop == default_shop_id else f"{prefix}{shop}-{int(local_id)}"
    if len(number) > M3_CUSTOMER_NUMBER_LENGTH:
        raise InvalidMessage(
            "customer_number_too_long",
            f"customer {customer_key} would be M3 customer {number!r}, longer than CUNO's "
            f"{M3_CUSTOMER_NUMBER_LENGTH} characters",
            field_path="customer_key",
        )
    return number


def person_name(company: str | None, first_name: str | None, last_name: str | None) -> str:
    """The M3 name (CUNM) of a party: its company when it has one, else the person's name."""
    return clean(company) or clean(f"{first_name or ''} {last_name or ''}")


def m3_state_code(region_code: str | None) -> str:
    """M3's state (ECAR) from an ISO 3166-2 code: ``US-NY`` → ``NY``; empty when there is none."""
    text = clean(region_code)
    country, dash, subdivision = text.partition("-")
    return subdivision if dash else country


def m3_address(address: Mapping[str, Any], rules: Rules, *, field_path: str) -> Address:
    """A canonical ``Address`` fitted to M3's fixed-width lines (CUA1-CUA4) without losing text.

    Raises InvalidMessage ``address_does_not_fit`` (field path ``<field_path>.lines``) when the rules'
    fitting cannot place every word.
    """
    return Address(
        name=person_name(address.get("company"), address.get("first_name"), address.get("last_name")),
        lines=rules.address.fit_lines(address.get("lines") or [], "m3", field_path=f"{field_path}.lines"),
        city=clean(address.get("city")),
        postal_code=clean(address.get("postal_code")),
        country_code=clean(address.get("country_code")),
        state_code=m3_state_code(address.get("region_code")),
        phone=clean(address.get("phone")),
    )


def address_field_paths(field_path: str, *, name_path: str) -> dict[str, str]:
    """M3 address fields → where their value came from in the canonical record (for error reports)."""
    return {
        "CUNM": name_path,
        **{f"CUA{n}": f"{field_path}.lines" for n in range(1, 5)},
        "PONO": f"{field_path}.postal_code",
        "TOWN": f"{field_path}.city",
        "CSCD": f"{field_path}.country_code",
        "ECAR": f"{field_path}.region_code",
        "PHNO": f"{field_path}.phone",
    }


@dataclass(frozen=True)
class CustomerUpsert:
    """What a shop customer should be in M3, and where each M3 field came from in the canonical record.

    ``customer.customer_id`` is the deterministic number (used when M3 has no customer for it yet);
    ``erp_id`` the M3 number the record itself names, if any.
    """

    customer_key: str
    customer: Customer
    erp_id: str = ""
    field_paths: Mapping[str, str] = field(default_factory=dict)
    echo: EchoSubject | None = None
    """What the echo guard screens (:mod:`sinks.echo`); None when the sink runs without one."""

    @property
    def has_address(self) -> bool:
        """Whether the customer can be created (CRS610MI Add requires an address line, CUA1)."""
        return self.customer.address is not None and bool(self.customer.address.lines)


def to_customer_upsert(
    datum: AvroDatum, rules: Rules, *, prefix: str = "PS", default_shop_id: str = "1"
) -> CustomerUpsert:
    """The M3 customer of a canonical ``Customer``: name (company, else first + last name), the default
    (first) address fitted to CUA1-CUA4, e-mail lower-cased, phone (the address's when the customer has
    none), and the deterministic number. Pure: same record and rules, same answer.
    """
    key = str(datum["customer_key"])
    company = datum.get("company")
    name = person_name(company, datum.get("first_name"), datum.get("last_name"))
    name_path = "company" if clean(company) else "last_name"
    addresses = datum.get("addresses") or []
    address = m3_address(addresses[0], rules, field_path="addresses[0]") if addresses else None
    paths = {"CUNO": "customer_key", "CUNM": name_path, "MAIL": "email", "PHNO": "phone"}
    if address is not None:
        paths |= address_field_paths("addresses[0]", name_path=name_path)
        paths["PHNO"] = "phone" if clean(datum.get("phone")) else "addresses[0].phone"
    customer = Customer(
        customer_id=erp_customer_number(key, prefix=prefix, default_shop_id=default_shop_id),
        name=name,
        address=replace(address, name=name) if address is not None else None,
        email=clean(datum.get("email")).lower(),
        phone=clean(datum.get("phone")) or (address.phone if address is not None else ""),
    )
    erp_id = clean((datum.get("external_ids") or {}).get("infor"))
    return CustomerUpsert(key, customer, erp_id=erp_id, field_paths=paths)


# ------------------------------------------------------------------------------- M3's rejections

# M3 answers a record another job holds with an error, not a status: such a rejection blames the
# moment, not the payload. The wording is not specified (infor.md gives no list): matched loosely.
_TRANSIENT_M3_TEXT = re.compile(r"\b(locked|is being (changed|updated|processed)|try again later)\b", re.I)


def m3_rejection(
    error: MiBusinessError, field_paths: Mapping[str, str], *, field_path: str | None = None
) -> PipelineError:
    """M3's refusal as the pipeline's error: InvalidMessage naming the canonical field to blame, with
    ``details`` ``m3_code``, ``m3_field``, ``m3_type``, ``m3_message`` and ``transaction``; a refusal that
    only says the record is busy (locked, in use) is a RetryableError instead.

    ``field_path`` (when known) wins over the lookup of M3's errorField in ``field_paths``.
    """
    quartet = error.error
    operation = f"{quartet.program}.{quartet.transaction}".strip(".")
    if _TRANSIENT_M3_TEXT.search(quartet.error_message):
        return RetryableError(f"M3 {operation} is busy: {quartet.error_message}")
    path = field_path or field_paths.get(quartet.error_field) or None
    return InvalidMessage(
        error.reason,
        error.message,
        field_path=path,
        details={
            "m3_code": quartet.error_code,
            "m3_field": quartet.error_field,
            "m3_type": quartet.error_type,
            "m3_message": quartet.error_message,
            "transaction": operation,
        },
    )


# ------------------------------------------------------------------------------------- links


class ErpLinks(Protocol):
    """Forward lookups on ``state.erp-links`` and remembering a link just written (ErpLinkIndex does both).

    Lookups may block (a miss waits for the reader to catch up): call them off the event loop.
    """

    def order_link(self, order_key: str) -> OrderLink | None: ...

    def customer_link(self, customer_key: str) -> CustomerLink | None: ...

    def link_order(self, link: OrderLink) -> None: ...

    def link_customer(self, link: CustomerLink) -> None: ...


class StoredLinks:
    """:class:`ErpLinks` over a started :class:`~processors.erp_links.ErpLinkStore`."""

    def __init__(self, store: ErpLinkStore) -> None:
        self._store = store

    def order_link(self, order_key: str) -> OrderLink | None:
        """The order's link, the topic read to its end first when the store does not know it."""
        return self._store.order_link(order_key)

    def customer_link(self, customer_key: str) -> CustomerLink | None:
        """The customer's link, the topic read to its end first when the store does not know it."""
        return self._store.customer_link(customer_key)

    def link_order(self, link: OrderLink) -> None:
        """Remember ``link`` before the reader sees it come back from the topic."""
        self._store.index.link_order(link)

    def link_customer(self, link: CustomerLink) -> None:
        """Remember ``link`` before the reader sees it come back from the topic."""
        self._store.index.link_customer(link)


class LinkWriter:
    """Writes links to ``state.erp-links``; each call returns only after the broker acknowledged it."""

    def __init__(self, producer: AckedProducer, topic: str, links: ErpLinks | None = None) -> None:
        self._producer = producer
        self.topic = topic
        self._links = links

    async def order(self, link: OrderLink, correlation_id: str = "") -> None:
        """Write (and remember) an order link."""
        key, value = order_link_record(link)
        await self._producer.produce_acked(self.topic, key, value, _headers(correlation_id))
        if self._links is not None:
            self._links.link_order(link)

    async def customer(self, link: CustomerLink, correlation_id: str = "") -> None:
        """Write (and remember) a customer link."""
        key, value = customer_link_record(link)
        await self._producer.produce_acked(self.topic, key, value, _headers(correlation_id))
        if self._links is not None:
            self._links.link_customer(link)


def _headers(correlation_id: str) -> HeaderList:
    return (("correlation_id", correlation_id.encode()),) if correlation_id else ()


# ------------------------------------------------------------------------------------ resolution


class KeyedLocks:
    """One ``asyncio.Lock`` per key, alive only while someone holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        return len(self._locks)

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Hold ``key``'s lock for the block."""
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            _, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


PROCESS_CUSTOMER_LOCKS = KeyedLocks()
"""The per-customer locks every resolver in this process shares (the orders and customers sinks)."""


class CustomerMaster(Protocol):
    """The M3 customer operations resolution needs (:class:`~connectors.infor.m3.M3Adapter` has them)."""

    async def get_customer(self, ref: CustomerRef) -> Customer | None: ...

    async def upsert_customer(self, customer: Customer) -> CustomerRef: ...

    async def change_customer(self, customer: Customer, current: Customer) -> bool: ...

    def list_customers(
        self, *, changed_after: int = 0, page_size: int = 500
    ) -> AsyncIterator[tuple[Customer, int]]: ...


class CustomerEmails:
    """E-mail → the numbers of M3's customers with that e-mail, for one company.

    M3 has no documented search by e-mail (infor.md §2.4), but CRS610MI LstByNumber is a changed-since
    feed: the first lookup reads every customer once (paged), and every later lookup first asks only
    for the customers changed since the newest LMTS seen (usually one empty page), so a customer
    created in M3 a moment ago is known too.
    """

    def __init__(self, m3: CustomerMaster) -> None:
        self._m3 = m3
        self._numbers: dict[str, set[str]] = {}
        self._email_of: dict[str, str] = {}
        self._stamp = 0
        self._refreshing = asyncio.Lock()

    async def numbers(self, email: str) -> list[str]:
        """The numbers of the customers whose e-mail is ``email`` (case-insensitive), lowest first."""
        async with self._refreshing:
            async for customer, stamp in self._m3.list_customers(changed_after=self._stamp):
                self._put(customer.customer_id, customer.email)
                self._stamp = max(self._stamp, stamp)
        return sorted(self._numbers.get(email.strip().lower(), ()))

    def _put(self, number: str, email: str) -> None:
        old = self._email_of.pop(number, None)
        if old is not None:
            self._numbers.get(old, set()).discard(number)
        new = email.strip().lower()
        if new:
            self._email_of[number] = new
            self._numbers.setdefault(new, set()).add(number)


@dataclass(frozen=True)
class CustomerResolution:
    """The M3 customer a shop customer is; ``found_by`` says how (a bounded label)."""

    customer_id: str
    found_by: str
    """``external_id``, ``link``, ``number``, ``email`` or ``created``."""
    changed: bool = False

    @property
    def created(self) -> bool:
        """Whether this resolution created the M3 customer."""
        return self.found_by == "created"


class CustomerResolver:
    """Finds, creates or updates the one M3 customer of a shop customer (see the module docstring)."""

    def __init__(
        self,
        m3: CustomerMaster,
        *,
        cono: str,
        links: ErpLinks | None = None,
        locks: KeyedLocks | None = None,
        emails: CustomerEmails | None = None,
    ) -> None:
        self._m3 = m3
        self._cono = cono
        self._links = links
        self._locks = PROCESS_CUSTOMER_LOCKS if locks is None else locks
        self._emails = CustomerEmails(m3) if emails is None else emails

    async def resolve(
        self, wanted: CustomerUpsert, *, update: bool, create: bool = True
    ) -> CustomerResolution | None:
        """The M3 customer of ``wanted.customer_key``; None only when none exists and ``create`` is False.

        ``update`` changes the fields of an existing customer that differ from ``wanted``; without it an
        existing customer is left as it is (an order only makes sure its customer exists). Raises the
        pipeline error of M3's refusal (:func:`m3_rejection`) when M3 rejects the data.
        """
        async with self._locks.hold(f"{self._cono}:{wanted.customer_key}"):
            try:
                return await self._resolve(wanted, update=update, create=create)
            except MiBusinessError as exc:
                raise m3_rejection(exc, wanted.field_paths) from exc

    async def _resolve(
        self, wanted: CustomerUpsert, *, update: bool, create: bool
    ) -> CustomerResolution | None:
        found = await self._find(wanted)
        if found is None:
            if not create:
                return None
            ref = await self._m3.upsert_customer(wanted.customer)
            # created=False: another process's Add won the race for the same number; upsert linked it.
            return CustomerResolution(ref.customer_id, "created" if ref.created else "number", ref.changed)
        current, found_by = found
        changed = update and await self._m3.change_customer(wanted.customer, current)
        return CustomerResolution(current.customer_id, found_by, changed)

    async def _find(self, wanted: CustomerUpsert) -> tuple[Customer, str] | None:
        candidates: list[tuple[str, str]] = []
        if wanted.erp_id:
            candidates.append((wanted.erp_id, "external_id"))
        if self._links is not None:
            link = await asyncio.to_thread(self._links.customer_link, wanted.customer_key)
            if link is not None and link.erp_customer_number and (not link.cono or link.cono == self._cono):
                candidates.append((link.erp_customer_number, "link"))
        candidates.append((wanted.customer.customer_id, "number"))
        tried: set[str] = set()
        for number, found_by in candidates:
            if number in tried:
                continue
            tried.add(number)
            current = await self._m3.get_customer(CustomerRef(number))
            if current is not None:
                return current, found_by
        email = wanted.customer.email
        if email:
            numbers = await self._emails.numbers(email)
            if len(numbers) > 1:
                log.warning(
                    "several M3 customers share an e-mail; linking the lowest number",
                    extra={"customer_key": wanted.customer_key, "count": len(numbers)},
                )
            for number in numbers:
                current = await self._m3.get_customer(CustomerRef(number))
                if current is not None and current.email.strip().lower() == email:
                    return current, "email"
        return None


# -------------------------------------------------------------------------------------- the sink


class InforCustomersSink:
    """``canonical.customer.v1`` → M3 customer upsert (see the module docstring)."""

    name = NAME
    target = TARGET
    sources = (SOURCE_TOPIC,)
    record = RECORD
    coalesce_s: float | None = None

    def __init__(
        self,
        resolver: CustomerResolver,
        links: LinkWriter,
        rules: Rules,
        *,
        cono: str,
        options: InforSinkOptions | None = None,
        echo: EchoGuard | None = None,
    ) -> None:
        self._resolver = resolver
        self._links = links
        self._rules = rules
        self._cono = cono
        self._options = options or InforSinkOptions()
        self._echo = echo

    def decode(self, datum: AvroDatum, context: SinkContext) -> CustomerUpsert | Skip:
        """The M3 customer of ``datum``; Skip ``echo`` for records that came from Infor."""
        if str(datum["meta"]["source_system"]) == "INFOR" or str(datum["customer_key"]).startswith("infor:"):
            return Skip("echo")
        upsert = to_customer_upsert(
            datum,
            self._rules,
            prefix=self._options.customer_number_prefix,
            default_shop_id=self._options.default_shop_id,
        )
        return upsert if self._echo is None else replace(upsert, echo=self._echo.subject(datum))

    async def apply(self, model: CustomerUpsert, context: SinkContext) -> Applied:
        """Create or change the M3 customer, then write its link; ``deferred`` without an address.

        With an echo guard, only the facts it names are changed, and a shop record that only repeats
        what the pipeline wrote into the shop is outcome ``echo`` (see :mod:`sinks.echo`).
        """
        if self._echo is None or model.echo is None:
            return await self._upsert(model, model, context)
        screening = await self._echo.screen(model.echo)
        if screening.skip:
            self._echo.handled(screening)
            return Applied(screening.outcome, {"customer_key": model.customer_key})
        await self._echo.will_write(screening, context.correlation_id)
        kept = keep_m3_fields(model.customer, screening.verdict.write)
        narrowed = model if kept == model.customer else replace(model, customer=kept)
        applied = await self._upsert(narrowed, model, context)
        if applied.outcome != "deferred":
            await self._echo.written(screening, context.correlation_id)
        return applied

    async def _upsert(self, model: CustomerUpsert, whole: CustomerUpsert, context: SinkContext) -> Applied:
        """Change ``model``'s fields of an existing M3 customer; create a missing one from ``whole``."""
        if model is whole:
            resolution = await self._resolver.resolve(model, update=True, create=model.has_address)
        else:
            resolution = await self._resolver.resolve(model, update=True, create=False)
            if resolution is None:
                resolution = await self._resolver.resolve(whole, update=True, create=whole.has_address)
        if resolution is None:
            return Applied("deferred", {"why": "no_address"})
        if resolution.found_by != "link":
            link = CustomerLink(model.customer_key, self._cono, resolution.customer_id)
            await self._links.customer(link, context.correlation_id)
        facts = {"erp_customer_number": resolution.customer_id, "found_by": resolution.found_by}
        if resolution.created or resolution.changed:
            return Applied("written", facts)
        return Applied("unchanged" if resolution.found_by == "link" else "linked", facts)


# ------------------------------------------------------------------------------ wiring (build)


@dataclass(frozen=True)
class M3Connection:
    """An open M3 connection: the adapter and the company (CONO) every call is made in."""

    adapter: M3Adapter
    cono: str


# One limiter per .ionapi credential (the gateway's quota is per OAuth client) and event loop: every
# Infor sink of the process shares it, so together they stay under the quota.
_LIMITERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, AdaptiveRateLimiter]] = (
    weakref.WeakKeyDictionary()
)


def _limiter(credential: str, policy: RatePolicy) -> AdaptiveRateLimiter:
    per_loop = _LIMITERS.setdefault(asyncio.get_running_loop(), {})
    limiter = per_loop.get(credential)
    if limiter is None:
        limiter = per_loop[credential] = AdaptiveRateLimiter(policy, target=TARGET)
    return limiter


@contextlib.asynccontextmanager
async def open_m3(settings: Settings, options: InforSinkOptions) -> AsyncIterator[M3Connection]:
    """The M3 adapter on the settings' ``.ionapi`` service account; tokens revoked and closed on exit.

    Raises ConfigError when the Infor settings are missing or the ``.ionapi`` file is unusable.
    """
    infor = settings.require_infor()
    credentials = load_ionapi(infor.ionapi_path)
    gateway = open_gateway(credentials, limiter=_limiter(credentials.ci, options.quota))
    try:
        mi = gateway.mi(cono=infor.cono, divi=infor.divi, timeout=infor.timeout_s)
        yield M3Connection(M3Adapter(mi, options.defaults), infor.cono)
    finally:
        await gateway.aclose()


@contextlib.asynccontextmanager
async def open_links(
    resources: SinkResources, *, stage: str, sync_timeout_s: float
) -> AsyncIterator[StoredLinks]:
    """``state.erp-links`` read to its end, then followed in the background; closed on exit."""
    store = ErpLinkStore(
        resources.settings.kafka,
        resources.topic(LINKS_TOPIC),
        client_id_suffix=f"sink-{stage}-links",
        sync_timeout_s=sync_timeout_s,
    )
    await asyncio.to_thread(store.start)
    try:
        yield StoredLinks(store)
    finally:
        await asyncio.to_thread(store.close)


def build_with(
    resources: SinkResources, options: InforSinkOptions
) -> contextlib.AbstractAsyncContextManager[InforCustomersSink]:
    """:func:`build` with explicit options."""

    @contextlib.asynccontextmanager
    async def opened() -> AsyncIterator[InforCustomersSink]:
        async with (
            open_m3(resources.settings, options) as m3,
            open_links(resources, stage=NAME, sync_timeout_s=options.links_sync_timeout_s) as links,
            open_echo_guard(resources, target=INFOR, stage=NAME) as echo,
        ):
            resolver = CustomerResolver(m3.adapter, cono=m3.cono, links=links)
            writer = LinkWriter(resources.producer, resources.topic(LINKS_TOPIC), links)
            yield InforCustomersSink(
                resolver, writer, resources.rules, cono=m3.cono, options=options, echo=echo
            )

    return opened()


def build(resources: SinkResources) -> contextlib.AbstractAsyncContextManager[InforCustomersSink]:
    """The ``infor-customers`` sink with its M3 connection and links reader (a :data:`SinkFactory`)."""
    return build_with(resources, sink_options(resources))
