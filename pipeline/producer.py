"""The process's one Kafka producer: idempotent, ``acks=all``, headers supported.

Build one :class:`PipelineProducer` per process in ``main()`` and share it: a producer per request, or a
``flush()`` per message, is the classic way to make Kafka slow. confluent-kafka's synchronous
``Producer`` is used (its asyncio producer refuses headers, and headers carry our correlation ids and
DLQ story).

Poll contract: the producer owns a background thread that calls ``poll()`` continuously, so delivery
reports are served without the caller's help. Consequently ``on_delivery`` callbacks run on that
thread: keep them short and thread-safe. :meth:`PipelineProducer.produce_and_wait` blocks only the
calling thread, so many webhook requests can wait for their own record at once.

Errors: a record the broker may still take later (queue full, broker unreachable, timeout) is reported
as ``RetryableError`` (the webhook answers 503 + Retry-After); a record the broker refused for good
(too large, not authorised) as ``pipeline.errors.ProduceError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self

from confluent_kafka import KafkaError, KafkaException, Producer
from prometheus_client.metrics import Counter as CounterChild

from pipeline.errors import PipelineError, ProduceError, RetryableError
from pipeline.kafka_config import LibrdkafkaConfig, librdkafka_config
from pipeline.metrics import PRODUCE_FAILURES, PRODUCED
from pipeline.settings import KafkaSettings

log = logging.getLogger(__name__)

HeaderList = Sequence[tuple[str, bytes]]

# Idempotence + acks=all is what "no loss, no duplicates from producer retries" needs. A short linger
# batches concurrent webhook records without adding noticeable latency to the one that waits.
PRODUCER_DEFAULTS: LibrdkafkaConfig = {
    "acks": "all",
    "enable.idempotence": True,
    "linger.ms": 5,
    "batch.size": 1_000_000,
    "compression.type": "lz4",
    # librdkafka retries internally until this deadline; afterwards the delivery report carries the error.
    "delivery.timeout.ms": 120_000,
}

# Delivery errors that mean "the broker could not be reached in time", not "the broker said no".
_TRANSIENT_CODES = frozenset(
    {
        KafkaError._MSG_TIMED_OUT,
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._QUEUE_FULL,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.NOT_ENOUGH_REPLICAS,
        KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_LEADER_FOR_PARTITION,
    }
)


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of one produced record, as handed to ``on_delivery``."""

    topic: str
    partition: int
    offset: int
    error: PipelineError | None
    """None when the broker acknowledged; otherwise ``RetryableError`` or :class:`ProduceError`."""


DeliveryCallback = Callable[[Delivery], None]


def producer_config(
    settings: KafkaSettings,
    *,
    client_id_suffix: str,
    overrides: Mapping[str, str | int | float | bool] | None = None,
) -> LibrdkafkaConfig:
    """The complete librdkafka producer config: connection, then the defaults above, then ``overrides``."""
    config = librdkafka_config(settings, client_id_suffix=client_id_suffix)
    config.update(PRODUCER_DEFAULTS)
    config.update(overrides or {})
    return config


def classify_delivery_error(error: KafkaError, topic: str) -> PipelineError:
    """Map a librdkafka delivery error to the pipeline's tree (transient or permanent)."""
    text = f"record to {topic} not delivered: {error.name()}: {error.str()}"
    if not error.fatal() and (error.code() in _TRANSIENT_CODES or error.retriable()):
        return RetryableError(text)
    return ProduceError(text, topic=topic, code=error.name())


def _expire(acked: asyncio.Future[Delivery | None]) -> None:
    """``produce_acked``'s timeout: settle the wait with None (no acknowledgement in time)."""
    if not acked.done():
        acked.set_result(None)


class AckedProducer(Protocol):
    """What a stage needs of :class:`PipelineProducer` to write a record and know it is durable: the
    receivers (webhooks, IMS), the MI poller and the sinks' own writes (links, marks, statuses)."""

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


class PipelineProducer:
    """One idempotent producer with a background poll thread; see the module docstring for the contract."""

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        client_id_suffix: str,
        overrides: Mapping[str, str | int | float | bool] | None = None,
    ) -> None:
        self._producer = Producer(
            producer_config(settings, client_id_suffix=client_id_suffix, overrides=overrides)
        )
        self._closed = threading.Event()
        self._produced_children: dict[str, CounterChild] = {}
        self._poller = threading.Thread(
            target=self._poll_forever, name=f"psinfor-producer-{client_id_suffix}", daemon=True
        )
        self._poller.start()

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: HeaderList = (),
        on_delivery: DeliveryCallback | None = None,
    ) -> None:
        """Queue one record; ``on_delivery`` is called (on the poll thread) once its fate is known.

        Raises ``RetryableError`` when the local queue is full (the broker is slow or away) and
        :class:`ProduceError` when librdkafka refuses the record outright (e.g. larger than allowed).
        """
        if self._closed.is_set():
            raise ProduceError("producer is closed", topic=topic)

        def report(error: KafkaError | None, message: Any) -> None:
            if error is None:
                self._produced(topic).inc()
                outcome = Delivery(topic, message.partition(), message.offset(), None)
            else:
                PRODUCE_FAILURES.labels(topic).inc()
                outcome = Delivery(topic, -1, -1, classify_delivery_error(error, topic))
                log.warning(
                    "record not delivered",
                    extra={"topic": topic, "error_code": error.name(), "error": error.str()},
                )
            if on_delivery is not None:
                on_delivery(outcome)

        try:
            self._producer.produce(topic, value=value, key=key, headers=list(headers), on_delivery=report)
        except BufferError as exc:
            PRODUCE_FAILURES.labels(topic).inc()
            raise RetryableError(f"producer queue full while producing to {topic}", retry_after=1.0) from exc
        except KafkaException as exc:
            PRODUCE_FAILURES.labels(topic).inc()
            error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if error is not None:
                raise classify_delivery_error(error, topic) from exc
            raise ProduceError(f"record to {topic} refused: {exc}", topic=topic) from exc

    def produce_and_wait(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: HeaderList = (),
        timeout: float = 10.0,
    ) -> tuple[int, int]:
        """Produce one record and return ``(partition, offset)`` only after the broker acknowledged it.

        Raises ``RetryableError`` if no acknowledgement arrived within ``timeout`` seconds (the record
        stays queued and may still land: a caller that retries can create a duplicate, which the
        pipeline's event ids absorb) or the broker was unreachable; :class:`ProduceError` if refused.
        """
        done = threading.Event()
        outcome: list[Delivery] = []

        def on_delivery(delivery: Delivery) -> None:
            outcome.append(delivery)
            done.set()

        self.produce(topic, key, value, headers, on_delivery)
        if not done.wait(timeout):
            raise RetryableError(f"record to {topic} not acknowledged within {timeout:g}s", retry_after=1.0)
        delivery = outcome[0]
        if delivery.error is not None:
            raise delivery.error
        return delivery.partition, delivery.offset

    async def produce_acked(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: HeaderList = (),
        ack_timeout_s: float = 10.0,
    ) -> tuple[int, int]:
        """The asyncio twin of :meth:`produce_and_wait`: return ``(partition, offset)`` only after the
        broker acknowledged this record, without blocking the event loop.

        Same errors: ``RetryableError`` when no ack came within ``ack_timeout_s`` seconds (the record
        stays queued and may still land), the queue is full or the broker is unreachable;
        :class:`ProduceError` if refused for good.
        Call it from a coroutine running on the loop that should be woken.
        """
        loop = asyncio.get_running_loop()
        acked: asyncio.Future[Delivery | None] = loop.create_future()

        def settle(delivery: Delivery) -> None:
            if not acked.done():
                acked.set_result(delivery)

        def on_delivery(delivery: Delivery) -> None:
            # Runs on the poll thread: hand the outcome to the loop's thread, the only one that may
            # touch the future. A loop already closed (shutdown) has nobody left to tell.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, delivery)

        self.produce(topic, key, value, headers, on_delivery)
        # A timer rather than asyncio.wait_for: the same outcome with a fraction of the objects and
        # callbacks per record (the webhook receiver awaits one of these per request).
        timer = loop.call_later(ack_timeout_s, _expire, acked)
        try:
            delivery = await acked
        finally:
            timer.cancel()
        if delivery is None:
            raise RetryableError(
                f"record to {topic} not acknowledged within {ack_timeout_s:g}s", retry_after=1.0
            )
        if delivery.error is not None:
            raise delivery.error
        return delivery.partition, delivery.offset

    def _produced(self, topic: str) -> CounterChild:
        # The metric child per topic, looked up once: labels() takes a lock and builds a tuple per call.
        child = self._produced_children.get(topic)
        if child is None:
            child = self._produced_children[topic] = PRODUCED.labels(topic)
        return child

    def broker_reachable(self, timeout_s: float = 2.0) -> bool:
        """True when the cluster answered a metadata request within ``timeout_s`` (blocks that long)."""
        try:
            self._producer.list_topics(timeout=timeout_s)
        except KafkaException:
            return False
        return True

    def flush(self, timeout: float) -> int:
        """Wait up to ``timeout`` s for every queued record's fate; returns how many are still queued."""
        remaining: int = self._producer.flush(timeout)
        return remaining

    def close(self, timeout: float = 10.0) -> int:
        """Flush, then stop the poll thread. Returns the number of records left undelivered (0 is clean)."""
        if self._closed.is_set():
            return 0
        remaining = self.flush(timeout)
        self._closed.set()
        self._poller.join(timeout=5.0)
        if remaining:
            log.error("producer closed with undelivered records", extra={"undelivered": remaining})
        else:
            # Release librdkafka's threads and connections now rather than at garbage collection: a
            # closed producer whose broker is gone otherwise keeps reconnecting for the process's life.
            self._producer.close()
        return remaining

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _poll_forever(self) -> None:
        # poll() serves delivery reports; a short timeout lets close() stop the thread promptly.
        while not self._closed.is_set():
            self._producer.poll(0.1)
