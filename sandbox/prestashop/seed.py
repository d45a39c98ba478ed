"""A deterministic shop from a seed number: catalogue, customers, orders with their history.

Same seed + same config → same ids, names, SKUs, prices and order contents; dates are anchored on
``config.epoch`` (default: now, shop-local) so pollers see recent data. Built with plain dict rows
and the shop's own checkout (``Shop.place_order``), so seeded orders have exactly the side effects
of live ones. 1,000 products with combinations take well under a second.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from decimal import Decimal

from sandbox.prestashop.resources import ZERO_DATE, ZERO_DAY
from sandbox.prestashop.shop import OrderLine, OrderRequest, Shop, money
from sandbox.prestashop.store import I18n, Store, Value

LANGUAGES = {
    "en": ("English (English)", "en-US", "en-us", "m/d/Y", "m/d/Y H:i:s"),
    "fr": ("Français (French)", "fr-FR", "fr-fr", "d/m/Y", "d/m/Y H:i:s"),
    "de": ("Deutsch (German)", "de-DE", "de-de", "d.m.Y", "d.m.Y H:i:s"),
}

# (id, EN name, config key, invoice, send_email, logable, delivery, shipped, paid, pdf_invoice, module, color,
#  template) — reference §2.8.
ORDER_STATES: tuple[tuple[int, str, str, str, str, str, str, str, str, str, str, str, str], ...] = (
    (
        1,
        "Awaiting check payment",
        "PS_OS_CHEQUE",
        "0",
        "1",
        "0",
        "0",
        "0",
        "0",
        "0",
        "ps_checkpayment",
        "#34209E",
        "cheque",
    ),
    (2, "Payment accepted", "PS_OS_PAYMENT", "1", "1", "1", "0", "0", "1", "1", "", "#3498D8", "payment"),
    (
        3,
        "Processing in progress",
        "PS_OS_PREPARATION",
        "1",
        "1",
        "1",
        "1",
        "0",
        "1",
        "0",
        "",
        "#3498D8",
        "preparation",
    ),
    (4, "Shipped", "PS_OS_SHIPPING", "1", "1", "1", "1", "1", "1", "0", "", "#01B887", "shipped"),
    (5, "Delivered", "PS_OS_DELIVERED", "1", "0", "1", "1", "1", "1", "0", "", "#01B887", ""),
    (6, "Canceled", "PS_OS_CANCELED", "0", "1", "0", "0", "0", "0", "0", "", "#2C3E50", "order_canceled"),
    (7, "Refunded", "PS_OS_REFUND", "1", "1", "0", "0", "0", "0", "0", "", "#E74C3C", "refund"),
    (8, "Payment error", "PS_OS_ERROR", "0", "1", "0", "0", "0", "0", "0", "", "#E74C3C", "payment_error"),
    (
        9,
        "On backorder (paid)",
        "PS_OS_OUTOFSTOCK_PAID",
        "1",
        "1",
        "0",
        "0",
        "0",
        "1",
        "0",
        "",
        "#3498D8",
        "outofstock",
    ),
    (
        10,
        "Awaiting bank wire payment",
        "PS_OS_BANKWIRE",
        "0",
        "1",
        "0",
        "0",
        "0",
        "0",
        "0",
        "ps_wirepayment",
        "#34209E",
        "bankwire",
    ),
    (
        11,
        "Remote payment accepted",
        "PS_OS_WS_PAYMENT",
        "1",
        "1",
        "1",
        "0",
        "0",
        "1",
        "0",
        "",
        "#3498D8",
        "payment",
    ),
    (
        12,
        "On backorder (not paid)",
        "PS_OS_OUTOFSTOCK_UNPAID",
        "0",
        "1",
        "0",
        "0",
        "0",
        "0",
        "0",
        "",
        "#34209E",
        "outofstock",
    ),
    (
        13,
        "Awaiting Cash On Delivery validation",
        "PS_OS_COD_VALIDATION",
        "0",
        "0",
        "0",
        "0",
        "0",
        "0",
        "0",
        "ps_cashondelivery",
        "#34209E",
        "cod",
    ),
)

# Country ids as a default PrestaShop install numbers them; the fixtures use DE=1 and CA=4.
COUNTRIES = (
    (1, "DE", "Germany", 1, 49, "NNNNN", "0"),
    (2, "AT", "Austria", 1, 43, "NNNN", "0"),
    (3, "BE", "Belgium", 1, 32, "NNNN", "0"),
    (4, "CA", "Canada", 2, 1, "LNL NLN", "1"),
    (6, "ES", "Spain", 1, 34, "NNNNN", "0"),
    (8, "FR", "France", 1, 33, "NNNNN", "0"),
    (10, "IT", "Italy", 1, 39, "NNNNN", "0"),
    (13, "NL", "Netherlands", 1, 31, "NNNN LL", "0"),
    (17, "GB", "United Kingdom", 7, 44, "", "0"),
    (19, "CH", "Switzerland", 7, 41, "NNNN", "0"),
    (21, "US", "United States", 2, 1, "NNNNN", "1"),
)
STATES = (
    (4, 21, 2, "AL", "Alabama"),
    (5, 21, 2, "CA", "California"),
    (12, 21, 2, "FL", "Florida"),
    (35, 21, 2, "NY", "New York"),
    (47, 21, 2, "TX", "Texas"),
    (53, 21, 2, "WA", "Washington"),
    (89, 4, 2, "ON", "Ontario"),
    (90, 4, 2, "QC", "Quebec"),
    (91, 4, 2, "BC", "British Columbia"),
)
CURRENCIES = (
    ("EUR", "Euro", "€", "978", "1.000000"),
    ("USD", "US Dollar", "$", "840", "1.085000"),
    ("GBP", "British Pound", "£", "826", "0.855000"),
)
CARRIERS = (
    (1, "psinfor sandbox pickup", "Pick up in-store", "", "1"),
    (2, "My carrier", "Delivery next day!", "", "0"),
    (3, "DHL Express", "1-2 business days", "https://www.dhl.com/en/express/tracking.html?AWB=@", "0"),
    (4, "UPS Standard", "2-4 business days", "https://www.ups.com/track?tracknum=@", "0"),
)
ADJECTIVES = [
    "Classic",
    "Urban",
    "Vintage",
    "Organic",
    "Premium",
    "Compact",
    "Deluxe",
    "Everyday",
    "Nordic",
    "Alpine",
    "Coastal",
    "Modern",
    "Rustic",
    "Studio",
]
NOUNS = [
    "T-shirt",
    "Sweater",
    "Mug",
    "Notebook",
    "Backpack",
    "Cushion",
    "Poster",
    "Lamp",
    "Bottle",
    "Jacket",
    "Scarf",
    "Cap",
    "Sneakers",
    "Watch",
    "Frame",
]
FIRST = [
    "Anna",
    "Ben",
    "Clara",
    "David",
    "Emma",
    "Felix",
    "Greta",
    "Hugo",
    "Ines",
    "Jonas",
    "Karin",
    "Leo",
    "Mia",
    "Noah",
    "Olga",
    "Paul",
    "Rosa",
    "Sam",
    "Tara",
    "Ugo",
]
LAST = [
    "Martin",
    "Bernard",
    "Dubois",
    "Schmidt",
    "Rossi",
    "Garcia",
    "Smith",
    "Jones",
    "Muller",
    "Moreau",
    "Laurent",
    "Weber",
    "Silva",
    "Novak",
    "Jansen",
]
CITIES = {
    "FR": ("Paris", "75001"),
    "DE": ("Berlin", "10115"),
    "US": ("Austin", "73301"),
    "CA": ("Toronto", "M5H 2N2"),
    "GB": ("London", "SW1A 1AA"),
    "IT": ("Milano", "20121"),
    "ES": ("Madrid", "28001"),
    "BE": ("Bruxelles", "1000"),
}
SIZES = ((1, "Size : S"), (2, "Size : M"), (3, "Size : L"), (4, "Size : XL"))
COLORS = ((8, "Color : White"), (11, "Color : Black"), (10, "Color : Red"), (14, "Color : Blue"))


def ean13(rng: random.Random) -> str:
    """A random EAN-13 with a correct check digit."""
    digits = [rng.randrange(10) for _ in range(12)]
    total = sum(d * (3 if i % 2 else 1) for i, d in enumerate(digits))
    return "".join(map(str, digits)) + str((10 - total % 10) % 10)


def _fmt(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def seed_store(store: Store, shop: Shop) -> None:
    """Fill an empty store with the deterministic shop of ``store.config`` (seed, sizes, languages)."""
    config = store.config
    rng = random.Random(config.seed)
    shop.rng = random.Random(config.seed + 1)
    epoch = config.epoch or datetime.now(store.timezone).replace(tzinfo=None, microsecond=0)
    start = epoch - timedelta(days=120)
    created = _fmt(start)
    shop.muted = True
    try:
        _base(store, created)
        _catalogue(store, shop, rng, created)
        _customers(store, rng, start)
        _orders(store, shop, rng, epoch)
    finally:
        shop.muted = False


def _lang(store: Store, text: str) -> I18n:
    return dict.fromkeys(store.language_ids, text)


def _base(store: Store, created: str) -> None:
    config = store.config
    for iso in config.languages:
        name, locale, code, lite, full = LANGUAGES.get(iso, (iso, iso, iso, "Y-m-d", "Y-m-d H:i:s"))
        store.insert(
            "languages",
            {
                "name": name,
                "iso_code": iso,
                "locale": locale,
                "language_code": code,
                "active": "1",
                "is_rtl": "0",
                "date_format_lite": lite,
                "date_format_full": full,
            },
        )
    store.insert(
        "shops",
        {
            "id_shop_group": "1",
            "id_category": "2",
            "active": "1",
            "deleted": "0",
            "name": config.shop_name,
            "theme_name": "classic",
        },
        entity_id=1,
    )
    for iso, name, symbol, numeric, rate in CURRENCIES:
        store.insert(
            "currencies",
            {
                "names": _lang(store, name),
                "name": name,
                "symbol": _lang(store, symbol),
                "iso_code": iso,
                "numeric_iso_code": numeric,
                "precision": "2",
                "conversion_rate": rate,
                "deleted": "0",
                "active": "1",
                "unofficial": "0",
                "modified": "0",
                "pattern": _lang(store, ""),
            },
        )
    for cid, iso, name, zone, prefix, zip_format, has_states in COUNTRIES:
        store.insert(
            "countries",
            {
                "id_zone": str(zone),
                "id_currency": "0",
                "call_prefix": str(prefix),
                "iso_code": iso,
                "active": "1",
                "contains_states": has_states,
                "need_identification_number": "0",
                "need_zip_code": "1" if zip_format else "0",
                "zip_code_format": zip_format,
                "display_tax_label": "1",
                "name": _lang(store, name),
            },
            entity_id=cid,
        )
    for sid, country, zone, iso, name in STATES:
        store.insert(
            "states",
            {"id_zone": str(zone), "id_country": str(country), "iso_code": iso, "name": name, "active": "1"},
            entity_id=sid,
        )
    for cid, name, delay, url, free in CARRIERS:
        store.insert(
            "carriers",
            {
                "deleted": "0",
                "is_module": "0",
                "id_tax_rules_group": "1",
                "id_reference": str(cid),
                "name": name,
                "active": "1",
                "is_free": free,
                "url": url,
                "shipping_handling": "0",
                "shipping_external": "0",
                "range_behavior": "0",
                "shipping_method": 1,
                "max_width": "0",
                "max_height": "0",
                "max_depth": "0",
                "max_weight": "0.000000",
                "grade": "0",
                "external_module_name": "",
                "need_range": "0",
                "position": str(cid - 1),
                "delay": _lang(store, delay),
            },
            entity_id=cid,
        )
    state_ids = {key: config.order_state_ids.get(key, sid) for sid, _, key, *_ in ORDER_STATES}
    configs: list[tuple[str, str]] = [(key, str(sid)) for key, sid in state_ids.items()]
    configs += [
        ("PS_OS_OUTOFSTOCK", str(state_ids["PS_OS_OUTOFSTOCK_PAID"])),
        ("PS_TIMEZONE", config.timezone),
        ("PS_CURRENCY_DEFAULT", "1"),
        ("PS_LANG_DEFAULT", "1"),
        ("PS_COUNTRY_DEFAULT", "8"),
        ("PS_CARRIER_DEFAULT", "2"),
        ("PS_SHOP_NAME", config.shop_name),
        ("PS_WEBSERVICE", "1"),
        ("PS_INVOICE_PREFIX", "#IN"),
        ("PS_STOCK_MANAGEMENT", "1"),
        ("PS_ORDER_OUT_OF_STOCK", "0"),
        ("PS_CUSTOMER_GROUP", "3"),
    ]
    for name, value in configs:
        store.insert(
            "configurations",
            {
                "value": value,
                "name": name,
                "id_shop_group": None,
                "id_shop": None,
                "date_add": created,
                "date_upd": created,
            },
        )
    for (
        _default_id,
        name,
        key,
        invoice,
        email,
        logable,
        delivery,
        shipped,
        paid,
        pdf,
        module,
        color,
        template,
    ) in ORDER_STATES:
        store.insert(
            "order_states",
            {
                "unremovable": "1",
                "delivery": delivery,
                "hidden": "0",
                "send_email": email,
                "module_name": module,
                "invoice": invoice,
                "color": color,
                "logable": logable,
                "shipped": shipped,
                "paid": paid,
                "pdf_delivery": "0",
                "pdf_invoice": pdf,
                "deleted": "0",
                "name": _lang(store, name),
                "template": _lang(store, template),
            },
            entity_id=state_ids[key],
        )


def product_values(
    store: Store, name: str, reference: str, price: str, ean: str, created: str
) -> dict[str, Value]:
    """A complete products row as a back-office product creation leaves it."""
    slug = name.lower().replace(" ", "-")
    return {
        "id_manufacturer": "1",
        "id_supplier": "0",
        "id_category_default": "2",
        "new": None,
        "cache_default_attribute": "0",
        "id_default_image": "0",
        "id_default_combination": "0",
        "id_tax_rules_group": "1",
        "position_in_category": "0",
        "manufacturer_name": "psinfor Studio",
        "quantity": "0",
        "type": "simple",
        "id_shop_default": "1",
        "reference": reference,
        "supplier_reference": "",
        "location": "",
        "width": "0.000000",
        "height": "0.000000",
        "depth": "0.000000",
        "weight": "0.300000",
        "quantity_discount": "0",
        "ean13": ean,
        "isbn": "",
        "upc": "",
        "mpn": "",
        "cache_is_pack": "0",
        "cache_has_attachments": "0",
        "is_virtual": "0",
        "state": "1",
        "additional_delivery_times": "1",
        "delivery_in_stock": _lang(store, ""),
        "delivery_out_stock": _lang(store, ""),
        "on_sale": "0",
        "online_only": "0",
        "ecotax": "0.000000",
        "minimal_quantity": "1",
        "low_stock_threshold": None,
        "low_stock_alert": "0",
        "price": price,
        "wholesale_price": "0.000000",
        "unity": "",
        "unit_price_ratio": "0.000000",
        "additional_shipping_cost": "0.000000",
        "customizable": "0",
        "text_fields": "0",
        "uploadable_files": "0",
        "active": "1",
        "redirect_type": "301-category",
        "id_type_redirected": "0",
        "available_for_order": "1",
        "available_date": ZERO_DAY,
        "show_condition": "0",
        "condition": "new",
        "show_price": "1",
        "indexed": "1",
        "visibility": "both",
        "advanced_stock_management": "0",
        "date_add": created,
        "date_upd": created,
        "pack_stock_type": "3",
        "meta_description": _lang(store, ""),
        "meta_keywords": _lang(store, ""),
        "meta_title": _lang(store, ""),
        "link_rewrite": _lang(store, slug),
        "name": _lang(store, name),
        "description": _lang(store, f"<p>{name}, made for the psinfor sandbox.</p>"),
        "description_short": _lang(store, f"<p>{name}</p>"),
        "available_now": _lang(store, ""),
        "available_later": _lang(store, ""),
    }


def stock_values(product_id: int, attribute_id: int, quantity: int) -> dict[str, Value]:
    """A stock_availables row for shop 1."""
    return {
        "id_product": str(product_id),
        "id_product_attribute": str(attribute_id),
        "id_shop": "1",
        "id_shop_group": "0",
        "quantity": str(quantity),
        "depends_on_stock": "0",
        "out_of_stock": "2",
        "location": "",
    }


def _catalogue(store: Store, shop: Shop, rng: random.Random, created: str) -> None:
    shop.store_option_labels.update(dict(SIZES + COLORS))
    for n in range(1, store.config.products + 1):
        name = f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {n}"
        reference = f"PSI-{n:05d}"
        price = money(rng.randrange(300, 25000) / Decimal(100))
        product = store.insert(
            "products",
            product_values(store, name, reference, price, ean13(rng), created),
            assoc={"categories": [{"id": "2"}]},
        )
        with_combinations = rng.random() < 0.4
        parent = store.insert(
            "stock_availables", stock_values(product.id, 0, 0 if with_combinations else rng.randrange(0, 500))
        )
        if not with_combinations:
            store.update("products", product, {"quantity": parent.text("quantity")})
            continue
        sizes = rng.sample(SIZES, rng.randrange(2, 5))
        color = rng.choice(COLORS)
        option_ids: list[dict[str, str]] = []
        first = 0
        for size_id, size_label in sizes:
            size = size_label.split(" : ")[1]
            impact = "0.000000" if size != "XL" else "2.000000"
            combo = store.insert(
                "combinations",
                {
                    "id_product": str(product.id),
                    "location": "",
                    "ean13": ean13(rng),
                    "isbn": "",
                    "upc": "",
                    "mpn": "",
                    "quantity": "0",
                    "reference": f"{reference}-{size}-{color[1].split(' : ')[1].upper()}",
                    "supplier_reference": "",
                    "wholesale_price": "0.000000",
                    "price": impact,
                    "ecotax": "0.000000",
                    "weight": "0.000000",
                    "unit_price_impact": "0.000000",
                    "minimal_quantity": "1",
                    "low_stock_threshold": None,
                    "low_stock_alert": "0",
                    "default_on": None if first else "1",
                    "available_date": ZERO_DAY,
                },
                assoc={"product_option_values": [{"id": str(size_id)}, {"id": str(color[0])}]},
            )
            first = first or combo.id
            quantity = rng.randrange(0, 200)
            store.insert("stock_availables", stock_values(product.id, combo.id, quantity))
            store.update("combinations", combo, {"quantity": str(quantity)})
            option_ids.append({"id": str(size_id)})
        option_ids.append({"id": str(color[0])})
        product.assoc["product_option_values"] = option_ids
        store.update(
            "products", product, {"cache_default_attribute": str(first), "id_default_combination": str(first)}
        )
        shop.recompute_product_stock(product.id)


def _customers(store: Store, rng: random.Random, start: datetime) -> None:
    countries = ["FR", "FR", "FR", "DE", "DE", "US", "CA", "GB", "IT", "ES", "BE"]
    country_ids = {c[1]: c[0] for c in COUNTRIES}
    states_by_country = {21: [s[0] for s in STATES if s[1] == 21], 4: [s[0] for s in STATES if s[1] == 4]}
    for n in range(1, store.config.customers + 1):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        when = _fmt(start + timedelta(minutes=n * 7))
        customer = store.insert(
            "customers",
            {
                "id_default_group": "3",
                "id_lang": "1",
                "newsletter_date_add": ZERO_DATE,
                "ip_registration_newsletter": "",
                "last_passwd_gen": when,
                "secure_key": f"{rng.getrandbits(128):032x}",
                "deleted": "0",
                "passwd": "$2y$10$" + f"{rng.getrandbits(256):064x}"[:53],
                "lastname": last,
                "firstname": first,
                "email": f"{first.lower()}.{last.lower()}.{n}@example.com",
                "id_gender": str(rng.choice((0, 1, 2))),
                "birthday": ZERO_DAY,
                "newsletter": str(rng.randrange(2)),
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
                "is_guest": "0",
                "id_shop": "1",
                "id_shop_group": "1",
                "date_add": when,
                "date_upd": when,
                "reset_password_token": "",
                "reset_password_validity": ZERO_DATE,
            },
            assoc={"groups": [{"id": "3"}]},
        )
        for k in range(1 + (rng.random() < 0.3)):
            iso = rng.choice(countries)
            city, postcode = CITIES[iso]
            country_id = country_ids[iso]
            state = rng.choice(states_by_country[country_id]) if country_id in states_by_country else 0
            store.insert(
                "addresses",
                {
                    "id_customer": str(customer.id),
                    "id_manufacturer": "0",
                    "id_supplier": "0",
                    "id_warehouse": "0",
                    "id_country": str(country_id),
                    "id_state": str(state),
                    "alias": "Home" if k == 0 else "Work",
                    "company": "" if k == 0 else f"{last} GmbH",
                    "lastname": last,
                    "firstname": first,
                    "vat_number": "",
                    "address1": f"{rng.randrange(1, 200)} Main Street",
                    "address2": "",
                    "postcode": postcode,
                    "city": city,
                    "other": "",
                    "phone": f"+33 1 {rng.randrange(10**7, 10**8)}",
                    "phone_mobile": "",
                    "dni": "",
                    "deleted": "0",
                    "date_add": when,
                    "date_upd": when,
                },
            )


def _orders(store: Store, shop: Shop, rng: random.Random, epoch: datetime) -> None:
    count = store.config.orders
    if not count or not store.tables["customers"] or not store.tables["products"]:
        return
    product_ids = list(store.tables["products"])
    customer_ids = list(store.tables["customers"])
    paths = (
        ("PS_OS_PAYMENT",),
        ("PS_OS_PAYMENT", "PS_OS_PREPARATION"),
        ("PS_OS_PAYMENT", "PS_OS_PREPARATION", "PS_OS_SHIPPING"),
        ("PS_OS_PAYMENT", "PS_OS_PREPARATION", "PS_OS_SHIPPING", "PS_OS_DELIVERED"),
        ("PS_OS_CANCELED",),
        (),
    )
    span = timedelta(days=60)
    for n in range(count):
        placed = epoch - span + span * n / count
        lines = []
        for product_id in rng.sample(product_ids, rng.randrange(1, 4)):
            combos = store.find("combinations", "id_product", str(product_id))
            lines.append(OrderLine(product_id, rng.choice(combos).id if combos else 0, rng.randrange(1, 4)))
        module = rng.choice(("ps_checkpayment", "ps_wirepayment", "ps_cashondelivery"))
        currency = rng.choice(("EUR", "EUR", "EUR", "USD", "GBP"))
        order = shop.place_order(
            OrderRequest(
                tuple(lines),
                customer_id=rng.choice(customer_ids),
                currency=currency,
                payment_module=module,
                at=_fmt(placed),
            )
        )
        moment = placed
        for key in rng.choice(paths):
            moment = min(moment + timedelta(hours=rng.randrange(1, 48)), epoch)
            shop.change_order_state(order.id, shop.state_id(key), at=_fmt(moment))
            if key == "PS_OS_SHIPPING":
                for carrier in store.find("order_carriers", "id_order", str(order.id)):
                    shop.set_tracking(carrier, f"1Z{rng.randrange(10**9, 10**10)}")


def load_records(store: Store, records: list[tuple[str, dict[str, object]]]) -> None:
    """Insert JSON records as ``GET /api/<resource>?display=full&output_format=JSON`` returned them.

    ``records`` are (resource, data) pairs such as the fixture file's lines. Values are stored
    as given (strings stay strings, ``null`` stays NULL); an i18n field given as a string sets every
    installed language; associations PrestaShop stores itself (groups, categories, ...) are kept,
    the computed ones (order_rows, combinations, stock_availables) come from the loaded tables.
    """
    for resource_name, data in records:
        resource = store.resource(resource_name)
        values: dict[str, Value] = {}
        for fdef in resource.fields:
            if fdef.name == "id" or fdef.name not in data:
                continue
            raw = data[fdef.name]
            if fdef.i18n:
                if isinstance(raw, list):
                    values[fdef.name] = {int(item["id"]): str(item["value"]) for item in raw}
                else:
                    values[fdef.name] = _lang(store, "" if raw is None else str(raw))
            else:
                values[fdef.name] = raw if raw is None or isinstance(raw, str | int | float) else str(raw)
        assoc_data = data.get("associations")
        assoc: dict[str, list[dict[str, str]]] = {}
        if isinstance(assoc_data, dict):
            for name, rows in assoc_data.items():
                if name not in ("order_rows", "combinations", "stock_availables") and isinstance(rows, list):
                    assoc[name] = [{str(k): str(v) for k, v in row.items()} for row in rows]
        entity_id = data["id"]
        assert isinstance(entity_id, int)
        store.insert(resource_name, values, entity_id=entity_id, assoc=assoc)
