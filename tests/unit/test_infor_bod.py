"""BOD parsing and building against every sample in the reference fixtures (trap 8: strict XML,
namespaces, Verb.Noun; trap 9: dedupe identity from BODID and variationID; trap 10: tracking paths)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

import connectors.infor
from connectors.infor.bod import (
    Amount,
    Bod,
    acknowledgement,
    build_bod,
    element,
    inventory_lines,
    new_bod,
    parse_bod,
    parse_bodid,
    sales_order,
    shipment,
    user_area,
)
from pipeline.errors import InvalidMessage

BODS = Path(connectors.infor.__file__).parent / "testdata" / "bod"
SAMPLES = sorted(path.name for path in BODS.glob("*.xml"))

# file -> (document name, BODID, variationID, LogicalID, actionCode, entity id, tenant, accounting entity)
EXPECTED = {
    "AcknowledgeSalesOrder.xml": (
        "Acknowledge.SalesOrder",
        "infor-nid:ACME_TST:100_AAA::1000012345:1?SalesOrder&verb=Acknowledge",
        "1",
        "lid://infor.m3.m3",
        "Accepted",
        "1000012345",
        "ACME_TST",
        "100_AAA",
    ),
    "ProcessSalesOrder.xml": (
        "Process.SalesOrder",
        "infor-nid:ACME_TST:100_AAA::PS-000123:1?SalesOrder&verb=Process",
        "1",
        "lid://infor.ims.prestashop",
        "Add",
        "PS-000123",
        "ACME_TST",
        "100_AAA",
    ),
    "SyncCustomerPartyMaster.xml": (
        "Sync.CustomerPartyMaster",
        "infor-nid:ACME_TST:100::PS000042:2?CustomerPartyMaster&verb=Sync",
        "2",
        "lid://infor.m3.m3",
        "Replace",
        "PS000042",
        "ACME_TST",
        "100",
    ),
    "SyncInventoryCount.xml": (
        "Sync.InventoryCount",
        "infor-nid:ACME_TST:100_AAA:001:INV-20250305-0805:1?InventoryCount&verb=Sync",
        "1",
        "lid://infor.m3.m3",
        "Replace",
        "INV-20250305-0805",
        "ACME_TST",
        "100_AAA",
    ),
    "SyncInvoice.xml": (
        "Sync.Invoice",
        "infor-nid:ACME_TST:100_AAA::2025-700123:1?Invoice&verb=Sync",
        "1",
        "lid://infor.m3.m3",
        "Add",
        "700123",
        "ACME_TST",
        "100_AAA",
    ),
    "SyncItemMaster.xml": (
        "Sync.ItemMaster",
        "infor-nid:ACME_TST:100::SKU-1001:7?ItemMaster&verb=Sync",
        "7",
        "lid://infor.m3.m3",
        "Replace",
        "SKU-1001",
        "ACME_TST",
        "100",
    ),
    "SyncSalesOrder.xml": (
        "Sync.SalesOrder",
        "infor-nid:ACME_TST:100_AAA::1000012345:3?SalesOrder&verb=Sync",
        "3",
        "lid://infor.m3.m3",
        "Replace",
        "1000012345",
        "ACME_TST",
        "100_AAA",
    ),
    "SyncShipment.xml": (
        "Sync.Shipment",
        "infor-nid:ACME_TST:100_AAA:001:5000001234:1?Shipment&verb=Sync",
        "1",
        "lid://infor.m3.m3",
        "Add",
        "5000001234",
        "ACME_TST",
        "100_AAA",
    ),
}


def load(name: str) -> Bod:
    return parse_bod((BODS / name).read_bytes())


def test_every_fixture_is_covered() -> None:
    assert set(SAMPLES) == set(EXPECTED)


@pytest.mark.parametrize("name", SAMPLES)
def test_envelope_fields(name: str) -> None:
    bod = load(name)
    document, bodid, variation, logical_id, action, entity, tenant, entity_ae = EXPECTED[name]
    assert bod.document_name == document
    assert bod.bodid == bodid
    assert bod.variation_id == variation
    assert bod.logical_id == logical_id
    assert bod.action_code == action
    assert bod.entity_id == entity
    assert (bod.tenant_id, bod.accounting_entity_id) == (tenant, entity_ae)
    assert bod.namespace == "http://schema.infor.com/InforOAGIS/2"
    assert bod.identity == (document, entity, variation)


@pytest.mark.parametrize("name", SAMPLES)
def test_round_trip_parse_fields_build_parse(name: str) -> None:
    """parse -> fields -> build (from the fields, through new_bod) -> parse gives the same BOD."""
    bod = load(name)
    original = bod.verb_area.find("OriginalApplicationArea")
    rebuilt = new_bod(
        bod.verb,
        bod.nouns,
        logical_id=bod.logical_id,
        component_id=bod.component_id,
        confirmation_code=bod.confirmation_code,
        bodid=bod.bodid,
        tenant_id=bod.tenant_id,
        accounting_entity_id=bod.accounting_entity_id,
        location_id=bod.location_id,
        creation_datetime=bod.creation_datetime,
        action_code=bod.action_code if bod.verb != "Acknowledge" else "",
        response_code=bod.action_code if bod.verb == "Acknowledge" else "",
        original_application_area=original,
        release_id=dict(bod.root_attributes)["releaseID"],
        version_id=dict(bod.root_attributes)["versionID"],
    )
    assert rebuilt == bod
    again = parse_bod(build_bod(rebuilt))
    assert again == bod
    assert parse_bod(build_bod(again)) == again  # stable


def test_sync_sales_order_fields() -> None:
    order = sales_order(load("SyncSalesOrder.xml"))
    assert (order.document_id, order.variation_id, order.customer_reference) == (
        "1000012345",
        "3",
        "PS-000123",
    )
    assert (order.status, order.customer_id, order.customer_name) == ("Released", "PS000042", "Jane Doe")
    assert order.ship_to_lines == ("12 Rue de la Paix",)
    assert (order.ship_to_city, order.ship_to_postal_code, order.ship_to_country) == ("Paris", "75002", "FR")
    assert order.total == Amount(Decimal("49.70"), "EUR")
    assert order.extensions == {"m3.ORSL": "33", "m3.ORST": "66"}
    assert [
        (line.line_no, line.sku, line.quantity, line.unit, line.status, line.extensions["m3.ORST"])
        for line in order.lines
    ] == [
        ("1", "SKU-1001", Decimal(2), "EA", "Shipped", "66"),
        ("2", "SKU-2002", Decimal(1), "EA", "Allocated", "33"),
    ]
    assert order.lines[0].unit_price == Amount(Decimal("19.90"), "EUR")


def test_process_sales_order_carries_our_reference() -> None:
    order = sales_order(load("ProcessSalesOrder.xml"))
    assert order.customer_reference == "PS-000123"
    assert order.lines[0].description == "Blue mug"


def test_acknowledgement_answers_our_process_bod() -> None:
    ack = acknowledgement(load("AcknowledgeSalesOrder.xml"))
    assert ack.original_bodid == load("ProcessSalesOrder.xml").bodid
    assert (ack.response_code, ack.document_id, ack.customer_reference) == (
        "Accepted",
        "1000012345",
        "PS-000123",
    )
    with pytest.raises(InvalidMessage):
        acknowledgement(load("SyncSalesOrder.xml"))


def test_trap10_shipment_tracking_paths_are_configurable() -> None:
    view = shipment(load("SyncShipment.xml"))
    assert view.tracking_numbers == ("1Z999AA10123456784",)
    assert (view.order_id, view.carrier, view.bill_of_lading, view.warehouse) == (
        "1000012345",
        "UPS",
        "BOL-778899",
        "001",
    )
    assert view.items == (("SKU-1001", Decimal(2), "1"),)
    assert shipment(
        load("SyncShipment.xml"), tracking_paths=("ShipmentHeader/BillOfLadingID",)
    ).tracking_numbers == ("BOL-778899",)


def test_inventory_and_item_views() -> None:
    (line,) = inventory_lines(load("SyncInventoryCount.xml"))
    assert (line.sku, line.quantity, line.unit, line.warehouse) == ("SKU-1001", Decimal(123), "EA", "001")
    item = load("SyncItemMaster.xml")
    assert user_area(item.nouns[0].find("ItemMasterHeader") or element("x")) == {"ITTY": "FG", "ITGR": "MUGS"}


def test_bodid_parts() -> None:
    parts = parse_bodid("infor-nid:ACME_TST:100_AAA:001:5000001234:1?Shipment&verb=Sync")
    assert (parts.tenant, parts.accounting_entity, parts.location, parts.document_id, parts.variation) == (
        "ACME_TST",
        "100_AAA",
        "001",
        "5000001234",
        "1",
    )
    assert (parts.noun, parts.verb) == ("Shipment", "Sync")
    assert parse_bodid("infor-nid:TEST_TST:3555:S_350:PSU000049:?PurchaseOrder&verb=Sync").variation == ""
    assert parse_bodid("6f1c1c2e-0000-4000-8000-000000000000").document_id == ""


def test_a_prefixed_namespace_parses_the_same() -> None:
    text = (BODS / "SyncItemMaster.xml").read_text()
    prefixed = text.replace(
        'xmlns="http://schema.infor.com/InforOAGIS/2"', 'xmlns:oa="http://schema.infor.com/InforOAGIS/2"'
    )
    prefixed = (
        prefixed.replace("<", "<oa:")
        .replace("<oa:/", "</oa:")
        .replace("<oa:?", "<?")
        .replace("<oa:!--", "<!--")
    )
    assert parse_bod(prefixed.encode()) == load("SyncItemMaster.xml")


def test_building_a_process_sales_order_from_fields() -> None:
    noun = element(
        "SalesOrder",
        "",
        element(
            "SalesOrderHeader",
            "",
            element("DocumentID", "", element("ID", "PS-000777"), agencyRole="Customer"),
        ),
        element(
            "SalesOrderLine",
            "",
            element("LineNumber", "1"),
            element("Item", "", element("ItemID", "", element("ID", "SKU & Co <1>"))),
        ),
    )
    bod = new_bod(
        "Process",
        noun,
        logical_id="lid://infor.ims.prestashop",
        bodid="infor-nid:ACME_TST:100_AAA::PS-000777:1?SalesOrder&verb=Process",
        tenant_id="ACME_TST",
        accounting_entity_id="100_AAA",
        action_code="Add",
        creation_datetime=dt.datetime(2025, 3, 4, 11, 15, 30, tzinfo=dt.timezone(dt.timedelta(hours=1))),
    )
    xml = build_bod(bod)
    assert xml.startswith(
        b"<?xml version='1.0' encoding='utf-8'?>\n<ProcessSalesOrder xmlns=\"http://schema.infor.com/InforOAGIS/2\""
    )
    parsed = parse_bod(xml)
    assert parsed.creation_datetime == "2025-03-04T10:15:30Z"
    assert sales_order(parsed).customer_reference == "PS-000777"
    assert sales_order(parsed).lines[0].sku == "SKU & Co <1>"


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><SyncItemMaster>&a;</SyncItemMaster>',
            "bod_forbidden_xml",
        ),
        (b'<!DOCTYPE x SYSTEM "file:///etc/passwd"><SyncItemMaster/>', "bod_forbidden_xml"),
        (b"<SyncItemMaster><ApplicationArea>", "bod_malformed"),
        (b"", "bod_malformed"),
        (b"<Hello/>", "bod_invalid"),
        (
            b"<SyncItemMaster><ApplicationArea><BODID>x</BODID></ApplicationArea><DataArea><Process/><ItemMaster/></DataArea></SyncItemMaster>",
            "bod_invalid",
        ),
        (
            b"<SyncItemMaster><ApplicationArea/><DataArea><Sync/><ItemMaster/></DataArea></SyncItemMaster>",
            "bod_invalid",
        ),
        (
            b"<SyncItemMaster><ApplicationArea><BODID>x</BODID></ApplicationArea><DataArea><Sync/></DataArea></SyncItemMaster>",
            "bod_invalid",
        ),
    ],
)
def test_unsafe_or_invalid_documents_are_refused_with_a_reason(document: bytes, reason: str) -> None:
    with pytest.raises(InvalidMessage) as info:
        parse_bod(document)
    assert info.value.reason == reason
