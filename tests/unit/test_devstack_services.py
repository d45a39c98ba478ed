"""The stack as data: dependency tiers, the services ``dev up`` builds, and their configuration."""

from __future__ import annotations

import base64
import itertools
import os
from pathlib import Path

import pytest

from devstack.services import (
    SHOP_KEY,
    ExitCheck,
    HttpCheck,
    KafkaCheck,
    ServiceSpec,
    StackDefinitionError,
    StackOptions,
    StackPlan,
    StackSecrets,
    build_services,
    plan_stack,
    processor_workers,
    sink_processes,
    stage_environment,
    start_order,
    start_tiers,
    stop_tiers,
    write_secret_files,
)
from pipeline.settings import load_settings
from processors import FLOWS
from sinks.registry import SINKS


def spec(name: str, *depends_on: str) -> ServiceSpec:
    return ServiceSpec(name=name, argv=("true",), health=ExitCheck(), group="g", depends_on=depends_on)


def names(tiers: list[tuple[ServiceSpec, ...]]) -> list[list[str]]:
    return [[s.name for s in tier] for tier in tiers]


def test_tiers_put_each_service_one_tier_after_its_deepest_dependency_keeping_the_given_order() -> None:
    specs = [
        spec("sink", "setup", "kafka"),
        spec("kafka"),
        spec("setup", "sandbox"),
        spec("sandbox"),
        spec("web"),
    ]
    assert names(start_tiers(specs)) == [["kafka", "sandbox", "web"], ["setup"], ["sink"]]
    assert start_order(specs) == ["kafka", "sandbox", "web", "setup", "sink"]
    assert names(stop_tiers(specs)) == [["sink"], ["setup"], ["kafka", "sandbox", "web"]]


def test_a_cycle_an_unknown_dependency_and_a_duplicate_name_are_refused() -> None:
    with pytest.raises(StackDefinitionError, match="cycle: a -> b -> c -> a"):
        start_tiers([spec("a", "b"), spec("b", "c"), spec("c", "a")])
    with pytest.raises(StackDefinitionError, match="a depends on unknown service"):
        start_tiers([spec("a", "ghost")])
    with pytest.raises(StackDefinitionError, match="two services are called 'a'"):
        start_tiers([spec("a"), spec("a")])


def test_flows_reading_the_same_topic_go_to_different_workers_and_the_first_worker_takes_the_rest() -> None:
    sources = {
        "orders": "raw.o",
        "status": "raw.o",
        "payments": "raw.o",
        "customers": "raw.c",
        "items": "raw.i",
    }
    workers = processor_workers(list(sources), source_of=sources.__getitem__)
    assert workers == [("orders", "customers", "items"), ("status",), ("payments",)]
    for worker in workers:
        assert len({sources[flow] for flow in worker}) == len(worker)


def test_the_production_flows_split_so_no_worker_reads_a_topic_twice() -> None:
    workers = processor_workers(list(FLOWS))
    assert sorted(itertools.chain.from_iterable(workers)) == sorted(FLOWS)
    assert workers[0][0] == "prestashop_orders"
    assert len(workers) >= 2  # orders, order status and payments all read raw.prestashop.orders


def test_sinks_run_one_per_process_or_grouped_by_target() -> None:
    assert sink_processes(["infor-orders", "prestashop-stock"], "per-sink") == {
        "sink-infor-orders": ("infor-orders",),
        "sink-prestashop-stock": ("prestashop-stock",),
    }
    assert sink_processes(["infor-orders", "prestashop-stock", "infor-customers"], "per-target") == {
        "sinks-infor": ("infor-orders", "infor-customers"),
        "sinks-prestashop": ("prestashop-stock",),
    }


def plan(tmp_path: Path, **options: object) -> StackPlan:
    ports = itertools.count(20_000)
    return plan_stack(
        StackOptions(data_dir=tmp_path, python="python3", **options),  # type: ignore[arg-type]
        free_port=lambda: next(ports),
        stack_secrets=StackSecrets(ws_key="K" * 32, webhook_secret="whsec_" + "A" * 44, ims_token="T" * 32),
    )


def test_the_whole_stack_starts_runtime_first_then_sandboxes_setup_and_the_consumers_last(
    tmp_path: Path,
) -> None:
    stack = plan(tmp_path)
    specs = build_services(stack)
    tiers = names(start_tiers(specs))
    assert tiers[0] == ["kafka", "registry", "sandbox-prestashop", "sandbox-infor"]
    assert tiers[1] == ["topics", "schemas"]
    assert tiers[3] == ["sandbox-setup"]
    assert "ingest-prestashop-webhooks" in tiers[2]
    last = set(tiers[4])
    assert {"ingest-prestashop-poller", "ingest-infor-poller"} <= last
    assert {f"sink-{name}" for name in SINKS} <= last
    by_name = {s.name: s for s in specs}
    assert by_name["kafka"].health == KafkaCheck(stack.bootstrap)
    assert by_name["topics"].kind == "task"
    assert by_name["sink-infor-orders"].health == HttpCheck(
        f"http://127.0.0.1:{stack.ports.sinks['sink-infor-orders']}/readyz"
    )
    # The processors and sinks read the rules file: editing it restarts them, nothing else.
    readers = {s.name for s in specs if stack.rules_path in s.reload_on}
    assert readers == {s.name for s in specs if s.group in ("processors", "sinks")}


def test_the_sandboxes_push_to_the_receivers_and_the_setup_points_the_shop_at_the_webhook_receiver(
    tmp_path: Path,
) -> None:
    stack = plan(tmp_path)
    by_name = {s.name: s for s in build_services(stack)}
    infor = by_name["sandbox-infor"].argv
    assert infor[infor.index("--ims-push-url") + 1] == (
        f"http://127.0.0.1:{stack.ports.infor_events}/infor/ims/service/v3/multipartMessage"
    )
    assert infor[infor.index("--ionapi-out") + 1] == str(stack.ionapi_path)
    setup = by_name["sandbox-setup"].argv
    assert setup[setup.index("--webhook-url") + 1] == (
        f"http://127.0.0.1:{stack.ports.webhooks}/webhooks/prestashop/{SHOP_KEY}"
    )
    receiver = by_name["ingest-prestashop-webhooks"].argv
    assert receiver[receiver.index("--port") + 1] == str(stack.ports.webhooks)
    assert "--webhook-url" not in by_name["sandbox-prestashop"].argv


def test_an_existing_cluster_replaces_the_stacks_own_kafka_and_registry(tmp_path: Path) -> None:
    stack = plan(
        tmp_path, kafka_bootstrap="127.0.0.1:9092", registry_url="http://127.0.0.1:8081/apis/ccompat/v7"
    )
    specs = build_services(stack)
    assert {"kafka", "registry"}.isdisjoint(s.name for s in specs)
    by_name = {s.name: s for s in specs}
    assert by_name["topics"].depends_on == ()
    assert by_name["processors"].env["PSINFOR_KAFKA__BOOTSTRAP_SERVERS"] == "127.0.0.1:9092"


def test_every_listener_gets_its_own_port(tmp_path: Path) -> None:
    specs = build_services(plan(tmp_path))
    ports = [port for s in specs for port in s.ports.values()]
    assert len(ports) == len(set(ports))


def test_the_stage_environment_is_a_valid_configuration_with_secrets_only_in_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = StackSecrets.draw()
    assert len(secrets.ws_key) == 32
    assert secrets.ws_key.isalnum()
    assert len(base64.b64decode(secrets.webhook_secret.removeprefix("whsec_"))) == 32
    stack = plan_stack(
        StackOptions(data_dir=tmp_path), free_port=itertools.count(30_000).__next__, stack_secrets=secrets
    )
    files = write_secret_files(stack)
    assert oct(files["ws_key"].stat().st_mode & 0o777) == "0o600"
    stack.ionapi_path.write_text("{}")
    env = stage_environment(stack)
    assert not any(
        value in env.values() for value in (secrets.ws_key, secrets.webhook_secret, secrets.ims_token)
    )
    for name in [n for n in os.environ if n.startswith("PSINFOR_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.prestashop is not None
    assert settings.prestashop.ws_key.get_secret_value() == secrets.ws_key
    webhooks = settings.require_webhooks()
    assert webhooks.secrets.get_secret_value() == secrets.webhook_secret
    assert webhooks.shop_key_set() == {SHOP_KEY}
    assert [t.get_secret_value() for t in settings.require_ims_tokens()] == [secrets.ims_token]
    assert settings.require_infor().ionapi_path == stack.ionapi_path


def test_a_topic_prefix_isolates_every_topic_group_and_app_id_of_the_stack(tmp_path: Path) -> None:
    stack = plan(tmp_path, topic_prefix="t1.", kafka_bootstrap="127.0.0.1:9092", registry_url="http://r/x")
    by_name = {s.name: s for s in build_services(stack)}
    assert by_name["topics"].argv[-2:] == ("--prefix", "t1.")
    assert by_name["schemas"].argv[-2:] == ("--prefix", "t1.")
    processors = by_name["processors"].argv
    assert processors[processors.index("--app-id") + 1] == "t1.psinfor-processors"
    assert "raw.prestashop.orders=t1.raw.prestashop.orders" in processors
    assert "state.erp-links=t1.state.erp-links" in processors
    sink = by_name["sink-infor-orders"].argv
    assert sink[sink.index("--group-prefix") + 1] == "t1.psinfor-sink-"
    env = by_name["ingest-prestashop-poller"].env
    assert env["PSINFOR_POLLER__TOPIC_PREFIX"] == "t1."
    assert env["PSINFOR_POLLER__GROUP_ID"] == "t1.psinfor-prestashop-poller"
    for variable in ("WEBHOOKS", "INFOR_EVENTS", "SINKS"):
        assert env[f"PSINFOR_{variable}__TOPIC_PREFIX"] == "t1."
    assert stack.sink_groups()[0] == "t1.psinfor-sink-infor-orders"
    assert stack.topic("dlq.sink-infor") == "t1.dlq.sink-infor"
    unprefixed = {s.name: s for s in build_services(plan(tmp_path))}
    assert "--prefix" not in unprefixed["topics"].argv
    assert "PSINFOR_SINKS__TOPIC_PREFIX" not in unprefixed["sink-infor-orders"].env
