"""The M3 data the sandbox serves, per company (CONO) and division (DIVI), indexed for volume.

Everything that changes gets a fresh LMTS (M3's change timestamp, N18; here epoch milliseconds made
strictly increasing across the whole state, infor.md §2.4) and notifies the change listeners (the IMS
pusher turns them into Sync BODs). All mutations happen on the server's event loop, so no locks.

Number series follow the fixtures: temporary batch order numbers from ``0000004711``, final customer
order numbers from ``1000012345``, delivery numbers (DLIX), shipments (CONN), invoices (IVNO, per YEA4).
Order statuses are M3's two-digit codes (§2.4): line ORST 22 → 33 → 44 → 66 → 77, header ORSL/ORST
the lowest/highest line status; batch orders 15/20/25 (rejected) or 90 (customer order created).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

CENT = Decimal("0.01")


def money(value: Decimal) -> str:
    """An amount as M3 prints it: two decimals, point separator."""
    return str(value.quantize(CENT, rounding=ROUND_HALF_UP))


def qty(value: Decimal) -> str:
    """A quantity without trailing zeros (``"2"``, ``"1.5"``)."""
    text = format(value.normalize(), "f")
    return text if text != "-0" else "0"


def ymd(day: date) -> str:
    """A date as ``yyyyMMdd`` (dateformat YMD8, the storage form)."""
    return day.strftime("%Y%m%d")


@dataclass
class Change:
    """One state change listeners hear about: what kind, which entity, and its company/division."""

    kind: str  # order | shipment | invoice | item | balance | customer
    key: str
    cono: int
    divi: str = ""
    action: str = "Replace"  # Add for a new entity, Replace for a change


@dataclass
class Company:
    """An M3 company with its divisions and local currency."""

    cono: int
    name: str
    divisions: dict[str, str]
    currency: str = "EUR"


@dataclass
class Warehouse:
    """A warehouse (WHLO) belonging to a division and facility."""

    cono: int
    whlo: str
    divi: str
    faci: str
    name: str


@dataclass
class Customer:
    """A CRS610 customer; ``stat`` 20 = active (an order for another status is rejected)."""

    cono: int
    cuno: str
    cunm: str
    cua1: str
    cua2: str = ""
    cua3: str = ""
    cua4: str = ""
    pono: str = ""
    town: str = ""
    cscd: str = ""
    ecar: str = ""
    phno: str = ""
    mail: str = ""
    cucd: str = "EUR"
    stat: str = "20"
    cutp: str = "0"
    alcu: str = ""
    yref: str = ""
    lncd: str = "GB"
    ortp: str = "WEB"
    modl: str = "UPS"
    tedl: str = "DAP"
    tepy: str = "30D"
    whlo: str = "001"
    cutm: str = ""
    lmts: int = 0
    lmdt: str = ""

    def record(self) -> dict[str, str]:
        """The MI output record (CRS610MI GetBasicData / LstByNumber)."""
        return {
            "CONO": str(self.cono),
            "CUNO": self.cuno,
            "CUNM": self.cunm,
            "CUA1": self.cua1,
            "CUA2": self.cua2,
            "CUA3": self.cua3,
            "CUA4": self.cua4,
            "PONO": self.pono,
            "TOWN": self.town,
            "CSCD": self.cscd,
            "ECAR": self.ecar,
            "PHNO": self.phno,
            "MAIL": self.mail,
            "CUCD": self.cucd,
            "STAT": self.stat,
            "CUTP": self.cutp,
            "ALCU": self.alcu,
            "YREF": self.yref,
            "LNCD": self.lncd,
            "ORTP": self.ortp,
            "MODL": self.modl,
            "TEDL": self.tedl,
            "TEPY": self.tepy,
            "WHLO": self.whlo,
            "LMDT": self.lmdt,
            "LMTS": str(self.lmts),
        }


@dataclass
class Item:
    """An MMS200 item; ``stat`` 20 = active, ``sale`` 1 = sales item; ``price`` is the list price."""

    cono: int
    itno: str
    itds: str
    fuds: str = ""
    unms: str = "EA"
    itgr: str = ""
    itcl: str = ""
    itty: str = "FG"
    stat: str = "20"
    sale: str = "1"
    newe: Decimal = Decimal("0.5")
    grwe: Decimal = Decimal("0.6")
    price: Decimal = Decimal("10.00")
    itne: str = ""
    lmdt: str = ""
    lmts: int = 0

    def record(self) -> dict[str, str]:
        """The MI output record (MMS200MI GetItmBasic and the item lists)."""
        return {
            "CONO": str(self.cono),
            "ITNO": self.itno,
            "ITDS": self.itds,
            "FUDS": self.fuds,
            "STAT": self.stat,
            "UNMS": self.unms,
            "ITGR": self.itgr,
            "ITCL": self.itcl,
            "ITTY": self.itty,
            "NEWE": qty(self.newe),
            "GRWE": qty(self.grwe),
            "SALE": self.sale,
            "SAPR": money(self.price),
            "ITNE": self.itne,
            "LMDT": self.lmdt,
            "LMTS": str(self.lmts),
        }


@dataclass
class Balance:
    """An item's balance in a warehouse: on hand (STQT), allocated (ALQT), reserved (REQT)."""

    cono: int
    whlo: str
    itno: str
    stqt: Decimal
    alqt: Decimal = Decimal(0)
    reqt: Decimal = Decimal(0)
    whsl: str = "A-01"
    iddt: str = ""
    oddt: str = ""
    lmts: int = 0

    @property
    def allocatable(self) -> Decimal:
        """AV01: on hand minus allocated."""
        return self.stqt - self.alqt

    def record(self) -> dict[str, str]:
        """MMS200MI GetItmWhsBal / OIS100MI LstNewBalances fields (fixtures/m3/MMS200MI_GetItmWhsBal_ok)."""
        return {
            "CONO": str(self.cono),
            "WHLO": self.whlo,
            "ITNO": self.itno,
            "WHSL": self.whsl,
            "STAS": "2",
            "STQT": qty(self.stqt),
            "ALQT": qty(self.alqt),
            "AV01": qty(self.allocatable),
            "AVAL": qty(self.stqt),
            "REQT": qty(self.reqt),
            "AV02": qty(self.stqt - self.alqt - self.reqt),
            "ORQT": "0",
            "IDDT": self.iddt,
            "ODDT": self.oddt,
            "LMTS": str(self.lmts),
        }


@dataclass
class OrderLine:
    """A customer order (or batch order) line; ``orst`` is the line's two-digit status."""

    ponr: int
    itno: str
    itds: str
    orqt: Decimal
    whlo: str
    sapr: Decimal
    cucd: str
    dwdt: str
    posx: int = 0
    orst: str = "22"
    alqt: Decimal = Decimal(0)
    dlqt: Decimal = Decimal(0)
    ivqt: Decimal = Decimal(0)
    cuor: str = ""
    lmts: int = 0
    dia1: Decimal = Decimal(0)
    """Discount amount 1 (AddBatchLine DIA1), taken off the line amount."""

    @property
    def net(self) -> Decimal:
        """NLAM: line amount (quantity x price, less the discount amount)."""
        return (self.orqt * self.sapr - self.dia1).quantize(CENT, rounding=ROUND_HALF_UP)

    def record(self, orno: str) -> dict[str, str]:
        """OIS100MI LstLine fields (fixtures/m3/OIS100MI_LstLine_ok)."""
        return {
            "ORNO": orno,
            "PONR": str(self.ponr),
            "POSX": str(self.posx),
            "ITNO": self.itno,
            "ITDS": self.itds,
            "ORQT": qty(self.orqt),
            "WHLO": self.whlo,
            "ORST": self.orst,
            "SAPR": money(self.sapr),
            "NEPR": money(self.sapr),
            "NLAM": money(self.net),
            "DIA1": money(self.dia1),
            "CUCD": self.cucd,
            "ALQT": qty(self.alqt),
            "DLQT": qty(self.dlqt),
            "IVQT": qty(self.ivqt),
            "DWDT": self.dwdt,
            "LMTS": str(self.lmts),
        }


@dataclass
class OrderHead:
    """Header fields shared by batch orders and customer orders (AddBatchHead inputs)."""

    cuno: str
    ortp: str
    faci: str
    whlo: str
    cuor: str
    ordt: str
    rldt: str
    cucd: str
    modl: str
    tedl: str
    tepy: str
    yref: str
    adid: str = ""
    pyno: str = ""


@dataclass
class BatchOrder:
    """An OIS275 batch order: temporary ORNO, status < 90 until Confirm creates the customer order."""

    cono: int
    divi: str
    temp_orno: str
    head: OrderHead
    lines: list[OrderLine] = field(default_factory=list)
    addresses: list[dict[str, str]] = field(default_factory=list)
    charges: list[tuple[str, Decimal]] = field(default_factory=list)
    texts: list[dict[str, str]] = field(default_factory=list)
    stat: str = "10"
    final_orno: str = ""
    lmts: int = 0

    def record(self) -> dict[str, str]:
        """OIS100MI LstBatchHead fields."""
        return {
            "CONO": str(self.cono),
            "DIVI": self.divi,
            "ORNO": self.temp_orno,
            "CUNO": self.head.cuno,
            "CUOR": self.head.cuor,
            "ORTP": self.head.ortp,
            "ORDT": self.head.ordt,
            "STAT": self.stat,
            "ORNR": self.final_orno,
            "LMTS": str(self.lmts),
        }


@dataclass
class CustomerOrder:
    """An OIS100 customer order created by Confirm; the warehouse moves its lines on."""

    cono: int
    divi: str
    orno: str
    temp_orno: str
    head: OrderHead
    lines: list[OrderLine]
    charges: Decimal
    vat_rate: Decimal
    addresses: list[dict[str, str]] = field(default_factory=list)
    lmts: int = 0
    variation: int = 0
    deliveries: list[int] = field(default_factory=list)
    invoices: list[int] = field(default_factory=list)
    next_step_at: float = 0.0

    @property
    def orsl(self) -> str:
        """Lowest line status."""
        return min(line.orst for line in self.lines)

    @property
    def orst(self) -> str:
        """Highest line status."""
        return max(line.orst for line in self.lines)

    @property
    def net(self) -> Decimal:
        """NTAM: sum of line amounts."""
        return sum((line.net for line in self.lines), Decimal(0))

    @property
    def vat(self) -> Decimal:
        """VTAM: VAT on lines and charges."""
        return ((self.net + self.charges) * self.vat_rate).quantize(CENT, rounding=ROUND_HALF_UP)

    @property
    def total(self) -> Decimal:
        """TOPY: what the customer pays."""
        return self.net + self.charges + self.vat

    def record(self) -> dict[str, str]:
        """OIS100MI GetHead fields (fixtures/m3/OIS100MI_GetHead_ok)."""
        h = self.head
        return {
            "CONO": str(self.cono),
            "DIVI": self.divi,
            "ORNO": self.orno,
            "ORTP": h.ortp,
            "ORDT": h.ordt,
            "STAT": "20",
            "FACI": h.faci,
            "CUOR": h.cuor,
            "CUNO": h.cuno,
            "CUCD": h.cucd,
            "WHLO": h.whlo,
            "ORSL": self.orsl,
            "ORST": self.orst,
            "NTAM": money(self.net),
            "ONET": money(self.net),
            "BRAM": money(self.net + self.charges),
            "VTAM": money(self.vat),
            "TOAM": money(self.total),
            "TOPY": money(self.total),
            "MODL": h.modl,
            "TEDL": h.tedl,
            "TEPY": h.tepy,
            "RLDT": h.rldt,
            "YREF": h.yref,
            "ADID": h.adid,
            "PYNO": h.pyno or h.cuno,
            "OBLC": "0",
            "LMTS": str(self.lmts),
        }


@dataclass
class Delivery:
    """An MWS410 delivery (DLIX) in a shipment (CONN), with carrier and tracking once shipped."""

    cono: int
    divi: str
    dlix: int
    conn: int
    orno: str
    whlo: str
    modl: str
    fwno: str
    etrn: str
    nbol: str
    dsdt: str
    dshm: str
    lines: list[tuple[int, str, Decimal]]  # (PONR, ITNO, TRQT)
    pgrs: str = "60"
    pist: str = "90"
    ivno: int = 0
    ivdt: str = ""
    lmts: int = 0
    variation: int = 0

    def record(self) -> dict[str, str]:
        """MWS410MI GetHead fields."""
        return {
            "CONO": str(self.cono),
            "DLIX": str(self.dlix),
            "CONN": str(self.conn),
            "RIDN": self.orno,
            "RORC": "3",
            "WHLO": self.whlo,
            "PGRS": self.pgrs,
            "PIST": self.pist,
            "ETRN": self.etrn,
            "NBOL": self.nbol,
            "MBOL": self.nbol,
            "FWNO": self.fwno,
            "MODL": self.modl,
            "DSDT": self.dsdt,
            "DSHM": self.dshm,
            "IVNO": str(self.ivno) if self.ivno else "",
            "IVDT": self.ivdt,
            "NRUL": "1",
            "GRW2": "1.0",
            "LMTS": str(self.lmts),
        }

    def line_records(self) -> list[dict[str, str]]:
        """MWS411MI LstDelLnByOrd fields, one per delivered line."""
        return [
            {
                "DLIX": str(self.dlix),
                "RORC": "3",
                "RIDN": self.orno,
                "RIDL": str(ponr),
                "RIDX": "0",
                "ITNO": itno,
                "TRQT": qty(trqt),
                "PLQT": qty(trqt),
                "LMTS": str(self.lmts),
            }
            for ponr, itno, trqt in self.lines
        ]


@dataclass
class Invoice:
    """An OIS350 invoice; ``rafc`` is what remains to be paid."""

    cono: int
    divi: str
    ivno: int
    yea4: int
    ivdt: str
    orno: str
    dlix: int
    conn: int
    cuno: str
    pyno: str
    net: Decimal
    gross: Decimal
    cucd: str
    dudt: str
    rafc: Decimal
    lines: list[tuple[int, str, Decimal, Decimal]]  # (PONR, ITNO, IVQT, SAPR)
    lmts: int = 0
    variation: int = 0

    @property
    def exin(self) -> str:
        """The extended invoice number (A14): year and number."""
        return f"{self.yea4}-{self.ivno}"

    def record(self) -> dict[str, str]:
        """OIS350MI LstInvHeadByCo and LstAllInvByCO fields together."""
        return {
            "CONO": str(self.cono),
            "DIVI": self.divi,
            "IVNO": str(self.ivno),
            "IVDT": self.ivdt,
            "IDAT": self.ivdt,
            "YEA4": str(self.yea4),
            "DLIX": str(self.dlix),
            "CUNO": self.cuno,
            "PYNO": self.pyno,
            "AMT1": money(self.gross),
            "AMT2": money(self.net),
            "IVAV": money(self.gross),
            "RAFC": money(self.rafc),
            "CUCD": self.cucd,
            "DUDT": self.dudt,
            "INPX": "",
            "EXIN": self.exin,
            "CONN": str(self.conn),
            "ORNO": self.orno,
            "LMTS": str(self.lmts),
        }


@dataclass
class PaymentLine:
    """One ARS040MI batch payment line: an amount paid against one invoice."""

    trno: int
    cino: str
    inyr: int
    cuno: str
    pyam: Decimal
    cucd: str
    lpdt: str
    ckno: str

    def record(self, pbid: int) -> dict[str, str]:
        """The line as the admin API shows it."""
        return {
            "PBID": str(pbid),
            "TRNO": str(self.trno),
            "CINO": self.cino,
            "INYR": str(self.inyr),
            "CUNO": self.cuno,
            "PYAM": money(self.pyam),
            "CUCD": self.cucd,
            "LPDT": self.lpdt,
            "CKNO": self.ckno,
        }


@dataclass
class PaymentBatch:
    """An ARS040MI customer payment batch; ControlBatch posts its lines (invoice RAFC drops), status 90."""

    cono: int
    divi: str
    pbid: int
    bope: str
    lines: dict[int, PaymentLine] = field(default_factory=dict)
    status: str = "10"

    def record(self) -> dict[str, Any]:
        """The batch and its lines as the admin API shows them."""
        return {
            "CONO": str(self.cono),
            "DIVI": self.divi,
            "PBID": str(self.pbid),
            "BOPE": self.bope,
            "STAT": self.status,
            "lines": [line.record(self.pbid) for _, line in sorted(self.lines.items())],
        }


class M3State:
    """All companies' data with the indexes the MI transactions and the simulation need."""

    def __init__(
        self, *, vat_rate: Decimal = Decimal("0.20"), clock: Callable[[], float] = time.time
    ) -> None:
        self.vat_rate = vat_rate
        self._clock = clock
        self._last_lmts = 0
        self.listeners: list[Callable[[Change], None]] = []
        self.companies: dict[int, Company] = {}
        self.warehouses: dict[tuple[int, str], Warehouse] = {}
        self.customers: dict[tuple[int, str], Customer] = {}
        self.customers_by_mail: dict[tuple[int, str], list[str]] = {}
        self.items: dict[tuple[int, str], Item] = {}
        self.balances: dict[tuple[int, str, str], Balance] = {}
        self.batch_orders: dict[tuple[int, str], BatchOrder] = {}
        self.orders: dict[tuple[int, str], CustomerOrder] = {}
        self.orders_by_cuor: dict[tuple[int, str], list[str]] = {}
        self.orders_by_cuno: dict[tuple[int, str], list[str]] = {}
        self.active_orders: dict[tuple[int, str], CustomerOrder] = {}
        self.deliveries: dict[int, Delivery] = {}
        self.invoices: dict[int, Invoice] = {}
        self.payment_batches: dict[tuple[int, int], PaymentBatch] = {}
        self._next_temp = 4711
        self._next_orno = 1000012345
        self._next_dlix = 5000001234
        self._next_conn = 1000001
        self._next_ivno = 700123
        self._next_cuno = 1

    def reset(self) -> None:
        """Forget all data and number series; listeners stay subscribed."""
        listeners = self.listeners
        self.__init__(vat_rate=self.vat_rate, clock=self._clock)  # type: ignore[misc]
        self.listeners = listeners

    # -- time and change notification ------------------------------------------------------------
    def lmts(self) -> int:
        """A fresh LMTS: epoch milliseconds, strictly greater than any given before."""
        now = int(self._clock() * 1000)
        self._last_lmts = max(now, self._last_lmts + 1)
        return self._last_lmts

    def today(self) -> date:
        """Today's date in UTC (the sandbox's business date)."""
        return datetime.fromtimestamp(self._clock(), tz=UTC).date()

    def now(self) -> datetime:
        """The current time in UTC."""
        return datetime.fromtimestamp(self._clock(), tz=UTC)

    def notify(self, change: Change) -> None:
        """Tell every listener (the IMS pusher) about a change."""
        for listener in self.listeners:
            listener(change)

    # -- master data -----------------------------------------------------------------------------
    def add_company(self, company: Company) -> None:
        """Register a company and its divisions."""
        self.companies[company.cono] = company

    def add_warehouse(self, warehouse: Warehouse) -> None:
        """Register a warehouse."""
        self.warehouses[(warehouse.cono, warehouse.whlo)] = warehouse

    def put_customer(self, customer: Customer, *, notify: bool = True) -> Customer:
        """Insert or replace a customer, stamp it and index its e-mail."""
        key = (customer.cono, customer.cuno)
        old = self.customers.get(key)
        if old is not None and old.mail:
            names = self.customers_by_mail.get((old.cono, old.mail.lower()), [])
            if old.cuno in names:
                names.remove(old.cuno)
        customer.lmts = self.lmts()
        customer.lmdt = ymd(self.today())
        self.customers[key] = customer
        if customer.mail:
            self.customers_by_mail.setdefault((customer.cono, customer.mail.lower()), []).append(
                customer.cuno
            )
        if notify:
            self.notify(Change("customer", customer.cuno, customer.cono, action="Replace" if old else "Add"))
        return customer

    def next_customer_number(self, cono: int) -> str:
        """An unused customer number for auto-numbering in CRS610MI Add."""
        while True:
            cuno = f"C{self._next_cuno:09d}"
            self._next_cuno += 1
            if (cono, cuno) not in self.customers:
                return cuno

    def put_item(self, item: Item, *, notify: bool = True) -> Item:
        """Insert or replace an item and stamp it."""
        old = (item.cono, item.itno) in self.items
        item.lmts = self.lmts()
        item.lmdt = ymd(self.today())
        self.items[(item.cono, item.itno)] = item
        if notify:
            self.notify(Change("item", item.itno, item.cono, action="Replace" if old else "Add"))
        return item

    def put_balance(self, balance: Balance, *, notify: bool = True) -> Balance:
        """Insert or replace a balance and stamp it."""
        balance.lmts = self.lmts()
        self.balances[(balance.cono, balance.whlo, balance.itno)] = balance
        if notify:
            self.notify(Change("balance", f"{balance.whlo}/{balance.itno}", balance.cono))
        return balance

    def touch_balance(self, balance: Balance) -> None:
        """Stamp a changed balance and notify."""
        balance.lmts = self.lmts()
        self.notify(Change("balance", f"{balance.whlo}/{balance.itno}", balance.cono))

    # -- batch orders and customer orders ----------------------------------------------------------
    def new_batch_order(self, cono: int, divi: str, head: OrderHead) -> BatchOrder:
        """AddBatchHead: a batch order with a temporary number."""
        temp = f"{self._next_temp:010d}"
        self._next_temp += 1
        batch = BatchOrder(cono, divi, temp, head, lmts=self.lmts())
        self.batch_orders[(cono, temp)] = batch
        return batch

    def confirm(self, batch: BatchOrder) -> CustomerOrder:
        """Turn a checked batch order into a customer order (batch status 90, final ORNO)."""
        orno = str(self._next_orno)
        self._next_orno += 1
        stamp = self.lmts()
        for line in batch.lines:
            line.lmts = stamp
            line.orst = "22"
            line.cuor = line.cuor or batch.head.cuor
        order = CustomerOrder(
            cono=batch.cono,
            divi=batch.divi,
            orno=orno,
            temp_orno=batch.temp_orno,
            head=batch.head,
            lines=batch.lines,
            charges=sum((amount for _, amount in batch.charges), Decimal(0)),
            vat_rate=self.vat_rate,
            addresses=batch.addresses,
            lmts=stamp,
        )
        batch.stat = "90"
        batch.final_orno = orno
        batch.lmts = stamp
        key = (batch.cono, orno)
        self.orders[key] = order
        self.active_orders[key] = order
        if batch.head.cuor:
            self.orders_by_cuor.setdefault((batch.cono, batch.head.cuor), []).append(orno)
        self.orders_by_cuno.setdefault((batch.cono, batch.head.cuno), []).append(orno)
        self.notify(Change("order", orno, batch.cono, batch.divi, action="Add"))
        return order

    def order_changed(self, order: CustomerOrder) -> None:
        """Stamp an order whose lines moved and notify; finished orders leave the active set."""
        order.lmts = self.lmts()
        if order.orsl == "77":
            self.active_orders.pop((order.cono, order.orno), None)
        self.notify(Change("order", order.orno, order.cono, order.divi))

    def add_delivery(
        self, order: CustomerOrder, lines: list[OrderLine], carrier: tuple[str, str, str]
    ) -> Delivery:
        """Ship ``lines`` of ``order``: one delivery in a new shipment, carrier (MODL, FWNO, ETRN)."""
        modl, fwno, etrn = carrier
        dlix = self._next_dlix
        self._next_dlix += 1
        conn = self._next_conn
        self._next_conn += 1
        now = self.now()
        delivery = Delivery(
            cono=order.cono,
            divi=order.divi,
            dlix=dlix,
            conn=conn,
            orno=order.orno,
            whlo=order.head.whlo,
            modl=modl,
            fwno=fwno,
            etrn=etrn,
            nbol=f"BOL-{dlix}",
            dsdt=ymd(now.date()),
            dshm=now.strftime("%H%M"),
            lines=[(line.ponr, line.itno, line.orqt) for line in lines],
            lmts=self.lmts(),
        )
        self.deliveries[dlix] = delivery
        order.deliveries.append(dlix)
        self.notify(Change("shipment", str(dlix), order.cono, order.divi, action="Add"))
        return delivery

    def add_invoice(self, order: CustomerOrder, delivery: Delivery, lines: list[OrderLine]) -> Invoice:
        """Invoice a delivery: amounts from its lines, plus the order's charges on the first invoice."""
        ivno = self._next_ivno
        self._next_ivno += 1
        today = self.today()
        net = sum((line.net for line in lines), Decimal(0))
        if not order.invoices:
            net += order.charges
        gross = net + (net * order.vat_rate).quantize(CENT, rounding=ROUND_HALF_UP)
        invoice = Invoice(
            cono=order.cono,
            divi=order.divi,
            ivno=ivno,
            yea4=today.year,
            ivdt=ymd(today),
            orno=order.orno,
            dlix=delivery.dlix,
            conn=delivery.conn,
            cuno=order.head.cuno,
            pyno=order.head.pyno or order.head.cuno,
            net=net,
            gross=gross,
            cucd=order.head.cucd,
            dudt=ymd(today + timedelta(days=30)),
            rafc=gross,
            lines=[(line.ponr, line.itno, line.orqt, line.sapr) for line in lines],
            lmts=self.lmts(),
        )
        self.invoices[ivno] = invoice
        order.invoices.append(ivno)
        delivery.ivno = ivno
        delivery.ivdt = invoice.ivdt
        delivery.pgrs = "70"
        delivery.lmts = self.lmts()
        self.notify(Change("invoice", str(ivno), order.cono, order.divi, action="Add"))
        return invoice

    def find_orders_by_cuor(self, cono: int, cuor: str) -> list[CustomerOrder]:
        """Customer orders carrying ``cuor`` (M3 does not guarantee uniqueness, §2.5)."""
        return [self.orders[(cono, orno)] for orno in self.orders_by_cuor.get((cono, cuor), [])]
