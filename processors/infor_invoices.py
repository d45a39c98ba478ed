"""Infor invoices → ``canonical.invoice.v1``: Sync.Invoice BODs and M3 OIS350MI invoice heads.

Input: ``raw.infor.invoices``, keyed by invoice number. Amounts are exact: net (BOD ExtendedAmount /
NTAM), gross (TotalAmount / TOPY, IVAM), tax = gross - net unless stated (TotalTaxAmount / VTAM), and
amount open from M3's remaining amount (``m3.RAFC`` / RAFC; else 0 for a paid invoice, gross otherwise).
Status: a negative gross is a credit note (CREDITED); nothing open is PAID; less open than gross is
PARTIALLY_PAID; else the BOD's status word, OPEN by default. The order is found by ORNO like the
shipments; an invoice of an order the lookup does not know is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from connectors.infor.bod import user_area
from pipeline.records import Headers
from processors.infor_source import (
    OrderKeys,
    RawInfor,
    company_of,
    date_at,
    decimal_at,
    find_order_key,
    int_at,
    meta,
    money,
    prestashop_id,
    preview_context,
    read_raw,
    required,
    required_decimal,
    shop_of,
    timestamp_at,
    version_of,
)
from processors.runner import Flow, FlowContext
from rules import preview
from rules.engine import Rules
from schemas.codec import AvroDatum

NAME = "infor_invoices"
SOURCE_TOPIC = "raw.infor.invoices"
OUTPUT_TOPIC = "canonical.invoice.v1"
RECORD = "Invoice"

_HEAD = "Invoice/InvoiceHeader"
_STATUS_WORDS = {"open": "OPEN", "paid": "PAID", "cancelled": "CANCELLED", "canceled": "CANCELLED"}


@dataclass(frozen=True)
class InforInvoice:
    """The facts of one M3 invoice event."""

    source_entity: str
    invoice_number: str
    invoice_year: int
    erp_order_number: str
    issued_at: datetime
    due_date: date | None
    currency: str
    currency_path: str
    net: Decimal
    tax: Decimal
    gross: Decimal
    amount_open: Decimal
    status_word: str
    version: int
    cono: str = ""
    """M3 company (CONO) the record comes from; "" when it does not say (set by ``decode``)."""
    order_key: str | None = None


def from_raw(raw: RawInfor) -> InforInvoice:
    """The input model of a decoded raw record (BOD or OIS350MI)."""
    if raw.bod is not None:
        bod = raw.bod
        header = bod.nouns[0].find("InvoiceHeader")
        if header is None:
            required("", _HEAD)
        assert header is not None
        extensions = user_area(header)
        doc_id = header.find("DocumentID/ID")
        issued = _at(timestamp_at(header.text_at("DocumentDateTime"), f"{_HEAD}/DocumentDateTime"))
        net = required_decimal(header.text_at("ExtendedAmount"), f"{_HEAD}/ExtendedAmount")
        gross = required_decimal(header.text_at("TotalAmount"), f"{_HEAD}/TotalAmount")
        tax = decimal_at(header.text_at("TotalTaxAmount"), f"{_HEAD}/TotalTaxAmount", optional=True)
        open_amount = decimal_at(extensions.get("m3.RAFC", ""), f"{_HEAD}/UserArea/m3.RAFC", optional=True)
        word = header.text_at("Status/Code")
        total = header.find("TotalAmount")
        year = int_at(extensions.get("m3.YEA4", ""), f"{_HEAD}/UserArea/m3.YEA4")
        return InforInvoice(
            source_entity=bod.document_name,
            invoice_number=required(doc_id.text if doc_id is not None else "", f"{_HEAD}/DocumentID/ID"),
            invoice_year=year if year is not None else issued.year,
            erp_order_number=required(
                header.text_at("SalesOrderReference/DocumentID/ID"),
                f"{_HEAD}/SalesOrderReference/DocumentID/ID",
            ),
            issued_at=issued,
            due_date=date_at(header.text_at("PaymentTerm/DueDateTime"), f"{_HEAD}/PaymentTerm/DueDateTime"),
            currency=total.attr("currencyID") if total is not None else "",
            currency_path=f"{_HEAD}/TotalAmount",
            net=net,
            tax=tax if tax is not None else gross - net,
            gross=gross,
            amount_open=_open(open_amount, word, gross),
            status_word=word,
            version=version_of(
                extensions.get("m3.LMTS", ""),
                doc_id.attr("variationID") if doc_id is not None else "",
                f"{_HEAD}/DocumentID/ID@variationID",
            ),
        )
    record = raw.mi or {}
    issued = _at(timestamp_at(record.get("IVDT", ""), "IVDT"))
    net = required_decimal(record.get("NTAM", "") or record.get("IVNA", ""), "NTAM")
    gross = required_decimal(record.get("TOPY", "") or record.get("IVAM", ""), "IVAM")
    tax = decimal_at(record.get("VTAM", ""), "VTAM", optional=True)
    year = int_at(record.get("YEA4", ""), "YEA4")
    return InforInvoice(
        source_entity=raw.program or "OIS350MI",
        invoice_number=required(record.get("IVNO", ""), "IVNO"),
        invoice_year=year if year is not None else issued.year,
        erp_order_number=required(record.get("ORNO", ""), "ORNO"),
        issued_at=issued,
        due_date=date_at(record.get("DUDT", ""), "DUDT"),
        currency=record.get("CUCD", ""),
        currency_path="CUCD",
        net=net,
        tax=tax if tax is not None else gross - net,
        gross=gross,
        amount_open=_open(decimal_at(record.get("RAFC", ""), "RAFC", optional=True), "", gross),
        status_word="",
        version=version_of(record.get("LMTS", "") or raw.header("lmts"), "", "LMTS"),
    )


def _at(moment: datetime | None) -> datetime:
    assert moment is not None  # timestamp_at raises for a missing required value
    return moment


def _open(stated: Decimal | None, word: str, gross: Decimal) -> Decimal:
    if stated is not None:
        return stated
    return Decimal(0) if word.strip().lower() == "paid" else gross


def status_of(event: InforInvoice) -> str:
    """The canonical ``InvoiceStatus`` (see the module docstring)."""
    if event.gross < 0:
        return "CREDITED"
    word = _STATUS_WORDS.get(event.status_word.strip().lower())
    if word == "CANCELLED":
        return word
    if event.amount_open <= 0:
        return "PAID"
    if event.amount_open < event.gross:
        return "PARTIALLY_PAID"
    return word or "OPEN"


def to_invoice(event: InforInvoice, context: FlowContext) -> AvroDatum | None:
    """The ``Invoice`` datum, or None when the invoiced order is not a shop order."""
    order_key = event.order_key
    if order_key is None:
        return None
    path = event.currency_path
    external = {"infor": event.erp_order_number}
    local = prestashop_id(order_key)
    if local is not None:
        external["prestashop"] = local
    return {
        "meta": meta(
            entity=event.source_entity,
            source_id=f"{event.invoice_year}-{event.invoice_number}",
            version=event.version,
            occurred_at=event.issued_at,
            ingested_at=context.ingested_at,
            correlation_id=context.correlation_id,
            causation_id=None,
            shop_id=shop_of(order_key),
        ),
        "order_key": order_key,
        "invoice_number": event.invoice_number,
        "invoice_year": event.invoice_year,
        "erp_order_number": event.erp_order_number,
        "issued_at": event.issued_at,
        "due_date": event.due_date,
        "net": money(event.net, event.currency, path),
        "tax": money(event.tax, event.currency, path),
        "gross": money(event.gross, event.currency, path),
        "amount_open": money(event.amount_open, event.currency, path),
        "status": status_of(event),
        "external_ids": external,
    }


def build_flow(order_keys: OrderKeys) -> Flow[InforInvoice]:
    """The flow with this order-key lookup."""

    def decode(data: bytes, headers: Headers) -> InforInvoice:
        raw = read_raw(data, headers, nouns=("Invoice",))
        event = replace(from_raw(raw), cono=company_of(raw))
        return replace(event, order_key=find_order_key(order_keys, event.cono, event.erp_order_number))

    return Flow(
        name=NAME,
        sources=(SOURCE_TOPIC,),
        output=OUTPUT_TOPIC,
        record=RECORD,
        decode=decode,
        to_record=to_invoice,
        key=lambda event: event.order_key or "",
        version=lambda event: event.version,
    )


def preview_record(raw: bytes, rules: Rules) -> dict[str, Any]:
    """``psinfor rules preview --flow infor_invoices``; the order key is the placeholder ``?:<ORNO>``."""
    del rules
    event = from_raw(read_raw(raw, (), nouns=("Invoice",)))
    datum = to_invoice(replace(event, order_key=f"?:{event.erp_order_number}"), preview_context())
    assert datum is not None
    return datum


preview.register_flow(NAME, preview_record)
