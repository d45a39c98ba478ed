"""The Infor flows of the processor worker, by name, built with the links they need.

Four Infor flows look entities up in ``state.erp-links`` (order status, shipments, invoices,
customers), so they cannot be module-level constants: ``main()`` opens one
:class:`~processors.erp_links.ErpLinkStore` per process (:func:`open_erp_links`, after the settings are
built) and passes it to :func:`build_infor_flows`. Items and inventory need no links and are built
the same way for uniformity. Importing this module registers every Infor flow's rules preview.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pipeline.errors import ConfigError
from pipeline.settings import KafkaSettings
from processors import (
    infor_customers,
    infor_inventory,
    infor_invoices,
    infor_items,
    infor_orders,
    infor_shipments,
)
from processors.erp_links import LINKS_TOPIC, ErpLinkIndex, ErpLinkStore
from processors.runner import Flow
from rules.engine import Rules

Links = ErpLinkStore | ErpLinkIndex
"""What the flows look links up in: the Kafka-backed store in the worker, the bare index in tests."""

_BUILDERS: dict[str, Callable[[Links, Rules | None], Flow[Any]]] = {
    infor_orders.NAME: lambda links, rules: infor_orders.build_flow(links, rules),
    infor_shipments.NAME: lambda links, rules: infor_shipments.build_flow(links),
    infor_invoices.NAME: lambda links, rules: infor_invoices.build_flow(links),
    infor_customers.NAME: lambda links, rules: infor_customers.build_flow(links, rules),
    infor_items.NAME: lambda links, rules: infor_items.build_flow(rules),
    infor_inventory.NAME: lambda links, rules: infor_inventory.build_flow(),
}

INFOR_FLOW_NAMES: tuple[str, ...] = tuple(sorted(_BUILDERS))
"""The names ``--flows`` accepts for the Infor flows."""


def open_erp_links(kafka: KafkaSettings, topic: Callable[[str], str] = lambda name: name) -> ErpLinkStore:
    """A started store of ``state.erp-links`` (``topic`` maps catalogue names to actual ones).

    Returns after the topic was read to its end; raises RetryableError when that fails. Close it when
    the worker stops.
    """
    store = ErpLinkStore(kafka, topic(LINKS_TOPIC))
    store.start()
    return store


def build_infor_flows(names: Iterable[str], links: Links, rules: Rules | None = None) -> list[Flow[Any]]:
    """The named Infor flows, each with ``links`` and ``rules`` (None: packaged defaults).

    Raises ConfigError for a name that is not an Infor flow.
    """
    flows = []
    for name in names:
        builder = _BUILDERS.get(name)
        if builder is None:
            raise ConfigError(f"unknown Infor flow {name!r}: one of {', '.join(INFOR_FLOW_NAMES)}")
        flows.append(builder(links, rules))
    return flows
