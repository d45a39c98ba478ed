"""Resolving ``--sinks`` names, the ``psinfor sink`` options, and the process's liveness across runners."""

from __future__ import annotations

import argparse
import sys
import types
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from cli.main import build_parser
from pipeline.errors import ConfigError
from pipeline.health import HealthState
from pipeline.settings import KafkaSettings, Settings, SinkSettings
from sinks.base import SinkResources
from sinks.main import SinkOptions, _EveryRunnerBeats, options_from, sink_references
from sinks.registry import SINKS, resolve_sink
from tests.recording_sink import RecordingSink, build_journal_sink

ALL_SINKS = {
    "infor-orders": "sinks.infor_orders:build",
    "infor-customers": "sinks.infor_customers:build",
    "infor-payments": "sinks.infor_payments:build",
    "infor-payment-invoices": "sinks.infor_payments:build_invoices",
    "prestashop-status": "sinks.prestashop_order_status:build",
    "prestashop-tracking": "sinks.prestashop_shipments:build",
    "prestashop-payment": "sinks.prestashop_payments:build",
    "prestashop-payment-records": "sinks.prestashop_payments:build_payments",
    "prestashop-stock": "sinks.prestashop_inventory:build",
    "prestashop-products": "sinks.prestashop_products:build",
    "prestashop-customers": "sinks.prestashop_customers:build",
}


def test_every_production_sink_is_listed_under_its_name() -> None:
    assert dict(SINKS) == ALL_SINKS


def test_a_module_reference_resolves_to_its_factory() -> None:
    assert resolve_sink("tests.recording_sink:build_journal_sink") is build_journal_sink


@pytest.fixture
def fake_sink_module() -> Iterator[str]:
    # A registered name whose module exists, without depending on the production sinks' state.
    module = types.ModuleType("fake_sink_module_for_registry_test")

    @asynccontextmanager
    async def build(resources: SinkResources) -> AsyncIterator[RecordingSink]:
        yield RecordingSink()

    module.build = build  # type: ignore[attr-defined]
    module.not_callable = 42  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    try:
        yield module.__name__
    finally:
        del sys.modules[module.__name__]


def test_a_registered_name_is_imported_only_when_resolved(
    monkeypatch: pytest.MonkeyPatch, fake_sink_module: str
) -> None:
    import sinks.registry as registry

    monkeypatch.setattr(registry, "SINKS", {"fake": f"{fake_sink_module}:build"})
    factory = registry.resolve_sink("fake")
    assert factory is sys.modules[fake_sink_module].build


def test_an_unknown_name_is_a_config_error_listing_the_names() -> None:
    with pytest.raises(ConfigError, match="unknown sink 'infor-ordes'") as caught:
        resolve_sink("infor-ordes")
    assert "infor-orders" in str(caught.value)


def test_a_module_that_is_not_present_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sinks.registry as registry

    monkeypatch.setattr(registry, "SINKS", {"gone": "sinks.no_such_sink_module:build"})
    with pytest.raises(ConfigError, match=r"module sinks\.no_such_sink_module is not present"):
        registry.resolve_sink("gone")


def test_a_sink_module_whose_own_import_fails_is_reported_with_the_cause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Present but broken (a dependency missing): not "not present", and the cause is named.
    (tmp_path / "broken_sink_for_registry_test.py").write_text("import dependency_that_is_not_installed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="importing broken_sink_for_registry_test failed") as caught:
        resolve_sink("broken_sink_for_registry_test:build")
    assert "dependency_that_is_not_installed" in str(caught.value)
    sys.modules.pop("broken_sink_for_registry_test", None)


def test_a_missing_or_non_callable_attribute_is_a_config_error(fake_sink_module: str) -> None:
    with pytest.raises(ConfigError, match="is missing or not a sink factory"):
        resolve_sink(f"{fake_sink_module}:absent")
    with pytest.raises(ConfigError, match="is missing or not a sink factory"):
        resolve_sink(f"{fake_sink_module}:not_callable")


# -- options ----------------------------------------------------------------------------------------


def _settings(**sinks: object) -> Settings:
    return Settings(
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:9092"), sinks=SinkSettings.model_validate(sinks)
    )


def _parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["sink", *argv])


def test_options_map_topics_and_name_groups() -> None:
    args = _parse(
        "--sinks",
        "infor-orders",
        "--topic",
        "canonical.order.v1=test.orders",
        "--group-prefix",
        "blue-",
    )
    options = options_from(args, _settings(topic_prefix="stage."))
    assert options.topic("canonical.order.v1") == "test.orders"
    assert options.topic("dlq.sink-infor") == "stage.dlq.sink-infor"
    assert options.group("infor-orders") == "blue-infor-orders"


def test_default_group_is_psinfor_sink_name() -> None:
    options = options_from(_parse("--sinks", "infor-orders"), _settings())
    assert options.group("infor-orders") == "psinfor-sink-infor-orders"
    assert SinkOptions().topic("canonical.order.v1") == "canonical.order.v1"


@pytest.mark.parametrize("bad", ["canonical.order.v1", "=x", "y="])
def test_a_malformed_topic_mapping_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="is not CATALOGUE=ACTUAL"):
        options_from(_parse("--sinks", "x", "--topic", bad), _settings())


def test_sink_references_drop_blanks_and_repeats() -> None:
    assert sink_references(" infor-orders, ,infor-orders,prestashop-inventory ") == [
        "infor-orders",
        "prestashop-inventory",
    ]
    with pytest.raises(ConfigError, match="names no sink"):
        sink_references(" , ")


def test_help_explains_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["sink", "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for phrase in (
        "--sinks",
        "--topic",
        "--group-prefix",
        "psinfor-sink-",
        "SIGTERM",
        "exits 70",
        "infor-orders",
    ):
        assert phrase in text


# -- liveness ---------------------------------------------------------------------------------------


def test_the_process_is_alive_only_while_every_runner_reports() -> None:
    now = [0.0]
    health = HealthState("sinks-test", heartbeat_timeout_s=10, clock=lambda: now[0])
    beats = _EveryRunnerBeats(health, 2)
    now[0] = 8.0
    for _ in range(5):
        beats.beat(0)  # the first runner is fine, the second is stuck
    now[0] = 11.0
    assert not health.liveness().ok
    beats.beat(1)
    assert health.liveness().ok


def test_every_registered_sink_is_a_stage_of_the_topic_catalogue() -> None:
    """The ``--sinks`` names are the stage names the catalogue (and the AsyncAPI document) list."""
    from schemas.catalogue import load_catalogue
    from sinks.registry import SINKS

    stages = {stage for topic in load_catalogue().topics for stage in (*topic.producers, *topic.consumers)}
    assert {f"sink-{name}" for name in SINKS} <= stages
    assert {stage for stage in stages if stage.startswith("sink-")} == {f"sink-{name}" for name in SINKS}
