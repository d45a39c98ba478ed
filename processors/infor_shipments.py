"""Infor shipments → ``canonical.shipment.v1``: Sync.Shipment BODs and M3 MWS410MI delivery heads.

Input: ``raw.infor.shipments``, keyed by delivery number (DLIX). A delivery references its order by
M3 order number (ORNO; ``RIDN`` in MWS410MI), which :class:`~processors.infor_source.OrderKeys` turns
into the ``order_key``; a delivery of an order the lookup does not know is not a shop order and is
skipped. Tracking numbers come from the BOD's tracking paths (header, units, items) or MWS410MI ETRN;
each ``ShipmentUnit`` becomes a package. Item numbers become SKUs through
:class:`~processors.infor_source.ItemSkus`. An MI head carries no lines (MWS411MI has them), so its
record has none.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from connectors.infor.bod import shipment, user_area
from pipeline.records import Headers
from processors.infor_source import (
    ItemNumberIsSku,
    ItemSkus,
    OrderKeys,
    RawInfor,
    company_of,
    find_order_key,
    int_at,
    meta,
    prestashop_id,
    preview_context,
    read_raw,
    required,
    required_decimal,
    shop_of,
    sku_of,
    timestamp_at,
    version_of,
)
from processors.runner import Flow, FlowContext
from rules import preview
from rules.engine import Rules
from schemas.codec import AvroDatum

NAME = "infor_shipments"
SOURCE_TOPIC = "raw.infor.shipments"
OUTPUT_TOPIC = "canonical.shipment.v1"
RECORD = "Shipment"

_HEAD = "Shipment/ShipmentHeader"


@dataclass(frozen=True)
class ShippedLine:
    """One delivered order line: M3 item number, order line number, quantity."""

    item_number: str
    line_number: int | None
    quantity: Decimal


@dataclass(frozen=True)
class InforShipment:
    """The facts of one M3 delivery event."""

    source_entity: str
    shipment_id: str
    erp_order_number: str
    carrier_code: str
    carrier_name: str
    tracking_numbers: tuple[str, ...]
    packages: tuple[tuple[str, str | None], ...]
    """(package id, tracking number) per parcel."""
    shipped_at: datetime
    lines: tuple[ShippedLine, ...]
    version: int
    cono: str = ""
    """M3 company (CONO) the record comes from; "" when it does not say (set by ``decode``)."""
    order_key: str | None = None


def from_raw(raw: RawInfor) -> InforShipment:
    """The input model of a decoded raw record (BOD or MWS410MI head)."""
    if raw.bod is not None:
        bod = raw.bod
        view = shipment(bod)
        noun = bod.nouns[0]
        header = noun.find("ShipmentHeader")
        extensions = user_area(header) if header is not None else {}
        dlix = required(view.document_id, f"{_HEAD}/DocumentID/ID")
        packages = []
        for index, unit in enumerate(noun.all("ShipmentUnit"), start=1):
            tracking = unit.text_at("TrackingID") or None
            packages.append((unit.text_at("ID") or f"{dlix}-{index}", tracking))
        lines = tuple(
            ShippedLine(
                item_number=required(sku, f"Shipment/ShipmentItem[{index}]/ItemID/ID"),
                line_number=int_at(line_no, f"Shipment/ShipmentItem[{index}]/LineNumber"),
                quantity=_quantity(noun, index),
            )
            for index, (sku, _, line_no) in enumerate(view.items)
        )
        carrier = view.carrier or extensions.get("m3.MODL", "")
        name = header.text_at("CarrierParty/Name") if header is not None else ""
        shipped = view.shipped_at or (header.text_at("DocumentDateTime") if header is not None else "")
        return InforShipment(
            source_entity=bod.document_name,
            shipment_id=dlix,
            erp_order_number=required(view.order_id, f"{_HEAD}/DocumentReference/DocumentID/ID"),
            carrier_code=required(carrier, f"{_HEAD}/CarrierParty/PartyIDs/ID"),
            carrier_name=name or carrier,
            tracking_numbers=view.tracking_numbers,
            packages=tuple(packages),
            shipped_at=_at(timestamp_at(shipped, f"{_HEAD}/ActualShipDateTime")),
            lines=lines,
            version=version_of(
                extensions.get("m3.LMTS", ""), view.variation_id, f"{_HEAD}/DocumentID/ID@variationID"
            ),
        )
    record = raw.mi or {}
    dlix = required(record.get("DLIX", ""), "DLIX")
    tracking = record.get("ETRN", "").strip()
    carrier = record.get("FWNO", "").strip() or record.get("MODL", "").strip()
    return InforShipment(
        source_entity=raw.program or "MWS410MI",
        shipment_id=dlix,
        erp_order_number=required(record.get("RIDN", ""), "RIDN"),
        carrier_code=required(carrier, "FWNO"),
        carrier_name=carrier,
        tracking_numbers=(tracking,) if tracking else (),
        packages=(),
        shipped_at=_at(_mi_time(record.get("DSDT", ""), record.get("DSHM", ""))),
        lines=(),
        version=version_of(record.get("LMTS", "") or raw.header("lmts"), "", "LMTS"),
    )


def _quantity(noun: Any, index: int) -> Decimal:
    item = list(noun.all("ShipmentItem"))[index]
    text = item.text_at("ShippedQuantity") or item.text_at("OrderQuantity")
    return required_decimal(text, f"Shipment/ShipmentItem[{index}]/ShippedQuantity")


def _mi_time(dsdt: str, dshm: str) -> datetime | None:
    moment = timestamp_at(dsdt, "DSDT")
    hhmm = dshm.strip().zfill(4)
    if moment is not None and hhmm.isdigit() and len(hhmm) == 4:
        moment = moment.replace(hour=int(hhmm[:2]) % 24, minute=int(hhmm[2:]) % 60)
    return moment


def _at(moment: datetime | None) -> datetime:
    assert moment is not None  # timestamp_at raises for a missing required value
    return moment


def to_shipment(event: InforShipment, skus: ItemSkus, context: FlowContext) -> AvroDatum | None:
    """The ``Shipment`` datum, or None when the delivery's order is not a shop order."""
    order_key = event.order_key
    if order_key is None:
        return None
    external = {"infor": event.erp_order_number}
    local = prestashop_id(order_key)
    if local is not None:
        external["prestashop"] = local
    return {
        "meta": meta(
            entity=event.source_entity,
            source_id=event.shipment_id,
            version=event.version,
            occurred_at=event.shipped_at,
            ingested_at=context.ingested_at,
            correlation_id=context.correlation_id,
            causation_id=None,
            shop_id=shop_of(order_key),
        ),
        "order_key": order_key,
        "shipment_id": event.shipment_id,
        "erp_order_number": event.erp_order_number,
        "carrier": {"code": event.carrier_code, "reference_id": None, "name": event.carrier_name},
        "tracking_numbers": list(event.tracking_numbers),
        "tracking_url": None,
        "shipped_at": event.shipped_at,
        "lines": [
            {
                "sku": sku_of(skus, line.item_number),
                "erp_item_number": line.item_number,
                "erp_line_number": line.line_number,
                "quantity": line.quantity,
            }
            for line in event.lines
        ],
        "packages": [
            {"package_id": package_id, "tracking_number": tracking, "weight_kg": None}
            for package_id, tracking in event.packages
        ],
        "external_ids": external,
    }


def build_flow(order_keys: OrderKeys, skus: ItemSkus | None = None) -> Flow[InforShipment]:
    """The flow with this order-key lookup and SKU table (None: the item number is the SKU)."""
    table = skus if skus is not None else ItemNumberIsSku()

    def decode(data: bytes, headers: Headers) -> InforShipment:
        raw = read_raw(data, headers, nouns=("Shipment",))
        event = replace(from_raw(raw), cono=company_of(raw))
        return replace(event, order_key=find_order_key(order_keys, event.cono, event.erp_order_number))

    return Flow(
        name=NAME,
        sources=(SOURCE_TOPIC,),
        output=OUTPUT_TOPIC,
        record=RECORD,
        decode=decode,
        to_record=lambda event, context: to_shipment(event, table, context),
        key=lambda event: event.order_key or "",
        version=lambda event: event.version,
    )


def preview_record(raw: bytes, rules: Rules) -> dict[str, Any]:
    """``psinfor rules preview --flow infor_shipments``; the order key is the placeholder ``?:<ORNO>``."""
    del rules  # the shipment flow uses no rule beyond the SKU table
    event = from_raw(read_raw(raw, (), nouns=("Shipment",)))
    datum = to_shipment(
        replace(event, order_key=f"?:{event.erp_order_number}"), ItemNumberIsSku(), preview_context()
    )
    assert datum is not None
    return datum


preview.register_flow(NAME, preview_record)
