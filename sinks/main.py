"""``psinfor sink``: run the chosen sinks in one process until stopped.

``python -m sinks.main --sinks NAME[,NAME...]`` does the same without the whole command tree (the
SIGKILL test and supervisors use it). A sink is named as in :data:`sinks.registry.SINKS`, or as
``package.module:FACTORY``.

``main()`` builds the settings, then once per process: the rules, the idempotent producer (DLQ and the
sinks' own writes), the Schema Registry client and :class:`~sinks.base.SinkResources`; each sink's
factory builds its clients from them. One :class:`~sinks.runner.SinkRunner` per sink runs on one
asyncio loop, consumer group ``<group prefix><sink name>``, with one circuit breaker per target shared
by the sinks of that target. ``/metrics``, ``/healthz`` and ``/readyz`` are served on
``service.http_host:http_port``; liveness needs every runner's loop to have reported.

Exit status: 0 after SIGTERM/SIGINT (every runner drained and committed); :data:`EXIT_FATAL` when a
runner stopped on a bug, ``DlqLimitExceeded`` or a fatal Kafka error (the others are stopped
gracefully, nothing past a failing record is committed); 2 for a configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka.schema_registry import SchemaRegistryClient

from pipeline.errors import ConfigError
from pipeline.health import HealthServer, HealthState
from pipeline.kafka_config import librdkafka_config
from pipeline.lag import LagExporter
from pipeline.log import configure_logging
from pipeline.producer import PipelineProducer
from pipeline.settings import Settings, load_settings
from rules.engine import load_rules
from schemas.codec import AvroCodec
from schemas.registry import registry_client
from sinks.base import Sink, SinkFactory, SinkResources, dlq_topic
from sinks.breaker import breakers_for
from sinks.registry import SINKS, resolve_sink
from sinks.runner import SinkRunner

log = logging.getLogger(__name__)

STAGE = "sinks"
"""The process's health stage name (each runner reports under its sink's name)."""
DEFAULT_GROUP_PREFIX = "psinfor-sink-"
EXIT_FATAL = 70
"""Exit status when a runner stopped on an error (EX_SOFTWARE); the supervisor restarts the process."""


@dataclass(frozen=True)
class SinkOptions:
    """How this sink deployment runs (command-line options of ``psinfor sink``).

    ``topic_names`` renames catalogue topics for this run (tests, side-by-side deployments); other
    catalogue names get ``topic_prefix`` prepended (``sinks.topic_prefix``).
    """

    topic_names: Mapping[str, str] = field(default_factory=dict)
    topic_prefix: str = ""
    group_prefix: str = DEFAULT_GROUP_PREFIX

    def topic(self, name: str) -> str:
        """The topic actually used for catalogue topic ``name``."""
        return self.topic_names.get(name, self.topic_prefix + name)

    def group(self, sink_name: str) -> str:
        """The consumer group of a sink."""
        return f"{self.group_prefix}{sink_name}"


class _EveryRunnerBeats:
    """The process is alive only while every runner's loop reports: one stuck runner fails /healthz."""

    def __init__(self, health: HealthState, count: int) -> None:
        self._health = health
        self._count = count
        self._seen: set[int] = set()

    def beat(self, index: int) -> None:
        self._seen.add(index)
        if len(self._seen) >= self._count:
            self._seen.clear()
            self._health.heartbeat()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``psinfor sink`` (shared by the CLI group and ``python -m sinks.main``)."""
    parser.add_argument(
        "--sinks",
        required=True,
        metavar="NAME[,NAME...]",
        help=f"comma-separated sinks to run: {', '.join(SINKS)}; or package.module:FACTORY",
    )
    parser.add_argument(
        "--topic",
        action="append",
        default=[],
        metavar="CATALOGUE=ACTUAL",
        help="use topic ACTUAL where the catalogue says CATALOGUE, for sources and dead-letter topics "
        "(repeatable; tests, side-by-side runs)",
    )
    parser.add_argument(
        "--group-prefix",
        default=DEFAULT_GROUP_PREFIX,
        metavar="P",
        help="consumer group of each sink is P<sink name> (default: %(default)s)",
    )


def options_from(args: argparse.Namespace, settings: Settings) -> SinkOptions:
    """SinkOptions from parsed arguments; ConfigError for a malformed ``--topic`` or group prefix."""
    names: dict[str, str] = {}
    for item in args.topic:
        name, sep, actual = item.partition("=")
        if not sep or not name or not actual:
            raise ConfigError(f"--topic {item!r} is not CATALOGUE=ACTUAL")
        names[name] = actual
    if not args.group_prefix.strip():
        raise ConfigError("--group-prefix must not be empty")
    return SinkOptions(
        topic_names=names, topic_prefix=settings.sinks.topic_prefix, group_prefix=args.group_prefix
    )


def sink_references(value: str) -> list[str]:
    """The sink references of a ``--sinks`` value, without blanks or repeats; ConfigError if none."""
    refs = list(dict.fromkeys(ref.strip() for ref in value.split(",") if ref.strip()))
    if not refs:
        raise ConfigError("--sinks names no sink")
    return refs


def run(settings: Settings, options: SinkOptions, refs: Sequence[str]) -> int:
    """Run the sinks until SIGTERM/SIGINT or a fatal error; returns the exit status (see the module)."""
    configure_logging(settings.service, stage=STAGE, secrets=settings.secret_values())
    factories = [(ref, resolve_sink(ref)) for ref in refs]  # unknown names fail before anything starts
    registry_settings = settings.require_registry()
    rules = load_rules(settings.rules.path)
    health = HealthState.from_settings(settings.service, STAGE)
    producer = PipelineProducer(settings.kafka, client_id_suffix=STAGE)
    code = EXIT_FATAL
    try:
        with (
            registry_client(registry_settings) as registry,
            HealthServer.from_settings(settings.service, health) as server,
        ):
            log.info("sinks starting", extra={"sinks": list(refs), "health": server.url})
            resources = SinkResources(settings=settings, rules=rules, producer=producer, topic=options.topic)
            code = asyncio.run(_serve(settings, options, factories, resources, registry, health))
    finally:
        undelivered = producer.close(timeout=settings.dlq.delivery_timeout_s)
        if undelivered and code == 0:
            code = EXIT_FATAL
    return code


async def _serve(
    settings: Settings,
    options: SinkOptions,
    factories: Sequence[tuple[str, SinkFactory]],
    resources: SinkResources,
    registry: SchemaRegistryClient,
    health: HealthState,
) -> int:
    loop = asyncio.get_running_loop()
    runners: list[SinkRunner] = []
    results: list[BaseException | None] = []
    stopping = asyncio.Event()

    def stop_all() -> None:
        stopping.set()
        for runner in runners:
            runner.stop()

    signals = (signal.SIGTERM, signal.SIGINT)
    for number in signals:
        loop.add_signal_handler(number, stop_all)
    try:
        async with contextlib.AsyncExitStack() as stack:
            sinks: list[Sink[Any]] = []
            for _, factory in factories:
                sinks.append(await stack.enter_async_context(factory(resources)))
            _check_unique([sink.name for sink in sinks])
            # The sinks' own consumer lag, in messages and seconds, on this process's /metrics.
            stack.enter_context(
                LagExporter(
                    librdkafka_config(settings.kafka, client_id_suffix=f"{STAGE}-lag"),
                    [options.group(sink.name) for sink in sinks],
                    interval_s=settings.service.lag_interval_s,
                )
            )
            breakers = breakers_for(
                {sink.target for sink in sinks},
                failure_threshold=settings.sinks.breaker_failures,
                probe_interval_s=settings.sinks.breaker_probe_s,
            )
            beats = _EveryRunnerBeats(health, len(sinks))
            for index, sink in enumerate(sinks):
                runners.append(
                    SinkRunner(
                        settings,
                        sink,
                        topics=[options.topic(source) for source in sink.sources],
                        group_id=options.group(sink.name),
                        dlq_topic=options.topic(dlq_topic(sink.target)),
                        codec=AvroCodec(registry, sink.record),
                        producer=resources.producer,
                        breaker=breakers[sink.target],
                        heartbeat=functools.partial(beats.beat, index),
                    )
                )
            if stopping.is_set():
                return 0
            tasks = [asyncio.create_task(runner.run(), name=f"sink-{runner.stage}") for runner in runners]
            health.set_ready(True)
            # A runner ends on its own only when it failed: then the others stop too.
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            health.set_ready(False, "stopping")
            stop_all()
            results = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for number in signals:
            loop.remove_signal_handler(number)
    failures = [result for result in results if isinstance(result, BaseException)]
    for runner, result in zip(runners, results, strict=True):
        if isinstance(result, BaseException):
            log.critical(
                "sink runner failed",
                extra={"stage": runner.stage, "error": f"{type(result).__name__}: {result}"},
            )
    log.info("sinks stopped", extra={"failed": len(failures)})
    return EXIT_FATAL if failures else 0


def _check_unique(names: Sequence[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"--sinks runs {name!r} twice: each sink name is one consumer group")
        seen.add(name)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sinks.main``; configuration errors are one line on stderr and exit 2."""
    parser = argparse.ArgumentParser(prog="psinfor-sink", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        return run(settings, options_from(args, settings), sink_references(args.sinks))
    except ConfigError as exc:
        print(f"psinfor: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
