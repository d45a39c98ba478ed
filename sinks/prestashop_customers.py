"""``canonical.customer.v1`` from the ERP → the shop customer's contact data and its ERP address.

Which shop customer: a linked ERP customer carries the shop's key (``{shop_id}:{id_customer}``); an
ERP-only one (``infor:{CONO}:{CUNO}``) is looked up by e-mail, the canonical dedupe key, among the
shop's registered (non-guest) customers. No customer is ever created here: an ERP account without a
shop account has nothing to change (``Applied("no_shop_customer")``); accounts are opened by buyers.

What the ERP owns (:func:`customer_changes`): the e-mail, the name (compared as a whole: M3 keeps one
name that the processor splits at the last word, so a different split of the same name is not a
change) and the company when the ERP states one. Never written: ``passwd``, ``secure_key``, consent
(``newsletter``/``optin``, which the ERP record does not carry and would reset), groups, ``active``,
``is_guest``, birthday — nor any other field: the write is partial (PATCH on 8.x+; on 1.7, which has
no PATCH, the client's read-modify PUT re-sends every field it read, ``secure_key`` and the password
hash included, with only the owned ones changed).

The address (the record's first, its default): the shop keeps the addresses its buyer entered, and an
order points at the address it was placed with, so the sink never edits those. If one of the
customer's live addresses already says the same (:func:`same_address`: name and street compared
whole, as M3 re-splits both; postcode and phone without spacing) nothing is written; otherwise
the one address the pipeline keeps (alias :data:`ERP_ADDRESS_ALIAS`) is updated, or created. Lines
are joined into ``address1``/``address2`` without losing text; what does not fit the shop's field
lengths is ``InvalidMessage("address_does_not_fit")``.

Skipped: a record the shop itself produced (``echo``) and another shop's customer (``not_ours``).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Final

from connectors.prestashop.client import PrestaShopClient
from connectors.prestashop.models import Address, Country, Customer, State
from connectors.prestashop.query import Query, equals
from connectors.prestashop.xml_writes import XmlValue
from pipeline.errors import InvalidMessage
from schemas.codec import AvroDatum
from sinks.base import Applied, SinkContext, SinkResources, Skip
from sinks.echo import PRESTASHOP, EchoGuard, EchoSubject, keep_shop_fields, open_echo_guard
from sinks.prestashop_target import TARGET, facts, is_from_shop, open_shop_client

NAME = "prestashop-customers"
"""Stage name (consumer group ``sink-prestashop-customers`` in the topic catalogue)."""
SOURCE_TOPIC = "canonical.customer.v1"
RECORD = "Customer"

ERP_ADDRESS_ALIAS = "ERP"
"""Alias of the one address per customer the pipeline writes (the shop's limit is 32 characters)."""

ADDRESS_LIMITS: Final[Mapping[str, int]] = {
    "company": 255,
    "lastname": 255,
    "firstname": 255,
    "vat_number": 32,
    "address1": 128,
    "address2": 128,
    "postcode": 12,
    "city": 64,
    "phone": 32,
}
"""The shop's field lengths (reference §2.3): longer text is refused, never truncated."""

ADDRESS_FIELDS: Final = (
    "firstname",
    "lastname",
    "company",
    "address1",
    "address2",
    "postcode",
    "city",
    "id_country",
    "id_state",
    "phone",
    "vat_number",
)
"""The address fields the ERP address sets (compared and written); ``alias`` and ``id_customer`` aside."""


@dataclass(frozen=True)
class AddressMaster:
    """The ERP's address of a customer, in canonical terms."""

    first_name: str
    last_name: str
    company: str | None
    lines: tuple[str, ...]
    postal_code: str | None
    city: str
    region_code: str | None
    country_code: str
    phone: str | None
    vat_number: str | None


@dataclass(frozen=True)
class CustomerMaster:
    """The sink's model of an ERP customer: who in the shop, and the facts the ERP owns."""

    customer_key: str
    id_customer: int | None
    """The linked shop customer; None for an ERP-only customer (found by e-mail)."""
    email: str
    first_name: str
    last_name: str
    company: str | None
    address: AddressMaster | None
    echo: EchoSubject | None = None
    """What the echo guard screens (:mod:`sinks.echo`); None when the sink runs without one."""


def to_customer_master(datum: AvroDatum, *, shop_id: int) -> CustomerMaster | Skip:
    """The ERP customer for this shop, or Skip (``echo``, ``not_ours``); InvalidMessage for a bad key."""
    if is_from_shop(datum):
        return Skip("echo")
    key = str(datum["customer_key"])
    id_customer: int | None = None
    if not key.startswith("infor:"):
        shop, sep, local = key.partition(":")
        if not sep or not shop.isdigit() or not local.isdigit() or int(local) <= 0:
            raise InvalidMessage(
                "invalid_customer_key",
                f"{key!r} is neither {{shop_id}}:{{id_customer}} nor infor:{{CONO}}:{{CUNO}}",
                field_path="customer_key",
            )
        if int(shop) != shop_id:
            return Skip("not_ours")
        id_customer = int(local)
    addresses = datum["addresses"]
    return CustomerMaster(
        customer_key=key,
        id_customer=id_customer,
        email=str(datum["email"]).strip(),
        first_name=str(datum["first_name"]).strip(),
        last_name=str(datum["last_name"]).strip(),
        company=_text(datum["company"]),
        address=_address(addresses[0]) if addresses else None,
    )


def _text(value: object) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text or None


def _address(value: Mapping[str, object]) -> AddressMaster:
    lines = value["lines"]
    assert isinstance(lines, list)
    return AddressMaster(
        first_name=str(value["first_name"]).strip(),
        last_name=str(value["last_name"]).strip(),
        company=_text(value["company"]),
        lines=tuple(str(line).strip() for line in lines if str(line).strip()),
        postal_code=_text(value["postal_code"]),
        city=str(value["city"]).strip(),
        region_code=_text(value["region_code"]),
        country_code=str(value["country_code"]).strip().upper(),
        phone=_text(value["phone"]),
        vat_number=_text(value["vat_number"]),
    )


_SEPARATORS = re.compile(r"[\s,;]+")
_POSTCODE_NOISE = re.compile(r"[\s-]+")
_PHONE_NOISE = re.compile(r"[^0-9+]+")


def _folded(text: str) -> str:
    return " ".join(text.split()).casefold()


def customer_changes(current: Customer, master: CustomerMaster) -> dict[str, XmlValue]:
    """The ERP-owned customer fields that differ from the shop's (pure); see the module docstring.

    Only ``email``, ``firstname``, ``lastname`` and ``company`` can appear: never a secret, a consent
    flag or anything else the write does not own.
    """
    changes: dict[str, XmlValue] = {}
    if master.email and master.email.casefold() != current.email.strip().casefold():
        changes["email"] = master.email
    # M3 holds one name; compare the whole name so a different split of the same name is no change.
    # An ERP name of one word leaves the shop's first name (the shop requires one).
    first = master.first_name or current.firstname
    if master.last_name and _folded(f"{first} {master.last_name}") != _folded(
        f"{current.firstname} {current.lastname}"
    ):
        if first != current.firstname:
            changes["firstname"] = first
        if master.last_name != current.lastname:
            changes["lastname"] = master.last_name
    if master.company is not None and _folded(master.company) != _folded(current.company):
        changes["company"] = master.company
    return changes


def address_fields(
    address: AddressMaster, *, id_country: int, id_state: int, field_path: str = "addresses[0]"
) -> dict[str, XmlValue]:
    """The shop address fields of ``address`` (pure): lines joined into address1/address2, nothing cut.

    Raises InvalidMessage ``missing_field`` for an address without street lines and
    ``address_does_not_fit`` when a value is longer than the shop's field.
    """
    if not address.lines:
        raise InvalidMessage(
            "missing_field", "an address needs at least one street line", field_path=f"{field_path}.lines"
        )
    fields: dict[str, str | int] = {
        "firstname": address.first_name,
        "lastname": address.last_name,
        "company": address.company or "",
        "address1": address.lines[0],
        "address2": ", ".join(address.lines[1:]),
        "postcode": address.postal_code or "",
        "city": address.city,
        "id_country": id_country,
        "id_state": id_state,
        "phone": address.phone or "",
        "vat_number": address.vat_number or "",
    }
    for name, limit in ADDRESS_LIMITS.items():
        value = fields[name]
        if isinstance(value, str) and len(value) > limit:
            raise InvalidMessage(
                "address_does_not_fit",
                f"{name} would be {len(value)} characters; the shop holds {limit}",
                field_path=f"{field_path}.lines" if name.startswith("address") else field_path,
                details={"field": name, "length": str(len(value)), "limit": str(limit)},
            )
    return dict(fields)


def _plain(value: XmlValue) -> str:
    """A field value as comparable text: ids as digits, text case- and spacing-folded."""
    if isinstance(value, int):
        return str(value)
    return _folded(str(value)) if value is not None else ""


def _comparable(fields: Mapping[str, XmlValue]) -> dict[str, str]:
    """What an address *says*, independent of how a system split or spelled it.

    The name and the street are compared whole (M3 splits one name at its last word and re-wraps
    street lines into 36-character fields), postcodes without spaces or dashes, phones by their digits.
    Without this, the shop's own address coming back through the ERP would look new and be added again.
    """

    def text(name: str) -> str:
        return _plain(fields.get(name, ""))

    return {
        "name": _folded(f"{text('firstname')} {text('lastname')}"),
        "company": text("company"),
        "street": _folded(_SEPARATORS.sub(" ", f"{text('address1')} {text('address2')}")),
        "postcode": _POSTCODE_NOISE.sub("", text("postcode")).upper(),
        "city": text("city"),
        "id_country": text("id_country") or "0",
        "id_state": text("id_state") or "0",
        "phone": _PHONE_NOISE.sub("", text("phone")),
        "vat_number": text("vat_number").replace(" ", "").upper(),
    }


def _fields_of(address: Address) -> dict[str, XmlValue]:
    return {name: getattr(address, name) for name in ADDRESS_FIELDS}


def same_address(existing: Address, wanted: Mapping[str, XmlValue]) -> bool:
    """True when ``existing`` says what ``wanted`` says (see :func:`_comparable`; pure)."""
    return _comparable(_fields_of(existing)) == _comparable(wanted)


@dataclass(frozen=True)
class AddressAction:
    """What to do with the ERP address: nothing, update ``address`` (only ``changes``), or create it."""

    kind: str
    """``none``, ``update`` or ``create``."""
    address: Address | None = None
    changes: Mapping[str, XmlValue] | None = None


def address_action(existing: Sequence[Address], wanted: Mapping[str, XmlValue]) -> AddressAction:
    """Nothing when a live address already reads the same; else update the pipeline's address, or create
    it (pure). The buyer's own addresses are never edited: orders point at them."""
    live = [address for address in existing if not address.deleted]
    if any(same_address(address, wanted) for address in live):
        return AddressAction("none")
    ours = sorted((a for a in live if a.alias == ERP_ADDRESS_ALIAS), key=lambda a: a.id)
    if ours:
        held = _fields_of(ours[0])
        changes = {name: value for name, value in wanted.items() if _plain(held[name]) != _plain(value)}
        return AddressAction("update", ours[0], changes)
    return AddressAction("create")


class CustomerSink:
    """Keeps the ERP-owned contact data and the ERP address of shop customers current; nothing else."""

    name = NAME
    target = TARGET
    sources: tuple[str, ...] = (SOURCE_TOPIC,)
    record = RECORD
    coalesce_s: float | None = None

    def __init__(self, client: PrestaShopClient, *, shop_id: int, echo: EchoGuard | None = None) -> None:
        self._client = client
        self._shop_id = shop_id
        self._echo = echo

    def decode(self, datum: AvroDatum, context: SinkContext) -> CustomerMaster | Skip:
        """See :func:`to_customer_master`."""
        model = to_customer_master(datum, shop_id=self._shop_id)
        if self._echo is None or isinstance(model, Skip):
            return model
        return replace(model, echo=self._echo.subject(datum))

    async def apply(self, model: CustomerMaster, context: SinkContext) -> Applied:
        """Change what differs (customer first, then the address); ``unchanged`` when nothing does.

        With an echo guard, only the facts it names are changed, and an ERP record that only repeats
        what the pipeline wrote into M3 is outcome ``echo`` (see :mod:`sinks.echo`).
        """
        if self._echo is None or model.echo is None:
            return await self._apply(model)
        screening = await self._echo.screen(model.echo)
        if screening.skip:
            self._echo.handled(screening)
            return Applied(screening.outcome, facts(customer_key=model.customer_key))
        await self._echo.will_write(screening, context.correlation_id)
        applied = await self._apply(model, keep_shop_fields(model, screening.verdict.write))
        await self._echo.written(screening, context.correlation_id)
        return applied

    async def _apply(self, model: CustomerMaster, owned: CustomerMaster | None = None) -> Applied:
        """Find ``model``'s shop customer, then write what ``owned`` (default: all of it) says differently."""
        customer = await self._shop_customer(model)
        if customer is None:
            return Applied("no_shop_customer", facts(customer_key=model.customer_key))
        model = owned or model
        changes = customer_changes(customer, model)
        if changes:
            await self._client.update_customer(customer.id, changes)
        address = "none"
        if model.address is not None:
            address = await self._apply_address(customer.id, model.address)
        summary = facts(
            customer_key=model.customer_key,
            id_customer=customer.id,
            fields=",".join(sorted(changes)) or None,
            address=address,
        )
        return Applied("written" if changes or address != "none" else "unchanged", summary)

    async def _shop_customer(self, model: CustomerMaster) -> Customer | None:
        if model.id_customer is not None:
            return await self._client.get_customer(model.id_customer)
        found = [
            customer
            for customer in await self._client.find_customers_by_email(model.email)
            if not customer.is_guest and not customer.deleted
        ]
        return min(found, key=lambda customer: customer.id) if found else None

    async def _apply_address(self, id_customer: int, address: AddressMaster) -> str:
        id_country, id_state = await self._country_and_state(address)
        wanted = address_fields(address, id_country=id_country, id_state=id_state)
        existing = await self._client.list_all(Address, Query(filters=(equals("id_customer", id_customer),)))
        action = address_action(existing, wanted)
        if action.kind == "update":
            assert action.address is not None
            assert action.changes is not None
            await self._client.update_address(action.address.id, action.changes)
        elif action.kind == "create":
            await self._client.create_address(
                {**wanted, "id_customer": id_customer, "alias": ERP_ADDRESS_ALIAS}
            )
        return action.kind

    async def _country_and_state(self, address: AddressMaster) -> tuple[int, int]:
        countries = await self._client.list_all(
            Country, Query(filters=(equals("iso_code", address.country_code),))
        )
        if not countries:
            raise InvalidMessage(
                "unknown_country",
                f"the shop has no country {address.country_code!r}",
                field_path="addresses[0].country_code",
            )
        country = countries[0]
        if address.region_code is None:
            return country.id, 0
        subdivision = address.region_code.rpartition("-")[2]
        states = await self._client.list_all(
            State, Query(filters=(equals("id_country", country.id), equals("iso_code", subdivision)))
        )
        if states:
            return country.id, states[0].id
        if country.contains_states:
            raise InvalidMessage(
                "unknown_region",
                f"the shop has no state {address.region_code!r} in {address.country_code}",
                field_path="addresses[0].region_code",
            )
        return country.id, 0


@asynccontextmanager
async def build(resources: SinkResources) -> AsyncIterator[CustomerSink]:
    """The sink on the shop of ``resources.settings.prestashop``; its connections close on exit."""
    shop = resources.settings.require_prestashop()
    async with (
        open_shop_client(shop) as client,
        open_echo_guard(resources, target=PRESTASHOP, stage=NAME) as echo,
    ):
        yield CustomerSink(client, shop_id=shop.shop_id, echo=echo)
