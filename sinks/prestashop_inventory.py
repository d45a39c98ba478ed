"""``canonical.inventory.v1`` → the shop's ``stock_availables`` quantity of the SKU, coalesced per SKU.

The ERP is the stock master. Per SKU the runner waits :data:`COALESCE_S` and applies only the newest
level of the window (``coalesce_s``), so a burst of movements costs one write. The quantity written is
what may be sold: ``min(available, on hand - allocated)``, rounded down to a whole unit (PrestaShop
stock is an integer) and never below 0 (a shortfall is not stock; the product's out-of-stock policy
says whether the shop takes backorders). Nothing is written when the shop already shows it.

Where it goes: the SKU's sellable unit from the shop's catalogue (a product without combinations, or a
combination; :class:`~sinks.prestashop_target.ShopCatalogue`), its stock row located by
(id_product, id_product_attribute, id_shop) — the shop's own row, else the row its shop group shares.
An item PrestaShop does not sell is ``InvalidMessage("unknown_sku")`` with the closest references and
names as suggestions (the DLQ keeps it until the catalogue or the SKU table is fixed, then replay).

Skipped: a warehouse that does not feed this shop (``not_ours``; the rules' ``warehouses.
to_prestashop_shops``) and a record the shop itself produced (``echo``). A shop fed by several
warehouses is refused at start (``ConfigError``): a sink that writes one warehouse's level at a time
would make the shop's stock flip between them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

from connectors.prestashop.client import Fetched, PrestaShopClient
from connectors.prestashop.models import StockAvailable
from connectors.prestashop.query import Query, equals
from pipeline.errors import ConfigError, InvalidMessage
from rules.engine import Rules
from schemas.codec import AvroDatum
from sinks.base import Applied, SinkContext, SinkResources, Skip
from sinks.prestashop_target import TARGET, SellableUnit, ShopCatalogue, facts, is_from_shop, open_shop_client

NAME = "prestashop-stock"
"""Stage name (consumer group ``sink-prestashop-stock`` in the topic catalogue)."""
SOURCE_TOPIC = "canonical.inventory.v1"
RECORD = "InventoryLevel"

COALESCE_S = 0.25
"""Per SKU, only the newest level within this window is written."""


@dataclass(frozen=True)
class StockLevel:
    """The sink's model of an inventory record: the SKU and the whole quantity the shop may sell."""

    sku: str
    warehouse: str
    quantity: int


def sellable_quantity(on_hand: Decimal, allocated: Decimal, available: Decimal) -> int:
    """What the shop may sell: the ERP's available, capped by on hand - allocated, whole units, >= 0 (pure).

    The cap guards against an ``available`` that counts more than the ERP physically holds free (a
    planned receipt in M3's availability figure); rounding down keeps a fractional remainder unsold.
    """
    free = min(available, on_hand - allocated)
    whole = int(free.to_integral_value(rounding=ROUND_FLOOR))
    return max(0, whole)


def warehouse_of_shop(rules: Rules, shop_id: int) -> str | None:
    """The one ERP warehouse feeding ``shop_id``'s stock (None: none does); ConfigError for several."""
    feeding = sorted(
        warehouse
        for warehouse, shops in rules.model.warehouses.to_prestashop_shops.items()
        if str(shop_id) in shops
    )
    if len(feeding) > 1:
        raise ConfigError(
            f"rules warehouses.to_prestashop_shops feeds shop {shop_id} from {', '.join(feeding)}: the stock "
            "sink writes one warehouse's level per shop; map one warehouse to the shop"
        )
    return feeding[0] if feeding else None


def to_stock_level(datum: AvroDatum, *, warehouse: str | None) -> StockLevel | Skip:
    """The level to show, or Skip (``echo``; ``not_ours`` for another warehouse than the shop's)."""
    if is_from_shop(datum):
        return Skip("echo")
    if warehouse is None or str(datum["warehouse"]).strip() != warehouse:
        return Skip("not_ours")
    quantity = sellable_quantity(datum["on_hand"], datum["allocated"], datum["available"])
    return StockLevel(sku=str(datum["sku"]), warehouse=warehouse, quantity=quantity)


def stock_row_for_shop(
    rows: Sequence[StockAvailable], shop_id: int, unit: SellableUnit
) -> StockAvailable | None:
    """The unit's stock row in ``shop_id``: its own, else the one its shop group shares (id_shop 0).

    None when the shop has no row (the unit was deleted since the catalogue was read); InvalidMessage
    ``prestashop_ambiguous_stock`` when several rows could be meant.
    """
    own = [row for row in rows if row.id_shop == shop_id]
    shared = [row for row in rows if row.id_shop == 0]
    candidates = own or shared
    if len(candidates) > 1:
        raise InvalidMessage(
            "prestashop_ambiguous_stock",
            f"{len(candidates)} stock rows of product {unit.id_product} combination "
            f"{unit.id_product_attribute} match shop {shop_id}",
            field_path="sku",
            details={"sku": unit.sku, "rows": ",".join(str(row.id) for row in candidates)},
        )
    return candidates[0] if candidates else None


class InventorySink:
    """Shows the ERP's sellable quantity of each SKU in the shop's stock, newest level per window only."""

    name = NAME
    target = TARGET
    sources: tuple[str, ...] = (SOURCE_TOPIC,)
    record = RECORD
    coalesce_s: float | None = COALESCE_S

    def __init__(
        self, client: PrestaShopClient, catalogue: ShopCatalogue, rules: Rules, *, shop_id: int
    ) -> None:
        self._client = client
        self._catalogue = catalogue
        self._shop_id = shop_id
        self._warehouse = warehouse_of_shop(rules, shop_id)

    def decode(self, datum: AvroDatum, context: SinkContext) -> StockLevel | Skip:
        """See :func:`to_stock_level`."""
        return to_stock_level(datum, warehouse=self._warehouse)

    async def apply(self, model: StockLevel, context: SinkContext) -> Applied:
        """Write the quantity unless the shop shows it; ``unknown_sku`` for an item the shop does not sell."""
        unit = await self._catalogue.unit(model.sku)
        row = await self._row(unit)
        if row is None:
            # Found in the catalogue but without stock: the unit is gone. Read the catalogue again once.
            await self._catalogue.forget()
            unit = await self._catalogue.unit(model.sku)
            row = await self._row(unit)
        if row is None:
            raise InvalidMessage(
                "prestashop_no_stock_row",
                f"the shop has no stock row for SKU {model.sku!r} in shop {self._shop_id}",
                field_path="sku",
                details={"sku": model.sku, "id_product": str(unit.id_product)},
            )
        summary = facts(
            sku=model.sku,
            id_product=unit.id_product,
            id_product_attribute=unit.id_product_attribute,
            quantity=model.quantity,
        )
        if row.model.quantity == model.quantity:
            return Applied("unchanged", summary)
        # The row just read is written back (the webservice's PUT takes the whole record): one read and
        # one write per level, the shop's webservice key being shared by every PrestaShop sink.
        await self._client.set_stock_of(row, model.quantity)
        return Applied("written", {**summary, **facts(previous=int(row.model.quantity))})

    async def _row(self, unit: SellableUnit) -> Fetched[StockAvailable] | None:
        query = Query(
            filters=(
                equals("id_product", unit.id_product),
                equals("id_product_attribute", unit.id_product_attribute),
            )
        )
        rows = [row async for row in self._client.iterate_fetched(StockAvailable, query)]
        chosen = stock_row_for_shop([row.model for row in rows], self._shop_id, unit)
        return None if chosen is None else next(row for row in rows if row.model is chosen)


@asynccontextmanager
async def build(resources: SinkResources) -> AsyncIterator[InventorySink]:
    """The sink on the shop of ``resources.settings.prestashop``; its connections close on exit."""
    shop = resources.settings.require_prestashop()
    async with open_shop_client(shop) as client:
        yield InventorySink(client, ShopCatalogue(client), resources.rules, shop_id=shop.shop_id)
