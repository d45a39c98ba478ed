"""``canonical.order-status.v1`` → the shop order's state, through ``POST order_histories``, forward only.

A status change from the ERP (or the pipeline) becomes the shop state the rules' write-back names
(SHIPPED → PS_OS_SHIPPING, CANCELLED → PS_OS_CANCELED, ...; matched by configuration key and flags,
never by id), posted only when the order's current state differs and the move is allowed: no
dimension ever goes backwards (CANONICAL.md, "Status"). Otherwise the record is ``unchanged``, with the
reason in its facts (``already_there``, ``backwards``, ``no_state``).

Skipped: another shop's order (``not_ours``) and a change the shop itself reported (``echo``: the
shop is already in that state or beyond, and posting it again would re-run its side effects).

This sink is the only writer of the shop's order states. Every status change of an order goes through
it, whoever concluded it: M3's order status (SHIPPED when M3 reports 66, DELIVERED, CANCELLED, ...),
and the payment status the payment sinks conclude from an invoice or an ERP payment
(``prestashop-payment``, ``prestashop-payment-records`` and ``infor-payments`` emit it here as a
PIPELINE change with only the payment dimension stated). The topic is keyed by order, so the
runner applies one order's changes strictly one after the other: no two reads of the same old state
can both post (a "Payment accepted" landing after "Shipped", or "Shipped" posted twice), also with the
sink scaled out, since a partition, and so every order on it, belongs to one member of the group at a
time. ``prestashop-tracking`` writes the tracking number only.

Around a state flagged ``paid`` (Shipped for a bank-wire order, Payment accepted) the writer keeps the
paid-state mark on ``state.erp-links`` (``sinks/prestashop_target.py``), so the payment the shop invents
for it is never applied to M3.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from rules.canonical_status import OrderStatus
from rules.status import StatusRules
from schemas.codec import AvroDatum
from sinks.base import Applied, SinkContext, SinkResources, Skip
from sinks.prestashop_target import (
    TARGET,
    OrderStateWriter,
    desired_status,
    facts,
    is_from_shop,
    open_paid_state_ledger,
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


def to_status_change(
    datum: AvroDatum, *, shop_id: int, status_rules: StatusRules | None = None
) -> StatusChange | Skip:
    """The change for this shop's order, or Skip (``echo``, ``not_ours``; with ``status_rules``,
    ``no_state`` when no write-back rule holds for it); InvalidMessage for a bad key."""
    if is_from_shop(datum):
        return Skip("echo")
    order_key = str(datum["order_key"])
    id_order = order_id_of(order_key, shop_id)
    if id_order is None:
        return Skip("not_ours")
    desired = desired_status(datum)
    if status_rules is not None and not status_rules.writes_back(desired):
        # Most of M3's steps (allocated, picking, ...) name no shop state: no need to read the order
        # (the shop's webservice key is shared by every PrestaShop sink and paced).
        return Skip("no_state")
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
        return to_status_change(datum, shop_id=self._shop_id, status_rules=self._writer.status_rules)

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
    shop = resources.settings.require_prestashop()
    send_email = shop.send_email if send_email is None else send_email
    async with open_shop_client(shop) as client, open_paid_state_ledger(resources, stage=NAME) as paid_states:
        writer = OrderStateWriter(client, resources.rules, paid_states=paid_states, send_email=send_email)
        yield OrderStatusSink(writer, shop_id=shop.shop_id)
