"""``psinfor process``: run the processor worker (faust) with the chosen flows until stopped.

``python -m processors.main --flows REF[,REF...]`` does the same without the whole command tree (the
SIGKILL test and supervisors use it). A flow reference is a production flow's name (see
:data:`FLOWS`, kept in ``processors/__init__.py``) or ``package.module:ATTRIBUTE`` naming a
:class:`~processors.runner.Flow` or a builder of one (see :func:`resolve_flow`).

SIGTERM/SIGINT stop the worker gracefully: faust commits the offsets of acknowledged batches. A fatal
error ends the process with :data:`~processors.runner.EXIT_FATAL` and nothing more committed.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import logging
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from pipeline.health import HealthServer
from pipeline.kafka_config import librdkafka_config
from pipeline.lag import LagExporter
from pipeline.log import configure_logging
from pipeline.settings import Settings, load_settings
from processors import FLOWS
from processors.app import STAGE, ProcessorApp, ProcessorOptions, build_app
from processors.erp_links import LINKS_TOPIC, ErpLinkStore
from processors.history import DEFAULT_SEED_TAIL, HISTORY_TOPICS, AnomalyHistory, seed_history
from processors.review_decisions import DECISIONS_TOPIC, ReviewFollower
from processors.runner import Flow, register_flow
from rules.engine import Rules, load_rules

log = logging.getLogger(__name__)

DECISIONS_POLL_S = 1.0
"""How often a worker applies new review decisions (a released order's next version flows after it)."""

__all__ = ["FLOWS", "FlowResources", "add_arguments", "main", "options_from", "resolve_flow", "run"]


class FlowResources:
    """What flow builders may ask for by parameter name, created on first use and shared by all flows.

    ``rules``: the rules ``main()`` loaded. ``order_keys`` / ``customer_keys``: one
    :class:`~processors.erp_links.ErpLinkStore` on the (renamed) ``state.erp-links`` topic, read to its
    end before it is handed out. :meth:`close` stops what was started.
    """

    def __init__(self, settings: Settings, options: ProcessorOptions, rules: Rules) -> None:
        self.settings = settings
        self.options = options
        self.rules = rules
        self._links: ErpLinkStore | None = None

    def links(self) -> ErpLinkStore:
        """The started link store (RetryableError when the links topic cannot be read to its end)."""
        if self._links is None:
            store = ErpLinkStore(self.settings.kafka, self.options.topic(LINKS_TOPIC))
            store.start()
            self._links = store
        return self._links

    def provide(self, name: str) -> Any:
        """The resource a builder parameter called ``name`` receives; KeyError for an unknown name."""
        if name == "rules":
            return self.rules
        if name in ("order_keys", "customer_keys"):
            return self.links()
        raise KeyError(name)

    def close(self) -> None:
        """Stop the link store if one was started."""
        if self._links is not None:
            self._links.close()
            self._links = None


def resolve_flow(reference: str, resources: FlowResources | None = None) -> Flow[Any]:
    """The flow a ``--flows`` item names: a :data:`FLOWS` name or ``package.module:ATTRIBUTE``.

    The attribute is a :class:`~processors.runner.Flow`, or a builder called with the ``resources``
    its parameters name (see :class:`FlowResources`; parameters with defaults that are not resources
    keep their defaults). ConfigError when it does not exist, is neither, or is a builder and no
    ``resources`` were given.
    """
    target = FLOWS.get(reference, reference)
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        known = ", ".join(sorted(FLOWS)) or "none yet"
        raise ConfigError(
            f"unknown flow {reference!r}: use a flow name ({known}) or package.module:ATTRIBUTE"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"flow {reference!r}: cannot import {module_name} ({exc})") from exc
    found = getattr(module, attribute, None)
    if callable(found) and not isinstance(found, Flow):
        found = _build(reference, found, resources)
    if not isinstance(found, Flow):
        raise ConfigError(
            f"flow {reference!r}: {module_name}.{attribute} is not a processors.runner.Flow or its builder"
        )
    return found


def _build(reference: str, builder: Callable[..., Any], resources: FlowResources | None) -> Any:
    if resources is None:
        raise ConfigError(f"flow {reference!r} is built at start-up from runtime resources")
    arguments: dict[str, Any] = {}
    for name, parameter in inspect.signature(builder).parameters.items():
        try:
            arguments[name] = resources.provide(name)
        except KeyError:
            if parameter.default is inspect.Parameter.empty:
                raise ConfigError(
                    f"flow {reference!r}: its builder needs {name!r}, which the worker does not provide"
                ) from None
    return builder(**arguments)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``psinfor process`` (shared by the CLI group and ``python -m processors.main``)."""
    defaults = ProcessorOptions()
    parser.add_argument(
        "--flows", required=True, help="comma-separated flow names or package.module:ATTRIBUTE references"
    )
    parser.add_argument(
        "--app-id",
        default=defaults.app_id,
        help="consumer group and table changelog prefix (default: %(default)s)",
    )
    parser.add_argument(
        "--topic",
        action="append",
        default=[],
        metavar="NAME=ACTUAL",
        help="use topic ACTUAL where the catalogue says NAME (repeatable; tests, side-by-side runs)",
    )
    parser.add_argument("--take-max", type=int, default=defaults.take_max, help="events per batch")
    parser.add_argument(
        "--take-within", type=float, default=defaults.take_within_s, help="seconds a batch may wait to fill"
    )
    parser.add_argument(
        "--linger-ms", type=int, default=defaults.linger_ms, help="canonical producer linger (ms)"
    )
    parser.add_argument(
        "--changelog-replication",
        type=int,
        default=defaults.changelog_replication_factor,
        help="replication factor of the table changelog topics faust creates",
    )
    parser.add_argument(
        "--session-timeout",
        type=float,
        default=defaults.session_timeout_s,
        help="seconds before the group gives a silent (killed) worker's partitions away",
    )
    parser.add_argument(
        "--faust-sensor", action="store_true", help="also export faust's per-event Prometheus metrics"
    )
    parser.add_argument(
        "--datadir", type=Path, default=None, help="faust data directory (default: a temp dir)"
    )


def options_from(args: argparse.Namespace) -> ProcessorOptions:
    """ProcessorOptions from parsed arguments; ConfigError for a malformed ``--topic``."""
    names: dict[str, str] = {}
    for item in args.topic:
        name, sep, actual = item.partition("=")
        if not sep or not name or not actual:
            raise ConfigError(f"--topic {item!r} is not NAME=ACTUAL")
        names[name] = actual
    if args.take_max < 1 or args.take_within <= 0:
        raise ConfigError("--take-max must be >= 1 and --take-within > 0")
    return ProcessorOptions(
        app_id=args.app_id,
        topic_names=names,
        take_max=args.take_max,
        take_within_s=args.take_within,
        linger_ms=args.linger_ms,
        changelog_replication_factor=args.changelog_replication,
        session_timeout_s=args.session_timeout,
        faust_sensor=args.faust_sensor,
        datadir=args.datadir,
    )


def run(
    settings: Settings,
    options: ProcessorOptions,
    flow_refs: Sequence[str],
    *,
    history_tail: int = DEFAULT_SEED_TAIL,
) -> int:
    """Build the app, register the flows and run the worker until it is stopped; returns the exit code.

    The flows share one :class:`~processors.history.AnomalyHistory`; when one of them emits a record
    the history keeps (orders, products, inventory), it is first seeded from the last ``history_tail``
    records of each partition of those canonical topics (RetryableError when they cannot be read).
    """
    import faust

    configure_logging(settings.service, stage=STAGE, secrets=settings.secret_values())
    refs = [ref.strip() for ref in flow_refs if ref.strip()]
    if not refs:
        raise ConfigError("--flows names no flow")
    # Loaded once here (a bad file stops the start-up with every problem listed) and shared by all flows.
    rules = load_rules(settings.rules.path)
    resources = FlowResources(settings, options, rules)
    try:
        flows = [resolve_flow(ref, resources) for ref in refs]
        app: ProcessorApp = build_app(settings, options, rules)
        history = AnomalyHistory(rules.anomalies.order_value_window)
        if history_tail > 0 and any(flow.record in HISTORY_TOPICS for flow in flows):
            actual = {record: options.topic(name) for record, name in HISTORY_TOPICS.items()}
            seed_history(history, settings.kafka, app.registry, actual, per_partition=history_tail)
        runners = [register_flow(app, flow, history=history) for flow in flows]
        follower: ReviewFollower | None = None
        reviewed = {r.review_output: r.flow.record for r in runners if r.review_output is not None}
        if reviewed:
            # Before any event: the keys held (by any worker) and released so far.
            follower = ReviewFollower(
                history,
                settings.kafka,
                review_topics=reviewed,
                decisions_topic=options.topic(DECISIONS_TOPIC),
                tail=max(history_tail, 1),
            )
            follower.catch_up()
            following = follower

            @app.faust.timer(DECISIONS_POLL_S)  # type: ignore[untyped-decorator]
            async def follow_review_decisions() -> None:
                following.poll_new()

    except BaseException:
        resources.close()
        raise
    server = HealthServer.from_settings(settings.service, app.health)
    server.start()
    log.info(
        "processor starting",
        extra={"flows": [flow.name for flow in flows], "app_id": options.app_id, "health": server.url},
    )

    @app.faust.on_partitions_assigned.connect
    async def _ready(*_: Any, **__: Any) -> None:
        app.health.set_ready(True)

    worker = faust.Worker(app.faust, loglevel=settings.service.log_level, quiet=True, redirect_stdouts=False)
    # mode's Worker would replace our logging configuration with its own.
    worker.override_logging = False
    code = 0
    # The group's own consumer lag, in messages and seconds, on this worker's /metrics.
    lag = LagExporter(
        librdkafka_config(settings.kafka, client_id_suffix="processors-lag"),
        [options.app_id],
        interval_s=settings.service.lag_interval_s,
    )
    try:
        with lag:
            worker.execute_from_commandline()
    except SystemExit as exc:  # the worker always ends this way, with its exit status
        code = exc.code if isinstance(exc.code, int) else 0
    finally:
        server.stop()
        if follower is not None:
            follower.close()
        resources.close()
        app.start_offsets.close()
        if options.datadir is None:  # the temporary directory faust_app made for this run
            shutil.rmtree(app.faust.conf.datadir, ignore_errors=True)
        remaining = app.producer.close(timeout=settings.dlq.delivery_timeout_s)
        if remaining:
            code = code or 1
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m processors.main``; configuration errors are one line on stderr and exit 2."""
    parser = argparse.ArgumentParser(prog="psinfor-process", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(load_settings(), options_from(args), args.flows.split(","))
    except ConfigError as exc:
        print(f"psinfor: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
