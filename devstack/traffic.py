"""``dev up --with-traffic RATE``: realistic shoppers in the shop and stock movements in Infor.

:class:`ShopperModel` (pure, seeded) decides each checkout: one to four lines of the shared catalogue
(products and combinations alike, so variants are common), mostly one unit each; a new customer
(registering at checkout, from a handful of countries) about a third of the time, else a returning
one (someone who already ordered in this run, or a customer the shop already had); the currency
(mostly EUR, some USD and GBP) and the payment method (card, paid at once; bank wire and cheque,
paid later). :class:`StockMovements` (pure, seeded) picks goods receipts and small counting
corrections for Infor's warehouse, so the shop's stock keeps moving and orders keep finding stock.

:class:`TrafficDriver` plays both against the sandboxes' admin APIs at ``rate`` orders per second
(and about one stock movement per second), on one thread, until stopped; every ``report_every_s`` it
reports what it did through ``emit``.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx

from devstack.sandbox_admin import (
    CheckoutRequest,
    InforSandboxAdmin,
    NewCustomerRequest,
    OrderLineRequest,
    PrestaShopSandboxAdmin,
    SandboxAdminError,
)
from devstack.setup import Catalogue, CatalogueEntry
from devstack.stack import StackEndpoints

CURRENCIES: tuple[tuple[str, float], ...] = (("EUR", 0.7), ("USD", 0.2), ("GBP", 0.1))
"""Currency → share of checkouts (the sandbox shop's currencies)."""
PAYMENTS: tuple[tuple[str, float], ...] = (
    ("stripe_official", 0.6),
    ("ps_wirepayment", 0.25),
    ("ps_checkpayment", 0.15),
)
"""Payment module → share: a card module is paid at checkout, wire and cheque are awaited."""
NEW_CUSTOMER_SHARE = 0.3
RETURNING_FROM_RUN_SHARE = 0.5
"""Of the returning customers, the share who already ordered in this run (the rest: the shop's own)."""

_FIRST_NAMES = (
    "Emma",
    "Lucas",
    "Lea",
    "Hugo",
    "Mia",
    "Noah",
    "Sofia",
    "Liam",
    "Clara",
    "Jonas",
    "Ava",
    "Marco",
)
_LAST_NAMES = (
    "Bernard",
    "Schmidt",
    "Rossi",
    "Garcia",
    "Dubois",
    "Weber",
    "Smith",
    "Jansen",
    "Moreau",
    "Novak",
)
_ADDRESSES: tuple[tuple[str, str, str, str], ...] = (
    ("12 rue de Rivoli", "Paris", "75004", "FR"),
    ("8 quai Saint-Antoine", "Lyon", "69002", "FR"),
    ("Friedrichstrasse 101", "Berlin", "10117", "DE"),
    ("Leopoldstrasse 5", "Muenchen", "80802", "DE"),
    ("Calle de Alcala 20", "Madrid", "28014", "ES"),
    ("Via Roma 3", "Torino", "10121", "IT"),
    ("Rue Neuve 14", "Bruxelles", "1000", "BE"),
    ("221B Baker Street", "London", "NW1 6XE", "GB"),
)


def _weighted(rng: random.Random, choices: Sequence[tuple[str, float]]) -> str:
    return rng.choices([name for name, _ in choices], weights=[weight for _, weight in choices])[0]


@dataclass(frozen=True)
class StockMovement:
    """A change of one item's on-hand quantity in one warehouse (a receipt, or a counting correction)."""

    warehouse: str
    item_number: str
    delta: int


class ShopperModel:
    """Decides realistic checkouts (see the module docstring); pure given its random source."""

    def __init__(
        self,
        rng: random.Random,
        units: Sequence[CatalogueEntry],
        shop_customer_ids: Sequence[int],
        *,
        tag: str,
    ) -> None:
        if not units:
            raise ValueError("the catalogue has no unit both systems sell")
        self._rng = rng
        self._units = list(units)
        self._shop_customers = list(shop_customer_ids)
        self._tag = tag
        self._new = 0
        self.returning_emails: list[str] = []
        """E-mails of the customers this model created (they come back as returning customers)."""

    def next_checkout(self, known_customer_ids: Sequence[int] = ()) -> CheckoutRequest:
        """The next shopper's checkout; ``known_customer_ids`` are customers who ordered in this run."""
        rng = self._rng
        count = rng.choices((1, 2, 3, 4), weights=(50, 30, 15, 5))[0]
        picked = rng.sample(self._units, min(count, len(self._units)))
        lines = tuple(
            OrderLineRequest(
                product_id=unit.product_id,
                combination_id=unit.combination_id,
                quantity=rng.choices((1, 2, 3), weights=(75, 20, 5))[0],
            )
            for unit in picked
        )
        currency = _weighted(rng, CURRENCIES)
        payment = _weighted(rng, PAYMENTS)
        customer_id: int | None = None
        new_customer: NewCustomerRequest | None = None
        pool = list(known_customer_ids) if rng.random() < RETURNING_FROM_RUN_SHARE else []
        pool = pool or self._shop_customers
        if rng.random() < NEW_CUSTOMER_SHARE or not pool:
            new_customer = self._new_customer()
        else:
            customer_id = rng.choice(pool)
        return CheckoutRequest(
            lines=lines,
            currency=currency,
            payment_module=payment,
            customer_id=customer_id,
            new_customer=new_customer,
        )

    def _new_customer(self) -> NewCustomerRequest:
        rng = self._rng
        self._new += 1
        first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
        street, city, postcode, country = rng.choice(_ADDRESSES)
        email = f"{first}.{last}.{self._tag}{self._new}@example.com".lower()
        return NewCustomerRequest(
            email=email,
            firstname=first,
            lastname=last,
            address1=street,
            city=city,
            postcode=postcode,
            country_iso=country,
        )


class StockMovements:
    """Goods receipts (most) and small downward counting corrections (some) of catalogue items."""

    def __init__(self, rng: random.Random, item_numbers: Sequence[str], *, warehouse: str = "001") -> None:
        if not item_numbers:
            raise ValueError("no item to move")
        self._rng = rng
        self._items = list(item_numbers)
        self._warehouse = warehouse

    def next_movement(self) -> StockMovement:
        """The next movement: +5..+40 (a receipt) four times in five, else -1..-3."""
        rng = self._rng
        item = rng.choice(self._items)
        delta = rng.randint(5, 40) if rng.random() < 0.8 else -rng.randint(1, 3)
        return StockMovement(self._warehouse, item, delta)


@dataclass
class TrafficCounts:
    """What the driver did so far."""

    orders: int = 0
    new_customers: int = 0
    with_variants: int = 0
    stock_movements: int = 0
    failures: int = 0
    currencies: Counter[str] | None = None


class TrafficDriver:
    """Places orders at ``rate`` per second and moves Infor stock about once a second, on one thread."""

    def __init__(
        self,
        shop: PrestaShopSandboxAdmin,
        infor: InforSandboxAdmin,
        shoppers: ShopperModel,
        movements: StockMovements,
        *,
        rate: float,
        emit: Callable[[str], None],
        report_every_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self._shop = shop
        self._infor = infor
        self._shoppers = shoppers
        self._movements = movements
        self._rate = rate
        self._emit = emit
        self._report_every = report_every_s
        self._clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="devstack-traffic", daemon=True)
        self._customers: list[int] = []
        self.counts = TrafficCounts(currencies=Counter())
        self._closers: list[Callable[[], None]] = []

    @classmethod
    def for_stack(
        cls,
        endpoints: StackEndpoints,
        *,
        rate: float,
        emit: Callable[[str], None],
        seed: int | None = None,
    ) -> TrafficDriver:
        """A driver for a running stack (its ``stack.json`` endpoints), with its own HTTP clients."""
        rng = random.Random(seed)  # noqa: S311 - shopper behaviour, not secrets
        catalogue = Catalogue.load(Path(endpoints.catalogue_path))
        units = [entry for entry in catalogue.matched if entry.sellable]
        shop_http = httpx.Client(base_url=endpoints.prestashop_url, timeout=30.0)
        infor_http = httpx.Client(base_url=endpoints.infor_url, timeout=30.0)
        shop = PrestaShopSandboxAdmin(shop_http)
        customers = [int(row["id"]) for row in shop.rows("customers") if str(row.get("active", "1")) == "1"]
        tag = f"{rng.randrange(16**6):06x}"
        driver = cls(
            shop,
            InforSandboxAdmin(infor_http),
            ShopperModel(rng, units, customers, tag=tag),
            StockMovements(rng, [entry.item_number for entry in units]),
            rate=rate,
            emit=emit,
        )
        driver._closers += [shop_http.close, infor_http.close]
        return driver

    def start(self) -> TrafficDriver:
        """Start driving."""
        self._emit(f"traffic: {self._rate:g} orders/s and about one Infor stock movement per second")
        self._thread.start()
        return self

    def stop(self) -> TrafficCounts:
        """Stop driving; returns the counts."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30.0)
        for close in self._closers:
            close()
        return self.counts

    def _run(self) -> None:
        last = self._clock()
        owed = 0.0
        next_movement = last
        next_report = last + self._report_every
        while not self._stop.is_set():
            now = self._clock()
            owed = min(owed + (now - last) * self._rate, max(1.0, self._rate))  # no burst after a stall
            last = now
            while owed >= 1.0 and not self._stop.is_set():
                owed -= 1.0
                self._place_order()
            if now >= next_movement:
                next_movement = now + 1.0
                self._move_stock()
            if now >= next_report:
                next_report = now + self._report_every
                self._emit(self.describe())
            self._stop.wait(min(0.05, 1.0 / self._rate))

    def describe(self) -> str:
        """One line of what the driver did."""
        c = self.counts
        currencies = ", ".join(f"{n} {code}" for code, n in sorted((c.currencies or Counter()).items()))
        return (
            f"traffic: {c.orders} orders ({c.new_customers} new customers, {c.with_variants} with variants; "
            f"{currencies}), {c.stock_movements} Infor stock movements, {c.failures} failed calls"
        )

    def _place_order(self) -> None:
        checkout = self._shoppers.next_checkout(self._customers)
        try:
            order = self._shop.place_order(checkout)
        except (SandboxAdminError, httpx.HTTPError) as exc:
            self.counts.failures += 1
            if self.counts.failures <= 3:
                self._emit(f"traffic: order refused: {exc}")
            return
        self.counts.orders += 1
        if checkout.new_customer is not None:
            self.counts.new_customers += 1
            self._customers.append(int(order["id_customer"]))
        if any(line.combination_id for line in checkout.lines):
            self.counts.with_variants += 1
        if self.counts.currencies is not None:
            self.counts.currencies[checkout.currency] += 1

    def _move_stock(self) -> None:
        movement = self._movements.next_movement()
        try:
            balance = self._infor.balance(movement.warehouse, movement.item_number)
            if balance is None:
                return
            on_hand = Decimal(str(balance.get("STQT", "0")))
            allocated = Decimal(str(balance.get("ALQT", "0")))
            target = max(allocated, on_hand + movement.delta)
            self._infor.set_on_hand(movement.warehouse, movement.item_number, target)
        except (SandboxAdminError, httpx.HTTPError):
            self.counts.failures += 1
            return
        self.counts.stock_movements += 1
