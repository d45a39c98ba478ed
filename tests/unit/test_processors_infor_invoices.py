"""Infor invoice flow: Sync.Invoice BODs and OIS350MI heads → canonical.invoice.v1."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from pipeline.errors import InvalidMessage
from processors import infor_invoices
from processors.erp_links import ErpLinkIndex, OrderLink
from processors.infor_source import EVENT_NAMESPACE
from processors.runner import Skipped
from rules.engine import load_rules
from rules.preview import preview
from tests.unit.test_processors_infor_support import assert_valid, context, fixture, sandbox_bod

INVOICE = fixture("bod/SyncInvoice.xml")
HEAD = "Invoice/InvoiceHeader"


def _run(raw: bytes, keys: ErpLinkIndex | None = None) -> dict[str, Any] | None:
    if keys is None:
        keys = ErpLinkIndex()
        keys.link_order(OrderLink("1:1042", "100", erp_order_number="1000012345"))
    flow = infor_invoices.build_flow(keys)
    event = flow.decode(raw, ())
    assert not isinstance(event, Skipped)
    datum = flow.to_record(event, context())
    assert datum is None or isinstance(datum, dict)
    if datum is not None:
        assert_valid("Invoice", datum)
        assert flow.key(event) == "1:1042"
    return datum


def _eur(amount: str) -> dict[str, Any]:
    return {"amount": Decimal(amount), "currency": "EUR"}


def test_reference_fixture_field_by_field() -> None:
    datum = _run(INVOICE)
    assert datum is not None
    assert (datum["order_key"], datum["invoice_number"], datum["invoice_year"]) == ("1:1042", "700123", 2025)
    assert datum["erp_order_number"] == "1000012345"
    assert datum["issued_at"] == datetime(2025, 3, 5, tzinfo=UTC)
    assert datum["due_date"] == date(2025, 4, 4)
    assert datum["net"] == _eur("39.80")
    assert datum["tax"] == _eur("7.96")  # gross - net, exact
    assert datum["gross"] == _eur("47.76")
    assert datum["amount_open"] == _eur("47.76")
    assert datum["status"] == "OPEN"
    assert datum["external_ids"] == {"infor": "1000012345", "prestashop": "1042"}
    meta = datum["meta"]
    assert meta["source_id"] == "2025-700123"
    assert meta["version"] == 1
    assert meta["event_id"] == str(uuid.uuid5(EVENT_NAMESPACE, "INFOR|Sync.Invoice|2025-700123|1"))


def test_sandbox_invoice_with_m3_remaining_amount() -> None:
    datum = _run(sandbox_bod("Sync.Invoice").xml)
    assert datum is not None
    assert datum["net"] == _eur("39.80")  # 2 x 19.90
    assert datum["gross"] == _eur("47.76")  # + 20 % VAT
    assert datum["amount_open"] == datum["gross"]  # m3.RAFC
    assert datum["due_date"] == date(2025, 4, 4)


@pytest.mark.parametrize(
    ("rafc", "status"), [("0.00", "PAID"), ("10.00", "PARTIALLY_PAID"), ("47.76", "OPEN")]
)
def test_status_follows_the_remaining_amount(rafc: str, status: str) -> None:
    record = {"IVNO": "700124", "YEA4": "2025", "ORNO": "1000012345", "IVDT": "20250306", "CUCD": "EUR",
              "NTAM": "39.80", "VTAM": "7.96", "TOPY": "47.76", "RAFC": rafc, "DUDT": "20250405",
              "LMTS": "1741250000000"}  # fmt: skip
    datum = _run(json.dumps(record).encode())
    assert datum is not None
    assert datum["status"] == status
    assert datum["amount_open"] == _eur(rafc)


def test_credit_note() -> None:
    raw = INVOICE.replace(b">39.80</ExtendedAmount>\n", b">-39.80</ExtendedAmount>\n", 1)
    raw = raw.replace(b">47.76<", b">-47.76<")
    datum = _run(raw)
    assert datum is not None
    assert datum["status"] == "CREDITED"
    assert datum["tax"] == _eur("-7.96")


def test_invoice_of_an_unknown_order_is_skipped() -> None:
    assert _run(INVOICE, ErpLinkIndex()) is None


@pytest.mark.parametrize(
    ("change", "reason", "path"),
    [
        ((b">47.76<", b">47,76<"), "wrong_type", f"{HEAD}/TotalAmount"),
        ((b'"EUR">47.76', b'"euro">47.76'), "invalid_format", f"{HEAD}/TotalAmount@currencyID"),
        ((b">2025-04-04T00:00:00Z", b">next month"), "wrong_type", f"{HEAD}/PaymentTerm/DueDateTime"),
        ((b">700123</ID>", b"></ID>"), "missing_field", f"{HEAD}/DocumentID/ID"),
    ],
)
def test_invalid_fields_name_their_path(change: tuple[bytes, bytes], reason: str, path: str) -> None:
    assert change[0] in INVOICE
    with pytest.raises(InvalidMessage) as caught:
        _run(INVOICE.replace(*change))
    assert (caught.value.reason, caught.value.field_path) == (reason, path)


def test_preview_is_registered() -> None:
    assert preview(INVOICE, load_rules(None), "infor_invoices")["gross"] == _eur("47.76")
