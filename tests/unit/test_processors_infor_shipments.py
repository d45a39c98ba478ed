"""Infor shipment flow: Sync.Shipment BODs and MWS410MI heads → canonical.shipment.v1."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from pipeline.errors import InvalidMessage
from processors import infor_shipments
from processors.erp_links import ErpLinkIndex, OrderLink
from processors.infor_source import EVENT_NAMESPACE
from processors.runner import Skipped
from rules.engine import load_rules
from rules.preview import preview
from tests.unit.test_processors_infor_support import assert_valid, context, fixture, sandbox_bod


class _Skus:
    def sku_for(self, item_number: str) -> str | None:
        return {"SKU-1001": "sku-1001-blue"}.get(item_number)


def _run(raw: bytes, keys: ErpLinkIndex | None = None) -> dict[str, object] | None:
    if keys is None:
        keys = ErpLinkIndex()
        keys.link_order(OrderLink("1:1042", "100", reference="PS-000123", erp_order_number="1000012345"))
    flow = infor_shipments.build_flow(keys, _Skus())
    event = flow.decode(raw, ())
    assert not isinstance(event, Skipped)
    datum = flow.to_record(event, context())
    assert datum is None or isinstance(datum, dict)
    if datum is not None:
        assert_valid("Shipment", datum)
        assert flow.key(event) == "1:1042"
    return datum


def test_reference_fixture_field_by_field() -> None:
    datum = _run(fixture("bod/SyncShipment.xml"))
    assert datum is not None
    assert datum["order_key"] == "1:1042"
    assert datum["shipment_id"] == "5000001234"
    assert datum["erp_order_number"] == "1000012345"
    assert datum["carrier"] == {"code": "UPS", "reference_id": None, "name": "UPS"}
    assert datum["tracking_numbers"] == ["1Z999AA10123456784"]
    assert datum["packages"] == [
        {"package_id": "5000001234-1", "tracking_number": "1Z999AA10123456784", "weight_kg": None}
    ]
    assert datum["shipped_at"] == datetime(2025, 3, 5, 7, 55, tzinfo=UTC)
    assert datum["lines"] == [
        {
            "sku": "sku-1001-blue",
            "erp_item_number": "SKU-1001",
            "erp_line_number": 1,
            "quantity": Decimal("2"),
        }
    ]
    assert datum["external_ids"] == {"infor": "1000012345", "prestashop": "1042"}
    meta = datum["meta"]
    assert isinstance(meta, dict)
    assert (meta["version"], meta["source_entity"], meta["shop_id"]) == (1, "Sync.Shipment", "1")
    assert meta["event_id"] == str(uuid.uuid5(EVENT_NAMESPACE, "INFOR|Sync.Shipment|5000001234|1"))


def test_sandbox_shipment_carries_its_tracking_number_and_lmts() -> None:
    bod = sandbox_bod("Sync.Shipment")
    datum = _run(bod.xml)
    assert datum is not None
    tracking = datum["tracking_numbers"]
    assert isinstance(tracking, list)
    assert len(tracking) == 1
    assert tracking[0].startswith("1Z")  # the sandbox's UPS numbers
    assert tracking[0].encode() in bod.xml
    meta = datum["meta"]
    assert isinstance(meta, dict)
    assert meta["version"] > 1_700_000_000_000  # m3.LMTS wins over variationID 1


def test_mws410mi_head() -> None:
    record = {"DLIX": "5000001299", "RIDN": "1000012345", "FWNO": "DHL", "MODL": "DHX", "ETRN": "JD0002",
              "DSDT": "20250305", "DSHM": "0930", "LMTS": "1741167000000"}  # fmt: skip
    datum = _run(json.dumps(record).encode())
    assert datum is not None
    assert datum["tracking_numbers"] == ["JD0002"]
    assert datum["shipped_at"] == datetime(2025, 3, 5, 9, 30, tzinfo=UTC)
    assert datum["lines"] == []


def test_delivery_of_an_order_not_from_the_shop_is_skipped() -> None:
    assert _run(fixture("bod/SyncShipment.xml"), ErpLinkIndex()) is None


ITEM = "Shipment/ShipmentItem[0]"
HEAD = "Shipment/ShipmentHeader"
SHIPPED_AT = b"<ActualShipDateTime>2025-03-05T07:55:00Z"


@pytest.mark.parametrize(
    ("change", "reason", "path"),
    [
        ((b">2</ShippedQuantity>", b">two</ShippedQuantity>"), "wrong_type", f"{ITEM}/ShippedQuantity"),
        ((b"<LineNumber>1</LineNumber>", b"<LineNumber>x</LineNumber>"), "wrong_type", f"{ITEM}/LineNumber"),
        ((b">5000001234</ID>", b"></ID>"), "missing_field", f"{HEAD}/DocumentID/ID"),
        ((SHIPPED_AT, b"<ActualShipDateTime>yesterday"), "wrong_type", f"{HEAD}/ActualShipDateTime"),
    ],
)
def test_invalid_fields_name_their_path(change: tuple[bytes, bytes], reason: str, path: str) -> None:
    raw = fixture("bod/SyncShipment.xml")
    assert change[0] in raw
    with pytest.raises(InvalidMessage) as caught:
        _run(raw.replace(*change))
    assert (caught.value.reason, caught.value.field_path) == (reason, path)


def test_preview_is_registered() -> None:
    record = preview(fixture("bod/SyncShipment.xml"), load_rules(None), "infor_shipments")
    assert record["order_key"] == "?:1000012345"
