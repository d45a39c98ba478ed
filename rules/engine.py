"""Loading the rules file and the :class:`Rules` facade every processor and sink uses.

Load once in ``main()`` (``load_rules(path)``; ``None`` loads ``rules/default.yaml``), pass the
:class:`Rules` object down; nothing is read at import time. A file with problems raises
:class:`RulesFileError`, a :class:`~pipeline.errors.ConfigError` whose ``problems`` list every problem
with its YAML path, so a service refuses to start with a clear message instead of mis-mapping orders.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from pipeline.errors import ConfigError
from rules import model
from rules.address import AddressRules
from rules.anomalies import AnomalyRules
from rules.currency import CurrencyRules
from rules.enrichment import EnrichmentRules
from rules.status import StatusRules
from rules.validation import ValidationRules, json_path
from rules.variants import VariantRules

DEFAULT_RULES = "default.yaml"


@dataclass(frozen=True)
class Problem:
    """One problem in a rules file: where (YAML path, empty for the whole file) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class RulesFileError(ConfigError):
    """The rules file cannot be used; ``problems`` holds one entry per problem with its YAML path."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = list(problems)
        count = len(self.problems)
        summary = "; ".join(str(problem) for problem in self.problems[:3])
        more = f" (+{count - 3} more)" if count > 3 else ""
        super().__init__(f"rules file {source}: {count} problem(s): {summary}{more}")


class Rules:
    """The validated rules as operations, one attribute per concern.

    ``status`` (:class:`~rules.status.StatusRules`), ``currency`` (:class:`~rules.currency.CurrencyRules`),
    ``address`` (:class:`~rules.address.AddressRules`), ``variants`` (:class:`~rules.variants.VariantRules`),
    ``enrichment`` (:class:`~rules.enrichment.EnrichmentRules`), ``validation``
    (:class:`~rules.validation.ValidationRules`), ``anomalies`` (:class:`~rules.anomalies.AnomalyRules`);
    ``model`` is the parsed file. Immutable after construction; safe to share between tasks.
    """

    def __init__(self, parsed: model.RulesFile, *, source: str = "<memory>") -> None:
        self.model = parsed
        self.source = source

    @cached_property
    def status(self) -> StatusRules:
        """Status mapping, write-back and merging."""
        return StatusRules(self.model.status)

    @cached_property
    def currency(self) -> CurrencyRules:
        """Base-currency conversion and rounding."""
        return CurrencyRules(self.model.currency)

    @cached_property
    def address(self) -> AddressRules:
        """Address standardisation and ERP field fitting."""
        return AddressRules(self.model.address)

    @cached_property
    def variants(self) -> VariantRules:
        """Variant → SKU → ERP item number resolution."""
        return VariantRules(self.model.variants)

    @cached_property
    def enrichment(self) -> EnrichmentRules:
        """Cost centre, project, order type, warehouse."""
        return EnrichmentRules(self.model.enrichment, self.model.warehouses)

    @cached_property
    def validation(self) -> ValidationRules:
        """Totals and tolerances."""
        return ValidationRules(self.model.validation)

    @cached_property
    def anomalies(self) -> AnomalyRules:
        """Anomaly checks and review routing."""
        return AnomalyRules(self.model.anomalies)


def default_rules_text() -> str:
    """The text of the packaged default rules file."""
    return resources.files("rules").joinpath(DEFAULT_RULES).read_text(encoding="utf-8")


def load_rules(path: Path | None = None) -> Rules:
    """The rules from ``path`` (None: the packaged default), validated; raises RulesFileError."""
    if path is None:
        return parse_rules(default_rules_text(), source=f"rules/{DEFAULT_RULES}")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesFileError(
            str(path), [Problem("", f"cannot read the file: {exc.strerror or exc}")]
        ) from exc
    except UnicodeDecodeError as exc:
        raise RulesFileError(str(path), [Problem("", f"not UTF-8 text: {exc}")]) from exc
    return parse_rules(text, source=str(path))


def parse_rules(text: str, *, source: str = "<memory>") -> Rules:
    """The rules from YAML text; raises RulesFileError listing every problem with its YAML path."""
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f"line {mark.line + 1}, column {mark.column + 1}"
        raise RulesFileError(source, [Problem(where, f"not valid YAML: {_yaml_problem(exc)}")]) from exc
    if not isinstance(data, dict):
        raise RulesFileError(source, [Problem("", "the file must be a YAML mapping (version, status, ...)")])
    try:
        parsed = model.RulesFile.model_validate(data)
    except ValidationError as exc:
        raise RulesFileError(source, _problems(exc)) from exc
    problems = _cross_checks(parsed)
    if problems:
        raise RulesFileError(source, problems)
    return Rules(parsed, source=source)


def _problems(exc: ValidationError) -> list[Problem]:
    problems: list[Problem] = []
    for error in exc.errors(include_url=False):
        location = [part for part in error["loc"] if isinstance(part, str | int)]
        # pydantic names union members and validator steps in the location; they are not YAML keys.
        location = [
            part
            for part in location
            if not (isinstance(part, str) and ("[" in part or part.startswith("function-")))
        ]
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key (a typo?)"
        elif error["type"] == "missing":
            message = "required key is missing"
        problems.append(Problem(json_path(location), message))
    return problems


def _cross_checks(parsed: model.RulesFile) -> list[Problem]:
    """Checks across sections that single fields cannot express."""
    problems: list[Problem] = []
    for country, shapes in parsed.address.postcodes.items():
        for index, shape in enumerate(shapes):
            groups = _group_count(shape.pattern)
            try:
                shape.format.format("", *([""] * groups))
            except (IndexError, KeyError, ValueError):
                problems.append(
                    Problem(
                        f"address.postcodes.{country}[{index}].format",
                        f"uses a group the pattern does not have (the pattern has {groups})",
                    )
                )
    mapped = {rule.key for rule in parsed.status.prestashop.states if rule.key is not None}
    for index, rule in enumerate(parsed.status.prestashop.writeback):
        if rule.key not in mapped:
            problems.append(
                Problem(
                    f"status.prestashop.writeback[{index}].key",
                    f"{rule.key} has no rule in status.prestashop.states, so its meaning is unknown",
                )
            )
    return problems


def _group_count(pattern: str) -> int:
    return re.compile(pattern).groups


def _yaml_problem(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None)
    return str(problem) if problem else str(exc).splitlines()[0]
