"""``psinfor config``: show, check and list the configuration read from ``PSINFOR_*`` variables.

``show`` prints the effective settings (secrets masked) as JSON or a table, ``check`` validates them
(exit 0, or 2 with one line naming the offending variable), ``env`` lists every supported variable with
its default and description, generated from the settings model (the README's configuration table is
``psinfor config env --format markdown``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Sequence

from pipeline.settings import FILE_SUFFIX, Settings, env_name, load_settings, supported_variables


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``config show|check|env``."""
    parser = subcommands.add_parser(
        "config",
        help="show, check or list the PSINFOR_* configuration",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(title="actions", metavar="ACTION", required=True)

    show = actions.add_parser("show", help="print the effective settings, secrets masked")
    show.add_argument("--format", choices=("json", "table"), default="json", help="output format (json)")
    show.set_defaults(handler=_show)

    check = actions.add_parser("check", help="validate the configuration: exit 0, or 2 with the problem")
    check.set_defaults(handler=_check)

    env = actions.add_parser("env", help="list every supported environment variable")
    env.add_argument(
        "--format", choices=("table", "markdown", "json"), default="table", help="output format (table)"
    )
    env.set_defaults(handler=_env)


def _show(args: argparse.Namespace) -> int:
    settings = load_settings()
    if args.format == "json":
        print(json.dumps(settings.model_dump(mode="json"), indent=2))
    else:
        print(_table(("variable", "value"), list(_flatten(settings))))
    return 0


def _check(_args: argparse.Namespace) -> int:
    settings = load_settings()
    registry = "not configured" if settings.registry is None else settings.registry.url
    print(f"configuration OK (kafka {settings.kafka.bootstrap_servers}, registry {registry})")
    return 0


def _env(args: argparse.Namespace) -> int:
    rows = supported_variables()
    if args.format == "json":
        print(json.dumps([row.__dict__ for row in rows], indent=2))
    elif args.format == "markdown":
        print("| variable | type | default | description |")
        print("|---|---|---|---|")
        for row in rows:
            default = f"`{row.default}`" if row.default and not row.default.startswith("(") else row.default
            cells = (f"`{row.name}`", row.type, default, row.description)
            # A literal pipe would end the cell early; escaped, it still renders as one.
            print("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    else:
        print(
            _table(
                ("variable", "type", "default", "description"),
                [(row.name, row.type, row.default, row.description) for row in rows],
            )
        )
    return 0


def _flatten(settings: Settings) -> Iterator[tuple[str, str]]:
    """(variable, shown value) for every setting, in model order; secrets masked, unset values blank."""
    values: dict[str, str] = {}
    for section, fields in settings.model_dump(mode="json").items():
        # An optional section that is not configured (the registry) dumps as None: its rows stay blank.
        for name, value in (fields or {}).items():
            values[env_name(section, name)] = "" if value is None else _shown(value)
    for row in supported_variables():
        if not row.name.endswith(FILE_SUFFIX) or row.name in values:
            yield row.name, values.get(row.name, "")


def _shown(value: object) -> str:
    return json.dumps(value) if isinstance(value, bool) else str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    # The last column is free text: padding it would only add trailing blanks.
    widths[-1] = 0
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]
    return "\n".join(lines)
