"""``psinfor topics``: the topic catalogue (list), the cluster brought in line with it (apply), and the
AsyncAPI document generated from it (asyncapi)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from confluent_kafka.admin import AdminClient

from pipeline.kafka_config import librdkafka_config
from pipeline.settings import load_settings
from pipeline.topics import apply_topics
from schemas.asyncapi import ASYNCAPI_PATH, render_asyncapi
from schemas.catalogue import load_catalogue

APPLY_HELP = """\
Create missing topics, raise partition counts that are too low and set topic configs that differ, as
schemas/topics.yaml describes them. Idempotent: a second run prints "no changes". Partition counts are
never lowered (reported as REFUSED, exit code 1); topics and configs the catalogue does not mention are
left alone. Reaches the cluster through PSINFOR_KAFKA__* settings.
"""


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``topics list|apply|asyncapi``."""
    parser = subcommands.add_parser(
        "topics", help="the topic catalogue: list, apply to the cluster, AsyncAPI document"
    )
    parser.set_defaults(handler=lambda _args: _usage(parser))
    actions = parser.add_subparsers(title="actions", metavar="ACTION")

    listing = actions.add_parser("list", help="print the catalogue as a table")
    listing.set_defaults(handler=_list)

    apply = actions.add_parser(
        "apply",
        help="create/update topics to match the catalogue",
        description=APPLY_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    apply.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")
    apply.add_argument(
        "--replication-factor",
        type=int,
        metavar="N",
        help="replication factor for every topic created (default: the catalogue's, else the broker default)",
    )
    apply.add_argument(
        "--prefix", default="", help="prepend this to every topic name (isolated test or staging copies)"
    )
    apply.set_defaults(handler=_apply)

    asyncapi = actions.add_parser(
        "asyncapi", help="generate the AsyncAPI 3.0 document from the catalogue and schemas"
    )
    asyncapi.add_argument(
        "--output", type=Path, default=ASYNCAPI_PATH, help=f"file to write (default: {ASYNCAPI_PATH.name})"
    )
    asyncapi.add_argument(
        "--check", action="store_true", help="exit 1 if the file differs from the generated document"
    )
    asyncapi.set_defaults(handler=_asyncapi)


def _list(_args: argparse.Namespace) -> int:
    rows = [("TOPIC", "PARTS", "RF", "CLEANUP", "RETENTION", "KEY", "VALUE")]
    for topic in load_catalogue().topics:
        rows.append(
            (
                topic.name,
                str(topic.partitions),
                "default" if topic.replication_factor is None else str(topic.replication_factor),
                topic.cleanup_policy,
                _retention(topic.retention_ms),
                topic.key.pattern,
                topic.value,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def _retention(ms: int) -> str:
    if ms < 0:
        return "infinite"
    days, rest = divmod(ms, 86_400_000)
    return f"{days}d" if rest == 0 else f"{ms}ms"


def _apply(args: argparse.Namespace) -> int:
    settings = load_settings()
    specs = load_catalogue().topic_specs(prefix=args.prefix, replication_factor=args.replication_factor)
    admin = AdminClient(librdkafka_config(settings.kafka, client_id_suffix="topics-apply"))
    changes = apply_topics(admin, specs, dry_run=args.dry_run)
    if not changes:
        print("no changes")
    for change in changes:
        print(change)
    refused = [change for change in changes if change.kind == "refused_shrink"]
    if refused:
        print(
            f"psinfor: {len(refused)} topic(s) have more partitions than the catalogue says", file=sys.stderr
        )
        return 1
    return 0


def _asyncapi(args: argparse.Namespace) -> int:
    document = render_asyncapi()
    output: Path = args.output
    if args.check:
        current = output.read_text(encoding="utf-8") if output.exists() else ""
        if current != document:
            print(
                f"psinfor: {output} is out of date; run `psinfor topics asyncapi --output {output}`",
                file=sys.stderr,
            )
            return 1
        print(f"{output} is up to date")
        return 0
    output.write_text(document, encoding="utf-8")
    print(f"wrote {output}")
    return 0


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 0
