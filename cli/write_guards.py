"""What every ``psinfor`` command that writes to Kafka on a person's behalf asks first.

``--dry-run`` (say what would be written, write nothing), ``--yes`` (no prompt; required when stdin is
not a terminal, so a script never hangs on a question nobody sees) and ``--by NAME`` (who did it,
recorded with the write; ``$USER`` by default). Used by ``dlq replay|purge`` and ``review
release|reject``.
"""

from __future__ import annotations

import argparse
import os
import sys

from pipeline.dlq_admin import check_operator
from pipeline.errors import ConfigError


def add_write_guards(parser: argparse.ArgumentParser, *, verb: str) -> None:
    """Add ``--dry-run`` and ``--yes``."""
    parser.add_argument("--dry-run", action="store_true", help=f"print what {verb} would do, write nothing")
    parser.add_argument(
        "--yes", action="store_true", help="do not ask for confirmation (needed when stdin is not a terminal)"
    )


def require_confirmation_possible(args: argparse.Namespace, verb: str) -> None:
    """ConfigError, before anything touches the cluster, when a write could not be confirmed."""
    if not args.dry_run and not args.yes and not sys.stdin.isatty():
        raise ConfigError(
            f"{verb} writes to Kafka: confirm with --yes, or preview with --dry-run "
            "(stdin is not a terminal to ask on)"
        )


def confirmed(args: argparse.Namespace, question: str) -> bool:
    """True with ``--yes``; else asks ``question`` on stderr and reads y/N from stdin."""
    if args.yes:
        return True
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    return input().strip().lower() in ("y", "yes")


def operator(args: argparse.Namespace, *, verb: str, recorded_in: str) -> str:
    """The operator name from ``--by`` (else ``$USER``); ConfigError saying what to pass."""
    name = args.by if args.by is not None else os.environ.get("USER", "")
    if not name:
        raise ConfigError(f"say who {verb}: --by NAME (recorded in {recorded_in}; $USER is not set)")
    try:
        return check_operator(name)
    except ValueError as exc:
        raise ConfigError(f"--by: {exc}") from None


def positive_float(text: str) -> float:
    """argparse type: a number of seconds above zero."""
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value
