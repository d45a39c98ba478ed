"""THE wrapper around faust: every raw event → one canonical Avro record, a DLQ record, or a counted drop.

A flow is declared data (:class:`Flow`): its source topics, output topic, Avro record, a ``decode``
from raw bytes to a source model, a pure ``to_record`` from model to canonical datum, and key and
version functions. Flows never see faust; :func:`register_flow` turns one into a faust agent.

Per batch of events (``stream.noack_take``; a batch is ``take_max`` events or ``take_within_s``
seconds, whichever comes first), in source order::

    decode(bytes, headers)            InvalidMessage → DlqLimit check → dlq.processors (original bytes)
                                      a Skipped value (e.g. SKIP) → nothing to emit, counted skipped
    version(model) <= last emitted    dropped, counted stale (<) or duplicate (=)
    to_record(model, context)         one datum or a sequence of them; None or [] → counted skipped;
                                      InvalidMessage → DLQ as above
    per datum:
      destination                     the rules' review topic when the datum's anomaly flags say so
                                      (only for the record the review topic carries), else the output
      AvroCodec.encode(datum, topic)  InvalidMessage(schema_violation) → DLQ as above
      produce(topic, record_key(datum) or key(model), value,
              headers: event_id, correlation_id, causation_id, flow)
      history.observe(record, datum)  only a datum of the output topic (processors.history)
    ... then wait until every canonical and DLQ record of the batch was acknowledged, write the
    new versions to the table's changelog and wait for those acks, and only then ack the events.

The worker commits a source offset only once the runner recorded every event below it as done
(:mod:`processors.offsets`; faust's own acks are not trusted, it acks events it skipped during a
rebalance), so a source offset moves only after the canonical record, any DLQ record and the version
it implies are durable. ``RetryableError`` (registry or broker briefly
unreachable) is retried in place with backoff, holding the batch. Anything else, ``ProduceError``,
``DlqLimitExceeded`` and a failed delivery included, is fatal: the runner logs it and ends the
process at once (:func:`crash`). It does not raise into faust, because faust's way out of an agent
exception acks events (``take``'s ``finally``, the agent supervisor restarting the actor,
``stream_ack_exceptions``); a hard exit guarantees that nothing after the last acknowledged batch is
committed. The supervisor restarts the worker, which reprocesses from the committed offsets.

Processing guarantee: at-least-once with deterministic ``event_id`` s (UUIDv5 of source, entity, id,
version, computed by the flow). We do not use faust's ``processing_guarantee="exactly_once"``: it needs
faust's aiokafka producer with one transactional producer per source partition (a rebalance fences and
recreates them), which is the slow path we measured and the one least exercised against Kafka 4.x's
new group protocol; it would also not cover the DLQ and registry side effects. Consumers of the
canonical topics already must tolerate redelivery, and a repeated record here carries the same
``event_id`` as its first copy, so the repeat is recognisable and harmless (the sinks dedupe on it).
Repeats happen only after a crash, for records acknowledged after the last commit.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any, Final, Generic, NoReturn, TypeVar, cast

from pipeline.dlq import DeadLetterProducer, DlqLimit
from pipeline.errors import ConfigError, DlqLimitExceeded, InvalidMessage, ProduceError, RetryableError
from pipeline.metrics import DLQ_LIMIT_TRIPS, DLQ_MESSAGES, MESSAGES, RETRIES
from pipeline.producer import Delivery, PipelineProducer
from pipeline.records import Headers, SourceRecord
from pipeline.retry import Backoff
from processors.app import ProcessorApp
from processors.history import AnomalyHistory
from processors.offsets import Admission, DurableCommitConsumer, GroupStartOffsets
from processors.staleness import VersionTable, declare_versions_table, source_partitions
from rules.anomalies import Anomaly
from rules.engine import Rules, load_rules
from schemas.catalogue import load_catalogue
from schemas.codec import AvroCodec, AvroDatum

log = logging.getLogger(__name__)

ModelT = TypeVar("ModelT")

EXIT_FATAL = 70
"""Exit status of a worker that stopped on a fatal error (EX_SOFTWARE); the supervisor restarts it."""

# Headers that name the source event, in order of preference; without one the record's coordinates
# (stable across replays) identify it.
_SOURCE_EVENT_HEADERS = ("webhook_id", "bodid", "message_id")
_CORRELATION_NAMESPACE = uuid.UUID("0b6f7c1e-5a55-4f3e-9d0e-6c1b2f4b9a10")
_EPOCH = datetime.fromtimestamp(0, UTC)


@dataclass(frozen=True, slots=True)
class Skipped:
    """``decode``'s answer for an event that carries nothing to emit (a thin notification, a record of
    another flow on a shared topic). The runner counts it ``skipped`` before any version check, so it
    never needs a version of its own and never enters the version table."""

    reason: str
    """Why, in a few words (for logs and tests; not a metric label)."""


SKIP: Final = Skipped("nothing to emit")
"""The plain :class:`Skipped` for flows with nothing more to say."""


@cache
def packaged_rules() -> Rules:
    """The packaged default rules, loaded on first use (never at import time) and shared.

    Only the fallback of a :class:`FlowContext` built without rules (unit tests, previews); the worker
    passes the rules ``main()`` loaded from the settings.
    """
    return load_rules()


@dataclass(frozen=True, slots=True)
class FlowContext:
    """What a flow's ``to_record`` may know besides the payload; every value is stable across replays."""

    record: SourceRecord
    correlation_id: str
    """The source record's ``correlation_id`` header, or an id derived from its coordinates."""
    source_event_id: str
    """The source's own event id (webhook id, BOD id, IMS message id) or ``topic:partition:offset``."""
    rules: Rules = field(default_factory=packaged_rules)
    """The transformation rules, loaded once by ``main()`` (``PSINFOR_RULES__PATH``; default: packaged)."""
    history: AnomalyHistory = field(default_factory=AnomalyHistory)
    """What the worker emitted recently (read only; anomaly flags from it are advisory, see
    ``processors.history``); default: empty."""

    @property
    def ingested_at(self) -> datetime:
        """When the pipeline received the source event: its ``received_at`` header, else the record time."""
        received = self.record.header("received_at")
        if received:
            try:
                parsed = datetime.fromisoformat(received.decode("ascii").replace("Z", "+00:00"))
            except (UnicodeDecodeError, ValueError):
                parsed = None
            if parsed is not None and parsed.tzinfo is not None:
                return parsed.astimezone(UTC)
        if self.record.timestamp_ms is not None:
            return datetime.fromtimestamp(self.record.timestamp_ms / 1000, UTC)
        return _EPOCH


@dataclass(frozen=True)
class Flow(Generic[ModelT]):
    """One raw → canonical flow, as data. Every function is pure and never touches Kafka.

    ``decode`` returns the model, a :class:`Skipped` value (:data:`SKIP`) for an event that carries
    nothing to emit, or raises InvalidMessage for bytes it cannot turn into the model. ``to_record``
    returns the canonical datum, or a sequence of datums (one product → one record per combination),
    each with a deterministic ``meta.event_id`` and ``meta.version`` = ``version(model)``; None or an
    empty sequence when there is nothing to emit; or raises InvalidMessage (nothing of the event is
    produced then). ``key`` is the canonical topic's key of a datum unless ``record_key`` is given,
    which keys each datum by itself (needed when one event's datums have different keys).
    ``version`` orders the events of one source key (see ``processors.staleness``).
    """

    name: str
    sources: tuple[str, ...]
    output: str
    record: str
    decode: Callable[[bytes, Headers], ModelT | Skipped]
    to_record: Callable[[ModelT, FlowContext], AvroDatum | Sequence[AvroDatum] | None]
    key: Callable[[ModelT], str]
    version: Callable[[ModelT], int]
    record_key: Callable[[AvroDatum], str] | None = None


def crash(error: BaseException) -> NoReturn:
    """End the process now, without letting faust ack or commit anything (see the module docstring)."""
    log.critical(
        "processor stopped on a fatal error; nothing past the last acknowledged batch is committed",
        exc_info=error,
    )
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(EXIT_FATAL)


class _BatchDelivery:
    """Counts the delivery reports of one batch's records and wakes the loop when all arrived."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._done: asyncio.Future[None] = loop.create_future()
        self._lock = threading.Lock()
        self._pending = 0
        self._sealed = False
        self.error: BaseException | None = None

    def expect(self) -> None:
        """One more record is about to be produced (call before ``produce``)."""
        with self._lock:
            self._pending += 1

    def on_delivery(self, delivery: Delivery) -> None:
        """The producer's callback (poll thread)."""
        with self._lock:
            self._pending -= 1
            if delivery.error is not None and self.error is None:
                self.error = delivery.error
            finished = self._sealed and self._pending == 0
        if finished:
            self._loop.call_soon_threadsafe(self._settle)

    async def wait(self, timeout_s: float) -> None:
        """Return once every expected record was acknowledged; raise the first delivery error."""
        with self._lock:
            self._sealed = True
            finished = self._pending == 0
        if not finished:
            try:
                await asyncio.wait_for(asyncio.shield(self._done), timeout_s)
            except TimeoutError:
                raise ProduceError(
                    f"no delivery report within {timeout_s:g}s for a batch", topic="(batch)"
                ) from None
        if self.error is not None:
            raise self.error

    def _settle(self) -> None:
        if not self._done.done():
            self._done.set_result(None)


class FlowRunner(Generic[ModelT]):
    """Handles the batches of one flow; built by :func:`register_flow`, usable without faust in tests."""

    def __init__(
        self,
        flow: Flow[ModelT],
        *,
        output: str,
        codec: AvroCodec,
        producer: PipelineProducer,
        dead_letters: DeadLetterProducer,
        dlq_limit: DlqLimit,
        versions: VersionTable,
        backoff: Backoff,
        rules: Rules | None = None,
        review_output: str | None = None,
        delivery_timeout_s: float = 300.0,
        history: AnomalyHistory | None = None,
    ) -> None:
        """``rules`` default to the packaged ones; ``review_output`` is the actual topic of the rules'
        review topic when this flow's record is the one it carries (None: this flow never routes);
        ``history`` is the worker's shared :class:`AnomalyHistory` (default: one of this runner's own),
        fed with every datum produced on the flow's output topic."""
        self.flow = flow
        self.stage = f"processor-{flow.name.replace('_', '-')}"
        self._output = output
        self._codec = codec
        self._producer = producer
        self._dead_letters = dead_letters
        self._dlq_limit = dlq_limit
        self._versions = versions
        self._backoff = backoff
        self._rules = rules if rules is not None else packaged_rules()
        self._review_output = review_output
        self._delivery_timeout_s = delivery_timeout_s
        self._history = (
            history if history is not None else AnomalyHistory(self._rules.anomalies.order_value_window)
        )
        self._counters: dict[tuple[str, str], Any] = {}

    @property
    def review_output(self) -> str | None:
        """The review topic this flow holds records on (None: it never holds any)."""
        return self._review_output

    async def handle(self, records: Sequence[SourceRecord]) -> None:
        """Process one batch; returns only when all its effects are durable (see the module docstring)."""
        flow = self.flow
        delivery = _BatchDelivery(asyncio.get_running_loop())
        emitted: dict[bytes, tuple[int, int]] = {}
        dead: list[tuple[SourceRecord, InvalidMessage]] = []
        outcomes: list[tuple[str, str]] = []
        for record in records:
            attempt = 0
            outcome = "ok"
            while True:
                try:
                    outcome = self._one(record, emitted, delivery)
                except RetryableError as error:
                    # Nothing of this record was queued: wait, then handle the same record again.
                    attempt += 1
                    await self._pause(attempt, error)
                    continue
                except InvalidMessage as error:
                    try:
                        self._dlq_limit.record_invalid()
                    except DlqLimitExceeded:
                        DLQ_LIMIT_TRIPS.labels(self.stage).inc()
                        raise
                    dead.append((record, error))
                    outcome = "invalid"
                else:
                    self._dlq_limit.record_ok()
                break
            outcomes.append((record.topic, outcome))
        dlq_sent = [self._dead_letter(record, error) for record, error in dead]
        await delivery.wait(self._delivery_timeout_s)
        if dlq_sent:
            await asyncio.gather(*dlq_sent)
        await self._versions.remember(emitted, timeout_s=self._delivery_timeout_s)
        for topic, outcome in outcomes:
            self.count(topic, outcome)
        if dead:
            log.warning(
                "dead-lettered invalid events",
                extra={"flow": flow.name, "count": len(dead), "reasons": sorted({e.reason for _, e in dead})},
            )

    def _one(
        self, record: SourceRecord, emitted: dict[bytes, tuple[int, int]], delivery: _BatchDelivery
    ) -> str:
        # Synchronous on purpose: a coroutine per event is measurable at 10,000 events/s.
        flow = self.flow
        if record.value is None:
            raise InvalidMessage("undecodable", "raw record without a value (tombstone)")
        if record.key is None:
            raise InvalidMessage("missing_key", "raw record without a key: its events cannot be ordered")
        model = flow.decode(record.value, record.headers)
        if isinstance(model, Skipped):
            # Before the version check: a notification has no version and must not count as stale.
            return "skipped"
        version = flow.version(model)
        known = emitted.get(record.key)
        last = known[1] if known is not None else self._versions.last(record.key)
        if last is not None and version <= last:
            return "duplicate" if version == last else "stale"
        context = _context(record, self._rules, self._history)
        result = flow.to_record(model, context)
        if result is None:
            return "skipped"
        datums: Sequence[AvroDatum] = [result] if isinstance(result, dict) else result
        if not datums:
            return "skipped"
        # Key, route and encode every datum before producing any: an InvalidMessage for one of them
        # dead-letters the whole event with nothing of it on the canonical topic.
        outgoing: list[tuple[str, bytes, bytes, str, AvroDatum]] = []
        reviewed = False
        for datum in datums:
            key = flow.record_key(datum) if flow.record_key is not None else flow.key(model)
            topic = self._destination(datum, key.encode())
            reviewed = reviewed or topic != self._output
            outgoing.append(
                (topic, key.encode(), self._codec.encode(datum, topic), str(datum["meta"]["event_id"]), datum)
            )
        correlation = context.correlation_id.encode()
        causation = context.source_event_id.encode()
        flow_name = flow.name.encode()
        for topic, key_bytes, value, event_id, datum in outgoing:
            headers = [
                ("event_id", event_id.encode()),
                ("correlation_id", correlation),
                ("causation_id", causation),
                ("flow", flow_name),
            ]
            if topic != self._output:
                # What a restarted worker seeds its held versions from (processors/history.py).
                headers.append(("version", str(datum["meta"]["version"]).encode()))
            delivery.expect()
            try:
                self._producer.produce(topic, key_bytes, value, headers, delivery.on_delivery)
            except BaseException:
                delivery.on_delivery(Delivery(topic, -1, -1, None))  # never queued: uncount it
                raise
            if topic == self._output:
                # What a restart seeds back from the canonical topic; a datum held for review is not.
                self._history.observe(flow.record, datum)
        emitted[record.key] = (record.partition, version)
        return "review" if reviewed else "ok"

    def _destination(self, datum: AvroDatum, key: bytes) -> str:
        """The actual topic of ``datum``: the review topic when its anomaly flags call for review, or
        when an earlier version of its key was held there (held stays held until a person releases it:
        processors/review_decisions.py)."""
        if self._review_output is None:
            return self._output
        if self._history.held(self.flow.record, key):
            # The newest held version: a release of an older one leaves the key held.
            self._history.hold(self.flow.record, key, int(datum["meta"]["version"]))
            return self._review_output
        flags = datum.get("anomalies")
        if not flags:
            return self._output
        anomalies = [Anomaly(flag["code"], float(flag["score"]), flag["reason"]) for flag in flags]
        if self._rules.anomalies.destination(anomalies, self.flow.output) == self.flow.output:
            return self._output
        # Before the produce: a later version of the key, handled once this one is, must follow it.
        self._history.hold(self.flow.record, key, int(datum["meta"]["version"]))
        return self._review_output

    async def _dead_letter(self, record: SourceRecord, error: InvalidMessage) -> None:
        await self._retrying_async(
            lambda: asyncio.to_thread(self._dead_letters.send, record, error, attempts=1)
        )
        DLQ_MESSAGES.labels(self.stage, error.reason).inc()

    async def _retrying_async(self, step: Callable[[], Awaitable[Any]]) -> Any:
        attempt = 0
        while True:
            try:
                return await step()
            except RetryableError as error:
                attempt += 1
                await self._pause(attempt, error)

    async def _pause(self, attempt: int, error: RetryableError) -> None:
        RETRIES.labels(self.stage, "retryable").inc()
        delay = self._backoff.delay(attempt, error)
        log.warning(
            "retrying after a transient failure",
            extra={
                "flow": self.flow.name,
                "attempt": attempt,
                "delay_s": round(delay, 3),
                "error": str(error),
            },
        )
        await asyncio.sleep(delay)

    def count(self, topic: str, outcome: str) -> None:
        """Count one source event of ``topic`` with ``outcome`` (the MESSAGES metric of this flow)."""
        counter = self._counters.get((topic, outcome))
        if counter is None:
            counter = self._counters[(topic, outcome)] = MESSAGES.labels(self.stage, topic, outcome)
        counter.inc()


def _context(record: SourceRecord, rules: Rules, history: AnomalyHistory) -> FlowContext:
    source_event_id = None
    for name in _SOURCE_EVENT_HEADERS:
        value = record.header(name)
        if value:
            source_event_id = value.decode("utf-8", "replace")
            break
    coordinates = f"{record.topic}:{record.partition}:{record.offset}"
    correlation = record.header("correlation_id")
    return FlowContext(
        record=record,
        correlation_id=correlation.decode("utf-8", "replace")
        if correlation
        else str(uuid.uuid5(_CORRELATION_NAMESPACE, coordinates)),
        source_event_id=source_event_id or coordinates,
        rules=rules,
        history=history,
    )


def source_record(message: Any) -> SourceRecord:
    """Snapshot a faust ``Message`` (raw bytes) as the pipeline's :class:`SourceRecord`."""
    headers = message.headers
    pairs = headers.items() if isinstance(headers, Mapping) else headers or ()
    timestamp = message.timestamp
    return SourceRecord(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        headers=tuple((name, value or b"") for name, value in pairs),
        timestamp_ms=int(timestamp * 1000) if timestamp else None,
    )


def register_flow(
    app: ProcessorApp, flow: Flow[Any], history: AnomalyHistory | None = None
) -> FlowRunner[Any]:
    """Add ``flow`` to the faust app: its raw-bytes source topics, version table and agent.

    ``history``: the worker's shared :class:`AnomalyHistory` (see :class:`FlowRunner`); the keys held
    for review are fed to it by ``processors/review_decisions.py``'s follower.

    Reads the source topics' partition count from the broker (the version table is co-partitioned
    with them); raises ConfigError when a source topic is missing or the sources differ.
    """
    options = app.options
    sources = tuple(options.topic(name) for name in flow.sources)
    output = options.topic(flow.output)
    review_output = _review_output(app.rules, flow, options.topic)
    partitions = source_partitions(app.settings.kafka, sources)
    table = declare_versions_table(app.faust, flow.name, partitions=partitions)
    # Before the worker starts: no commit of these topics may pass what this flow made durable.
    cast(DurableCommitConsumer, app.faust.consumer).offsets.subscribe(flow.name, sources)
    runner: FlowRunner[Any] = FlowRunner(
        flow,
        output=output,
        codec=AvroCodec(app.registry, flow.record),
        producer=app.producer,
        dead_letters=app.dead_letters,
        dlq_limit=DlqLimit(app.settings.dlq),
        versions=VersionTable(table, app.settings.kafka, client_id_suffix=f"processors-{flow.name}-state"),
        backoff=Backoff(app.settings.retry),
        rules=app.rules,
        review_output=review_output,
        history=history,
    )
    topic = app.faust.topic(
        *sources, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    health = app.health

    async def agent(stream: Any) -> None:
        async for events in stream.noack_take(options.take_max, within=options.take_within_s):
            started = time.perf_counter()
            try:
                admitted = await _admit(app.faust, app.start_offsets, runner, events)
                await runner.handle([source_record(event.message) for event in admitted])
            except asyncio.CancelledError:
                raise  # shutdown: the batch stays unacked and is read again after the restart
            except BaseException as error:  # noqa: BLE001 - every other failure is fatal, see crash()
                crash(error)
            # Commits follow what is durable, never faust's acks (see processors.offsets); the acks
            # only keep faust's own bookkeeping of in-flight events.
            offsets = cast(DurableCommitConsumer, app.faust.consumer).offsets
            ends = {event.message.tp: event.message.offset + 1 for event in admitted}
            for tp, end in ends.items():
                offsets.record_durable(flow.name, tp, end)
            for event in events:
                await stream.ack(event)
            health.heartbeat()
            log.debug(
                "batch done",
                extra={"flow": flow.name, "events": len(events), "ms": (time.perf_counter() - started) * 1e3},
            )

    app.faust.agent(topic, name=f"psinfor.processors.{flow.name}")(agent)
    return runner


async def _admit(
    app: Any, starts: GroupStartOffsets, runner: FlowRunner[Any], events: Sequence[Any]
) -> list[Any]:
    """The events of a batch to handle: each partition's next offsets in order (processors.offsets).

    Redeliveries and events of an older consumer generation are dropped (counted); at a gap the
    partition is sought back to the missing offset and its later events wait for the refetch.
    """
    consumer = cast(DurableCommitConsumer, app.consumer)
    offsets = consumer.offsets
    flow = runner.flow.name
    current = app.consumer_generation_id
    admitted: list[Any] = []
    gaps: dict[Any, int] = {}
    for event in events:
        message = event.message
        tp = message.tp
        if message.generation_id == current and not offsets.knows(flow, tp, current):
            offsets.begin(flow, tp, current, await asyncio.to_thread(starts.start, tp.topic, tp.partition))
        admission = offsets.admit(flow, tp, message.generation_id, current, message.offset)
        if admission is Admission.HANDLE:
            admitted.append(event)
            continue
        runner.count(message.topic, admission.value)
        if admission is Admission.GAP:
            gaps.setdefault(tp, message.offset)
    for tp, received in gaps.items():
        missing = offsets.seek_needed(flow, tp)
        if missing is not None:
            log.warning(
                "an offset of a source partition was not received; reading it again from there",
                extra={"topic": tp.topic, "partition": tp.partition, "missing": missing, "seen": received},
            )
            await consumer.seek(tp, missing)
    return admitted


def _review_output(rules: Rules, flow: Flow[Any], actual: Callable[[str], str]) -> str | None:
    """The actual review topic for ``flow``, or None when the review topic does not carry its record.

    The rules name the review topic; the catalogue says which record it carries (``review.order.v1``:
    Order). Routing another record there would fail at the registry, so only flows emitting that
    record route. A review topic missing from the catalogue is a configuration error.
    """
    name = rules.model.anomalies.review_topic
    try:
        entry = load_catalogue().topic(name)
    except KeyError:
        raise ConfigError(f"the rules' review topic {name!r} is not in the topic catalogue") from None
    return actual(name) if entry.value == flow.record else None
