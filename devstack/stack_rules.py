"""The rules file of the sandbox stack: the packaged default, fitted to the sandbox's M3 warehouses.

The default rules name the production warehouses ``LYO`` and ``NJ1``; the Infor sandbox's company has
``001`` and ``002``. Every other rule is the default's, comments included, so the file ``dev up``
writes (``<data-dir>/rules.yaml``) reads like the real one. Editing it while the stack runs restarts
the processors and sinks, which load it once at start-up.

:func:`with_item_case` and :func:`item_case` read and change ``variants.item_number.case`` (how a
shop SKU becomes an M3 item number), the rule the demo gets wrong and then fixes.
"""

from __future__ import annotations

import re

from rules.engine import default_rules_text, parse_rules

SANDBOX_WAREHOUSES = {"LYO": "001", "NJ1": "002"}
"""Production warehouse in the default rules → the Infor sandbox warehouse that stands in for it."""

_HEADER = (
    "# Written by `psinfor dev up` from rules/default.yaml: the same rules, with the Infor sandbox's\n"
    "# warehouses (001, 002) in place of LYO and NJ1. Edit freely: a change restarts the processors\n"
    "# and the sinks, which read this file once at start-up.\n"
)
_ITEM_CASE = re.compile(r"^(?P<lead>\s+case:\s*)(?P<case>[a-z]+)(?P<trail>\s*(#.*)?)$", re.MULTILINE)
_ITEM_NUMBER = "item_number:"


def stack_rules_text(default_text: str | None = None) -> str:
    """The stack's rules (validated): ``default_text`` (the packaged default) with sandbox warehouses."""
    text = default_rules_text() if default_text is None else default_text
    for production, sandbox in SANDBOX_WAREHOUSES.items():
        text = re.sub(rf"\b{production}\b", f'"{sandbox}"', text)
    parse_rules(text, source="the stack's rules")
    return _HEADER + text


def _item_case_match(text: str) -> re.Match[str]:
    start = text.find(_ITEM_NUMBER)
    if start < 0:
        raise ValueError("the rules have no variants.item_number block")
    found = _ITEM_CASE.search(text, start)
    if found is None:
        raise ValueError("the rules' variants.item_number block has no case")
    return found


def item_case(text: str) -> str:
    """The ``variants.item_number.case`` the rules text says (``upper`` or ``keep``)."""
    return str(parse_rules(text).model.variants.item_number.case.value)


def with_item_case(text: str, case: str) -> str:
    """``text`` with ``variants.item_number.case`` set to ``case`` (validated; the rest untouched)."""
    found = _item_case_match(text)
    changed = text[: found.start("case")] + case + text[found.end("case") :]
    parse_rules(changed, source="the stack's rules")
    return changed
