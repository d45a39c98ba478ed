"""What a sink is: a canonical record decoded into a model, and that model applied to one target.

A sink never touches Kafka. :mod:`sinks.runner` consumes its source topics, decodes the Avro value
(Schema Registry wire format) into a datum, calls :meth:`Sink.decode` and then :meth:`Sink.apply`, and
routes what they raise, in one place:

- ``InvalidMessage``: the record can never be applied (a target 4xx that blames the payload, an
  unknown SKU, a field the target refuses). The runner writes the original bytes to the target's
  dead-letter topic (:func:`dlq_topic`) with
  the error's reason, field path and details (M3 error code and field, the request/response summary,
  near-match suggestions) as headers, then marks the record done.
- ``RetryableError``: the same record may work later (timeout, 5xx, 429, connection refused). The
  runner backs off with jitter (at least ``retry_after``), holds the key (later records of the key
  wait; other keys go on) and counts the failure against the target's circuit breaker.
- anything else is a bug: the runner stops without committing the record.

``apply`` must be idempotent: after a crash the runner applies a record again whose effect may already
be in the target (an order created but not yet committed). Each sink finds its earlier effect first
(an order by its PrestaShop reference, a customer by external id, a stock quantity that already
matches) and answers ``unchanged`` instead of writing twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Final, Generic, Protocol, TypeVar

from pipeline.producer import PipelineProducer
from pipeline.records import SourceRecord
from pipeline.settings import Settings
from rules.engine import Rules
from schemas.codec import AvroDatum

ModelT = TypeVar("ModelT")
ModelT_co = TypeVar("ModelT_co", covariant=True)


def dlq_topic(target: str) -> str:
    """A target's sink dead-letter topic, by catalogue name (``dlq.sink-infor``, ``dlq.sink-prestashop``)."""
    return f"dlq.sink-{target}"


@dataclass(frozen=True, slots=True)
class SinkContext:
    """What ``decode`` and ``apply`` may know besides the datum; stable across redeliveries."""

    record: SourceRecord
    event_id: str
    """The canonical record's ``event_id`` header (its ``meta.event_id``)."""
    correlation_id: str
    """The record's ``correlation_id`` header, or ``topic:partition:offset``."""
    attempt: int = 1
    """1 on the first try; the runner counts up on each retry of the same record."""


@dataclass(frozen=True, slots=True)
class Skip:
    """``decode``'s answer for a record this sink has nothing to do with (another shop, an echo of the
    pipeline's own write, a status PrestaShop does not track)."""

    reason: str
    """A short, bounded code used as the outcome label (``echo``, ``not_ours``, ...)."""


@dataclass(frozen=True, slots=True)
class Applied:
    """``apply``'s answer: what happened in the target, as a bounded outcome label."""

    outcome: str
    """``written``, ``unchanged`` (the target already had it), ``linked`` (found, not created), ..."""
    facts: Mapping[str, str] | None = None
    """Small facts for the log line (the M3 order number, the PrestaShop id written)."""


WRITTEN: Final = Applied("written")
UNCHANGED: Final = Applied("unchanged")


class Sink(Protocol, Generic[ModelT]):
    """One canonical record type applied to one target. Clients are injected by the sink's factory."""

    @property
    def name(self) -> str:
        """Stage name (``infor-orders``): metric label, consumer group suffix, DLQ ``dlq.stage``."""
        ...

    @property
    def target(self) -> str:
        """The external system written to (``infor``, ``prestashop``): one breaker and rate limiter each."""
        ...

    @property
    def sources(self) -> tuple[str, ...]:
        """Catalogue names of the topics consumed (all carrying :attr:`record`)."""
        ...

    @property
    def record(self) -> str:
        """The Avro record name of the source topics' values (``Order``, ``InventoryLevel``)."""
        ...

    @property
    def coalesce_s(self) -> float | None:
        """When set, a key's records wait this long and only the newest pending one is applied (the
        older ones are done when it is); None applies every record."""
        ...

    def decode(self, datum: AvroDatum, context: SinkContext) -> ModelT | Skip:
        """The sink's model of ``datum``, or :class:`Skip`; InvalidMessage names the field path."""
        ...

    async def apply(self, model: ModelT, context: SinkContext) -> Applied:
        """Make ``model`` true in the target, idempotently; returns when the effect is durable there."""
        ...


@dataclass(frozen=True)
class SinkResources:
    """What ``sinks.main`` builds once per process and hands to every sink factory."""

    settings: Settings
    rules: Rules
    producer: PipelineProducer
    """The process's idempotent, acked producer (``state.erp-links`` writes, emitted statuses)."""
    topic: Callable[[str], str]
    """Catalogue topic name → the topic actually used by this deployment."""


SinkFactory = Callable[[SinkResources], AbstractAsyncContextManager[Sink[Any]]]
"""Builds a sink with its clients (an ``httpx.AsyncClient`` per target, rate-limited per credential
with ``pipeline.ratelimit.RateLimitedTransport``) and closes them on exit."""
