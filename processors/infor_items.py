"""Infor items → ``canonical.product.v1``: Sync.ItemMaster BODs and M3 MMS200MI item records.

Input: ``raw.infor.items``, keyed by item number (ITNO). The record is keyed by SKU (the item number
unless the SKU table names another). The list price is M3's sales price (``SAPR``) in the rules' base
currency (M3 keeps item prices in the company currency); an item without one is refused
(``missing_field``): the canonical product requires a price and inventing 0 would overwrite the shop's.
Active when M3's item status is 20 (active) and the Sync is not a Delete. The name is the item
description in the BOD's ``languageID`` (``en`` when not stated).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from connectors.infor.bod import user_area
from pipeline.records import Headers
from processors.infor_source import (
    ItemNumberIsSku,
    ItemSkus,
    RawInfor,
    decimal_at,
    default_rules,
    lmts_time,
    meta,
    money,
    preview_context,
    read_raw,
    required,
    required_decimal,
    sku_of,
    timestamp_at,
    version_of,
)
from processors.runner import Flow, FlowContext
from rules import preview
from rules.engine import Rules
from schemas.codec import AvroDatum

NAME = "infor_items"
SOURCE_TOPIC = "raw.infor.items"
OUTPUT_TOPIC = "canonical.product.v1"
RECORD = "Product"

_HEAD = "ItemMaster/ItemMasterHeader"


@dataclass(frozen=True)
class InforItem:
    """The facts of one M3 item-master event."""

    source_entity: str
    item_number: str
    name: str
    language: str
    status: str
    deleted: bool
    unit: str | None
    item_group: str | None
    price: Decimal
    weight_kg: Decimal | None
    changed_at: datetime
    version: int


def from_raw(raw: RawInfor) -> InforItem:
    """The input model of a decoded raw record (BOD or MMS200MI)."""
    if raw.bod is not None:
        bod = raw.bod
        header = bod.nouns[0].find("ItemMasterHeader")
        if header is None:
            required("", _HEAD)
        assert header is not None
        extensions = user_area(header)
        item_id = header.find("ItemID/ID")
        description = header.find("Description")
        weight = header.find("PackagingUnit/GrossWeightMeasure")
        lmts = extensions.get("LMTS", "") or extensions.get("m3.LMTS", "")
        return InforItem(
            source_entity=bod.document_name,
            item_number=required(item_id.text if item_id is not None else "", f"{_HEAD}/ItemID/ID"),
            name=description.text.strip() if description is not None else "",
            language=(description.attr("languageID") if description is not None else "") or "en",
            status=header.text_at("ItemStatus/Code"),
            deleted=bod.action_code == "Delete",
            unit=header.text_at("BaseUOMCode") or None,
            item_group=extensions.get("ITGR") or None,
            price=required_decimal(extensions.get("SAPR", ""), f"{_HEAD}/UserArea/SAPR"),
            weight_kg=_kilograms(
                weight.text if weight is not None else "",
                weight.attr("unitCode") if weight is not None else "",
                f"{_HEAD}/PackagingUnit/GrossWeightMeasure",
            ),
            changed_at=_changed(lmts, bod.creation_datetime, "ApplicationArea/CreationDateTime"),
            version=version_of(
                lmts,
                item_id.attr("variationID") if item_id is not None else "",
                f"{_HEAD}/ItemID/ID@variationID",
            ),
        )
    record = raw.mi or {}
    lmts = record.get("LMTS", "") or raw.header("lmts")
    return InforItem(
        source_entity=raw.program or "MMS200MI",
        item_number=required(record.get("ITNO", ""), "ITNO"),
        name=record.get("ITDS", "").strip(),
        language="en",
        status=record.get("STAT", "").strip(),
        deleted=False,
        unit=record.get("UNMS", "").strip() or None,
        item_group=record.get("ITGR", "").strip() or None,
        price=required_decimal(record.get("SAPR", ""), "SAPR"),
        weight_kg=decimal_at(record.get("GRWE", ""), "GRWE", optional=True),
        changed_at=_changed(lmts, raw.header("received_at"), "received_at"),
        version=version_of(lmts, "", "LMTS"),
    )


def _kilograms(text: str, unit: str, path: str) -> Decimal | None:
    value = decimal_at(text, path, optional=True)
    if value is None:
        return None
    return value / 1000 if unit.strip().upper() in ("G", "GRM") else value


def _changed(lmts: str, fallback: str, path: str) -> datetime:
    moment = lmts_time(int(lmts)) if lmts.strip().isdigit() else None
    if moment is None:
        moment = timestamp_at(fallback, path)
    assert moment is not None
    return moment


def to_product(event: InforItem, rules: Rules, skus: ItemSkus, context: FlowContext) -> AvroDatum:
    """The ``Product`` datum (price in the rules' base currency, at the wire scale)."""
    currency = rules.currency
    return {
        "meta": meta(
            entity=event.source_entity,
            source_id=event.item_number,
            version=event.version,
            occurred_at=event.changed_at,
            ingested_at=context.ingested_at,
            correlation_id=context.correlation_id,
            causation_id=None,
            shop_id=None,
        ),
        "sku": sku_of(skus, event.item_number),
        "product_id": None,
        "variant_id": None,
        "names": {event.language: event.name} if event.name else {},
        "gtin": None,
        "mpn": None,
        "price": money(currency.quantize(event.price), currency.base_currency, "SAPR"),
        "weight_kg": event.weight_kg,
        "active": event.status == "20" and not event.deleted,
        "attributes": [],
        "erp_item_number": event.item_number,
        "unit_of_measure": event.unit,
        "item_group": event.item_group,
        "external_ids": {"infor": event.item_number},
    }


def build_flow(rules: Rules | None = None, skus: ItemSkus | None = None) -> Flow[InforItem]:
    """The flow with these rules (None: the packaged default, on first event) and SKU table."""
    table = skus if skus is not None else ItemNumberIsSku()

    def decode(data: bytes, headers: Headers) -> InforItem:
        return from_raw(read_raw(data, headers, nouns=("ItemMaster",)))

    return Flow(
        name=NAME,
        sources=(SOURCE_TOPIC,),
        output=OUTPUT_TOPIC,
        record=RECORD,
        decode=decode,
        to_record=lambda event, context: to_product(event, rules or default_rules(), table, context),
        key=lambda event: sku_of(table, event.item_number),
        version=lambda event: event.version,
    )


FLOW = build_flow()
"""The registered flow (default rules, item number = SKU)."""


def preview_record(raw: bytes, rules: Rules) -> dict[str, Any]:
    """``psinfor rules preview --flow infor_items``."""
    event = from_raw(read_raw(raw, (), nouns=("ItemMaster",)))
    return to_product(event, rules, ItemNumberIsSku(), preview_context())


preview.register_flow(NAME, preview_record)
