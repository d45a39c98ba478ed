"""Pydantic source models for the PrestaShop webservice resources we read.

Tolerant at the edge: unknown fields are ignored, string scalars are coerced (``"2"`` → 2,
``"1"`` → True, ``"61.800000"`` → Decimal), zero dates (``0000-00-00 ...``) become None, i18n fields
become ``{language id: text}`` and money and quantities are :class:`~decimal.Decimal`, never float.

Every field but ``id`` has the falsy default PrestaShop itself would have shown (0, ``""``, False,
None): a field missing from a record means the shop dropped a falsy value (8.x single-entity JSON),
so the default is the truth, not a guess.

Timestamps are naive and **shop-local** (PrestaShop stores no time zone; PS_TIMEZONE says which one).

A plain-string i18n value is attributed to the language passed as validation context
``{"language_id": N}`` (the client passes the shop's PS_LANG_DEFAULT); without context it is 1, the
first installed language.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, WrapValidator
from pydantic_core.core_schema import ValidatorFunctionWrapHandler

from connectors.prestashop import json_reads

DEFAULT_LANGUAGE_CONTEXT = 1
"""Language of a plain-string i18n value when the caller gave no ``language_id`` context."""


def _int(value: object) -> int:
    return json_reads.to_int(value) or 0


def _optional_int(value: object) -> int | None:
    return json_reads.to_int(value)


def _decimal(value: object) -> Decimal:
    found = json_reads.to_decimal(value)
    return found if found is not None else Decimal(0)


def _i18n(value: object, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> dict[int, str]:
    context = info.context if isinstance(info.context, dict) else {}
    language = context.get("language_id", DEFAULT_LANGUAGE_CONTEXT)
    normalised: dict[int, str] = handler(json_reads.to_i18n(value, int(language)))
    return normalised


PsInt = Annotated[int, BeforeValidator(_int)]
"""An integer or foreign key; 0 means "none" as in PrestaShop."""
PsOptionalInt = Annotated[int | None, BeforeValidator(_optional_int)]
"""An integer PrestaShop may leave null (``low_stock_threshold``)."""
PsBool = Annotated[bool, BeforeValidator(json_reads.to_bool)]
PsDecimal = Annotated[Decimal, BeforeValidator(_decimal)]
"""Money, rates and quantities: exact decimals as the shop rendered them (6 places for money)."""
PsText = Annotated[str, BeforeValidator(json_reads.to_text)]
PsDateTime = Annotated[datetime | None, BeforeValidator(json_reads.to_datetime)]
"""Naive shop-local timestamp; None for ``0000-00-00 00:00:00``."""
PsDate = Annotated[date | None, BeforeValidator(json_reads.to_date)]
I18nText = Annotated[dict[int, str], WrapValidator(_i18n)]
"""Per-language text, ``{language id: text}``."""


class PsModel(BaseModel):
    """Base of every source model: immutable, unknown fields ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    RESOURCE: ClassVar[str]
    """The webservice resource name (URL and plural JSON key)."""
    NODE: ClassVar[str]
    """The singular element / JSON key (``objectNodeName``)."""

    id: PsInt


class IdRef(BaseModel):
    """An association entry that only names an id (``{"id": "3"}``)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    id: PsInt


# --- orders -----------------------------------------------------------------------------------------


class OrderRow(BaseModel):
    """One ``order_rows`` association entry; line totals and taxes live in :class:`OrderDetail`."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: PsInt
    """The id_order_detail of this line."""
    product_id: PsInt = 0
    product_attribute_id: PsInt = 0
    """The combination id; 0 when the product has none."""
    product_quantity: PsDecimal = Decimal(0)
    product_name: PsText = ""
    product_reference: PsText = ""
    product_ean13: PsText = ""
    product_isbn: PsText = ""
    product_upc: PsText = ""
    product_price: PsDecimal = Decimal(0)
    id_customization: PsInt = 0
    unit_price_tax_incl: PsDecimal = Decimal(0)
    unit_price_tax_excl: PsDecimal = Decimal(0)


class OrderAssociations(BaseModel):
    """Associations of an order; an absent association means an empty one."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    order_rows: list[OrderRow] = Field(default_factory=list)


class Order(PsModel):
    """An order (``orders``). ``current_state`` is an order_states id: resolve it, never compare ids."""

    RESOURCE: ClassVar[str] = "orders"
    NODE: ClassVar[str] = "order"

    reference: PsText = ""
    id_address_delivery: PsInt = 0
    id_address_invoice: PsInt = 0
    id_cart: PsInt = 0
    id_currency: PsInt = 0
    id_lang: PsInt = 0
    id_customer: PsInt = 0
    id_carrier: PsInt = 0
    current_state: PsInt = 0
    module: PsText = ""
    payment: PsText = ""
    invoice_number: PsInt = 0
    invoice_date: PsDateTime = None
    delivery_number: PsInt = 0
    delivery_date: PsDateTime = None
    valid: PsBool = False
    date_add: PsDateTime = None
    date_upd: PsDateTime = None
    shipping_number: PsText = ""
    note: PsText = ""
    id_shop_group: PsInt = 0
    id_shop: PsInt = 0
    secure_key: PsText = ""
    recyclable: PsBool = False
    gift: PsBool = False
    gift_message: PsText = ""
    mobile_theme: PsBool = False
    total_discounts: PsDecimal = Decimal(0)
    total_discounts_tax_incl: PsDecimal = Decimal(0)
    total_discounts_tax_excl: PsDecimal = Decimal(0)
    total_paid: PsDecimal = Decimal(0)
    total_paid_tax_incl: PsDecimal = Decimal(0)
    total_paid_tax_excl: PsDecimal = Decimal(0)
    total_paid_real: PsDecimal = Decimal(0)
    total_products: PsDecimal = Decimal(0)
    """Products total, tax excluded."""
    total_products_wt: PsDecimal = Decimal(0)
    """Products total, tax included."""
    total_shipping: PsDecimal = Decimal(0)
    total_shipping_tax_incl: PsDecimal = Decimal(0)
    total_shipping_tax_excl: PsDecimal = Decimal(0)
    carrier_tax_rate: PsDecimal = Decimal(0)
    total_wrapping: PsDecimal = Decimal(0)
    total_wrapping_tax_incl: PsDecimal = Decimal(0)
    total_wrapping_tax_excl: PsDecimal = Decimal(0)
    round_mode: PsInt = 0
    round_type: PsInt = 0
    conversion_rate: PsDecimal = Decimal(1)
    associations: OrderAssociations = Field(default_factory=OrderAssociations)

    @property
    def rows(self) -> list[OrderRow]:
        """The order lines (``associations.order_rows``)."""
        return self.associations.order_rows


class TaxAssociations(BaseModel):
    """``taxes`` association of an order detail."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    taxes: list[IdRef] = Field(default_factory=list)


class OrderDetail(PsModel):
    """One order line in full detail (``order_details``): totals, taxes, refunds."""

    RESOURCE: ClassVar[str] = "order_details"
    NODE: ClassVar[str] = "order_detail"

    id_order: PsInt = 0
    product_id: PsInt = 0
    product_attribute_id: PsInt = 0
    id_order_invoice: PsInt = 0
    id_warehouse: PsInt = 0
    id_shop: PsInt = 0
    id_customization: PsInt = 0
    product_name: PsText = ""
    product_quantity: PsDecimal = Decimal(0)
    product_quantity_in_stock: PsDecimal = Decimal(0)
    product_quantity_return: PsDecimal = Decimal(0)
    product_quantity_refunded: PsDecimal = Decimal(0)
    product_quantity_reinjected: PsDecimal = Decimal(0)
    product_price: PsDecimal = Decimal(0)
    reduction_percent: PsDecimal = Decimal(0)
    reduction_amount: PsDecimal = Decimal(0)
    reduction_amount_tax_incl: PsDecimal = Decimal(0)
    reduction_amount_tax_excl: PsDecimal = Decimal(0)
    group_reduction: PsDecimal = Decimal(0)
    product_quantity_discount: PsDecimal = Decimal(0)
    product_ean13: PsText = ""
    product_isbn: PsText = ""
    product_upc: PsText = ""
    product_mpn: PsText = ""
    product_reference: PsText = ""
    product_supplier_reference: PsText = ""
    product_weight: PsDecimal = Decimal(0)
    tax_computation_method: PsInt = 0
    id_tax_rules_group: PsInt = 0
    ecotax: PsDecimal = Decimal(0)
    ecotax_tax_rate: PsDecimal = Decimal(0)
    download_deadline: PsDateTime = None
    unit_price_tax_incl: PsDecimal = Decimal(0)
    unit_price_tax_excl: PsDecimal = Decimal(0)
    total_price_tax_incl: PsDecimal = Decimal(0)
    total_price_tax_excl: PsDecimal = Decimal(0)
    total_shipping_price_tax_incl: PsDecimal = Decimal(0)
    total_shipping_price_tax_excl: PsDecimal = Decimal(0)
    purchase_supplier_price: PsDecimal = Decimal(0)
    original_product_price: PsDecimal = Decimal(0)
    original_wholesale_price: PsDecimal = Decimal(0)
    total_refunded_tax_incl: PsDecimal = Decimal(0)
    total_refunded_tax_excl: PsDecimal = Decimal(0)
    associations: TaxAssociations = Field(default_factory=TaxAssociations)


class OrderHistory(PsModel):
    """One order status change (``order_histories``); append-only."""

    RESOURCE: ClassVar[str] = "order_histories"
    NODE: ClassVar[str] = "order_history"

    id_order: PsInt = 0
    id_order_state: PsInt = 0
    id_employee: PsInt = 0
    date_add: PsDateTime = None


class OrderCarrier(PsModel):
    """The carrier row of an order, holding the tracking number (``order_carriers``; no date_upd)."""

    RESOURCE: ClassVar[str] = "order_carriers"
    NODE: ClassVar[str] = "order_carrier"

    id_order: PsInt = 0
    id_carrier: PsInt = 0
    id_order_invoice: PsInt = 0
    weight: PsDecimal = Decimal(0)
    shipping_cost_tax_excl: PsDecimal = Decimal(0)
    shipping_cost_tax_incl: PsDecimal = Decimal(0)
    tracking_number: PsText = ""
    date_add: PsDateTime = None


class OrderPayment(PsModel):
    """A payment (``order_payments``); linked to orders by ``order_reference``, not by id."""

    RESOURCE: ClassVar[str] = "order_payments"
    NODE: ClassVar[str] = "order_payment"

    order_reference: PsText = ""
    id_currency: PsInt = 0
    amount: PsDecimal = Decimal(0)
    payment_method: PsText = ""
    conversion_rate: PsDecimal = Decimal(1)
    transaction_id: PsText = ""
    card_number: PsText = ""
    card_brand: PsText = ""
    card_expiration: PsText = ""
    card_holder: PsText = ""
    date_add: PsDateTime = None


class OrderInvoice(PsModel):
    """An invoice of an order (``order_invoices``)."""

    RESOURCE: ClassVar[str] = "order_invoices"
    NODE: ClassVar[str] = "order_invoice"

    id_order: PsInt = 0
    number: PsInt = 0
    delivery_number: PsInt = 0
    delivery_date: PsDateTime = None
    total_discount_tax_excl: PsDecimal = Decimal(0)
    total_discount_tax_incl: PsDecimal = Decimal(0)
    total_paid_tax_excl: PsDecimal = Decimal(0)
    total_paid_tax_incl: PsDecimal = Decimal(0)
    total_products: PsDecimal = Decimal(0)
    total_products_wt: PsDecimal = Decimal(0)
    total_shipping_tax_excl: PsDecimal = Decimal(0)
    total_shipping_tax_incl: PsDecimal = Decimal(0)
    shipping_tax_computation_method: PsInt = 0
    total_wrapping_tax_excl: PsDecimal = Decimal(0)
    total_wrapping_tax_incl: PsDecimal = Decimal(0)
    shop_address: PsText = ""
    note: PsText = ""
    date_add: PsDateTime = None


class OrderState(PsModel):
    """An order status definition (``order_states``); its flags say what it means."""

    RESOURCE: ClassVar[str] = "order_states"
    NODE: ClassVar[str] = "order_state"

    unremovable: PsBool = False
    delivery: PsBool = False
    hidden: PsBool = False
    send_email: PsBool = False
    module_name: PsText = ""
    invoice: PsBool = False
    color: PsText = ""
    logable: PsBool = False
    shipped: PsBool = False
    paid: PsBool = False
    pdf_delivery: PsBool = False
    pdf_invoice: PsBool = False
    deleted: PsBool = False
    name: I18nText = Field(default_factory=dict)
    template: I18nText = Field(default_factory=dict)


# --- customers and addresses ----------------------------------------------------------------------------


class CustomerAssociations(BaseModel):
    """Associations of a customer."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    groups: list[IdRef] = Field(default_factory=list)


class Customer(PsModel):
    """A customer (``customers``); guests are customers with ``is_guest`` (their email may repeat).

    ``passwd`` is deliberately absent: it is a hash nobody downstream should carry.
    """

    RESOURCE: ClassVar[str] = "customers"
    NODE: ClassVar[str] = "customer"

    email: PsText = ""
    firstname: PsText = ""
    lastname: PsText = ""
    id_default_group: PsInt = 0
    id_lang: PsInt = 0
    id_gender: PsInt = 0
    id_shop: PsInt = 0
    id_shop_group: PsInt = 0
    id_risk: PsInt = 0
    company: PsText = ""
    siret: PsText = ""
    ape: PsText = ""
    website: PsText = ""
    note: PsText = ""
    birthday: PsDate = None
    newsletter: PsBool = False
    newsletter_date_add: PsDateTime = None
    ip_registration_newsletter: PsText = ""
    optin: PsBool = False
    active: PsBool = False
    is_guest: PsBool = False
    deleted: PsBool = False
    show_public_prices: PsBool = False
    outstanding_allow_amount: PsDecimal = Decimal(0)
    max_payment_days: PsInt = 0
    secure_key: PsText = ""
    last_passwd_gen: PsDateTime = None
    reset_password_token: PsText = ""
    reset_password_validity: PsDateTime = None
    date_add: PsDateTime = None
    date_upd: PsDateTime = None
    associations: CustomerAssociations = Field(default_factory=CustomerAssociations)


class Address(PsModel):
    """An address (``addresses``); orders point at it by id, even after it was soft-deleted."""

    RESOURCE: ClassVar[str] = "addresses"
    NODE: ClassVar[str] = "address"

    id_customer: PsInt = 0
    id_manufacturer: PsInt = 0
    id_supplier: PsInt = 0
    id_warehouse: PsInt = 0
    id_country: PsInt = 0
    id_state: PsInt = 0
    alias: PsText = ""
    company: PsText = ""
    lastname: PsText = ""
    firstname: PsText = ""
    vat_number: PsText = ""
    address1: PsText = ""
    address2: PsText = ""
    postcode: PsText = ""
    city: PsText = ""
    other: PsText = ""
    phone: PsText = ""
    phone_mobile: PsText = ""
    dni: PsText = ""
    deleted: PsBool = False
    date_add: PsDateTime = None
    date_upd: PsDateTime = None


class Country(PsModel):
    """A country (``countries``)."""

    RESOURCE: ClassVar[str] = "countries"
    NODE: ClassVar[str] = "country"

    id_zone: PsInt = 0
    id_currency: PsInt = 0
    call_prefix: PsText = ""
    iso_code: PsText = ""
    active: PsBool = False
    contains_states: PsBool = False
    need_identification_number: PsBool = False
    need_zip_code: PsBool = False
    zip_code_format: PsText = ""
    display_tax_label: PsBool = False
    name: I18nText = Field(default_factory=dict)


class State(PsModel):
    """A state / province (``states``); ``name`` is not translated."""

    RESOURCE: ClassVar[str] = "states"
    NODE: ClassVar[str] = "state"

    id_zone: PsInt = 0
    id_country: PsInt = 0
    iso_code: PsText = ""
    name: PsText = ""
    active: PsBool = False


class Currency(PsModel):
    """A currency (``currencies``); ``conversion_rate`` is against the shop's default currency."""

    RESOURCE: ClassVar[str] = "currencies"
    NODE: ClassVar[str] = "currency"

    iso_code: PsText = ""
    numeric_iso_code: PsText = ""
    precision: PsInt = 0
    conversion_rate: PsDecimal = Decimal(1)
    deleted: PsBool = False
    active: PsBool = False
    unofficial: PsBool = False
    modified: PsBool = False
    pattern: PsText = ""
    name: I18nText = Field(default_factory=dict)
    names: I18nText = Field(default_factory=dict)
    symbol: I18nText = Field(default_factory=dict)


class Carrier(PsModel):
    """A carrier (``carriers``); map carriers by ``id_reference``, which survives back-office edits."""

    RESOURCE: ClassVar[str] = "carriers"
    NODE: ClassVar[str] = "carrier"

    id_reference: PsInt = 0
    name: PsText = ""
    active: PsBool = False
    deleted: PsBool = False
    is_module: PsBool = False
    is_free: PsBool = False
    url: PsText = ""
    external_module_name: PsText = ""
    shipping_method: PsInt = 0
    delay: I18nText = Field(default_factory=dict)


# --- catalogue and stock ------------------------------------------------------------------------------


class ProductFeatureRef(BaseModel):
    """A ``product_features`` association entry."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    id: PsInt
    id_feature_value: PsInt = 0


class StockRef(BaseModel):
    """A ``stock_availables`` association entry of a product."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    id: PsInt
    id_product_attribute: PsInt = 0


class ProductAssociations(BaseModel):
    """Associations of a product."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    categories: list[IdRef] = Field(default_factory=list)
    images: list[IdRef] = Field(default_factory=list)
    combinations: list[IdRef] = Field(default_factory=list)
    product_option_values: list[IdRef] = Field(default_factory=list)
    product_features: list[ProductFeatureRef] = Field(default_factory=list)
    stock_availables: list[StockRef] = Field(default_factory=list)


class Product(PsModel):
    """A product (``products``); ``quantity`` is a read-only sum, stock lives in stock_availables."""

    RESOURCE: ClassVar[str] = "products"
    NODE: ClassVar[str] = "product"

    reference: PsText = ""
    supplier_reference: PsText = ""
    ean13: PsText = ""
    isbn: PsText = ""
    upc: PsText = ""
    mpn: PsText = ""
    id_manufacturer: PsInt = 0
    id_supplier: PsInt = 0
    id_category_default: PsInt = 0
    id_tax_rules_group: PsInt = 0
    id_shop_default: PsInt = 0
    id_default_combination: PsInt = 0
    cache_default_attribute: PsInt = 0
    manufacturer_name: PsText = ""
    type: PsText = ""
    quantity: PsDecimal = Decimal(0)
    price: PsDecimal = Decimal(0)
    """Base price, tax excluded."""
    wholesale_price: PsDecimal = Decimal(0)
    ecotax: PsDecimal = Decimal(0)
    weight: PsDecimal = Decimal(0)
    width: PsDecimal = Decimal(0)
    height: PsDecimal = Decimal(0)
    depth: PsDecimal = Decimal(0)
    minimal_quantity: PsInt = 0
    low_stock_threshold: PsOptionalInt = None
    low_stock_alert: PsBool = False
    active: PsBool = False
    available_for_order: PsBool = False
    available_date: PsDate = None
    condition: PsText = ""
    visibility: PsText = ""
    is_virtual: PsBool = False
    date_add: PsDateTime = None
    date_upd: PsDateTime = None
    name: I18nText = Field(default_factory=dict)
    description: I18nText = Field(default_factory=dict)
    description_short: I18nText = Field(default_factory=dict)
    link_rewrite: I18nText = Field(default_factory=dict)
    associations: ProductAssociations = Field(default_factory=ProductAssociations)


class CombinationAssociations(BaseModel):
    """Associations of a combination."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    product_option_values: list[IdRef] = Field(default_factory=list)
    images: list[IdRef] = Field(default_factory=list)


class Combination(PsModel):
    """A product variant (``combinations``); its id is the ``id_product_attribute`` used elsewhere."""

    RESOURCE: ClassVar[str] = "combinations"
    NODE: ClassVar[str] = "combination"

    id_product: PsInt = 0
    reference: PsText = ""
    supplier_reference: PsText = ""
    location: PsText = ""
    ean13: PsText = ""
    isbn: PsText = ""
    upc: PsText = ""
    mpn: PsText = ""
    quantity: PsDecimal = Decimal(0)
    """Deprecated mirror of stock (absent on 9.x); read stock_availables instead."""
    wholesale_price: PsDecimal = Decimal(0)
    price: PsDecimal = Decimal(0)
    """Impact on the product price (may be negative)."""
    ecotax: PsDecimal = Decimal(0)
    weight: PsDecimal = Decimal(0)
    unit_price_impact: PsDecimal = Decimal(0)
    minimal_quantity: PsInt = 0
    low_stock_threshold: PsOptionalInt = None
    low_stock_alert: PsBool = False
    default_on: PsBool = False
    available_date: PsDate = None
    associations: CombinationAssociations = Field(default_factory=CombinationAssociations)


class StockAvailable(PsModel):
    """A stock row (``stock_availables``): one per product, combination and shop; no dates at all."""

    RESOURCE: ClassVar[str] = "stock_availables"
    NODE: ClassVar[str] = "stock_available"

    id_product: PsInt = 0
    id_product_attribute: PsInt = 0
    """0 = the product-level row (the derived sum when the product has combinations)."""
    id_shop: PsInt = 0
    id_shop_group: PsInt = 0
    quantity: PsDecimal = Decimal(0)
    depends_on_stock: PsBool = False
    out_of_stock: PsInt = 0
    location: PsText = ""


class Configuration(PsModel):
    """A configuration value (``configurations``), e.g. PS_TIMEZONE or PS_OS_SHIPPING."""

    RESOURCE: ClassVar[str] = "configurations"
    NODE: ClassVar[str] = "configuration"

    name: PsText = ""
    value: PsText = ""
    id_shop: PsOptionalInt = None
    id_shop_group: PsOptionalInt = None
    date_add: PsDateTime = None
    date_upd: PsDateTime = None


ALL_MODELS: tuple[type[PsModel], ...] = (
    Order,
    OrderDetail,
    OrderHistory,
    OrderCarrier,
    OrderPayment,
    OrderInvoice,
    OrderState,
    Customer,
    Address,
    Country,
    State,
    Currency,
    Carrier,
    Product,
    Combination,
    StockAvailable,
    Configuration,
)
"""Every source model, for lookups by resource name."""

MODEL_BY_RESOURCE: dict[str, type[PsModel]] = {model.RESOURCE: model for model in ALL_MODELS}
"""Resource name → model."""


def i18n_fields(model: type[BaseModel]) -> frozenset[str]:
    """Names of the per-language fields of ``model`` (those whose plain-string form needs a language)."""
    return frozenset(
        name
        for name, info in model.model_fields.items()
        if any(isinstance(m, WrapValidator) and m.func is _i18n for m in info.metadata)
    )
