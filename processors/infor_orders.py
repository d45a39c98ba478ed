"""Infor order status → ``canonical.order-status.v1``: Sync.SalesOrder BODs and M3 OIS100MI order heads.

Input: ``raw.infor.salesorders``, keyed by M3 order number (ORNO). The status is M3's: the head's lowest
and highest line status (ORSL/ORST, in the BOD's UserArea as ``m3.ORSL``/``m3.ORST``) and the order
stop (OBLC), mapped to the three canonical dimensions by ``rules.status.from_m3`` (CANONICAL.md's M3
table). M3 says nothing about payment (invoice events drive it), so ``payment_status`` is ``UNKNOWN``:
"not stated by this source"; subscribers merge each dimension forward (``rules.status.merge``), so an
unstated or late dimension never moves an order backwards. A Sync with ``actionCode="Delete"`` is the
order's deletion in M3: lifecycle CANCELLED.

Output key: ``order_key`` via :class:`~processors.infor_source.OrderKeys` (ORNO, else CUOR = shop
reference); an order the lookup does not know is not a shop order and is skipped (module docstring of
:mod:`processors.infor_source`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from pipeline.errors import InvalidMessage
from pipeline.records import Headers
from processors.infor_source import (
    OrderKeys,
    RawInfor,
    company_of,
    default_rules,
    find_order_key,
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
from rules.canonical_status import Lifecycle
from rules.engine import Rules
from rules.status import StatusUpdate
from schemas.codec import AvroDatum

NAME = "infor_order_status"
SOURCE_TOPIC = "raw.infor.salesorders"
OUTPUT_TOPIC = "canonical.order-status.v1"
RECORD = "OrderStatusChange"

_HEAD = "SalesOrder/SalesOrderHeader"


@dataclass(frozen=True)
class InforOrderStatus:
    """The facts of one M3 order-status event, from a BOD or an MI head record."""

    source_entity: str
    erp_order_number: str
    customer_reference: str
    orsl: str
    orst: str
    order_stop: str
    status_name: str | None
    deleted: bool
    version: int
    changed_at: datetime
    cono: str = ""
    """M3 company (CONO) the record comes from; "" when it does not say (set by ``decode``)."""
    order_key: str | None = None
    """The canonical order key, when the lookup knows the order (set by :func:`decode`)."""


def decode(data: bytes, headers: Headers, order_keys: OrderKeys) -> InforOrderStatus:
    """The event in ``data`` with its order key looked up; InvalidMessage with the field path for what
    is missing or mistyped."""
    raw = read_raw(data, headers, nouns=("SalesOrder",))
    event = replace(from_raw(raw), cono=company_of(raw))
    key = find_order_key(order_keys, event.cono, event.erp_order_number, event.customer_reference)
    return replace(event, order_key=key)


def from_raw(raw: RawInfor) -> InforOrderStatus:
    """The input model of a decoded raw record (BOD or MI)."""
    if raw.bod is not None:
        from connectors.infor.bod import sales_order

        bod = raw.bod
        order = sales_order(bod)
        extensions = order.extensions
        header = bod.nouns[0].find("SalesOrderHeader")
        effective = header.text_at("Status/EffectiveDateTime") if header is not None else ""
        deleted = bod.action_code == "Delete"
        lmts = extensions.get("m3.LMTS", "")
        return InforOrderStatus(
            source_entity=bod.document_name,
            erp_order_number=required(order.document_id, f"{_HEAD}/DocumentID/ID"),
            customer_reference=order.customer_reference,
            orsl="" if deleted else required(extensions.get("m3.ORSL", ""), f"{_HEAD}/UserArea/m3.ORSL"),
            orst="" if deleted else required(extensions.get("m3.ORST", ""), f"{_HEAD}/UserArea/m3.ORST"),
            order_stop=extensions.get("m3.OBLC", ""),
            status_name=order.status or None,
            deleted=deleted,
            version=version_of(lmts, order.variation_id, f"{_HEAD}/DocumentID/ID@variationID"),
            changed_at=_changed_at(effective, bod.creation_datetime, lmts),
        )
    record = raw.mi or {}
    lmts = record.get("LMTS", "") or raw.header("lmts")
    return InforOrderStatus(
        source_entity=raw.program or "OIS100MI",
        erp_order_number=required(record.get("ORNO", ""), "ORNO"),
        customer_reference=record.get("CUOR", "").strip(),
        orsl=required(record.get("ORSL", ""), "ORSL"),
        orst=required(record.get("ORST", ""), "ORST"),
        order_stop=record.get("OBLC", ""),
        status_name=None,
        deleted=False,
        version=version_of(lmts, "", "LMTS"),
        changed_at=_changed_at("", raw.header("received_at"), lmts),
    )


def _changed_at(effective: str, fallback: str, lmts: str) -> datetime:
    """The status's effective time, else the LMTS's moment, else the BOD creation / receipt time."""
    found = timestamp_at(effective, f"{_HEAD}/Status/EffectiveDateTime", optional=True)
    if found is None and lmts.strip().isdigit():
        found = lmts_time(int(lmts))
    if found is None:
        found = timestamp_at(fallback, "ApplicationArea/CreationDateTime")
    assert found is not None
    return found


def to_order_status(event: InforOrderStatus, rules: Rules, context: FlowContext) -> AvroDatum | None:
    """The ``OrderStatusChange`` datum, or None when the order is not a shop order (no order key).

    Raises InvalidMessage ``wrong_type`` (ORSL/ORST not two digits) or ``unmapped_status``.
    """
    order_key = event.order_key
    if order_key is None:
        return None
    if event.deleted:
        update, code = StatusUpdate(lifecycle=Lifecycle.CANCELLED), "deleted"
    else:
        resolved = rules.status.from_m3(event.orsl, event.orst, event.order_stop)
        update, code = resolved.update, resolved.code
    external = {"infor": event.erp_order_number}
    local = prestashop_id(order_key)
    if local is not None:
        external["prestashop"] = local
    return {
        "meta": meta(
            entity=event.source_entity,
            source_id=event.erp_order_number,
            version=event.version,
            occurred_at=event.changed_at,
            ingested_at=context.ingested_at,
            correlation_id=context.correlation_id,
            causation_id=None,
            shop_id=shop_of(order_key),
        ),
        "order_key": order_key,
        "payment_status": str(update.payment) if update.payment else "UNKNOWN",
        "fulfillment_status": str(update.fulfillment) if update.fulfillment else "UNKNOWN",
        "lifecycle": str(update.lifecycle) if update.lifecycle else "UNKNOWN",
        "source_status": {"system": "INFOR", "code": code, "name": event.status_name},
        "erp_order_number": event.erp_order_number,
        "changed_at": event.changed_at,
        "external_ids": external,
    }


def build_flow(order_keys: OrderKeys, rules: Rules | None = None) -> Flow[InforOrderStatus]:
    """The flow with this lookup and these rules (None: the packaged default, loaded on first event)."""

    def decode_with_keys(data: bytes, headers: Headers) -> InforOrderStatus:
        return decode(data, headers, order_keys)

    def to_record(event: InforOrderStatus, context: FlowContext) -> AvroDatum | None:
        return to_order_status(event, rules or default_rules(), context)

    return Flow(
        name=NAME,
        sources=(SOURCE_TOPIC,),
        output=OUTPUT_TOPIC,
        record=RECORD,
        decode=decode_with_keys,
        to_record=to_record,
        key=lambda event: event.order_key or "",
        version=lambda event: event.version,
    )


def preview_record(raw: bytes, rules: Rules) -> dict[str, Any]:
    """``psinfor rules preview --flow infor_order_status``: the record, with ``?:<CUOR or ORNO>`` as key.

    The preview cannot see the pipeline's order links, so it links every order to a placeholder key.
    """
    event = from_raw(read_raw(raw, (), nouns=("SalesOrder",)))
    placeholder = f"?:{event.customer_reference or event.erp_order_number}"
    datum = to_order_status(replace(event, order_key=placeholder), rules, preview_context())
    if datum is None:  # pragma: no cover - the placeholder link always resolves
        raise InvalidMessage("unknown_order", "no order key")
    return datum


preview.register_flow(NAME, preview_record)
