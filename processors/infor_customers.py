"""Infor customers → ``canonical.customer.v1``: Sync.CustomerPartyMaster BODs and CRS610MI LstByNumber.

Input: ``raw.infor.customers``, keyed by M3 customer number (CUNO).

**The key.** An M3 customer is one of two kinds, told apart by the links in ``state.erp-links``
(:class:`~processors.infor_source.CustomerKeys`, written by the Infor customer sink when it created or
matched the M3 customer for a shop customer):

- *linked*: the key is the shop's ``customer_key`` (``{shop_id}:{id_customer}``), the same key the
  PrestaShop customer flow uses, so both systems' versions of one person share a key on the compacted
  topic; ``external_ids`` has ``infor`` (CUNO) and ``prestashop`` (id_customer), ``meta.shop_id`` the shop.
- *ERP-only* (keyed in M3, e.g. a B2B account): the key is ``infor:{CONO}:{CUNO}`` (``-`` for an unknown
  company). ``infor`` is never a shop id, so the two key spaces cannot collide; ``external_ids`` has only
  ``infor`` and ``meta.shop_id`` is null. When the sink later links such a customer to a shop customer
  (dedupe by e-mail), its next change is published under the shop key; subscribers join the two by
  ``external_ids.infor`` or by e-mail, the canonical dedupe key.

A customer linked to several shop customers (one M3 account behind accounts in two shops) cannot be told
apart per record and is published under its ERP key.

**E-mail.** ``email`` is the cross-system dedupe key and is required by the record. An ERP-only customer
without one is not a customer any shop can hold: it is skipped. A linked customer without one is an
error in M3's data (the shop customer has one): ``missing_field`` → DLQ.

Names: M3 keeps one name (CUNM); the last word becomes ``last_name``, the rest ``first_name``. The
postal address (CUA1..4, PONO, TOWN, ECAR, CSCD) is standardised by the rules; a customer without a
country has no address. A BOD with ``actionCode="Delete"`` is skipped: the canonical customer has no
deletion, and a shop customer is never deleted because M3 dropped its twin.
Versions: LMTS, else the BOD variationID (:mod:`processors.infor_source`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from connectors.infor.bod import Node, user_area
from pipeline.errors import InvalidMessage
from pipeline.records import Headers
from processors.infor_source import (
    CustomerKeys,
    RawInfor,
    company_of,
    default_rules,
    lmts_time,
    meta,
    prestashop_id,
    preview_context,
    read_raw,
    required,
    shop_of,
    timestamp_at,
    version_of,
)
from processors.runner import Flow, FlowContext
from rules import preview
from rules.engine import Rules
from schemas.codec import AvroDatum

NAME = "infor_customers"
SOURCE_TOPIC = "raw.infor.customers"
OUTPUT_TOPIC = "canonical.customer.v1"
RECORD = "Customer"

ERP_KEY_PREFIX = "infor"
"""First part of an ERP-only customer's key (``infor:{CONO}:{CUNO}``); never a shop id."""

_NOUN = "CustomerPartyMaster"


@dataclass(frozen=True)
class PostalAddress:
    """M3's one postal address of a customer, as written there (standardised by the rules later)."""

    lines: tuple[str, ...]
    postal_code: str
    city: str
    region: str
    country: str


@dataclass(frozen=True)
class InforCustomer:
    """The facts of one M3 customer event."""

    source_entity: str
    cono: str
    customer_number: str
    name: str
    email: str
    phone: str
    address: PostalAddress | None
    deleted: bool
    version: int
    changed_at: datetime
    created_at: datetime | None
    customer_key: str | None = None
    """The linked shop customer's key (set by ``decode``); None for an ERP-only customer."""

    @property
    def key(self) -> str:
        """The canonical key: the shop's customer_key when linked, else ``infor:{CONO}:{CUNO}``."""
        if self.customer_key is not None:
            return self.customer_key
        return f"{ERP_KEY_PREFIX}:{self.cono or '-'}:{self.customer_number}"


def from_raw(raw: RawInfor) -> InforCustomer:
    """The input model of a decoded raw record (BOD or CRS610MI record)."""
    if raw.bod is not None:
        bod = raw.bod
        noun = bod.nouns[0]
        extensions = user_area(noun)
        lmts = extensions.get("m3.LMTS", "")
        return InforCustomer(
            source_entity=bod.document_name,
            cono=company_of(raw),
            customer_number=required(bod.entity_id, f"{_NOUN}/PartyIDs/ID"),
            name=noun.text_at("Name").strip(),
            email=_channel(noun, ("email", "e-mail", "mail")),
            phone=_channel(noun, ("telephone", "phone", "mobile")),
            address=_bod_address(noun),
            deleted=bod.action_code == "Delete",
            version=version_of(lmts, bod.variation_id, f"{_NOUN}/PartyIDs/ID@variationID"),
            changed_at=_changed_at(lmts, bod.creation_datetime, "ApplicationArea/CreationDateTime"),
            created_at=None,
        )
    record = raw.mi or {}
    lmts = record.get("LMTS", "") or raw.header("lmts")
    return InforCustomer(
        source_entity=raw.program or "CRS610MI",
        cono=company_of(raw),
        customer_number=required(record.get("CUNO", ""), "CUNO"),
        name=record.get("CUNM", "").strip(),
        email=record.get("MAIL", "").strip(),
        phone=record.get("PHNO", "").strip(),
        address=_mi_address(record),
        deleted=False,
        version=version_of(lmts, "", "LMTS"),
        changed_at=_changed_at(lmts, raw.header("received_at"), "received_at"),
        created_at=_registered(record.get("RGDT", "")),
    )


def _registered(rgdt: str) -> datetime | None:
    """CRS610's registration date (``yyyyMMdd``); None when empty or M3's zero date."""
    text = rgdt.strip()
    return None if text.strip("0") == "" else timestamp_at(text, "RGDT")


def _channel(noun: Node, codes: tuple[str, ...]) -> str:
    for communication in noun.all("Communication"):
        if communication.text_at("ChannelCode").strip().lower() in codes:
            return (communication.text_at("URI") or communication.text_at("DialNumber")).strip()
    return ""


def _bod_address(noun: Node) -> PostalAddress | None:
    address = noun.find("Location/Address")
    if address is None:
        return None
    lines = sorted(address.all("AddressLine"), key=lambda line: int(line.attr("sequence", "0") or 0))
    return PostalAddress(
        lines=tuple(line.text for line in lines),
        postal_code=address.text_at("PostalCode"),
        city=address.text_at("CityName"),
        region=address.text_at("CountrySubDivisionCode"),
        country=address.text_at("CountryCode"),
    )


def _mi_address(record: Mapping[str, str]) -> PostalAddress:
    return PostalAddress(
        lines=tuple(record.get(f"CUA{n}", "") for n in range(1, 5)),
        postal_code=record.get("PONO", ""),
        city=record.get("TOWN", ""),
        region=record.get("ECAR", ""),
        country=record.get("CSCD", ""),
    )


def _changed_at(lmts: str, fallback: str, path: str) -> datetime:
    """The LMTS's moment, else the BOD creation / receipt time."""
    found = lmts_time(int(lmts)) if lmts.strip().isdigit() else None
    if found is None:
        found = timestamp_at(fallback, path)
    assert found is not None  # timestamp_at raises for a missing required value
    return found


def split_name(name: str) -> tuple[str, str]:
    """(first_name, last_name) of M3's one name: the last word is the family name, nothing is dropped."""
    words = name.split()
    if not words:
        return "", ""
    return " ".join(words[:-1]), words[-1]


def to_customer(event: InforCustomer, rules: Rules, context: FlowContext) -> AvroDatum | None:
    """The ``Customer`` datum; None for a deletion or an ERP-only customer without e-mail.

    Raises InvalidMessage ``missing_field`` (a linked customer without e-mail) or the address rules'
    ``unknown_country`` / ``unknown_region`` / ``invalid_postcode``.
    """
    if event.deleted:
        return None
    if not event.email:
        if event.customer_key is None:
            return None
        raise InvalidMessage(
            "missing_field",
            f"M3 customer {event.customer_number} is linked to shop customer {event.customer_key} "
            "but has no e-mail",
            field_path="MAIL" if event.source_entity.startswith("CRS610MI") else f"{_NOUN}/Communication/URI",
        )
    first, last = split_name(event.name)
    addresses = []
    if event.address is not None and event.address.country.strip():
        standard = rules.address.standardise(
            country=event.address.country.strip(),
            lines=event.address.lines,
            city=event.address.city,
            postal_code=event.address.postal_code or None,
            region=event.address.region or None,
            first_name=first,
            last_name=last,
            phone=event.phone or None,
            field_path="address",
        )
        addresses.append(
            {
                "first_name": standard.first_name,
                "last_name": standard.last_name,
                "company": standard.company,
                "lines": list(standard.lines),
                "postal_code": standard.postal_code,
                "city": standard.city,
                "region_code": standard.region_code,
                "country_code": standard.country_code,
                "phone": standard.phone,
                "vat_number": standard.vat_number,
            }
        )
    external = {"infor": event.customer_number}
    shop = None
    if event.customer_key is not None:
        shop = shop_of(event.customer_key)
        local = prestashop_id(event.customer_key)
        if local is not None:
            external["prestashop"] = local
    return {
        "meta": meta(
            entity=event.source_entity,
            source_id=f"{event.cono}:{event.customer_number}" if event.cono else event.customer_number,
            version=event.version,
            occurred_at=event.changed_at,
            ingested_at=context.ingested_at,
            correlation_id=context.correlation_id,
            causation_id=None,
            shop_id=shop,
        ),
        "customer_key": event.key,
        "email": event.email.lower(),
        "first_name": first,
        "last_name": last,
        "company": None,
        "vat_number": None,
        "phone": event.phone or None,
        "addresses": addresses,
        "group": None,
        "is_guest": False,
        "newsletter": False,
        "marketing_opt_in": False,
        "created_at": event.created_at or event.changed_at,
        "updated_at": event.changed_at,
        "external_ids": external,
    }


def decode(data: bytes, headers: Headers, customer_keys: CustomerKeys) -> InforCustomer:
    """The event in ``data`` with its shop customer looked up (None when the customer is ERP-only)."""
    event = from_raw(read_raw(data, headers, nouns=(_NOUN,)))
    return replace(event, customer_key=customer_keys.by_erp_customer(event.cono, event.customer_number))


def build_flow(customer_keys: CustomerKeys, rules: Rules | None = None) -> Flow[InforCustomer]:
    """The flow with this link lookup and these rules (None: the packaged default, loaded on first use)."""

    def to_record(event: InforCustomer, context: FlowContext) -> AvroDatum | None:
        return to_customer(event, rules or default_rules(), context)

    return Flow(
        name=NAME,
        sources=(SOURCE_TOPIC,),
        output=OUTPUT_TOPIC,
        record=RECORD,
        decode=lambda data, headers: decode(data, headers, customer_keys),
        to_record=to_record,
        key=lambda event: event.key,
        version=lambda event: event.version,
    )


def preview_record(raw: bytes, rules: Rules) -> dict[str, Any]:
    """``psinfor rules preview --flow infor_customers``: the record as an ERP-only customer would be.

    The preview cannot see the pipeline's links; a customer without e-mail is ``missing_field``.
    """
    event = from_raw(read_raw(raw, (), nouns=(_NOUN,)))
    datum = to_customer(event, rules, preview_context())
    if datum is None:
        raise InvalidMessage("skipped", "a deletion or a customer without e-mail becomes no record")
    return datum


preview.register_flow(NAME, preview_record)
