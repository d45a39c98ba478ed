"""``psinfor ingest prestashop-poller``: the PrestaShop webservice poller.

``add_poller_parser(ingest_subcommands)`` adds the command to the ``ingest`` group (cli/ingest.py
calls it). Running this module directly (``python -m cli.ingest_poller``) starts the same service,
for supervisors and tests that do not go through the whole command tree.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from pipeline.errors import ConfigError
from pipeline.settings import env_name, load_settings

DESCRIPTION = f"""\
Poll the PrestaShop webservice into the raw topics: orders incrementally on date_upd (watermark in
state.watermarks, persisted only after the records were acknowledged, with an overlap that re-reads
the last seconds), full scans of order_carriers (tracking numbers) and stock_availables (changes
date_upd does not show), and an immediate re-read of whatever a webhook notification names.

Needs {env_name("kafka", "bootstrap_servers")}, {env_name("prestashop", "base_url")} and
{env_name("prestashop", "ws_key")} (or {env_name("prestashop", "ws_key")}_FILE). Cadences and the overlap are
{env_name("poller")}__* (see `psinfor config env`). Serves /metrics, /healthz and /readyz on
{env_name("service", "http_host")}:{env_name("service", "http_port")}. SIGTERM stops it gracefully.
"""


def add_poller_parser(ingest_subcommands: Any) -> argparse.ArgumentParser:
    """Add ``prestashop-poller`` to the ``ingest`` subcommands; returns its parser."""
    parser: argparse.ArgumentParser = ingest_subcommands.add_parser(
        "prestashop-poller",
        help="poll the PrestaShop webservice (orders, tracking, stock) into the raw topics",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=run_poller)
    return parser


def run_poller(_args: argparse.Namespace) -> int:
    """Build the settings from the environment and run the poller until stopped."""
    from ingest.prestashop_poller.main import main

    return main(load_settings())


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry: ``python -m cli.ingest_poller``; configuration errors are one line, exit 2."""
    parser = argparse.ArgumentParser(prog="psinfor-ingest")
    add_poller_parser(parser.add_subparsers(required=True))
    args = parser.parse_args(argv if argv is not None else ["prestashop-poller"])
    try:
        return int(args.handler(args))
    except ConfigError as exc:
        print(f"psinfor: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
