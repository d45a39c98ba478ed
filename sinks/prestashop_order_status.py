"""``canonical.order-status.v1`` → the shop order's state, through ``POST order_histories``, forward only.

A status change from the ERP (or the pipeline) becomes the shop state the rules' write-back names
(SHIPPED → PS_OS_SHIPPING, CANCELLED → PS_OS_CANCELED, ...; matched by configuration key and flags,
never by id), posted only when the order's current state differs and the move is allowed: no
dimension ever goes backwards (CANONICAL.md, "Status"). Otherwise the record is ``unchanged``, with the
reason in its facts (``already_there``, ``backwards``, ``no_state``).

Skipped: another shop's order (``not_ours``) and a change the shop itself reported (``echo``: the
shop is already in that state or beyond, and posting it again would re-run its side effects).

"Shipped" is not this sink's to write: the shipment (``canonical.shipment.v1``) announces it through
``prestashop-tracking``, which writes the tracking number first so the buyer's mail can show it. M3
reports the shipment and the order's new status together, so when both sinks wrote it they both read
"not shipped yet" and both posted it: the buyer got two mails and the order two history rows. A
change saying SHIPPED is therefore taken without its fulfilment dimension; one saying nothing else is
skipped (``shipment_announces``). Delivered, cancelled, paid and the rest stay here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

from rules.canonical_status import FulfillmentStatus, OrderStatus
from schemas.codec import AvroDatum
from sinks.base import Applied, SinkContext, SinkResources, Skip
from sinks.prestashop_target import (
    TARGET,
    OrderStateWriter,
    desired_status,
    facts,
    is_from_shop,
    open_shop_client,
    order_id_of,
)

NAME = "prestashop-status"
"""Stage name (consumer group ``sink-prestashop-status`` in the topic catalogue)."""
SOURCE_TOPIC = "canonical.order-status.v1"
RECORD = "OrderStatusChange"


@dataclass(frozen=True)
class StatusChange:
    """The sink's model of a status change: which shop order, and the status it should reflect."""

    order_key: str
    id_order: int
    desired: OrderStatus


def to_status_change(datum: AvroDatum, *, shop_id: int) -> StatusChange | Skip:
    """The change for this shop's order, or Skip (``echo``, ``not_ours``, ``shipment_announces``: only
    SHIPPED, which the shipment writes); InvalidMessage for a bad key."""
    if is_from_shop(datum):
        return Skip("echo")
    order_key = str(datum["order_key"])
    id_order = order_id_of(order_key, shop_id)
    if id_order is None:
        return Skip("not_ours")
    desired = desired_status(datum)
    if desired.fulfillment is FulfillmentStatus.SHIPPED:
        desired = replace(desired, fulfillment=FulfillmentStatus.UNKNOWN)
        if desired == OrderStatus():
            return Skip("shipment_announces")
    return StatusChange(order_key, id_order, desired)


class OrderStatusSink:
    """Makes the shop's order state reflect ``canonical.order-status.v1``, never moving it backwards."""

    name = NAME
    target = TARGET
    sources: tuple[str, ...] = (SOURCE_TOPIC,)
    record = RECORD
    coalesce_s: float | None = None

    def __init__(self, writer: OrderStateWriter, *, shop_id: int) -> None:
        self._writer = writer
        self._shop_id = shop_id

    def decode(self, datum: AvroDatum, context: SinkContext) -> StatusChange | Skip:
        """See :func:`to_status_change`."""
        return to_status_change(datum, shop_id=self._shop_id)

    async def apply(self, model: StatusChange, context: SinkContext) -> Applied:
        """Post the forward state, or nothing; ``written`` only when an order_histories row was added."""
        result = await self._writer.move(model.id_order, model.desired)
        if result.written:
            return Applied(
                "written",
                facts(id_order=model.id_order, from_state=result.previous_state, to_state=result.plan.target),
            )
        return Applied(
            "unchanged",
            facts(id_order=model.id_order, state=result.previous_state, why=result.plan.reason.value),
        )


@asynccontextmanager
async def build(
    resources: SinkResources, *, send_email: bool | None = None
) -> AsyncIterator[OrderStatusSink]:
    """The sink on the shop of ``resources.settings.prestashop``; its connections close on exit."""
    from sinks.prestashop_target import open_paid_state_ledger

    shop = resources.settings.require_prestashop()
    send_email = shop.send_email if send_email is None else send_email
    async with open_shop_client(shop) as client, open_paid_state_ledger(resources, stage=NAME) as paid_states:
        writer = OrderStateWriter(client, resources.rules, paid_states=paid_states, send_email=send_email)
        yield OrderStatusSink(writer, shop_id=shop.shop_id)
