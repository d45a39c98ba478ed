"""Clients of the two sandboxes' admin APIs (``/_sandbox/...``), on injected ``httpx`` clients.

These drive the sandboxes the way their customers, back office and warehouse would (place an order,
change stock, pay an invoice) and read their state back as plain JSON; they are tools for ``dev up``,
the traffic generator and the demo, never for the pipeline, which reaches the vendors only through
``connectors/``. An answer other than 2xx raises :class:`SandboxAdminError` naming the call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from xml.sax.saxutils import escape

import httpx

from pipeline.errors import PipelineError

JsonObject = dict[str, Any]


class SandboxAdminError(PipelineError):
    """A sandbox admin call answered with an error (or did not answer)."""


def _checked(response: httpx.Response, what: str) -> httpx.Response:
    if not response.is_success:
        raise SandboxAdminError(f"{what}: HTTP {response.status_code} {response.text[:300]}")
    return response


@dataclass(frozen=True)
class OrderLineRequest:
    """One line of a checkout: a product and optionally one of its combinations."""

    product_id: int
    combination_id: int = 0
    quantity: int = 1


@dataclass(frozen=True)
class NewCustomerRequest:
    """A customer who registers at checkout."""

    email: str
    firstname: str
    lastname: str
    address1: str
    city: str
    postcode: str
    country_iso: str


@dataclass(frozen=True)
class CheckoutRequest:
    """A checkout by an existing customer (``customer_id``) or a new one (``new_customer``)."""

    lines: Sequence[OrderLineRequest]
    currency: str = "EUR"
    payment_module: str = "ps_checkpayment"
    customer_id: int | None = None
    new_customer: NewCustomerRequest | None = None

    def body(self) -> JsonObject:
        """The JSON the admin API's ``POST /_sandbox/orders`` takes."""
        body: JsonObject = {
            "lines": [
                {
                    "product_id": line.product_id,
                    "combination_id": line.combination_id,
                    "quantity": line.quantity,
                }
                for line in self.lines
            ],
            "currency": self.currency,
            "payment_module": self.payment_module,
        }
        if self.customer_id is not None:
            body["customer_id"] = self.customer_id
        if self.new_customer is not None:
            nc = self.new_customer
            body["customer"] = {
                "email": nc.email,
                "firstname": nc.firstname,
                "lastname": nc.lastname,
                "address1": nc.address1,
                "city": nc.city,
                "postcode": nc.postcode,
                "country_iso": nc.country_iso,
            }
        return body


class PrestaShopSandboxAdmin:
    """The PrestaShop sandbox: its admin API, plus webservice PATCHes for catalogue edits.

    ``http`` is a client whose ``base_url`` is the shop root (``http://127.0.0.1:PORT``); ``ws_key`` is
    needed only for :meth:`set_combination_reference` (the admin API edits products, not combinations).
    """

    def __init__(self, http: httpx.Client, *, ws_key: str | None = None) -> None:
        self._http = http
        self._ws_key = ws_key

    def info(self) -> JsonObject:
        """Version, seed, table sizes."""
        data: JsonObject = _checked(self._http.get("/_sandbox/info"), "shop info").json()
        return data

    def rows(self, resource: str, *, page_size: int = 500) -> list[JsonObject]:
        """Every row of ``resource`` as plain JSON, in id order."""
        out: list[JsonObject] = []
        offset = 0
        while True:
            page: list[JsonObject] = _checked(
                self._http.get(
                    f"/_sandbox/resources/{resource}", params={"offset": offset, "limit": page_size}
                ),
                f"list {resource}",
            ).json()
            out.extend(page)
            if len(page) < page_size:
                return out
            offset += page_size

    def row(self, resource: str, entity_id: int) -> JsonObject:
        """One row of ``resource``."""
        data: JsonObject = _checked(
            self._http.get(f"/_sandbox/resources/{resource}/{entity_id}"), f"get {resource} {entity_id}"
        ).json()
        return data

    def place_order(self, checkout: CheckoutRequest) -> JsonObject:
        """Check out (order, details, carrier row, stock, first state, webhooks); returns the order."""
        data: JsonObject = _checked(
            self._http.post("/_sandbox/orders", json=checkout.body()), "place order"
        ).json()
        return data

    def edit_product(self, product_id: int, fields: Mapping[str, str | None]) -> JsonObject:
        """Edit product fields as the back office does (``date_upd`` moves, a webhook is sent)."""
        data: JsonObject = _checked(
            self._http.patch(f"/_sandbox/products/{product_id}", json={"fields": dict(fields)}),
            f"edit product {product_id}",
        ).json()
        return data

    def set_combination_reference(self, combination_id: int, reference: str) -> None:
        """Set one combination's reference through the webservice (PATCH, PrestaShop 8)."""
        if self._ws_key is None:
            raise SandboxAdminError("set_combination_reference needs the webservice key")
        body = (
            '<?xml version="1.0" encoding="UTF-8"?><prestashop><combination>'
            f"<id>{combination_id}</id><reference>{escape(reference)}</reference>"
            "</combination></prestashop>"
        )
        _checked(
            self._http.patch(
                f"/api/combinations/{combination_id}",
                content=body.encode(),
                headers={"Content-Type": "text/xml"},
                auth=(self._ws_key, ""),
            ),
            f"set reference of combination {combination_id}",
        )

    def set_webhooks(self, url: str, secrets: Sequence[str]) -> None:
        """Send the shop's webhooks to ``url``, signed with ``secrets``."""
        _checked(
            self._http.put("/_sandbox/webhooks", json={"targets": [{"url": url, "secrets": list(secrets)}]}),
            "configure webhooks",
        )

    def webhook_deliveries(self, *, limit: int = 1000) -> list[JsonObject]:
        """Recent webhook deliveries with their attempts (newest last)."""
        data: list[JsonObject] = _checked(
            self._http.get("/_sandbox/webhooks/deliveries", params={"limit": limit}), "webhook deliveries"
        ).json()
        return data

    def order_carriers(self, order_id: int) -> list[JsonObject]:
        """The order's carrier rows (tracking numbers)."""
        return [row for row in self.rows("order_carriers") if str(row.get("id_order")) == str(order_id)]


class InforSandboxAdmin:
    """The Infor sandbox's admin API (no authentication; never behind the gateway).

    ``http`` is a client whose ``base_url`` is the sandbox root (``http://127.0.0.1:PORT``).
    """

    def __init__(self, http: httpx.Client) -> None:
        self._http = http

    def orders(self, *, customer_order_number: str | None = None) -> list[JsonObject]:
        """M3 customer order heads, optionally only those with this CUOR (the shop reference)."""
        params = {"cuor": customer_order_number} if customer_order_number is not None else {}
        data: list[JsonObject] = _checked(self._http.get("/_sandbox/orders", params=params), "orders").json()
        return data

    def order(self, orno: str) -> JsonObject:
        """One M3 order with lines, deliveries and invoices."""
        data: JsonObject = _checked(self._http.get(f"/_sandbox/orders/{orno}"), f"order {orno}").json()
        return data

    def invoices(self) -> list[JsonObject]:
        """Every invoice."""
        data: list[JsonObject] = _checked(self._http.get("/_sandbox/invoices"), "invoices").json()
        return data

    def pay_invoice(self, invoice_number: int) -> JsonObject:
        """Record the invoice as paid in full (a Sync.Invoice follows)."""
        data: JsonObject = _checked(
            self._http.post(f"/_sandbox/invoices/{invoice_number}/pay"), f"pay invoice {invoice_number}"
        ).json()
        return data

    def payment_batches(self) -> list[JsonObject]:
        """Cash receipt batches (ARS040MI) the pipeline posted."""
        data: list[JsonObject] = _checked(
            self._http.get("/_sandbox/payment-batches"), "payment batches"
        ).json()
        return data

    def balance(self, warehouse: str, item: str) -> JsonObject | None:
        """The item's balance in the warehouse, or None when it has none there."""
        response = self._http.get(f"/_sandbox/balances/{warehouse}/{item}")
        if response.status_code == httpx.codes.NOT_FOUND:
            return None
        data: JsonObject = _checked(response, f"balance {warehouse}/{item}").json()
        return data

    def set_on_hand(self, warehouse: str, item: str, quantity: Decimal) -> JsonObject:
        """Set the on-hand quantity (STQT) of an existing balance (a stock movement)."""
        data: JsonObject = _checked(
            self._http.put(f"/_sandbox/balances/{warehouse}/{item}", json={"stqt": str(quantity)}),
            f"set balance {warehouse}/{item}",
        ).json()
        return data

    def warehouse(self) -> JsonObject:
        """The warehouse simulation's timing (step delay, paused, stock drift)."""
        data: JsonObject = _checked(self._http.get("/_sandbox/warehouse"), "warehouse").json()
        return data

    def configure_warehouse(self, **fields: float | bool | int) -> JsonObject:
        """Change the simulation's timing fields."""
        data: JsonObject = _checked(
            self._http.put("/_sandbox/warehouse", json=fields), "configure warehouse"
        ).json()
        return data

    def pusher_stats(self) -> JsonObject:
        """The IMS pusher's counters."""
        data: JsonObject = _checked(self._http.get("/_sandbox/ims/pusher/stats"), "pusher stats").json()
        return data
