"""The topic catalogue (``schemas/topics.yaml``) loaded and validated: every topic the pipeline uses.

The YAML file is the source of truth for ``psinfor topics apply`` (via :meth:`Catalogue.topic_specs`),
``psinfor schemas register`` (via :meth:`Catalogue.avro_topics`) and the AsyncAPI document.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.topics import TopicSpec
from schemas.loader import record_names

CATALOGUE_PATH = Path(__file__).with_name("topics.yaml")

# Kafka's legal topic characters; the dot-separated families are checked by the catalogue test.
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
# Configs with a field of their own in the catalogue, so they cannot be set twice.
_DEDICATED_CONFIGS = frozenset({"cleanup.policy", "retention.ms"})


class CatalogueError(ValueError):
    """The catalogue file is unreadable or invalid; the message names the topic and field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KeySpec(_Model):
    """How a topic's records are keyed. Keys are UTF-8 strings, never Avro."""

    format: Literal["string"] = "string"
    pattern: str = Field(description="The key's shape, placeholders in braces, e.g. `{shop_id}:{id_order}`.")
    description: str = Field(min_length=1)


class TopicEntry(_Model):
    """One topic of the catalogue."""

    name: str
    description: str = Field(min_length=1)
    key: KeySpec
    value: str = Field(
        min_length=1,
        description="A record name under schemas/avro/ (Avro, subject <topic>-value) or a plain description.",
    )
    partitions: int = Field(ge=1)
    replication_factor: int | None = Field(None, ge=1, description="None: the broker's default.")
    cleanup_policy: Literal["delete", "compact", "compact,delete"]
    retention_ms: int = Field(ge=-1, description="-1: infinite.")
    configs: dict[str, str] = Field(default_factory=dict)
    producers: list[str]
    consumers: list[str]

    @field_validator("name")
    @classmethod
    def _legal_name(cls, value: str) -> str:
        if not _TOPIC_NAME.match(value) or value in (".", ".."):
            raise ValueError(f"{value!r} is not a legal Kafka topic name")
        return value

    @field_validator("configs")
    @classmethod
    def _no_dedicated_keys(cls, value: dict[str, str]) -> dict[str, str]:
        clash = sorted(_DEDICATED_CONFIGS & set(value))
        if clash:
            raise ValueError(f"set {', '.join(clash)} with the dedicated field, not in configs")
        return value

    def is_avro(self) -> bool:
        """True when the value is a canonical Avro record (one of the records under ``schemas/avro/``)."""
        return self.value in record_names()

    def topic_config(self) -> dict[str, str]:
        """Every topic-level config the catalogue manages for this topic, as the broker spells them."""
        return {"cleanup.policy": self.cleanup_policy, "retention.ms": str(self.retention_ms), **self.configs}


class Catalogue(_Model):
    """All topics, unique by name, in file order."""

    topics: list[TopicEntry]

    @model_validator(mode="after")
    def _unique_names(self) -> Catalogue:
        seen: set[str] = set()
        for topic in self.topics:
            if topic.name in seen:
                raise ValueError(f"topic {topic.name} is listed twice")
            seen.add(topic.name)
        return self

    def topic(self, name: str) -> TopicEntry:
        """The entry of topic ``name``; KeyError when the catalogue has no such topic."""
        for entry in self.topics:
            if entry.name == name:
                return entry
        raise KeyError(name)

    def avro_topics(self) -> list[TopicEntry]:
        """Topics whose value is a canonical Avro record, i.e. those with a ``<topic>-value`` subject."""
        return [topic for topic in self.topics if topic.is_avro()]

    def topic_specs(self, *, prefix: str = "", replication_factor: int | None = None) -> list[TopicSpec]:
        """The topics as generic specs for :func:`pipeline.topics.apply_topics`.

        ``prefix`` is prepended to every name (tests use a unique one); ``replication_factor``, when
        given, overrides every topic's (e.g. 3 on a production cluster whose default is lower).
        """
        return [
            TopicSpec(
                name=f"{prefix}{topic.name}",
                partitions=topic.partitions,
                replication_factor=replication_factor
                if replication_factor is not None
                else topic.replication_factor,
                configs=topic.topic_config(),
            )
            for topic in self.topics
        ]


def load_catalogue(path: Path = CATALOGUE_PATH) -> Catalogue:
    """Read and validate the catalogue; raises CatalogueError with a readable message."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogueError(f"{path}: cannot read the topic catalogue ({exc})") from exc
    try:
        return Catalogue.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        raise CatalogueError(f"{path.name}: {problems}") from exc
