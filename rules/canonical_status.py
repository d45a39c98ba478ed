"""The canonical order status vocabulary: three independent dimensions (CANONICAL.md, "Status").

The symbols equal the Avro enums ``PaymentStatus``, ``FulfillmentStatus`` and ``Lifecycle`` in
``schemas/avro/`` (a unit test holds them equal), so a value goes onto the wire as ``str(value)``.
``UNKNOWN`` is the Avro default symbol: "no statement yet", never a state an order moves to.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class PaymentStatus(StrEnum):
    """Payment: PENDING → AUTHORIZED → PARTIALLY_PAID → PAID → PARTIALLY_REFUNDED → REFUNDED; FAILED."""

    UNKNOWN = "UNKNOWN"
    PENDING = "PENDING"
    AUTHORIZED = "AUTHORIZED"
    PARTIALLY_PAID = "PARTIALLY_PAID"
    PAID = "PAID"
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"
    REFUNDED = "REFUNDED"
    FAILED = "FAILED"


class FulfillmentStatus(StrEnum):
    """Fulfilment dimension: UNFULFILLED → BACKORDERED → … → SHIPPED → DELIVERED; RETURNED."""

    UNKNOWN = "UNKNOWN"
    UNFULFILLED = "UNFULFILLED"
    BACKORDERED = "BACKORDERED"
    ALLOCATED = "ALLOCATED"
    PICKING = "PICKING"
    PARTIALLY_SHIPPED = "PARTIALLY_SHIPPED"
    SHIPPED = "SHIPPED"
    DELIVERED = "DELIVERED"
    RETURNED = "RETURNED"


class Lifecycle(StrEnum):
    """Lifecycle dimension: OPEN → ON_HOLD ↔ OPEN → CLOSED; CANCELLED (terminal)."""

    UNKNOWN = "UNKNOWN"
    OPEN = "OPEN"
    ON_HOLD = "ON_HOLD"
    CLOSED = "CLOSED"
    CANCELLED = "CANCELLED"


class Dimension(StrEnum):
    """The three status dimensions, as named in the rules file."""

    PAYMENT = "payment"
    FULFILLMENT = "fulfillment"
    LIFECYCLE = "lifecycle"


@dataclass(frozen=True)
class OrderStatus:
    """An order's status in all three dimensions (``UNKNOWN`` where nothing was said yet)."""

    payment: PaymentStatus = PaymentStatus.UNKNOWN
    fulfillment: FulfillmentStatus = FulfillmentStatus.UNKNOWN
    lifecycle: Lifecycle = Lifecycle.UNKNOWN


@dataclass(frozen=True)
class StatusUpdate:
    """What one source event says about an order: ``None`` in a dimension means "says nothing about it".

    A PrestaShop "Canceled" state, for example, speaks only about the lifecycle; merging it must leave
    the payment and fulfilment the order already had.
    """

    payment: PaymentStatus | None = None
    fulfillment: FulfillmentStatus | None = None
    lifecycle: Lifecycle | None = None

    def as_status(self) -> OrderStatus:
        """The update applied to an order nothing was known about (``UNKNOWN`` where it is silent)."""
        return OrderStatus(
            payment=self.payment or PaymentStatus.UNKNOWN,
            fulfillment=self.fulfillment or FulfillmentStatus.UNKNOWN,
            lifecycle=self.lifecycle or Lifecycle.UNKNOWN,
        )
