"""The shipped Prometheus files refer only to metrics the catalogue declares, and are well formed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import REGISTRY

import pipeline.metrics  # noqa: F401  (declares the catalogue in the default registry)

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
METRIC_NAME = re.compile(r"\bpsinfor_[a-z0-9_]+")
# A family named x is exposed as x_total (counters) or x_count/x_sum/x_bucket (histograms).
SAMPLE_SUFFIXES = ("_total", "_count", "_sum", "_bucket", "_created")


def _declared_sample_names() -> set[str]:
    names: set[str] = set()
    for family in REGISTRY.collect():
        if family.name.startswith("psinfor_"):
            names.add(family.name)
            names.update(family.name + suffix for suffix in SAMPLE_SUFFIXES)
    return names


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((DEPLOY / "alerts.yml").read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_every_alert_uses_declared_metrics_only() -> None:
    declared = _declared_sample_names()
    rules = _rules()
    assert len(rules) >= 8
    for rule in rules:
        used = set(METRIC_NAME.findall(rule["expr"]))
        assert used, f"{rule['alert']} uses no psinfor metric"
        assert used <= declared, f"{rule['alert']} uses undeclared {sorted(used - declared)}"


def test_every_alert_has_severity_summary_and_runbook() -> None:
    for rule in _rules():
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert len(rule["annotations"]["runbook"]) > 40, rule["alert"]


def test_scrape_config_loads_the_alert_rules() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text(encoding="utf-8"))
    assert config["rule_files"] == ["alerts.yml"]
    assert config["scrape_configs"][0]["metrics_path"] == "/metrics"
