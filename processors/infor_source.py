"""What every Infor flow shares: reading a ``raw.infor.*`` record, typed field access, ``meta``, order keys.

A raw Infor record is either a BOD pushed by ION (``source=infor-ims``, XML) or an M3 MI output record
from the polling fallback (``source=infor-mi``, JSON object field → string, headers ``program``,
``transaction``, ``lmts``). :func:`read_raw` tells them apart by their first byte and gives the flow a
:class:`RawInfor`; the flow builds its own input model from it.

**Versions.** ``meta.version`` is M3's LMTS (change timestamp) whenever the record carries one (MI
records always; the BODs M3 publishes carry ``m3.LMTS`` in their UserArea), else the BOD's
``variationID``. LMTS first because the pushed BODs and the polled MI records of one entity share a
raw topic and key, so their versions must be comparable; a tenant uses one path or the other, and a
BOD without LMTS is only ever compared with BODs.

**Order and customer keys.** An M3 record knows its order by M3's order number (ORNO, unique per
company CONO) and, on the order head, the customer's order number (CUOR), which the Infor order sink
sets to the PrestaShop reference; it knows its customer by M3's customer number (CUNO). None of them is
the canonical ``order_key`` (``{shop_id}:{id_order}``) or ``customer_key``, so the flows ask an
:class:`OrderKeys` / :class:`CustomerKeys` lookup, fed by the links the Infor sinks write to
``state.erp-links`` (:mod:`processors.erp_links`: the record format, and the Kafka-backed store the
worker passes to each flow's ``build_flow``). An order the lookup does not know is not a shop order (an
order keyed in M3 directly, or a B2B order whose CUOR is the buyer's PO number): the flow returns None
and the runner counts it ``skipped``. The sink writes an order's link (reference first, ORNO once M3
confirmed) before M3 can ship or invoice it, and the store confirms a miss against the topic's end, so
a shop order is never mistaken for a foreign one.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any, Protocol

from connectors.infor.bod import Bod, parse_bod
from pipeline.errors import InvalidMessage
from pipeline.records import Headers, SourceRecord
from processors.runner import FlowContext
from rules.engine import Rules, load_rules

SOURCE_SYSTEM = "INFOR"
EVENT_NAMESPACE = uuid.UUID("3f0c9d2e-8b1a-5e47-a6d3-4c2b1f0e9a85")
"""UUIDv5 namespace of the Infor flows' ``event_id`` s (fixed forever: ids must be stable across releases)."""

# LMTS values above this are M3's yyyyMMddHHmmssfff form, below it epoch milliseconds.
_LMTS_DIGITS_FORM = 10**16


@dataclass(frozen=True)
class RawInfor:
    """One raw Infor record: exactly one of ``bod`` and ``mi`` is set; ``headers`` as received."""

    bod: Bod | None
    mi: Mapping[str, str] | None
    headers: Headers

    def header(self, name: str) -> str:
        """The last header called ``name`` as text, or ``""``."""
        for key, value in reversed(self.headers):
            if key == name:
                return value.decode("utf-8", "replace")
        return ""

    @property
    def program(self) -> str:
        """``{program}.{transaction}`` of an MI record (``CRS610MI.LstByNumber``), else ``""``."""
        program, transaction = self.header("program"), self.header("transaction")
        return f"{program}.{transaction}" if transaction else program


def read_raw(data: bytes, headers: Headers, *, nouns: tuple[str, ...]) -> RawInfor:
    """The raw record as a BOD (whose noun must be one of ``nouns``) or an MI JSON object.

    Raises InvalidMessage ``undecodable`` (neither XML nor a JSON object of strings),
    ``bod_*`` (see :func:`connectors.infor.bod.parse_bod`) or ``bod_unexpected`` (another noun).
    """
    head = data.lstrip()[:1]
    if head == b"<":
        bod = parse_bod(data)
        if bod.noun not in nouns:
            raise InvalidMessage(
                "bod_unexpected",
                f"{bod.document_name} does not belong on this topic (expected {', '.join(nouns)})",
                field_path=bod.document_name,
            )
        return RawInfor(bod=bod, mi=None, headers=headers)
    try:
        parsed: Any = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidMessage("undecodable", f"neither a BOD nor MI JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise InvalidMessage("undecodable", f"MI record must be a JSON object, got {type(parsed).__name__}")
    record: dict[str, str] = {}
    for name, value in parsed.items():
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise InvalidMessage(
                "wrong_type",
                f"MI field {name} must be text (M3 sends every field as text), got {type(value).__name__}",
                field_path=str(name),
                details={"expected": "string", "got": type(value).__name__},
            )
        record[str(name)] = str(value)
    return RawInfor(bod=None, mi=record, headers=headers)


# ------------------------------------------------------------------------------------------- fields


def required(value: str, path: str) -> str:
    """``value`` stripped; InvalidMessage ``missing_field`` at ``path`` when empty."""
    text = value.strip()
    if not text:
        raise InvalidMessage("missing_field", f"{path} is required", field_path=path)
    return text


def decimal_at(text: str, path: str, *, optional: bool = False) -> Decimal | None:
    """A decimal field; ``wrong_type`` (expected decimal) for text that is not a number.

    Empty text is ``missing_field`` unless ``optional`` (then None).
    """
    value = text.strip()
    if not value:
        if optional:
            return None
        raise InvalidMessage("missing_field", f"{path} is required", field_path=path)
    try:
        number = Decimal(value)
    except InvalidOperation:
        number = None
    if number is None or not number.is_finite():
        raise InvalidMessage(
            "wrong_type",
            f"{path} must be a decimal number, got {value[:40]!r}",
            field_path=path,
            details={"expected": "decimal", "got": value[:40]},
        )
    return number


def required_decimal(text: str, path: str) -> Decimal:
    """A decimal field that must be present (see :func:`decimal_at`)."""
    number = decimal_at(text, path)
    assert number is not None  # decimal_at raises for empty text unless optional
    return number


def int_at(text: str, path: str) -> int | None:
    """An optional integer field (None when empty); ``wrong_type`` (expected integer) otherwise."""
    value = text.strip()
    if not value:
        return None
    if not value.lstrip("-").isdigit():
        raise InvalidMessage(
            "wrong_type",
            f"{path} must be an integer, got {value[:40]!r}",
            field_path=path,
            details={"expected": "integer", "got": value[:40]},
        )
    return int(value)


def timestamp_at(text: str, path: str, *, optional: bool = False) -> datetime | None:
    """An ISO-8601 date-time (a naive one is UTC, as BODs state) or an M3 ``yyyyMMdd`` date, in UTC.

    ``wrong_type`` (expected timestamp) for anything else; empty is ``missing_field`` unless ``optional``.
    """
    value = text.strip()
    if not value:
        if optional:
            return None
        raise InvalidMessage("missing_field", f"{path} is required", field_path=path)
    parsed: datetime | None = None
    try:
        if len(value) == 8 and value.isdigit():
            parsed = datetime.strptime(value, "%Y%m%d")
        else:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is None:
        raise InvalidMessage(
            "wrong_type",
            f"{path} must be an ISO-8601 timestamp or yyyyMMdd date, got {value[:40]!r}",
            field_path=path,
            details={"expected": "timestamp", "got": value[:40]},
        )
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def date_at(text: str, path: str) -> date | None:
    """An optional calendar date (ISO date-time or ``yyyyMMdd``); None when empty or M3's zero date."""
    if text.strip() in ("", "0", "00000000"):
        return None
    moment = timestamp_at(text, path)
    return None if moment is None else moment.date()


def lmts_time(lmts: int) -> datetime | None:
    """The moment an M3 LMTS stands for (epoch ms, or the yyyyMMddHHmmssfff form); None when unreadable."""
    try:
        if lmts >= _LMTS_DIGITS_FORM:
            return datetime.strptime(str(lmts), "%Y%m%d%H%M%S%f").replace(tzinfo=UTC)
        if lmts > 0:
            return datetime.fromtimestamp(lmts / 1000, UTC)
    except (ValueError, OverflowError, OSError):
        return None
    return None


def version_of(lmts: str, variation: str, path: str) -> int:
    """``meta.version``: the LMTS when there is one, else the BOD variationID (see the module docstring).

    ``missing_field`` when neither is present, ``wrong_type`` when the one used is not an integer.
    """
    value = int_at(lmts, "LMTS") if lmts.strip() else int_at(variation, path)
    if value is None:
        raise InvalidMessage(
            "missing_field", f"{path} (or an M3 LMTS) is required to order the events", field_path=path
        )
    return value


# --------------------------------------------------------------------------------------------- meta


def event_id(entity: str, source_id: str, version: int) -> str:
    """The deterministic ``meta.event_id``: UUIDv5 of INFOR, entity, source id and version."""
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{SOURCE_SYSTEM}|{entity}|{source_id}|{version}"))


def meta(
    *,
    entity: str,
    source_id: str,
    version: int,
    occurred_at: datetime,
    ingested_at: datetime,
    correlation_id: str,
    causation_id: str | None,
    shop_id: str | None,
) -> dict[str, Any]:
    """The ``Meta`` datum of a canonical record from an Infor source."""
    return {
        "event_id": event_id(entity, source_id, version),
        "source_system": SOURCE_SYSTEM,
        "source_entity": entity,
        "source_id": source_id,
        "version": version,
        "occurred_at": occurred_at,
        "ingested_at": ingested_at,
        "correlation_id": correlation_id,
        "causation_id": causation_id,
        "shop_id": shop_id,
    }


def money(amount: Decimal, currency: str, path: str) -> dict[str, Any]:
    """A ``Money`` datum; ``invalid_format`` at ``path`` when the currency is not ISO-4217 shaped."""
    code = currency.strip().upper()
    if len(code) != 3 or not code.isalpha():
        raise InvalidMessage(
            "invalid_format",
            f"{path} currency must be an ISO 4217 code, got {currency[:10]!r}",
            field_path=f"{path}@currencyID",
        )
    return {"amount": amount, "currency": code}


# --------------------------------------------------------------------------------------- order keys


class OrderKeys(Protocol):
    """Finds the canonical ``order_key`` of an M3 order (see the module docstring)."""

    def by_erp_order(self, cono: str, erp_order_number: str) -> str | None:
        """The order_key linked to M3 order ``erp_order_number`` of company ``cono`` (may be ""), or None."""
        ...

    def by_reference(self, reference: str, cono: str = "") -> str | None:
        """The order_key of the shop order whose reference is ``reference`` (M3 CUOR), or None."""
        ...


class CustomerKeys(Protocol):
    """Finds the canonical ``customer_key`` of the shop customer an M3 customer stands for."""

    def by_erp_customer(self, cono: str, erp_customer_number: str) -> str | None:
        """The customer_key linked to M3 customer ``erp_customer_number`` of company ``cono``, or None."""
        ...


def find_order_key(keys: OrderKeys, cono: str, erp_order_number: str, reference: str = "") -> str | None:
    """The order_key by ORNO first (the link the sink wrote), else by the reference, else None."""
    if erp_order_number.strip():
        found = keys.by_erp_order(cono, erp_order_number)
        if found is not None:
            return found
    if reference.strip():
        return keys.by_reference(reference, cono)
    return None


def company_of(raw: RawInfor) -> str:
    """M3's company (CONO) of a raw record: the MI ``CONO`` field, else the part of the BOD's
    accounting entity (``{CONO}_{DIVI}`` or ``{CONO}``) before the underscore; "" when neither says."""
    if raw.mi is not None:
        return raw.mi.get("CONO", "").strip()
    if raw.bod is not None:
        return raw.bod.accounting_entity_id.strip().partition("_")[0]
    return ""


def shop_of(order_key: str) -> str | None:
    """The shop id part of ``{shop_id}:{id}`` (None when the key has no shop part)."""
    shop, sep, _ = order_key.partition(":")
    return shop if sep and shop else None


def prestashop_id(order_key: str) -> str | None:
    """The PrestaShop id part of ``{shop_id}:{id}``."""
    _, sep, local = order_key.partition(":")
    return local if sep and local else None


# ------------------------------------------------------------------------------------------ SKUs


class ItemSkus(Protocol):
    """Finds the shop SKU of an M3 item number (the product flows' table, read the other way)."""

    def sku_for(self, item_number: str) -> str | None:
        """The SKU the shops sell item ``item_number`` as, or None when no table names one."""
        ...


class ItemNumberIsSku:
    """The default :class:`ItemSkus`: no table, the item number is the SKU.

    Matches the default rules (``variants.item_number.source: table_then_sku``, ITNO = SKU upper-cased),
    so shops that use upper-case SKUs need no table.
    """

    def sku_for(self, item_number: str) -> str | None:
        """See :class:`ItemSkus`."""
        return None


def sku_of(skus: ItemSkus, item_number: str) -> str:
    """The SKU of ``item_number``: the table's when it names one, else the item number itself."""
    return skus.sku_for(item_number) or item_number


# ------------------------------------------------------------------------------------------- rules


@cache
def default_rules() -> Rules:
    """The packaged default rules, loaded on first use (never at import).

    The module-level flows use it because the runner's ``Flow`` carries no rules; a deployment with its
    own rules file builds its flows with the modules' ``build_flow(rules, ...)`` functions instead.
    """
    return load_rules(None)


def preview_context() -> FlowContext:
    """The FlowContext ``psinfor rules preview`` uses: a record that came from nowhere, at the epoch."""
    record = SourceRecord(topic="preview", partition=0, offset=0, key=b"preview", value=b"", timestamp_ms=0)
    return FlowContext(record=record, correlation_id="preview", source_event_id="preview")
