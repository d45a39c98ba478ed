"""``psinfor demo``: a guided order-to-cash run on the sandbox stack (see :mod:`devstack.demo`).

Attaches to the ``psinfor dev up`` running with the same ``--data-dir``; otherwise starts the stack
itself (the services' output goes to ``<data-dir>/logs``; only the supervisor's own lines are shown),
runs the demo and stops it again.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

DESCRIPTION = """\
Place a handful of orders in the PrestaShop sandbox and narrate each step of the order-to-cash cycle as
it happens: webhook received -> raw record -> canonical order -> Infor sales order number -> shipment
with tracking -> invoice -> payment status in PrestaShop. Then one failure: an order M3 refuses
(an item it does not know, after a rules change) is dead-lettered with M3's error, the rule is fixed,
`psinfor dlq replay` puts the order back and it becomes exactly one Infor sales order.

With a `psinfor dev up` running on the same --data-dir the demo uses that stack; otherwise it starts
one itself (about a minute; the first time also the Kafka/registry jars) and stops it at the end
(--keep-running leaves it up until Ctrl-C).
"""


def register(subcommands: Any) -> argparse.ArgumentParser:
    """Add ``demo`` to the ``psinfor`` command tree; returns its parser."""
    parser: argparse.ArgumentParser = subcommands.add_parser(
        "demo",
        help="a narrated order-to-cash run on the sandboxes (attaches to `dev up` or starts it)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="the stack's data dir, as given to `dev up` (default: ~/.cache/psinfor/stack)",
    )
    parser.add_argument(
        "--orders", type=int, default=3, choices=(1, 2, 3), help="orders to narrate (default 3)"
    )
    parser.add_argument("--no-failure", action="store_true", help="skip the dead-letter and replay part")
    parser.add_argument(
        "--step-timeout", type=float, default=90.0, help="seconds a step may take before the demo gives up"
    )
    own = parser.add_argument_group("when the demo starts the stack itself")
    own.add_argument("--kafka-bootstrap", default=None, metavar="HOST:PORT", help="use this running Kafka")
    own.add_argument("--registry-url", default=None, metavar="URL", help="use this running registry")
    own.add_argument(
        "--topic-prefix", default="", metavar="P", help="prefix of the stack's topics and groups"
    )
    own.add_argument("--sinks-per-target", action="store_true", help="one sink process per target system")
    own.add_argument("--no-build", action="store_true", help="do not fetch the Kafka/registry jars")
    own.add_argument(
        "--keep-running", action="store_true", help="leave the stack up after the demo, until Ctrl-C"
    )
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Attach or start, narrate, and stop what the demo started."""
    from devstack.demo import Demo
    from devstack.services import StackOptions
    from devstack.stack import DevStack, StackEndpoints, default_data_dir
    from devstack.stack_rules import stack_rules_text, with_item_case
    from devstack.supervisor import StackStartError

    out = sys.stdout
    data_dir = (args.data_dir or default_data_dir()).resolve()
    endpoints = StackEndpoints.read(data_dir)
    stack: DevStack | None = None
    if endpoints is not None:
        out.write(f"Using the `psinfor dev up` running on {data_dir} (pid {endpoints.supervisor_pid}).\n")
    else:
        options = StackOptions(
            data_dir=data_dir,
            kafka_bootstrap=args.kafka_bootstrap,
            registry_url=args.registry_url,
            topic_prefix=args.topic_prefix,
            sink_layout="per-target" if args.sinks_per_target else "per-sink",
        )
        # The demo's failure needs rules that pass SKUs to M3 as typed; its own stack starts with them.
        rules = with_item_case(stack_rules_text(), "keep")
        stack = DevStack.create(options, emit=_supervisor_lines(out), rules_text=rules)
        if not args.no_build and (args.kafka_bootstrap is None or args.registry_url is None):
            from sandbox.kafka.runtime import fetch_runtime

            fetch_runtime()
        out.write(f"Starting the stack (logs in {stack.plan.logs_dir}) ...\n")
        out.flush()
        started = time.monotonic()
        stack.prepare()
        try:
            stack.start()
        except StackStartError as exc:
            out.write(f"psinfor demo: {exc.service} could not be started: {exc.reason}\n")
            out.write("".join(f"  {exc.service}| {line}\n" for line in exc.tail[-15:]))
            return 1
        out.write(f"Stack up in {time.monotonic() - started:.0f} s.\n")
        endpoints = stack.endpoints
    demo = Demo(endpoints, out, step_timeout_s=args.step_timeout)
    try:
        code = demo.run(orders=args.orders, failure=not args.no_failure)
        if stack is not None and args.keep_running:
            out.write(f"The stack keeps running (shop {endpoints.prestashop_url}); Ctrl-C stops it.\n")
            out.flush()
            threading.Event().wait()
        return code
    except KeyboardInterrupt:
        return 130
    finally:
        demo.close()
        if stack is not None:
            out.write("Stopping the stack ...\n")
            out.flush()
            stack.stop()


def _supervisor_lines(out: Any) -> Callable[[str], None]:
    """Only the supervisor's own lines (start progress, restarts) reach the console; the services'
    output goes to their log files, so the narration stays readable."""
    lock = threading.Lock()

    def emit(line: str) -> None:
        if line.startswith("[dev-up]"):
            with lock:
                out.write(line + "\n")
                out.flush()

    return emit
