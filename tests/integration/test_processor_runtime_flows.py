"""Small flows the processor-runtime tests run through the real worker (no tests in this module).

The worker is started as a subprocess (``python -m processors.main --flows
tests.integration.test_processor_runtime_flows:INVENTORY``), so the flows live in an importable module.
The inventory flow is deliberately simple: a JSON stock event becomes a canonical ``InventoryLevel``.
``CRASH_ON`` is the same flow with a planted bug, to prove that an unexpected error ends the worker.
``SPREAD`` exercises the runner's :data:`~processors.runner.SKIP` and multi-emit: one event states an
item's stock in several warehouses and becomes one record per warehouse, keyed ``{item}@{warehouse}``;
an event with ``event_type: notification`` carries nothing and is skipped at decode.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, ValidationError

from pipeline.errors import InvalidMessage
from pipeline.records import Headers
from processors.runner import SKIP, Flow, FlowContext, Skipped
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


SHADOW: Flow[StockEvent] = dataclasses.replace(
    INVENTORY, name="test_inventory_shadow", output="canonical.shipment.v1"
)
"""INVENTORY again under another name and output: two agents reading one source topic in one worker."""


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


class StockSpread(BaseModel):
    """One item's stock in several warehouses at one version."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    item: str
    version: int
    changed_at_ms: int
    warehouses: dict[str, Decimal]
    """Warehouse → on hand; empty means nothing to emit."""


def decode_spread(raw: bytes, headers: Headers) -> StockSpread | Skipped:
    """A notification (``event_type`` header) is SKIP whatever its bytes; else JSON → StockSpread."""
    if ("event_type", b"notification") in headers:
        return SKIP
    try:
        return StockSpread.model_validate_json(raw)
    except ValidationError as exc:
        raise InvalidMessage("schema_violation", exc.errors()[0]["msg"]) from exc


def spread_records(event: StockSpread, context: FlowContext) -> list[AvroDatum]:
    """One InventoryLevel per warehouse, in warehouse order (none when the event names none)."""
    assert context.rules.model.currency.base_currency  # the rules main() loaded reach the flow
    return [
        to_record(
            StockEvent(
                item=event.item,
                warehouse=warehouse,
                on_hand=on_hand,
                allocated=Decimal(0),
                version=event.version,
                changed_at_ms=event.changed_at_ms,
            ),
            context,
        )
        for warehouse, on_hand in sorted(event.warehouses.items())
    ]


def spread_key(datum: AvroDatum) -> str:
    """``{sku}@{warehouse}``: each warehouse's record has its own key."""
    return f"{datum['sku']}@{datum['warehouse']}"


SPREAD: Flow[StockSpread] = Flow(
    name="test_inventory_spread",
    sources=("raw.infor.items",),
    output="canonical.inventory.v1",
    record="InventoryLevel",
    decode=decode_spread,
    to_record=spread_records,
    key=lambda event: event.item,
    version=lambda event: event.version,
    record_key=spread_key,
)
