"""The raw records the poller writes: canonical value bytes, key and provenance headers.

Value: the JSON object of ONE record exactly as the webservice returned it (field names and values
untouched: strings stay strings, i18n lists stay lists), re-serialised canonically so that the same
shop state always gives the same bytes: keys sorted, no insignificant whitespace, UTF-8 with non-ASCII
characters kept (``json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``).
The envelope (``{"orders": [...]}``) is not kept: one record per Kafka message.

Orders are written as ORDER BUNDLES (``event_type`` ``order.bundle``, built by
:mod:`~ingest.prestashop_poller.bundles`, by the orders loop and the notification reader): one
JSON object (canonical bytes as above) holding the
webservice records read for that order version, each exactly as returned::

    {"order": {...},                  the orders row with its order_rows association
     "order_details": [{...}],        its lines in full (totals, taxes, warehouse)
     "customer": {...} | null,        the ordering customer
     "addresses": [{...}],            the invoice and delivery addresses (one entry when equal)
     "countries": [{...}], "states": [{...}],   of those addresses
     "currencies": [{...}],           the order's currency and the shop's default currency
     "carrier": {...} | null,         the order's carrier
     "order_carriers": [{...}],       its carrier rows (tracking numbers)
     "order_payments": [{...}],       its payments (matched by order reference)
     "order_states": [{...}],         the order's current state (flags, names)
     "configuration": [{...}]}        PS_TIMEZONE, PS_CURRENCY_DEFAULT and every PS_OS_* row

Customers and products are bundles too (decision: a bundle, not separate address / combination
snapshots, so each processor flow stays a pure function of one record and sees the whole entity):

* ``customer.bundle`` on ``raw.prestashop.customers``, key ``{shop_id}:customers:{id}``::

    {"customer": {...}, "addresses": [{...}]  (all of its addresses, deleted ones included),
     "countries": [{...}], "states": [{...}], "configuration": [{...}]}

* ``product.bundle`` on ``raw.prestashop.products``, key ``{shop_id}:products:{id}``::

    {"product": {...}, "combinations": [{...}], "languages": [{...}],
     "currencies": [{...}]  (the shop's default currency), "configuration": [{...}]}

An address or a combination notification is answered with the bundle of its customer or product,
under that key (an address change does not move the customer's ``date_upd``; both changes must stay
in order on one key). The header ``date_upd`` is the customer's or product's own.

Each order bundle is followed by one PAYMENT BUNDLE per row of its ``order_payments``
(``order_payment.bundle`` on ``raw.prestashop.orders``, key ``{shop_id}:order_payments:{id}``, built
by :func:`~ingest.prestashop_poller.bundles.payment_snapshots`), written by the same loop, right before
its order bundle and acknowledged before the watermark passes the order::

    {"order_payment": {...}, "order": {...}, "currencies": [{...}], "configuration": [{...}]}

The same payment is written again with every version of its order; its version is its ``date_add``
(payments are never updated), so the payments flow drops the copies.

A related row the shop no longer has is absent (``null`` / missing from its list): the processors
decide whether the order can be mapped without it. Other resources are written one record each
(``<node>.snapshot``).

Key: ``{shop_id}:{resource}:{id}`` (``1:orders:42``, ``1:order_carriers:7``), so every version of one
row stays on one partition, in order.

Headers (all UTF-8 text):

================  ==========================================================================
``source``        ``prestashop-poll`` (a full snapshot read from the webservice); the webhook
                  receiver writes ``prestashop-webhook`` (a thin notification, see
                  :mod:`~ingest.prestashop_poller.notifications`)
``event_type``    ``<node>.snapshot``: ``order.snapshot``, ``order_carrier.snapshot``, ...;
                  ``order.bundle`` for an order bundle, ``order_payment.bundle`` for a payment
``shop_id``       the psinfor shop id (the first part of the key), for the processors' keys and ids
``resource``      the webservice resource (``orders``)
``id``            the row id
``date_upd``      the row's ``date_upd`` (shop-local ``YYYY-MM-DD HH:MM:SS``), absent for
                  resources without one (order_carriers, stock_availables, order_payments)
``date_add``      a payment bundle's ``date_add`` (its version: payments have no ``date_upd``)
``received_at``   when the poller read it, ISO 8601 UTC with milliseconds
``content-type``  ``application/json``
``correlation_id`` a new id per record, or the id of the notification that caused the read
``poll_run_id``   the id of this poller process run (one per start)
``trigger``       ``poll``, ``scan`` or ``notification``: which loop read it
================  ==========================================================================
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from connectors.prestashop.json_reads import JsonRecord
from pipeline.producer import DeliveryCallback, PipelineProducer

SOURCE_POLL = "prestashop-poll"
SOURCE_WEBHOOK = "prestashop-webhook"
CONTENT_TYPE_JSON = "application/json"

RAW_TOPIC_BY_RESOURCE: dict[str, str] = {
    "orders": "raw.prestashop.orders",
    "order_carriers": "raw.prestashop.orders",
    "order_payments": "raw.prestashop.orders",
    "customers": "raw.prestashop.customers",
    "addresses": "raw.prestashop.customers",
    "products": "raw.prestashop.products",
    "combinations": "raw.prestashop.products",
    "stock_availables": "raw.prestashop.stock",
}
"""Catalogue topic (without prefix) of each resource the poller writes."""


def canonical_json(record: JsonRecord) -> bytes:
    """The record's canonical bytes (see the module docstring); equal records give equal bytes."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def record_key(shop_id: int, resource: str, id_: int) -> bytes:
    """``{shop_id}:{resource}:{id}`` as bytes."""
    return f"{shop_id}:{resource}:{id_}".encode()


def utc_timestamp(moment: datetime | None = None) -> str:
    """ISO 8601 UTC with milliseconds and ``Z`` (``2025-01-31T12:00:00.123Z``)."""
    moment = moment or datetime.now(UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One record ready to produce: topic (without prefix), key, value and headers."""

    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


def snapshot(
    *,
    shop_id: int,
    resource: str,
    node: str,
    id_: int,
    record: JsonRecord,
    date_upd: str | None,
    poll_run_id: str,
    trigger: str,
    correlation_id: str | None = None,
    received_at: datetime | None = None,
    kind: str = "snapshot",
    date_add: str | None = None,
) -> RawRecord:
    """The raw record of one row read from the webservice (see the module docstring).

    ``kind`` is the event_type suffix: ``snapshot`` for one record, ``bundle`` for an order bundle.
    """
    headers: list[tuple[str, str]] = [
        ("source", SOURCE_POLL),
        ("event_type", f"{node}.{kind}"),
        ("shop_id", str(shop_id)),
        ("resource", resource),
        ("id", str(id_)),
    ]
    if date_upd is not None:
        headers.append(("date_upd", date_upd))
    if date_add is not None:
        headers.append(("date_add", date_add))
    headers += [
        ("received_at", utc_timestamp(received_at)),
        ("content-type", CONTENT_TYPE_JSON),
        ("correlation_id", correlation_id or uuid.uuid4().hex),
        ("poll_run_id", poll_run_id),
        ("trigger", trigger),
    ]
    return RawRecord(
        topic=RAW_TOPIC_BY_RESOURCE[resource],
        key=record_key(shop_id, resource, id_),
        value=canonical_json(record),
        headers=tuple((name, value.encode()) for name, value in headers),
    )


def produce_raw(
    producer: PipelineProducer,
    raw: RawRecord,
    *,
    topic_prefix: str = "",
    on_delivery: DeliveryCallback | None = None,
) -> None:
    """Queue ``raw`` on ``topic_prefix + raw.topic``; ``on_delivery`` learns its fate (producer thread)."""
    producer.produce(f"{topic_prefix}{raw.topic}", raw.key, raw.value, raw.headers, on_delivery)
