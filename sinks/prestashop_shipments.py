"""``canonical.shipment.v1`` → the tracking number on the order's ``order_carriers`` row; no state.

Per shipment of a shop order: the tracking number on the order's latest carrier row, written only
when it differs. PrestaShop keeps one number per carrier row: a shipment's first tracking number
(else its first package's) is the one the buyer gets; a later shipment of the same order replaces it
with its own.

This sink posts no order state. "Shipped" comes from M3's order status (66 → SHIPPED on
``canonical.order-status.v1``) through ``prestashop-status``, the one writer of the shop's order
states: two sinks each reading the order as "not shipped yet" had both posted it. The cost, said
plainly: the two topics are not ordered with each other, so "Shipped" may be posted before the
number is set, and a "Shipped" mail (when the shop sends mails) may go out without it.

Idempotent: a redelivered shipment finds the number already there (``unchanged``).
Skipped: another shop's order (``not_ours``); a record the shop itself produced (``echo``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from connectors.prestashop.client import PrestaShopClient
from connectors.prestashop.models import OrderCarrier
from pipeline.errors import InvalidMessage
from schemas.codec import AvroDatum
from sinks.base import Applied, SinkContext, SinkResources, Skip
from sinks.prestashop_target import (
    DEFAULT_SEND_EMAIL,
    TARGET,
    facts,
    is_from_shop,
    open_shop_client,
    order_id_of,
)

NAME = "prestashop-tracking"
"""Stage name (consumer group ``sink-prestashop-tracking`` in the topic catalogue)."""
SOURCE_TOPIC = "canonical.shipment.v1"
RECORD = "Shipment"


@dataclass(frozen=True)
class ShipmentUpdate:
    """The sink's model of a shipment: the shop order, the shipment and the tracking number to show."""

    order_key: str
    id_order: int
    shipment_id: str
    tracking_number: str | None


def tracking_number_of(datum: AvroDatum) -> str | None:
    """The number the buyer gets: the first tracking number, else the first package's; None without any."""
    candidates: list[str] = [str(number) for number in datum["tracking_numbers"]]
    candidates += [str(package["tracking_number"] or "") for package in datum["packages"]]
    return next((number.strip() for number in candidates if number.strip()), None)


def to_shipment_update(datum: AvroDatum, *, shop_id: int) -> ShipmentUpdate | Skip:
    """The update for this shop's order, or Skip (``echo``, ``not_ours``); InvalidMessage for a bad key."""
    if is_from_shop(datum):
        return Skip("echo")
    order_key = str(datum["order_key"])
    id_order = order_id_of(order_key, shop_id)
    if id_order is None:
        return Skip("not_ours")
    return ShipmentUpdate(order_key, id_order, str(datum["shipment_id"]), tracking_number_of(datum))


def carrier_row_to_update(
    rows: Sequence[OrderCarrier], tracking_number: str, *, id_order: int
) -> OrderCarrier | None:
    """The carrier row whose tracking number must change (the latest row), or None when it already holds
    ``tracking_number``. Raises InvalidMessage ``prestashop_no_order_carrier`` for an order without one."""
    if not rows:
        raise InvalidMessage(
            "prestashop_no_order_carrier",
            f"order {id_order} has no order_carriers row to hold tracking number {tracking_number!r}",
            field_path="tracking_numbers",
            details={"id_order": str(id_order)},
        )
    latest = max(rows, key=lambda row: row.id)
    return None if latest.tracking_number == tracking_number else latest


class ShipmentSink:
    """Puts a shipment's tracking number on the shop order (the order's state is prestashop-status's)."""

    name = NAME
    target = TARGET
    sources: tuple[str, ...] = (SOURCE_TOPIC,)
    record = RECORD
    coalesce_s: float | None = None

    def __init__(
        self, client: PrestaShopClient, *, shop_id: int, send_email: bool = DEFAULT_SEND_EMAIL
    ) -> None:
        self._client = client
        self._shop_id = shop_id
        self._send_email = send_email

    def decode(self, datum: AvroDatum, context: SinkContext) -> ShipmentUpdate | Skip:
        """See :func:`to_shipment_update`."""
        return to_shipment_update(datum, shop_id=self._shop_id)

    async def apply(self, model: ShipmentUpdate, context: SinkContext) -> Applied:
        """``written`` when the tracking number changed, else ``unchanged`` (also without a number)."""
        summary = facts(id_order=model.id_order, shipment_id=model.shipment_id)
        if model.tracking_number is None:
            return Applied("unchanged", {**summary, "why": "no_tracking_number"})
        rows = await self._client.order_carriers_for(model.id_order)
        row = carrier_row_to_update(rows, model.tracking_number, id_order=model.id_order)
        if row is None:
            return Applied("unchanged", {**summary, "why": "already_there"})
        await self._client.set_tracking_number(
            model.id_order, model.tracking_number, id_carrier=row.id_carrier, send_email=self._send_email
        )
        return Applied("written", summary)


@asynccontextmanager
async def build(resources: SinkResources, *, send_email: bool | None = None) -> AsyncIterator[ShipmentSink]:
    """The sink on the shop of ``resources.settings.prestashop``; its connections close on exit."""
    shop = resources.settings.require_prestashop()
    send_email = shop.send_email if send_email is None else send_email
    async with open_shop_client(shop) as client:
        yield ShipmentSink(client, shop_id=shop.shop_id, send_email=send_email)
