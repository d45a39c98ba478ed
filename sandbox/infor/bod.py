"""Sync BODs the sandbox publishes for its state changes (infor.md §4.1, §4.3, fixtures/bod).

Every BOD has the default namespace ``http://schema.infor.com/InforOAGIS/2``, ``releaseID="9.2"``, an
``ApplicationArea`` (Sender LogicalID/ComponentID/ConfirmationCode, CreationDateTime, BODID) and a
``DataArea`` with the verb (TenantID, AccountingEntityID ``{CONO}_{DIVI}``, LocationID, ActionCriteria)
and the noun. The document id carries ``variationID``, which increases with every publication of the
same document, and the BODID is
``infor-nid:{tenant}:{entity}:{location}:{document}:{variation}?{Noun}&verb=Sync``.

Element names follow the fixtures; M3's own codes ride in ``UserArea`` name/value pairs (``m3.ORSL``,
``m3.ORST``, ``m3.LMTS``) because BOD status vocabularies differ per ERP (§7 item 10).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sandbox.infor.m3_state import (
    Balance,
    Change,
    Customer,
    CustomerOrder,
    Delivery,
    Invoice,
    Item,
    M3State,
    money,
    qty,
)

NS = "http://schema.infor.com/InforOAGIS/2"
SENDER_LOGICAL_ID = "lid://infor.m3.m3"

_LINE_STATUS = {"22": "Open", "33": "Allocated", "44": "Picking", "66": "Shipped", "77": "Invoiced"}


def _tag(name: str) -> str:
    # Tags stay unqualified and the root carries xmlns: ElementTree's default_namespace option refuses
    # unqualified attributes, and a prefixed serialisation (ns0:) is not what Infor sends.
    return name


def _sub(parent: ET.Element, tag: str, text: str | None = None, /, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, _tag(tag), attrs)
    if text is not None:
        element.text = text
    return element


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _date(ymd: str) -> str:
    return f"{ymd[:4]}-{ymd[4:6]}-{ymd[6:8]}T00:00:00Z" if len(ymd) == 8 else ""


def _user_area(parent: ET.Element, values: dict[str, str]) -> None:
    area = _sub(parent, "UserArea")
    for name, value in values.items():
        _sub(_sub(area, "Property"), "NameValue", value, name=name, type="StringType")


@dataclass(frozen=True)
class BodContext:
    """Who publishes: the tenant id and sender logical id; ``now`` is the creation time."""

    tenant_id: str
    now: datetime
    logical_id: str = SENDER_LOGICAL_ID


@dataclass(frozen=True)
class Bod:
    """A built BOD: ``Verb.Noun`` document name, BODID, the document id and variation, the bytes."""

    document_name: str
    bod_id: str
    document_id: str
    variation: int
    xml: bytes


def _envelope(
    ctx: BodContext, noun: str, entity: str, location: str, document_id: str, variation: int, action: str
) -> tuple[ET.Element, ET.Element, str]:
    root = ET.Element(_tag(f"Sync{noun}"), {"xmlns": NS, "releaseID": "9.2", "versionID": "2.14.x"})
    area = _sub(root, "ApplicationArea")
    sender = _sub(area, "Sender")
    _sub(sender, "LogicalID", ctx.logical_id)
    _sub(sender, "ComponentID", "erp")
    _sub(sender, "ConfirmationCode", "OnError")
    _sub(area, "CreationDateTime", _iso(ctx.now))
    bod_id = f"infor-nid:{ctx.tenant_id}:{entity}:{location}:{document_id}:{variation}?{noun}&verb=Sync"
    _sub(area, "BODID", bod_id)
    data = _sub(root, "DataArea")
    verb = _sub(data, "Sync")
    _sub(verb, "TenantID", ctx.tenant_id)
    _sub(verb, "AccountingEntityID", entity)
    if location:
        _sub(verb, "LocationID", location)
    _sub(_sub(verb, "ActionCriteria"), "ActionExpression", actionCode=action)
    return root, _sub(data, noun), bod_id


def _finish(root: ET.Element, noun: str, bod_id: str, document_id: str, variation: int) -> Bod:
    body = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return Bod(f"Sync.{noun}", bod_id, document_id, variation, body)


def _doc_id(
    parent: ET.Element, wrapper: str, value: str, entity: str, variation: int, location: str = ""
) -> None:
    attrs = {"accountingEntity": entity, "variationID": str(variation)}
    if location:
        attrs["location"] = location
    _sub(_sub(parent, wrapper), "ID", value, **attrs)


def sales_order(
    ctx: BodContext, order: CustomerOrder, customer_name: str, variation: int, action: str
) -> Bod:
    """Sync.SalesOrder: the whole order with M3 ORSL/ORST and per-line ORST."""
    entity = f"{order.cono}_{order.divi}"
    root, noun, bod_id = _envelope(ctx, "SalesOrder", entity, order.head.whlo, order.orno, variation, action)
    header = _sub(noun, "SalesOrderHeader")
    _doc_id(header, "DocumentID", order.orno, entity, variation, order.head.whlo)
    if order.head.cuor:
        _sub(_sub(header, "AlternateDocumentID", agencyRole="Customer"), "ID", order.head.cuor)
    _sub(header, "DocumentDateTime", _date(order.head.ordt))
    status = _sub(header, "Status")
    orsl, orst = order.orsl, order.orst
    word = _LINE_STATUS[orsl] if orsl == orst else ("PartiallyShipped" if orst >= "66" else "Released")
    _sub(status, "Code", word, listID="SalesOrderStatus")
    customer = _sub(header, "CustomerParty")
    _sub(_sub(customer, "PartyIDs"), "ID", order.head.cuno, accountingEntity=entity)
    _sub(customer, "Name", customer_name)
    _sub(header, "TotalAmount", money(order.total), currencyID=order.head.cucd)
    _user_area(header, {"m3.ORSL": orsl, "m3.ORST": orst, "m3.LMTS": str(order.lmts)})
    for line in order.lines:
        element = _sub(noun, "SalesOrderLine")
        _sub(element, "LineNumber", str(line.ponr))
        _sub(_sub(_sub(element, "Item"), "ItemID"), "ID", line.itno, accountingEntity=entity)
        _sub(element, "Quantity", qty(line.orqt), unitCode="EA")
        price = _sub(element, "UnitPrice")
        _sub(price, "Amount", money(line.sapr), currencyID=line.cucd)
        _sub(price, "PerQuantity", "1", unitCode="EA")
        _sub(element, "ExtendedAmount", money(line.net), currencyID=line.cucd)
        _sub(
            _sub(element, "Status"),
            "Code",
            _LINE_STATUS.get(line.orst, line.orst),
            listID="SalesOrderLineStatus",
        )
        _user_area(element, {"m3.ORST": line.orst})
    return _finish(root, "SalesOrder", bod_id, order.orno, variation)


def shipment(ctx: BodContext, delivery: Delivery, cuno: str, variation: int, action: str) -> Bod:
    """Sync.Shipment: one delivery with carrier, bill of lading and tracking number."""
    entity = f"{delivery.cono}_{delivery.divi}"
    dlix = str(delivery.dlix)
    root, noun, bod_id = _envelope(ctx, "Shipment", entity, delivery.whlo, dlix, variation, action)
    header = _sub(noun, "ShipmentHeader")
    _doc_id(header, "DocumentID", dlix, entity, variation, delivery.whlo)
    shipped_at = _date(delivery.dsdt)
    _sub(header, "DocumentDateTime", shipped_at)
    _sub(_sub(header, "Status"), "Code", "Shipped", listID="ShipmentStatus")
    reference = _sub(header, "DocumentReference", type="SalesOrder")
    _sub(_sub(reference, "DocumentID"), "ID", delivery.orno, accountingEntity=entity)
    _sub(header, "ActualShipDateTime", shipped_at)
    _sub(_sub(_sub(header, "CarrierParty"), "PartyIDs"), "ID", delivery.fwno)
    _sub(_sub(_sub(header, "ShipFromParty"), "Location", type="Warehouse"), "ID", delivery.whlo)
    _sub(_sub(_sub(header, "ShipToParty"), "PartyIDs"), "ID", cuno)
    _sub(header, "BillOfLadingID", delivery.nbol)
    _user_area(
        header,
        {
            "m3.CONN": str(delivery.conn),
            "m3.MODL": delivery.modl,
            "m3.PGRS": delivery.pgrs,
            "m3.LMTS": str(delivery.lmts),
        },
    )
    _sub(_sub(noun, "ShipmentUnit"), "TrackingID", delivery.etrn)
    for ponr, itno, trqt in delivery.lines:
        item = _sub(noun, "ShipmentItem")
        _sub(_sub(item, "ItemID"), "ID", itno)
        _sub(item, "ShippedQuantity", qty(trqt), unitCode="EA")
        _sub(item, "LineNumber", str(ponr))
        ref = _sub(item, "DocumentReference", type="SalesOrder")
        _sub(_sub(ref, "DocumentID"), "ID", delivery.orno)
        _sub(ref, "LineNumber", str(ponr))
    return _finish(root, "Shipment", bod_id, dlix, variation)


def invoice(ctx: BodContext, inv: Invoice, variation: int, action: str) -> Bod:
    """Sync.Invoice: header amounts, the order reference and the invoiced lines."""
    entity = f"{inv.cono}_{inv.divi}"
    ivno = str(inv.ivno)
    root, noun, bod_id = _envelope(ctx, "Invoice", entity, "", ivno, variation, action)
    header = _sub(noun, "InvoiceHeader")
    _doc_id(header, "DocumentID", ivno, entity, variation)
    _sub(header, "DocumentDateTime", _date(inv.ivdt))
    _sub(_sub(header, "Status"), "Code", "Paid" if inv.rafc == 0 else "Open", listID="InvoiceStatus")
    _sub(header, "ExtendedAmount", money(inv.net), currencyID=inv.cucd)
    _sub(header, "TotalAmount", money(inv.gross), currencyID=inv.cucd)
    _sub(_sub(_sub(header, "CustomerParty"), "PartyIDs"), "ID", inv.cuno)
    _sub(_sub(_sub(header, "SalesOrderReference"), "DocumentID"), "ID", inv.orno)
    _sub(_sub(header, "PaymentTerm"), "DueDateTime", _date(inv.dudt))
    _user_area(
        header,
        {"m3.YEA4": str(inv.yea4), "m3.DLIX": str(inv.dlix), "m3.RAFC": money(inv.rafc), "m3.EXIN": inv.exin},
    )
    for ponr, itno, ivqt, sapr in inv.lines:
        line = _sub(noun, "InvoiceLine")
        _sub(line, "LineNumber", str(ponr))
        _sub(_sub(_sub(line, "Item"), "ItemID"), "ID", itno)
        _sub(line, "Quantity", qty(ivqt), unitCode="EA")
        price = _sub(line, "UnitPrice")
        _sub(price, "Amount", money(sapr), currencyID=inv.cucd)
        _sub(price, "PerQuantity", "1", unitCode="EA")
        _sub(line, "ExtendedAmount", money(ivqt * sapr), currencyID=inv.cucd)
        ref = _sub(line, "SalesOrderReference")
        _sub(_sub(ref, "DocumentID"), "ID", inv.orno)
        _sub(ref, "LineNumber", str(ponr))
    return _finish(root, "Invoice", bod_id, ivno, variation)


def item_master(ctx: BodContext, item: Item, variation: int, action: str) -> Bod:
    """Sync.ItemMaster: description, status, unit, weights and M3 classification in UserArea."""
    entity = str(item.cono)
    root, noun, bod_id = _envelope(ctx, "ItemMaster", entity, "", item.itno, variation, action)
    header = _sub(noun, "ItemMasterHeader")
    _doc_id(header, "ItemID", item.itno, entity, variation)
    _sub(header, "Description", item.itds)
    _sub(_sub(header, "ItemStatus"), "Code", item.stat)
    _sub(header, "BaseUOMCode", item.unms)
    packaging = _sub(header, "PackagingUnit")
    _sub(packaging, "GrossWeightMeasure", qty(item.grwe), unitCode="KG")
    _user_area(
        header,
        {
            "ITTY": item.itty,
            "ITGR": item.itgr,
            "ITCL": item.itcl,
            "SAPR": money(item.price),
            "LMTS": str(item.lmts),
        },
    )
    return _finish(root, "ItemMaster", bod_id, item.itno, variation)


def inventory_count(ctx: BodContext, balance: Balance, divi: str, variation: int, action: str) -> Bod:
    """Sync.InventoryCount: one item's on-hand (and allocatable) quantity in one warehouse."""
    entity = f"{balance.cono}_{divi}"
    document_id = f"{balance.whlo}-{balance.itno}"
    root, noun, bod_id = _envelope(
        ctx, "InventoryCount", entity, balance.whlo, document_id, variation, action
    )
    header = _sub(noun, "InventoryCountHeader")
    _doc_id(header, "DocumentID", document_id, entity, variation, balance.whlo)
    _sub(header, "DocumentDateTime", _iso(ctx.now))
    line = _sub(noun, "InventoryCountLine")
    _sub(_sub(_sub(line, "Item"), "ItemID"), "ID", balance.itno)
    _sub(line, "Quantity", qty(balance.stqt), unitCode="EA")
    _sub(_sub(line, "WarehouseLocation"), "ID", balance.whlo)
    _user_area(
        line,
        {"m3.AV01": qty(balance.allocatable), "m3.ALQT": qty(balance.alqt), "m3.LMTS": str(balance.lmts)},
    )
    return _finish(root, "InventoryCount", bod_id, document_id, variation)


def customer_party_master(ctx: BodContext, customer: Customer, variation: int, action: str) -> Bod:
    """Sync.CustomerPartyMaster: name, postal address, e-mail, status and currency."""
    entity = str(customer.cono)
    root, noun, bod_id = _envelope(ctx, "CustomerPartyMaster", entity, "", customer.cuno, variation, action)
    _doc_id(noun, "PartyIDs", customer.cuno, entity, variation)
    _sub(noun, "Name", customer.cunm)
    address = _sub(_sub(noun, "Location", type="Office"), "Address", type="Postal")
    for sequence, line in enumerate((customer.cua1, customer.cua2, customer.cua3, customer.cua4), start=1):
        if line:
            _sub(address, "AddressLine", line, sequence=str(sequence))
    _sub(address, "CityName", customer.town)
    _sub(address, "CountryCode", customer.cscd)
    _sub(address, "PostalCode", customer.pono)
    if customer.mail:
        communication = _sub(noun, "Communication")
        _sub(communication, "ChannelCode", "EMail")
        _sub(communication, "URI", customer.mail)
    _sub(_sub(noun, "Status"), "Code", "Active" if customer.stat == "20" else "Inactive")
    _sub(noun, "CurrencyCode", customer.cucd)
    return _finish(root, "CustomerPartyMaster", bod_id, customer.cuno, variation)


class BodPublisher:
    """Turns state changes into Sync BODs with increasing variationIDs and hands them to a sink."""

    def __init__(self, state: M3State, tenant_id: str, sink: Callable[[Bod], None]) -> None:
        self.state = state
        self.tenant_id = tenant_id
        self.sink = sink
        self.variations: dict[tuple[str, str], int] = {}

    def _next(self, noun: str, key: str) -> int:
        variation = self.variations.get((noun, key), 0) + 1
        self.variations[(noun, key)] = variation
        return variation

    def __call__(self, change: Change) -> None:
        """The state listener: build the BOD for ``change`` now (a snapshot) and pass it on."""
        bod = self.build(change)
        if bod is not None:
            self.sink(bod)

    def build(self, change: Change) -> Bod | None:
        """The Sync BOD for one change, None when the entity is gone."""
        state = self.state
        ctx = BodContext(self.tenant_id, state.now())
        action = change.action
        if change.kind == "order":
            order = state.orders.get((change.cono, change.key))
            if order is None:
                return None
            customer = state.customers.get((order.cono, order.head.cuno))
            name = customer.cunm if customer is not None else ""
            return sales_order(ctx, order, name, self._next("SalesOrder", change.key), action)
        if change.kind == "shipment":
            delivery = state.deliveries.get(int(change.key))
            if delivery is None:
                return None
            order = state.orders.get((delivery.cono, delivery.orno))
            cuno = order.head.cuno if order is not None else ""
            return shipment(ctx, delivery, cuno, self._next("Shipment", change.key), action)
        if change.kind == "invoice":
            inv = state.invoices.get(int(change.key))
            return None if inv is None else invoice(ctx, inv, self._next("Invoice", change.key), action)
        if change.kind == "item":
            item = state.items.get((change.cono, change.key))
            return (
                None if item is None else item_master(ctx, item, self._next("ItemMaster", change.key), action)
            )
        if change.kind == "balance":
            whlo, _, itno = change.key.partition("/")
            balance = state.balances.get((change.cono, whlo, itno))
            warehouse = state.warehouses.get((change.cono, whlo))
            if balance is None:
                return None
            divi = warehouse.divi if warehouse is not None else ""
            return inventory_count(ctx, balance, divi, self._next("InventoryCount", change.key), action)
        if change.kind == "customer":
            customer = state.customers.get((change.cono, change.key))
            if customer is None:
                return None
            return customer_party_master(ctx, customer, self._next("CustomerPartyMaster", change.key), action)
        return None
