"""``psinfor sandbox``: placeholder until the sandbox servers land."""

from __future__ import annotations

import argparse


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Placeholder: replaced by the real command group."""
    parser = subcommands.add_parser("sandbox", help="sandbox commands")
    parser.set_defaults(handler=lambda _args: parser.print_help() or 0)
