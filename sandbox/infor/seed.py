"""Deterministic seed data: the same seed number always yields the same companies, items and stock.

Company 100 (the service account's default, divisions AAA and BBB) holds the bulk: ``items`` sellable
items ``SKU-1000``.. plus the fixtures' ``SKU-1001`` "Blue mug" and ``SKU-2002`` "Red plate", customers
(among them the fixtures' ``PS000042`` Jane Doe), warehouses ``001`` and ``002`` with balances. A few
named items make tests readable: ``SKU-NOSTOCK`` (nothing on hand, so its order lines wait at 22) and
``SKU-BLOCKED`` (status 90, not sellable). Company 200 (division ZZZ) has a different, smaller
catalogue, so a client that forgets ``cono`` visibly reads the wrong company.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal

from sandbox.infor.m3_state import Balance, Company, Customer, Item, M3State, Warehouse

_WORDS = ("Blue", "Red", "Green", "Oak", "Steel", "Linen", "Glass", "Stone", "Cotton", "Copper")
_THINGS = ("mug", "plate", "lamp", "chair", "table", "towel", "vase", "bowl", "shelf", "rug")
_TOWNS = (
    ("Paris", "FR", "75002"),
    ("Lyon", "FR", "69001"),
    ("Berlin", "DE", "10115"),
    ("Madrid", "ES", "28001"),
)
_FIRST = ("Jane", "John", "Ana", "Luc", "Eva", "Max", "Ines", "Tom")
_LAST = ("Doe", "Martin", "Garcia", "Muller", "Rossi", "Dupont", "Smith", "Moreau")


@dataclass(frozen=True)
class SeedSpec:
    """How much to seed; the defaults fit the later volume tests (≥ 1,000 items)."""

    seed: int = 1
    items: int = 1000
    customers: int = 50


def seed_state(state: M3State, spec: SeedSpec) -> None:
    """Fill an empty state from ``spec``; no change notifications (nothing to push at start)."""
    rng = random.Random(spec.seed)
    state.add_company(Company(100, "Sandbox Retail", {"AAA": "Main division", "BBB": "Second division"}))
    state.add_company(Company(200, "Other Company", {"ZZZ": "Other division"}))
    for whlo, divi, name in (("001", "AAA", "Main warehouse"), ("002", "AAA", "Overflow warehouse")):
        state.add_warehouse(Warehouse(100, whlo, divi, "A01", name))
    state.add_warehouse(Warehouse(200, "900", "ZZZ", "Z01", "Other warehouse"))

    def item(cono: int, itno: str, itds: str, price: str, stat: str = "20", sale: str = "1") -> Item:
        return state.put_item(
            Item(
                cono,
                itno,
                itds,
                fuds=f"{itds} (sandbox)",
                itgr="GEN",
                itcl="PG1",
                price=Decimal(price),
                stat=stat,
                sale=sale,
            ),
            notify=False,
        )

    def stock(cono: int, whlo: str, itno: str, on_hand: int) -> None:
        state.put_balance(Balance(cono, whlo, itno, Decimal(on_hand)), notify=False)

    item(100, "SKU-1001", "Blue mug", "19.90")
    item(100, "SKU-2002", "Red plate", "9.90")
    item(100, "SKU-NOSTOCK", "Backordered lamp", "49.00")
    item(100, "SKU-BLOCKED", "Discontinued vase", "5.00", stat="90", sale="0")
    stock(100, "001", "SKU-1001", 125)
    stock(100, "001", "SKU-2002", 40)
    stock(100, "001", "SKU-NOSTOCK", 0)
    for n in range(spec.items):
        itno = f"SKU-{1000 + n}" if n != 1 else "SKU-1000-B"  # SKU-1001 is the fixture item above
        if (100, itno) in state.items:
            continue
        name = f"{rng.choice(_WORDS)} {rng.choice(_THINGS)} {n}"
        item(100, itno, name[:30], f"{rng.randint(100, 20000) / 100:.2f}")
        stock(100, "001", itno, rng.randint(0, 200))
        if rng.random() < 0.3:
            stock(100, "002", itno, rng.randint(0, 50))
    for n in range(20):
        itno = f"ZZ-{n:04d}"
        item(200, itno, f"Other company item {n}", "1.00")
        stock(200, "900", itno, 10)

    state.put_customer(
        Customer(
            100,
            "PS000042",
            "Jane Doe",
            "12 Rue de la Paix",
            pono="75002",
            town="Paris",
            cscd="FR",
            mail="jane.doe@example.com",
            phno="+33100000000",
        ),
        notify=False,
    )
    state.put_customer(Customer(100, "WEBSHOP", "Web shop generic customer", "Internet"), notify=False)
    state.put_customer(Customer(100, "BLOCKED01", "Blocked customer", "Nowhere 1", stat="90"), notify=False)
    for n in range(spec.customers):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        town, country, postcode = rng.choice(_TOWNS)
        state.put_customer(
            Customer(
                100,
                f"C{n + 1:09d}",
                f"{first} {last}",
                f"{rng.randint(1, 99)} Main street",
                pono=postcode,
                town=town,
                cscd=country,
                mail=f"{first.lower()}.{last.lower()}.{n}@example.com",
            ),
            notify=False,
        )
    state.put_customer(Customer(200, "PS000042", "Someone else entirely", "Other street 1"), notify=False)
