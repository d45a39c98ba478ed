"""``psinfor dev``: the local runtime (Kafka broker(s), schema registry) for development and tests."""

from __future__ import annotations

import argparse


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Placeholder until the launcher lands (owned by the runtime work)."""
    parser = subcommands.add_parser("dev", help="run the local Kafka broker and schema registry")
    parser.set_defaults(handler=lambda _args: parser.print_help() or 0)
