"""`psinfor topics apply` and apply_topics against the real broker: idempotent, exact, never shrinking."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType  # type: ignore[attr-defined]

from cli.main import main
from pipeline.kafka_config import librdkafka_config
from pipeline.settings import KafkaSettings
from pipeline.topics import TopicChange, TopicSpec, apply_topics
from schemas.catalogue import load_catalogue

pytestmark = pytest.mark.integration


@pytest.fixture
def admin(kafka_bootstrap: str) -> AdminClient:
    settings = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    return AdminClient(librdkafka_config(settings, client_id_suffix="test-topics"))


@pytest.fixture
def prefix() -> str:
    return f"t.{uuid.uuid4().hex[:10]}."


def _partitions(admin: AdminClient, topic: str) -> int:
    metadata: Any = admin.list_topics(topic=topic, timeout=10)
    return len(metadata.topics[topic].partitions)


def _config(admin: AdminClient, topic: str, key: str) -> str:
    futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)])
    (future,) = futures.values()
    value: str = future.result(timeout=10)[key].value
    return value


@pytest.mark.timeout(60)
def test_cli_apply_twice_changes_nothing_the_second_time(
    kafka_bootstrap: str,
    admin: AdminClient,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PSINFOR_KAFKA__BOOTSTRAP_SERVERS", kafka_bootstrap)
    catalogue = load_catalogue()

    assert main(["topics", "apply", "--prefix", prefix]) == 0
    first = capsys.readouterr().out.splitlines()
    assert len(first) == len(catalogue.topics)
    assert all(line.startswith("create") for line in first)

    assert main(["topics", "apply", "--prefix", prefix]) == 0
    assert capsys.readouterr().out.strip() == "no changes"

    dlq = f"{prefix}dlq.processors"
    assert _config(admin, dlq, "cleanup.policy") == "compact"
    assert (
        _partitions(admin, f"{prefix}canonical.order.v1") == catalogue.topic("canonical.order.v1").partitions
    )


@pytest.mark.timeout(60)
def test_changed_config_and_more_partitions_are_exactly_what_is_applied(
    admin: AdminClient, prefix: str
) -> None:
    specs = load_catalogue().topic_specs(prefix=prefix)[:3]
    assert len(apply_topics(admin, specs)) == 3
    first, second, third = specs
    changed = [
        dataclasses.replace(first, configs={**first.configs, "retention.ms": "86400000"}),
        dataclasses.replace(second, partitions=second.partitions + 2),
        third,
    ]

    changes = apply_topics(admin, changed)

    assert changes == [
        TopicChange("add_partitions", second.name, f"{second.partitions} -> {second.partitions + 2}", True),
        TopicChange(
            "alter_config", first.name, f"retention.ms: {first.configs['retention.ms']} -> 86400000", True
        ),
    ]
    assert _config(admin, first.name, "retention.ms") == "86400000"
    assert _partitions(admin, second.name) == second.partitions + 2
    assert apply_topics(admin, changed) == []


@pytest.mark.timeout(60)
def test_shrink_is_refused_and_dry_run_changes_nothing(admin: AdminClient, prefix: str) -> None:
    spec = TopicSpec(f"{prefix}shrink", partitions=3, configs={"retention.ms": "3600000"})
    dry = apply_topics(admin, [spec], dry_run=True)
    assert [(c.kind, c.applied) for c in dry] == [("create", False)]
    metadata: Any = admin.list_topics(timeout=10)
    assert spec.name not in metadata.topics

    apply_topics(admin, [spec])
    smaller = dataclasses.replace(spec, partitions=1, configs={"retention.ms": "7200000"})
    dry = apply_topics(admin, [smaller], dry_run=True)
    assert [(c.kind, c.applied) for c in dry] == [("refused_shrink", False), ("alter_config", False)]
    assert _config(admin, spec.name, "retention.ms") == "3600000"

    changes = apply_topics(admin, [smaller])
    assert [(c.kind, c.applied) for c in changes] == [("refused_shrink", False), ("alter_config", True)]
    assert "partitions can only grow" in str(changes[0])
    assert _partitions(admin, spec.name) == 3
