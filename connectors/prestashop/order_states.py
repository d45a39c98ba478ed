"""Order states resolved from the shop itself, never from hard-coded ids.

Order-state ids are shop data: a default install numbers 13 states one way, a shop upgraded from 1.6
another, and merchants add their own. A :class:`OrderStateCatalogue` is built from the shop's
``order_states`` (with their flags) and the ``PS_OS_*`` configuration values that name the standard
ones, so "Shipped" is whatever id ``PS_OS_SHIPPING`` holds on that shop.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from connectors.prestashop.models import OrderState


class StandardState(StrEnum):
    """The configuration keys that name PrestaShop's standard order states."""

    AWAITING_CHEQUE = "PS_OS_CHEQUE"
    PAYMENT_ACCEPTED = "PS_OS_PAYMENT"
    PROCESSING = "PS_OS_PREPARATION"
    SHIPPED = "PS_OS_SHIPPING"
    DELIVERED = "PS_OS_DELIVERED"
    CANCELED = "PS_OS_CANCELED"
    REFUNDED = "PS_OS_REFUND"
    PAYMENT_ERROR = "PS_OS_ERROR"
    BACKORDER_PAID = "PS_OS_OUTOFSTOCK_PAID"
    AWAITING_BANK_WIRE = "PS_OS_BANKWIRE"
    REMOTE_PAYMENT_ACCEPTED = "PS_OS_WS_PAYMENT"
    BACKORDER_UNPAID = "PS_OS_OUTOFSTOCK_UNPAID"
    AWAITING_COD = "PS_OS_COD_VALIDATION"


class UnknownOrderStateError(LookupError):
    """The shop has no state for this key or id (a configuration problem of that shop)."""


@dataclass(frozen=True)
class OrderStateCatalogue:
    """The shop's order states by id, and which of them the standard ``PS_OS_*`` keys name."""

    states: Mapping[int, OrderState]
    standard: Mapping[StandardState, int]

    @classmethod
    def build(cls, states: Iterable[OrderState], configuration: Mapping[str, str]) -> OrderStateCatalogue:
        """From the shop's order_states and its ``PS_OS_*`` configuration values (name → value).

        Keys whose value is missing, not a number or not an existing state are left out, so
        :meth:`id_for` reports them instead of returning a wrong id.
        """
        by_id = {state.id: state for state in states}
        standard: dict[StandardState, int] = {}
        for key in StandardState:
            value = configuration.get(key.value, "").strip()
            if value.isdigit() and int(value) in by_id:
                standard[key] = int(value)
        return cls(states=by_id, standard=standard)

    def id_for(self, key: StandardState) -> int:
        """The id of the state ``key`` names on this shop; raises UnknownOrderStateError."""
        try:
            return self.standard[key]
        except KeyError:
            raise UnknownOrderStateError(f"the shop's configuration has no valid {key.value}") from None

    def state(self, id_state: int) -> OrderState:
        """The state with this id; raises UnknownOrderStateError."""
        try:
            return self.states[id_state]
        except KeyError:
            raise UnknownOrderStateError(f"the shop has no order state {id_state}") from None

    def key_of(self, id_state: int) -> StandardState | None:
        """The standard key naming this state, or None for a custom state."""
        for key, value in self.standard.items():
            if value == id_state:
                return key
        return None

    def matching(
        self,
        *,
        paid: bool | None = None,
        shipped: bool | None = None,
        delivery: bool | None = None,
        logable: bool | None = None,
        invoice: bool | None = None,
        include_deleted: bool = False,
    ) -> list[OrderState]:
        """States whose flags match every given value (None = don't care), by ascending id."""
        wanted = {
            "paid": paid,
            "shipped": shipped,
            "delivery": delivery,
            "logable": logable,
            "invoice": invoice,
        }
        found = [
            state
            for state in self.states.values()
            if (include_deleted or not state.deleted)
            and all(value is None or getattr(state, flag) == value for flag, value in wanted.items())
        ]
        return sorted(found, key=lambda state: state.id)
