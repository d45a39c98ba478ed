"""The shop's business side effects, shared by webservice writes, the admin API and the seed.

What PrestaShop does behind the webservice (reference §2.7, §2.9, §2.10): an order state change
(``OrderHistory::changeIdOrderState``) sets ``current_state``, ``valid`` and ``date_upd``, creates the
invoice / delivery numbers and the payment rows the new state's flags call for, and restocks on a
cancel; stock writes recompute the product-level (attribute 0) row as the sum of the combination
rows; tracking lives in ``order_carriers`` and, like stock, never moves ``orders.date_upd`` /
``products.date_upd`` (reference fact 9). Every data change is announced as a :class:`ShopEvent` to
the listeners (the webhook sender).
"""

from __future__ import annotations

import hashlib
import random
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from sandbox.prestashop.errors import WsError
from sandbox.prestashop.resources import ZERO_DATE
from sandbox.prestashop.store import Entity, Store, Value

CANCEL_KEYS = ("PS_OS_CANCELED", "PS_OS_ERROR")
TAX_RATE = Decimal("0.20")
SHIPPING_TAX_EXCL = Decimal("5.00")
CENT = Decimal("0.01")

JsonScalar = str | int | float | bool | None


@dataclass(frozen=True, slots=True)
class ShopEvent:
    """One data change, as the webhook sender needs it.

    ``type`` is the Standard Webhooks event type (reference §3.4); ``ps_entity`` / ``ps_action`` are
    what the ps_webhooks module would see (ObjectModel class and add|update|delete);
    ``source_hook`` is the PrestaShop hook that would fire; ``occurred_at`` is ISO 8601 with the
    shop's offset.
    """

    type: str
    resource: str
    entity_id: int
    data: dict[str, JsonScalar]
    source_hook: str
    ps_entity: str
    ps_action: str
    occurred_at: str


@dataclass(frozen=True, slots=True)
class OrderLine:
    """One cart line for :meth:`Shop.place_order`: a product, optionally one of its combinations."""

    product_id: int
    combination_id: int = 0
    quantity: int = 1


@dataclass(frozen=True, slots=True)
class NewCustomer:
    """A customer created during checkout, with the delivery/invoice address."""

    email: str
    firstname: str
    lastname: str
    address1: str = "1 rue de la Paix"
    city: str = "Paris"
    postcode: str = "75001"
    country_iso: str = "FR"
    is_guest: bool = False


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """A checkout: existing ``customer_id`` or a ``new_customer``, lines, currency and payment module.

    ``state_id`` overrides the initial state (default: the payment module's waiting state, or
    ``PS_OS_PAYMENT`` for modules without one). ``at`` backdates the order (seeding).
    """

    lines: tuple[OrderLine, ...]
    customer_id: int | None = None
    new_customer: NewCustomer | None = None
    currency: str = "EUR"
    payment_module: str = "ps_checkpayment"
    carrier_id: int | None = None
    state_id: int | None = None
    at: str | None = None


MODULE_STATES = {
    "ps_checkpayment": ("PS_OS_CHEQUE", "Payment by check"),
    "ps_wirepayment": ("PS_OS_BANKWIRE", "Bank wire"),
    "ps_cashondelivery": ("PS_OS_COD_VALIDATION", "Cash on delivery (COD)"),
}


def money(value: Decimal) -> str:
    """DECIMAL(20,6) as PrestaShop renders it: ``"61.800000"``."""
    return f"{value.quantize(Decimal('0.000001'), rounding=ROUND_HALF_UP):f}"


def _dec(text: str) -> Decimal:
    try:
        return Decimal(text or "0")
    except ArithmeticError:
        return Decimal(0)


@dataclass
class Shop:
    """Business operations over one :class:`Store`; ``listeners`` receive every :class:`ShopEvent`."""

    store: Store
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    listeners: list[Callable[[ShopEvent], None]] = field(default_factory=list)
    muted: bool = False
    # product_option_values are not a simulated resource; their "Group : Value" labels live here.
    store_option_labels: dict[int, str] = field(default_factory=dict)

    # -- events -----------------------------------------------------------------------------------

    def emit(
        self,
        type_: str,
        resource: str,
        entity_id: int,
        data: dict[str, JsonScalar],
        *,
        hook: str,
        ps_entity: str,
        ps_action: str,
    ) -> None:
        """Announce a data change to every listener (nothing while seeding: ``muted``)."""
        if self.muted or not self.listeners:
            return
        occurred = datetime.now(self.store.timezone).isoformat(timespec="seconds")
        event = ShopEvent(type_, resource, entity_id, data, hook, ps_entity, ps_action, occurred)
        for listener in self.listeners:
            listener(event)

    # -- generated values -------------------------------------------------------------------------

    def secure_key(self) -> str:
        """A 32-hex-digit key like PrestaShop's ``md5(uniqid(rand(), true))``."""
        return f"{self.rng.getrandbits(128):032x}"

    def reference(self) -> str:
        """An order reference: 9 uppercase letters."""
        return "".join(self.rng.choice(string.ascii_uppercase) for _ in range(9))

    @staticmethod
    def hash_password(plain: str) -> str:
        """A bcrypt-shaped hash of a plain password (GET returns the hash, never the plain text)."""
        digest = hashlib.sha256(plain.encode()).hexdigest()
        return "$2y$10$" + digest[:53]

    # -- order states -----------------------------------------------------------------------------

    def state_id(self, config_key: str) -> int:
        """The order-state id a ``PS_OS_*`` configuration key points at."""
        value = self.store.config_value(config_key)
        if not value or not value.isdigit():
            raise KeyError(config_key)
        return int(value)

    def _is_cancel(self, state_id: int) -> bool:
        return any(self.store.config_value(k) == str(state_id) for k in CANCEL_KEYS)

    def change_order_state(
        self, order_id: int, state_id: int, *, employee_id: int = 0, at: str | None = None
    ) -> Entity:
        """POST order_histories semantics; returns the new history row.

        No dedupe: the same state twice gives two history rows (reference §2.9).
        """
        store = self.store
        order = store.get("orders", order_id)
        new_state = store.get("order_states", state_id)
        if order is None:
            raise WsError(500, 46, f"Order {order_id} cannot be loaded")
        if new_state is None:
            raise WsError(500, 46, "Invalid new order status")
        now = at or store.now()
        old_state = order.num("current_state")
        if self._is_cancel(state_id) and not self._is_cancel(old_state) and old_state:
            self._move_order_stock(order, +1)
        elif self._is_cancel(old_state) and not self._is_cancel(state_id):
            self._move_order_stock(order, -1)
        changes: dict[str, Value] = {
            "current_state": str(state_id),
            "valid": new_state.text("logable") or "0",
            "date_upd": now,
        }
        if new_state.text("invoice") == "1" and order.num("invoice_number") == 0:
            number = store.counters["invoice"]
            store.counters["invoice"] += 1
            changes["invoice_number"] = str(number)
            changes["invoice_date"] = now
            self._create_invoice(order, number, now)
        if new_state.text("delivery") == "1" and order.num("delivery_number") == 0:
            number = store.counters["delivery"]
            store.counters["delivery"] += 1
            changes["delivery_number"] = str(number)
            changes["delivery_date"] = now
        store.update("orders", order, changes)
        if new_state.text("paid") == "1":
            self._add_remaining_payment(order, now)
        history = store.insert(
            "order_histories",
            {
                "id_employee": str(employee_id),
                "id_order_state": str(state_id),
                "id_order": str(order_id),
                "date_add": now,
            },
        )
        self.emit(
            "order.status_changed",
            "orders",
            order_id,
            {"id_order": order_id, "old_state": old_state, "new_state": state_id},
            hook="actionOrderStatusPostUpdate",
            ps_entity="Order",
            ps_action="update",
        )
        return history

    def _create_invoice(self, order: Entity, number: int, now: str) -> None:
        store = self.store
        invoice = store.insert(
            "order_invoices",
            {
                "id_order": str(order.id),
                "number": str(number),
                "delivery_number": "0",
                "delivery_date": ZERO_DATE,
                "total_discount_tax_excl": order.text("total_discounts_tax_excl") or "0.000000",
                "total_discount_tax_incl": order.text("total_discounts_tax_incl") or "0.000000",
                "total_paid_tax_excl": order.text("total_paid_tax_excl"),
                "total_paid_tax_incl": order.text("total_paid_tax_incl"),
                "total_products": order.text("total_products"),
                "total_products_wt": order.text("total_products_wt"),
                "total_shipping_tax_excl": order.text("total_shipping_tax_excl"),
                "total_shipping_tax_incl": order.text("total_shipping_tax_incl"),
                "shipping_tax_computation_method": "0",
                "total_wrapping_tax_excl": "0.000000",
                "total_wrapping_tax_incl": "0.000000",
                "shop_address": self.store.config.shop_name,
                "note": "",
                "date_add": now,
            },
        )
        for detail in store.find("order_details", "id_order", str(order.id)):
            store.update("order_details", detail, {"id_order_invoice": str(invoice.id)})
        for carrier in store.find("order_carriers", "id_order", str(order.id)):
            store.update("order_carriers", carrier, {"id_order_invoice": str(invoice.id)})

    def _add_remaining_payment(self, order: Entity, now: str) -> None:
        store = self.store
        reference = order.text("reference")
        paid = sum(_dec(p.text("amount")) for p in store.find("order_payments", "order_reference", reference))
        remaining = _dec(order.text("total_paid_tax_incl")) - paid
        if remaining <= 0:
            return
        store.insert(
            "order_payments",
            {
                "order_reference": reference,
                "id_currency": order.text("id_currency"),
                "amount": money(remaining),
                "payment_method": order.text("payment"),
                "conversion_rate": order.text("conversion_rate"),
                "transaction_id": "",
                "card_number": "",
                "card_brand": "",
                "card_expiration": "",
                "card_holder": "",
                "date_add": now,
                "id_employee": "0",
            },
        )
        store.update("orders", order, {"total_paid_real": money(paid + remaining)})

    def _move_order_stock(self, order: Entity, sign: int) -> None:
        for detail in self.store.find("order_details", "id_order", str(order.id)):
            qty = detail.num("product_quantity") * sign
            self.adjust_stock(detail.num("product_id"), detail.num("product_attribute_id"), qty)

    # -- stock ------------------------------------------------------------------------------------

    def stock_row(self, product_id: int, attribute_id: int) -> Entity | None:
        """The stock_availables row of (product, combination) in shop 1."""
        for row in self.store.find("stock_availables", "id_product", str(product_id)):
            if row.num("id_product_attribute") == attribute_id:
                return row
        return None

    def adjust_stock(self, product_id: int, attribute_id: int, delta: int) -> None:
        """Add ``delta`` to a stock row (orders decrement, cancels restock) and recompute attr 0."""
        row = self.stock_row(product_id, attribute_id)
        if row is None:
            return
        self.set_stock_quantity(row, row.num("quantity") + delta)

    def set_stock_quantity(self, row: Entity, quantity: int) -> None:
        """Set one stock row's quantity; never touches date_upd.

        A combination row's save recomputes the product-level row (``StockAvailable::postSave``);
        saving the product-level row itself does not, so a direct write to it holds until the next
        combination change overwrites it with the sum (reference §2.7).
        """
        old = row.num("quantity")
        self.store.update("stock_availables", row, {"quantity": str(quantity)})
        attribute_id = row.num("id_product_attribute")
        self._stock_event(row, quantity - old)
        if attribute_id:
            combination = self.store.get("combinations", attribute_id)
            if combination is not None:
                self.store.update("combinations", combination, {"quantity": str(quantity)})
            self.recompute_product_stock(row.num("id_product"))
            return
        product = self.store.get("products", row.num("id_product"))
        if product is not None:
            self.store.update("products", product, {"quantity": str(quantity)})

    def recompute_product_stock(self, product_id: int) -> None:
        """StockAvailable::postSave: the attr-0 row of a product with combinations is their sum."""
        rows = self.store.find("stock_availables", "id_product", str(product_id))
        parent = next((r for r in rows if r.num("id_product_attribute") == 0), None)
        children = [r for r in rows if r.num("id_product_attribute") != 0]
        if parent is None:
            return
        if children:
            total = sum(r.num("quantity") for r in children)
            old = parent.num("quantity")
            if total != old:
                self.store.update("stock_availables", parent, {"quantity": str(total)})
                self._stock_event(parent, total - old)
        product = self.store.get("products", product_id)
        if product is not None:
            self.store.update("products", product, {"quantity": parent.text("quantity")})

    def _stock_event(self, row: Entity, delta: int) -> None:
        self.emit(
            "stock.changed",
            "stock_availables",
            row.id,
            {
                "id_product": row.num("id_product"),
                "id_product_attribute": row.num("id_product_attribute"),
                "id_shop": row.num("id_shop") or 1,
                "quantity": row.num("quantity"),
                "delta": delta,
            },
            hook="actionObjectStockAvailableUpdateAfter",
            ps_entity="StockAvailable",
            ps_action="update",
        )

    # -- tracking ---------------------------------------------------------------------------------

    def set_tracking(self, order_carrier: Entity, tracking_number: str) -> None:
        """Write tracking on an order_carrier; mirrors orders.shipping_number, date_upd untouched."""
        store = self.store
        store.update("order_carriers", order_carrier, {"tracking_number": tracking_number})
        order = store.get("orders", order_carrier.num("id_order"))
        if order is not None:
            store.update("orders", order, {"shipping_number": tracking_number})
        self.emit(
            "order.tracking_updated",
            "orders",
            order_carrier.num("id_order"),
            {
                "id_order": order_carrier.num("id_order"),
                "id_order_carrier": order_carrier.id,
                "tracking_number": tracking_number,
            },
            hook="actionObjectOrderCarrierUpdateAfter",
            ps_entity="OrderCarrier",
            ps_action="update",
        )

    # -- checkout ---------------------------------------------------------------------------------

    def create_customer(self, new: NewCustomer, now: str) -> tuple[Entity, Entity]:
        """A customer plus one address (what the front-office registration + checkout create)."""
        store = self.store
        if not new.is_guest:
            for other in store.find("customers", "email", new.email):
                if other.text("is_guest") != "1" and other.text("deleted") != "1":
                    raise WsError(500, 140, "The email is already used, please choose another one")
        customer = store.insert("customers", self.customer_values(new, now), assoc={"groups": [{"id": "3"}]})
        country_id = self._country_id(new.country_iso)
        address = store.insert("addresses", self.address_values(customer, new, country_id, now))
        self.emit(
            "customer.created",
            "customers",
            customer.id,
            {"id_customer": customer.id, "email": new.email},
            hook="actionObjectCustomerAddAfter",
            ps_entity="Customer",
            ps_action="add",
        )
        return customer, address

    def _country_id(self, iso: str) -> int:
        for country in self.store.all("countries"):
            if country.text("iso_code").upper() == iso.upper():
                return country.id
        return int(self.store.config_value("PS_COUNTRY_DEFAULT") or 8)

    def customer_values(self, new: NewCustomer, now: str) -> dict[str, Value]:
        """A complete customers row for a front-office registration."""
        return {
            "id_default_group": "2" if new.is_guest else "3",
            "id_lang": str(self.store.default_language),
            "newsletter_date_add": ZERO_DATE,
            "ip_registration_newsletter": "",
            "last_passwd_gen": now,
            "secure_key": self.secure_key(),
            "deleted": "0",
            "passwd": self.hash_password(new.email),
            "lastname": new.lastname,
            "firstname": new.firstname,
            "email": new.email,
            "id_gender": "0",
            "birthday": "0000-00-00",
            "newsletter": "0",
            "optin": "0",
            "website": "",
            "company": "",
            "siret": "",
            "ape": "",
            "outstanding_allow_amount": "0.000000",
            "show_public_prices": "0",
            "id_risk": "0",
            "max_payment_days": "0",
            "active": "1",
            "note": "",
            "is_guest": "1" if new.is_guest else "0",
            "id_shop": "1",
            "id_shop_group": "1",
            "date_add": now,
            "date_upd": now,
            "reset_password_token": "",
            "reset_password_validity": ZERO_DATE,
        }

    def address_values(
        self, customer: Entity, new: NewCustomer, country_id: int, now: str
    ) -> dict[str, Value]:
        """A complete addresses row for a customer's delivery address."""
        return {
            "id_customer": str(customer.id),
            "id_manufacturer": "0",
            "id_supplier": "0",
            "id_warehouse": "0",
            "id_country": str(country_id),
            "id_state": "0",
            "alias": "My address",
            "company": "",
            "lastname": new.lastname,
            "firstname": new.firstname,
            "vat_number": "",
            "address1": new.address1,
            "address2": "",
            "postcode": new.postcode,
            "city": new.city,
            "other": "",
            "phone": "",
            "phone_mobile": "",
            "dni": "",
            "deleted": "0",
            "date_add": now,
            "date_upd": now,
        }

    def place_order(self, request: OrderRequest) -> Entity:
        """PaymentModule::validateOrder: order, details, carrier row, stock decrement, first state.

        Raises ``WsError`` (400) for an unknown customer, product, combination or currency.
        """
        store = self.store
        now = request.at or store.now()
        if not request.lines:
            raise WsError(400, 41, 'parameter "lines" required')
        if request.new_customer is not None:
            customer, address = self.create_customer(request.new_customer, now)
        else:
            found = store.get("customers", request.customer_id or 0)
            if found is None:
                raise WsError(400, 85, f"Customer {request.customer_id} does not exist")
            customer = found
            addresses = [
                a
                for a in store.find("addresses", "id_customer", str(customer.id))
                if a.text("deleted") != "1"
            ]
            if not addresses:
                raise WsError(400, 85, f"Customer {customer.id} has no address")
            address = addresses[0]
        currency = next(
            (c for c in store.all("currencies") if c.text("iso_code") == request.currency.upper()), None
        )
        if currency is None:
            raise WsError(400, 85, f"Unknown currency {request.currency}")
        rate = _dec(currency.text("conversion_rate")) or Decimal(1)
        priced: list[tuple[Entity, Entity | None, int, Decimal]] = []
        for line in request.lines:
            product = store.get("products", line.product_id)
            if product is None:
                raise WsError(400, 85, f"Product {line.product_id} does not exist")
            combination = None
            unit = _dec(product.text("price"))
            if line.combination_id:
                combination = store.get("combinations", line.combination_id)
                if combination is None or combination.num("id_product") != product.id:
                    raise WsError(
                        400, 85, f"Combination {line.combination_id} is not one of product {product.id}"
                    )
                unit += _dec(combination.text("price"))
            if line.quantity <= 0:
                raise WsError(400, 85, "Quantity must be positive")
            priced.append((product, combination, line.quantity, (unit * rate).quantize(CENT)))
        carrier_id = request.carrier_id or int(store.config_value("PS_CARRIER_DEFAULT") or 1)
        total_excl = sum((u * q for _, _, q, u in priced), Decimal(0))
        total_incl = sum(((u * (1 + TAX_RATE)).quantize(CENT) * q for _, _, q, u in priced), Decimal(0))
        ship_excl = (SHIPPING_TAX_EXCL * rate).quantize(CENT)
        ship_incl = (ship_excl * (1 + TAX_RATE)).quantize(CENT)
        module_state, payment_name = MODULE_STATES.get(
            request.payment_module, ("PS_OS_PAYMENT", request.payment_module)
        )
        state_id = request.state_id or self.state_id(module_state)
        cart_id = store.counters["cart"]
        store.counters["cart"] += 1
        order = store.insert(
            "orders",
            {
                "id_address_delivery": str(address.id),
                "id_address_invoice": str(address.id),
                "id_cart": str(cart_id),
                "id_currency": str(currency.id),
                "id_lang": customer.text("id_lang") or "1",
                "id_customer": str(customer.id),
                "id_carrier": str(carrier_id),
                "current_state": "0",
                "module": request.payment_module,
                "invoice_number": "0",
                "invoice_date": ZERO_DATE,
                "delivery_number": "0",
                "delivery_date": ZERO_DATE,
                "valid": "0",
                "date_add": now,
                "date_upd": now,
                "shipping_number": "",
                "note": "",
                "id_shop_group": "1",
                "id_shop": "1",
                "secure_key": customer.text("secure_key"),
                "payment": payment_name,
                "recyclable": "0",
                "gift": "0",
                "gift_message": "",
                "mobile_theme": "0",
                "total_discounts": "0.000000",
                "total_discounts_tax_incl": "0.000000",
                "total_discounts_tax_excl": "0.000000",
                "total_paid": money(total_incl + ship_incl),
                "total_paid_tax_incl": money(total_incl + ship_incl),
                "total_paid_tax_excl": money(total_excl + ship_excl),
                "total_paid_real": "0.000000",
                "total_products": money(total_excl),
                "total_products_wt": money(total_incl),
                "total_shipping": money(ship_incl),
                "total_shipping_tax_incl": money(ship_incl),
                "total_shipping_tax_excl": money(ship_excl),
                "carrier_tax_rate": "20.000",
                "total_wrapping": "0.000000",
                "total_wrapping_tax_incl": "0.000000",
                "total_wrapping_tax_excl": "0.000000",
                "round_mode": "2",
                "round_type": "2",
                "conversion_rate": money(rate),
                "reference": self.reference(),
            },
        )
        for product, combination, qty, unit in priced:
            self._add_detail(order, product, combination, qty, unit)
        store.insert(
            "order_carriers",
            {
                "id_order": str(order.id),
                "id_carrier": str(carrier_id),
                "id_order_invoice": "0",
                "weight": "0.000000",
                "shipping_cost_tax_excl": money(ship_excl),
                "shipping_cost_tax_incl": money(ship_incl),
                "tracking_number": "",
                "date_add": now,
            },
        )
        for product, combination, qty, _ in priced:
            self.adjust_stock(product.id, combination.id if combination else 0, -qty)
        self.emit(
            "order.created",
            "orders",
            order.id,
            {"id_order": order.id, "reference": order.text("reference"), "id_customer": customer.id},
            hook="actionValidateOrder",
            ps_entity="Order",
            ps_action="add",
        )
        self.change_order_state(order.id, state_id, at=now)
        return order

    def _add_detail(
        self, order: Entity, product: Entity, combination: Entity | None, qty: int, unit: Decimal
    ) -> None:
        lang = self.store.default_language
        name_value = product.values.get("name")
        name = name_value.get(lang, "") if isinstance(name_value, dict) else str(name_value or "")
        label = self.store_label(combination)
        unit_incl = (unit * (1 + TAX_RATE)).quantize(CENT)
        source = combination if combination is not None and combination.text("reference") else product
        ean = (combination.text("ean13") if combination is not None else "") or product.text("ean13")
        self.store.insert(
            "order_details",
            {
                "id_order": str(order.id),
                "product_id": str(product.id),
                "product_attribute_id": str(combination.id if combination else 0),
                "product_quantity_reinjected": "0",
                "group_reduction": "0.00",
                "discount_quantity_applied": "0",
                "download_hash": "",
                "download_deadline": ZERO_DATE,
                "id_order_invoice": "0",
                "id_warehouse": "0",
                "id_shop": "1",
                "id_customization": "0",
                "product_name": f"{name} - {label}" if label else name,
                "product_quantity": str(qty),
                "product_quantity_in_stock": str(qty),
                "product_quantity_return": "0",
                "product_quantity_refunded": "0",
                "product_price": money(unit),
                "reduction_percent": "0.00",
                "reduction_amount": "0.000000",
                "reduction_amount_tax_incl": "0.000000",
                "reduction_amount_tax_excl": "0.000000",
                "product_quantity_discount": "0.000000",
                "product_ean13": ean,
                "product_isbn": "",
                "product_upc": "",
                "product_mpn": "",
                "product_reference": source.text("reference"),
                "product_supplier_reference": "",
                "product_weight": product.text("weight") or "0.000000",
                "tax_computation_method": "0",
                "id_tax_rules_group": product.text("id_tax_rules_group") or "1",
                "ecotax": "0.000000",
                "ecotax_tax_rate": "0.000",
                "download_nb": "0",
                "unit_price_tax_incl": money(unit_incl),
                "unit_price_tax_excl": money(unit),
                "total_price_tax_incl": money(unit_incl * qty),
                "total_price_tax_excl": money(unit * qty),
                "total_shipping_price_tax_excl": "0.000000",
                "total_shipping_price_tax_incl": "0.000000",
                "purchase_supplier_price": product.text("wholesale_price") or "0.000000",
                "original_product_price": money(unit),
                "original_wholesale_price": product.text("wholesale_price") or "0.000000",
                "total_refunded_tax_excl": "0.000000",
                "total_refunded_tax_incl": "0.000000",
            },
        )

    def store_label(self, combination: Entity | None) -> str:
        """``"Size : M, Color : Red"`` for a combination (its attribute values), ``""`` for none."""
        if combination is None:
            return ""
        labels = self.store_option_labels
        return ", ".join(
            labels[int(row["id"])]
            for row in combination.assoc.get("product_option_values", [])
            if int(row["id"]) in labels
        )
