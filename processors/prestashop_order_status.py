"""PrestaShop order states → ``canonical.order-status.v1``: the shop's status of an order, per order version.

Input: the ORDER BUNDLES of ``raw.prestashop.orders`` (event_type ``order.bundle``), the same records
``processors.prestashop_orders`` maps; decoding, key and version are that flow's
(:class:`~processors.prestashop_orders.OrderBundle`). A state change in the shop (the merchant, a
payment module or our own status sink posting ``order_histories``) moves the order's
``current_state`` and its ``date_upd``, so the poller writes a new bundle; a webhook notification
only makes the poller write it sooner. The bundle carries the current state's record and the
``PS_OS_*`` configuration values, so the state resolves by configuration key, then flags
(``rules.status``), never by its id.

Output, one ``OrderStatusChange`` per order version: the three dimensions the state means
(``UNKNOWN`` where it says nothing: "Canceled" states only the lifecycle), ``source_status`` (system
PRESTASHOP, the config key or the custom state's id, the state's name in the order's language),
``changed_at`` = the order's ``date_upd``. ``meta`` names the source as ``orders`` with the order id
and version; its ``event_id`` is derived from ``orders.current_state`` so it never equals the id of
the ``Order`` record of the same version.

Monotonic (CANONICAL.md, "Status"): per order key the runner drops versions older than (or equal to)
the last one emitted, so a late or replayed bundle never produces a status after a newer one. A
record only states what the shop says now; a subscriber merges each dimension forward
(``rules.status.merge``), so a merchant moving an order back in the shop, or a version that did not
change the state, never moves the canonical status backwards. The PrestaShop status sink skips these
records as the shop's own (echo); the Infor side reads cancellations from them.

Run this flow in its own worker (``--app-id``), not beside ``prestashop_orders``: both read the same
source partitions, and one worker tracks each partition's offsets once (``processors.offsets``).
"""

from __future__ import annotations

from datetime import datetime

from processors.prestashop_orders import OrderBundle, OrderEvent, shop_status
from processors.prestashop_source import Skipped, bundle_flow, meta
from rules.engine import Rules
from schemas.codec import AvroDatum

NAME = "prestashop_order_status"
SOURCE_TOPIC = "raw.prestashop.orders"
OUTPUT_TOPIC = "canonical.order-status.v1"
RECORD = "OrderStatusChange"
EVENT_TYPE = "order.bundle"
ENTITY = "orders"
EVENT_ENTITY = "orders.current_state"
"""The entity named in this record's event id (see the module docstring)."""


def to_order_status(
    event: OrderEvent, rules: Rules, *, ingested_at: datetime, correlation_id: str
) -> AvroDatum:
    """The canonical ``OrderStatusChange`` of one order bundle (pure).

    Raises InvalidMessage: ``missing_field`` for an empty ``date_upd``, ``unknown_order_state`` /
    ``unmapped_status`` (``current_state``) for a state the shop or the rules do not know.
    """
    bundle, shop_id = event.bundle, event.shop_id
    order = bundle.order
    changed = bundle.clock().required(order.date_upd, "order.date_upd")
    status, source = shop_status(bundle, rules)
    return {
        "meta": meta(
            ENTITY,
            shop_id,
            str(order.id),
            changed,
            ingested_at=ingested_at,
            correlation_id=correlation_id,
            id_entity=EVENT_ENTITY,
        ),
        "order_key": f"{shop_id}:{order.id}",
        "payment_status": str(status.payment),
        "fulfillment_status": str(status.fulfillment),
        "lifecycle": str(status.lifecycle),
        "source_status": source,
        "erp_order_number": None,
        "changed_at": changed,
        "external_ids": {"prestashop": str(order.id)},
    }


OrderStatusInput = OrderEvent | Skipped
decode, key, version, to_record, FLOW = bundle_flow(
    NAME, SOURCE_TOPIC, OUTPUT_TOPIC, RECORD, EVENT_TYPE, OrderBundle, OrderEvent, to_order_status
)
