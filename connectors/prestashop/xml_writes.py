"""XML request bodies for POST/PUT/PATCH: the webservice reads only XML, on every version.

A body is ``<prestashop xmlns:xlink=...><{node}><field>value</field>...</{node}></prestashop>`` with
no whitespace inside values (the shop does not trim). i18n values are
``<name><language id="1">..</language></name>``. Special characters are escaped by ElementTree, so
any text is safe to send.

Read-only fields are the other half of "never a lossy or refused write": :func:`read_only_fields`
names what the shop answers 400 code 93 to, per resource and version, and :func:`writable_fields`
turns a record read back from the shop into the field set a full PUT must re-send.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import TypeAlias

from connectors.prestashop import json_reads
from connectors.prestashop.transport import PsVersion

XmlScalar: TypeAlias = str | int | Decimal | bool | date | datetime | None
"""A value of one element; None renders an empty element."""
XmlValue: TypeAlias = XmlScalar | Mapping[int, str]
"""A scalar, or per-language text ``{language id: text}`` for an i18n field."""

XLINK_NS = "http://www.w3.org/1999/xlink"

_ALWAYS_READ_ONLY: dict[str, frozenset[str]] = {
    # Getter-only fields the shop refuses on write (setter false).
    "products": frozenset({"manufacturer_name", "quantity"}),
}
_READ_ONLY_FROM_8_1: dict[str, frozenset[str]] = {
    "customers": frozenset({"secure_key", "last_passwd_gen"}),
}
_NOT_RESENT: frozenset[str] = frozenset({"associations"})
"""Left out of a full PUT: absent associations are left untouched by the shop."""


def read_only_fields(resource: str, version: PsVersion) -> frozenset[str]:
    """Fields of ``resource`` the shop at ``version`` refuses in a write body (400 code 93)."""
    fields = _ALWAYS_READ_ONLY.get(resource, frozenset())
    if version.customer_secure_fields_read_only:
        fields = fields | _READ_ONLY_FROM_8_1.get(resource, frozenset())
    return fields


def render_scalar(value: XmlScalar) -> str:
    """The text of one element: booleans ``1``/``0``, decimals in plain notation, shop date format."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            raise ValueError("PrestaShop timestamps are shop-local: convert to the shop time zone first")
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def entity_body(node: str, fields: Mapping[str, XmlValue]) -> bytes:
    """The XML document for one ``node`` entity (``order_history``, ``customer``, ...)."""
    root = ET.Element("prestashop", {"xmlns:xlink": XLINK_NS})
    entity = ET.SubElement(root, node)
    for name, value in fields.items():
        element = ET.SubElement(entity, name)
        if isinstance(value, Mapping):
            for language, text in sorted(value.items()):
                ET.SubElement(element, "language", {"id": str(language)}).text = text
        else:
            element.text = render_scalar(value)
    body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return body


def writable_fields(
    record: json_reads.JsonRecord, *, resource: str, version: PsVersion
) -> dict[str, XmlValue]:
    """Every field of a record read back from the shop that a lossless full PUT must send again.

    Keeps ``id``, dates (a PUT without ``date_add`` resets it) and writable secrets such as a 1.7
    customer's ``secure_key`` (a PUT without it wipes it); drops associations and the fields that
    ``version`` refuses. i18n values keep every language they came with.
    """
    refused = read_only_fields(resource, version) | _NOT_RESENT
    fields: dict[str, XmlValue] = {}
    for name, value in record.items():
        if name in refused:
            continue
        if isinstance(value, list):
            fields[name] = json_reads.to_i18n(value, single_language_id=0)
        elif isinstance(value, dict):
            continue
        elif isinstance(value, float):
            fields[name] = json_reads.to_decimal(value)
        else:
            fields[name] = value
    return fields
