"""``psinfor rules``: check a rules file (check) and show what a raw payload becomes (preview)."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from decimal import Decimal
from pathlib import Path

from pipeline.errors import InvalidMessage
from rules.engine import Rules, RulesFileError, load_rules
from rules.preview import UnknownFlowError, preview

CHECK_HELP = """\
Validate a rules file and print a summary of what it configures. Every problem is printed on its own
line with its YAML path (e.g. status.prestashop.states[3].payment: ...); the exit code is 1 when there
is any. Without FILE the packaged default (rules/default.yaml) is checked.
"""

PREVIEW_HELP = """\
Print, as JSON, the canonical record a raw payload (the bytes a raw.* topic would carry) becomes under
the given rules, without Kafka. Flows are registered by processors/; with one flow registered --flow may
be omitted. A payload the flow rejects prints the DLQ reason and field path and exits 1.
"""


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rules check|preview``."""
    parser = subcommands.add_parser("rules", help="transformation rules: check a file, preview a payload")
    parser.set_defaults(handler=lambda _args: _usage(parser))
    actions = parser.add_subparsers(title="actions", metavar="ACTION")

    check = actions.add_parser("check", help="validate a rules file", description=CHECK_HELP)
    check.add_argument("file", metavar="FILE", type=Path, nargs="?", default=None, help="the rules YAML file")
    check.set_defaults(handler=_check)

    show = actions.add_parser(
        "preview", help="print the canonical record a raw payload becomes", description=PREVIEW_HELP
    )
    show.add_argument(
        "--input", dest="input", metavar="RAW_FILE", type=Path, required=True, help="raw payload file"
    )
    show.add_argument("--flow", metavar="NAME", default=None, help="the flow (e.g. prestashop_orders)")
    show.add_argument(
        "--rules", metavar="FILE", type=Path, default=None, help="rules file (default: packaged)"
    )
    show.set_defaults(handler=_preview)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _check(args: argparse.Namespace) -> int:
    try:
        rules = load_rules(args.file)
    except RulesFileError as exc:
        print(f"{exc.source}: {len(exc.problems)} problem(s)", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print(summary(rules))
    return 0


def summary(rules: Rules) -> str:
    """A few lines saying what the rules configure."""
    m = rules.model
    keys = [rule.key for rule in m.status.prestashop.states if rule.key]
    flag_rules = sum(1 for rule in m.status.prestashop.states if rule.flags is not None)
    rates = ", ".join(f"{code} {rate}" for code, rate in sorted(m.currency.rates.items())) or "none"
    fields = ", ".join(
        f"{name} {fit.fields}x{fit.width}" for name, fit in sorted(m.address.erp_fields.items())
    )
    lines = [
        f"{rules.source}: OK",
        f"  status: {len(keys)} PrestaShop states by key, {flag_rules} by flags (unmapped: "
        f"{m.status.prestashop.unmapped.value}), {len(m.status.prestashop.writeback)} write-back rules, "
        f"{len(m.status.m3.rules)} M3 rules",
        f"  currency: base {m.currency.base_currency}, sources {[s.value for s in m.currency.sources]}, "
        f"rates {rates}, {m.currency.amount_scale} decimals, {m.currency.rounding.value}",
        f"  address: postcode formats for {', '.join(sorted(m.address.postcodes)) or 'none'}; "
        f"ERP fields {fields or 'default m3 4x36'}",
        f"  variants: item number {m.variants.item_number.source}, "
        f"max {m.variants.item_number.max_length} chars",
        f"  enrichment: {len(m.enrichment)} rules; "
        f"warehouses: {len(m.warehouses.by_prestashop_warehouse)} mapped",
        f"  validation: totals within {m.validation.totals_tolerance}",
        f"  anomalies: review codes {m.anomalies.review_codes or 'none'} -> {m.anomalies.review_topic}",
    ]
    return "\n".join(lines)


def _preview(args: argparse.Namespace) -> int:
    rules = load_rules(args.rules)
    try:
        raw = args.input.read_bytes()
    except OSError as exc:
        print(f"psinfor: cannot read {args.input}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    # processors/ registers its flows on import; the CLI is the one place allowed to import every stage.
    importlib.import_module("processors")
    try:
        record = preview(raw, rules, args.flow)
    except UnknownFlowError as exc:
        print(f"psinfor: {exc}", file=sys.stderr)
        return 2
    except InvalidMessage as exc:
        print(f"invalid: {exc}", file=sys.stderr)
        for name, value in sorted(exc.details.items()):
            print(f"  {name}: {value}", file=sys.stderr)
        return 1
    print(json.dumps(record, indent=2, ensure_ascii=False, default=_json_default))
    return 0


def _json_default(value: object) -> str:
    if isinstance(value, Decimal):
        return str(value)
    return str(value)
