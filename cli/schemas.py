"""``psinfor schemas``: register the canonical Avro schemas in the Schema Registry."""

from __future__ import annotations

import argparse
import sys

from pipeline.settings import load_settings
from schemas.catalogue import load_catalogue
from schemas.registry import catalogue_subjects, register_schemas, registry_client

REGISTER_HELP = """\
Register every canonical schema under <topic>-value (TopicNameStrategy) for each Avro topic of
schemas/topics.yaml, and print subject -> id/version. A schema the registry refuses as incompatible
(it answers 409) is reported as "<subject>: INCOMPATIBLE: <registry's reason>" and the command exits 1;
the registry keeps its previous versions. Needs PSINFOR_REGISTRY__URL.
"""


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``schemas register``."""
    parser = subcommands.add_parser("schemas", help="canonical Avro schemas: register in the Schema Registry")
    parser.set_defaults(handler=lambda _args: _usage(parser))
    actions = parser.add_subparsers(title="actions", metavar="ACTION")
    reg = actions.add_parser(
        "register",
        help="register every canonical schema under <topic>-value",
        description=REGISTER_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    reg.add_argument("--dry-run", action="store_true", help="test compatibility, register nothing")
    reg.add_argument("--prefix", default="", help="prepend this to every topic name (isolated test copies)")
    reg.set_defaults(handler=_register)


def _register(args: argparse.Namespace) -> int:
    settings = load_settings()
    subjects = catalogue_subjects(load_catalogue(), prefix=args.prefix)
    with registry_client(settings.require_registry()) as client:
        results = register_schemas(client, subjects, dry_run=args.dry_run)
    failed = 0
    for result in results:
        if result.outcome == "incompatible":
            failed += 1
            print(f"psinfor: {result}", file=sys.stderr)
        else:
            print(result)
    return 1 if failed else 0


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 0
