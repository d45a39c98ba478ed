"""``psinfor dev up``: the whole integration on this machine, supervised, until Ctrl-C.

``add_up_parser(dev_commands)`` adds ``up`` to the ``dev`` group (cli/dev.py calls it). The work is in
:mod:`devstack`; this module parses options, prints where to look and keeps the status line going.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError

if TYPE_CHECKING:
    from devstack.services import StackOptions
    from devstack.stack import DevStack
    from devstack.status import Console

DESCRIPTION = """\
Start everything the integration needs on this machine and keep it running until Ctrl-C:

  Kafka (KRaft, one node) and the schema registry, every topic and schema, the PrestaShop and Infor
  sandboxes (one shared catalogue; the shop's webhooks go to the webhook receiver, Infor's IMS pushes
  to the IMS receiver, the .ionapi the Infor sandbox writes is what the Infor stages use), the four
  ingest services, the processors (every flow) and every sink.

Each service is a child process: its lines appear prefixed with its name, the status line shows
services up, canonical events/s, the sinks' lag and the DLQ, a service that crashes is restarted with
exponential backoff, and editing <data-dir>/rules.yaml restarts the processors and sinks. Ctrl-C (or
SIGTERM) stops everything in reverse order within --stop-timeout seconds.

The Kafka and registry jars are fetched from Maven Central on first use (cached); --no-build skips
that step. Every run starts from empty topics and freshly seeded sandboxes.
"""


def add_up_parser(dev_commands: Any) -> argparse.ArgumentParser:
    """Add ``up`` to the ``dev`` subcommands; returns its parser."""
    parser: argparse.ArgumentParser = dev_commands.add_parser(
        "up",
        help="run the whole integration on the sandboxes (Kafka, registry, sandboxes, every stage)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--with-traffic",
        type=float,
        default=None,
        metavar="RATE",
        help="drive the shop with realistic shoppers at RATE orders/s, and Infor with stock movements",
    )
    parser.add_argument(
        "--no-build",
        action="store_true",
        help="do not fetch the Kafka/registry jars (use the cache as it is)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where logs, secrets, rules and data go (default: ~/.cache/psinfor/stack)",
    )
    parser.add_argument(
        "--kafka-bootstrap",
        default=None,
        metavar="HOST:PORT",
        help="use this running Kafka instead of starting one",
    )
    parser.add_argument(
        "--registry-url", default=None, metavar="URL", help="use this running registry (ccompat base URL)"
    )
    parser.add_argument(
        "--topic-prefix",
        default="",
        metavar="P",
        help="prefix every topic, consumer group and app id with P: an isolated copy on a shared cluster",
    )
    parser.add_argument(
        "--sinks-per-target",
        action="store_true",
        help="run the sinks as one process per target system instead of one per sink (lighter)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of both sandboxes (default 1)")
    parser.add_argument(
        "--shop-products", type=int, default=150, help="products in the sandbox shop (default 150)"
    )
    parser.add_argument(
        "--infor-items", type=int, default=150, help="items in the Infor sandbox (default 150)"
    )
    parser.add_argument("--java", type=Path, default=None, help="preferred java executable")
    parser.add_argument(
        "--status-interval",
        type=float,
        default=None,
        help="seconds between status lines (default: 1 on a terminal, 10 otherwise)",
    )
    parser.add_argument(
        "--stop-timeout",
        type=float,
        default=60.0,
        help="seconds Ctrl-C may take to stop everything (default 60)",
    )
    parser.add_argument(
        "--print-plan", action="store_true", help="print the services, their order and argv, start nothing"
    )
    parser.set_defaults(handler=run)
    return parser


class _StopRequestedError(Exception):
    """SIGTERM, turned into an exception so the main thread unwinds like on Ctrl-C."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _StopRequestedError


def options_from(args: argparse.Namespace) -> StackOptions:
    """The stack options the arguments ask for; ConfigError for impossible values."""
    from devstack.services import StackOptions
    from devstack.stack import default_data_dir

    if args.with_traffic is not None and args.with_traffic <= 0:
        raise ConfigError("--with-traffic RATE must be > 0 orders/s")
    if args.shop_products < 1 or args.infor_items < 1:
        raise ConfigError("--shop-products and --infor-items must be >= 1")
    return StackOptions(
        data_dir=(args.data_dir or default_data_dir()).resolve(),
        kafka_bootstrap=args.kafka_bootstrap,
        registry_url=args.registry_url,
        topic_prefix=args.topic_prefix,
        sink_layout="per-target" if args.sinks_per_target else "per-sink",
        seed=args.seed,
        shop_products=args.shop_products,
        infor_items=args.infor_items,
        java=args.java,
    )


def run(args: argparse.Namespace) -> int:
    """Start the stack, show where to look and the status line, stop it on Ctrl-C / SIGTERM."""
    # Imported here: the stack needs every stage's module, the rest of the CLI should not pay for it.
    from devstack.stack import DevStack
    from devstack.status import Console, PipelineSampler, StatusReporter, pipeline_topics
    from devstack.supervisor import StackStartError
    from schemas.catalogue import load_catalogue

    options = options_from(args)
    out = sys.stdout
    live = out.isatty()
    console = Console(out, live=live, colour=live)
    stack = DevStack.create(options, emit=console.log_line, colour=live)
    if args.print_plan:
        return _print_plan(stack)
    if not args.no_build and (options.kafka_bootstrap is None or options.registry_url is None):
        from sandbox.kafka.runtime import fetch_runtime

        fetch_runtime(java=options.java)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    # Also when started with SIGINT ignored (`dev up &` from a script): Ctrl-C / kill -INT must stop it.
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    reporter: StatusReporter | None = None
    traffic: Any = None
    started = time.monotonic()
    try:
        stack.prepare()
        try:
            stack.start()
        except StackStartError as exc:
            console.log_line(f"psinfor dev up: {exc.service} could not be started: {exc.reason}")
            for line in exc.tail[-20:]:
                console.log_line(f"  {exc.service}| {line}")
            console.log_line(f"logs: {stack.plan.logs_dir}")
            return 1
        _print_where_to_look(stack, console, time.monotonic() - started)
        canonical, dlq = pipeline_topics(
            [topic.name for topic in load_catalogue().topics], stack.plan.options.topic_prefix
        )
        sampler = PipelineSampler(
            stack.plan.bootstrap,
            canonical_topics=canonical,
            dlq_topics=dlq,
            sink_groups=stack.plan.sink_groups(),
        )
        interval = args.status_interval if args.status_interval is not None else (1.0 if live else 10.0)
        reporter = StatusReporter(console, stack.supervisor.status, sampler, interval_s=interval).start()
        if args.with_traffic is not None:
            from devstack.traffic import TrafficDriver

            traffic = TrafficDriver.for_stack(stack.endpoints, rate=args.with_traffic, emit=console.log_line)
            traffic.start()
        threading.Event().wait()  # until Ctrl-C / SIGTERM
        return 0
    except (KeyboardInterrupt, _StopRequestedError):
        return 0
    finally:
        # A second Ctrl-C / SIGTERM must not cut the ordered shutdown short (it is bounded anyway).
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        console.log_line(f"dev up: stopping everything in reverse order (at most {args.stop_timeout:g} s)")
        if traffic is not None:
            traffic.stop()
        if reporter is not None:
            reporter.stop()
        records = stack.stop(args.stop_timeout)
        if records:
            forced = [r.name for r in records if r.forced]
            took = max(r.stopped_at for r in records) - min(r.stopped_at for r in records)
            console.log_line(
                f"dev up: {len(records)} processes stopped in reverse order in {took:.1f} s"
                + (f"; killed: {', '.join(forced)}" if forced else "")
            )
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


def _print_where_to_look(stack: DevStack, console: Console, took_s: float) -> None:
    plan = stack.plan
    lines = [f"dev up: {len(stack.specs)} services up in {took_s:.1f} s. Where to look:"]
    current = ""
    for name, link in stack.links():
        if name != current:
            lines.append(f"  {name}")
            current = name
        lines.append(f"      {link.label:<18} {link.url}")
    lines.append(f"  files in {plan.data_dir}:")
    lines.append(f"      {'logs':<18} {plan.logs_dir}/<service>.log")
    lines.append(f"      {'rules':<18} {plan.rules_path}  (edit: processors and sinks restart)")
    lines.append(f"      {'catalogue':<18} {plan.catalogue_path}")
    lines.append(f"      {'.ionapi':<18} {plan.ionapi_path}")
    lines.append(
        f"  try: curl -X POST {plan.prestashop_url}/_sandbox/orders -H 'content-type: application/json' "
        '-d \'{"customer_id": 1, "lines": [{"product_id": 1}]}\''
    )
    lines.append(f"       psinfor demo --data-dir {plan.data_dir}    (narrated order-to-cash on this stack)")
    lines.append("  Ctrl-C stops everything.")
    for line in lines:
        console.log_line(line)


def _print_plan(stack: DevStack) -> int:
    from devstack.services import build_services, start_tiers

    specs = build_services(stack.plan)
    for index, tier in enumerate(start_tiers(specs)):
        print(f"tier {index}:")
        for spec in tier:
            after = f" (after {', '.join(spec.depends_on)})" if spec.depends_on else ""
            print(f"  {spec.name} [{spec.kind}, {spec.group}]{after}")
            print(f"      {' '.join(spec.argv)}")
    return 0
