"""The one Avro codec of the pipeline: canonical records in the Schema Registry wire format.

Wire format: magic byte ``0``, the 4-byte big-endian schema id, then the Avro binary body. Subjects
follow the TopicNameStrategy (``<topic>-value``). The bytes are exactly those confluent-kafka's
``AvroSerializer`` writes (tests/unit/test_schema_codec_wire.py proves it for every example); the codec
does the framing itself so that the per-record cost is fastavro's writer and nothing else.

Schemas are registered by ``psinfor schemas register``, never by a producer: the codec looks its own
schema up in the subject (``POST /subjects/<s>``) once per topic, at first use, and Apicurio's ccompat API
answers with the id of the identical registered version. We do not write with the subject's latest
version: it could be newer than the code's, silently filling fields the code does not know with their
defaults. Writer schemas met while decoding are fetched by id once and cached.

Validation is fastavro's ``strict_allow_default`` writer: an unknown field, a missing field without a
default or a value of the wrong type makes the writer raise, and only then does :func:`find_violation`
walk the datum to name the field. A valid record is therefore checked and written in one pass.

Errors, classified here where the knowledge is:

- a datum that does not fit the schema (wrong type, missing required field, unknown field, too many
  decimal places) → :class:`InvalidMessage` ``reason="schema_violation"`` with ``field_path`` such as
  ``lines[1].unit_price_excl_tax.amount`` when one field is to blame;
- bytes that are not a Schema Registry Avro record of this record type (no magic byte, unknown schema id,
  a writer schema that does not resolve to ours, truncated or corrupt body) → :class:`InvalidMessage`
  ``reason="undecodable"``;
- the registry unreachable or answering 5xx → :class:`RetryableError`;
- our own schema missing from its subject → :class:`SchemaNotRegisteredError` (a deployment mistake, not a
  message problem: it crashes the stage instead of dead-lettering every record).
"""

from __future__ import annotations

import datetime as dt
import decimal
import io
import json
import struct
import uuid
from collections.abc import Mapping
from typing import Any, TypeAlias

import httpx
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.common._httpx_compat import httpx as registry_httpx
from confluent_kafka.schema_registry.error import SchemaRegistryError
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError

from pipeline.errors import InvalidMessage, RetryableError
from schemas.loader import AvroSchemaJson, compose, parsed_schema, schema_string

AvroDatum: TypeAlias = dict[str, Any]
"""A record as fastavro reads and writes it: Decimal, aware datetime, date, UUID, str, dict, list."""

# Codes the Confluent API uses for "this subject / schema / version does not exist".
_NOT_FOUND_CODES = frozenset({40401, 40402, 40403})

_MAGIC = 0

# confluent-kafka's registry client speaks httpx2 when it is installed (else httpx); its compat module
# names the one in use, so "registry unreachable" is caught whichever it is.
REGISTRY_UNREACHABLE: tuple[type[Exception], ...] = (httpx.TransportError, registry_httpx.TransportError)
"""The exceptions the registry client raises when the registry cannot be reached (→ RetryableError)."""

# What fastavro's writer raises on a datum that does not fit the schema (a float where a Decimal belongs
# fails inside the decimal writer with AttributeError / TypeError).
_WRITE_ERRORS = (ValueError, TypeError, AttributeError, ArithmeticError, OverflowError, KeyError)

# What fastavro's reader raises on bytes that are not a valid record of the writer schema, or a writer
# schema that does not resolve to the reader's.
_CORRUPT_BODY_ERRORS = (
    SchemaResolutionError,
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
    topic picks the subject. Not thread-safe (it reuses one output buffer): one codec per thread.
    """

    def __init__(self, client: SchemaRegistryClient, record: str) -> None:
        self.record = record
        self._client = client
        self._schema: AvroSchemaJson = compose(record)
        self._schema_str = schema_string(record)
        self._parsed: Any = parsed_schema(record)
        # topic → the 5-byte wire header (magic byte + our schema id under <topic>-value).
        self._headers: dict[str, bytes] = {}
        # writer schema id → (parsed writer schema, reader schema or None when the writer's is ours,
        # the writer schema as JSON).
        self._writers: dict[int, tuple[Any, Any, Any]] = {}
        self._out = io.BytesIO()

    def encode(self, datum: Mapping[str, Any], topic: str) -> bytes:
        """Serialize ``datum`` for ``topic``; returns magic byte + schema id + Avro body.

        Raises InvalidMessage(schema_violation) when the datum does not fit the schema,
        RetryableError when the registry cannot be reached, SchemaNotRegisteredError when the schema is not
        registered under ``<topic>-value``. Only the first call per topic asks the registry.
        """
        header = self._headers.get(topic)
        if header is None:
            header = self._lookup_header(topic)
        out = self._out
        out.seek(0)
        out.truncate()
        out.write(header)
        try:
            schemaless_writer(out, self._parsed, datum, strict_allow_default=True)
        except _WRITE_ERRORS as exc:
            violation = find_violation(self._schema, datum)
            path, message = violation if violation else (None, str(exc))
            raise InvalidMessage(
                "schema_violation", f"{self.record}: {message}", field_path=path, details={"topic": topic}
            ) from exc
        return out.getvalue()

    def decode(self, data: bytes, topic: str) -> AvroDatum:
        """Deserialize wire-format ``data`` read from ``topic`` into this codec's record (reader schema).

        Raises InvalidMessage(undecodable) when the bytes are not a Schema Registry Avro record that
        resolves to this record type, RetryableError when the registry cannot be reached. Only the first
        record of each writer schema id asks the registry.
        """
        if len(data) <= 5 or data[0] != _MAGIC:
            raise InvalidMessage(
                "undecodable",
                f"{self.record}: not a Schema Registry Avro record (no magic byte and schema id)",
                details={"topic": topic},
            )
        schema_id = int.from_bytes(data[1:5], "big")
        resolved = self._writers.get(schema_id)
        if resolved is None:
            resolved = self._writer_schema(schema_id)
        writer, reader, writer_json = resolved
        try:
            datum = schemaless_reader(io.BytesIO(data[5:]), writer, reader)
        except _CORRUPT_BODY_ERRORS as exc:
            mismatch = None if reader is None else first_unresolvable_field(writer_json, self._schema)
            path, why = mismatch if mismatch else (None, f"{type(exc).__name__}: {exc}")
            raise InvalidMessage(
                "undecodable",
                f"{self.record}: not a valid wire-format Avro record of this type ({why})",
                field_path=path,
                details={"topic": topic},
            ) from exc
        if not isinstance(datum, dict):
            raise InvalidMessage(
                "undecodable", f"{self.record}: decoded a {type(datum).__name__}, not a record"
            )
        if reader is not None:
            # Another writer schema: Avro's resolution lets through what our types do not hold (a
            # writer's string becomes bytes where a decimal belongs), so check what came out.
            violation = find_violation(self._schema, datum)
            if violation is not None:
                path, why = violation
                raise InvalidMessage(
                    "schema_violation",
                    f"{self.record}: writer schema {schema_id}: {why}",
                    field_path=path,
                    details={"topic": topic},
                )
        return datum

    def _lookup_header(self, topic: str) -> bytes:
        subject = f"{topic}-value"
        try:
            registered = self._client.lookup_schema(subject, Schema(self._schema_str, "AVRO"))
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404 or exc.error_code in _NOT_FOUND_CODES:
                raise SchemaNotRegisteredError(
                    f"{self.record} is not registered under subject {subject} "
                    f"({exc.error_message}); run `psinfor schemas register`"
                ) from exc
            raise _registry_failure(exc) from exc
        except REGISTRY_UNREACHABLE as exc:
            raise RetryableError(f"schema registry unreachable: {exc}") from exc
        schema_id = registered.schema_id
        if schema_id is None:
            raise RuntimeError(f"the registry returned no schema id for {subject}")
        header = struct.pack(">bI", _MAGIC, schema_id)
        self._headers[topic] = header
        return header

    def _writer_schema(self, schema_id: int) -> tuple[Any, Any, Any]:
        try:
            registered = self._client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404 or exc.error_code in _NOT_FOUND_CODES:
                raise InvalidMessage(
                    "undecodable",
                    f"{self.record}: writer schema {schema_id} unknown to the registry ({exc.error_message})",
                ) from exc
            raise _registry_failure(exc) from exc
        except REGISTRY_UNREACHABLE as exc:
            raise RetryableError(f"schema registry unreachable: {exc}") from exc
        if registered.schema_type not in (None, "AVRO") or registered.schema_str is None:
            raise InvalidMessage("undecodable", f"{self.record}: schema {schema_id} is not an Avro schema")
        if registered.references:
            # psinfor registers self-contained schemas only (schemas/loader.py inlines every named type).
            raise InvalidMessage(
                "undecodable", f"{self.record}: writer schema {schema_id} uses registry references"
            )
        writer_json = json.loads(registered.schema_str)
        writer = parse_schema(writer_json)
        # Resolution against the reader schema costs a schema comparison per record; skip it when the
        # writer schema is ours, which is every record the pipeline itself wrote with this code.
        reader = None if writer == self._parsed else self._parsed
        self._writers[schema_id] = (writer, reader, writer_json)
        return writer, reader, writer_json


def _registry_failure(exc: SchemaRegistryError) -> Exception:
    if exc.http_status_code >= 500 or exc.http_status_code in (408, 429) or exc.http_status_code < 0:
        return RetryableError(f"schema registry error: {exc.error_message}", status=exc.http_status_code)
    # Any other 4xx from the registry means our configuration (URL, credentials) is wrong: crash loudly.
    return RuntimeError(f"schema registry refused the request: {exc.http_status_code} {exc.error_message}")


_PROMOTIONS = {
    ("int", "long"),
    ("int", "float"),
    ("int", "double"),
    ("long", "float"),
    ("long", "double"),
    ("float", "double"),
    ("string", "bytes"),
    ("bytes", "string"),
}
"""Writer → reader type pairs Avro schema resolution accepts (the specification's promotions)."""


def first_unresolvable_field(writer: Any, reader: Any, path: str = "") -> tuple[str, str] | None:
    """The first field of the ``reader`` record whose ``writer`` type cannot resolve to it, as
    (field path, explanation); None when none is found. Names the field in a dead-letter record when a
    foreign writer schema does not resolve to ours; fastavro's error does not say which field.

    Compares record fields by name and primitive types (with the promotions); unions and named
    references are not descended into.
    """
    if not isinstance(writer, Mapping) or not isinstance(reader, Mapping):
        return None
    if writer.get("type") != "record" or reader.get("type") != "record":
        return None
    written = {field["name"]: field["type"] for field in writer.get("fields", [])}
    for field in reader.get("fields", []):
        child = f"{path}.{field['name']}" if path else field["name"]
        if field["name"] not in written:
            if "default" in field:
                continue
            return _at(child, "the writer schema has no such field and ours gives no default")
        found = _type_mismatch(written[field["name"]], field["type"], child)
        if found:
            return found
    return None


def _type_mismatch(writer: Any, reader: Any, path: str) -> tuple[str, str] | None:
    if (
        isinstance(writer, Mapping)
        and isinstance(reader, Mapping)
        and writer.get("type") == "record"
        and reader.get("type") == "record"
    ):
        return first_unresolvable_field(writer, reader, path)
    wanted, given = _type_name(reader), _type_name(writer)
    if wanted is None or given is None or wanted == given:
        return None
    if (given.split("(")[0], wanted.split("(")[0]) in _PROMOTIONS:
        return None
    return _at(path, f"the writer has {given} where {_described(reader)} belongs")


def _type_name(schema: Any) -> str | None:
    """A primitive's type name (logical types as the underlying type), else None."""
    if isinstance(schema, str) and schema in _PRIMITIVES:
        return schema
    if isinstance(schema, Mapping) and isinstance(schema.get("type"), str) and schema["type"] in _PRIMITIVES:
        return str(schema["type"])
    return None


def _described(schema: Any) -> str:
    if isinstance(schema, Mapping) and schema.get("logicalType") == "decimal":
        return f"decimal({schema['precision']},{schema.get('scale', 0)})"
    name = _type_name(schema)
    return name if name is not None else json.dumps(schema)[:80]


_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


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
