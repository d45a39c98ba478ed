"""Resource definitions: fields, required / read-only / getter / i18n flags, foreign keys, associations.

Written from reference §2 and the fixture records; field order follows the fixtures (which is the
order PrestaShop renders). Version differences are expressed with ``since`` / ``until`` on a field.

Flags map to PrestaShop's ``$definition`` / ``$webserviceParameters``:
``required`` (R: 400 code 41 when absent from a POST/PUT body), ``read_only`` (``setter => false``:
400 code 93 when present in any write body), ``getter`` (computed: ``notFilterable="true"`` in XML,
400 code 34 when filtered on), ``i18n`` (one value per language), ``fk`` (rendered with an
``xlink:href`` to that resource).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from sandbox.prestashop.config import Version

Kind = Literal["int", "uint", "float", "bool", "str", "date", "day", "html", "email"]

ZERO_DATE = "0000-00-00 00:00:00"
ZERO_DAY = "0000-00-00"


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a resource (see module docstring for the flags)."""

    name: str
    kind: Kind = "str"
    required: bool = False
    read_only: bool = False
    read_only_since: Version | None = None
    getter: bool = False
    i18n: bool = False
    fk: str | None = None
    size: int | None = None
    since: Version | None = None
    until: Version | None = None
    nullable: bool = False

    def exists_in(self, version: Version) -> bool:
        """Whether this field is part of the resource in that PrestaShop version."""
        if self.since is not None and version < self.since:
            return False
        return not (self.until is not None and version >= self.until)

    def is_read_only(self, version: Version) -> bool:
        """``setter => false`` in that version (400 code 93 when sent)."""
        if self.read_only:
            return True
        return self.read_only_since is not None and version >= self.read_only_since

    @property
    def default(self) -> str | None:
        """What a PUT stores for an omitted optional field (NULL, then the column default)."""
        if self.nullable:
            return None
        if self.kind in ("int", "uint", "bool"):
            return "0"
        if self.kind == "float":
            return "0.000000"
        if self.kind == "date":
            return ZERO_DATE
        if self.kind == "day":
            return ZERO_DAY
        return ""

    @property
    def validate_format(self) -> str:
        """PrestaShop's ``Validate::`` method name, shown by ``schema=synopsis``."""
        return {
            "int": "isInt",
            "uint": "isUnsignedId",
            "float": "isFloat",
            "bool": "isBool",
            "date": "isDate",
            "day": "isDateFormat",
            "email": "isEmail",
            "html": "isCleanHtml",
        }.get(self.kind, "isGenericName")


@dataclass(frozen=True, slots=True)
class Association:
    """One ``<associations>`` child: node names, the linked API (``None`` = virtual entity), fields.

    ``writable`` is whether the class has a ``setWs<Name>`` setter; a read-only association in a
    write body is silently ignored (reference §1.10).
    """

    name: str
    node_type: str
    api: str | None
    fields: tuple[str, ...] = ("id",)
    writable: bool = False
    field_fks: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Resource:
    """One webservice resource: URL name, XML node names, PHP class name, fields, associations."""

    name: str
    node: str
    class_name: str
    fields: tuple[Field, ...]
    associations: tuple[Association, ...] = ()
    forbidden_methods: frozenset[str] = frozenset()
    description: str = ""

    def fields_for(self, version: Version) -> tuple[Field, ...]:
        """The fields that exist in that version, in rendering order (``id`` first)."""
        return tuple(f for f in self.fields if f.exists_in(version))

    def field(self, name: str) -> Field | None:
        """The field named ``name`` or ``None``."""
        for f in self.fields:
            if f.name == name:
                return f
        return None

    def association(self, name: str) -> Association | None:
        """The association named ``name`` or ``None``."""
        for a in self.associations:
            if a.name == name:
                return a
        return None

    @property
    def has_dates(self) -> bool:
        """Whether the table has ``date_upd`` (what ``date=1`` filters need)."""
        return self.field("date_upd") is not None


def _f(name: str, kind: Kind = "str", **kw: object) -> Field:
    return Field(name, kind, **kw)  # type: ignore[arg-type]


ID = _f("id", "uint")
DATE_ADD = _f("date_add", "date")
DATE_UPD = _f("date_upd", "date")
V8 = (8, 0)
V81 = (8, 1)
V9 = (9, 0)

ORDER_ROW_FIELDS = (
    "id",
    "product_id",
    "product_attribute_id",
    "product_quantity",
    "product_name",
    "product_reference",
    "product_ean13",
    "product_isbn",
    "product_upc",
    "product_price",
    "id_customization",
    "unit_price_tax_incl",
    "unit_price_tax_excl",
)

ORDERS = Resource(
    "orders",
    "order",
    "Order",
    (
        ID,
        _f("id_address_delivery", "uint", required=True, fk="addresses"),
        _f("id_address_invoice", "uint", required=True, fk="addresses"),
        _f("id_cart", "uint", required=True, fk="carts"),
        _f("id_currency", "uint", required=True, fk="currencies"),
        _f("id_lang", "uint", required=True, fk="languages"),
        _f("id_customer", "uint", required=True, fk="customers"),
        _f("id_carrier", "uint", required=True, fk="carriers"),
        _f("current_state", "uint", fk="order_states"),
        _f("module", required=True),
        _f("invoice_number", "uint"),
        _f("invoice_date", "date"),
        _f("delivery_number", "uint"),
        _f("delivery_date", "date"),
        _f("valid", "bool"),
        DATE_ADD,
        DATE_UPD,
        _f("shipping_number", getter=True),
        _f("note", "html", since=V8),
        _f("id_shop_group", "uint", fk="shop_groups"),
        _f("id_shop", "uint", fk="shops"),
        _f("secure_key", size=32),
        _f("payment", required=True),
        _f("recyclable", "bool"),
        _f("gift", "bool"),
        _f("gift_message", "html"),
        _f("mobile_theme", "bool"),
        _f("total_discounts", "float"),
        _f("total_discounts_tax_incl", "float"),
        _f("total_discounts_tax_excl", "float"),
        _f("total_paid", "float", required=True),
        _f("total_paid_tax_incl", "float"),
        _f("total_paid_tax_excl", "float"),
        _f("total_paid_real", "float", required=True),
        _f("total_products", "float", required=True),
        _f("total_products_wt", "float", required=True),
        _f("total_shipping", "float"),
        _f("total_shipping_tax_incl", "float"),
        _f("total_shipping_tax_excl", "float"),
        _f("carrier_tax_rate", "float"),
        _f("total_wrapping", "float"),
        _f("total_wrapping_tax_incl", "float"),
        _f("total_wrapping_tax_excl", "float"),
        _f("round_mode", "uint"),
        _f("round_type", "uint"),
        _f("conversion_rate", "float", required=True),
        _f("reference", size=9),
    ),
    (
        Association(
            "order_rows",
            "order_row",
            None,
            ORDER_ROW_FIELDS,
            field_fks={"product_id": "products", "product_attribute_id": "combinations"},
        ),
    ),
    description="The Customers orders",
)

CUSTOMERS = Resource(
    "customers",
    "customer",
    "Customer",
    (
        ID,
        _f("id_default_group", "uint", fk="groups"),
        _f("id_lang", "uint", fk="languages"),
        _f("newsletter_date_add", "date"),
        _f("ip_registration_newsletter"),
        _f("last_passwd_gen", "date", read_only_since=V81),
        _f("secure_key", read_only_since=V81, size=32),
        _f("deleted", "bool"),
        _f("passwd", required=True, size=255),
        _f("lastname", required=True, size=255),
        _f("firstname", required=True, size=255),
        _f("email", "email", required=True, size=255),
        _f("id_gender", "uint"),
        _f("birthday", "day"),
        _f("newsletter", "bool"),
        _f("optin", "bool"),
        _f("website"),
        _f("company"),
        _f("siret", size=14),
        _f("ape"),
        _f("outstanding_allow_amount", "float"),
        _f("show_public_prices", "bool"),
        _f("id_risk", "uint"),
        _f("max_payment_days", "uint"),
        _f("active", "bool"),
        _f("note", "html"),
        _f("is_guest", "bool"),
        _f("id_shop", "uint", fk="shops"),
        _f("id_shop_group", "uint", fk="shop_groups"),
        DATE_ADD,
        DATE_UPD,
        _f("reset_password_token"),
        _f("reset_password_validity", "date"),
    ),
    (Association("groups", "group", "groups", writable=True),),
    description="The e-shop's customers",
)

ADDRESSES = Resource(
    "addresses",
    "address",
    "Address",
    (
        ID,
        _f("id_customer", "uint", fk="customers"),
        _f("id_manufacturer", "uint", fk="manufacturers"),
        _f("id_supplier", "uint", fk="suppliers"),
        _f("id_warehouse", "uint", fk="warehouses"),
        _f("id_country", "uint", required=True, fk="countries"),
        _f("id_state", "uint", fk="states"),
        _f("alias", required=True, size=32),
        _f("company", size=255),
        _f("lastname", required=True, size=255),
        _f("firstname", required=True, size=255),
        _f("vat_number", size=32),
        _f("address1", required=True, size=128),
        _f("address2", size=128),
        _f("postcode", size=12),
        _f("city", required=True, size=64),
        _f("other"),
        _f("phone", size=32),
        _f("phone_mobile", size=32),
        _f("dni", size=16),
        _f("deleted", "bool"),
        DATE_ADD,
        DATE_UPD,
    ),
    description="The Customer, Brand and Customer addresses",
)

COUNTRIES = Resource(
    "countries",
    "country",
    "Country",
    (
        ID,
        _f("id_zone", "uint", required=True, fk="zones"),
        _f("id_currency", "uint", fk="currencies"),
        _f("call_prefix", "int"),
        _f("iso_code", required=True, size=3),
        _f("active", "bool"),
        _f("contains_states", "bool", required=True),
        _f("need_identification_number", "bool", required=True),
        _f("need_zip_code", "bool"),
        _f("zip_code_format"),
        _f("display_tax_label", "bool", required=True),
        _f("name", required=True, i18n=True, size=64),
    ),
    description="The countries",
)

STATES = Resource(
    "states",
    "state",
    "State",
    (
        ID,
        _f("id_zone", "uint", required=True, fk="zones"),
        _f("id_country", "uint", required=True, fk="countries"),
        _f("iso_code", required=True, size=7),
        _f("name", required=True, size=80),
        _f("active", "bool"),
    ),
    description="The available states of countries",
)

CURRENCIES = Resource(
    "currencies",
    "currency",
    "Currency",
    (
        ID,
        _f("names", getter=True, i18n=True),
        _f("name", getter=True),
        _f("symbol", getter=True, i18n=True),
        _f("iso_code", required=True, size=3),
        _f("numeric_iso_code", size=3),
        _f("precision", "uint"),
        _f("conversion_rate", "float", required=True),
        _f("deleted", "bool"),
        _f("active", "bool"),
        _f("unofficial", "bool"),
        _f("modified", "bool"),
        _f("pattern", i18n=True),
    ),
    description="The currencies",
)

PRODUCT_I18N = (
    "delivery_in_stock",
    "delivery_out_stock",
)

PRODUCTS = Resource(
    "products",
    "product",
    "Product",
    (
        ID,
        _f("id_manufacturer", "uint", fk="manufacturers"),
        _f("id_supplier", "uint", fk="suppliers"),
        _f("id_category_default", "uint", fk="categories"),
        _f("new", nullable=True),
        _f("cache_default_attribute", "uint"),
        _f("id_default_image", "uint", getter=True, fk="images"),
        _f("id_default_combination", "uint", getter=True, fk="combinations"),
        _f("id_tax_rules_group", "uint", fk="tax_rule_groups"),
        _f("position_in_category", "uint", getter=True),
        _f("manufacturer_name", getter=True, read_only=True),
        _f("quantity", "int", getter=True, read_only=True),
        _f("type", getter=True),
        _f("id_shop_default", "uint"),
        _f("reference", size=64),
        _f("supplier_reference", size=64),
        _f("location", size=255),
        _f("width", "float"),
        _f("height", "float"),
        _f("depth", "float"),
        _f("weight", "float"),
        _f("quantity_discount", "bool"),
        _f("ean13", size=13),
        _f("isbn", size=32),
        _f("upc", size=12),
        _f("mpn", size=40),
        _f("cache_is_pack", "bool"),
        _f("cache_has_attachments", "bool"),
        _f("is_virtual", "bool"),
        _f("state", "uint"),
        _f("additional_delivery_times", "uint"),
        _f("delivery_in_stock", i18n=True),
        _f("delivery_out_stock", i18n=True),
        _f("on_sale", "bool"),
        _f("online_only", "bool"),
        _f("ecotax", "float"),
        _f("minimal_quantity", "uint"),
        _f("low_stock_threshold", "int", nullable=True),
        _f("low_stock_alert", "bool"),
        _f("price", "float", required=True),
        _f("wholesale_price", "float"),
        _f("unity"),
        _f("unit_price_ratio", "float"),
        _f("additional_shipping_cost", "float"),
        _f("customizable", "uint"),
        _f("text_fields", "uint"),
        _f("uploadable_files", "uint"),
        _f("active", "bool"),
        _f("redirect_type"),
        _f("id_type_redirected", "uint"),
        _f("available_for_order", "bool"),
        _f("available_date", "day"),
        _f("show_condition", "bool"),
        _f("condition"),
        _f("show_price", "bool"),
        _f("indexed", "bool"),
        _f("visibility"),
        _f("advanced_stock_management", "bool"),
        DATE_ADD,
        DATE_UPD,
        _f("pack_stock_type", "uint"),
        _f("meta_description", i18n=True),
        _f("meta_keywords", i18n=True, until=V9),
        _f("meta_title", i18n=True),
        _f("link_rewrite", i18n=True),
        _f("name", i18n=True, size=128),
        _f("description", "html", i18n=True),
        _f("description_short", "html", i18n=True),
        _f("available_now", i18n=True),
        _f("available_later", i18n=True),
    ),
    (
        Association("categories", "category", "categories", writable=True),
        Association("images", "image", "images"),
        Association("combinations", "combination", "combinations", writable=True),
        Association("product_option_values", "product_option_value", "product_option_values", writable=True),
        Association(
            "product_features", "product_feature", "product_features", ("id", "id_feature_value"), True
        ),
        Association("tags", "tag", "tags", writable=True),
        Association(
            "stock_availables",
            "stock_available",
            "stock_availables",
            ("id", "id_product_attribute"),
            field_fks={"id_product_attribute": "combinations"},
        ),
        Association("attachments", "attachment", "attachments", writable=True),
        Association("accessories", "product", "products", writable=True),
        Association(
            "product_bundle", "product", "products", ("id", "id_product_attribute", "quantity"), True
        ),
    ),
    description="The products",
)

COMBINATIONS = Resource(
    "combinations",
    "combination",
    "Combination",
    (
        ID,
        _f("id_product", "uint", required=True, fk="products"),
        _f("location", size=255),
        _f("ean13", size=13),
        _f("isbn", size=32),
        _f("upc", size=12),
        _f("mpn", size=40),
        _f("quantity", "int", until=V9),
        _f("reference", size=64),
        _f("supplier_reference", size=64),
        _f("wholesale_price", "float"),
        _f("price", "float"),
        _f("ecotax", "float"),
        _f("weight", "float"),
        _f("unit_price_impact", "float"),
        _f("minimal_quantity", "uint", required=True),
        _f("low_stock_threshold", "int", nullable=True),
        _f("low_stock_alert", "bool"),
        _f("default_on", "bool", nullable=True),
        _f("available_date", "day"),
    ),
    (
        Association("product_option_values", "product_option_value", "product_option_values", writable=True),
        Association("images", "image", "images", writable=True),
    ),
    description="The product combinations",
)

STOCK_AVAILABLES = Resource(
    "stock_availables",
    "stock_available",
    "StockAvailable",
    (
        ID,
        _f("id_product", "uint", required=True, fk="products"),
        _f("id_product_attribute", "uint", required=True, fk="combinations"),
        _f("id_shop", "uint", fk="shops"),
        _f("id_shop_group", "uint", fk="shop_groups"),
        _f("quantity", "int", required=True),
        _f("depends_on_stock", "bool", required=True),
        _f("out_of_stock", "uint", required=True),
        _f("location", size=255),
    ),
    forbidden_methods=frozenset({"POST", "DELETE"}),
    description="Available quantities",
)

ORDER_STATES = Resource(
    "order_states",
    "order_state",
    "OrderState",
    (
        ID,
        _f("unremovable", "bool"),
        _f("delivery", "bool"),
        _f("hidden", "bool"),
        _f("send_email", "bool"),
        _f("module_name"),
        _f("invoice", "bool"),
        _f("color"),
        _f("logable", "bool"),
        _f("shipped", "bool"),
        _f("paid", "bool"),
        _f("pdf_delivery", "bool"),
        _f("pdf_invoice", "bool"),
        _f("deleted", "bool"),
        _f("name", required=True, i18n=True, size=64),
        _f("template", i18n=True),
    ),
    description="The Order statuses",
)

ORDER_HISTORIES = Resource(
    "order_histories",
    "order_history",
    "OrderHistory",
    (
        ID,
        _f("id_employee", "uint", fk="employees"),
        _f("id_order_state", "uint", required=True, fk="order_states"),
        _f("id_order", "uint", required=True, fk="orders"),
        DATE_ADD,
    ),
    description="The Order histories",
)

ORDER_CARRIERS = Resource(
    "order_carriers",
    "order_carrier",
    "OrderCarrier",
    (
        ID,
        _f("id_order", "uint", required=True, fk="orders"),
        _f("id_carrier", "uint", required=True, fk="carriers"),
        _f("id_order_invoice", "uint", fk="order_invoices"),
        _f("weight", "float"),
        _f("shipping_cost_tax_excl", "float"),
        _f("shipping_cost_tax_incl", "float"),
        _f("tracking_number", size=64),
        DATE_ADD,
    ),
    description="The Order carriers",
)

ORDER_PAYMENTS = Resource(
    "order_payments",
    "order_payment",
    "OrderPayment",
    (
        ID,
        _f("order_reference", size=9),
        _f("id_currency", "uint", required=True, fk="currencies"),
        _f("amount", "float", required=True),
        _f("payment_method"),
        _f("conversion_rate", "float"),
        _f("transaction_id"),
        _f("card_number"),
        _f("card_brand"),
        _f("card_expiration"),
        _f("card_holder"),
        DATE_ADD,
        _f("id_employee", "uint", since=V9, fk="employees"),
    ),
    description="The Order payments",
)

ORDER_INVOICES = Resource(
    "order_invoices",
    "order_invoice",
    "OrderInvoice",
    (
        ID,
        _f("id_order", "uint", required=True, fk="orders"),
        _f("number", "uint", required=True),
        _f("delivery_number", "uint"),
        _f("delivery_date", "date"),
        _f("total_discount_tax_excl", "float"),
        _f("total_discount_tax_incl", "float"),
        _f("total_paid_tax_excl", "float"),
        _f("total_paid_tax_incl", "float"),
        _f("total_products", "float"),
        _f("total_products_wt", "float"),
        _f("total_shipping_tax_excl", "float"),
        _f("total_shipping_tax_incl", "float"),
        _f("shipping_tax_computation_method", "uint"),
        _f("total_wrapping_tax_excl", "float"),
        _f("total_wrapping_tax_incl", "float"),
        _f("shop_address", "html"),
        _f("note", "html"),
        DATE_ADD,
    ),
    description="The Order invoices",
)

ORDER_DETAILS = Resource(
    "order_details",
    "order_detail",
    "OrderDetail",
    (
        ID,
        _f("id_order", "uint", required=True, fk="orders"),
        _f("product_id", "uint", fk="products"),
        _f("product_attribute_id", "uint", fk="combinations"),
        _f("product_quantity_reinjected", "uint"),
        _f("group_reduction", "float"),
        _f("discount_quantity_applied", "bool"),
        _f("download_hash"),
        _f("download_deadline", "date"),
        _f("id_order_invoice", "uint", fk="order_invoices"),
        _f("id_warehouse", "uint", required=True, fk="warehouses"),
        _f("id_shop", "uint", required=True, fk="shops"),
        _f("id_customization", "uint", fk="customizations"),
        _f("product_name", required=True),
        _f("product_quantity", "uint", required=True),
        _f("product_quantity_in_stock", "int"),
        _f("product_quantity_return", "uint"),
        _f("product_quantity_refunded", "uint"),
        _f("product_price", "float", required=True),
        _f("reduction_percent", "float"),
        _f("reduction_amount", "float"),
        _f("reduction_amount_tax_incl", "float"),
        _f("reduction_amount_tax_excl", "float"),
        _f("product_quantity_discount", "float"),
        _f("product_ean13"),
        _f("product_isbn"),
        _f("product_upc"),
        _f("product_mpn"),
        _f("product_reference"),
        _f("product_supplier_reference"),
        _f("product_weight", "float"),
        _f("tax_computation_method", "uint"),
        _f("id_tax_rules_group", "uint", fk="tax_rule_groups"),
        _f("ecotax", "float"),
        _f("ecotax_tax_rate", "float"),
        _f("download_nb", "uint"),
        _f("unit_price_tax_incl", "float"),
        _f("unit_price_tax_excl", "float"),
        _f("total_price_tax_incl", "float"),
        _f("total_price_tax_excl", "float"),
        _f("total_shipping_price_tax_excl", "float"),
        _f("total_shipping_price_tax_incl", "float"),
        _f("purchase_supplier_price", "float"),
        _f("original_product_price", "float"),
        _f("original_wholesale_price", "float"),
        _f("total_refunded_tax_excl", "float"),
        _f("total_refunded_tax_incl", "float"),
    ),
    (Association("taxes", "tax", "taxes"),),
    description="Details of an order",
)

CONFIGURATIONS = Resource(
    "configurations",
    "configuration",
    "Configuration",
    (
        ID,
        _f("value"),
        _f("name", required=True, size=254),
        _f("id_shop_group", "uint", fk="shop_groups"),
        _f("id_shop", "uint", fk="shops"),
        DATE_ADD,
        DATE_UPD,
    ),
    description="Shop configuration",
)

CARRIERS = Resource(
    "carriers",
    "carrier",
    "Carrier",
    (
        ID,
        _f("deleted", "bool"),
        _f("is_module", "bool"),
        _f("id_tax_rules_group", "uint", getter=True, fk="tax_rule_groups"),
        _f("id_reference", "uint"),
        _f("name", required=True, size=64),
        _f("active", "bool", required=True),
        _f("is_free", "bool"),
        _f("url"),
        _f("shipping_handling", "bool"),
        _f("shipping_external", "bool"),
        _f("range_behavior", "bool"),
        _f("shipping_method", "uint"),
        _f("max_width", "uint"),
        _f("max_height", "uint"),
        _f("max_depth", "uint"),
        _f("max_weight", "float"),
        _f("grade", "uint"),
        _f("external_module_name"),
        _f("need_range", "bool"),
        _f("position", "uint"),
        _f("delay", required=True, i18n=True, size=512),
    ),
    description="The Carriers",
)

LANGUAGES = Resource(
    "languages",
    "language",
    "Language",
    (
        ID,
        _f("name", required=True, size=32),
        _f("iso_code", required=True, size=2),
        _f("locale", size=5),
        _f("language_code", size=5),
        _f("active", "bool"),
        _f("is_rtl", "bool"),
        _f("date_format_lite", required=True),
        _f("date_format_full", required=True),
    ),
    description="Shop languages",
)

SHOPS = Resource(
    "shops",
    "shop",
    "Shop",
    (
        ID,
        _f("id_shop_group", "uint", required=True, fk="shop_groups"),
        _f("id_category", "uint", required=True, fk="categories"),
        _f("active", "bool"),
        _f("deleted", "bool"),
        _f("name", required=True, size=64),
        _f("theme_name"),
    ),
    description="Shops from multi-shop feature",
)

IMPLEMENTED: dict[str, Resource] = {
    r.name: r
    for r in (
        ADDRESSES,
        CARRIERS,
        COMBINATIONS,
        CONFIGURATIONS,
        COUNTRIES,
        CURRENCIES,
        CUSTOMERS,
        LANGUAGES,
        ORDER_CARRIERS,
        ORDER_DETAILS,
        ORDER_HISTORIES,
        ORDER_INVOICES,
        ORDER_PAYMENTS,
        ORDER_STATES,
        ORDERS,
        PRODUCTS,
        SHOPS,
        STATES,
        STOCK_AVAILABLES,
    )
}

# WebserviceRequest::getResources() of 9.1 (ksorted); order_returns is 9.x only.
ALL_RESOURCE_NAMES: tuple[str, ...] = tuple(
    sorted(
        [
            "addresses",
            "attachments",
            "carriers",
            "carts",
            "cart_rules",
            "categories",
            "combinations",
            "configurations",
            "contacts",
            "content_management_system",
            "countries",
            "currencies",
            "customers",
            "customer_threads",
            "customer_messages",
            "deliveries",
            "employees",
            "groups",
            "guests",
            "images",
            "image_types",
            "languages",
            "manufacturers",
            "messages",
            "order_carriers",
            "order_cart_rules",
            "order_details",
            "order_histories",
            "order_invoices",
            "orders",
            "order_payments",
            "order_returns",
            "order_states",
            "order_slip",
            "price_ranges",
            "product_customization_fields",
            "product_features",
            "product_feature_values",
            "product_options",
            "product_option_values",
            "products",
            "search",
            "shops",
            "shop_groups",
            "shop_urls",
            "specific_prices",
            "specific_price_rules",
            "states",
            "stock_availables",
            "stock_movements",
            "stock_movement_reasons",
            "stocks",
            "stores",
            "suppliers",
            "tags",
            "taxes",
            "tax_rules",
            "tax_rule_groups",
            "translated_configurations",
            "warehouses",
            "weight_ranges",
            "zones",
            "customizations",
        ]
    )
)


def known_resources(version: Version) -> tuple[str, ...]:
    """The resource names that version knows (``order_returns`` arrived in 9.x)."""
    if version < V9:
        return tuple(n for n in ALL_RESOURCE_NAMES if n != "order_returns")
    return ALL_RESOURCE_NAMES
