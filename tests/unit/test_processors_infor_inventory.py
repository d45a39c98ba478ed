"""Infor inventory flow: Sync.InventoryCount BODs and MI balances → canonical.inventory.v1."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from pipeline.errors import InvalidMessage
from pipeline.records import Headers
from processors import infor_inventory
from processors.history import AnomalyHistory
from processors.infor_source import EVENT_NAMESPACE
from processors.runner import Skipped
from rules.engine import load_rules
from rules.preview import preview
from tests.unit.test_processors_infor_support import assert_valid, context, fixture, sandbox_bods

MI_HEADERS: Headers = (
    ("source", b"infor-mi"),
    ("program", b"MMS200MI"),
    ("transaction", b"GetItmWhsBal"),
    ("received_at", b"2025-03-05T08:07:00.000Z"),
)


def _run(raw: bytes, headers: Headers = ()) -> dict[str, Any]:
    flow = infor_inventory.FLOW
    event = flow.decode(raw, headers)
    assert not isinstance(event, Skipped)
    datum = flow.to_record(event, context(headers))
    assert datum is None or isinstance(datum, dict)
    assert datum is not None
    assert_valid("InventoryLevel", datum)
    assert flow.key(event) == datum["sku"]
    assert flow.version(event) == datum["meta"]["version"]
    return datum


def _figures(datum: dict[str, Any]) -> tuple[Decimal, Decimal, Decimal]:
    return datum["on_hand"], datum["allocated"], datum["available"]


def test_reference_fixture_field_by_field() -> None:
    datum = _run(fixture("bod/SyncInventoryCount.xml"))
    assert datum["sku"] == "SKU-1001"
    assert datum["erp_item_number"] == "SKU-1001"
    assert datum["warehouse"] == "001"
    assert (datum["on_hand"], datum["allocated"], datum["available"]) == (
        Decimal(123),
        Decimal(0),
        Decimal(123),
    )
    assert datum["as_of"] == datetime(2025, 3, 5, 8, 5, tzinfo=UTC)
    meta = datum["meta"]
    assert isinstance(meta, dict)
    assert meta["version"] == 1  # the BODID's variation part: the fixture's id has no variationID
    assert meta["source_id"] == "001-SKU-1001"
    assert meta["event_id"] == str(uuid.uuid5(EVENT_NAMESPACE, "INFOR|Sync.InventoryCount|001-SKU-1001|1"))


def test_mi_balance_fixture_uses_m3s_available() -> None:
    record = json.loads(fixture("m3/MMS200MI_GetItmWhsBal_ok.json"))["results"][0]["records"][0]
    datum = _run(json.dumps(record).encode(), MI_HEADERS)
    assert (datum["on_hand"], datum["allocated"], datum["available"]) == (
        Decimal(125),
        Decimal(10),
        Decimal(115),
    )
    assert datum["as_of"] == datetime(2025, 3, 5, 8, 7, tzinfo=UTC)  # no LMTS: when it was read
    meta = datum["meta"]
    assert isinstance(meta, dict)
    assert meta["source_entity"] == "MMS200MI.GetItmWhsBal"
    assert meta["version"] == int(datetime(2025, 3, 5, 8, 7, tzinfo=UTC).timestamp() * 1000)


def test_sandbox_balances_follow_allocation_and_shipping() -> None:
    counts = [bod for bod in sandbox_bods() if bod.document_name == "Sync.InventoryCount"]
    first, second = (_run(bod.xml) for bod in counts)
    # Allocation of 2 mugs, then shipping them: on hand drops, allocation is released.
    assert first["allocated"] == Decimal(2)
    assert first["available"] == first["on_hand"] - Decimal(2)
    assert second["on_hand"] == first["on_hand"] - Decimal(2)
    assert second["allocated"] == Decimal(0)
    assert second["meta"]["version"] > first["meta"]["version"] > 1_700_000_000_000


def test_fractional_quantities_stay_exact() -> None:
    raw = fixture("bod/SyncInventoryCount.xml").replace(b">123</Quantity>", b">12.3456</Quantity>")
    assert _run(raw)["on_hand"] == Decimal("12.3456")


LINE = "InventoryCount/InventoryCountLine"
COUNT = fixture("bod/SyncInventoryCount.xml")


def _mi(**fields: str) -> bytes:
    return json.dumps(fields).encode()


@pytest.mark.parametrize(
    ("raw", "reason", "path"),
    [
        (COUNT.replace(b">123<", b">12three<"), "wrong_type", f"{LINE}/Quantity"),
        (COUNT.replace(b"<ID>SKU-1001</ID>", b"<ID> </ID>"), "missing_field", f"{LINE}/Item/ItemID/ID"),
        (_mi(WHLO="001", ITNO="X", STQT="ten", LMTS="1"), "wrong_type", "STQT"),
        (_mi(WHLO="001", STQT="1", LMTS="1"), "missing_field", "ITNO"),
        (_mi(WHLO="001", ITNO="X", STQT="1", LMTS="soon"), "wrong_type", "LMTS"),
    ],
)
def test_invalid_fields_name_their_path(raw: bytes, reason: str, path: str) -> None:
    with pytest.raises(InvalidMessage) as caught:
        _run(raw, MI_HEADERS)
    assert (caught.value.reason, caught.value.field_path) == (reason, path)


def test_a_bod_counting_two_items_is_refused() -> None:
    raw = fixture("bod/SyncInventoryCount.xml")
    start = raw.index(b"<InventoryCountLine>")
    end = raw.index(b"</InventoryCountLine>") + len(b"</InventoryCountLine>")
    doubled = raw[:end] + raw[start:end] + raw[end:]
    with pytest.raises(InvalidMessage) as caught:
        _run(doubled)
    assert caught.value.reason == "multi_line_inventory"


def test_preview_is_registered() -> None:
    record = preview(fixture("bod/SyncInventoryCount.xml"), load_rules(None), "infor_inventory")
    assert record["on_hand"] == Decimal(123)


def test_a_stock_drop_beyond_the_threshold_is_flagged_from_the_workers_history() -> None:
    """SKU-1001@001 goes from 1,000 available to the fixture's 123: an 88 % drop of 877 units, beyond
    the packaged rules' 80 % and 50 units. Without history, or after a small drop, nothing is flagged."""
    flow = infor_inventory.FLOW
    event = flow.decode(fixture("bod/SyncInventoryCount.xml"), ())
    assert not isinstance(event, Skipped)
    history = AnomalyHistory()
    fresh = flow.to_record(event, dataclasses.replace(context(), history=history))
    assert isinstance(fresh, dict)
    assert fresh["anomalies"] == []
    history.observe("InventoryLevel", {**fresh, "available": Decimal(1000)})
    dropped = flow.to_record(event, dataclasses.replace(context(), history=history))
    assert isinstance(dropped, dict)
    assert_valid("InventoryLevel", dropped)
    [flag] = dropped["anomalies"]
    assert flag["code"] == "stock_drop"
    assert "1000" in flag["reason"]
    assert "123" in flag["reason"]
    history.observe("InventoryLevel", {**fresh, "available": Decimal(150)})
    small = flow.to_record(event, dataclasses.replace(context(), history=history))
    assert isinstance(small, dict)
    assert small["anomalies"] == []  # 18 % and 27 units: within the threshold
