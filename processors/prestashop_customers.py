"""PrestaShop customers and addresses → ``canonical.customer.v1``: one customer with every live address.

Input: a CUSTOMER BUNDLE on ``raw.prestashop.customers`` (event_type ``customer.bundle``, key
``{shop_id}:customers:{id}``, format in ``ingest/prestashop_poller/raw.py``): the customer record with
all its addresses (deleted ones included, so a deletion is seen), their countries and states, and the
``PS_TIMEZONE`` configuration row, each exactly as the webservice returned it. An address change
does not move the customer's ``date_upd``, so the poller answers an address notification with the
bundle of the address's customer, under the customer's key: both kinds of change reach this flow in
order, as versions of one key.

Mapping:

* version = the latest ``date_upd`` of the customer and its addresses (UTC epoch ms): an edited or
  soft-deleted address is a new customer version;
* email checked and lower-cased by the rules; names and company trimmed;
* addresses: the live ones (``deleted=0``) in id order, standardised by the rules (ISO country and
  region, postcode format), so the same address text gives the same record in every flow;
* phone and VAT number: the customer has none of its own; the first live address that carries one
  gives it;
* group: the customer's default group id (PrestaShop: 1 visitor, 2 guest, 3 customer, then the shop's
  own groups), as text; the enrichment rules match on it;
* a deleted customer (``deleted=1``, e.g. after a GDPR erasure) is not a customer to sync: skipped.

Everything else on the topic (notifications, other flows' records) is
:class:`~processors.prestashop_source.Skipped`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from connectors.prestashop.models import Address, Configuration, Country, Customer, State
from pipeline.errors import InvalidMessage
from pipeline.records import Headers
from processors.prestashop_source import (
    SKIP_VERSION,
    ShopClock,
    Skipped,
    canonical_address,
    configuration_map,
    decode_for_preview,
    latest,
    meta,
    parse_json,
    parse_model,
    shop_id_of,
    skip_reason,
)
from processors.runner import Flow, FlowContext
from rules.engine import Rules
from rules.preview import register_flow
from rules.validation import check_email
from schemas.codec import AvroDatum

NAME = "prestashop_customers"
SOURCE_TOPIC = "raw.prestashop.customers"
OUTPUT_TOPIC = "canonical.customer.v1"
RECORD = "Customer"
EVENT_TYPE = "customer.bundle"
ENTITY = "customers"


class CustomerBundle(BaseModel):
    """The customer bundle as the poller writes it; every inner record is a PrestaShop source model."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    customer: Customer
    addresses: list[Address] = Field(default_factory=list)
    countries: list[Country] = Field(default_factory=list)
    states: list[State] = Field(default_factory=list)
    configuration: list[Configuration] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CustomerEvent:
    """One customer bundle of one shop (the shop id comes from the record's ``shop_id`` header)."""

    shop_id: str
    bundle: CustomerBundle


CustomerInput = CustomerEvent | Skipped


def decode(raw: bytes, headers: Headers) -> CustomerInput:
    """Raw bytes → :class:`CustomerEvent`, or :class:`Skipped` for notifications and other records.

    InvalidMessage: ``undecodable`` (not JSON), ``wrong_type`` / ``missing_field`` with the field path
    (``customer.id``) for a bundle the source models refuse.
    """
    why = skip_reason(headers, EVENT_TYPE)
    if why is not None:
        return Skipped(why)
    return CustomerEvent(shop_id_of(headers), parse_model(CustomerBundle, parse_json(raw)))


def key(event: CustomerInput) -> str:
    """``{shop_id}:{id_customer}`` (the canonical key); empty for a skipped record (never produced)."""
    return f"{event.shop_id}:{event.bundle.customer.id}" if isinstance(event, CustomerEvent) else ""


def _clock(bundle: CustomerBundle) -> ShopClock:
    return ShopClock.from_configuration(configuration_map(bundle.configuration), field_path="configuration")


def _updated(bundle: CustomerBundle) -> datetime:
    """The latest local ``date_upd`` of the customer and its addresses (see the module docstring)."""
    moment = latest(bundle.customer.date_upd, *(address.date_upd for address in bundle.addresses))
    if moment is None:
        raise InvalidMessage(
            "missing_field", "customer.date_upd is empty or a zero date", field_path="customer.date_upd"
        )
    return moment


def version(event: CustomerInput) -> int:
    """The latest ``date_upd`` of the customer and its addresses as UTC epoch ms."""
    if isinstance(event, Skipped):
        return SKIP_VERSION
    return _clock(event.bundle).epoch_ms(_updated(event.bundle))


def to_customer(
    event: CustomerEvent, rules: Rules, *, ingested_at: datetime, correlation_id: str
) -> AvroDatum | None:
    """The canonical ``Customer`` datum of one bundle; None for a deleted customer (pure).

    Raises InvalidMessage for a bundle that cannot be mapped (bad e-mail, unknown country, a customer
    id that does not own the addresses, ...), naming the field path.
    """
    bundle, shop_id = event.bundle, event.shop_id
    customer = bundle.customer
    if customer.deleted:
        return None
    clock = _clock(bundle)
    updated = clock.utc(_updated(bundle))
    addresses: list[dict[str, Any]] = []
    phone: str | None = None
    vat_number: str | None = None
    for address in sorted(bundle.addresses, key=lambda a: a.id):
        path = f"addresses[id={address.id}]"
        if address.id_customer != customer.id:
            raise InvalidMessage(
                "invalid_format",
                f"address {address.id} belongs to customer {address.id_customer}, not {customer.id}",
                field_path=f"{path}.id_customer",
            )
        if address.deleted:
            continue
        canonical = canonical_address(address, bundle.countries, bundle.states, rules, field_path=path)
        addresses.append(canonical)
        phone = phone or canonical["phone"]
        vat_number = vat_number or canonical["vat_number"]
    return {
        "meta": meta(
            entity=ENTITY,
            shop_id=shop_id,
            source_id=str(customer.id),
            version=int(updated.timestamp() * 1000),
            occurred_at=updated,
            ingested_at=ingested_at,
            correlation_id=correlation_id,
        ),
        "customer_key": f"{shop_id}:{customer.id}",
        "email": check_email(customer.email, "customer.email"),
        "first_name": customer.firstname.strip(),
        "last_name": customer.lastname.strip(),
        "company": customer.company.strip() or None,
        "vat_number": vat_number,
        "phone": phone,
        "addresses": addresses,
        "group": str(customer.id_default_group) if customer.id_default_group else None,
        "is_guest": customer.is_guest,
        "newsletter": customer.newsletter,
        "marketing_opt_in": customer.optin,
        "created_at": clock.required(customer.date_add, "customer.date_add"),
        "updated_at": updated,
        "external_ids": {"prestashop": str(customer.id)},
    }


def to_record(event: CustomerInput, context: FlowContext) -> AvroDatum | None:
    """The runner's ``to_record``: None for skipped records and deleted customers."""
    if isinstance(event, Skipped):
        return None
    return to_customer(
        event, context.rules, ingested_at=context.ingested_at, correlation_id=context.correlation_id
    )


FLOW: Flow[CustomerInput] = Flow(
    name=NAME,
    sources=(SOURCE_TOPIC,),
    output=OUTPUT_TOPIC,
    record=RECORD,
    decode=decode,
    to_record=to_record,
    key=key,
    version=version,
)


def preview(raw: bytes, rules: Rules) -> dict[str, Any]:
    """``psinfor rules preview --flow prestashop_customers``: a customer bundle file's canonical Customer.

    The shop id is taken as 1; a deleted customer previews as ``{}`` (nothing would be emitted).
    """
    event = decode_for_preview(decode, raw, EVENT_TYPE, "a customer bundle")
    return to_customer(event, rules, ingested_at=datetime.now(UTC), correlation_id="preview") or {}


register_flow(NAME, preview)
