"""Declarative topics: bring a cluster in line with a list of :class:`TopicSpec`, idempotently.

:func:`apply_topics` creates missing topics, raises partition counts that are too low and sets topic
configs that differ. It never lowers a partition count (Kafka cannot, and re-keying would break
per-key order) and never deletes a topic or a config it does not manage: configs absent from a spec are
left as the broker has them. Applying the same specs twice changes nothing the second time.

Vendor-free on purpose: the catalogue in ``schemas/`` turns its entries into specs.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from confluent_kafka import KafkaError, KafkaException

# The admin package re-exports these without declaring them public, hence the ignore.
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

from pipeline.errors import PipelineError, RetryableError

ChangeKind = Literal["create", "add_partitions", "alter_config", "refused_shrink"]


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """What a topic should look like. ``replication_factor`` None means the broker's default."""

    name: str
    partitions: int
    replication_factor: int | None = None
    configs: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TopicChange:
    """One difference between a spec and the cluster, and what was (or, in a dry run, would be) done.

    ``refused_shrink`` is never applied: the spec asks for fewer partitions than the topic has.
    """

    kind: ChangeKind
    topic: str
    detail: str
    applied: bool

    def __str__(self) -> str:
        if self.kind == "refused_shrink":
            return f"REFUSED  {self.topic}: {self.detail}"
        verb = {"create": "create", "add_partitions": "partitions", "alter_config": "config"}[self.kind]
        prefix = "" if self.applied else "(dry run) "
        return f"{prefix}{verb:<10} {self.topic}: {self.detail}"


class TopicApplyError(PipelineError):
    """The broker refused a change (e.g. an invalid config value or a replication factor too high)."""


def apply_topics(
    admin: AdminClient, specs: Sequence[TopicSpec], *, dry_run: bool = False, timeout_s: float = 30.0
) -> list[TopicChange]:
    """Make the cluster match ``specs``; return every change made (or that would be made when ``dry_run``).

    Returns only after the broker confirmed every change and created topics appear in metadata. An
    empty list means nothing differed. A spec asking for fewer partitions than the topic has yields a
    ``refused_shrink`` change and nothing else for that count. Raises TopicApplyError when the broker
    refuses a change, RetryableError when it cannot be reached in ``timeout_s``.
    """
    existing = _partition_counts(admin, timeout_s)
    changes: list[TopicChange] = []
    to_create = [spec for spec in specs if spec.name not in existing]
    for spec in to_create:
        rf = "broker default" if spec.replication_factor is None else str(spec.replication_factor)
        changes.append(
            TopicChange("create", spec.name, f"{spec.partitions} partitions, replication {rf}", not dry_run)
        )
    to_grow: list[NewPartitions] = []
    for spec in specs:
        current = existing.get(spec.name)
        if current is None or current == spec.partitions:
            continue
        if current > spec.partitions:
            detail = f"has {current} partitions, spec says {spec.partitions}; partitions can only grow"
            changes.append(TopicChange("refused_shrink", spec.name, detail, False))
            continue
        to_grow.append(NewPartitions(spec.name, spec.partitions))
        changes.append(
            TopicChange("add_partitions", spec.name, f"{current} -> {spec.partitions}", not dry_run)
        )
    config_changes = _config_differences(admin, [s for s in specs if s.name in existing], timeout_s)
    for name, key, before, after in config_changes:
        changes.append(TopicChange("alter_config", name, f"{key}: {before} -> {after}", not dry_run))
    if dry_run:
        return changes
    if to_create:
        new_topics = [
            NewTopic(
                spec.name,
                num_partitions=spec.partitions,
                replication_factor=-1 if spec.replication_factor is None else spec.replication_factor,
                config=dict(spec.configs),
            )
            for spec in to_create
        ]
        _wait_all(admin.create_topics(new_topics, request_timeout=timeout_s), "create", timeout_s)
    if to_grow:
        _wait_all(admin.create_partitions(to_grow, request_timeout=timeout_s), "add partitions to", timeout_s)
    if config_changes:
        resources: dict[str, ConfigResource] = {}
        for name, key, _before, after in config_changes:
            resource = resources.setdefault(name, ConfigResource(ResourceType.TOPIC, name))
            resource.add_incremental_config(
                ConfigEntry(key, after, incremental_operation=AlterConfigOpType.SET)
            )
        futures = admin.incremental_alter_configs(list(resources.values()), request_timeout=timeout_s)
        _wait_all(
            {str(resource.name): future for resource, future in futures.items()}, "configure", timeout_s
        )
        _wait_configs_visible(admin, config_changes, timeout_s)
    if to_create:
        _wait_visible(admin, {spec.name: spec.partitions for spec in to_create}, timeout_s)
    return changes


def _partition_counts(admin: AdminClient, timeout_s: float) -> dict[str, int]:
    try:
        metadata: Any = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise RetryableError(f"cannot list topics: {exc}") from exc
    return {name: len(topic.partitions) for name, topic in metadata.topics.items() if topic.error is None}


def _config_differences(
    admin: AdminClient, specs: Sequence[TopicSpec], timeout_s: float
) -> list[tuple[str, str, str | None, str]]:
    """(topic, key, current value, wanted value) for every managed config that differs."""
    wanted = {spec.name: spec for spec in specs if spec.configs}
    if not wanted:
        return []
    futures = admin.describe_configs(
        [ConfigResource(ResourceType.TOPIC, name) for name in wanted], request_timeout=timeout_s
    )
    differences: list[tuple[str, str, str | None, str]] = []
    for resource, future in futures.items():
        name = str(resource.name)
        try:
            current: dict[str, Any] = future.result(timeout=timeout_s)
        except KafkaException as exc:
            raise TopicApplyError(f"cannot describe configs of {name}: {exc}") from exc
        for key, value in sorted(wanted[name].configs.items()):
            entry = current.get(key)
            before = None if entry is None else entry.value
            if before != value:
                differences.append((name, key, before, value))
    return sorted(differences)


def _wait_all(futures: Mapping[str, Any], action: str, timeout_s: float) -> None:
    problems: list[str] = []
    for name, future in futures.items():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            # Another apply may have created the same topic meanwhile: the goal is reached.
            if action == "create" and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            problems.append(f"{name}: {error.str()}")
    if problems:
        raise TopicApplyError(f"the broker refused to {action} " + "; ".join(problems))


def _wait_configs_visible(
    admin: AdminClient, changes: Sequence[tuple[str, str, str | None, str]], timeout_s: float
) -> None:
    # The controller acknowledges a config change before every broker has applied it from the metadata
    # log; wait until describe_configs shows it so the caller (and an immediate second apply) sees it.
    specs: dict[str, dict[str, str]] = {}
    for name, key, _before, after in changes:
        specs.setdefault(name, {})[key] = after
    pending = [TopicSpec(name, 0, None, configs) for name, configs in specs.items()]
    deadline = time.monotonic() + timeout_s
    while _config_differences(admin, pending, timeout_s):
        if time.monotonic() >= deadline:
            raise RetryableError(f"topic config changes not visible after {timeout_s} s")
        time.sleep(0.1)


def _wait_visible(admin: AdminClient, wanted: Mapping[str, int], timeout_s: float) -> None:
    # create_topics returns when the controller has the topic; brokers' metadata may lag a moment, and
    # a caller that applies again right away must see the topic to stay idempotent.
    deadline = time.monotonic() + timeout_s
    while True:
        counts = _partition_counts(admin, timeout_s)
        if all(counts.get(name) == partitions for name, partitions in wanted.items()):
            return
        if time.monotonic() >= deadline:
            missing = sorted(name for name, n in wanted.items() if counts.get(name) != n)
            raise RetryableError(f"created topics not visible after {timeout_s} s: {', '.join(missing)}")
        time.sleep(0.1)
