"""The warehouse simulation: customer order lines move 22 → 33 → 44 → 66 → 77 after configurable delays.

Each step advances every line of an order by at most one stage (infor.md §2.5 simulator semantics):

- 22 → 33 allocate, only when the line's warehouse balance has enough allocatable stock (ALQT grows);
- 33 → 44 picking list;
- 44 → 66 deliver: the lines reaching 66 together form one delivery (DLIX) in a new shipment (CONN)
  with the order's delivery method (MODL), a forwarder (FWNO), a tracking number (ETRN) and a bill of
  lading (NBOL); on-hand (STQT) and allocated (ALQT) drop;
- 66 → 77 invoice: one invoice (IVNO, YEA4) per delivery.

An order becomes due ``step_delay_s`` after its last change; the admin API can pause the clock and
step orders by hand. Independently, every ``stock_drift_interval_s`` (0 = off) a few random balances
get a receipt or a downward adjustment (never below what is allocated). Randomness is seeded.
"""

from __future__ import annotations

import asyncio
import random
import string
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

from sandbox.infor.m3_state import CustomerOrder, M3State, OrderLine

_FORWARDERS = {"UPS": "UPS", "DHL": "DHL", "PST": "POSTNL", "DPD": "DPD"}


@dataclass
class WarehouseConfig:
    """Timing knobs of the simulation."""

    step_delay_s: float = 0.2
    paused: bool = False
    stock_drift_interval_s: float = 5.0
    stock_drift_changes: int = 1

    def describe(self) -> dict[str, Any]:
        """The configuration as JSON."""
        return asdict(self)


class WarehouseSimulation:
    """Moves orders and stock on; ``run()`` is the background loop, ``step()`` the manual lever."""

    def __init__(
        self,
        state: M3State,
        config: WarehouseConfig,
        rng: random.Random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state = state
        self.config = config
        self.rng = rng
        self.clock = clock
        self._last_drift = clock()
        self.steps = 0

    def _tracking(self, modl: str) -> str:
        if modl == "UPS":
            return "1Z" + "".join(self.rng.choice(string.ascii_uppercase + string.digits) for _ in range(16))
        return "".join(self.rng.choice(string.digits) for _ in range(12))

    def advance(self, order: CustomerOrder) -> bool:
        """Move every line of ``order`` on by one stage where it can; True if anything changed."""
        state = self.state
        changed = False
        stamp = state.lmts()
        # Highest stages first, so a line moves at most one stage per step.
        for dlix in order.deliveries:
            delivery = state.deliveries[dlix]
            if delivery.ivno:
                continue
            lines = [
                line
                for line in order.lines
                if line.orst == "66" and any(p == line.ponr for p, _, _ in delivery.lines)
            ]
            if lines:
                for line in lines:
                    line.orst, line.ivqt, line.lmts = "77", line.orqt, stamp
                state.add_invoice(order, delivery, lines)
                changed = True
        shipping = [line for line in order.lines if line.orst == "44"]
        if shipping:
            for line in shipping:
                balance = state.balances.get((order.cono, line.whlo, line.itno))
                if balance is not None:
                    balance.stqt -= line.orqt
                    balance.alqt -= line.alqt
                    balance.oddt = state.today().strftime("%Y%m%d")
                    state.touch_balance(balance)
                line.orst, line.dlqt, line.alqt, line.lmts = "66", line.orqt, Decimal(0), stamp
            modl = order.head.modl
            state.add_delivery(order, shipping, (modl, _FORWARDERS.get(modl, modl), self._tracking(modl)))
            changed = True
        for line in order.lines:
            if line.orst == "33":
                line.orst, line.lmts = "44", stamp
                changed = True
        for line in order.lines:
            if line.orst == "22" and self._allocate(order, line):
                line.lmts = stamp
                changed = True
        if changed:
            state.order_changed(order)
        return changed

    def _allocate(self, order: CustomerOrder, line: OrderLine) -> bool:
        balance = self.state.balances.get((order.cono, line.whlo, line.itno))
        if balance is None or balance.allocatable < line.orqt:
            return False
        balance.alqt += line.orqt
        line.alqt = line.orqt
        line.orst = "33"
        self.state.touch_balance(balance)
        return True

    def tick(self) -> int:
        """Advance every due order once; the number of orders that changed."""
        now = self.clock()
        moved = 0
        for order in list(self.state.active_orders.values()):
            if order.next_step_at == 0.0:
                order.next_step_at = now + self.config.step_delay_s
            if order.next_step_at <= now and self.advance(order):
                order.next_step_at = now + self.config.step_delay_s
                moved += 1
        self.steps += 1
        return moved

    def step(self, times: int = 1) -> int:
        """Advance every active order ``times`` stages now, ignoring delays and pause; orders changed."""
        moved = 0
        for _ in range(times):
            for order in list(self.state.active_orders.values()):
                if self.advance(order):
                    moved += 1
        return moved

    def drift(self) -> int:
        """Random receipts (+1..50) or adjustments (-1..5, not below allocated); the balances changed."""
        balances = list(self.state.balances.values())
        if not balances:
            return 0
        for _ in range(self.config.stock_drift_changes):
            balance = self.rng.choice(balances)
            if self.rng.random() < 0.6:
                balance.stqt += self.rng.randint(1, 50)
                balance.iddt = self.state.today().strftime("%Y%m%d")
            else:
                balance.stqt = max(balance.alqt, balance.stqt - self.rng.randint(1, 5))
            self.state.touch_balance(balance)
        return self.config.stock_drift_changes

    async def run(self) -> None:
        """The background loop: ticks a few times per step delay, drifts stock when due."""
        while True:
            await asyncio.sleep(max(0.01, min(0.05, self.config.step_delay_s / 4)))
            if self.config.paused:
                continue
            self.tick()
            interval = self.config.stock_drift_interval_s
            if interval > 0 and self.clock() - self._last_drift >= interval:
                self._last_drift = self.clock()
                self.drift()
