"""PrestaShop products and combinations → ``canonical.product.v1``: one record per sellable SKU.

Input: a PRODUCT BUNDLE on ``raw.prestashop.products`` (event_type ``product.bundle``, key
``{shop_id}:products:{id}``, format in ``ingest/prestashop_poller/raw.py``): the product with all its
combinations, the shop's languages (id → ISO code), its default currency and the configuration
values ``PS_TIMEZONE``, ``PS_CURRENCY_DEFAULT`` and ``PS_WEIGHT_UNIT``, each exactly as the webservice
returned it. A combination notification is answered with the bundle of its product, under the
product's key, so every change of a product reaches this flow in order.

Output (multi-emit, :attr:`Flow.record_key` = the SKU): a product without combinations is one
record; a product with combinations is one record per combination (the product itself is not
sellable then). Per record:

* SKU: the combination's reference, else the product's (what PrestaShop writes on order rows);
  an empty SKU, or two sellable units of one product sharing a SKU, is InvalidMessage: on a topic
  compacted by SKU one of them would silently replace the other;
* price: product price (tax excluded) + the combination's price impact, in the shop's default
  currency, at the wire scale; weight: product weight + the combination's impact, converted from
  ``PS_WEIGHT_UNIT`` (kg, g, lb, oz) to kg, null when zero (PrestaShop's "not set");
* names: the product name per language, keyed by the language's ISO 639-1 code;
* GTIN: the unit's own EAN-13 / UPC / ISBN (a product's barcode does not identify its variants);
  MPN: the combination's, else the product's;
* attributes: the combination's product option values, as ``option_value`` = id (the bundle carries
  no option labels: the webservice client has no ``product_option_values`` reader yet);
* ERP item number by the rules' variant resolution (table, else derived from the SKU); a SKU the
  rules cannot turn into an item number keeps a null item number, the Infor sink's question;
* meta: entity ``combinations`` / ``products`` and that row's id, version = the product's
  ``date_upd`` (UTC epoch ms), so each record has its own deterministic event id.

Known limit: PrestaShop does not move the product's ``date_upd`` for every combination-only edit, and
combinations have no ``date_upd`` of their own; such an edit reaches the canonical topic with the
product's next save (the runner drops an equal version as a duplicate).

:func:`feed_variants` puts a record's (product, combination) → SKU → item number into a
:class:`~rules.variants.VariantTable`: the table the orders flow resolves lines with.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from connectors.prestashop.models import Combination, Currency, Product, PsInt, PsText
from pipeline.errors import InvalidMessage
from processors.prestashop_source import Bundle, BundleEvent, BundleIdentity, Skipped, bundle_flow, meta
from rules.engine import Rules
from rules.validation import check_currency
from rules.variants import VariantKey, VariantTable
from schemas.codec import AvroDatum

NAME = "prestashop_products"
SOURCE_TOPIC = "raw.prestashop.products"
OUTPUT_TOPIC = "canonical.product.v1"
RECORD = "Product"
EVENT_TYPE = "product.bundle"

_WEIGHT = Decimal("0.0001")
_KG_PER_UNIT: dict[str, Decimal] = {
    "kg": Decimal(1),
    "g": Decimal("0.001"),
    "lb": Decimal("0.45359237"),
    "lbs": Decimal("0.45359237"),
    "oz": Decimal("0.028349523125"),
}
"""PS_WEIGHT_UNIT (free text in PrestaShop, compared case-insensitively) → kilograms."""


class Language(BaseModel):
    """A shop language as the webservice returns it (only what the names map needs)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: PsInt
    iso_code: PsText = ""


class ProductBundle(Bundle):
    """The product bundle as the poller writes it; every inner record is a PrestaShop source model."""

    def identity(self) -> BundleIdentity:
        """Versioned by the product's ``date_upd``; its id keys nothing (each record its SKU)."""
        return BundleIdentity(self.product.id, self.product.date_upd, "product.date_upd")

    product: Product
    combinations: list[Combination] = Field(default_factory=list)
    languages: list[Language] = Field(default_factory=list)
    """The shop's languages: the product's names are keyed by their ISO 639-1 codes."""
    currencies: list[Currency] = Field(default_factory=list)


class ProductEvent(BundleEvent[ProductBundle]):
    """One product bundle of one shop."""


def record_key(datum: AvroDatum) -> str:
    """The canonical key of one record: its SKU."""
    return str(datum["sku"])


def to_products(
    event: ProductEvent,
    rules: Rules,
    *,
    ingested_at: datetime,
    correlation_id: str,
    variants: VariantTable | None = None,
) -> list[AvroDatum]:
    """The canonical ``Product`` datums of one bundle, one per sellable SKU (pure).

    Raises InvalidMessage for a bundle that cannot be mapped (empty or duplicate SKU, no default
    currency, unknown weight unit, ...), naming the field path; then nothing of it is emitted.
    """
    bundle, shop_id = event.bundle, event.shop_id
    product = bundle.product
    config = bundle.settings()
    updated = bundle.clock().required(product.date_upd, "product.date_upd")
    currency = _default_currency(bundle, config)
    kg_per_unit = _kg_per_unit(config)
    names = _names(bundle)
    # Not `variants or ...`: a table holding only item numbers has len() 0 and would be dropped.
    table = variants if variants is not None else VariantTable()

    units: list[tuple[Combination | None, str]] = []
    if bundle.combinations:
        for row in sorted(bundle.combinations, key=lambda c: c.id):
            path = f"combinations[id={row.id}]"
            bundle.check_owner(
                "combination", row.id, "product", row.id_product, product.id, f"{path}.id_product"
            )
            sku = row.reference.strip() or product.reference.strip()
            units.append((row, _check_sku(sku, f"{path}.reference", units)))
    else:
        units.append((None, _check_sku(product.reference.strip(), "product.reference", units)))

    datums: list[AvroDatum] = []
    for combination, sku in units:
        price = product.price + (combination.price if combination is not None else Decimal(0))
        weight = (
            product.weight + (combination.weight if combination is not None else Decimal(0))
        ) * kg_per_unit
        source = combination if combination is not None else product
        gtin = next((code.strip() for code in (source.ean13, source.upc, source.isbn) if code.strip()), None)
        mpn = (combination.mpn.strip() if combination is not None else "") or product.mpn.strip()
        external_ids = {"prestashop": str(product.id)}
        if combination is not None:
            external_ids["prestashop_combination"] = str(combination.id)
        datums.append(
            {
                "meta": meta(
                    "combinations" if combination is not None else "products",
                    shop_id,
                    str(source.id),
                    updated,
                    ingested_at=ingested_at,
                    correlation_id=correlation_id,
                ),
                "sku": sku,
                "product_id": str(product.id),
                "variant_id": str(combination.id) if combination is not None else None,
                "names": names,
                "gtin": gtin,
                "mpn": mpn or None,
                "price": {"amount": rules.currency.quantize(price), "currency": currency},
                "weight_kg": weight.quantize(_WEIGHT) if weight > 0 else None,
                "active": product.active,
                "attributes": [
                    {"name": "option_value", "value": str(ref.id)}
                    for ref in (
                        combination.associations.product_option_values if combination is not None else []
                    )
                ],
                "erp_item_number": _item_number(rules, table, sku),
                "unit_of_measure": None,
                "item_group": None,
                "external_ids": external_ids,
            }
        )
    return datums


def feed_variants(table: VariantTable, datum: AvroDatum) -> None:
    """Record what one canonical Product datum says: (shop, product, combination) → SKU → item number."""
    shop_id = datum["meta"]["shop_id"]
    product_id = datum["product_id"]
    if not shop_id or not product_id:
        return  # not a shop's product (an ERP item record): nothing to resolve order lines with
    variant = datum["variant_id"]
    key = VariantKey(str(shop_id), int(product_id), int(variant) if variant else 0)
    table.put(key, str(datum["sku"]), datum["erp_item_number"])


def _check_sku(sku: str, field_path: str, seen: Sequence[tuple[Combination | None, str]]) -> str:
    if not sku:
        raise InvalidMessage(
            "missing_field", f"{field_path} is empty: a sellable unit needs a SKU", field_path=field_path
        )
    if any(sku == other for _, other in seen):
        raise InvalidMessage(
            "duplicate_sku",
            f"SKU {sku!r} names two sellable units of one product; give each combination its own reference",
            field_path=field_path,
            details={"sku": sku},
        )
    return sku


def _item_number(rules: Rules, table: VariantTable, sku: str) -> str | None:
    try:
        return rules.variants.item_number(table, sku)
    except InvalidMessage as exc:
        if exc.reason == "unknown_sku":
            return None  # see the module docstring: the Infor sink decides
        raise


def _default_currency(bundle: ProductBundle, config: dict[str, str]) -> str:
    value = config.get("PS_CURRENCY_DEFAULT", "").strip()
    if not value.isdigit():
        raise InvalidMessage(
            "missing_field", "the bundle carries no PS_CURRENCY_DEFAULT", field_path="configuration"
        )
    for currency in bundle.currencies:
        if currency.id == int(value):
            return check_currency(currency.iso_code, f"currencies[id={value}].iso_code")
    raise InvalidMessage("missing_field", f"the bundle has no currency {value}", field_path="currencies")


def _kg_per_unit(config: dict[str, str]) -> Decimal:
    unit = config.get("PS_WEIGHT_UNIT", "kg").strip().lower() or "kg"
    factor = _KG_PER_UNIT.get(unit)
    if factor is None:
        raise InvalidMessage(
            "invalid_format",
            f"PS_WEIGHT_UNIT {unit!r} is not a known weight unit",
            field_path="configuration",
        )
    return factor


def _names(bundle: ProductBundle) -> dict[str, str]:
    codes = {language.id: language.iso_code.strip().lower() for language in bundle.languages}
    names: dict[str, str] = {}
    for language_id, name in sorted(bundle.product.name.items()):
        code = codes.get(language_id)
        if not code:
            raise InvalidMessage(
                "missing_field",
                f"the bundle has no ISO code for language {language_id}",
                field_path=f"languages[id={language_id}]",
            )
        if name.strip():
            names[code] = name.strip()
    if not names:
        raise InvalidMessage("missing_field", "the product has no name", field_path="product.name")
    return names


# --- the flow ---------------------------------------------------------------------------------------


ProductInput = ProductEvent | Skipped
decode, key, version, to_record, FLOW = bundle_flow(
    NAME,
    SOURCE_TOPIC,
    OUTPUT_TOPIC,
    RECORD,
    EVENT_TYPE,
    ProductBundle,
    ProductEvent,
    to_products,
    record_key=record_key,
    preview_as="products",
)
