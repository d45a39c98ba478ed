"""ION BODs (Infor OAGIS XML): safe parsing, building, the envelope, and typed views of the nouns we use.

A BOD is ``<{Verb}{Noun} xmlns="http://schema.infor.com/InforOAGIS/2">`` with an ``ApplicationArea``
(Sender/LogicalID, CreationDateTime, BODID) and a ``DataArea`` holding the verb element (TenantID,
AccountingEntityID, LocationID, ActionCriteria/ActionExpression@actionCode, or for Acknowledge the
OriginalApplicationArea and ResponseCriteria) followed by the noun(s).

Parsing is namespace-tolerant (default namespace, a prefix, or none) and keeps the whole document as
an immutable :class:`Node` tree in document order, so :func:`build_bod` writes back what was read
(XSD element order matters to Infor). DTDs, entity declarations and external entities are refused
before they are expanded: a BOD never needs them and they are the XML attack surface.
Every failure to read a document raises :class:`~pipeline.errors.InvalidMessage` with a short reason.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import NoReturn
from xml.parsers import expat

from pipeline.errors import InvalidMessage

OAGIS_NS = "http://schema.infor.com/InforOAGIS/2"
MAX_BOD_BYTES = 20 * 1024 * 1024
"""Larger documents are refused: a BOD is a business document, not a bulk export."""

ENTITY_ID_PATHS: dict[str, str] = {
    "SalesOrder": "SalesOrderHeader/DocumentID/ID",
    "Shipment": "ShipmentHeader/DocumentID/ID",
    "Invoice": "InvoiceHeader/DocumentID/ID",
    "ItemMaster": "ItemMasterHeader/ItemID/ID",
    "CustomerPartyMaster": "PartyIDs/ID",
    "InventoryCount": "InventoryCountHeader/DocumentID/ID",
}
"""Where each noun carries its business id (and its ``variationID`` attribute)."""

DEFAULT_TRACKING_PATHS = ("ShipmentHeader/TrackingID", "ShipmentUnit/TrackingID", "ShipmentItem/TrackingID")
"""Where a Shipment's tracking numbers may sit; differs per ERP, so callers may pass their own."""


@dataclass(frozen=True)
class Node:
    """One XML element: local name (``{uri}name`` when outside the BOD namespace), attributes,
    text (empty for elements with children when it is only indentation), children in order."""

    name: str
    attributes: tuple[tuple[str, str], ...] = ()
    text: str = ""
    children: tuple[Node, ...] = ()

    def attr(self, name: str, default: str = "") -> str:
        """The attribute's value, or ``default``."""
        return next((value for key, value in self.attributes if key == name), default)

    def all(self, name: str) -> Iterator[Node]:
        """The direct children called ``name``."""
        return (child for child in self.children if child.name == name)

    def find(self, path: str) -> Node | None:
        """The first element at a ``/``-separated path of child names below this one."""
        node: Node | None = self
        for part in path.split("/"):
            node = next(node.all(part), None) if node is not None else None
        return node

    def find_all(self, path: str) -> list[Node]:
        """Every element at the path (all matches at each step)."""
        nodes = [self]
        for part in path.split("/"):
            nodes = [child for node in nodes for child in node.all(part)]
        return nodes

    def text_at(self, path: str, default: str = "") -> str:
        """The stripped text at the path, or ``default`` when absent."""
        node = self.find(path)
        return node.text.strip() if node is not None else default


def element(name: str, text: str = "", *children: Node, **attributes: str) -> Node:
    """A Node, for building documents in code: ``element("ID", "123", variationID="2")``."""
    return Node(name, tuple(attributes.items()), text, children)


@dataclass(frozen=True)
class Bod:
    """A parsed BOD: the root's attributes, ``ApplicationArea``, the verb element and the noun(s)."""

    verb: str
    noun: str
    root_attributes: tuple[tuple[str, str], ...]
    application_area: Node
    verb_area: Node
    nouns: tuple[Node, ...]
    namespace: str = OAGIS_NS

    @property
    def document_name(self) -> str:
        """``Verb.Noun`` as IMS names documents (``Sync.SalesOrder``)."""
        return f"{self.verb}.{self.noun}"

    @property
    def bodid(self) -> str:
        return self.application_area.text_at("BODID")

    @property
    def logical_id(self) -> str:
        return self.application_area.text_at("Sender/LogicalID")

    @property
    def component_id(self) -> str:
        return self.application_area.text_at("Sender/ComponentID")

    @property
    def confirmation_code(self) -> str:
        return self.application_area.text_at("Sender/ConfirmationCode")

    @property
    def creation_datetime(self) -> str:
        return self.application_area.text_at("CreationDateTime")

    @property
    def tenant_id(self) -> str:
        return self.verb_area.text_at("TenantID")

    @property
    def accounting_entity_id(self) -> str:
        return self.verb_area.text_at("AccountingEntityID")

    @property
    def location_id(self) -> str:
        return self.verb_area.text_at("LocationID")

    @property
    def action_code(self) -> str:
        """``Add``/``Replace``/``Change``/``Delete`` for Sync/Process; for Acknowledge the response code."""
        for path in ("ActionCriteria/ActionExpression", "ResponseCriteria/ResponseExpression"):
            node = self.verb_area.find(path)
            if node is not None:
                return node.attr("actionCode")
        return ""

    @property
    def entity_id(self) -> str:
        """The noun's business id (order number, item number, ...) of the first noun."""
        node = self._id_node()
        return node.text.strip() if node is not None else ""

    @property
    def variation_id(self) -> str:
        """``variationID`` of the noun's id (grows with every change), else the BODID's variation part."""
        node = self._id_node()
        variation = node.attr("variationID") if node is not None else ""
        return variation or parse_bodid(self.bodid).variation

    def _id_node(self) -> Node | None:
        path = ENTITY_ID_PATHS.get(self.noun)
        if path is None or not self.nouns:
            return None
        return self.nouns[0].find(path)

    @property
    def identity(self) -> tuple[str, str, str]:
        """(document name, entity id, variation): the dedupe key for at-least-once delivery."""
        return (self.document_name, self.entity_id, self.variation_id)


@dataclass(frozen=True)
class BodId:
    """The parts of an ``infor-nid:`` BODID; every part may be empty (BODIDs are opaque at heart)."""

    tenant: str = ""
    accounting_entity: str = ""
    location: str = ""
    document_id: str = ""
    variation: str = ""
    noun: str = ""
    verb: str = ""


_BODID = re.compile(
    r"^infor-nid:([^:]*):([^:]*):([^:]*):(.*):([^:?]*)\?([^&]*)(?:&verb=(.*))?$", re.IGNORECASE
)


def parse_bodid(bodid: str) -> BodId:
    """Best-effort split of ``infor-nid:{tenant}:{ae}:{location}:{doc}:{variation}?{Noun}&verb={Verb}``."""
    match = _BODID.match(bodid.strip())
    if match is None:
        return BodId()
    return BodId(*(part or "" for part in match.groups()))


# ----------------------------------------------------------------------------------------- parsing


class _Forbidden(Exception):
    pass


def _refuse(*_: object) -> NoReturn:
    raise _Forbidden


def parse_xml(data: bytes) -> Node:
    """The element tree of an XML document, refusing DTDs and entities; InvalidMessage when unreadable."""
    if len(data) > MAX_BOD_BYTES:
        raise InvalidMessage("bod_too_large", f"document of {len(data)} bytes exceeds {MAX_BOD_BYTES}")
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse
    parser.EntityDeclHandler = _refuse
    parser.UnparsedEntityDeclHandler = _refuse
    parser.ExternalEntityRefHandler = _refuse
    parser.buffer_text = True
    root_ns: list[str] = []
    stack: list[tuple[str, tuple[tuple[str, str], ...], list[str], list[Node]]] = []
    done: list[Node] = []

    def qualified(raw: str) -> str:
        uri, _, local = raw.rpartition(" ")
        if not root_ns:
            root_ns.append(uri)
        return local if uri == root_ns[0] else (f"{{{uri}}}{local}" if uri else local)

    def start(name: str, attrs: dict[str, str]) -> None:
        tag = qualified(name)
        attributes = tuple(
            (key if " " not in key else "{{{}}}{}".format(*key.split(" ", 1)), value)
            for key, value in attrs.items()
        )
        stack.append((tag, attributes, [], []))

    def end(_: str) -> None:
        tag, attributes, text, children = stack.pop()
        joined = "".join(text)
        node = Node(tag, attributes, "" if children and not joined.strip() else joined, tuple(children))
        (stack[-1][3] if stack else done).append(node)

    def characters(data: str) -> None:
        if stack:
            stack[-1][2].append(data)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = characters
    try:
        parser.Parse(data, True)
    except _Forbidden:
        raise InvalidMessage(
            "bod_forbidden_xml", "DOCTYPE, entity declarations and external entities are refused"
        ) from None
    except expat.ExpatError as exc:
        raise InvalidMessage(
            "bod_malformed",
            f"not well-formed XML: {expat.errors.messages.get(exc.code, exc)} "
            f"at line {exc.lineno} column {exc.offset}",
        ) from None
    if not done:
        raise InvalidMessage("bod_malformed", "empty document")
    return done[0]


def parse_bod(data: bytes) -> Bod:
    """A BOD from its XML bytes; InvalidMessage (``bod_malformed``/``bod_invalid``/...) otherwise."""
    root = parse_xml(data)
    if root.name.startswith("{"):
        raise InvalidMessage("bod_invalid", f"root element {root.name} is namespaced oddly")
    application_area = root.find("ApplicationArea")
    data_area = root.find("DataArea")
    if application_area is None or data_area is None or not data_area.children:
        raise InvalidMessage("bod_invalid", f"{root.name} has no ApplicationArea/DataArea: not a BOD")
    verb_area = data_area.children[0]
    verb = verb_area.name
    if not root.name.startswith(verb) or len(root.name) == len(verb):
        raise InvalidMessage(
            "bod_invalid", f"root {root.name} does not match the DataArea verb {verb} (expected {verb}<Noun>)"
        )
    noun = root.name[len(verb) :]
    nouns = tuple(child for child in data_area.children[1:] if child.name == noun)
    if not nouns:
        raise InvalidMessage("bod_invalid", f"{root.name}: DataArea holds no {noun}")
    if not application_area.text_at("BODID"):
        raise InvalidMessage("bod_invalid", f"{root.name}: ApplicationArea/BODID is missing")
    namespace = _namespace_of(data)
    return Bod(
        verb=verb,
        noun=noun,
        root_attributes=root.attributes,
        application_area=application_area,
        verb_area=verb_area,
        nouns=nouns,
        namespace=namespace,
    )


def _namespace_of(data: bytes) -> str:
    """The root element's namespace URI (empty when none), read with the same safe parser settings."""
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    found: list[str] = []

    def start(name: str, _: dict[str, str]) -> None:
        if not found:
            found.append(name.rpartition(" ")[0])
            raise _Forbidden  # stop after the root tag; the document was already fully checked

    parser.StartElementHandler = start
    with contextlib.suppress(_Forbidden, expat.ExpatError):
        parser.Parse(data, True)
    return found[0] if found else ""


# ---------------------------------------------------------------------------------------- building


def new_bod(
    verb: str,
    noun: Node | Sequence[Node],
    *,
    logical_id: str,
    bodid: str,
    tenant_id: str,
    accounting_entity_id: str,
    creation_datetime: dt.datetime | str,
    component_id: str = "",
    confirmation_code: str = "",
    location_id: str = "",
    action_code: str = "",
    original_application_area: Node | None = None,
    response_code: str = "",
    release_id: str = "9.2",
    version_id: str = "2.14.x",
) -> Bod:
    """A BOD from its envelope fields and noun element(s), elements in the order the XSD wants."""
    nouns = (noun,) if isinstance(noun, Node) else tuple(noun)
    if not nouns or any(n.name != nouns[0].name for n in nouns):
        raise ValueError("a BOD carries one or more nouns of the same kind")
    when = creation_datetime
    if isinstance(when, dt.datetime):
        if when.tzinfo is None:
            raise ValueError("creation_datetime must be timezone-aware")
        when = when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    sender = [element("LogicalID", logical_id)]
    if component_id:
        sender.append(element("ComponentID", component_id))
    if confirmation_code:
        sender.append(element("ConfirmationCode", confirmation_code))
    application_area = element(
        "ApplicationArea", "", element("Sender", "", *sender), element("CreationDateTime", when),
        element("BODID", bodid),
    )  # fmt: skip
    verb_children = [element("TenantID", tenant_id), element("AccountingEntityID", accounting_entity_id)]
    if location_id:
        verb_children.append(element("LocationID", location_id))
    if original_application_area is not None:
        verb_children.append(Node("OriginalApplicationArea", (), "", original_application_area.children))
    if response_code:
        verb_children.append(
            element("ResponseCriteria", "", element("ResponseExpression", actionCode=response_code))
        )
    if action_code:
        verb_children.append(
            element("ActionCriteria", "", element("ActionExpression", actionCode=action_code))
        )
    return Bod(
        verb=verb,
        noun=nouns[0].name,
        root_attributes=(("releaseID", release_id), ("versionID", version_id)),
        application_area=application_area,
        verb_area=Node(verb, (), "", tuple(verb_children)),
        nouns=nouns,
    )


def build_bod(bod: Bod) -> bytes:
    """The BOD as UTF-8 XML with the OAGIS default namespace (whatever prefix it arrived with)."""
    namespace = bod.namespace or OAGIS_NS

    def convert(node: Node) -> ET.Element:
        # Names in the BOD namespace stay unqualified under the root's default xmlns; ElementTree's own
        # default_namespace option cannot be used because it refuses unqualified attribute names.
        out = ET.Element(node.name, dict(node.attributes))
        out.text = node.text or None
        out.extend(convert(child) for child in node.children)
        return out

    root = convert(
        Node(
            bod.verb + bod.noun,
            (("xmlns", namespace), *bod.root_attributes),
            "",
            (bod.application_area, Node("DataArea", (), "", (bod.verb_area, *bod.nouns))),
        )
    )
    ET.indent(root, space="  ")
    text: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return text + b"\n"


# ------------------------------------------------------------------------------------ typed views


def _decimal(text: str) -> Decimal | None:
    try:
        return Decimal(text) if text.strip() else None
    except InvalidOperation:
        return None


def user_area(node: Node) -> dict[str, str]:
    """``UserArea/Property/NameValue[@name]`` pairs of an element (extension fields, e.g. ``m3.ORST``)."""
    return {nv.attr("name"): nv.text.strip() for nv in node.find_all("UserArea/Property/NameValue")}


@dataclass(frozen=True)
class Amount:
    """A money amount with its ``currencyID``."""

    value: Decimal | None
    currency: str = ""

    @staticmethod
    def at(node: Node, path: str) -> Amount | None:
        found = node.find(path)
        return None if found is None else Amount(_decimal(found.text), found.attr("currencyID"))


@dataclass(frozen=True)
class OrderLineView:
    """One SalesOrderLine."""

    line_no: str
    sku: str
    quantity: Decimal | None
    unit: str
    unit_price: Amount | None
    extended_amount: Amount | None
    status: str
    description: str
    extensions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SalesOrderView:
    """The fields of a SalesOrder noun (Sync/Process/Acknowledge)."""

    document_id: str
    variation_id: str
    customer_reference: str
    status: str
    customer_id: str
    customer_name: str
    ship_to_lines: tuple[str, ...]
    ship_to_city: str
    ship_to_postal_code: str
    ship_to_country: str
    total: Amount | None
    lines: tuple[OrderLineView, ...]
    extensions: dict[str, str] = field(default_factory=dict)


def sales_order(bod: Bod) -> SalesOrderView:
    """The SalesOrder of a Sync/Process/Acknowledge.SalesOrder BOD."""
    noun = _first(bod, "SalesOrder")
    header = noun.find("SalesOrderHeader") or Node("SalesOrderHeader")
    doc_id = header.find("DocumentID/ID")
    alternate = next(
        (n.text_at("ID") for n in header.all("AlternateDocumentID") if n.attr("agencyRole") == "Customer"), ""
    )
    document = header.find("DocumentID")
    if not alternate and document is not None and document.attr("agencyRole") == "Customer":
        alternate = header.text_at("DocumentID/ID")  # a Process BOD from the shop: our id is the customer's
    address = header.find("ShipToParty/Location/Address") or Node("Address")
    return SalesOrderView(
        document_id=doc_id.text.strip() if doc_id is not None else "",
        variation_id=doc_id.attr("variationID") if doc_id is not None else "",
        customer_reference=alternate,
        status=header.text_at("Status/Code"),
        customer_id=header.text_at("CustomerParty/PartyIDs/ID"),
        customer_name=header.text_at("CustomerParty/Name"),
        ship_to_lines=tuple(n.text.strip() for n in address.all("AddressLine")),
        ship_to_city=address.text_at("CityName"),
        ship_to_postal_code=address.text_at("PostalCode"),
        ship_to_country=address.text_at("CountryCode"),
        total=Amount.at(header, "TotalAmount"),
        lines=tuple(
            OrderLineView(
                line_no=line.text_at("LineNumber"),
                sku=line.text_at("Item/ItemID/ID"),
                quantity=_decimal(line.text_at("Quantity")),
                unit=(line.find("Quantity") or Node("Quantity")).attr("unitCode"),
                unit_price=Amount.at(line, "UnitPrice/Amount"),
                extended_amount=Amount.at(line, "ExtendedAmount"),
                status=line.text_at("Status/Code"),
                description=line.text_at("Item/Description") or line.text_at("Description"),
                extensions=user_area(line),
            )
            for line in noun.all("SalesOrderLine")
        ),
        extensions=user_area(header),
    )


@dataclass(frozen=True)
class ShipmentView:
    """The fields of a Shipment noun; ``tracking_numbers`` from configurable paths."""

    document_id: str
    variation_id: str
    order_id: str
    status: str
    carrier: str
    tracking_numbers: tuple[str, ...]
    bill_of_lading: str
    shipped_at: str
    warehouse: str
    items: tuple[tuple[str, Decimal | None, str], ...]


def shipment(bod: Bod, tracking_paths: Sequence[str] = DEFAULT_TRACKING_PATHS) -> ShipmentView:
    """The Shipment of a Sync.Shipment BOD; items are (sku, shipped quantity, order line)."""
    noun = _first(bod, "Shipment")
    header = noun.find("ShipmentHeader") or Node("ShipmentHeader")
    doc_id = header.find("DocumentID/ID")
    order = next((r for r in header.all("DocumentReference") if r.attr("type") == "SalesOrder"), None)
    tracking = tuple(
        dict.fromkeys(n.text.strip() for p in tracking_paths for n in noun.find_all(p) if n.text.strip())
    )
    return ShipmentView(
        document_id=doc_id.text.strip() if doc_id is not None else "",
        variation_id=doc_id.attr("variationID") if doc_id is not None else "",
        order_id=order.text_at("DocumentID/ID") if order is not None else "",
        status=header.text_at("Status/Code"),
        carrier=header.text_at("CarrierParty/PartyIDs/ID"),
        tracking_numbers=tracking,
        bill_of_lading=header.text_at("BillOfLadingID"),
        shipped_at=header.text_at("ActualShipDateTime"),
        warehouse=header.text_at("ShipFromParty/Location/ID"),
        items=tuple(
            (
                item.text_at("ItemID/ID"),
                _decimal(item.text_at("ShippedQuantity") or item.text_at("OrderQuantity")),
                item.text_at("DocumentReference/LineNumber") or item.text_at("LineNumber"),
            )
            for item in noun.all("ShipmentItem")
        ),
    )


@dataclass(frozen=True)
class AcknowledgementView:
    """An Acknowledge BOD's answer to one of ours."""

    original_bodid: str
    response_code: str
    document_id: str
    customer_reference: str


def acknowledgement(bod: Bod) -> AcknowledgementView:
    """What ``Acknowledge.<Noun>`` says: which BOD it answers and Accepted/Modified/Rejected."""
    if bod.verb != "Acknowledge":
        raise InvalidMessage("bod_unexpected", f"{bod.document_name} is not an Acknowledge BOD")
    order = sales_order(bod) if bod.noun == "SalesOrder" else None
    return AcknowledgementView(
        original_bodid=bod.verb_area.text_at("OriginalApplicationArea/BODID"),
        response_code=bod.action_code,
        document_id=order.document_id if order else bod.entity_id,
        customer_reference=order.customer_reference if order else "",
    )


@dataclass(frozen=True)
class InventoryLineView:
    """One counted balance: item, quantity with unit, warehouse."""

    sku: str
    quantity: Decimal | None
    unit: str
    warehouse: str


def inventory_lines(bod: Bod) -> tuple[InventoryLineView, ...]:
    """The InventoryCountLine entries of a Sync.InventoryCount BOD."""
    return tuple(
        InventoryLineView(
            sku=line.text_at("Item/ItemID/ID"),
            quantity=_decimal(line.text_at("Quantity")),
            unit=(line.find("Quantity") or Node("Quantity")).attr("unitCode"),
            warehouse=line.text_at("WarehouseLocation/ID") or bod.location_id,
        )
        for noun in bod.nouns
        for line in noun.all("InventoryCountLine")
    )


def _first(bod: Bod, noun: str) -> Node:
    if bod.noun != noun:
        raise InvalidMessage("bod_unexpected", f"{bod.document_name} carries no {noun}")
    return bod.nouns[0]
