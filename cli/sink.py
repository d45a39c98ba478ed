"""``psinfor sink``: run sinks (canonical topics → Infor / PrestaShop) until stopped.

The work is in ``sinks.main``; this module only adds the command to the tree.
"""

from __future__ import annotations

import argparse
from typing import Any

from pipeline.settings import env_name, load_settings

DESCRIPTION = f"""\
Run one or more sinks in this process. Each sink consumes its canonical topics as its own consumer
group (psinfor-sink-<name>) and makes every record true in its target (Infor M3 or PrestaShop):

- records of one key are applied strictly in order, different keys in parallel (at most
  {env_name("sinks", "max_in_flight_keys")} target calls at once);
- a transient failure (timeout, 5xx, 429) is retried with backoff, holding only that key; when a target
  keeps failing its circuit breaker pauses the sink's partitions and probes every
  {env_name("sinks", "breaker_probe_s")} seconds: lag grows, nothing is dead-lettered;
- a record the target can never take goes to dlq.sink-infor / dlq.sink-prestashop with the reason, the
  field and the target's answer in headers (`psinfor dlq ...` replays it);
- offsets are committed per partition up to the first record not finished, so a crash or rebalance
  repeats finished records (every sink write is idempotent) and never skips one.

Needs {env_name("kafka", "bootstrap_servers")}, {env_name("registry", "url")} and the target's settings
(PSINFOR_INFOR__*, PSINFOR_PRESTASHOP__*). Serves /metrics, /healthz and /readyz on
{env_name("service", "http_host")}:{env_name("service", "http_port")}. SIGTERM/SIGINT drain running calls
(at most {env_name("sinks", "shutdown_timeout_s")} seconds), commit and exit 0; a sink bug or the DLQ limit
exits 70 with nothing past the failing record committed.

Examples:
  psinfor sink --sinks infor-orders,infor-customers
  psinfor sink --sinks prestashop-stock --topic canonical.inventory.v1=staging.inventory
"""


def register(subcommands: Any) -> argparse.ArgumentParser:
    """Add ``sink`` to the ``psinfor`` command tree; returns its parser."""
    from sinks.main import add_arguments

    parser: argparse.ArgumentParser = subcommands.add_parser(
        "sink",
        help="run sinks: canonical topics -> Infor / PrestaShop",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Build the settings from the environment and run the sinks until stopped."""
    from sinks.main import options_from, sink_references
    from sinks.main import run as run_sinks

    settings = load_settings()
    return run_sinks(settings, options_from(args, settings), sink_references(args.sinks))
