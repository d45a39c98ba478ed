"""The faust App of the processors, built from the settings, and what the runner needs beside it.

:func:`build_app` returns a :class:`ProcessorApp`: the ``faust.App`` (raw-bytes topics, tuned consumer,
in-memory tables recovered from their changelog topics, no web server) plus the process's shared
clients: the librdkafka :class:`~pipeline.producer.PipelineProducer` every flow writes its canonical
records with, the Schema Registry client of the Avro codecs, the dead-letter producer of
``dlq.processors`` and the health state. Flows are added with :func:`processors.runner.register_flow`.

Why these choices (measured with ``bench/processors.py``; figures in the issue note):

- Topics are declared with ``key_serializer``/``value_serializer`` ``raw``: faust hands us the bytes,
  the runner decodes them, so a malformed payload becomes an ``InvalidMessage`` with its original bytes
  instead of a faust decode error that acks the event.
- Canonical and DLQ records go through the librdkafka producer, not faust's aiokafka producer: it is
  idempotent with ``acks=all``, its batching runs in C, and its delivery reports tell the runner when a
  batch is durable. faust's own producer only writes table changelogs (``producer_acks=-1``).
- ``stream_ack_exceptions`` and ``stream_ack_cancelled_tasks`` are off: an event is acked by the runner
  only after its effects were acknowledged, never because processing failed.
- faust's Prometheus sensor is optional (``ProcessorOptions.faust_sensor``): it adds several label
  look-ups per event, which costs throughput (see the bench); our domain metrics are always on.
- Library loggers (aiokafka, faust, mode) stay at WARNING (``pipeline.log``): some of them build a log
  record per message at DEBUG. The mode worker is told not to install its own logging.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import faust
from confluent_kafka.schema_registry import SchemaRegistryClient

from pipeline.dlq import DeadLetterProducer
from pipeline.health import HealthState
from pipeline.kafka_config import faust_broker_settings
from pipeline.producer import PipelineProducer
from pipeline.settings import Settings
from processors.offsets import RESEEK_AFTER_S, DurableCommitConsumer, GroupStartOffsets
from rules.engine import Rules, load_rules
from schemas.registry import registry_client

log = logging.getLogger(__name__)

STAGE = "processors"
DLQ_TOPIC = "dlq.processors"


@dataclass(frozen=True)
class ProcessorOptions:
    """How this processor deployment runs (command-line options of ``psinfor process``).

    ``topic_names`` renames catalogue topics for this run (tests, side-by-side deployments): a topic not
    in the map keeps its catalogue name. ``app_id`` is the consumer group and the prefix of the table
    changelog topics, so two deployments with different ids never share offsets or state.
    """

    app_id: str = "psinfor-processors"
    topic_names: Mapping[str, str] = field(default_factory=dict)
    take_max: int = 500
    """Most events handled as one batch: their canonical records are awaited together."""
    take_within_s: float = 0.05
    """A batch is handled after this long even when it is not full (the latency bound at low rates)."""
    linger_ms: int = 5
    """librdkafka linger of the canonical producer."""
    changelog_replication_factor: int = 1
    """Replication factor faust creates the table changelog topics with (3 in production)."""
    session_timeout_s: float = 30.0
    """How long the group waits for a silent member (a killed worker) before giving its partitions away."""
    faust_sensor: bool = False
    """Also install faust's Prometheus sensor (per-event framework metrics; costs throughput)."""
    datadir: Path | None = None
    """faust's data directory; a fresh temporary directory when None (tables are in memory)."""

    def topic(self, name: str) -> str:
        """The topic actually used for catalogue topic ``name``."""
        return self.topic_names.get(name, name)


@dataclass
class ProcessorApp:
    """The faust app and the shared clients the runner uses; one per process, built by :func:`build_app`."""

    faust: faust.App
    settings: Settings
    options: ProcessorOptions
    producer: PipelineProducer
    registry: SchemaRegistryClient
    dead_letters: DeadLetterProducer
    health: HealthState
    rules: Rules
    """The transformation rules every flow gets through its ``FlowContext``."""
    start_offsets: GroupStartOffsets
    """Where the group reads each source partition from (the runner checks every offset from there)."""


def faust_app(settings: Settings, options: ProcessorOptions) -> faust.App:
    """The configured ``faust.App`` alone (no flows); :func:`build_app` is what ``main()`` calls."""
    broker = faust_broker_settings(settings.kafka)
    datadir = options.datadir or Path(tempfile.mkdtemp(prefix="psinfor-processors-"))
    app = faust.App(
        options.app_id,
        broker=broker.broker,
        broker_credentials=broker.broker_credentials,
        broker_client_id=f"{settings.kafka.client_id}-{STAGE}",
        key_serializer="raw",
        value_serializer="raw",
        store="memory://",
        datadir=str(datadir),
        autodiscover=False,
        web_enabled=False,
        # The runner acks; an exception or a cancelled task must never ack an event on its behalf.
        stream_ack_exceptions=False,
        stream_ack_cancelled_tasks=False,
        # Tables are small (one version per key) and recovered before processing starts; faust's
        # default waits 3 s after each rebalance before it even begins.
        stream_recovery_delay=0.0,
        stream_buffer_maxsize=max(4096, options.take_max * 4),
        broker_commit_interval=settings.service.commit_interval_s,
        broker_commit_every=10_000,
        broker_max_poll_records=max(500, options.take_max),
        broker_session_timeout=options.session_timeout_s,
        broker_heartbeat_interval=min(3.0, options.session_timeout_s / 3),
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_linger_ms=5,
        table_standby_replicas=0,
        topic_replication_factor=options.changelog_replication_factor,
        topic_allow_declare=True,
    )
    # Offsets are committed from what the runner made durable, never from faust's acks alone.
    transport: Any = app.transport
    transport.Consumer = DurableCommitConsumer

    @app.timer(RESEEK_AFTER_S)  # type: ignore[untyped-decorator]
    async def seek_back_to_missing_offsets() -> None:
        consumer = cast(DurableCommitConsumer, app.consumer)
        assigned = consumer.assignment()
        for tp, missing in consumer.offsets.overdue_seeks():
            if tp in assigned:
                log.warning(
                    "a missing source offset still has not arrived; reading it again",
                    extra={"topic": tp.topic, "partition": tp.partition, "missing": missing},
                )
                await consumer.seek(tp, missing)

    if options.faust_sensor:
        # faust's metrics go to the default registry, which our HealthServer already serves at /metrics
        # (faust's own web server stays off), under our prefix. Created once per process: a second
        # app in the same process would register the same names again.
        from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
        from prometheus_client import REGISTRY

        app.monitor = PrometheusMonitor(metrics=FaustMetrics.create(REGISTRY, "psinfor_faust"))
    return app


def build_app(settings: Settings, options: ProcessorOptions, rules: Rules | None = None) -> ProcessorApp:
    """The faust app plus the shared producer, registry client, DLQ producer, health state and rules.

    ``rules`` default to the file ``settings.rules.path`` names (the packaged rules when unset).
    Raises ConfigError when the settings lack the registry, RulesFileError (a ConfigError) when the
    rules file is unusable. The producer's poll thread starts here; ``processors.main`` closes it when
    the worker stops.
    """
    # Rules first: a bad rules file must stop the start-up before any client exists.
    loaded = rules if rules is not None else load_rules(settings.rules.path)
    registry = registry_client(settings.require_registry())
    producer = PipelineProducer(
        settings.kafka,
        client_id_suffix=STAGE,
        # murmur2 is the Java clients' (and aiokafka's) partitioner: a canonical key lands in the same
        # partition whichever client writes it.
        overrides={"linger.ms": options.linger_ms, "partitioner": "murmur2_random"},
    )
    dead_letters = DeadLetterProducer(
        producer,
        topic=options.topic(DLQ_TOPIC),
        stage=STAGE,
        timeout_s=settings.dlq.delivery_timeout_s,
    )
    app = faust_app(settings, options)
    health = HealthState.from_settings(settings.service, STAGE)

    # Liveness means the worker's event loop runs, with or without events to handle: an idle worker
    # must not look stuck. A batch that never completes ends the process through its own timeouts.
    @app.timer(max(1.0, settings.service.heartbeat_timeout_s / 3))  # type: ignore[untyped-decorator]
    async def event_loop_alive() -> None:
        health.heartbeat()

    return ProcessorApp(
        faust=app,
        settings=settings,
        options=options,
        producer=producer,
        registry=registry,
        dead_letters=dead_letters,
        health=health,
        rules=loaded,
        start_offsets=GroupStartOffsets(settings.kafka, options.app_id),
    )
