"""``canonical.product.v1`` from the ERP item master → the shop fields the ERP owns, and only those.

Ownership (:data:`ERP_OWNED`): the ERP is the master of an item's list price, weight and codes
(GTIN, MPN); the shop owns everything a merchant edits for selling — names and descriptions (M3's
item description is an internal text), visibility, ``active``, categories, images, SEO — and stock
goes through the stock sink. The rules file has no field-ownership section yet, so the split is this
module's; a field the ERP record leaves null (no GTIN, no weight) is left as the shop has it, never
wiped.

Where: the SKU's sellable unit from the shop catalogue (a product without combinations, or a
combination; an unknown SKU is ``InvalidMessage("unknown_sku")`` with suggestions). PrestaShop keeps
a combination's price and weight as *impacts* on its product's, so a combination gets
``ERP price - product price`` and ``ERP weight - product weight`` (the product's own price stays the
shop's: it is not a sellable unit). Prices are tax excluded in the shop's default currency (the record
must be in it: ``currency_mismatch`` otherwise); weights are converted from kg to ``PS_WEIGHT_UNIT``.

Writes are partial: only the owned fields that differ, by PATCH on 8.x+ and by the client's lossless
read-modify PUT on 1.7; nothing when they all match (``unchanged``, so a redelivery writes nothing).
Skipped: a record the shop itself produced (``echo``: the products flow publishes the shop's own
catalogue, and writing it back would be a loop).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Final

from connectors.prestashop.client import PrestaShopClient
from connectors.prestashop.models import Combination
from connectors.prestashop.xml_writes import XmlValue
from pipeline.errors import InvalidMessage
from schemas.codec import AvroDatum
from sinks.base import Applied, SinkContext, SinkResources, Skip
from sinks.prestashop_target import (
    TARGET,
    ShopCatalogue,
    ShopCurrencies,
    facts,
    is_from_shop,
    open_shop_client,
)

NAME = "prestashop-products"
"""Stage name (consumer group ``sink-prestashop-products`` in the topic catalogue)."""
SOURCE_TOPIC = "canonical.product.v1"
RECORD = "Product"

ERP_OWNED: Final = frozenset({"price", "weight", "ean13", "upc", "mpn"})
"""Shop fields (products and combinations alike) the ERP item master owns; see the module docstring."""

SHOP_SCALE = Decimal("0.000001")
"""PrestaShop keeps prices and weights as DECIMAL(20,6)."""

KG_PER_UNIT: Final[Mapping[str, Decimal]] = {
    "kg": Decimal(1),
    "g": Decimal("0.001"),
    "lb": Decimal("0.45359237"),
    "lbs": Decimal("0.45359237"),
    "oz": Decimal("0.028349523125"),
}
"""``PS_WEIGHT_UNIT`` (free text, compared case-insensitively) → kilograms per unit."""


@dataclass(frozen=True)
class ItemMaster:
    """The ERP's facts about one sellable unit; None = the ERP says nothing about that field."""

    sku: str
    price: Decimal
    currency: str
    weight_kg: Decimal | None
    gtin: str | None
    mpn: str | None


def gtin_field(gtin: str) -> str:
    """The shop field a GTIN goes to: ``upc`` for a 12-digit UPC-A, ``ean13`` for EAN-8/EAN-13.

    Raises InvalidMessage ``invalid_format`` for anything else (PrestaShop's ean13 holds at most 13
    digits, upc 12).
    """
    if gtin.isdigit() and len(gtin) == 12:
        return "upc"
    if gtin.isdigit() and len(gtin) in (8, 13):
        return "ean13"
    raise InvalidMessage(
        "invalid_format",
        f"GTIN {gtin!r} is neither a 12-digit UPC nor an 8/13-digit EAN the shop can hold",
        field_path="gtin",
        details={"expected": "8, 12 or 13 digits"},
    )


def to_item_master(datum: AvroDatum) -> ItemMaster | Skip:
    """The ERP's facts of a ``Product`` datum, or Skip ``echo`` for the shop's own catalogue record."""
    if is_from_shop(datum):
        return Skip("echo")
    gtin = (datum["gtin"] or "").strip() or None
    if gtin is not None:
        gtin_field(gtin)  # refuse a code the shop cannot hold at decode, with its field path
    return ItemMaster(
        sku=str(datum["sku"]),
        price=datum["price"]["amount"],
        currency=str(datum["price"]["currency"]).upper(),
        weight_kg=datum["weight_kg"],
        gtin=gtin,
        mpn=(datum["mpn"] or "").strip() or None,
    )


def kg_per_unit(weight_unit: str) -> Decimal:
    """Kilograms per ``PS_WEIGHT_UNIT`` (empty: kg); InvalidMessage for a unit nobody can convert."""
    unit = weight_unit.strip().lower() or "kg"
    factor = KG_PER_UNIT.get(unit)
    if factor is None:
        raise InvalidMessage(
            "prestashop_configuration",
            f"PS_WEIGHT_UNIT {unit!r} is not a known weight unit",
            details={"configuration": "PS_WEIGHT_UNIT"},
        )
    return factor


def desired_fields(
    item: ItemMaster, *, kg_per_shop_unit: Decimal, base_price: Decimal | None, base_weight: Decimal | None
) -> dict[str, Decimal | str]:
    """The owned shop fields ``item`` asks for (pure).

    For a combination, ``base_price``/``base_weight`` are its product's and the price and weight become
    impacts; for a product they are None. Fields the ERP says nothing about are absent.
    """
    price = item.price - (base_price or Decimal(0))
    wanted: dict[str, Decimal | str] = {"price": price.quantize(SHOP_SCALE, rounding=ROUND_HALF_EVEN)}
    if item.weight_kg is not None:
        weight = item.weight_kg / kg_per_shop_unit - (base_weight or Decimal(0))
        wanted["weight"] = weight.quantize(SHOP_SCALE, rounding=ROUND_HALF_EVEN)
    if item.gtin is not None:
        wanted[gtin_field(item.gtin)] = item.gtin
    if item.mpn is not None:
        wanted["mpn"] = item.mpn
    return wanted


def owned_changes(
    current: Mapping[str, Decimal | str], desired: Mapping[str, Decimal | str]
) -> dict[str, XmlValue]:
    """The owned fields whose desired value differs from the shop's (pure; decimals compared as numbers).

    Only :data:`ERP_OWNED` fields are ever returned, whatever ``desired`` holds.
    """
    changes: dict[str, XmlValue] = {}
    for name, value in desired.items():
        if name not in ERP_OWNED:
            continue
        held = current.get(name)
        if isinstance(value, Decimal):
            same = isinstance(held, Decimal) and held == value
        else:
            same = isinstance(held, str) and held.strip() == value
        if not same:
            changes[name] = value
    return changes


class ProductSink:
    """Keeps the ERP-owned fields of each sellable unit equal to the item master; nothing else."""

    name = NAME
    target = TARGET
    sources: tuple[str, ...] = (SOURCE_TOPIC,)
    record = RECORD
    coalesce_s: float | None = None

    def __init__(
        self, client: PrestaShopClient, catalogue: ShopCatalogue, currencies: ShopCurrencies
    ) -> None:
        self._client = client
        self._catalogue = catalogue
        self._currencies = currencies
        self._kg_per_unit: Decimal | None = None

    def decode(self, datum: AvroDatum, context: SinkContext) -> ItemMaster | Skip:
        """See :func:`to_item_master`."""
        return to_item_master(datum)

    async def apply(self, model: ItemMaster, context: SinkContext) -> Applied:
        """Write the owned fields that differ (partial update); ``unchanged`` when none does."""
        shop_currency = await self._currencies.default_iso()
        if model.currency != shop_currency:
            raise InvalidMessage(
                "currency_mismatch",
                f"the item's price is in {model.currency}, the shop's catalogue in {shop_currency}",
                field_path="price.currency",
                details={"shop_currency": shop_currency, "currency": model.currency},
            )
        unit = await self._catalogue.unit(model.sku)
        product = await self._client.get_product(unit.id_product)
        factor = await self._weight_factor()
        summary = facts(
            sku=model.sku, id_product=unit.id_product, id_product_attribute=unit.id_product_attribute
        )
        if unit.id_product_attribute == 0:
            wanted = desired_fields(model, kg_per_shop_unit=factor, base_price=None, base_weight=None)
            current: dict[str, Decimal | str] = {
                "price": product.price,
                "weight": product.weight,
                "ean13": product.ean13,
                "upc": product.upc,
                "mpn": product.mpn,
            }
            changes = owned_changes(current, wanted)
            if changes:
                await self._client.update_product(unit.id_product, changes)
        else:
            combination = await self._client.get(Combination, unit.id_product_attribute)
            wanted = desired_fields(
                model, kg_per_shop_unit=factor, base_price=product.price, base_weight=product.weight
            )
            current = {
                "price": combination.price,
                "weight": combination.weight,
                "ean13": combination.ean13,
                "upc": combination.upc,
                "mpn": combination.mpn,
            }
            changes = owned_changes(current, wanted)
            if changes:
                await self._client.update_combination(unit.id_product_attribute, changes)
        if not changes:
            return Applied("unchanged", summary)
        return Applied("written", {**summary, "fields": ",".join(sorted(changes))})

    async def _weight_factor(self) -> Decimal:
        if self._kg_per_unit is None:
            unit = (await self._client.configuration_values("PS_WEIGHT_UNIT")).get("PS_WEIGHT_UNIT", "")
            self._kg_per_unit = kg_per_unit(unit)
        return self._kg_per_unit


@asynccontextmanager
async def build(resources: SinkResources) -> AsyncIterator[ProductSink]:
    """The sink on the shop of ``resources.settings.prestashop``; its connections close on exit."""
    shop = resources.settings.require_prestashop()
    async with open_shop_client(shop) as client:
        yield ProductSink(client, ShopCatalogue(client), ShopCurrencies(client))
