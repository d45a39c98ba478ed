"""The shop's in-memory tables: entities by id, secondary indexes, computed associations.

Lookups by id are dict reads; equality lookups on the indexed columns (``id_order``, ``id_product``,
``order_reference``, ``email``, ...) use per-column indexes kept up to date by ``insert`` /
``update`` / ``delete``, so the poller's per-order reads stay O(matches) on a store with thousands
of orders. Values are stored as PrestaShop's database hands them to PHP: strings for every scalar
(``"1"``, ``"61.800000"``, ``"0000-00-00 00:00:00"``), ``None`` for NULL, a ``{lang_id: text}`` map for
i18n fields. Nothing is deep-copied per request; renderers read entities in place.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from sandbox.prestashop.config import SandboxConfig, Version
from sandbox.prestashop.resources import IMPLEMENTED, Resource

Scalar = str | int | float | None
I18n = dict[int, str]
Value = Scalar | I18n
AssocRow = dict[str, str]

INDEXED: dict[str, tuple[str, ...]] = {
    "order_details": ("id_order",),
    "order_histories": ("id_order",),
    "order_carriers": ("id_order",),
    "order_invoices": ("id_order",),
    "order_payments": ("order_reference",),
    "orders": ("id_customer", "reference"),
    "addresses": ("id_customer",),
    "combinations": ("id_product",),
    "stock_availables": ("id_product",),
    "customers": ("email",),
    "configurations": ("name",),
}


@dataclass(slots=True)
class Entity:
    """One row: its id, field values and the stored (non-computed) association rows."""

    id: int
    values: dict[str, Value]
    assoc: dict[str, list[AssocRow]] = field(default_factory=dict)

    def text(self, name: str) -> str:
        """The field's scalar value as text (``""`` for NULL)."""
        v = self.values.get(name)
        if v is None or isinstance(v, dict):
            return ""
        return str(v)

    def num(self, name: str) -> int:
        """The field's value as an integer (PHP ``(int)`` semantics: junk is 0)."""
        try:
            return int(float(self.text(name) or 0))
        except ValueError:
            return 0


def _index_key(value: Value) -> str:
    # MySQL's default collation compares case-insensitively; the index does the same.
    return str(value).casefold() if value is not None and not isinstance(value, dict) else ""


class Store:
    """All tables of one shop plus the shop-wide settings the renderers need.

    Not thread-safe by itself: the app runs every request on one asyncio event loop and the
    admin API and the webservice mutate the store only from that loop.
    """

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.version: Version = config.version_tuple
        self.tables: dict[str, dict[int, Entity]] = {name: {} for name in IMPLEMENTED}
        self._next_id: dict[str, int] = dict.fromkeys(IMPLEMENTED, 1)
        self._indexes: dict[str, dict[str, dict[str, set[int]]]] = {
            res: {col: {} for col in cols} for res, cols in INDEXED.items()
        }
        self.counters: dict[str, int] = {"cart": 1, "invoice": 1, "delivery": 1}
        self.webservice_enabled = config.webservice_enabled
        self.timezone = ZoneInfo(config.timezone)

    # -- time -------------------------------------------------------------------------------------

    def now(self) -> str:
        """Shop-local time ``YYYY-MM-DD HH:MM:SS`` (PS_TIMEZONE, 1-second granularity, no zone)."""
        return datetime.now(self.timezone).strftime("%Y-%m-%d %H:%M:%S")

    def set_timezone(self, name: str) -> None:
        """Switch the shop's time zone (what changing PS_TIMEZONE does)."""
        self.timezone = ZoneInfo(name)

    # -- languages --------------------------------------------------------------------------------

    @property
    def language_ids(self) -> list[int]:
        """Installed language ids in id order (the default language first)."""
        return sorted(self.tables["languages"])

    @property
    def default_language(self) -> int:
        """``PS_LANG_DEFAULT``: the language a plain-string i18n write sets."""
        conf = self.config_value("PS_LANG_DEFAULT")
        return int(conf) if conf and conf.isdigit() else (self.language_ids or [1])[0]

    # -- rows -------------------------------------------------------------------------------------

    def resource(self, name: str) -> Resource:
        """The definition of an implemented resource (KeyError for others)."""
        return IMPLEMENTED[name]

    def get(self, resource: str, entity_id: int) -> Entity | None:
        """The row with that id, or ``None``."""
        return self.tables[resource].get(entity_id)

    def all(self, resource: str) -> Iterable[Entity]:
        """Every row of a table in id order (insertion order is id order)."""
        return self.tables[resource].values()

    def next_id(self, resource: str) -> int:
        """The id the next insert into that table will get (AUTO_INCREMENT)."""
        return self._next_id[resource]

    def insert(
        self,
        resource: str,
        values: dict[str, Value],
        *,
        entity_id: int | None = None,
        assoc: dict[str, list[AssocRow]] | None = None,
    ) -> Entity:
        """Add a row; ``entity_id`` (fixtures, seeds) or the next AUTO_INCREMENT id."""
        new_id = entity_id if entity_id is not None else self._next_id[resource]
        self._next_id[resource] = max(self._next_id[resource], new_id + 1)
        entity = Entity(new_id, values, assoc or {})
        self.tables[resource][new_id] = entity
        for col, index in self._indexes.get(resource, {}).items():
            index.setdefault(_index_key(values.get(col)), set()).add(new_id)
        return entity

    def update(self, resource: str, entity: Entity, changes: dict[str, Value]) -> None:
        """Apply field changes to a stored row, keeping the indexes right."""
        indexes = self._indexes.get(resource, {})
        for col, value in changes.items():
            index = indexes.get(col)
            if index is not None:
                old_key = _index_key(entity.values.get(col))
                index.get(old_key, set()).discard(entity.id)
                index.setdefault(_index_key(value), set()).add(entity.id)
            entity.values[col] = value

    def delete(self, resource: str, entity_id: int) -> Entity | None:
        """Remove a row; returns it, or ``None`` when it did not exist."""
        entity = self.tables[resource].pop(entity_id, None)
        if entity is not None:
            for col, index in self._indexes.get(resource, {}).items():
                index.get(_index_key(entity.values.get(col)), set()).discard(entity_id)
        return entity

    def indexed(self, resource: str, column: str) -> bool:
        """Whether equality lookups on that column are indexed."""
        return column in self._indexes.get(resource, {})

    def find(self, resource: str, column: str, value: Scalar) -> list[Entity]:
        """Rows whose column equals ``value`` (case-insensitive, like MySQL), in id order."""
        index = self._indexes.get(resource, {}).get(column)
        table = self.tables[resource]
        if index is None:
            key = _index_key(value)
            return [e for e in table.values() if _index_key(e.values.get(column)) == key]
        return [table[i] for i in sorted(index.get(_index_key(value), ())) if i in table]

    def find_one(self, resource: str, column: str, value: Scalar) -> Entity | None:
        """The first row whose column equals ``value``."""
        rows = self.find(resource, column, value)
        return rows[0] if rows else None

    def config_value(self, name: str) -> str | None:
        """A ``configurations`` value by name (``None`` when the key does not exist)."""
        row = self.find_one("configurations", "name", name)
        return None if row is None else row.text("value")

    # -- associations -----------------------------------------------------------------------------

    def association_rows(self, resource: str, entity: Entity, name: str) -> list[AssocRow]:
        """An association's rows; the ones PrestaShop computes from other tables are computed here."""
        if resource == "orders" and name == "order_rows":
            return [_order_row(d) for d in self.find("order_details", "id_order", str(entity.id))]
        if resource == "products" and name == "combinations":
            return [{"id": str(c.id)} for c in self.find("combinations", "id_product", str(entity.id))]
        if resource == "products" and name == "stock_availables":
            rows = self.find("stock_availables", "id_product", str(entity.id))
            return [{"id": str(s.id), "id_product_attribute": s.text("id_product_attribute")} for s in rows]
        return entity.assoc.get(name, [])

    def iter_ids(self, resource: str) -> Iterator[int]:
        """Ids in ascending order."""
        return iter(sorted(self.tables[resource]))


def _order_row(detail: Entity) -> AssocRow:
    # Order::getWsOrderRows selects these columns of order_detail (reference §2.1).
    v = detail.values
    return {
        "id": str(detail.id),
        "product_id": _s(v.get("product_id")),
        "product_attribute_id": _s(v.get("product_attribute_id")),
        "product_quantity": _s(v.get("product_quantity")),
        "product_name": _s(v.get("product_name")),
        "product_reference": _s(v.get("product_reference")),
        "product_ean13": _s(v.get("product_ean13")),
        "product_isbn": _s(v.get("product_isbn")),
        "product_upc": _s(v.get("product_upc")),
        "product_price": _s(v.get("product_price")),
        "id_customization": _s(v.get("id_customization")),
        "unit_price_tax_incl": _s(v.get("unit_price_tax_incl")),
        "unit_price_tax_excl": _s(v.get("unit_price_tax_excl")),
    }


def _s(value: Value) -> str:
    if value is None or isinstance(value, dict):
        return ""
    return str(value)
