"""Load the canonical Avro schemas from ``schemas/avro/`` and compose self-contained top-level schemas.

Each ``.avsc`` file holds exactly one named type (record or enum) and may refer to other named types
by name. :func:`compose` returns a top-level record with every named type it needs inlined at its
first use, in document order, and referenced by full name afterwards. The registry therefore receives
one self-contained schema per subject and no registry references are needed.

Files are read lazily on first use (never at import time) and cached for the life of the process.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any, TypeAlias

from fastavro import parse_schema

AVRO_DIR = Path(__file__).with_name("avro")
NAMESPACE = "io.psinfor.canonical"

AvroSchemaJson: TypeAlias = dict[str, Any]
"""The JSON form of an Avro schema (as ``json.loads`` returns it)."""

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_NAMED = frozenset({"record", "error", "enum", "fixed"})


class SchemaDefinitionError(ValueError):
    """A ``.avsc`` file is malformed, defines a name twice, or refers to a type that does not exist."""


@cache
def named_types() -> dict[str, AvroSchemaJson]:
    """Every named type defined under ``schemas/avro/``, keyed by full name (``io.psinfor.canonical.Order``).

    Raises SchemaDefinitionError when a file does not hold exactly one named type, its file name
    differs from the type's name, or two files define the same name.
    """
    types: dict[str, AvroSchemaJson] = {}
    for path in sorted(AVRO_DIR.glob("*.avsc")):
        try:
            definition = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise SchemaDefinitionError(f"{path.name}: not valid JSON ({exc})") from exc
        if not isinstance(definition, dict) or definition.get("type") not in _NAMED:
            raise SchemaDefinitionError(f"{path.name}: must hold exactly one named type (record or enum)")
        if definition.get("name") != path.stem:
            raise SchemaDefinitionError(
                f"{path.name}: defines {definition.get('name')!r}, expected {path.stem!r}"
            )
        full = _full_name(definition["name"], definition.get("namespace", NAMESPACE))
        if full in types:
            raise SchemaDefinitionError(f"{path.name}: {full} is defined twice")
        types[full] = definition
    return types


def record_names() -> list[str]:
    """Short names of every record defined under ``schemas/avro/`` (shared pieces included), sorted."""
    return sorted(d["name"] for d in named_types().values() if d["type"] == "record")


@cache
def _composed(name: str) -> str:
    full = _full_name(name, NAMESPACE)
    types = named_types()
    if full not in types or types[full]["type"] != "record":
        raise SchemaDefinitionError(f"no record named {name!r} under {AVRO_DIR.name}/")
    defined: set[str] = set()
    composed = _inline(types[full], NAMESPACE, types, defined)
    return json.dumps(composed, ensure_ascii=False)


def compose(name: str) -> AvroSchemaJson:
    """The record ``name`` (short or full name) with every named type it uses inlined once.

    Returns a fresh copy the caller may modify. Raises SchemaDefinitionError for an unknown record or a
    reference to an undefined type.
    """
    result: AvroSchemaJson = json.loads(_composed(name))
    return result


def schema_string(name: str) -> str:
    """The composed schema of record ``name`` as the JSON text sent to the registry."""
    return _composed(name)


@cache
def parsed_schema(name: str) -> Any:
    """The composed schema of record ``name`` parsed by fastavro (for local validation and encoding)."""
    return parse_schema(compose(name))


def _full_name(name: str, namespace: str) -> str:
    return name if "." in name else f"{namespace}.{name}"


def _inline(node: Any, namespace: str, types: dict[str, AvroSchemaJson], defined: set[str]) -> Any:
    # Walk in document order, the order in which Avro parsers meet the names: the first occurrence of a
    # named type must carry its definition, every later one must be a reference.
    if isinstance(node, str):
        if node in _PRIMITIVES:
            return node
        full = _full_name(node, namespace)
        if full in defined:
            return full
        if full not in types:
            raise SchemaDefinitionError(f"reference to undefined type {node!r} (resolved as {full})")
        return _inline(types[full], namespace, types, defined)
    if isinstance(node, list):
        return [_inline(branch, namespace, types, defined) for branch in node]
    if not isinstance(node, dict):
        raise SchemaDefinitionError(f"unexpected schema node {node!r}")
    kind = node.get("type")
    result = dict(node)
    if kind in _NAMED:
        own_namespace = node.get("namespace", namespace)
        full = _full_name(node["name"], own_namespace)
        if full in defined:
            raise SchemaDefinitionError(f"{full} is defined twice inside one composed schema")
        defined.add(full)
        result["namespace"] = own_namespace
        if kind in ("record", "error"):
            result["fields"] = [
                {**field, "type": _inline(field["type"], own_namespace, types, defined)}
                for field in node["fields"]
            ]
        return result
    if kind == "array":
        result["items"] = _inline(node["items"], namespace, types, defined)
    elif kind == "map":
        result["values"] = _inline(node["values"], namespace, types, defined)
    elif isinstance(kind, (list, dict)) or (isinstance(kind, str) and kind not in _PRIMITIVES):
        # {"type": "Money"} or {"type": [...]}: a wrapped reference or union.
        return _inline(kind, namespace, types, defined)
    return result
