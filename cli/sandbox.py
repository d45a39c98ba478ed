"""``psinfor sandbox``: run the vendor sandboxes standalone so any HTTP client can be pointed at them.

``psinfor sandbox prestashop --port 8080 --seed 1 --ws-key KEY`` serves a seeded PrestaShop webservice
(see ``sandbox.prestashop``) until interrupted; ``psinfor sandbox infor --port 8090 --tenant T
--ionapi-out FILE`` serves the ION API gateway, M3 MI and IMS (see ``sandbox.infor``).
"""

from __future__ import annotations

import argparse
import base64

from cli.sandbox_infor import add_infor_parser


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``sandbox`` group and its subcommands."""
    parser = subcommands.add_parser(
        "sandbox", help="run a vendor sandbox server (PrestaShop webservice, Infor ION API / M3 / IMS)"
    )

    def show_help(_args: argparse.Namespace) -> int:
        parser.print_help()
        return 0

    parser.set_defaults(handler=show_help)
    servers = parser.add_subparsers(title="sandboxes", metavar="SANDBOX")
    _register_prestashop(servers)
    add_infor_parser(servers)


def _register_prestashop(servers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The self-contained ``prestashop`` subcommand: arguments and handler in one place."""
    from sandbox.prestashop.config import DEFAULT_VERSION, SUPPORTED_VERSIONS

    ps = servers.add_parser(
        "prestashop",
        help="a faithful PrestaShop webservice with seeded data, admin API and fault injection",
        description=(
            "Serve a PrestaShop webservice (/api/...) seeded deterministically from --seed. The admin API "
            "(/_sandbox/..., no key) places orders, changes data and injects faults;"
            " its OpenAPI page is /docs."
        ),
    )
    ps.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    ps.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    ps.add_argument("--seed", type=int, default=0, help="seed of the generated catalogue (default 0)")
    ps.add_argument("--ws-key", help="the 32-character webservice key (generated and printed when omitted)")
    ps.add_argument(
        "--version",
        dest="ps_version",
        default=DEFAULT_VERSION,
        choices=SUPPORTED_VERSIONS,
        help=f"PrestaShop version whose quirks to reproduce (default {DEFAULT_VERSION})",
    )
    ps.add_argument("--products", type=int, default=1000, help="number of seeded products (default 1000)")
    ps.add_argument("--customers", type=int, default=500, help="number of seeded customers (default 500)")
    ps.add_argument("--orders", type=int, default=300, help="number of seeded orders (default 300)")
    ps.add_argument("--timezone", default="Europe/Paris", help="PS_TIMEZONE (default Europe/Paris)")
    ps.add_argument("--webhook-url", action="append", default=[], help="webhook target URL (repeatable)")
    ps.add_argument(
        "--webhook-secret",
        action="append",
        default=[],
        help="whsec_<base64> signing secret, applied to every target (repeatable: rotation)",
    )
    ps.add_argument(
        "--webhook-mode",
        choices=("standard", "ps_webhooks"),
        default="standard",
        help="signed Standard Webhooks with retries, or unsigned synchronous ps_webhooks",
    )
    ps.set_defaults(handler=_run_prestashop)


def _run_prestashop(args: argparse.Namespace) -> int:
    import uvicorn

    from pipeline.errors import ConfigError
    from sandbox.prestashop.app import create_app, generate_key
    from sandbox.prestashop.config import KeyPermissions, SandboxConfig, WebhookConfig, WebhookTarget

    key: str = args.ws_key or generate_key()
    if len(key) != 32:
        raise ConfigError(f"--ws-key must be 32 characters (got {len(key)})")
    for secret in args.webhook_secret:
        try:
            base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except ValueError as exc:
            raise ConfigError("--webhook-secret must be whsec_<base64>") from exc
    base_url = f"http://{args.host}:{args.port}"
    targets = tuple(WebhookTarget(url, tuple(args.webhook_secret)) for url in args.webhook_url)
    config = SandboxConfig(
        version=args.ps_version,
        seed=args.seed,
        keys=(KeyPermissions(key),),
        timezone=args.timezone,
        products=args.products,
        customers=args.customers,
        orders=args.orders,
        webhooks=WebhookConfig(targets=targets, mode=args.webhook_mode, shop_base_url=base_url),
    )
    app = create_app(config)
    if not args.ws_key:
        print(f"webservice key: {key}")
    print(f"PrestaShop {args.ps_version} sandbox: {base_url}/api/")
    print(f"admin API (OpenAPI): {base_url}/docs")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
