"""``psinfor ingest infor-events`` (the IMS v3 receiver) and ``psinfor ingest infor-poller`` (M3 MI).

``add_infor_parsers(ingest_subcommands)`` adds both commands to the ``ingest`` group. Running this
module directly (``python -m cli.ingest_infor infor-events``) starts the same services, for
supervisors and tests that do not go through the whole command tree.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from pipeline.errors import ConfigError
from pipeline.settings import env_name, load_settings

EVENTS_DESCRIPTION = f"""\
Receive the BODs Infor ION pushes through the ION Messaging Service (IMS v3) and write each, as sent,
to raw.infor.<noun> keyed by its entity id (BODID, variationID and the IMS fields as headers). Point
ION's "ION Messaging Service v3" API suite at http(s)://<this host>/infor/ims; every message is
answered 202 only after Kafka acknowledged it, 503 + Retry-After while Kafka is away (ION retries),
400/412 with a reason for malformed or unexpected documents. Redeliveries (same BODID) are answered
202 without writing again.

Needs {env_name("kafka", "bootstrap_servers")} and {env_name("infor_events", "tokens")} (the bearer
token(s) ION sends; or {env_name("infor_events", "tokens")}_FILE). Optional:
{env_name("infor_events", "to_logical_ids")}, {env_name("infor_events", "accepted_documents")}, limits and
timeouts (see `psinfor config env`). Listens on
{env_name("service", "http_host")}:{env_name("service", "http_port")} (or --host/--port), with
/metrics, /healthz, /readyz and /docs.
"""

POLLER_DESCRIPTION = f"""\
Poll Infor M3's MI "changed since" lists for tenants that do not push: OIS100MI LstNewBalances (stock),
CRS610MI LstByNumber (customers), MMS200MI LstItmByChgDate (items). Each change is written to
raw.infor.<entity> as the MI record's JSON; the LMTS cursor per feed is kept in state.watermarks and
moves only after every record of a pass was acknowledged, so a restart resumes where it stopped.

Needs {env_name("kafka", "bootstrap_servers")}, {env_name("infor", "ionapi_path")} (the Backend Service
app's .ionapi with its service account) and {env_name("infor", "cono")}; {env_name("infor", "divi")},
{env_name("infor_events", "poll_feeds")}, {env_name("infor_events", "poll_interval_s")} and the overlap are
optional. Serves /metrics, /healthz and /readyz on
{env_name("service", "http_host")}:{env_name("service", "http_port")}.
"""


def add_infor_parsers(ingest_subcommands: Any) -> list[argparse.ArgumentParser]:
    """Add ``infor-events`` and ``infor-poller`` to the ``ingest`` subcommands; returns their parsers."""
    events: argparse.ArgumentParser = ingest_subcommands.add_parser(
        "infor-events",
        help="receive BODs pushed by Infor ION (IMS v3) into the raw topics",
        description=EVENTS_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    events.add_argument("--host", help="bind address (default: PSINFOR_SERVICE__HTTP_HOST)")
    events.add_argument("--port", type=int, help="port (default: PSINFOR_SERVICE__HTTP_PORT)")
    events.set_defaults(handler=run_events)
    poller: argparse.ArgumentParser = ingest_subcommands.add_parser(
        "infor-poller",
        help="poll Infor M3 MI changed-since lists (stock, customers, items) into the raw topics",
        description=POLLER_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    poller.set_defaults(handler=run_poller)
    return [events, poller]


def run_events(args: argparse.Namespace) -> int:
    """Run the IMS receiver in the foreground until stopped."""
    from ingest.infor_events.service import main

    return main(host=args.host, port=args.port)


def run_poller(_args: argparse.Namespace) -> int:
    """Build the settings from the environment and run the MI poller until stopped."""
    from ingest.infor_events.main import main

    return main(load_settings())


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry: ``python -m cli.ingest_infor {infor-events|infor-poller}``; config errors exit 2."""
    parser = argparse.ArgumentParser(prog="psinfor-ingest")
    add_infor_parsers(parser.add_subparsers(required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except ConfigError as exc:
        print(f"psinfor: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
