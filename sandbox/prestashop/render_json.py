"""The JSON renderer (opt-in with the exact value ``JSON``), with ``WebserviceOutputJSON``'s quirks.

- single id without any ``display`` parameter → ``{"order": {...}}``; as soon as the query string
  has ``display`` (even on a single id) → ``{"orders": [{...}]}``;
- an empty list is a bare ``[]``;
- 8.x / 9.x single-entity output drops every falsy field (``""``, ``"0"``, ``0``, ``null``) — PHP's
  ``array_filter``; ``"0.000000"`` is truthy and stays;
- ``id`` is a number, other scalars are what the database returns (strings); association ids are
  strings; i18n values are a plain string with one language, ``[{"id","value"}]`` with several;
- empty associations are omitted; errors are ``{"errors":[{"code":..,"message":..}]}``.
- encoded like PHP's ``json_encode``: ``\\/`` and ``\\uXXXX`` escapes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from sandbox.prestashop.errors import WsErrorItem
from sandbox.prestashop.query import Display
from sandbox.prestashop.resources import Association, Resource
from sandbox.prestashop.store import Entity, Store

JsonValue = str | int | float | bool | None | list["JsonValue"] | dict[str, "JsonValue"]


def php_json(content: JsonValue) -> str:
    """``json_encode`` output: ASCII with ``\\u`` escapes and escaped slashes."""
    return json.dumps(content, ensure_ascii=True, separators=(",", ":")).replace("/", "\\/")


def _php_falsy(value: JsonValue) -> bool:
    return value in ("", "0", 0, None, False) or value == [] or value == {}


def entity_dict(
    store: Store, resource: Resource, entity: Entity, display: Display, languages: list[int]
) -> dict[str, JsonValue]:
    """One entity as the JSON renderer builds it (before any falsy-field filtering)."""
    out: dict[str, JsonValue] = {}
    if display.mode == "minimum":
        return {"id": entity.id}
    for fdef in resource.fields_for(store.version):
        if display.mode != "full" and fdef.name not in display.fields:
            continue
        if fdef.name == "id":
            out["id"] = entity.id
            continue
        raw = entity.values.get(fdef.name)
        if isinstance(raw, dict):
            if len(languages) == 1:
                out[fdef.name] = raw.get(languages[0], "")
            else:
                out[fdef.name] = [{"id": str(lang), "value": raw.get(lang, "")} for lang in languages]
        elif fdef.i18n and len(languages) > 1:
            out[fdef.name] = [
                {"id": str(lang), "value": "" if raw is None else str(raw)} for lang in languages
            ]
        else:
            out[fdef.name] = raw
    if display.mode == "full":
        chosen: list[tuple[Association, list[str] | None]] = [(a, None) for a in resource.associations]
    else:
        chosen = [(a, display.assocs[a.name]) for a in resource.associations if a.name in display.assocs]
    assocs: dict[str, JsonValue] = {}
    for assoc, wanted in chosen:
        rows = store.association_rows(resource.name, entity, assoc.name)
        if rows:
            names = [n for n in assoc.fields if wanted is None or n in wanted]
            assocs[assoc.name] = [{n: row.get(n, "") for n in names} for row in rows]
    if assocs:
        out["associations"] = assocs
    return out


def render_list(
    store: Store, resource: Resource, entities: Iterable[Entity], display: Display, languages: list[int]
) -> str:
    """A list (or any request with ``display``): ``{"orders":[...]}``, or ``[]`` when empty."""
    items: list[JsonValue] = [entity_dict(store, resource, e, display, languages) for e in entities]
    if not items:
        return "[]"
    return php_json({resource.name: items})


def render_single(
    store: Store, resource: Resource, entity: Entity, display: Display, languages: list[int]
) -> str:
    """A single id without ``display``: ``{"order":{...}}``; 8.x+ drops falsy fields."""
    content = entity_dict(store, resource, entity, display, languages)
    if store.version >= (8, 0):
        content = {k: v for k, v in content.items() if not _php_falsy(v)}
    return php_json({resource.node: content})


def render_errors(items: Iterable[WsErrorItem]) -> str:
    """``{"errors":[{"code":41,"message":"..."}]}``."""
    return php_json({"errors": [{"code": i.code, "message": i.message} for i in items]})


def render_schema(store: Store, resource: Resource, kind: str) -> str:
    """``schema=blank`` / ``synopsis`` in JSON: the field names with empty values / attribute maps."""
    fields: dict[str, JsonValue] = {}
    for fdef in resource.fields_for(store.version):
        read_only = fdef.is_read_only(store.version)
        if kind == "blank":
            if not read_only:
                fields[fdef.name] = ""
            continue
        if fdef.name == "id":
            continue
        attrs: dict[str, JsonValue] = {"format": fdef.validate_format}
        if fdef.required:
            attrs["required"] = True
        if fdef.size is not None:
            attrs["maxSize"] = str(fdef.size)
        if read_only:
            attrs["readOnly"] = True
        fields[fdef.name] = attrs
    return php_json({resource.node: fields})


def render_root(grants: dict[str, frozenset[str]], base: str) -> str:
    """``GET /api/?output_format=JSON`` on 1.7.8 (8.x/9.x crash instead, see ``app``)."""
    return php_json(
        {
            "api": {
                name: {"xlink:href": base + name, **{m.lower(): "true" for m in grants[name]}}
                for name in sorted(grants)
            }
        }
    )
