"""The topic catalogue: complete, consistent with the schemas, and DLQs that never lose a failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.catalogue import CatalogueError, load_catalogue
from schemas.loader import compose, record_names

SEVEN_DAYS_MS = 7 * 86_400_000
TOP_LEVEL = {name for name in record_names() if any(f["name"] == "meta" for f in compose(name)["fields"])}


def test_every_architecture_topic_is_listed() -> None:
    names = {topic.name for topic in load_catalogue().topics}
    expected = (
        {f"raw.prestashop.{e}" for e in ("orders", "customers", "products", "stock")}
        | {
            f"raw.infor.{n}"
            for n in ("salesorders", "shipments", "invoices", "items", "inventory", "customers")
        }
        | {
            f"canonical.{e}.v1"
            for e in (
                "order",
                "order-status",
                "customer",
                "product",
                "inventory",
                "shipment",
                "invoice",
                "payment",
            )
        }
        | {"state.erp-links", "state.watermarks", "dlq.processors", "dlq.sink-infor", "dlq.sink-prestashop"}
        | {"review.order.v1"}
        # Beyond ARCHITECTURE.md: the decisions about held orders (psinfor review, processors follow it).
        | {"state.review-decisions"}
    )
    assert names == expected


def test_every_canonical_topic_names_an_existing_schema() -> None:
    for topic in load_catalogue().topics:
        if topic.name.startswith(("canonical.", "review.")):
            assert topic.is_avro(), topic.name
            assert topic.value in TOP_LEVEL, topic.name
        else:
            assert not topic.is_avro(), topic.name


def test_every_top_level_schema_has_a_canonical_topic() -> None:
    canonical = {t.value for t in load_catalogue().topics if t.name.startswith("canonical.")}
    assert len(TOP_LEVEL) == 8
    assert canonical == TOP_LEVEL


def test_dlq_topics_are_compacted_keep_failures_forever_and_are_keyed_per_failure() -> None:
    dlqs = [t for t in load_catalogue().topics if t.name.startswith("dlq.")]
    assert len(dlqs) == 3
    for dlq in dlqs:
        assert dlq.cleanup_policy == "compact", dlq.name
        assert dlq.retention_ms == -1, dlq.name
        # Tombstones (purges) and fresh failures stay readable for a week before compaction touches them.
        assert int(dlq.configs["min.compaction.lag.ms"]) >= SEVEN_DAYS_MS
        assert int(dlq.configs["delete.retention.ms"]) >= SEVEN_DAYS_MS
        # Keyed by the failed record's coordinates: compaction must never drop an older failure of the
        # same business key, which keying by the original key would.
        assert dlq.key.pattern == "{source_topic}:{source_partition}:{source_offset}"
        assert "original key" in dlq.key.description
        assert dlq.value == "source bytes"
        assert dlq.partitions == 1


def test_state_topics_are_compacted_and_raw_topics_keep_at_least_seven_days() -> None:
    for topic in load_catalogue().topics:
        if topic.name.startswith("state."):
            assert topic.cleanup_policy == "compact", topic.name
        if topic.name.startswith("raw."):
            assert topic.cleanup_policy == "delete"
            assert topic.retention_ms >= SEVEN_DAYS_MS, topic.name


def test_every_topic_has_producers_and_defaults_to_the_broker_replication_factor() -> None:
    for topic in load_catalogue().topics:
        assert topic.producers, topic.name
        # A raw topic is first the replayable audit trail: raw.prestashop.stock has no flow (Infor owns
        # stock), every other topic is read by someone.
        assert topic.consumers or topic.name == "raw.prestashop.stock", topic.name
        assert topic.replication_factor is None, topic.name


def test_topic_specs_carry_prefix_override_and_managed_configs() -> None:
    catalogue = load_catalogue()
    specs = {s.name: s for s in catalogue.topic_specs(prefix="x.", replication_factor=3)}
    dlq = specs["x.dlq.processors"]
    assert dlq.replication_factor == 3
    assert dlq.configs["cleanup.policy"] == "compact"
    assert dlq.configs["retention.ms"] == "-1"
    assert len(specs) == len(catalogue.topics)


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "topics.yaml"
    path.write_text(body, encoding="utf-8")
    return path


TOPIC = """
  - name: {name}
    description: d
    key: {{pattern: "{{id}}", description: k}}
    value: source bytes
    partitions: 1
    cleanup_policy: delete
    retention_ms: 1000
    configs: {configs}
    producers: [a]
    consumers: [b]
"""


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("topics:" + TOPIC.format(name="a", configs="{}") * 2, "listed twice"),
        ("topics:" + TOPIC.format(name="a", configs="{cleanup.policy: compact}"), "dedicated field"),
        ("topics:" + TOPIC.format(name="bad name!", configs="{}"), "not a legal Kafka topic name"),
        ("topics: [", "cannot read"),
    ],
)
def test_invalid_catalogues_are_refused_with_a_readable_reason(
    tmp_path: Path, body: str, message: str
) -> None:
    with pytest.raises(CatalogueError, match=message):
        load_catalogue(_write(tmp_path, body))
