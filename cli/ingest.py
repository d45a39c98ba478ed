"""``psinfor ingest``: the services that bring source events into the raw topics.

``ingest prestashop-webhooks`` runs the signed-webhook receiver; ``ingest prestashop-poller`` (from
:mod:`cli.ingest_poller`) the webservice poller; ``ingest infor-events`` and ``ingest infor-poller`` (from
:mod:`cli.ingest_infor`) the IMS v3 receiver and the M3 MI poller.
"""

from __future__ import annotations

import argparse

from cli.ingest_infor import add_infor_parsers
from cli.ingest_poller import add_poller_parser
from pipeline.settings import env_name

WEBHOOKS_DESCRIPTION = f"""\
Receive signed PrestaShop webhooks on POST /webhooks/prestashop/{{shop_key}} and write each body,
unchanged, to raw.prestashop.<entity>, answering 200 only after the broker acknowledged the record
(503 + Retry-After when Kafka is unavailable; 400/401/413/415 with a JSON reason otherwise).
Duplicates of an acknowledged webhook-id answer 200 without a second write.

Needs {env_name("kafka", "bootstrap_servers")}, {env_name("webhooks", "secrets")} (whsec_..., several
while rotating; or {env_name("webhooks", "secrets")}_FILE) and {env_name("webhooks", "shop_keys")}.
Limits, tolerance, dedupe window and the legacy X-PS-Signature switch are {env_name("webhooks")}__*
(see `psinfor config env`). Serves /metrics, /healthz, /readyz, /docs and /openapi.json on the same
address. SIGTERM stops it gracefully (in-flight requests finish, the producer is flushed).
"""


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``ingest`` group: one subcommand per ingest service."""
    parser = subcommands.add_parser(
        "ingest", help="ingest services: PrestaShop webhooks and poller, Infor IMS receiver and MI poller"
    )
    parser.set_defaults(handler=lambda _args: _usage(parser))
    services = parser.add_subparsers(title="services", metavar="SERVICE")

    webhooks = services.add_parser(
        "prestashop-webhooks",
        help="the signed-webhook receiver (HTTP) writing to the raw PrestaShop topics",
        description=WEBHOOKS_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    webhooks.add_argument(
        "--host", help=f"address to listen on (default: {env_name('service', 'http_host')}, else 127.0.0.1)"
    )
    webhooks.add_argument(
        "--port", type=int, help=f"port to listen on (default: {env_name('service', 'http_port')})"
    )
    webhooks.set_defaults(handler=_webhooks)

    add_poller_parser(services)
    add_infor_parsers(services)


def _webhooks(args: argparse.Namespace) -> int:
    from ingest.prestashop_webhooks.service import main

    return main(host=args.host, port=args.port)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2
