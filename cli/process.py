"""``psinfor process``: run the processors (raw → canonical) with the chosen flows.

The work is in ``processors.main``; this module only adds the command to the tree.
"""

from __future__ import annotations

import argparse
from typing import Any

from pipeline.settings import env_name, load_settings

DESCRIPTION = f"""\
Run the faust processor worker: every raw event of the chosen flows becomes one canonical Avro record
(Schema Registry wire format), a dead-letter record in dlq.processors (malformed or invalid, original
bytes), or a counted drop (an older or repeated version of its key). Source offsets are committed only
after the canonical and DLQ records were acknowledged; an unexpected error ends the process (exit 70)
with nothing more committed.

Needs {env_name("kafka", "bootstrap_servers")} and {env_name("registry", "url")}. Serves /metrics, /healthz
and /readyz on {env_name("service", "http_host")}:{env_name("service", "http_port")}. SIGTERM stops it
gracefully.
"""


def register(subcommands: Any) -> argparse.ArgumentParser:
    """Add ``process`` to the ``psinfor`` command tree; returns its parser."""
    from processors.main import add_arguments

    parser: argparse.ArgumentParser = subcommands.add_parser(
        "process",
        help="run the processors: raw topics -> canonical topics (faust worker)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Build the settings from the environment and run the worker until stopped."""
    from processors.main import options_from
    from processors.main import run as run_worker

    return run_worker(load_settings(), options_from(args), args.flows.split(","))
