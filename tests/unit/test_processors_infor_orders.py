"""Infor order status flow: Sync.SalesOrder BODs and OIS100MI heads → canonical.order-status.v1."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from pipeline.errors import InvalidMessage
from processors import infor_orders
from processors.erp_links import ErpLinkIndex, OrderLink
from processors.infor_source import EVENT_NAMESPACE
from processors.runner import Skipped
from rules.engine import load_rules
from rules.preview import preview
from tests.unit.test_processors_infor_support import (
    INGESTED_AT,
    assert_valid,
    context,
    fixture,
    sandbox_bod,
    sandbox_bods,
)

RULES = load_rules(None)


def _keys() -> ErpLinkIndex:
    keys = ErpLinkIndex()
    keys.link_order(OrderLink("1:1042", "100", reference="PS-000123"))
    return keys


def _sandbox_keys() -> ErpLinkIndex:
    keys = ErpLinkIndex()
    keys.link_order(OrderLink("1:2001", "100", reference="OTHER-REF", erp_order_number="1000012345"))
    return keys


def _run(raw: bytes, keys: ErpLinkIndex | None = None) -> dict[str, object] | None:
    flow = infor_orders.build_flow(_keys() if keys is None else keys, RULES)
    event = flow.decode(raw, ())
    assert not isinstance(event, Skipped)
    datum = flow.to_record(event, context())
    assert datum is None or isinstance(datum, dict)
    if datum is not None:
        assert_valid("OrderStatusChange", datum)
        assert flow.key(event) == datum["order_key"]
    return datum


def test_reference_fixture_maps_orsl_orst_to_three_dimensions() -> None:
    datum = _run(fixture("bod/SyncSalesOrder.xml"))
    assert datum is not None
    # ORSL 33 / ORST 66: part of the order delivered (CANONICAL.md: ORSL < 6 <= ORST).
    assert datum["order_key"] == "1:1042"  # found by CUOR = the PrestaShop reference
    assert datum["fulfillment_status"] == "PARTIALLY_SHIPPED"
    assert datum["lifecycle"] == "OPEN"
    assert datum["payment_status"] == "UNKNOWN"  # M3 order statuses say nothing about payment
    assert datum["source_status"] == {"system": "INFOR", "code": "33/66", "name": "Released"}
    assert datum["erp_order_number"] == "1000012345"
    assert datum["changed_at"] == datetime(2025, 3, 5, 8, 2, 10, tzinfo=UTC)  # Status/EffectiveDateTime
    assert datum["external_ids"] == {"infor": "1000012345", "prestashop": "1042"}
    meta = datum["meta"]
    assert isinstance(meta, dict)
    assert meta["version"] == 3  # variationID: the fixture has no LMTS
    assert meta["source_entity"] == "Sync.SalesOrder"
    assert meta["source_id"] == "1000012345"
    assert meta["shop_id"] == "1"
    assert meta["ingested_at"] == INGESTED_AT
    assert meta["correlation_id"] == "corr-1"
    assert meta["event_id"] == str(uuid.uuid5(EVENT_NAMESPACE, "INFOR|Sync.SalesOrder|1000012345|3"))


def test_sandbox_order_walks_forward_with_lmts_versions() -> None:
    statuses = []
    versions = []
    for bod in sandbox_bods():
        if bod.document_name == "Sync.SalesOrder":
            datum = _run(bod.xml, _sandbox_keys())
            assert datum is not None
            assert datum["order_key"] == "1:2001"  # by ORNO, the link the sink wrote
            statuses.append((datum["fulfillment_status"], datum["lifecycle"]))
            meta = datum["meta"]
            assert isinstance(meta, dict)
            versions.append(meta["version"])
    assert statuses == [
        ("UNFULFILLED", "OPEN"),  # 22/22 entered
        ("ALLOCATED", "OPEN"),  # 33/33
        ("PICKING", "OPEN"),  # 44/44
        ("SHIPPED", "OPEN"),  # 66/66
        ("SHIPPED", "OPEN"),  # 77/77 invoiced
    ]
    assert versions == sorted(versions)
    assert versions[0] > 1_700_000_000_000  # m3.LMTS, epoch ms


def test_mi_head_record_and_order_stop() -> None:
    record = json.loads(fixture("m3/OIS100MI_GetHead_ok.json"))["results"][0]["records"][0]
    record.update({"OBLC": "3", "LMTS": "1741161600123"})
    datum = _run(json.dumps(record).encode())
    assert datum is not None
    assert datum["order_key"] == "1:1042"
    assert (datum["fulfillment_status"], datum["lifecycle"]) == ("PARTIALLY_SHIPPED", "ON_HOLD")
    meta = datum["meta"]
    assert isinstance(meta, dict)
    assert meta["version"] == 1741161600123
    assert meta["source_entity"] == "OIS100MI"
    assert datum["changed_at"] == datetime(2025, 3, 5, 8, 0, 0, 123000, tzinfo=UTC)


def test_order_unknown_to_the_links_is_skipped() -> None:
    assert _run(fixture("bod/SyncSalesOrder.xml"), ErpLinkIndex()) is None


def test_deleted_order_is_cancelled() -> None:
    raw = sandbox_bod("Sync.SalesOrder").xml.replace(b'actionCode="Replace"', b'actionCode="Delete"')
    raw = raw.replace(b'actionCode="Add"', b'actionCode="Delete"')
    datum = _run(raw, _sandbox_keys())
    assert datum is not None
    assert datum["lifecycle"] == "CANCELLED"


HEAD = "SalesOrder/SalesOrderHeader"
ORSL_33 = b'<NameValue name="m3.ORSL" type="StringType">33</NameValue>'


@pytest.mark.parametrize(
    ("change", "reason", "path"),
    [
        ((b'StringType">66</NameValue>', b'StringType">6x</NameValue>'), "wrong_type", "ORST"),
        ((b'variationID="3"', b'variationID="three"'), "wrong_type", f"{HEAD}/DocumentID/ID@variationID"),
        ((b">1000012345</ID>", b"></ID>"), "missing_field", f"{HEAD}/DocumentID/ID"),
        ((ORSL_33, b""), "missing_field", f"{HEAD}/UserArea/m3.ORSL"),
    ],
)
def test_invalid_fields_name_their_path(change: tuple[bytes, bytes], reason: str, path: str) -> None:
    raw = fixture("bod/SyncSalesOrder.xml")
    assert change[0] in raw
    with pytest.raises(InvalidMessage) as caught:
        _run(raw.replace(*change))
    assert (caught.value.reason, caught.value.field_path) == (reason, path)


def test_wrong_noun_and_garbage_are_invalid() -> None:
    with pytest.raises(InvalidMessage) as caught:
        _run(fixture("bod/SyncShipment.xml"))
    assert caught.value.reason == "bod_unexpected"
    with pytest.raises(InvalidMessage) as caught:
        _run(b"\x00\x01garbage")
    assert caught.value.reason == "undecodable"
    with pytest.raises(InvalidMessage) as caught:
        _run(json.dumps({"ORNO": "1", "ORSL": 33.5, "ORST": ["66"]}).encode())
    assert (caught.value.reason, caught.value.field_path) == ("wrong_type", "ORST")


def test_preview_is_registered() -> None:
    record = preview(fixture("bod/SyncSalesOrder.xml"), RULES, "infor_order_status")
    assert record["order_key"] == "?:PS-000123"
    assert record["fulfillment_status"] == "PARTIALLY_SHIPPED"
