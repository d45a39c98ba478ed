"""Schema Registry access: the client built from settings, and registration of the canonical schemas.

Schemas are registered here (``psinfor schemas register``), never by producers. Each Avro topic of the
catalogue gets its record's composed schema under ``<topic>-value`` (TopicNameStrategy). The registry's
compatibility rule (BACKWARD_TRANSITIVE) decides whether a changed schema is accepted; a refusal is
reported per subject with the registry's own reason, and the registry keeps its previous versions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from pipeline.errors import PipelineError, RetryableError
from pipeline.settings import RegistrySettings
from schemas.catalogue import Catalogue
from schemas.codec import REGISTRY_UNREACHABLE
from schemas.loader import schema_string

Outcome = Literal["registered", "unchanged", "would_register", "incompatible"]


@dataclass(frozen=True, slots=True)
class SubjectSchema:
    """A subject and the canonical record whose composed schema belongs under it."""

    subject: str
    record: str


@dataclass(frozen=True, slots=True)
class Registration:
    """What happened to one subject. ``reason`` is the registry's explanation when ``incompatible``."""

    subject: str
    record: str
    outcome: Outcome
    schema_id: int | None = None
    version: int | None = None
    reason: str | None = None

    def __str__(self) -> str:
        where = f"{self.subject} ({self.record})"
        if self.outcome == "incompatible":
            return f"{where}: INCOMPATIBLE: {self.reason}"
        if self.outcome == "would_register":
            return f"{where}: would register a new version"
        return f"{where}: {self.outcome} id={self.schema_id} version={self.version}"


class RegistryRequestError(PipelineError):
    """The registry refused a request for a reason other than compatibility (auth, bad schema, ...)."""


def registry_client(settings: RegistrySettings) -> SchemaRegistryClient:
    """A client for the configured Confluent-compatible registry (Apicurio's ccompat API in the sandbox)."""
    conf: dict[str, str] = {"url": settings.url}
    if settings.basic_auth_user is not None and settings.basic_auth_password is not None:
        password = settings.basic_auth_password.get_secret_value()
        conf["basic.auth.user.info"] = f"{settings.basic_auth_user}:{password}"
    return SchemaRegistryClient(conf)


def catalogue_subjects(catalogue: Catalogue, *, prefix: str = "") -> list[SubjectSchema]:
    """``<prefix><topic>-value`` → record for every Avro topic of the catalogue."""
    return [SubjectSchema(f"{prefix}{topic.name}-value", topic.value) for topic in catalogue.avro_topics()]


def register_schemas(
    client: SchemaRegistryClient, subjects: Sequence[SubjectSchema], *, dry_run: bool = False
) -> list[Registration]:
    """Register each record's composed schema under its subject; one Registration per subject, in order.

    A schema already registered under the subject is ``unchanged``. An incompatible one is
    ``incompatible`` with the registry's reason, and the other subjects are still processed. With
    ``dry_run`` nothing is written: new or compatible schemas are ``would_register`` (registries answer a
    compatibility test without a reason, so a dry-run refusal says only that). Raises RetryableError
    when the registry cannot be reached, RegistryRequestError for any other refusal.
    """
    return [_register_one(client, item, dry_run) for item in subjects]


def _register_one(client: SchemaRegistryClient, item: SubjectSchema, dry_run: bool) -> Registration:
    schema = Schema(schema_string(item.record), "AVRO")
    try:
        found = client.lookup_schema(item.subject, schema)
        return Registration(item.subject, item.record, "unchanged", found.schema_id, found.version)
    except SchemaRegistryError as exc:
        if exc.http_status_code != 404:
            raise _refused(item.subject, exc) from exc
    except REGISTRY_UNREACHABLE as exc:
        raise RetryableError(f"schema registry unreachable: {exc}") from exc
    try:
        if dry_run:
            return _dry_run(client, item, schema)
        client.register_schema(item.subject, schema)
        found = client.lookup_schema(item.subject, schema)
    except SchemaRegistryError as exc:
        if exc.http_status_code == 409:
            return Registration(item.subject, item.record, "incompatible", reason=exc.error_message)
        raise _refused(item.subject, exc) from exc
    except REGISTRY_UNREACHABLE as exc:
        raise RetryableError(f"schema registry unreachable: {exc}") from exc
    return Registration(item.subject, item.record, "registered", found.schema_id, found.version)


def _dry_run(client: SchemaRegistryClient, item: SubjectSchema, schema: Schema) -> Registration:
    try:
        compatible = client.test_compatibility_all_versions(item.subject, schema)
    except SchemaRegistryError as exc:
        if exc.http_status_code != 404:
            raise
        compatible = True  # a new subject accepts any schema
    if compatible:
        return Registration(item.subject, item.record, "would_register")
    reason = (
        "the registry reports the schema incompatible with the registered versions (no reason on a dry run)"
    )
    return Registration(item.subject, item.record, "incompatible", reason=reason)


def _refused(subject: str, exc: SchemaRegistryError) -> PipelineError:
    status = exc.http_status_code
    if status >= 500 or status in (408, 429) or status < 0:
        return RetryableError(f"schema registry error for {subject}: {exc.error_message}", status=status)
    return RegistryRequestError(f"{subject}: registry refused the request ({status}): {exc.error_message}")
