"""The M3 adapter against a MockTransport handler playing M3 batch order entry (reference §2.4/§2.5).

Covers trap 3 (order creation is not atomic; 504 on Confirm does not mean "not executed") and trap 10
(per-ERP status vocabulary mapped to the neutral one).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Coroutine
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

import httpx
import pytest

from connectors.infor.adapter import (
    Address,
    Customer,
    CustomerRef,
    ErpAdapter,
    ErpOrderRef,
    OrderStatus,
    SalesOrderLine,
    SalesOrderRequest,
)
from connectors.infor.errors import AmbiguousWriteError, MiBusinessError
from connectors.infor.m3 import M3Adapter, M3OrderDefaults, m3_order_status
from connectors.infor.mi import MiClient
from pipeline.errors import InvalidMessage

T = TypeVar("T")
ITEMS = {"SKU-1001", "SKU-2002"}


def ok(transaction: str, *records: dict[str, str]) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "results": [{"transaction": transaction, "records": list(records)}],
            "wasTerminated": False,
            "nrOfSuccessfullTransactions": 1,
            "nrOfFailedTransactions": 0,
        },
    )


def nok(transaction: str, kind: str, code: str, fld: str, message: str) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "results": [
                {
                    "transaction": transaction,
                    "errorMessage": message,
                    "errorType": kind,
                    "errorCode": code,
                    "errorField": fld,
                }
            ],
            "nrOfSuccessfullTransactions": 0,
            "nrOfFailedTransactions": 1,
        },
    )


@dataclass
class FakeM3:
    """Just enough M3: batch orders, customer orders, customers, with a knob for a 504 on Confirm."""

    calls: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    batch: dict[str, dict[str, Any]] = field(default_factory=dict)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    customers: dict[str, dict[str, str]] = field(default_factory=dict)
    confirm_fault: str = ""  # "after" = do it then answer 504; "before" = answer 504 without doing it
    confirm_faults_left: int = 0
    next_temp: int = 4711
    next_final: int = 1000012345

    def __call__(self, request: httpx.Request) -> httpx.Response:
        program, transaction = request.url.path.split("/")[-2:]
        params = dict(request.url.params)
        assert (params.pop("cono"), params.pop("divi"), params.pop("maxrecs")) == ("100", "AAA", "0")
        self.calls.append((f"{program}.{transaction}", params))
        handler = getattr(self, f"{program}_{transaction}".lower(), None)
        if handler is None:
            return httpx.Response(400, text="Bad Request")  # a bare 400, as the gateway does
        response: httpx.Response = handler(params)
        return response

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    # OIS100MI -------------------------------------------------------------------------------------
    def ois100mi_addbatchhead(self, p: dict[str, str]) -> httpx.Response:
        if p.get("CUNO") not in self.customers:
            return nok(
                "AddBatchHead",
                "ServerReturnedNOK",
                "WCU0203",
                "CUNO",
                f"Customer number {p.get('CUNO')} does not exist",
            )
        temp = f"{self.next_temp:010d}"
        self.next_temp += 1
        self.batch[temp] = {"head": p, "lines": [], "address": None, "charges": [], "final": None}
        return ok("AddBatchHead", {"ORNO": temp})

    def ois100mi_addbatchaddress(self, p: dict[str, str]) -> httpx.Response:
        self.batch[p["ORNO"]]["address"] = p
        return ok("AddBatchAddress")

    def ois100mi_addbatchline(self, p: dict[str, str]) -> httpx.Response:
        if p["ITNO"] not in ITEMS:
            return nok(
                "AddBatchLine",
                "ServerReturnedNOK",
                "WIT0103",
                "ITNO",
                f"Item number {p['ITNO']} does not exist",
            )
        lines = self.batch[p["ORNO"]]["lines"]
        lines.append(p)
        return ok("AddBatchLine", {"PONR": str(len(lines)), "POSX": "0", "ATNR": "0"})

    def ois100mi_addbatchheadchg(self, p: dict[str, str]) -> httpx.Response:
        self.batch[p["ORNO"]]["charges"].append(p)
        return ok("AddBatchHeadChg")

    def ois100mi_delbatchhead(self, p: dict[str, str]) -> httpx.Response:
        self.batch.pop(p["ORNO"], None)
        return ok("DelBatchHead")

    def ois100mi_confirm(self, p: dict[str, str]) -> httpx.Response:
        batch = self.batch.get(p["ORNO"])
        if batch is None or batch["final"] is not None:
            return nok("Confirm", "ServerReturnedNOK", "OI00001", "ORNO", "Batch order does not exist")
        if self.confirm_faults_left and self.confirm_fault == "before":
            self.confirm_faults_left -= 1
            return httpx.Response(504)
        final = str(self.next_final)
        self.next_final += 1
        batch["final"] = final
        head = batch["head"]
        self.orders[final] = {"CUOR": head["CUOR"], "CUNO": head["CUNO"], "lines": batch["lines"]}
        if self.confirm_faults_left and self.confirm_fault == "after":
            self.confirm_faults_left -= 1
            return httpx.Response(504)
        return ok("Confirm", {"ORNO": final, "STAT": "90"})

    def ois100mi_getorderno(self, p: dict[str, str]) -> httpx.Response:
        batch = self.batch.get(p["ORNO"])
        if batch is None:
            return nok("GetOrderNo", "ServerReturnedNOK", "OI00001", "ORNO", "Batch order does not exist")
        return ok("GetOrderNo", {"ORNR": batch["final"] or ""})

    def ois100mi_lsthead(self, p: dict[str, str]) -> httpx.Response:
        rows = [
            {"ORNO": o, "CUNO": v["CUNO"], "CUOR": v["CUOR"]}
            for o, v in self.orders.items()
            if v["CUNO"] == p["CUNO"]
        ]
        return ok("LstHead", *rows)

    def ois100mi_gethead(self, p: dict[str, str]) -> httpx.Response:
        return ok(
            "GetHead",
            {
                "ORNO": p["ORNO"],
                "CUOR": "PS-000123",
                "CUNO": "PS000042",
                "CUCD": "EUR",
                "ORSL": "33",
                "ORST": "66",
                "TOPY": "47.76",
            },
        )

    def ois100mi_lstline(self, p: dict[str, str]) -> httpx.Response:
        return ok(
            "LstLine",
            {
                "PONR": "1",
                "ITNO": "SKU-1001",
                "ORQT": "2",
                "ORST": "66",
                "ALQT": "0",
                "DLQT": "2",
                "IVQT": "0",
            },
            {
                "PONR": "2",
                "ITNO": "SKU-2002",
                "ORQT": "1",
                "ORST": "33",
                "ALQT": "1",
                "DLQT": "0",
                "IVQT": "0",
            },
        )

    def ois100mi_lstnewbalances(self, p: dict[str, str]) -> httpx.Response:
        return ok(
            "LstNewBalances",
            {"WHLO": "001", "ITNO": "SKU-1001", "AV01": "115", "AV02": "115", "LMTS": "20250305080500000"},
        )

    # CRS610MI -------------------------------------------------------------------------------------
    def crs610mi_getbasicdata(self, p: dict[str, str]) -> httpx.Response:
        record = self.customers.get(p["CUNO"])
        if record is None:
            return nok("GetBasicData", "ServerReturnedNOK", "XRE0103", "CUNO", "Record does not exist")
        return ok("GetBasicData", record)

    def crs610mi_add(self, p: dict[str, str]) -> httpx.Response:
        if p["CUNO"] in self.customers:
            return nok("Add", "ServerReturnedNOK", "WCU0101", "CUNO", "Customer number already exists")
        if "CUTM" not in p:
            return nok("Add", "MandatoryInputFieldNotFound", "", "CUTM", "Mandatory field CUTM missing")
        self.customers[p["CUNO"]] = {k: v for k, v in p.items() if k != "CUTM"}
        return ok("Add", {"CUNO": p["CUNO"], "ERRM": ""})

    def crs610mi_chgbasicdata(self, p: dict[str, str]) -> httpx.Response:
        self.customers[p["CUNO"]].update(p)
        return ok("ChgBasicData")

    # items, stock, deliveries, invoices -----------------------------------------------------------
    def mms200mi_getitmbasic(self, p: dict[str, str]) -> httpx.Response:
        if p["ITNO"] not in ITEMS:
            return nok("GetItmBasic", "ServerReturnedNOK", "WIT0103", "ITNO", "Item does not exist")
        return ok(
            "GetItmBasic",
            {
                "ITNO": p["ITNO"],
                "ITDS": "Blue mug",
                "STAT": "20",
                "UNMS": "EA",
                "NEWE": "0.350",
                "LMDT": "20250301",
            },
        )

    def mms200mi_getitmwhsbal(self, p: dict[str, str]) -> httpx.Response:
        return ok(
            "GetItmWhsBal", {"WHLO": p["WHLO"], "ITNO": p["ITNO"], "STQT": "125", "ALQT": "10", "AV01": "115"}
        )

    def mws411mi_lstdellnbyord(self, p: dict[str, str]) -> httpx.Response:
        assert p == {"RORC": "3", "RIDN": "1000012345"}
        return ok("LstDelLnByOrd", {"DLIX": "5000001234", "ITNO": "SKU-1001", "TRQT": "2", "RIDL": "1"})

    def mws410mi_gethead(self, p: dict[str, str]) -> httpx.Response:
        return ok(
            "GetHead",
            {
                "DLIX": p["DLIX"],
                "RIDN": "1000012345",
                "PGRS": "60",
                "ETRN": "1Z999AA10123456784",
                "NBOL": "BOL-778899",
                "FWNO": "UPS",
                "DSDT": "20250305",
            },
        )

    def ois350mi_lstinvheadbyco(self, p: dict[str, str]) -> httpx.Response:
        return ok(
            "LstInvHeadByCo",
            {
                "IVNO": "700123",
                "YEA4": "2025",
                "IVDT": "20250305",
                "CUNO": "PS000042",
                "AMT1": "47.76",
                "AMT2": "39.80",
                "CUCD": "EUR",
                "DUDT": "20250404",
                "DLIX": "5000001234",
            },
        )


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def adapter(fake: FakeM3) -> M3Adapter:
    http = httpx.AsyncClient(transport=httpx.MockTransport(fake))
    mi = MiClient(http, api_base="https://gw.example.test/ACME_TST", cono=100, divi="AAA")
    return M3Adapter(
        mi,
        M3OrderDefaults(
            order_type="WEB",
            facility="A01",
            warehouse="001",
            shipping_charge_id="FRT",
            customer_template="WEBTMPL",
        ),
    )


def order(ref: str = "PS-000123", sku2: str = "SKU-2002") -> SalesOrderRequest:
    return SalesOrderRequest(
        external_ref=ref,
        customer_id="PS000042",
        currency="EUR",
        order_date=dt.date(2025, 3, 4),
        lines=(
            SalesOrderLine(1, "SKU-1001", Decimal("2"), Decimal("19.90")),
            SalesOrderLine(2, sku2, Decimal("1"), Decimal("9.90")),
        ),
        ship_to=Address("Jane Doe", ("12 Rue de la Paix",), "Paris", "75002", "FR"),
        shipping_amount=Decimal("5.90"),
        requested_delivery=dt.date(2025, 3, 6),
    )


def with_customer() -> FakeM3:
    fake = FakeM3()
    fake.customers["PS000042"] = {"CUNO": "PS000042", "CUNM": "Jane Doe"}
    return fake


def test_the_adapter_satisfies_the_protocol() -> None:
    erp: ErpAdapter = adapter(FakeM3())
    assert "orders.create" in erp.capabilities


def test_trap03_order_creation_sequence_and_final_order_number() -> None:
    fake = with_customer()
    ack = run(adapter(fake).create_sales_order(order(), idempotency_key="k1"))
    assert (ack.ref.erp_order_id, ack.ref.external_ref, ack.created) == ("1000012345", "PS-000123", True)
    assert (ack.erp_temp_id, ack.status_native) == ("0000004711", "90")
    assert fake.names() == [
        "OIS100MI.LstHead",
        "OIS100MI.AddBatchHead",
        "OIS100MI.AddBatchAddress",
        "OIS100MI.AddBatchLine",
        "OIS100MI.AddBatchLine",
        "OIS100MI.AddBatchHeadChg",
        "OIS100MI.Confirm",
    ]
    head = fake.calls[1][1]
    assert head == {
        "CUNO": "PS000042",
        "ORTP": "WEB",
        "FACI": "A01",
        "WHLO": "001",
        "CUOR": "PS-000123",
        "ORDT": "20250304",
        "RLDT": "20250306",
        "CUCD": "EUR",
    }
    assert fake.calls[3][1] == {
        "ORNO": "0000004711",
        "ITNO": "SKU-1001",
        "ORQT": "2",
        "WHLO": "001",
        "SAPR": "19.90",
    }
    assert fake.calls[5][1] == {"ORNO": "0000004711", "CRID": "FRT", "CRAM": "5.90", "CUCD": "EUR"}
    assert fake.calls[6][1] == {"ORNO": "0000004711"}


def test_an_existing_order_is_found_by_cuor_and_not_created_again() -> None:
    fake = with_customer()
    erp = adapter(fake)
    first = run(erp.create_sales_order(order(), idempotency_key="k1"))
    fake.calls.clear()
    again = run(erp.create_sales_order(order(), idempotency_key="k1-redelivered"))
    assert again.created is False
    assert again.ref == first.ref
    assert fake.names() == ["OIS100MI.LstHead"]
    assert len(fake.orders) == 1


@pytest.mark.parametrize("when", ["after", "before"])
def test_ambiguous_504_on_confirm_is_resolved_without_a_second_order(when: str) -> None:
    """504 on Confirm: GetOrderNo answers at once when Confirm ran; otherwise the retry re-confirms
    the same batch order. Either way exactly one customer order exists."""
    fake = with_customer()
    fake.confirm_fault, fake.confirm_faults_left = when, 1
    erp = adapter(fake)
    if when == "after":
        ack = run(erp.create_sales_order(order(), idempotency_key="k1"))
        assert fake.names()[-2:] == ["OIS100MI.Confirm", "OIS100MI.GetOrderNo"]
    else:
        with pytest.raises(AmbiguousWriteError) as info:
            run(erp.create_sales_order(order(), idempotency_key="k1"))
        assert (info.value.reference, info.value.status) == ("0000004711", 504)
        fake.calls.clear()
        ack = run(erp.create_sales_order(order(), idempotency_key="k1-retry"))  # what the runner does next
        assert fake.names() == ["OIS100MI.LstHead", "OIS100MI.GetOrderNo", "OIS100MI.Confirm"]
    assert ack.ref.erp_order_id == "1000012345"
    assert len(fake.orders) == 1
    assert len(fake.batch) == 1  # no second batch order was started either


def test_confirm_timed_out_twice_then_the_lookup_by_cuor_finds_it() -> None:
    fake = with_customer()
    fake.confirm_fault, fake.confirm_faults_left = "after", 1
    erp = adapter(fake)

    # GetOrderNo itself fails transiently right after the 504: the ambiguity goes to the runner.
    original = fake.ois100mi_getorderno
    fake.ois100mi_getorderno = lambda p: httpx.Response(504)  # type: ignore[method-assign]
    with pytest.raises(AmbiguousWriteError):
        run(erp.create_sales_order(order(), idempotency_key="k1"))
    fake.ois100mi_getorderno = original  # type: ignore[method-assign]
    fake.calls.clear()
    ack = run(erp.create_sales_order(order(), idempotency_key="k1-retry"))
    assert ack.created is False
    assert fake.names() == ["OIS100MI.LstHead"]
    assert len(fake.orders) == 1


def test_unknown_item_is_invalid_with_m3s_fields_and_the_batch_order_is_discarded() -> None:
    fake = with_customer()
    with pytest.raises(MiBusinessError) as info:
        run(adapter(fake).create_sales_order(order(sku2="SKU-NOPE"), idempotency_key="k1"))
    assert isinstance(info.value, InvalidMessage)
    assert info.value.reason == "m3_nok"
    assert info.value.details["errorField"] == "ITNO"
    assert info.value.details["errorCode"] == "WIT0103"
    assert fake.names()[-1] == "OIS100MI.DelBatchHead"
    assert fake.batch == {}
    assert fake.orders == {}


def test_rejected_batch_order_status_is_invalid() -> None:
    fake = with_customer()
    fake.ois100mi_confirm = lambda p: ok("Confirm", {"ORNO": p["ORNO"], "STAT": "15"})  # type: ignore[method-assign]
    with pytest.raises(InvalidMessage) as info:
        run(adapter(fake).create_sales_order(order(), idempotency_key="k1"))
    assert info.value.reason == "m3_batch_order_rejected"
    assert info.value.details["STAT"] == "15"


def test_trap10_order_state_maps_m3_statuses() -> None:
    state = run(adapter(FakeM3()).get_sales_order(ErpOrderRef("1000012345")))
    assert state.status is OrderStatus.PARTIALLY_SHIPPED
    assert state.status_native["ORSL"] == "33"
    assert state.status_native["ORST"] == "66"
    assert [(line.sku, line.status, line.qty_shipped) for line in state.lines] == [
        ("SKU-1001", OrderStatus.SHIPPED, Decimal("2")),
        ("SKU-2002", OrderStatus.ALLOCATED, Decimal("0")),
    ]
    assert state.total == Decimal("47.76")


@pytest.mark.parametrize(
    ("orsl", "orst", "stop", "expected"),
    [
        ("22", "22", "", OrderStatus.OPEN),
        ("23", "33", "", OrderStatus.ALLOCATED),
        ("33", "44", "", OrderStatus.PICKING),
        ("33", "66", "", OrderStatus.PARTIALLY_SHIPPED),
        ("66", "66", "", OrderStatus.SHIPPED),
        ("67", "77", "", OrderStatus.SHIPPED),
        ("77", "77", "", OrderStatus.INVOICED),
        ("99", "99", "", OrderStatus.CANCELLED),
        ("05", "05", "", OrderStatus.QUOTATION),
        ("10", "10", "", OrderStatus.PRELIMINARY),
        ("22", "22", "1", OrderStatus.ON_HOLD),
        ("", "", "", OrderStatus.UNKNOWN),
    ],
)
def test_m3_status_table(orsl: str, orst: str, stop: str, expected: OrderStatus) -> None:
    assert m3_order_status(orsl, orst, stop) is expected


def test_customer_upsert_creates_once_then_updates_only_on_change() -> None:
    fake = FakeM3()
    erp = adapter(fake)
    jane = Customer(
        "PS000042",
        "Jane Doe",
        Address("Jane Doe", ("12 Rue de la Paix",), "Paris", "75002", "FR"),
        email="jane@example.com",
    )
    assert run(erp.upsert_customer(jane)) == CustomerRef("PS000042", created=True)
    assert fake.customers["PS000042"]["MAIL"] == "jane@example.com"
    assert run(erp.upsert_customer(jane)) == CustomerRef("PS000042")
    assert "CRS610MI.ChgBasicData" not in fake.names()
    moved = Customer(
        "PS000042",
        "Jane Doe",
        Address("Jane Doe", ("1 Quai",), "Lyon", "69001", "FR"),
        email="jane@example.com",
    )
    assert run(erp.upsert_customer(moved)) == CustomerRef("PS000042", changed=True)
    assert fake.customers["PS000042"]["TOWN"] == "Lyon"
    assert len(fake.customers) == 1


def test_duplicate_customer_race_turns_into_an_update() -> None:
    fake = FakeM3()
    erp = adapter(fake)
    original_get = fake.crs610mi_getbasicdata
    calls = {"n": 0}

    def get_then_someone_else_creates(p: dict[str, str]) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:  # our lookup misses, then a concurrent sink creates the customer
            fake.customers["PS000042"] = {"CUNO": "PS000042", "CUNM": "J. Doe"}
            return nok("GetBasicData", "ServerReturnedNOK", "XRE0103", "CUNO", "Record does not exist")
        return original_get(p)

    fake.crs610mi_getbasicdata = get_then_someone_else_creates  # type: ignore[method-assign]
    ref = run(erp.upsert_customer(Customer("PS000042", "Jane Doe")))
    assert ref == CustomerRef("PS000042", changed=True)
    assert len(fake.customers) == 1
    assert fake.customers["PS000042"]["CUNM"] == "Jane Doe"


def test_items_stock_shipments_invoices() -> None:
    erp = adapter(FakeM3())
    item = run(erp.get_item("SKU-1001"))
    assert item is not None
    assert (item.description, item.net_weight, item.changed_on) == (
        "Blue mug",
        Decimal("0.350"),
        dt.date(2025, 3, 1),
    )
    assert run(erp.get_item("SKU-NOPE")) is None
    (level,) = run(erp.get_stock(["SKU-1001"]))
    assert (level.warehouse, level.available, level.on_hand, level.allocated) == (
        "001",
        Decimal(115),
        Decimal(125),
        Decimal(10),
    )
    (delta,) = run(erp.stock_changes_since("20250305000000000"))
    assert (delta.sku, delta.available, delta.change_stamp) == ("SKU-1001", Decimal(115), "20250305080500000")
    (shipment,) = run(erp.list_shipments(ErpOrderRef("1000012345")))
    assert shipment.tracking_numbers == ("1Z999AA10123456784",)
    assert (shipment.shipment_id, shipment.carrier, shipment.shipped_on) == (
        "5000001234",
        "UPS",
        dt.date(2025, 3, 5),
    )
    assert shipment.lines[0].quantity == Decimal(2)
    (invoice,) = run(erp.list_invoices(ErpOrderRef("1000012345")))
    assert (invoice.invoice_id, invoice.gross, invoice.due_date) == (
        "700123",
        Decimal("47.76"),
        dt.date(2025, 4, 4),
    )
