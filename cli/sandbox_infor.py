"""``psinfor sandbox infor``: run the Infor sandbox standalone and write its ``.ionapi`` file.

Wired into ``cli/sandbox.py`` with ``add_infor_parser(sandbox_subcommands)``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from sandbox.infor.app import SandboxOptions
from sandbox.infor.server import InforSandboxServer

EPILOG = """\
The .ionapi file written to --ionapi-out is what any ION API client loads as is: token URL = pu + ot,
API base = iu + "/" + ti, service account saak/sask for the password grant. The IMS pusher POSTs
v3 multipart BOD messages to --ims-push-url with "Authorization: Bearer <token>" (the token is
printed; set it with --ims-push-token). Faults, data and timing are driven through the admin API
under /_sandbox (no authentication).
"""


def add_infor_parser(sandbox_subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``infor`` to the ``psinfor sandbox`` command group."""
    parser = sandbox_subcommands.add_parser(
        "infor",
        help="run the Infor sandbox (ION API gateway, OAuth2, M3 MI, IMS)",
        description="Run a faithful Infor ION API / M3 MI / IMS sandbox in the foreground.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one (default 0)")
    parser.add_argument("--tenant", default="ACME_TST", help="tenant id, the .ionapi ti (default ACME_TST)")
    parser.add_argument("--ionapi-out", type=Path, required=True, help="where to write the .ionapi file")
    parser.add_argument("--seed", type=int, default=1, help="seed of the data and the simulation (default 1)")
    parser.add_argument("--items", type=int, default=1000, help="items to seed (default 1000)")
    parser.add_argument(
        "--ims-push-url", default=None, help="receiver URL for the IMS v3 pusher (default: off)"
    )
    parser.add_argument(
        "--ims-push-token", default=None, help="bearer token the pusher sends (default: random)"
    )
    parser.set_defaults(handler=run)


def prepare(args: argparse.Namespace, out: TextIO) -> InforSandboxServer:
    """Build the server (bound, not yet serving), write the ``.ionapi`` file and print the URLs."""
    options = SandboxOptions(
        tenant_id=args.tenant,
        seed=args.seed,
        items=args.items,
        ims_push_url=args.ims_push_url,
        ims_push_token=args.ims_push_token,
    )
    server = InforSandboxServer(options, host=args.host, port=args.port)
    path = server.write_ionapi(args.ionapi_out)
    io = server.ionapi()
    tenant = server.tenant_url
    print(f"Infor sandbox for tenant {args.tenant} on {server.base_url}", file=out)
    print(f"  .ionapi file   {path}", file=out)
    print(f"  token URL      {io['pu']}{io['ot']}", file=out)
    print(f"  M3 MI REST v2  {tenant}/M3/m3api-rest/v2/execute/{{PROGRAM}}/{{TRANSACTION}}", file=out)
    print(f"  IMS inbound    {tenant}/IONSERVICES/api/ion/messaging/service/", file=out)
    print(f"  admin API      {server.base_url}/_sandbox/", file=out)
    push = args.ims_push_url or "off (set --ims-push-url or PUT /_sandbox/ims/pusher)"
    print(f"  IMS push to    {push}", file=out)
    print(f"  push token     {server.sandbox.pusher_config.token}", file=out)
    return server


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted."""
    server = prepare(args, sys.stdout)
    sys.stdout.flush()
    try:
        server.serve_forever()
    finally:
        server.stop()
    return 0
