"""The warehouse simulation: order lines 22 → 33 → 44 → 66 → 77, deliveries, invoices, moving stock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.unit.test_sandbox_infor_support import IonClient, ion_client, running_sandbox, wait_for


@pytest.fixture
def client() -> Iterator[IonClient]:
    with running_sandbox() as server, ion_client(server) as logged_in:
        logged_in.admin("PUT", "/warehouse", {"paused": True, "stock_drift_interval_s": 0})
        yield logged_in


def _statuses(client: IonClient, orno: str) -> tuple[str, str, list[str]]:
    head = client.records("OIS100MI", "GetHead", ORNO=orno, cono=100)[0]
    lines = client.records("OIS100MI", "LstLine", ORNO=orno, cono=100, maxrecs=0)
    return head["ORSL"], head["ORST"], [line["ORST"] for line in lines]


def test_stepwise_progression_with_delivery_and_invoice_details(client: IonClient) -> None:
    _, orno = client.create_order("PS-STEP", [("SKU-1001", 2), ("SKU-2002", 1)])
    before = int(client.records("OIS100MI", "GetHead", ORNO=orno, cono=100)[0]["LMTS"])
    seen = [_statuses(client, orno)]
    for _ in range(4):
        client.admin("POST", "/warehouse/step", {"times": 1})
        seen.append(_statuses(client, orno))
    assert seen == [
        ("22", "22", ["22", "22"]),
        ("33", "33", ["33", "33"]),
        ("44", "44", ["44", "44"]),
        ("66", "66", ["66", "66"]),
        ("77", "77", ["77", "77"]),
    ]
    head = client.records("OIS100MI", "GetHead", ORNO=orno, cono=100)[0]
    assert int(head["LMTS"]) > before
    delivered = client.records("MWS411MI", "LstDelLnByOrd", RORC=3, RIDN=orno, cono=100, maxrecs=0)
    assert [(line["ITNO"], line["TRQT"]) for line in delivered] == [("SKU-1001", "2"), ("SKU-2002", "1")]
    dlix = delivered[0]["DLIX"]
    delivery = client.records("MWS410MI", "GetHead", DLIX=dlix, cono=100)[0]
    assert delivery["RIDN"] == orno
    assert delivery["CONN"]
    assert delivery["NBOL"]
    assert delivery["FWNO"] == "UPS"
    assert delivery["MODL"] == "UPS"
    assert delivery["ETRN"].startswith("1Z")
    assert len(delivery["ETRN"]) == 18
    assert delivery["PGRS"] == "70"
    assert delivery["IVNO"]
    invoices = client.records("OIS350MI", "LstInvHeadByCo", ORNO=orno, cono=100, maxrecs=0)
    assert len(invoices) == 1
    invoice = invoices[0]
    assert (invoice["IVNO"], invoice["DLIX"]) == (delivery["IVNO"], dlix)
    assert invoice["YEA4"] == head["ORDT"][:4]
    assert (invoice["AMT2"], invoice["AMT1"], invoice["CUCD"]) == ("49.70", "59.64", "EUR")
    all_invoices = client.records("OIS350MI", "LstAllInvByCO", ORNO=orno, cono=100)
    assert all_invoices[0]["RAFC"] == "59.64"
    # Stock left the warehouse with the delivery.
    balance = client.records("MMS200MI", "GetItmWhsBal", WHLO="001", ITNO="SKU-1001", cono=100)[0]
    assert (balance["STQT"], balance["ALQT"]) == ("123", "0")


def test_a_line_without_stock_waits_at_22_and_header_shows_lowest_and_highest(client: IonClient) -> None:
    _, orno = client.create_order("PS-SPLIT", [("SKU-1001", 1), ("SKU-NOSTOCK", 1)])
    client.admin("POST", "/warehouse/step", {"times": 3})
    assert _statuses(client, orno) == ("22", "66", ["66", "22"])
    client.admin("PUT", "/balances/001/SKU-NOSTOCK", {"stqt": 5})
    client.admin("POST", "/warehouse/step", {"times": 1})
    orsl, orst, lines = _statuses(client, orno)
    assert (orsl, orst, lines) == ("33", "77", ["77", "33"])
    allocated = client.records("MMS200MI", "GetItmWhsBal", WHLO="001", ITNO="SKU-NOSTOCK", cono=100)[0]
    assert (allocated["ALQT"], allocated["AV01"]) == ("1", "4")


def test_the_clock_moves_orders_by_itself_after_the_configured_delay(client: IonClient) -> None:
    client.admin("PUT", "/warehouse", {"paused": False, "step_delay_s": 0.05})
    _, orno = client.create_order("PS-AUTO", [("SKU-2002", 1)])
    assert wait_for(lambda: _statuses(client, orno)[0] == "77", timeout_s=10)


def test_stock_drifts_over_time_with_new_lmts(client: IonClient) -> None:
    everything = client.records("OIS100MI", "LstNewBalances", LMTS=0, cono=100, maxrecs=0)
    newest = max(int(record["LMTS"]) for record in everything)
    changed = client.admin("POST", "/warehouse/drift", {"changes": 5})
    assert changed == {"balances_changed": 5}
    moved = client.records("OIS100MI", "LstNewBalances", LMTS=newest, cono=100, maxrecs=0)
    assert 1 <= len(moved) <= 5
    stamps = [int(record["LMTS"]) for record in moved]
    assert stamps == sorted(stamps)
    assert min(stamps) > newest
