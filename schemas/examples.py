"""Example records, stored as plain JSON and turned into Avro datums by the schema.

Layout: ``schemas/examples/<Record>/<name>.json``, one example per file, at least two per top-level
record. JSON convention (schema-driven, so the files stay readable and exact):

- ``decimal`` logical types are JSON **strings** (``"19.90"``), never numbers, so no value passes
  through a binary float; they may have at most the schema's scale in fractional digits and are
  rescaled to exactly that scale;
- ``timestamp-millis`` values are ISO-8601 strings **with** a UTC offset (``"2024-05-02T09:15:00.120Z"``),
  at millisecond precision at most; ``date`` values are ``"YYYY-MM-DD"``; ``uuid`` values are the
  canonical text form;
- unions are written as the bare value or ``null`` (not Avro-JSON's ``{"type": value}`` wrapping);
- a field with a schema default may be left out; the converter fills in the default.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.loader import AvroSchemaJson, compose

EXAMPLES_DIR = Path(__file__).with_name("examples")


class ExampleError(ValueError):
    """A JSON example does not follow the convention or does not fit its schema; names the field path."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path or '<record>'}: {message}")
        self.path = path


@dataclass(frozen=True)
class Example:
    """One example file: the record type it belongs to, its file and its JSON content."""

    record: str
    name: str
    path: Path
    json_value: Mapping[str, Any]

    def datum(self) -> dict[str, Any]:
        """The example as an Avro datum of its record (see the module docstring for the convention)."""
        result: dict[str, Any] = to_datum(compose(self.record), self.json_value)
        return result


def load_examples(record: str | None = None) -> list[Example]:
    """Every example (or only those of ``record``), sorted by record then name."""
    examples: list[Example] = []
    for path in sorted(EXAMPLES_DIR.glob("*/*.json")):
        if record is not None and path.parent.name != record:
            continue
        value = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(value, dict):
            raise ExampleError("", f"{path.name}: an example must be a JSON object")
        examples.append(Example(record=path.parent.name, name=path.stem, path=path, json_value=value))
    return examples


def to_datum(schema: AvroSchemaJson, value: Any) -> Any:
    """Convert ``value`` (JSON following the convention) to the Avro datum of composed ``schema``.

    Raises ExampleError naming the field path when the value does not fit.
    """
    return _Converter().convert(schema, value, "", schema.get("namespace", ""))


class _Converter:
    def __init__(self) -> None:
        self.named: dict[str, Any] = {}

    def convert(self, schema: Any, value: Any, path: str, namespace: str) -> Any:
        if isinstance(schema, str):
            for candidate in (schema, f"{namespace}.{schema}"):
                if candidate in self.named:
                    return self.convert(self.named[candidate], value, path, namespace)
            return _primitive(schema, {}, value, path)
        if isinstance(schema, list):
            return self._union(schema, value, path, namespace)
        kind = schema["type"]
        if kind in ("record", "enum", "fixed"):
            namespace = schema.get("namespace", namespace)
            name = schema["name"]
            self.named[name if "." in name else f"{namespace}.{name}"] = schema
        if kind == "record":
            return self._record(schema, value, path, namespace)
        if kind == "enum":
            if value not in schema["symbols"]:
                raise ExampleError(path, f"{value!r} is not a {schema['name']} symbol")
            return value
        if kind == "array":
            if not isinstance(value, list):
                raise ExampleError(path, "expected a JSON array")
            return [
                self.convert(schema["items"], item, f"{path}[{i}]", namespace) for i, item in enumerate(value)
            ]
        if kind == "map":
            if not isinstance(value, dict):
                raise ExampleError(path, "expected a JSON object (map)")
            return {k: self.convert(schema["values"], v, f"{path}[{k}]", namespace) for k, v in value.items()}
        if isinstance(kind, (list, dict)):
            return self.convert(kind, value, path, namespace)
        return _primitive(kind, schema, value, path)

    def _record(self, schema: Any, value: Any, path: str, namespace: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise ExampleError(path, f"expected a JSON object for {schema['name']}")
        names = [field["name"] for field in schema["fields"]]
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise ExampleError(path, f"fields not in {schema['name']}: {', '.join(unknown)}")
        result: dict[str, Any] = {}
        for field in schema["fields"]:
            child = f"{path}.{field['name']}" if path else field["name"]
            if field["name"] in value:
                result[field["name"]] = self.convert(field["type"], value[field["name"]], child, namespace)
            elif "default" in field:
                # An Avro default belongs to the first branch of a union.
                branch = field["type"][0] if isinstance(field["type"], list) else field["type"]
                result[field["name"]] = self.convert(branch, field["default"], child, namespace)
            else:
                raise ExampleError(child, "required field is missing")
        return result

    def _union(self, branches: list[Any], value: Any, path: str, namespace: str) -> Any:
        if value is None:
            if "null" in branches:
                return None
            raise ExampleError(path, "null is not allowed here")
        problems: list[str] = []
        for branch in branches:
            if branch == "null":
                continue
            try:
                return self.convert(branch, value, path, namespace)
            except ExampleError as exc:
                problems.append(str(exc))
        raise ExampleError(path, "fits no union branch: " + "; ".join(problems))


def _primitive(kind: str, schema: Mapping[str, Any], value: Any, path: str) -> Any:
    logical = schema.get("logicalType")
    if logical == "decimal":
        return _decimal(schema, value, path)
    if logical == "timestamp-millis":
        return _timestamp(value, path)
    if logical == "date":
        if not isinstance(value, str):
            raise ExampleError(path, "a date must be a 'YYYY-MM-DD' string")
        try:
            return dt.date.fromisoformat(value)
        except ValueError as exc:
            raise ExampleError(path, f"not a date: {value!r}") from exc
    if logical == "uuid":
        try:
            return uuid.UUID(str(value))
        except ValueError as exc:
            raise ExampleError(path, f"not a UUID: {value!r}") from exc
    checks = {
        "null": value is None,
        "boolean": isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "long": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "double": isinstance(value, (int, float)) and not isinstance(value, bool),
        "string": isinstance(value, str),
    }
    if kind not in checks:
        raise ExampleError(path, f"type {kind!r} has no JSON convention")
    if not checks[kind]:
        raise ExampleError(path, f"expected {kind}, got {type(value).__name__} {value!r}")
    return float(value) if kind in ("float", "double") else value


def _decimal(schema: Mapping[str, Any], value: Any, path: str) -> decimal.Decimal:
    if not isinstance(value, str):
        raise ExampleError(path, f"a decimal must be a JSON string, got {type(value).__name__} {value!r}")
    try:
        number = decimal.Decimal(value)
    except decimal.InvalidOperation as exc:
        raise ExampleError(path, f"not a decimal: {value!r}") from exc
    scale, precision = int(schema.get("scale", 0)), int(schema["precision"])
    exponent = number.as_tuple().exponent
    if not number.is_finite() or not isinstance(exponent, int) or -exponent > scale:
        raise ExampleError(path, f"{value!r} has more than {scale} decimal places")
    scaled = number.quantize(decimal.Decimal(1).scaleb(-scale))
    if len(scaled.as_tuple().digits) > precision:
        raise ExampleError(path, f"{value!r} exceeds precision {precision}")
    return scaled


def _timestamp(value: Any, path: str) -> dt.datetime:
    if not isinstance(value, str):
        raise ExampleError(path, "a timestamp must be an ISO-8601 string")
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise ExampleError(path, f"not an ISO-8601 timestamp: {value!r}") from exc
    if moment.tzinfo is None:
        raise ExampleError(path, f"{value!r} has no UTC offset")
    if moment.microsecond % 1000:
        raise ExampleError(path, f"{value!r} is more precise than milliseconds")
    return moment.astimezone(dt.UTC)
