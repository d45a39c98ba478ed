"""Infor stock → ``canonical.inventory.v1``: Sync.InventoryCount BODs and M3 MI balances.

Input: ``raw.infor.inventory``, keyed ``{WHLO}-{ITNO}``; BODs from ION and OIS100MI LstNewBalances /
MMS200MI GetItmWhsBal records from the poller. One record per item and warehouse: on hand (STQT or the
BOD's Quantity), allocated (ALQT, 0 when not stated) and available (AV01, M3's own figure, else on
hand - allocated). A BOD counting several items is refused (``multi_line_inventory``): the flow emits
one record per event, and M3 publishes one balance per BOD. Output key: the SKU (the item number unless
the SKU table names another). Version: LMTS, else variationID, else the count's time in epoch ms (a
balance read later is newer).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from connectors.infor.bod import user_area
from pipeline.errors import InvalidMessage
from pipeline.records import Headers
from processors.infor_source import (
    ItemNumberIsSku,
    ItemSkus,
    RawInfor,
    decimal_at,
    int_at,
    lmts_time,
    meta,
    preview_context,
    read_raw,
    required,
    required_decimal,
    sku_of,
    timestamp_at,
)
from processors.runner import Flow, FlowContext
from rules import preview
from rules.engine import Rules
from schemas.codec import AvroDatum

NAME = "infor_inventory"
SOURCE_TOPIC = "raw.infor.inventory"
OUTPUT_TOPIC = "canonical.inventory.v1"
RECORD = "InventoryLevel"

_LINE = "InventoryCount/InventoryCountLine"


@dataclass(frozen=True)
class InforBalance:
    """One item's balance in one warehouse, as M3 stated it."""

    source_entity: str
    item_number: str
    warehouse: str
    on_hand: Decimal
    allocated: Decimal
    available: Decimal
    as_of: datetime
    version: int


def from_raw(raw: RawInfor) -> InforBalance:
    """The input model of a decoded raw record (BOD or MI balance)."""
    if raw.bod is not None:
        bod = raw.bod
        lines = [line for noun in bod.nouns for line in noun.all("InventoryCountLine")]
        if len(lines) != 1:
            raise InvalidMessage(
                "multi_line_inventory" if lines else "missing_field",
                f"{bod.document_name} must count exactly one item, it counts {len(lines)}",
                field_path=_LINE,
            )
        line = lines[0]
        extensions = user_area(line)
        header = bod.nouns[0].find("InventoryCountHeader")
        stated = header.text_at("DocumentDateTime") if header is not None else ""
        return _balance(
            entity=bod.document_name,
            item=required(line.text_at("Item/ItemID/ID"), f"{_LINE}/Item/ItemID/ID"),
            warehouse=required(
                line.text_at("WarehouseLocation/ID") or bod.location_id,
                f"{_LINE}/WarehouseLocation/ID",
            ),
            on_hand=required_decimal(line.text_at("Quantity"), f"{_LINE}/Quantity"),
            allocated=decimal_at(extensions.get("m3.ALQT", ""), f"{_LINE}/UserArea/m3.ALQT", optional=True),
            available=decimal_at(extensions.get("m3.AV01", ""), f"{_LINE}/UserArea/m3.AV01", optional=True),
            lmts=extensions.get("m3.LMTS", ""),
            variation=bod.variation_id,
            stated=stated or bod.creation_datetime,
            stated_path="InventoryCount/InventoryCountHeader/DocumentDateTime",
        )
    record = raw.mi or {}
    return _balance(
        entity=raw.program or "MMS200MI",
        item=required(record.get("ITNO", ""), "ITNO"),
        warehouse=required(record.get("WHLO", ""), "WHLO"),
        on_hand=required_decimal(record.get("STQT", ""), "STQT"),
        allocated=decimal_at(record.get("ALQT", ""), "ALQT", optional=True),
        available=decimal_at(record.get("AV01", ""), "AV01", optional=True),
        lmts=record.get("LMTS", "") or raw.header("lmts"),
        variation="",
        stated=raw.header("received_at"),
        stated_path="received_at",
    )


def _balance(
    *,
    entity: str,
    item: str,
    warehouse: str,
    on_hand: Decimal,
    allocated: Decimal | None,
    available: Decimal | None,
    lmts: str,
    variation: str,
    stated: str,
    stated_path: str,
) -> InforBalance:
    lmts_value = int_at(lmts, "LMTS")
    as_of = lmts_time(lmts_value) if lmts_value is not None else None
    if as_of is None:
        as_of = timestamp_at(stated, stated_path)
    assert as_of is not None
    version = lmts_value if lmts_value is not None else int_at(variation, "variationID")
    if version is None:
        version = int(as_of.timestamp() * 1000)
    held = allocated if allocated is not None else Decimal(0)
    return InforBalance(
        source_entity=entity,
        item_number=item,
        warehouse=warehouse,
        on_hand=on_hand,
        allocated=held,
        available=available if available is not None else on_hand - held,
        as_of=as_of,
        version=version,
    )


def to_inventory(event: InforBalance, skus: ItemSkus, context: FlowContext) -> AvroDatum:
    """The ``InventoryLevel`` datum, flagged ``stock_drop`` when the available quantity fell beyond the
    rules' threshold since the last level the worker emitted for the SKU and warehouse (advisory: it
    depends on the worker's history, see ``processors.history``)."""
    source_id = f"{event.warehouse}-{event.item_number}"
    sku = sku_of(skus, event.item_number)
    drop = context.rules.anomalies.stock_drop(
        sku, event.warehouse, context.history.last_available(sku, event.warehouse), event.available
    )
    flags = [] if drop is None else [{"code": drop.code, "score": drop.score, "reason": drop.reason}]
    return {
        "meta": meta(
            entity=event.source_entity,
            source_id=source_id,
            version=event.version,
            occurred_at=event.as_of,
            ingested_at=context.ingested_at,
            correlation_id=context.correlation_id,
            causation_id=None,
            shop_id=None,
        ),
        "sku": sku,
        "erp_item_number": event.item_number,
        "warehouse": event.warehouse,
        "on_hand": event.on_hand,
        "allocated": event.allocated,
        "available": event.available,
        "as_of": event.as_of,
        "external_ids": {"infor": event.item_number},
        "anomalies": flags,
    }


def build_flow(skus: ItemSkus | None = None) -> Flow[InforBalance]:
    """The flow with this SKU table (None: the item number is the SKU)."""
    table = skus if skus is not None else ItemNumberIsSku()

    def decode(data: bytes, headers: Headers) -> InforBalance:
        return from_raw(read_raw(data, headers, nouns=("InventoryCount",)))

    return Flow(
        name=NAME,
        sources=(SOURCE_TOPIC,),
        output=OUTPUT_TOPIC,
        record=RECORD,
        decode=decode,
        to_record=lambda event, context: to_inventory(event, table, context),
        key=lambda event: sku_of(table, event.item_number),
        version=lambda event: event.version,
    )


FLOW = build_flow()
"""The registered flow (item number = SKU)."""


def preview_record(raw: bytes, rules: Rules) -> dict[str, Any]:
    """``psinfor rules preview --flow infor_inventory``."""
    del rules
    headers = (("received_at", b"1970-01-01T00:00:00.000Z"),)
    return to_inventory(
        from_raw(read_raw(raw, headers, nouns=("InventoryCount",))), ItemNumberIsSku(), preview_context()
    )


preview.register_flow(NAME, preview_record)
