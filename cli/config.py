"""``psinfor config``: placeholder until the settings work lands."""

from __future__ import annotations

import argparse


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Placeholder: replaced by the real command group."""
    parser = subcommands.add_parser("config", help="config commands")
    parser.set_defaults(handler=lambda _args: parser.print_help() or 0)
