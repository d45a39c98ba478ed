"""A sink's conclusion about an order's status, said on ``canonical.order-status.v1`` instead of written.

Only ``prestashop-status`` writes the shop's order states (``order_histories``). A sink that *learns*
something about an order's status from another fact (an invoice settled, an ERP payment applied to M3)
does not post a state itself: two writers of one order each read the same current state and each post,
so a "Payment accepted" could land after "Shipped" and two Shipped rows could appear. The sink emits
its conclusion as an ``OrderStatusChange`` keyed by the order instead; the topic's per-key order then
serialises every state write of that order through the one writer, which moves it forward only.

- :func:`pipeline_status_change` (pure): the datum, with only the dimensions the sink concluded
  (the others ``UNKNOWN``: "no statement"), ``meta.source_system`` PIPELINE and ``meta.source_entity``
  the emitting stage;
- :func:`status_event_id` (pure): its deterministic ``event_id``, a function of stage, the source
  fact's identity and the status, so a retry re-emits the same event;
- :class:`StatusEmitter`: encodes and produces it, returning only after the broker acknowledged it;
- :func:`open_status_emitter`: the emitter of a deployment (its topic name, the registry's codec).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final

from pipeline.producer import AckedProducer
from rules.canonical_status import OrderStatus
from schemas.codec import AvroCodec, AvroDatum
from schemas.registry import registry_client
from sinks.base import SinkResources

STATUS_TOPIC: Final = "canonical.order-status.v1"
"""Catalogue name of the topic the conclusions go to (keyed by order key)."""
STATUS_RECORD: Final = "OrderStatusChange"

STATUS_EVENT_NAMESPACE: Final = uuid.UUID("6b1d3c52-7e0a-5f4b-9c2d-8a1e4f7b3d90")
"""UUIDv5 namespace of the statuses sinks emit (fixed forever: ids must stay stable across releases)."""

Encode = Callable[[AvroDatum, str], bytes]
"""Serialises a datum for a topic (the Avro codec's ``encode``)."""


def status_event_id(stage: str, *identity: str) -> str:
    """The ``event_id`` of a status ``stage`` concludes from the fact named by ``identity`` (pure).

    Put the order key, the fact's own id and the concluded status in ``identity``: the same conclusion
    from the same fact is the same event, whichever attempt emits it.
    """
    return str(uuid.uuid5(STATUS_EVENT_NAMESPACE, "|".join(("PIPELINE", stage, *identity))))


@dataclass(frozen=True)
class SourceStatusFacts:
    """``source_status`` of an emitted change: the fact the conclusion came from, as its system put it."""

    system: str
    """``INFOR``, ``PRESTASHOP`` or ``PIPELINE`` (the Avro ``SourceSystem``)."""
    code: str
    name: str | None = None


def pipeline_status_change(
    *,
    stage: str,
    event_id: str,
    order_key: str,
    status: OrderStatus,
    source_id: str,
    source_status: SourceStatusFacts,
    changed_at: dt.datetime,
    correlation_id: str,
    causation_id: str | None,
    ingested_at: dt.datetime | None = None,
    shop_id: str | None = None,
    erp_order_number: str | None = None,
    external_ids: Mapping[str, str] | None = None,
) -> AvroDatum:
    """The ``OrderStatusChange`` stating ``status`` (its ``UNKNOWN`` dimensions say nothing) (pure).

    ``changed_at`` is also the record's version and occurrence time; ``ingested_at`` (default
    ``changed_at``) should be the source fact's, so the end-to-end latency the writer observes counts
    from when the pipeline first saw that fact.
    """
    return {
        "meta": {
            "event_id": event_id,
            "source_system": "PIPELINE",
            "source_entity": stage,
            "source_id": source_id,
            "version": int(changed_at.timestamp() * 1000),
            "occurred_at": changed_at,
            "ingested_at": ingested_at or changed_at,
            "correlation_id": correlation_id or event_id,
            "causation_id": causation_id or None,
            "shop_id": shop_id or order_key.partition(":")[0] or None,
        },
        "order_key": order_key,
        "payment_status": status.payment.value,
        "fulfillment_status": status.fulfillment.value,
        "lifecycle": status.lifecycle.value,
        "source_status": {
            "system": source_status.system,
            "code": source_status.code,
            "name": source_status.name,
        },
        "erp_order_number": erp_order_number or None,
        "changed_at": changed_at,
        "external_ids": dict(external_ids or {}),
    }


class StatusEmitter:
    """Emits ``OrderStatusChange`` data on one topic, keyed by order key, each acknowledged."""

    def __init__(self, producer: AckedProducer, encode: Encode, topic: str) -> None:
        self._producer = producer
        self._encode = encode
        self._topic = topic

    @property
    def topic(self) -> str:
        """The topic actually written (the deployment's name of ``canonical.order-status.v1``)."""
        return self._topic

    async def emit(self, datum: AvroDatum) -> None:
        """Produce ``datum`` keyed by its order key, with its ``event_id``, ``correlation_id`` and
        ``causation_id`` as headers; returns only after the broker acknowledged it (a ProduceError
        when the broker refused it for good, RetryableError when the ack did not come in time)."""
        meta = datum["meta"]
        headers: list[tuple[str, bytes]] = [
            ("event_id", str(meta["event_id"]).encode()),
            ("correlation_id", str(meta["correlation_id"]).encode()),
        ]
        if meta.get("causation_id"):
            headers.append(("causation_id", str(meta["causation_id"]).encode()))
        await self._producer.produce_acked(
            self._topic, str(datum["order_key"]).encode(), self._encode(datum, self._topic), headers
        )


@asynccontextmanager
async def open_status_emitter(resources: SinkResources) -> AsyncIterator[StatusEmitter]:
    """The emitter on this deployment's ``canonical.order-status.v1``, encoding with the registry's
    schema (the process's producer; the registry client closes on exit)."""
    with registry_client(resources.settings.require_registry()) as registry:
        yield StatusEmitter(
            resources.producer, AvroCodec(registry, STATUS_RECORD).encode, resources.topic(STATUS_TOPIC)
        )
