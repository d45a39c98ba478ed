"""Status mapping: PrestaShop states and M3 codes → canonical status, write-back, and monotonic merging.

PrestaShop state ids are shop data, so every PrestaShop function takes the shop's
:class:`ShopStates` (its ``order_states`` with their flags, plus the ``PS_OS_*`` configuration values
that name the standard ones) and resolves a state by configuration key first, by flags second; no
numeric id appears in the rules.

Merging is per dimension: a dimension moves forward along its ``order`` or by an explicit
``transition`` of the rules file, otherwise it keeps its current value. That makes a late or replayed
event harmless (Delivered never goes back to Shipped).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from pipeline.errors import InvalidMessage
from rules import model
from rules.canonical_status import FulfillmentStatus, Lifecycle, OrderStatus, PaymentStatus, StatusUpdate


class OrderStateLike(Protocol):
    """What the rules read of a PrestaShop order state (``connectors.prestashop.models.OrderState`` fits)."""

    @property
    def id(self) -> int: ...
    @property
    def paid(self) -> bool: ...
    @property
    def shipped(self) -> bool: ...
    @property
    def delivery(self) -> bool: ...
    @property
    def logable(self) -> bool: ...
    @property
    def invoice(self) -> bool: ...
    @property
    def deleted(self) -> bool: ...


@dataclass(frozen=True)
class ShopState:
    """One of the shop's order states: its id, flags and the standard key naming it (None: custom)."""

    id: int
    key: str | None
    paid: bool = False
    shipped: bool = False
    delivery: bool = False
    logable: bool = False
    invoice: bool = False
    deleted: bool = False


@dataclass(frozen=True)
class ShopStates:
    """A shop's order-state catalogue, the input every PrestaShop status function needs.

    Build it with :meth:`build` from the shop's ``order_states`` and its configuration values (the
    processors read both from the webservice and cache them per shop).
    """

    by_id: Mapping[int, ShopState]
    by_key: Mapping[str, int]

    @classmethod
    def build(cls, states: Iterable[OrderStateLike], configuration: Mapping[str, str]) -> ShopStates:
        """From the shop's order states and its configuration (name → value; only ``PS_OS_*`` are read).

        A ``PS_OS_*`` value that is missing, not a number or not an existing state is ignored, so that
        key simply cannot be resolved (rather than resolving to a wrong state).
        """
        flags = {state.id: state for state in states}
        by_key: dict[str, int] = {}
        for name, value in configuration.items():
            text = value.strip()
            if name.startswith("PS_OS_") and text.isdigit() and int(text) in flags:
                by_key[name] = int(text)
        key_of = {state_id: key for key, state_id in sorted(by_key.items())}
        by_id = {
            state.id: ShopState(
                id=state.id,
                key=key_of.get(state.id),
                paid=bool(state.paid),
                shipped=bool(state.shipped),
                delivery=bool(state.delivery),
                logable=bool(state.logable),
                invoice=bool(state.invoice),
                deleted=bool(state.deleted),
            )
            for state in flags.values()
        }
        return cls(by_id=by_id, by_key=by_key)

    def state(self, id_state: int) -> ShopState:
        """The state with this id; InvalidMessage ``unknown_order_state`` when the shop has none."""
        try:
            return self.by_id[id_state]
        except KeyError:
            raise InvalidMessage(
                "unknown_order_state",
                f"the shop has no order state {id_state} (known: {sorted(self.by_id)})",
                field_path="current_state",
            ) from None

    def matching(self, flags: model.StateFlags) -> list[ShopState]:
        """Non-deleted states whose flags equal every flag given, by ascending id."""
        return [
            state
            for _, state in sorted(self.by_id.items())
            if not state.deleted and _flags_match(state, flags)
        ]


def _flags_match(state: ShopState, flags: model.StateFlags) -> bool:
    wanted = {
        "paid": flags.paid,
        "shipped": flags.shipped,
        "delivery": flags.delivery,
        "logable": flags.logable,
        "invoice": flags.invoice,
    }
    return all(value is None or getattr(state, name) == value for name, value in wanted.items())


def _update(target: model.StatusTarget) -> StatusUpdate:
    return StatusUpdate(payment=target.payment, fulfillment=target.fulfillment, lifecycle=target.lifecycle)


@dataclass(frozen=True)
class ResolvedSourceStatus:
    """A source status and what it means: ``code`` is the config key (or the id for a custom state)."""

    code: str
    update: StatusUpdate
    mapped: bool


class _Progression:
    """One dimension's allowed moves."""

    def __init__(self, progression: model.Progression) -> None:
        self._rank = {symbol: index for index, symbol in enumerate(progression.order)}
        self._extra = {
            (source, target)
            for transition in progression.transitions
            for source in transition.from_
            for target in transition.to
        }

    def allows(self, current: str, new: str) -> bool:
        """True when moving ``current`` → ``new`` is a forward move or an explicit transition."""
        if current == "UNKNOWN":
            return new != "UNKNOWN"
        if new in ("UNKNOWN", current):
            return False
        if current in self._rank and new in self._rank and self._rank[new] > self._rank[current]:
            return True
        return (current, new) in self._extra


class MergeOutcome(StrEnum):
    """What merging an update did."""

    CHANGED = "changed"
    UNCHANGED = "unchanged"
    """Every dimension the update spoke about already had that value."""
    REFUSED = "refused"
    """At least one dimension would have moved backwards (a late or replayed event) and kept its value."""


@dataclass(frozen=True)
class MergeResult:
    """The merged status and whether (and how) it differs from the current one."""

    status: OrderStatus
    outcome: MergeOutcome
    refused: tuple[str, ...] = ()
    """Dimensions whose move was refused, e.g. ``("fulfillment",)``."""


class StatusRules:
    """The status section of the rules as operations (build through :class:`rules.engine.Rules`)."""

    def __init__(self, rules: model.StatusRules) -> None:
        self._rules = rules
        self._payment = _Progression(rules.progressions.payment)
        self._fulfillment = _Progression(rules.progressions.fulfillment)
        self._lifecycle = _Progression(rules.progressions.lifecycle)
        self._by_key = {rule.key: rule for rule in rules.prestashop.states if rule.key is not None}
        self._by_flags = [rule for rule in rules.prestashop.states if rule.flags is not None]

    # --- PrestaShop → canonical ------------------------------------------------------------------------

    def from_prestashop(self, id_state: int, states: ShopStates) -> ResolvedSourceStatus:
        """What the shop's state ``id_state`` means, resolved by its configuration key, else its flags.

        Raises InvalidMessage ``unknown_order_state`` when the shop has no such state, and
        ``unmapped_status`` when no rule matches and the rules say ``unmapped: invalid``; with
        ``unmapped: keep`` an unmatched state yields an empty update (``mapped=False``).
        """
        state = states.state(id_state)
        code = state.key or str(state.id)
        if state.key is not None and state.key in self._by_key:
            return ResolvedSourceStatus(code=code, update=_update(self._by_key[state.key]), mapped=True)
        for rule in self._by_flags:
            assert rule.flags is not None  # by construction of _by_flags
            if _flags_match(state, rule.flags):
                return ResolvedSourceStatus(code=code, update=_update(rule), mapped=True)
        if self._rules.prestashop.unmapped is model.UnmappedPolicy.INVALID:
            raise InvalidMessage(
                "unmapped_status",
                f"PrestaShop order state {code} matches no status rule (add one to the rules file)",
                field_path="current_state",
                details={"id_order_state": str(id_state)},
            )
        return ResolvedSourceStatus(code=code, update=StatusUpdate(), mapped=False)

    # --- M3 → canonical --------------------------------------------------------------------------------

    def from_m3(self, orsl: str, orst: str, order_stop: str = "") -> ResolvedSourceStatus:
        """What an M3 order head's lowest/highest line status (ORSL/ORST) and order stop (OBLC) mean.

        Also usable for one line by passing its ORST twice. Raises InvalidMessage ``wrong_type`` when a
        status is not two digits, ``unmapped_status`` when no rule matches.
        """
        low_code, high_code = orsl.strip(), orst.strip()
        for name, code in (("ORSL", low_code), ("ORST", high_code)):
            if len(code) != 2 or not code.isdigit():
                raise InvalidMessage(
                    "wrong_type",
                    f"{name} must be a two-digit M3 status, got {code!r}",
                    field_path=name,
                    details={"expected": "two digits"},
                )
        low, high = int(low_code[0]), int(high_code[1])
        stop = order_stop.strip() not in ("", "0")
        for rule in self._rules.m3.rules:
            if _m3_matches(rule, low_code, high_code, low, high):
                update = _update(rule)
                if stop:
                    update = _overlay(update, _update(self._rules.m3.order_stop))
                code = f"{low_code}/{high_code}" + (f" OBLC={order_stop.strip()}" if stop else "")
                return ResolvedSourceStatus(code=code, update=update, mapped=True)
        raise InvalidMessage(
            "unmapped_status",
            f"M3 status ORSL={low_code} ORST={high_code} matches no status rule",
            field_path="ORST",
        )

    # --- merging ---------------------------------------------------------------------------------------

    def merge(self, current: OrderStatus, update: StatusUpdate) -> MergeResult:
        """``current`` moved by ``update``, each dimension only forward or by an explicit transition.

        Pure; a refused dimension keeps its current value and is named in the result so callers can
        count late events.
        """
        refused: list[str] = []
        payment = current.payment
        if update.payment is not None and update.payment != current.payment:
            if self._payment.allows(current.payment, update.payment):
                payment = update.payment
            else:
                refused.append("payment")
        fulfillment = current.fulfillment
        if update.fulfillment is not None and update.fulfillment != current.fulfillment:
            if self._fulfillment.allows(current.fulfillment, update.fulfillment):
                fulfillment = update.fulfillment
            else:
                refused.append("fulfillment")
        lifecycle = current.lifecycle
        if update.lifecycle is not None and update.lifecycle != current.lifecycle:
            if self._lifecycle.allows(current.lifecycle, update.lifecycle):
                lifecycle = update.lifecycle
            else:
                refused.append("lifecycle")
        merged = OrderStatus(payment=payment, fulfillment=fulfillment, lifecycle=lifecycle)
        if refused:
            outcome = MergeOutcome.REFUSED
        elif merged == current:
            outcome = MergeOutcome.UNCHANGED
        else:
            outcome = MergeOutcome.CHANGED
        return MergeResult(status=merged, outcome=outcome, refused=tuple(refused))

    def allows(self, dimension: str, current: str, new: str) -> bool:
        """Whether a dimension (``payment``/``fulfillment``/``lifecycle``) may go ``current`` → ``new``."""
        progression = {
            "payment": self._payment,
            "fulfillment": self._fulfillment,
            "lifecycle": self._lifecycle,
        }[dimension]
        return progression.allows(current, new)

    # --- canonical → PrestaShop ------------------------------------------------------------------------

    def writes_back(self, desired: OrderStatus) -> bool:
        """Whether any write-back rule's ``when`` holds for ``desired``: if none does, no shop state can
        ever be written for it, whatever the order's current state (so it needs no read of the order)."""
        return any(_when_holds(rule.when, desired) for rule in self._rules.prestashop.writeback)

    def prestashop_target(self, desired: OrderStatus, current_state: int, states: ShopStates) -> int | None:
        """The shop state to write so its order reflects ``desired``, or None when no write is needed.

        Rules are tried in file order; a rule applies when its ``when`` holds for ``desired`` and its
        state would move the shop's order forward from ``current_state`` (merging the state's meaning
        into the current state's meaning changes something and refuses nothing). So nothing is written
        when the shop is already there or beyond. Raises InvalidMessage ``unknown_order_state`` when
        the shop lacks ``current_state``.
        """
        current = self.from_prestashop(current_state, states).update.as_status()
        for rule in self._rules.prestashop.writeback:
            if not _when_holds(rule.when, desired):
                continue
            target = self._writeback_state(rule, states)
            if target is None or target == current_state:
                continue
            meaning = self.from_prestashop(target, states).update
            result = self.merge(current, meaning)
            if result.outcome is MergeOutcome.CHANGED:
                return target
        return None

    def _writeback_state(self, rule: model.WritebackRule, states: ShopStates) -> int | None:
        if rule.key in states.by_key:
            return states.by_key[rule.key]
        if rule.flags is not None:
            found = states.matching(rule.flags)
            if found:
                return found[0].id
        return None


def _m3_matches(rule: model.M3StatusRule, low_code: str, high_code: str, low: int, high: int) -> bool:
    del low_code  # codes match the head's highest status (ORST); kept in the signature for clarity
    checks = (
        rule.codes is None or high_code in rule.codes,
        rule.low_min is None or low >= rule.low_min,
        rule.low_max is None or low <= rule.low_max,
        rule.high_min is None or high >= rule.high_min,
        rule.high_max is None or high <= rule.high_max,
    )
    return all(checks)


def _overlay(base: StatusUpdate, top: StatusUpdate) -> StatusUpdate:
    return StatusUpdate(
        payment=top.payment or base.payment,
        fulfillment=top.fulfillment or base.fulfillment,
        lifecycle=top.lifecycle or base.lifecycle,
    )


def _when_holds(when: model.WritebackWhen, status: OrderStatus) -> bool:
    return (
        (when.payment is None or when.payment == status.payment)
        and (when.fulfillment is None or when.fulfillment == status.fulfillment)
        and (when.lifecycle is None or when.lifecycle == status.lifecycle)
    )


__all__ = [
    "FulfillmentStatus",
    "Lifecycle",
    "MergeOutcome",
    "MergeResult",
    "OrderStateLike",
    "OrderStatus",
    "PaymentStatus",
    "ResolvedSourceStatus",
    "ShopState",
    "ShopStates",
    "StatusRules",
    "StatusUpdate",
]
