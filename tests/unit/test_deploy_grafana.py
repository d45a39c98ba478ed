"""The shipped Grafana dashboard charts only metrics and labels the catalogue declares, and is well formed.

A panel whose query names a metric or a label that does not exist draws an empty chart without any
error, which an SRE would find out during an incident; this test finds it out at commit time instead.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.metrics import MetricWrapperBase

import pipeline.metrics

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
METRIC_NAME = re.compile(r"\bpsinfor_[a-z0-9_]+")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
MATCHER = re.compile(r"([a-z_]+)\s*(?:=~|!~|!=|=)\s*\"")
SCRAPE_LABELS = {"job", "instance", "le"}
"""Labels Prometheus adds on scrape (le: a histogram bucket's bound)."""


def _dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((GRAFANA / "psinfor.json").read_text(encoding="utf-8"))
    return document


def _catalogue() -> dict[str, set[str]]:
    """Sample name → its labels, for every metric pipeline/metrics.py declares."""
    labels: dict[str, set[str]] = {}
    for metric in vars(pipeline.metrics).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        name, names = metric._name, set(metric._labelnames)
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}.get(
            str(metric._type), ("",)
        )
        for suffix in suffixes:
            labels[name + suffix] = names
    return labels


def _panels() -> list[dict[str, Any]]:
    return [panel for panel in _dashboard()["panels"] if panel["type"] != "row"]


def test_every_query_uses_declared_metrics_and_their_labels_only() -> None:
    catalogue = _catalogue()
    queries = [(panel["title"], target["expr"]) for panel in _panels() for target in panel["targets"]]
    assert len(queries) >= 25
    for title, expr in queries:
        used = set(METRIC_NAME.findall(expr))
        assert used, f"{title}: no psinfor metric in {expr}"
        assert used <= catalogue.keys(), f"{title}: undeclared {sorted(used - catalogue.keys())}"
        known = set().union(*(catalogue[name] for name in used)) | SCRAPE_LABELS
        grouped = {
            label.strip() for group in GROUPING.findall(expr) for label in group.split(",") if label.strip()
        }
        matched = set(MATCHER.findall(expr))
        assert grouped | matched <= known, f"{title}: unknown labels {sorted((grouped | matched) - known)}"
        assert expr.count("(") == expr.count(")"), f"{title}: unbalanced parentheses in {expr}"


def test_the_catalogue_check_catches_a_mistyped_metric_or_label() -> None:
    # The check above must be able to fail: a metric and a label that do not exist are not in it.
    catalogue = _catalogue()
    assert "psinfor_consumer_lag_seconds" in catalogue
    assert "psinfor_consumer_lag_second" not in catalogue
    assert "group" in catalogue["psinfor_consumer_lag_seconds"]
    assert "stage" not in catalogue["psinfor_consumer_lag_seconds"]
    assert catalogue["psinfor_handler_duration_seconds_bucket"] == {"stage"}


def test_every_panel_has_a_unique_id_a_description_and_the_datasource_variable() -> None:
    dashboard = _dashboard()
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {variable["name"] for variable in dashboard["templating"]["list"]}
    assert {"datasource", "stage"} <= variables
    for panel in _panels():
        assert len(panel["description"]) > 30, panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert [target["refId"] for target in panel["targets"]] == [
            chr(65 + i) for i in range(len(panel["targets"]))
        ]
        position = panel["gridPos"]
        assert position["x"] + position["w"] <= 24, panel["title"]


def test_the_dashboard_charts_what_the_alerts_watch() -> None:
    # Every metric an alert fires on is on the dashboard, so the page that pages has a chart to open.
    rules = yaml.safe_load((GRAFANA.parent / "prometheus" / "alerts.yml").read_text(encoding="utf-8"))
    alerted = {
        name
        for group in rules["groups"]
        for rule in group["rules"]
        for name in METRIC_NAME.findall(rule["expr"])
    }
    charted = {
        name
        for panel in _panels()
        for target in panel["targets"]
        for name in METRIC_NAME.findall(target["expr"])
    }
    assert alerted - charted == set()


def test_provisioning_loads_the_dashboard_from_a_file_and_a_prometheus_datasource() -> None:
    provider = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "psinfor.yml").read_text(encoding="utf-8")
    )
    assert provider["providers"][0]["type"] == "file"
    source = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "psinfor.yml").read_text(encoding="utf-8")
    )
    assert source["datasources"][0]["type"] == "prometheus"
    assert _dashboard()["uid"] == "psinfor-pipeline"
