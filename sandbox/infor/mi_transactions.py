"""The MI programs the sandbox implements, as a table of :class:`~sandbox.infor.mi.Transaction` rows.

Inputs and outputs follow infor.md §2.4. What the spec does not settle is chosen here and marked:

- error codes other than the fixtures' ``WCU0203`` and the spec's ``XAU0008`` are illustrative;
- an item must be active (STAT 20) and a sales item (SALE 1) to be ordered, else NOK on ITNO;
- a blocked customer (STAT other than 20) is accepted by AddBatchHead but Confirm leaves the batch at
  STAT 15 (header error), and a batch without lines at STAT 25: the batch order stays, not created;
- Confirm on an already confirmed batch is NOK on ORNO naming the customer order it created, so a
  blind retry after an ambiguous 504 never creates a second order (GetOrderNo answers ORNR instead);
- LstLine's ORST and LstHead's ORSL/ORST inputs filter by status (``>=`` lowest, ``<=`` highest);
- SearchHead's SQRY accepts ``FIELD:value`` terms (AND-ed; ORNO, CUOR, CUNO) or a bare word matched
  against ORNO, CUOR and CUNO;
- finding a customer by e-mail: CRS610MI has no search by e-mail in the spec, so a client pages
  ``LstByNumber`` and compares MAIL (or keeps its own link table); the sandbox does not invent one;
- AddBatchLine ``DIA1`` (discount amount 1, S13) is taken off the line amount (NLAM);
- payments: the spec names no payment transaction; ARS040MI (Customer payment interface, S13) is
  served: ``AddBatchHead`` opens batch PBID (the caller's number; an existing one is NOK on PBID),
  ``AddBatchLine`` adds line TRNO paying PYAM on invoice CINO/INYR of customer CUNO (an existing TRNO
  is NOK on TRNO; an unknown invoice, another customer or currency, or more than the invoice's RAFC
  is NOK on that field), ``ControlBatch`` posts every line (each invoice's RAFC drops, status 90; a
  batch already posted is NOK on PBID). OIS350MI ``LstAllInvByCO`` shows RAFC (remaining amount),
  which the admin API can also set to 0 to simulate a payment.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Iterator
from decimal import Decimal

from sandbox.infor.m3_state import (
    Balance,
    BatchOrder,
    Change,
    Customer,
    CustomerOrder,
    Invoice,
    OrderHead,
    OrderLine,
    PaymentBatch,
    PaymentLine,
    ymd,
)
from sandbox.infor.mi import MiContext, Registry, Transaction, nok


def _batch(ctx: MiContext, rec: dict[str, str]) -> BatchOrder:
    batch = ctx.state.batch_orders.get((ctx.cono, rec["ORNO"].strip()))
    if batch is None:
        raise nok("WORNO03", "ORNO", f"Order number {rec['ORNO'].strip()} does not exist")
    return batch


def _open_batch(ctx: MiContext, rec: dict[str, str]) -> BatchOrder:
    batch = _batch(ctx, rec)
    if batch.stat == "90":
        raise nok(
            "WORNO04", "ORNO", f"Batch order {batch.temp_orno} already confirmed, order {batch.final_orno}"
        )
    return batch


def _order(ctx: MiContext, orno: str) -> CustomerOrder:
    order = ctx.state.orders.get((ctx.cono, orno.strip()))
    if order is None:
        raise nok("WORNO03", "ORNO", f"Order number {orno.strip()} does not exist")
    return order


def _customer(ctx: MiContext, cuno: str) -> Customer:
    customer = ctx.state.customers.get((ctx.cono, cuno.strip()))
    if customer is None:
        raise nok("WCU0203", "CUNO", f"Customer number {cuno.strip()} does not exist")
    return customer


def _warehouse(ctx: MiContext, whlo: str) -> str:
    if (ctx.cono, whlo) not in ctx.state.warehouses:
        raise nok("WWH0203", "WHLO", f"Warehouse {whlo} does not exist")
    return whlo


def _dec(value: str, default: str = "0") -> Decimal:
    return Decimal(value.strip() or default)


def _get(rec: dict[str, str], name: str, default: str = "") -> str:
    return rec.get(name, "").strip() or default


# -- OIS100MI ------------------------------------------------------------------------------------
def add_batch_head(ctx: MiContext, rec: dict[str, str]) -> Iterable[dict[str, str]]:
    customer = _customer(ctx, rec["CUNO"])
    whlo = _warehouse(ctx, _get(rec, "WHLO", customer.whlo))
    today = ymd(ctx.state.today())
    head = OrderHead(
        cuno=customer.cuno,
        ortp=_get(rec, "ORTP", customer.ortp),
        faci=_get(rec, "FACI", ctx.state.warehouses[(ctx.cono, whlo)].faci),
        whlo=whlo,
        cuor=_get(rec, "CUOR"),
        ordt=_get(rec, "ORDT", today),
        rldt=_get(rec, "RLDT", today),
        cucd=_get(rec, "CUCD", customer.cucd),
        modl=_get(rec, "MODL", customer.modl),
        tedl=_get(rec, "TEDL", customer.tedl),
        tepy=_get(rec, "TEPY", customer.tepy),
        yref=_get(rec, "YREF"),
        adid=_get(rec, "ADID"),
        pyno=_get(rec, "PYNO"),
    )
    batch = ctx.state.new_batch_order(ctx.cono, ctx.divi, head)
    return [{"ORNO": batch.temp_orno}]


def add_batch_address(ctx: MiContext, rec: dict[str, str]) -> Iterable[dict[str, str]]:
    batch = _open_batch(ctx, rec)
    batch.addresses.append(
        {name: value.strip() for name, value in rec.items() if name != "ORNO" and value.strip()}
    )
    return []


def add_batch_line(ctx: MiContext, rec: dict[str, str]) -> Iterable[dict[str, str]]:
    batch = _open_batch(ctx, rec)
    itno = rec["ITNO"].strip()
    item = ctx.state.items.get((ctx.cono, itno))
    if item is None:
        raise nok("WIT0203", "ITNO", f"Item number {itno} does not exist")
    if item.stat != "20" or item.sale != "1":
        raise nok("WIT0205", "ITNO", f"Item number {itno} has status {item.stat} and cannot be sold")
    orqt = _dec(rec.get("ORQT", ""))
    if orqt <= 0:
        raise nok("WORQT01", "ORQT", "Ordered quantity must be greater than zero")
    whlo = _warehouse(ctx, _get(rec, "WHLO", batch.head.whlo))
    line = OrderLine(
        ponr=len(batch.lines) + 1,
        itno=itno,
        itds=_get(rec, "ITDS", item.itds),
        orqt=orqt,
        whlo=whlo,
        sapr=_dec(rec.get("SAPR", ""), str(item.price)),
        cucd=batch.head.cucd,
        dwdt=_get(rec, "DWDT", batch.head.rldt),
        cuor=_get(rec, "CUOR"),
        dia1=_dec(rec.get("DIA1", "")),
    )
    batch.lines.append(line)
    return [{"PONR": str(line.ponr), "POSX": "0", "ATNR": "0"}]


def add_batch_head_chg(ctx: MiContext, rec: dict[str, str]) -> Iterable[dict[str, str]]:
    batch = _open_batch(ctx, rec)
    batch.charges.append((rec["CRID"].strip(), _dec(rec.get("CRAM", ""))))
    return []


def add_batch_text(ctx: MiContext, rec: dict[str, str]) -> Iterable[dict[str, str]]:
    batch = _open_batch(ctx, rec)
    batch.texts.append({name: value for name, value in rec.items() if name != "ORNO"})
    return []


def confirm(ctx: MiContext, rec: dict[str, str]) -> Iterable[dict[str, str]]:
    batch = _open_batch(ctx, rec)
    batch.lmts = ctx.state.lmts()
    customer = ctx.state.customers.get((ctx.cono, batch.head.cuno))
    if customer is None or customer.stat != "20":
        batch.stat = "15"
        return [{"ORNO": batch.temp_orno, "STAT": batch.stat}]
    if not batch.lines:
        batch.stat = "25"
        return [{"ORNO": batch.temp_orno, "STAT": batch.stat}]
    order = ctx.state.confirm(batch)
    return [{"ORNO": order.orno, "STAT": "90"}]


def get_order_no(ctx: MiContext, rec: dict[str, str]) -> Iterable[dict[str, str]]:
    batch = _batch(ctx, rec)
    return [{"ORNO": batch.temp_orno, "ORNR": batch.final_orno, "STAT": batch.stat}]


def lst_batch_head(ctx: MiContext, rec: dict[str, str]) -> Iterator[dict[str, str]]:
    start, cuno, cuor = _get(rec, "ORNO"), _get(rec, "CUNO"), _get(rec, "CUOR")
    for (cono, temp), batch in sorted(ctx.state.batch_orders.items()):
        if cono != ctx.cono or temp < start:
            continue
        if (cuno and batch.head.cuno != cuno) or (cuor and batch.head.cuor != cuor):
            continue
        yield batch.record()


def get_head(ctx: MiContext, rec: dict[str, str]) -> Iterable[dict[str, str]]:
    return [_order(ctx, rec["ORNO"]).record()]


def lst_line(ctx: MiContext, rec: dict[str, str]) -> Iterator[dict[str, str]]:
    order = _order(ctx, rec["ORNO"])
    highest, itno = _get(rec, "ORST"), _get(rec, "ITNO")
    for line in order.lines:
        if (highest and line.orst > highest) or (itno and line.itno != itno):
            continue
        yield line.record(order.orno)


def _status_filter(order: CustomerOrder, rec: dict[str, str]) -> bool:
    lowest, highest = _get(rec, "ORSL"), _get(rec, "ORST")
    return not ((lowest and order.orsl < lowest) or (highest and order.orst > highest))


def lst_head(ctx: MiContext, rec: dict[str, str]) -> Iterator[dict[str, str]]:
    cuno = rec["CUNO"].strip()
    for orno in sorted(ctx.state.orders_by_cuno.get((ctx.cono, cuno), [])):
        order = ctx.state.orders[(ctx.cono, orno)]
        if _status_filter(order, rec):
            yield order.record()


def search_head(ctx: MiContext, rec: dict[str, str]) -> Iterator[dict[str, str]]:
    terms: list[tuple[str, str]] = []
    # Search-query syntax is Lucene-like: a value may be quoted (CUOR:"PS 1"); the spec gives no
    # grammar, so be lenient and accept quoted and bare values alike.
    try:
        tokens = shlex.split(rec["SQRY"])
    except ValueError:  # unbalanced quote: take the words as they come
        tokens = rec["SQRY"].split()
    for token in tokens:
        name, sep, value = token.partition(":")
        terms.append((name.upper(), value) if sep else ("", token))
    candidates: Iterable[CustomerOrder]
    cuor = next((value for name, value in terms if name == "CUOR"), None)
    if cuor is not None:  # the common case, served from the index
        candidates = ctx.state.find_orders_by_cuor(ctx.cono, cuor)
    else:
        candidates = (order for (cono, _), order in sorted(ctx.state.orders.items()) if cono == ctx.cono)
    for order in candidates:
        fields = {"ORNO": order.orno, "CUOR": order.head.cuor, "CUNO": order.head.cuno}
        if all((fields.get(name) == value) if name else value in fields.values() for name, value in terms):
            yield order.record()


def lst_new_balances(ctx: MiContext, rec: dict[str, str]) -> Iterator[dict[str, str]]:
    since = int(_get(rec, "LMTS", "0"))
    whlo = _get(rec, "WHLO")
    rows: list[Balance] = [
        balance
        for (cono, bal_whlo, _), balance in ctx.state.balances.items()
        if cono == ctx.cono and balance.lmts > since and (not whlo or bal_whlo == whlo)
    ]
    rows.sort(key=lambda balance: (balance.lmts, balance.whlo, balance.itno))
    for balance in rows:
        record = balance.record()
        yield {
            "WHLO": record["WHLO"],
            "ITNO": record["ITNO"],
            "STQT": record["STQT"],
            "AV01": record["AV01"],
            "AV02": record["AV02"],
            "LTDT": "",
            "PFDT": "",
            "LMTS": record["LMTS"],
        }


# -- CRS610MI ------------------------------------------------------------------------------------
_CUSTOMER_FIELDS = ("CUNM", "CUA1", "CUA2", "CUA3", "CUA4", "PONO", "TOWN", "CSCD", "ECAR", "PHNO", "MAIL")
_CUSTOMER_EXTRA = ("CUCD", "YREF", "STAT", "CUTP", "ALCU", "LNCD")


def crs_add(ctx: MiContext, rec: dict[str, str]) -> Iterable[dict[str, str]]:
    cuno = _get(rec, "CUNO") or ctx.state.next_customer_number(ctx.cono)
    if (ctx.cono, cuno) in ctx.state.customers:
        raise nok("WCU0204", "CUNO", f"Customer number {cuno} already exists")
    customer = Customer(ctx.cono, cuno, rec["CUNM"].strip(), rec["CUA1"].strip(), cutm=rec["CUTM"].strip())
    _apply_customer_fields(customer, rec)
    ctx.state.put_customer(customer)
    return [{"CUNO": cuno, "ERRM": ""}]


def _apply_customer_fields(customer: Customer, rec: dict[str, str]) -> None:
    for name in (*_CUSTOMER_FIELDS, *_CUSTOMER_EXTRA):
        value = rec.get(name, "").strip()
        if value:
            setattr(customer, name.lower(), value)


def crs_get(ctx: MiContext, rec: dict[str, str]) -> Iterable[dict[str, str]]:
    return [_customer(ctx, rec["CUNO"]).record()]


def crs_chg(ctx: MiContext, rec: dict[str, str]) -> Iterable[dict[str, str]]:
    customer = _customer(ctx, rec["CUNO"])
    _apply_customer_fields(customer, rec)
    ctx.state.put_customer(customer)
    return []


def crs_lst_by_number(ctx: MiContext, rec: dict[str, str]) -> Iterator[dict[str, str]]:
    start, since = _get(rec, "CUNO"), int(_get(rec, "LMTS", "0"))
    for (cono, cuno), customer in sorted(ctx.state.customers.items()):
        if cono == ctx.cono and cuno >= start and customer.lmts > since:
            yield customer.record()


# -- MMS200MI / MMS060MI ----------------------------------------------------------------------------
def get_itm_basic(ctx: MiContext, rec: dict[str, str]) -> Iterable[dict[str, str]]:
    item = ctx.state.items.get((ctx.cono, rec["ITNO"].strip()))
    if item is None:
        raise nok("WIT0203", "ITNO", f"Item number {rec['ITNO'].strip()} does not exist")
    return [item.record()]


def lst_itm_by_itm(ctx: MiContext, rec: dict[str, str]) -> Iterator[dict[str, str]]:
    start = rec["ITNO"].strip()
    for (cono, itno), item in sorted(ctx.state.items.items()):
        if cono == ctx.cono and itno >= start:
            yield item.record()


def lst_itm_by_chg_date(ctx: MiContext, rec: dict[str, str]) -> Iterator[dict[str, str]]:
    first = _get(rec, "FLMD") or _get(rec, "CSDS") or "00000000"
    last = _get(rec, "TLMD", "99999999")
    for (cono, _), item in sorted(ctx.state.items.items()):
        if cono == ctx.cono and first <= item.lmdt <= last:
            yield item.record()


def get_itm_whs_bal(ctx: MiContext, rec: dict[str, str]) -> Iterable[dict[str, str]]:
    whlo, itno = _warehouse(ctx, rec["WHLO"].strip()), rec["ITNO"].strip()
    if (ctx.cono, itno) not in ctx.state.items:
        raise nok("WIT0203", "ITNO", f"Item number {itno} does not exist")
    balance = ctx.state.balances.get((ctx.cono, whlo, itno))
    if balance is None:
        raise nok("WIW0203", "ITNO", f"Item {itno} does not exist in warehouse {whlo}")
    return [balance.record()]


def mms060_list(ctx: MiContext, rec: dict[str, str]) -> Iterator[dict[str, str]]:
    whlo, itno = _warehouse(ctx, rec["WHLO"].strip()), _get(rec, "ITNO")
    rows = [
        balance
        for (cono, bal_whlo, bal_itno), balance in ctx.state.balances.items()
        if cono == ctx.cono and bal_whlo == whlo and (not itno or bal_itno == itno)
    ]
    for balance in sorted(rows, key=lambda b: b.itno):
        record = balance.record()
        yield {
            name: record[name] for name in ("CONO", "WHLO", "ITNO", "WHSL", "STAS", "STQT", "ALQT", "LMTS")
        } | {"BANO": "", "CAMU": "", "PHSQ": "0", "ALOC": "1"}


# -- MWS410MI / MWS411MI / OIS350MI ----------------------------------------------------------------
def mws410_get_head(ctx: MiContext, rec: dict[str, str]) -> Iterable[dict[str, str]]:
    dlix = int(rec["DLIX"].strip())
    delivery = ctx.state.deliveries.get(dlix)
    if delivery is None or delivery.cono != ctx.cono:
        raise nok("WDLIX03", "DLIX", f"Delivery number {dlix} does not exist")
    return [delivery.record()]


def mws411_lst_del_ln_by_ord(ctx: MiContext, rec: dict[str, str]) -> Iterator[dict[str, str]]:
    order = ctx.state.orders.get((ctx.cono, rec["RIDN"].strip()))
    if order is None:
        return
    ridl = _get(rec, "RIDL")
    for dlix in order.deliveries:
        for row in ctx.state.deliveries[dlix].line_records():
            if not ridl or row["RIDL"] == ridl:
                yield row


def invoices_by_order(ctx: MiContext, rec: dict[str, str]) -> Iterator[dict[str, str]]:
    order = _order(ctx, rec["ORNO"])
    for ivno in order.invoices:
        yield ctx.state.invoices[ivno].record()


# -- ARS040MI ------------------------------------------------------------------------------------
def _payment_batch(ctx: MiContext, rec: dict[str, str]) -> PaymentBatch:
    pbid = int(_get(rec, "PBID", "0"))
    batch = ctx.state.payment_batches.get((ctx.cono, pbid))
    if batch is None:
        raise nok("WPB0203", "PBID", f"Payment batch {pbid} does not exist")
    return batch


def ars_add_batch_head(ctx: MiContext, rec: dict[str, str]) -> Iterable[dict[str, str]]:
    pbid = int(rec["PBID"].strip())
    if (ctx.cono, pbid) in ctx.state.payment_batches:
        raise nok("WPB0204", "PBID", f"Payment batch {pbid} already exists")
    ctx.state.payment_batches[(ctx.cono, pbid)] = PaymentBatch(ctx.cono, ctx.divi, pbid, rec["BOPE"].strip())
    return [{"PBID": str(pbid)}]


def _paid_invoice(ctx: MiContext, rec: dict[str, str]) -> Invoice:
    cino, inyr = rec["CINO"].strip(), int(rec["INYR"].strip())
    invoice = ctx.state.invoices.get(int(cino)) if cino.isdigit() else None
    if invoice is None or invoice.cono != ctx.cono or invoice.yea4 != inyr:
        raise nok("WCI0203", "CINO", f"Invoice {cino}/{inyr} does not exist")
    return invoice


def ars_add_batch_line(ctx: MiContext, rec: dict[str, str]) -> Iterable[dict[str, str]]:
    batch = _payment_batch(ctx, rec)
    if batch.status == "90":
        raise nok("WPB0305", "PBID", f"Payment batch {batch.pbid} is already updated")
    trno = int(rec["TRNO"].strip())
    if trno in batch.lines:
        raise nok("WTR0204", "TRNO", f"Transaction {trno} already exists in payment batch {batch.pbid}")
    invoice = _paid_invoice(ctx, rec)
    cuno = rec["CUNO"].strip()
    if cuno not in (invoice.cuno, invoice.pyno):
        raise nok("WCU0205", "CUNO", f"Invoice {invoice.ivno} is not an invoice of customer {cuno}")
    cucd = _get(rec, "CUCD", invoice.cucd)
    if cucd != invoice.cucd:
        raise nok("WCU0301", "CUCD", f"Invoice {invoice.ivno} is in {invoice.cucd}, not {cucd}")
    pyam = _dec(rec["PYAM"])
    if pyam <= 0:
        raise nok("WPY0101", "PYAM", "Payment amount must be greater than zero")
    pending = sum((line.pyam for line in batch.lines.values() if line.cino == str(invoice.ivno)), Decimal(0))
    if pyam + pending > invoice.rafc:
        raise nok("WPY0102", "PYAM", f"Payment {pyam} exceeds the remaining amount {invoice.rafc}")
    batch.lines[trno] = PaymentLine(
        trno, str(invoice.ivno), invoice.yea4, cuno, pyam, cucd, _get(rec, "LPDT", ymd(ctx.state.today())),
        _get(rec, "CKNO"),
    )  # fmt: skip
    return []


def ars_control_batch(ctx: MiContext, rec: dict[str, str]) -> Iterable[dict[str, str]]:
    batch = _payment_batch(ctx, rec)
    if batch.status == "90":
        raise nok("WPB0305", "PBID", f"Payment batch {batch.pbid} is already updated")
    if not batch.lines:
        raise nok("WPB0306", "PBID", f"Payment batch {batch.pbid} has no lines")
    invoices = [ctx.state.invoices[int(line.cino)] for line in batch.lines.values()]
    for invoice in invoices:
        paid = sum((line.pyam for line in batch.lines.values() if line.cino == str(invoice.ivno)), Decimal(0))
        if paid > invoice.rafc:
            raise nok(
                "WPY0102", "PYAM", f"Payments {paid} exceed the remaining amount of invoice {invoice.ivno}"
            )
    for line in batch.lines.values():
        invoice = ctx.state.invoices[int(line.cino)]
        invoice.rafc -= line.pyam
    for invoice in {invoice.ivno: invoice for invoice in invoices}.values():
        invoice.lmts = ctx.state.lmts()
        invoice.variation += 1
        ctx.state.notify(Change("invoice", str(invoice.ivno), invoice.cono, invoice.divi))
    batch.status = "90"
    return []


def build_registry() -> Registry:
    """Every transaction the sandbox serves."""
    registry = Registry()
    t = Transaction
    head_in = (
        "CUNO*", "CONO", "ORTP", "FACI", "WHLO", "CUOR", "ORDT", "RLDT", "CUCD", "MODL", "TEDL", "TEPY",
        "YREF", "ADID", "PYNO", "INRC", "OREF", "AGNT", "SMCD", "LNCD", "CUDT", "NREF",
    )  # fmt: skip
    address_in = (
        "ORNO*", "ADRT*", "CUNM", "CUA1", "CUA2", "CUA3", "CUA4", "PONO", "TOWN", "CSCD", "ECAR", "PHNO",
        "YREF", "MODL", "TEDL",
    )  # fmt: skip
    line_in = (
        "ORNO*", "ITNO*", "ORQT", "WHLO", "DWDT", "SAPR", "DIP1", "DIA1", "ALUN", "SPUN", "CUOR", "CUPO",
        "ITDS", "ADID",
    )  # fmt: skip
    customer_in = (
        "CONO",
        "DIVI",
        "LNCD",
        "CUNO",
        *_CUSTOMER_FIELDS[2:],
        "CUTP",
        "ALCU",
        "YREF",
        "STAT",
        "CUCD",
    )
    for row in (
        t("OIS100MI", "AddBatchHead", head_in, add_batch_head),
        t("OIS100MI", "AddBatchAddress", address_in, add_batch_address),
        t("OIS100MI", "AddBatchLine", line_in, add_batch_line),
        t("OIS100MI", "AddBatchHeadChg", ("ORNO*", "CRID*", "CRAM", "CUCD"), add_batch_head_chg),
        t("OIS100MI", "AddBatchText", ("ORNO*", "TYPE", "TYTR", "PARM", "PONR", "POSX"), add_batch_text),
        t("OIS100MI", "Confirm", ("ORNO*", "CONO", "CTYP"), confirm),
        t("OIS100MI", "GetOrderNo", ("ORNO*",), get_order_no),
        t("OIS100MI", "LstBatchHead", ("ORNO", "CUNO", "CUOR"), lst_batch_head, True, ("ORNO",)),
        t("OIS100MI", "GetHead", ("ORNO*",), get_head),
        t("OIS100MI", "LstLine", ("ORNO*", "ORST", "ITNO"), lst_line, True, ("PONR", "POSX")),
        t("OIS100MI", "LstHead", ("CUNO*", "ORSL", "ORST"), lst_head, True, ("ORNO",)),
        t("OIS100MI", "SearchHead", ("SQRY*",), search_head, True, ("ORNO",)),
        t("OIS100MI", "LstNewBalances", ("LMTS", "WHLO"), lst_new_balances, True, ("LMTS", "WHLO", "ITNO")),
        t("CRS610MI", "Add", ("CUTM*", "CUNM*", "CUA1*", *customer_in), crs_add),
        t("CRS610MI", "GetBasicData", ("CUNO*",), crs_get),
        t("CRS610MI", "ChgBasicData", ("CUNO*", "CUNM", "CUA1", *customer_in[4:]), crs_chg),
        t("CRS610MI", "LstByNumber", ("CONO", "CUNO", "LMTS"), crs_lst_by_number, True, ("CUNO",)),
        t("MMS200MI", "GetItmBasic", ("ITNO*", "CONO", "LNCD"), get_itm_basic),
        t("MMS200MI", "LstItmByItm", ("ITNO*", "CONO", "LNCD"), lst_itm_by_itm, True, ("ITNO",)),
        t("MMS200MI", "LstItmByChgDate", ("FLMD", "TLMD", "CSDS"), lst_itm_by_chg_date, True, ("ITNO",)),
        t("MMS200MI", "GetItmWhsBal", ("WHLO*", "ITNO*"), get_itm_whs_bal),
        t("MMS060MI", "List", ("WHLO*", "CONO", "ITNO", "WHSL", "BANO", "CAMU"), mms060_list, True,
          ("ITNO",)),
        t("MWS410MI", "GetHead", ("DLIX*", "CONO", "CONA", "PUTP", "PUSN"), mws410_get_head),
        t(
            "MWS411MI", "LstDelLnByOrd", ("RORC*", "RIDN*", "RIDL", "RIDX"), mws411_lst_del_ln_by_ord, True,
            ("DLIX", "RIDL"),
        ),
        t("OIS350MI", "LstInvHeadByCo", ("ORNO*",), invoices_by_order, True, ("IVNO",)),
        t("OIS350MI", "LstAllInvByCO", ("ORNO*",), invoices_by_order, True, ("IVNO",)),
        t("ARS040MI", "AddBatchHead", ("PBID*", "BOPE*", "CONO", "DIVI", "BAAN", "NADO", "VONO", "ACDT",
          "BPYS"), ars_add_batch_head),
        t("ARS040MI", "AddBatchLine", ("PBID*", "TRNO*", "CINO*", "INYR*", "CUNO*", "PYAM*", "CONO", "DIVI",
          "PYNO", "PYTP", "CUCD", "LPDT", "CKNO"), ars_add_batch_line),
        t("ARS040MI", "ControlBatch", ("PBID*", "CONO", "DIVI"), ars_control_batch),
    ):  # fmt: skip
        registry.add(row)
    return registry
