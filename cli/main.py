"""The ``psinfor`` command: one module per command group, the only code that imports every stage.

Each group module exposes ``register(subcommands)``, which adds its parser and sets ``handler`` to a
function taking the parsed arguments and returning the exit code. Configuration problems surface as
one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from pipeline.errors import ConfigError, PipelineError

Handler = Callable[[argparse.Namespace], int]

DESCRIPTION = """\
psinfor: real-time, loss-free PrestaShop <-> Infor ERP synchronisation on Apache Kafka.

Services read their configuration from PSINFOR_* environment variables (nested with __, e.g.
PSINFOR_KAFKA__BOOTSTRAP_SERVERS); secrets may come from files via the matching *_FILE variable.
Run `psinfor <command> --help` for the details of each command.
"""


def build_parser() -> argparse.ArgumentParser:
    """The full command tree; each group module adds its own parser."""
    from cli import (
        config,
        demo,
        dev,
        dlq,
        ingest,
        lag,
        process,
        review,
        rules,
        sandbox,
        schemas,
        sink,
        topics,
    )

    parser = argparse.ArgumentParser(
        prog="psinfor", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    subcommands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for group in (
        config,
        dev,
        demo,
        topics,
        schemas,
        rules,
        sandbox,
        ingest,
        process,
        sink,
        lag,
        dlq,
        review,
    ):
        group.register(subcommands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except ConfigError as exc:
        print(f"psinfor: {exc}", file=sys.stderr)
        return 2
    except PipelineError as exc:
        print(f"psinfor: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
