"""The one Avro codec of the pipeline: canonical records in the Schema Registry wire format.

Wire format: magic byte ``0``, the 4-byte big-endian schema id, then the Avro binary body. Subjects
follow the TopicNameStrategy (``<topic>-value``).

Schemas are registered by ``psinfor schemas register``, never by a producer: the serializer runs with
``auto.register.schemas=False`` and looks its own schema up in the subject (``POST /subjects/<s>``),
which Apicurio's ccompat API answers with the id of the identical registered version. We do not use
``use.latest.version``: it would write with whatever schema was registered last, possibly newer than the
code's, silently filling fields the code does not know with their defaults.

Errors, classified here where the knowledge is:

- a datum that does not fit the schema (wrong type, missing required field, unknown field, too many
  decimal places) → :class:`InvalidMessage` ``reason="schema_violation"`` with ``field_path`` such as
  ``lines[1].unit_price_excl_tax.amount`` when one field is to blame;
- bytes that are not a Schema Registry Avro record (no magic byte, unknown schema id, truncated or
  corrupt body) → :class:`InvalidMessage` ``reason="undecodable"``;
- the registry unreachable or answering 5xx → :class:`RetryableError`;
- our own schema missing from its subject → :class:`SchemaNotRegisteredError` (a deployment mistake, not a
  message problem: it crashes the stage instead of dead-lettering every record).
"""

from __future__ import annotations

import datetime as dt
import decimal
import struct
import uuid
from collections.abc import Mapping
from typing import Any, TypeAlias

import httpx
from confluent_kafka.schema_registry import SchemaRegistryClient, topic_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext, SerializationError

from pipeline.errors import InvalidMessage, RetryableError
from schemas.loader import AvroSchemaJson, compose, schema_string

AvroDatum: TypeAlias = dict[str, Any]
"""A record as fastavro reads and writes it: Decimal, aware datetime, date, UUID, str, dict, list."""

# Codes the Confluent API uses for "this subject / schema / version does not exist".
_NOT_FOUND_CODES = frozenset({40401, 40402, 40403})

# What fastavro and the deserializer raise on bytes that are not a valid record of the writer schema.
_CORRUPT_BODY_ERRORS = (
    SerializationError,
    EOFError,
    ValueError,
    TypeError,
    IndexError,
    KeyError,
    OverflowError,
    struct.error,
    ArithmeticError,
)


class SchemaNotRegisteredError(RuntimeError):
    """Our own schema is not registered under the topic's subject: run ``psinfor schemas register``."""


class AvroCodec:
    """Encodes and decodes one canonical record type; build it once per record type and reuse it.

    ``record`` is the short name of a top-level record under ``schemas/avro/`` (``"Order"``). The same
    codec serves every topic carrying that record (``canonical.order.v1``, ``review.order.v1``); the
    topic picks the subject.
    """

    def __init__(self, client: SchemaRegistryClient, record: str) -> None:
        self.record = record
        self._schema: AvroSchemaJson = compose(record)
        schema_str = schema_string(record)
        self._serializer = AvroSerializer(
            client,
            schema_str,
            conf={
                "auto.register.schemas": False,
                # Unknown fields are an error, missing fields fall back to their schema default.
                "validate.strict.allow.default": True,
                "subject.name.strategy": topic_subject_name_strategy,
            },
        )
        # The subject strategy is explicit on both sides: confluent-kafka 2.16 otherwise asks the registry
        # for topic "associations" on every call, an endpoint Confluent-compatible registries such as
        # Apicurio do not serve (an extra round trip per record, which hung under load).
        self._deserializer = AvroDeserializer(
            client, schema_str, conf={"subject.name.strategy": topic_subject_name_strategy}
        )

    def encode(self, datum: Mapping[str, Any], topic: str) -> bytes:
        """Serialize ``datum`` for ``topic``; returns magic byte + schema id + Avro body.

        Raises InvalidMessage(schema_violation) when the datum does not fit the schema,
        RetryableError when the registry cannot be reached, SchemaNotRegisteredError when the schema is not
        registered under ``<topic>-value``.
        """
        ctx = SerializationContext(topic, MessageField.VALUE)
        try:
            data = self._serializer(dict(datum), ctx)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404 or exc.error_code in _NOT_FOUND_CODES:
                raise SchemaNotRegisteredError(
                    f"{self.record} is not registered under subject {topic}-value "
                    f"({exc.error_message}); run `psinfor schemas register`"
                ) from exc
            raise _registry_failure(exc) from exc
        except httpx.TransportError as exc:
            raise RetryableError(f"schema registry unreachable: {exc}") from exc
        except (SerializationError, ValueError, TypeError, ArithmeticError, OverflowError) as exc:
            violation = find_violation(self._schema, datum)
            path, message = violation if violation else (None, str(exc))
            raise InvalidMessage(
                "schema_violation", f"{self.record}: {message}", field_path=path, details={"topic": topic}
            ) from exc
        if data is None:  # only for a None datum, which the signature excludes
            raise InvalidMessage("schema_violation", f"{self.record}: nothing to encode")
        return bytes(data)

    def decode(self, data: bytes, topic: str) -> AvroDatum:
        """Deserialize wire-format ``data`` read from ``topic`` into this codec's record (reader schema).

        Raises InvalidMessage(undecodable) when the bytes are not a Schema Registry Avro record that
        resolves to this record type, RetryableError when the registry cannot be reached.
        """
        ctx = SerializationContext(topic, MessageField.VALUE)
        try:
            datum = self._deserializer(data, ctx)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404 or exc.error_code in _NOT_FOUND_CODES:
                raise InvalidMessage(
                    "undecodable",
                    f"{self.record}: writer schema unknown to the registry ({exc.error_message})",
                ) from exc
            raise _registry_failure(exc) from exc
        except httpx.TransportError as exc:
            raise RetryableError(f"schema registry unreachable: {exc}") from exc
        except _CORRUPT_BODY_ERRORS as exc:
            raise InvalidMessage(
                "undecodable",
                f"{self.record}: not a valid wire-format Avro record ({type(exc).__name__}: {exc})",
            ) from exc
        if not isinstance(datum, dict):
            raise InvalidMessage(
                "undecodable", f"{self.record}: decoded a {type(datum).__name__}, not a record"
            )
        return datum


def _registry_failure(exc: SchemaRegistryError) -> Exception:
    if exc.http_status_code >= 500 or exc.http_status_code in (408, 429) or exc.http_status_code < 0:
        return RetryableError(f"schema registry error: {exc.error_message}", status=exc.http_status_code)
    # Any other 4xx from the registry means our configuration (URL, credentials) is wrong: crash loudly.
    return RuntimeError(f"schema registry refused the request: {exc.http_status_code} {exc.error_message}")


def find_violation(schema: AvroSchemaJson, datum: Any) -> tuple[str, str] | None:
    """The first place where ``datum`` does not fit the composed ``schema``: (field path, explanation).

    Paths use dots for record fields and ``[i]`` / ``[key]`` for array items and map values
    (``lines[1].quantity``). Returns None when no violation is found. It exists to name the field in a
    dead-letter record; fastavro's own messages do not give a usable path.
    """
    return _Walker().check(schema, datum, "", schema.get("namespace", ""))


class _Walker:
    def __init__(self) -> None:
        self.named: dict[str, Any] = {}

    def check(self, schema: Any, datum: Any, path: str, namespace: str) -> tuple[str, str] | None:
        if isinstance(schema, str):
            if schema in self.named:
                return self.check(self.named[schema], datum, path, namespace)
            full = f"{namespace}.{schema}"
            if full in self.named:
                return self.check(self.named[full], datum, path, namespace)
            return self._primitive(schema, {}, datum, path)
        if isinstance(schema, list):
            return self._union(schema, datum, path, namespace)
        kind = schema["type"]
        if kind in ("record", "enum", "fixed"):
            namespace = schema.get("namespace", namespace)
            full = schema["name"] if "." in schema["name"] else f"{namespace}.{schema['name']}"
            self.named[full] = schema
        if kind == "record":
            return self._record(schema, datum, path, namespace)
        if kind == "enum":
            if not isinstance(datum, str) or datum not in schema["symbols"]:
                return _at(path, f"expected one of the {schema['name']} symbols, got {datum!r}")
            return None
        if kind == "array":
            if not isinstance(datum, (list, tuple)):
                return _at(path, f"expected an array, got {type(datum).__name__}")
            for index, item in enumerate(datum):
                found = self.check(schema["items"], item, f"{path}[{index}]", namespace)
                if found:
                    return found
            return None
        if kind == "map":
            if not isinstance(datum, Mapping):
                return _at(path, f"expected a map, got {type(datum).__name__}")
            for key, value in datum.items():
                if not isinstance(key, str):
                    return _at(path, f"map keys must be strings, got {key!r}")
                found = self.check(schema["values"], value, f"{path}[{key}]", namespace)
                if found:
                    return found
            return None
        if isinstance(kind, (list, dict)):
            return self.check(kind, datum, path, namespace)
        return self._primitive(kind, schema, datum, path)

    def _record(self, schema: Any, datum: Any, path: str, namespace: str) -> tuple[str, str] | None:
        if not isinstance(datum, Mapping):
            return _at(path, f"expected a {schema['name']} record, got {type(datum).__name__}")
        names = {field["name"] for field in schema["fields"]}
        unknown = sorted(str(key) for key in datum if key not in names)
        for field in schema["fields"]:
            child = f"{path}.{field['name']}" if path else field["name"]
            if field["name"] not in datum:
                if "default" in field:
                    continue
                return _at(child, "required field is missing")
            found = self.check(field["type"], datum[field["name"]], child, namespace)
            if found:
                return found
        if unknown:
            return _at(f"{path}.{unknown[0]}" if path else unknown[0], f"field not in {schema['name']}")
        return None

    def _union(self, branches: list[Any], datum: Any, path: str, namespace: str) -> tuple[str, str] | None:
        failures = []
        for branch in branches:
            found = self.check(branch, datum, path, namespace)
            if found is None:
                return None
            failures.append(found)
        non_null = [f for b, f in zip(branches, failures, strict=True) if b != "null"]
        # With one non-null branch its own explanation (deeper path) is the useful one.
        if len(non_null) == 1:
            return non_null[0]
        return _at(path, f"matches none of the union branches ({datum!r})")

    def _primitive(
        self, kind: str, schema: Mapping[str, Any], datum: Any, path: str
    ) -> tuple[str, str] | None:
        logical = schema.get("logicalType")
        got = type(datum).__name__
        if logical == "decimal":
            return _decimal(schema, datum, path)
        if logical in ("timestamp-millis", "timestamp-micros"):
            if isinstance(datum, dt.datetime) or (isinstance(datum, int) and not isinstance(datum, bool)):
                return None
            return _at(path, f"expected a timestamp (aware datetime), got {got}")
        if logical == "date":
            if isinstance(datum, dt.date) and not isinstance(datum, dt.datetime):
                return None
            return _at(path, f"expected a date, got {got}")
        if logical == "uuid":
            if isinstance(datum, uuid.UUID):
                return None
            if isinstance(datum, str):
                try:
                    uuid.UUID(datum)
                except ValueError:
                    return _at(path, f"expected a UUID, got {datum!r}")
                return None
            return _at(path, f"expected a UUID, got {got}")
        ok = {
            "null": datum is None,
            "boolean": isinstance(datum, bool),
            "int": isinstance(datum, int) and not isinstance(datum, bool) and -(2**31) <= datum < 2**31,
            "long": isinstance(datum, int) and not isinstance(datum, bool) and -(2**63) <= datum < 2**63,
            "float": isinstance(datum, (int, float)) and not isinstance(datum, bool),
            "double": isinstance(datum, (int, float)) and not isinstance(datum, bool),
            "string": isinstance(datum, str),
            "bytes": isinstance(datum, (bytes, bytearray)),
        }.get(kind)
        if ok is None:
            return _at(path, f"unsupported schema type {kind!r}")
        return None if ok else _at(path, f"expected {kind}, got {got}")


def _decimal(schema: Mapping[str, Any], datum: Any, path: str) -> tuple[str, str] | None:
    precision, scale = int(schema["precision"]), int(schema.get("scale", 0))
    expected = f"expected decimal({precision},{scale})"
    if not isinstance(datum, decimal.Decimal):
        return _at(path, f"{expected} as Decimal, got {type(datum).__name__} {datum!r}")
    if not datum.is_finite():
        return _at(path, f"{expected}, got {datum}")
    exponent = datum.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > scale:
        return _at(path, f"{expected}, got {datum} with more than {scale} decimal places")
    if datum.adjusted() + 1 > precision - scale:
        return _at(path, f"{expected}, got {datum}: too many integer digits")
    return None


def _at(path: str, message: str) -> tuple[str, str]:
    return (path or "<record>", message)
