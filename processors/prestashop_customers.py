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

from datetime import datetime
from typing import Any

from connectors.prestashop.models import Customer
from processors.prestashop_source import AddressBook, BundleEvent, BundleIdentity, Skipped, bundle_flow, meta
from rules.engine import Rules
from rules.validation import check_email
from schemas.codec import AvroDatum

NAME = "prestashop_customers"
SOURCE_TOPIC = "raw.prestashop.customers"
OUTPUT_TOPIC = "canonical.customer.v1"
RECORD = "Customer"
EVENT_TYPE = "customer.bundle"
ENTITY = "customers"


class CustomerBundle(AddressBook):
    """The customer bundle as the poller writes it: the customer and all its addresses, deleted included."""

    customer: Customer

    def identity(self) -> BundleIdentity:
        """Keyed by the customer; versioned by the latest ``date_upd`` of it and its addresses."""
        moments = (self.customer.date_upd, *(address.date_upd for address in self.addresses))
        changed = max((moment for moment in moments if moment is not None), default=None)
        return BundleIdentity(self.customer.id, changed, "customer.date_upd")


class CustomerEvent(BundleEvent[CustomerBundle]):
    """One customer bundle of one shop."""


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
    clock = bundle.clock()
    identity = bundle.identity()
    updated = clock.required(identity.changed_at, identity.changed_at_path)
    addresses: list[dict[str, Any]] = []
    phone: str | None = None
    vat_number: str | None = None
    for address in sorted(bundle.addresses, key=lambda a: a.id):
        path = f"addresses[id={address.id}]"
        bundle.check_owner(
            "address", address.id, "customer", address.id_customer, customer.id, f"{path}.id_customer"
        )
        if address.deleted:
            continue
        canonical = bundle.canonical_address(address, rules, field_path=path)
        addresses.append(canonical)
        phone = phone or canonical["phone"]
        vat_number = vat_number or canonical["vat_number"]
    return {
        "meta": meta(
            ENTITY, shop_id, str(customer.id), updated, ingested_at=ingested_at, correlation_id=correlation_id
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


CustomerInput = CustomerEvent | Skipped
decode, key, version, to_record, FLOW = bundle_flow(
    NAME, SOURCE_TOPIC, OUTPUT_TOPIC, RECORD, EVENT_TYPE, CustomerBundle, CustomerEvent, to_customer
)
