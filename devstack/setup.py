"""Make the two sandboxes one world: a shared catalogue, and the shop's webhooks sent to the receiver.

The sandboxes are seeded independently: the shop sells ``PSI-00001`` and ``PSI-00001-M-RED``, M3 knows
``SKU-1000``. A real integration starts from a catalogue both systems agree on (the reference typed in
the shop is the M3 item number, which is what ``rules`` variants assume), so this step gives the shop's
sellable units (products without combinations, and combinations) the references of M3's items, in
order: M3 item *i* becomes unit *i*. Units beyond M3's items keep their ``PSI-`` reference: the shop sells
them but M3 does not know them (what the demo's failing order uses). Only then does the shop start
sending webhooks to the receiver, so these catalogue edits never enter the pipeline.

Run as ``python -m devstack.setup ...`` (the ``sandbox-setup`` task of ``dev up``); it writes the
resulting catalogue as JSON (``--catalogue-out``) for the traffic generator and the demo.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from connectors.infor.gateway import open_gateway
from connectors.infor.ionapi import load_ionapi
from devstack.sandbox_admin import JsonObject, PrestaShopSandboxAdmin
from devstack.services import INFOR_CONO, INFOR_DIVI


@dataclass(frozen=True)
class InforItem:
    """An M3 item as the catalogue needs it."""

    item_number: str
    name: str
    sellable: bool
    """Status 20 and sales item: M3 takes order lines for it."""


@dataclass(frozen=True)
class ShopUnit:
    """A sellable unit of the shop: a product without combinations, or one combination."""

    product_id: int
    combination_id: int
    reference: str
    name: str


@dataclass(frozen=True)
class CatalogueEntry:
    """A shop unit and the M3 item it sells (``item_number`` empty: M3 does not know it)."""

    product_id: int
    combination_id: int
    reference: str
    name: str
    item_number: str = ""
    sellable: bool = False


@dataclass(frozen=True)
class Catalogue:
    """The shared catalogue: units M3 knows, units only the shop knows, M3 items the shop lacks."""

    matched: tuple[CatalogueEntry, ...]
    shop_only: tuple[CatalogueEntry, ...]
    infor_only: tuple[str, ...]

    def to_json(self) -> JsonObject:
        """The catalogue file's content."""
        return {
            "matched": [asdict(entry) for entry in self.matched],
            "shop_only": [asdict(entry) for entry in self.shop_only],
            "infor_only": list(self.infor_only),
        }

    @classmethod
    def from_json(cls, data: JsonObject) -> Catalogue:
        """Read back what :meth:`to_json` wrote."""
        return cls(
            matched=tuple(CatalogueEntry(**entry) for entry in data["matched"]),
            shop_only=tuple(CatalogueEntry(**entry) for entry in data["shop_only"]),
            infor_only=tuple(data["infor_only"]),
        )

    @classmethod
    def load(cls, path: Path) -> Catalogue:
        """Read a catalogue file."""
        return cls.from_json(json.loads(path.read_text(encoding="utf-8")))


def shop_units(products: Sequence[JsonObject], combinations: Sequence[JsonObject]) -> list[ShopUnit]:
    """The shop's sellable units in (product id, combination id) order, from the admin API's rows."""
    by_product: dict[int, list[JsonObject]] = {}
    for combination in combinations:
        by_product.setdefault(int(combination["id_product"]), []).append(combination)
    units: list[ShopUnit] = []
    for product in sorted(products, key=lambda row: int(row["id"])):
        product_id = int(product["id"])
        name = _text(product.get("name"))
        combos = sorted(by_product.get(product_id, []), key=lambda row: int(row["id"]))
        if not combos:
            units.append(ShopUnit(product_id, 0, str(product.get("reference") or ""), name))
            continue
        for combination in combos:
            units.append(
                ShopUnit(product_id, int(combination["id"]), str(combination.get("reference") or ""), name)
            )
    return units


def _text(value: object) -> str:
    # i18n fields come back keyed by language id; the first language is the shop's default.
    if isinstance(value, dict):
        return str(next(iter(value.values()), ""))
    return str(value or "")


def assign_items(units: Sequence[ShopUnit], items: Sequence[InforItem]) -> Catalogue:
    """Unit *i* sells item *i* (items sorted by number); the rest of either side is left unmatched."""
    ordered = sorted(items, key=lambda item: item.item_number)
    matched = tuple(
        CatalogueEntry(
            unit.product_id, unit.combination_id, item.item_number, unit.name, item.item_number, item.sellable
        )
        for unit, item in zip(units, ordered, strict=False)
    )
    shop_only = tuple(
        CatalogueEntry(unit.product_id, unit.combination_id, unit.reference, unit.name)
        for unit in units[len(matched) :]
    )
    infor_only = tuple(item.item_number for item in ordered[len(matched) :])
    return Catalogue(matched=matched, shop_only=shop_only, infor_only=infor_only)


async def infor_items(ionapi: Path) -> list[InforItem]:
    """Every item of the stack's M3 company, through the ION API gateway (MMS200MI LstItmByItm)."""
    gateway = open_gateway(load_ionapi(ionapi))
    try:
        mi = gateway.mi(cono=INFOR_CONO, divi=INFOR_DIVI)
        items: list[InforItem] = []
        async for record in mi.paginate(
            "MMS200MI", "LstItmByItm", {"ITNO": "0"}, restart_from={"ITNO": "ITNO"}, page_size=500
        ):
            items.append(
                InforItem(
                    item_number=record.get("ITNO", "").strip(),
                    name=record.get("ITDS", "").strip(),
                    sellable=record.get("STAT", "") == "20" and record.get("SALE", "") == "1",
                )
            )
        return [item for item in items if item.item_number]
    finally:
        await gateway.aclose()


def apply_catalogue(shop: PrestaShopSandboxAdmin, catalogue: Catalogue) -> int:
    """Write the matched references into the shop; returns how many units changed."""
    changed = 0
    for entry in catalogue.matched:
        if entry.combination_id:
            shop.set_combination_reference(entry.combination_id, entry.reference)
        else:
            shop.edit_product(entry.product_id, {"reference": entry.reference})
        changed += 1
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    """The ``sandbox-setup`` task; exits 0 once the catalogue is shared and webhooks are on."""
    parser = argparse.ArgumentParser(prog="devstack.setup", description=__doc__)
    parser.add_argument("--prestashop", required=True, help="the shop sandbox's root URL")
    parser.add_argument("--infor", required=True, help="the Infor sandbox's root URL")
    parser.add_argument("--ionapi", type=Path, required=True, help="the .ionapi file the Infor sandbox wrote")
    parser.add_argument(
        "--ws-key-file", type=Path, required=True, help="file holding the shop's webservice key"
    )
    parser.add_argument("--webhook-url", required=True, help="where the shop sends its webhooks")
    parser.add_argument(
        "--webhook-secret-file", type=Path, required=True, help="file holding the whsec_ secret"
    )
    parser.add_argument("--catalogue-out", type=Path, required=True, help="where to write the catalogue JSON")
    args = parser.parse_args(argv)
    ws_key = args.ws_key_file.read_text(encoding="utf-8").strip()
    secret = args.webhook_secret_file.read_text(encoding="utf-8").strip()
    items = asyncio.run(infor_items(args.ionapi))
    with httpx.Client(base_url=args.prestashop, timeout=30.0) as http:
        shop = PrestaShopSandboxAdmin(http, ws_key=ws_key)
        units = shop_units(shop.rows("products"), shop.rows("combinations"))
        catalogue = assign_items(units, items)
        changed = apply_catalogue(shop, catalogue)
        args.catalogue_out.parent.mkdir(parents=True, exist_ok=True)
        args.catalogue_out.write_text(json.dumps(catalogue.to_json(), indent=1) + "\n", encoding="utf-8")
        print(
            f"catalogue: {changed} shop units now carry M3 item numbers; "
            f"{len(catalogue.shop_only)} units only the shop sells; "
            f"{len(catalogue.infor_only)} M3 items the shop does not sell"
        )
        if catalogue.infor_only:
            print(
                "warning: stock and item changes of the M3 items the shop does not sell will be "
                "dead-lettered (unknown_sku); start the shop with more products"
            )
        shop.set_webhooks(args.webhook_url, [secret])
        print(f"shop webhooks -> {args.webhook_url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
