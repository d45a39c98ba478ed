"""Infor M3 as an :class:`~connectors.infor.adapter.ErpAdapter`: typed operations on MI transactions.

Order creation is batch order entry and is not atomic (reference §2.4/§2.5)::

    find by CUOR ─found─▶ done (created=False)
        │none
    AddBatchHead ─▶ temporary ORNO ─▶ AddBatchAddress ─▶ AddBatchLine x n ─▶ AddBatchHeadChg ─▶ Confirm
                                                                                    │
                                                            final ORNO + STAT 90 ◀──┘

``Confirm`` is the one non-idempotent step. When its outcome is unknown (504, timeout) the adapter
asks ``GetOrderNo`` for the temporary order at once; if M3 cannot say yet, the
:class:`~connectors.infor.errors.AmbiguousWriteError` goes to the runner, which retries later. The
retry looks the order up by CUOR, then re-checks (and if need be re-confirms) the *same* temporary
order; it never starts a second batch order for a reference whose Confirm may have run.
A business error on a batch step deletes the half-built batch order (best effort) and raises
:class:`~connectors.infor.errors.MiBusinessError` so the message goes to the DLQ with M3's quartet.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from connectors.infor.adapter import (
    Address,
    Customer,
    CustomerPayment,
    CustomerRef,
    ErpOrderRef,
    Invoice,
    InvoiceBalance,
    Item,
    OrderAck,
    OrderLineState,
    OrderState,
    OrderStatus,
    SalesOrderRequest,
    Shipment,
    ShipmentLine,
    StockLevel,
)
from connectors.infor.errors import AmbiguousWriteError, MiBusinessError
from connectors.infor.mi import MiClient, MiValue
from pipeline.errors import InvalidMessage, PipelineError, RetryableError

log = logging.getLogger(__name__)

ORDER_CREATED = "90"
"""Batch order status after Confirm meaning "customer order created" (OIS275)."""


@dataclass(frozen=True)
class M3OrderDefaults:
    """Tenant-specific values M3 needs for batch order entry (from settings/rules, not hard-coded).

    ``address_type`` is the ADRT of the one-time delivery address; ``shipping_charge_id`` the CRID
    of the header charge carrying the shipping fee (None: shipping is not sent as a charge);
    ``customer_template`` the CUTM for CRS610MI Add; ``order_reference_type`` is RORC for delivery
    lookups (3 = customer order).
    """

    order_type: str
    facility: str | None = None
    warehouse: str | None = None
    address_type: str = "1"
    shipping_charge_id: str | None = None
    customer_template: str | None = None
    order_reference_type: str = "3"


def m3_date(value: str) -> dt.date | None:
    """An M3 ``yyyyMMdd`` date; None for empty or zero dates."""
    text = value.strip()
    if not text or text.strip("0") == "":
        return None
    try:
        return dt.datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        return None


def m3_decimal(value: str | None) -> Decimal | None:
    """An M3 numeric string (``"39.80"``, ``" 2"``); None when empty or not a number."""
    if value is None or not value.strip():
        return None
    try:
        return Decimal(value.strip())
    except InvalidOperation:
        return None


def _qty(value: str | None) -> Decimal:
    return m3_decimal(value) or Decimal(0)


def m3_order_status(orsl: str, orst: str, order_stop: str = "") -> OrderStatus:
    """The neutral status of an order (or line) from M3's two-digit statuses (reference §6.3).

    ``orsl`` is the lowest and ``orst`` the highest line status; the first digit of a status is the
    least progressed part of the quantity, the second the most progressed (2 to allocate,
    3 allocated, 4 picking, 6 delivered, 7 invoiced, 9 deleted; 05 quotation, 10 preliminary).
    """
    if order_stop.strip() not in ("", "0"):
        return OrderStatus.ON_HOLD
    low_code, high_code = orsl.strip(), orst.strip()
    if len(low_code) != 2 or len(high_code) != 2 or not (low_code + high_code).isdigit():
        return OrderStatus.UNKNOWN
    if high_code == "05":
        return OrderStatus.QUOTATION
    if high_code == "10":
        return OrderStatus.PRELIMINARY
    low, high = int(low_code[0]), int(high_code[1])
    if low == 9:
        return OrderStatus.CANCELLED
    if low >= 7:
        return OrderStatus.INVOICED
    if low == 6:
        return OrderStatus.SHIPPED
    if high >= 6:
        return OrderStatus.PARTIALLY_SHIPPED
    if high == 4:
        return OrderStatus.PICKING
    if high == 3:
        return OrderStatus.ALLOCATED
    if high == 2:
        return OrderStatus.OPEN
    return OrderStatus.UNKNOWN


class M3Adapter:
    """The M3 MI implementation of :class:`~connectors.infor.adapter.ErpAdapter`."""

    name = "m3"
    capabilities = frozenset(
        {
            "orders.create",
            "orders.read",
            "customers.upsert",
            "customers.read",
            "items.read",
            "stock.read",
            "stock.delta",
            "shipments.read",
            "invoices.read",
        }
    )

    def __init__(self, mi: MiClient, defaults: M3OrderDefaults) -> None:
        self._mi = mi
        self._defaults = defaults
        # external_ref -> temporary ORNO whose Confirm outcome is unknown. In memory on purpose: after a
        # restart the CUOR lookup still finds a confirmed order; this closes the window in which M3
        # finishes a timed-out Confirm after our lookup found nothing.
        self._unconfirmed: dict[str, str] = {}

    # ------------------------------------------------------------------------------------- orders

    async def create_sales_order(self, order: SalesOrderRequest, *, idempotency_key: str) -> OrderAck:
        """Create the order once: returns the existing order (``created=False``) when CUOR finds it.

        ``idempotency_key`` names the attempt in logs; the reference itself (CUOR) is the real key.
        Raises MiBusinessError for a rejected order, AmbiguousWriteError when Confirm's outcome is
        still unknown after GetOrderNo, RetryableError for transient failures.
        """
        if not order.lines:
            raise InvalidMessage("order_without_lines", f"order {order.external_ref} has no lines")
        existing = await self.find_order_by_external_ref(order.external_ref, customer_id=order.customer_id)
        if existing is not None:
            self._unconfirmed.pop(order.external_ref, None)
            log.info(
                "order %s already in M3 as %s (%s)",
                order.external_ref,
                existing.erp_order_id,
                idempotency_key,
            )
            return OrderAck(ref=existing, created=False)
        temporary = self._unconfirmed.get(order.external_ref)
        if temporary is not None:
            final = await self.final_order_number(temporary)
            if final is not None:
                self._unconfirmed.pop(order.external_ref, None)
                return OrderAck(
                    ref=ErpOrderRef(final, order.external_ref), created=True, erp_temp_id=temporary
                )
            return await self._confirm(order, temporary, retry=True)
        temporary = await self._add_batch_order(order)
        return await self._confirm(order, temporary, retry=False)

    async def _add_batch_order(self, order: SalesOrderRequest) -> str:
        d = self._defaults
        head = await self._mi.execute(
            "OIS100MI",
            "AddBatchHead",
            {
                "CUNO": order.customer_id,
                "ORTP": order.order_type or d.order_type,
                "FACI": d.facility,
                "WHLO": order.warehouse or d.warehouse,
                "CUOR": order.external_ref,
                "ORDT": order.order_date,
                "RLDT": order.requested_delivery,
                "CUCD": order.currency,
                "MODL": order.shipping_method,
                "YREF": order.your_reference or None,
            },
        )
        temporary = (head.first or {}).get("ORNO", "")
        if not temporary:
            raise InvalidMessage(
                "m3_no_order_number", f"AddBatchHead for {order.external_ref} returned no ORNO"
            )
        try:
            if order.ship_to is not None:
                a = order.ship_to
                lines = (*a.lines, "", "", "", "")
                await self._mi.execute(
                    "OIS100MI",
                    "AddBatchAddress",
                    {
                        "ORNO": temporary,
                        "ADRT": d.address_type,
                        "CUNM": a.name,
                        "CUA1": lines[0],
                        "CUA2": lines[1] or None,
                        "CUA3": lines[2] or None,
                        "CUA4": lines[3] or None,
                        "PONO": a.postal_code,
                        "TOWN": a.city,
                        "CSCD": a.country_code,
                        "ECAR": a.state_code or None,
                        "PHNO": a.phone or None,
                    },
                )
            for line in order.lines:
                await self._mi.execute(
                    "OIS100MI",
                    "AddBatchLine",
                    {
                        "ORNO": temporary,
                        "ITNO": line.sku,
                        "ORQT": line.quantity,
                        "WHLO": line.warehouse or order.warehouse or d.warehouse,
                        "SAPR": line.unit_price,
                        # DIA1: discount amount 1 of the line (infor.md §2.4 "DIA1..6 discounts").
                        "DIA1": line.discount_amount or None,
                    },
                )
            if order.shipping_amount and d.shipping_charge_id:
                await self._mi.execute(
                    "OIS100MI",
                    "AddBatchHeadChg",
                    {
                        "ORNO": temporary,
                        "CRID": d.shipping_charge_id,
                        "CRAM": order.shipping_amount,
                        "CUCD": order.currency,
                    },
                )
            for charge in order.charges:
                await self._mi.execute(
                    "OIS100MI",
                    "AddBatchHeadChg",
                    {
                        "ORNO": temporary,
                        "CRID": charge.charge_id,
                        "CRAM": charge.amount,
                        "CUCD": order.currency,
                    },
                )
        except InvalidMessage:
            await self._discard_batch_order(temporary)
            raise
        return temporary

    async def _discard_batch_order(self, temporary: str) -> None:
        """Delete a half-built batch order so OIS275 does not fill with debris (best effort)."""
        try:
            await self._mi.execute("OIS100MI", "DelBatchHead", {"ORNO": temporary})
        except PipelineError as exc:
            log.warning("could not delete batch order %s: %s", temporary, exc)

    async def _confirm(self, order: SalesOrderRequest, temporary: str, *, retry: bool) -> OrderAck:
        self._unconfirmed[order.external_ref] = temporary
        try:
            result = await self._mi.execute(
                "OIS100MI", "Confirm", {"ORNO": temporary}, idempotent=False, reference=temporary
            )
        except AmbiguousWriteError as ambiguous:
            try:
                final = await self.final_order_number(temporary)
            except RetryableError:
                raise ambiguous from None  # still unknown; the runner retries and we look again
            if final is None:
                raise
            self._unconfirmed.pop(order.external_ref, None)
            return OrderAck(ref=ErpOrderRef(final, order.external_ref), created=True, erp_temp_id=temporary)
        except MiBusinessError:
            if retry:
                # A repeated Confirm is refused when the first one went through after all.
                found = await self.find_order_by_external_ref(
                    order.external_ref, customer_id=order.customer_id
                )
                if found is not None:
                    self._unconfirmed.pop(order.external_ref, None)
                    return OrderAck(ref=found, created=True, erp_temp_id=temporary)
            self._unconfirmed.pop(order.external_ref, None)
            raise
        self._unconfirmed.pop(order.external_ref, None)
        record = result.first or {}
        final, status = record.get("ORNO", ""), record.get("STAT", "")
        if status != ORDER_CREATED or not final:
            raise InvalidMessage(
                "m3_batch_order_rejected",
                f"M3 kept order {order.external_ref} as batch order {temporary} with status {status or '?'}; "
                "correct it in OIS275",
                details={"temporaryOrderNumber": temporary, "STAT": status, "operation": "OIS100MI.Confirm"},
            )
        return OrderAck(
            ref=ErpOrderRef(final, order.external_ref),
            created=True,
            status_native=status,
            status=OrderStatus.OPEN,
            erp_temp_id=temporary,
        )

    async def final_order_number(self, temporary: str) -> str | None:
        """The final ORNO of a confirmed batch order (GetOrderNo), or None while it is not confirmed."""
        try:
            result = await self._mi.execute("OIS100MI", "GetOrderNo", {"ORNO": temporary})
        except MiBusinessError:
            return None
        final = (result.first or {}).get("ORNR", "")
        return final or None

    async def find_order_by_external_ref(
        self, external_ref: str, *, customer_id: str | None = None
    ) -> ErpOrderRef | None:
        """The order whose CUOR is ``external_ref``; the lowest ORNO if M3 holds several.

        With ``customer_id``: OIS100MI LstHead for that customer, filtered exactly on CUOR; without:
        SearchHead, filtered exactly too (a search query is never trusted to be exact).
        """
        if customer_id:
            result = await self._mi.execute("OIS100MI", "LstHead", {"CUNO": customer_id})
        else:
            result = await self._mi.execute("OIS100MI", "SearchHead", {"SQRY": f'CUOR:"{external_ref}"'})
        matches: list[str] = []
        for record in result.records:
            orno = record.get("ORNO", "")
            if not orno:
                continue
            cuor = record.get("CUOR")
            if cuor is None:  # list without CUOR in its output: read the head
                head = await self._mi.execute("OIS100MI", "GetHead", {"ORNO": orno})
                cuor = (head.first or {}).get("CUOR", "")
            if cuor == external_ref:
                matches.append(orno)
        if not matches:
            return None
        if len(matches) > 1:
            log.warning("reference %s is on %d M3 orders: %s", external_ref, len(matches), sorted(matches))
        return ErpOrderRef(min(matches), external_ref)

    async def get_sales_order(self, ref: ErpOrderRef) -> OrderState:
        """Header (GetHead) and lines (LstLine) with neutral and native statuses."""
        head = (await self._mi.execute("OIS100MI", "GetHead", {"ORNO": ref.erp_order_id})).first or {}
        lines = await self._mi.execute("OIS100MI", "LstLine", {"ORNO": ref.erp_order_id})
        orsl, orst, stop = head.get("ORSL", ""), head.get("ORST", ""), head.get("OBLC", "")
        return OrderState(
            ref=ErpOrderRef(ref.erp_order_id, head.get("CUOR", ref.external_ref)),
            status=m3_order_status(orsl, orst, stop),
            status_native={"ORSL": orsl, "ORST": orst, "STAT": head.get("STAT", ""), "OBLC": stop},
            customer_id=head.get("CUNO", ""),
            currency=head.get("CUCD", ""),
            total=m3_decimal(head.get("TOPY")),
            lines=tuple(
                OrderLineState(
                    line_no=int(line.get("PONR", "0") or 0),
                    sku=line.get("ITNO", ""),
                    qty_ordered=_qty(line.get("ORQT")),
                    qty_allocated=_qty(line.get("ALQT")),
                    qty_shipped=_qty(line.get("DLQT")),
                    qty_invoiced=_qty(line.get("IVQT")),
                    status=m3_order_status(line.get("ORST", ""), line.get("ORST", "")),
                    status_native=line.get("ORST", ""),
                )
                for line in lines.records
            ),
        )

    # ---------------------------------------------------------------------------------- customers

    async def get_customer(self, ref: CustomerRef) -> Customer | None:
        """CRS610MI GetBasicData; None when M3 says the customer does not exist (a NOK on the key)."""
        try:
            result = await self._mi.execute("CRS610MI", "GetBasicData", {"CUNO": ref.customer_id})
        except MiBusinessError as exc:
            if exc.error.error_type == "ServerReturnedNOK":
                return None
            raise
        record = result.first
        return None if record is None else _customer(record)

    async def upsert_customer(self, customer: Customer) -> CustomerRef:
        """Create or update the customer numbered ``customer_id``; never a second customer.

        Unchanged data makes no write. A concurrent creation (Add refused because the number now
        exists) turns into an update of that customer.
        """
        current = await self.get_customer(CustomerRef(customer.customer_id))
        if current is None:
            template = self._defaults.customer_template
            if not template:
                raise InvalidMessage("m3_customer_template_missing", "no customer template (CUTM) configured")
            try:
                await self._mi.execute(
                    "CRS610MI",
                    "Add",
                    {"CUTM": template, "CUNO": customer.customer_id, **_customer_fields(customer)},
                )
            except MiBusinessError:
                current = await self.get_customer(CustomerRef(customer.customer_id))
                if current is None:
                    raise
                log.info("customer %s was created concurrently; updating it", customer.customer_id)
            else:
                return CustomerRef(customer.customer_id, created=True)
        wanted = _customer_fields(customer)
        if {k: v for k, v in _customer_fields(current).items() if k in wanted} == wanted:
            return CustomerRef(customer.customer_id)
        await self._mi.execute("CRS610MI", "ChgBasicData", {"CUNO": customer.customer_id, **wanted})
        return CustomerRef(customer.customer_id, changed=True)

    async def list_customers(
        self, *, changed_after: int = 0, page_size: int = 500
    ) -> AsyncIterator[tuple[Customer, int]]:
        """Every customer changed after LMTS ``changed_after`` (0: all of them), by number, with its LMTS.

        CRS610MI LstByNumber, the changed-since feed (infor.md §2.4), paged by CUNO: give the largest
        LMTS seen as the next call's ``changed_after`` to get only what changed since.
        """
        async for record in self._mi.paginate(
            "CRS610MI",
            "LstByNumber",
            {"CUNO": "", "LMTS": str(changed_after)},
            restart_from={"CUNO": "CUNO"},
            page_size=page_size,
        ):
            stamp = record.get("LMTS", "").strip()
            yield _customer(record), int(stamp) if stamp.isdigit() else 0

    async def change_customer(self, customer: Customer, current: Customer) -> bool:
        """Send only the fields of ``customer`` that differ from ``current`` (CRS610MI ChgBasicData).

        ``current`` is what :meth:`get_customer` returned; its number is the one changed. Returns False,
        having sent nothing, when no field differs. An empty wanted value is not sent: M3 leaves blank
        inputs unchanged, so this never clears a field.
        """
        have = _customer_fields(current)
        changed = {
            name: value
            for name, value in _customer_fields(customer).items()
            if value not in (None, "") and value != have.get(name)
        }
        if not changed:
            return False
        await self._mi.execute("CRS610MI", "ChgBasicData", {"CUNO": current.customer_id, **changed})
        return True

    # ------------------------------------------------------------------------------- items, stock

    async def get_item(self, sku: str) -> Item | None:
        """MMS200MI GetItmBasic; None when the item does not exist."""
        try:
            result = await self._mi.execute("MMS200MI", "GetItmBasic", {"ITNO": sku})
        except MiBusinessError as exc:
            if exc.error.error_type == "ServerReturnedNOK":
                return None
            raise
        r = result.first
        if r is None:
            return None
        return Item(
            sku=r.get("ITNO", sku),
            description=r.get("ITDS", ""),
            status_native=r.get("STAT", ""),
            unit=r.get("UNMS", ""),
            item_group=r.get("ITGR", ""),
            extended_description=r.get("FUDS", ""),
            net_weight=m3_decimal(r.get("NEWE")),
            changed_on=m3_date(r.get("LMDT", "")),
        )

    async def get_stock(self, skus: list[str], warehouses: list[str] | None = None) -> list[StockLevel]:
        """MMS200MI GetItmWhsBal per item and warehouse (default warehouse when none given)."""
        targets = warehouses or ([self._defaults.warehouse] if self._defaults.warehouse else [])
        if not targets:
            raise InvalidMessage("no_warehouse", "no warehouse given and none configured")
        levels: list[StockLevel] = []
        for sku in skus:
            for warehouse in targets:
                r = (
                    await self._mi.execute("MMS200MI", "GetItmWhsBal", {"WHLO": warehouse, "ITNO": sku})
                ).first
                if r is not None:
                    levels.append(_stock(r, sku=sku, warehouse=warehouse))
        return levels

    async def stock_changes_since(self, change_stamp: str) -> list[StockLevel]:
        """OIS100MI LstNewBalances: balances changed after LMTS ``change_stamp`` (the stock delta feed)."""
        result = await self._mi.execute("OIS100MI", "LstNewBalances", {"LMTS": change_stamp or "0"})
        return [_stock(r, sku=r.get("ITNO", ""), warehouse=r.get("WHLO", "")) for r in result.records]

    # ------------------------------------------------------------------------- deliveries, invoices

    async def list_shipments(self, ref: ErpOrderRef) -> list[Shipment]:
        """Deliveries of the order: MWS411MI LstDelLnByOrd for the lines, MWS410MI GetHead per delivery."""
        lines = await self._mi.execute(
            "MWS411MI",
            "LstDelLnByOrd",
            {"RORC": self._defaults.order_reference_type, "RIDN": ref.erp_order_id},
        )
        by_delivery: dict[str, list[ShipmentLine]] = {}
        for r in lines.records:
            line_no = r.get("RIDL", "")
            by_delivery.setdefault(r.get("DLIX", ""), []).append(
                ShipmentLine(
                    sku=r.get("ITNO", ""),
                    quantity=_qty(r.get("TRQT")),
                    line_no=int(line_no) if line_no.isdigit() else None,
                )
            )
        shipments: list[Shipment] = []
        for dlix, shipped in sorted(by_delivery.items()):
            if not dlix:
                continue
            head = (await self._mi.execute("MWS410MI", "GetHead", {"DLIX": dlix})).first or {}
            shipments.append(
                Shipment(
                    shipment_id=dlix,
                    order_id=head.get("RIDN", ref.erp_order_id),
                    status_native=head.get("PGRS", ""),
                    carrier=head.get("FWNO", "") or head.get("MODL", ""),
                    tracking_numbers=tuple(t for t in (head.get("ETRN", ""),) if t),
                    bill_of_lading=head.get("NBOL", ""),
                    shipped_on=m3_date(head.get("DSDT", "")),
                    lines=tuple(shipped),
                )
            )
        return shipments

    async def list_invoices(self, ref: ErpOrderRef) -> list[Invoice]:
        """OIS350MI LstInvHeadByCo: the order's invoices."""
        result = await self._mi.execute("OIS350MI", "LstInvHeadByCo", {"ORNO": ref.erp_order_id})
        return [
            Invoice(
                invoice_id=r.get("IVNO", ""),
                order_id=ref.erp_order_id,
                customer_id=r.get("CUNO", ""),
                currency=r.get("CUCD", ""),
                gross=m3_decimal(r.get("AMT1")),
                net=m3_decimal(r.get("AMT2")),
                invoice_date=m3_date(r.get("IVDT", "")),
                due_date=m3_date(r.get("DUDT", "")),
                year=r.get("YEA4", ""),
                delivery_id=r.get("DLIX", ""),
            )
            for r in result.records
        ]

    async def invoice_balances(self, ref: ErpOrderRef) -> list[InvoiceBalance]:
        """The order's invoices with what is still open on each, oldest first.

        OIS350MI LstInvHeadByCo names customer and currency, LstAllInvByCO the remaining amount (RAFC);
        an invoice the second list does not show counts as fully open.
        """
        heads = await self.list_invoices(ref)
        remaining = await self._mi.execute("OIS350MI", "LstAllInvByCO", {"ORNO": ref.erp_order_id})
        open_by_invoice = {
            (r.get("IVNO", ""), r.get("YEA4", "")): m3_decimal(r.get("RAFC")) for r in remaining.records
        }
        balances = [
            InvoiceBalance(
                invoice_id=head.invoice_id,
                year=head.year,
                customer_id=head.customer_id,
                currency=head.currency,
                gross=head.gross,
                open_amount=_open(open_by_invoice.get((head.invoice_id, head.year)), head.gross),
            )
            for head in heads
        ]
        return sorted(balances, key=lambda b: (b.year, b.invoice_id.zfill(15)))

    async def apply_customer_payment(self, payment: CustomerPayment, *, batch_type: str) -> bool:
        """Apply ``payment`` to its invoices: ARS040MI AddBatchHead, AddBatchLine per allocation (TRNO 1..n,
        the provider's reference as check number CKNO), ControlBatch.

        Every step may be repeated: a batch or line that exists (NOK on PBID / TRNO) was added by an
        earlier attempt, and a batch already posted (NOK on PBID) means the payment was applied.
        Returns True when this call posted the batch, False when an earlier attempt had. Raises
        MiBusinessError when M3 refuses the payment itself (unknown invoice, more than is open).
        """
        batch = payment.batch_id
        try:
            await self._mi.execute("ARS040MI", "AddBatchHead", {"PBID": batch, "BOPE": batch_type})
        except MiBusinessError as exc:
            if exc.error.error_field != "PBID":
                raise
        for number, allocation in enumerate(payment.allocations, start=1):
            try:
                await self._mi.execute(
                    "ARS040MI",
                    "AddBatchLine",
                    {
                        "PBID": batch,
                        "TRNO": number,
                        "CINO": allocation.invoice_id,
                        "INYR": allocation.year,
                        "CUNO": payment.customer_id,
                        "PYAM": allocation.amount,
                        "CUCD": payment.currency,
                        "LPDT": payment.paid_on,
                        "CKNO": payment.reference or None,
                    },
                )
            except MiBusinessError as exc:
                if exc.error.error_field == "TRNO":
                    continue  # added by an earlier attempt
                if exc.error.error_field == "PBID":
                    return False  # posted by an earlier attempt
                raise
        try:
            await self._mi.execute("ARS040MI", "ControlBatch", {"PBID": batch})
        except MiBusinessError as exc:
            if exc.error.error_field == "PBID":
                return False
            raise
        return True


def _open(remaining: Decimal | None, gross: Decimal | None) -> Decimal:
    if remaining is not None:
        return remaining
    return gross if gross is not None else Decimal(0)


def _customer_fields(customer: Customer) -> dict[str, MiValue]:
    address = customer.address
    lines = (*(address.lines if address else ()), "", "", "", "")
    fields: dict[str, MiValue] = {
        "CUNM": customer.name,
        "CUA1": lines[0],
        "CUA2": lines[1],
        "CUA3": lines[2],
        "CUA4": lines[3],
        "PONO": address.postal_code if address else "",
        "TOWN": address.city if address else "",
        "CSCD": address.country_code if address else "",
        "ECAR": address.state_code if address else "",
        "PHNO": customer.phone,
        "MAIL": customer.email,
    }
    if customer.currency:
        fields["CUCD"] = customer.currency
    return fields


def _customer(r: Mapping[str, str]) -> Customer:
    lines = tuple(line for line in (r.get(f"CUA{n}", "") for n in range(1, 5)) if line)
    return Customer(
        customer_id=r.get("CUNO", ""),
        name=r.get("CUNM", ""),
        address=Address(
            name=r.get("CUNM", ""),
            lines=lines,
            city=r.get("TOWN", ""),
            postal_code=r.get("PONO", ""),
            country_code=r.get("CSCD", ""),
            state_code=r.get("ECAR", ""),
            phone=r.get("PHNO", ""),
        ),
        email=r.get("MAIL", ""),
        phone=r.get("PHNO", ""),
        currency=r.get("CUCD", ""),
        status_native=r.get("STAT", ""),
    )


def _stock(r: Mapping[str, str], *, sku: str, warehouse: str) -> StockLevel:
    return StockLevel(
        sku=r.get("ITNO", sku) or sku,
        warehouse=r.get("WHLO", warehouse) or warehouse,
        available=_qty(r.get("AV01")),
        on_hand=m3_decimal(r.get("STQT")),
        allocated=m3_decimal(r.get("ALQT")),
        change_stamp=r.get("LMTS", ""),
    )
