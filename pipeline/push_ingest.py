"""The steps every push receiver (PrestaShop webhooks, Infor IMS) shares, vendor-free.

- :class:`AckingProducer`: what a receiver needs from the producer — write one record and return only
  after the broker acknowledged it (``PipelineProducer.produce_acked``), and say whether the broker
  answers at all;
- :func:`watch_broker`: the background task behind ``/healthz`` and ``/readyz`` (heartbeat every
  interval; ready while the broker answers a metadata request);
- :func:`read_capped`: the request body, refused as soon as it grows past the limit, never read further.

The answer rules built on them (2xx only after the ack; 503 + ``Retry-After`` on ``RetryableError``;
500 on ``ProduceError``) live in each receiver's app, whose bodies follow the sender's protocol.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from starlette.requests import Request

from pipeline.health import HealthState
from pipeline.producer import HeaderList


class AckingProducer(Protocol):
    """The producer side of a push receiver (``pipeline.producer.PipelineProducer`` provides it)."""

    async def produce_acked(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: HeaderList = (),
        ack_timeout_s: float = 10.0,
    ) -> tuple[int, int]:
        """Return ``(partition, offset)`` once the broker acknowledged the record."""
        ...

    def broker_reachable(self, timeout_s: float = 2.0) -> bool:
        """True when the cluster answers (blocking)."""
        ...


async def read_capped(request: Request, limit: int, too_large: Callable[[int], Exception]) -> bytes:
    """The body; raises ``too_large(size)`` as soon as more than ``limit`` bytes arrived."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(size)
        chunks.append(chunk)
    return b"".join(chunks)


async def watch_broker(
    producer: AckingProducer, health: HealthState, interval_s: float, *, not_ready_reason: str
) -> None:
    """Heartbeat and readiness until cancelled: ready while the broker answers a metadata request."""
    while True:
        reachable = await asyncio.to_thread(producer.broker_reachable, max(0.5, interval_s))
        health.heartbeat()
        health.set_ready(reachable, "" if reachable else not_ready_reason)
        await asyncio.sleep(interval_s)
