"""Small flows the processor-runtime tests run through the real worker (no tests in this module).

The worker is started as a subprocess (``python -m processors.main --flows
tests.integration.test_processor_runtime_flows:INVENTORY``), so the flows live in an importable module.
The inventory flow is deliberately simple: a JSON stock event becomes a canonical ``InventoryLevel``.
``CRASH_ON`` is the same flow with a planted bug, to prove that an unexpected error ends the worker.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, ValidationError

from pipeline.errors import InvalidMessage
from pipeline.records import Headers
from processors.runner import Flow, FlowContext
from schemas.codec import AvroDatum

EVENT_NAMESPACE = uuid.UUID("6d1c1f8e-0a4b-4a57-9f39-2f1d8a3c7b55")


class StockEvent(BaseModel):
    """A raw stock event as the tests write it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    item: str
    warehouse: str
    on_hand: Decimal
    allocated: Decimal
    version: int
    changed_at_ms: int


def event_id(item: str, warehouse: str, version: int) -> str:
    """The deterministic event id of one (item, warehouse, version); the tests compute it too."""
    return str(uuid.uuid5(EVENT_NAMESPACE, f"INFOR|stock|{item}@{warehouse}|{version}"))


def decode(raw: bytes, _headers: Headers) -> StockEvent:
    """JSON → StockEvent; anything else is InvalidMessage naming the field and what was expected."""
    try:
        payload = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidMessage("undecodable", f"not JSON: {exc}") from exc
    try:
        return StockEvent.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(str(part) for part in first["loc"]) or "<payload>"
        raise InvalidMessage("schema_violation", first["msg"], field_path=path) from exc


def to_record(event: StockEvent, context: FlowContext) -> AvroDatum:
    """The canonical InventoryLevel of one stock event."""
    changed_at = datetime.fromtimestamp(event.changed_at_ms / 1000, UTC)
    return {
        "meta": {
            "event_id": event_id(event.item, event.warehouse, event.version),
            "source_system": "INFOR",
            "source_entity": "test-stock",
            "source_id": f"{event.item}@{event.warehouse}",
            "version": event.version,
            "occurred_at": changed_at,
            "ingested_at": context.ingested_at,
            "correlation_id": context.correlation_id,
            "causation_id": None,
            "shop_id": None,
        },
        "sku": event.item,
        "erp_item_number": event.item,
        "warehouse": event.warehouse,
        "on_hand": event.on_hand,
        "allocated": event.allocated,
        "available": event.on_hand - event.allocated,
        "as_of": changed_at,
        "external_ids": {"infor": event.item},
    }


def _key(event: StockEvent) -> str:
    return event.item


def _version(event: StockEvent) -> int:
    return event.version


INVENTORY: Flow[StockEvent] = Flow(
    name="test_inventory",
    sources=("raw.infor.inventory",),
    output="canonical.inventory.v1",
    record="InventoryLevel",
    decode=decode,
    to_record=to_record,
    key=_key,
    version=_version,
)


def _buggy(event: StockEvent, context: FlowContext) -> AvroDatum:
    if event.item == "BUG":
        raise ZeroDivisionError("a planted bug in to_record")
    return to_record(event, context)


CRASH_ON: Flow[StockEvent] = Flow(
    name="test_inventory_bug",
    sources=("raw.infor.inventory",),
    output="canonical.inventory.v1",
    record="InventoryLevel",
    decode=decode,
    to_record=_buggy,
    key=_key,
    version=_version,
)
