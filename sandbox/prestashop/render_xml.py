"""The XML renderer (the webservice's default output), shaped like ``WebserviceOutputXML``.

Values in CDATA, ``xlink:href`` on foreign keys (not when 0 or empty), ``notFilterable="true"`` on
getter fields, one ``<language>`` node per requested language on i18n fields, associations with
``nodeType`` / ``api`` / ``virtualEntity`` attributes (self-closing when empty), lists of
``<order id=".." xlink:href=".."/>`` at the minimum display, and ``<errors>`` documents.
"""

from __future__ import annotations

from collections.abc import Iterable
from xml.sax.saxutils import quoteattr

from sandbox.prestashop.config import Version
from sandbox.prestashop.errors import WsErrorItem
from sandbox.prestashop.query import Display
from sandbox.prestashop.resources import Association, Field, Resource
from sandbox.prestashop.store import AssocRow, Entity, Store

HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n<prestashop xmlns:xlink="http://www.w3.org/1999/xlink">\n'
TAIL = "</prestashop>\n"


def cdata(value: object) -> str:
    """Wrap text in CDATA, splitting any ``]]>`` it contains."""
    text = "" if value is None else str(value)
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def _href(base: str, resource: str, value: str) -> str:
    return f" xlink:href={quoteattr(f'{base}{resource}/{value}')}"


def _field(
    out: list[str], store: Store, entity: Entity, fdef: Field, languages: list[int], base: str
) -> None:
    attrs = ' notFilterable="true"' if fdef.getter else ""
    if fdef.name == "id":
        out.append(f"\t<id>{cdata(entity.id)}</id>\n")
        return
    raw = entity.values.get(fdef.name)
    if fdef.i18n:
        out.append(f"\t<{fdef.name}{attrs}>")
        texts = (
            raw
            if isinstance(raw, dict)
            else {languages[0] if languages else 1: "" if raw is None else str(raw)}
        )
        for lang in languages:
            out.append(
                f'<language id="{lang}"{_href(base, "languages", str(lang))}>'
                f"{cdata(texts.get(lang, ''))}</language>"
            )
        out.append(f"</{fdef.name}>\n")
        return
    text = "" if raw is None or isinstance(raw, dict) else str(raw)
    if fdef.fk is not None and text not in ("", "0"):
        attrs += _href(base, fdef.fk, text)
    out.append(f"\t<{fdef.name}{attrs}>{cdata(text)}</{fdef.name}>\n")


def _association(
    out: list[str], assoc: Association, rows: list[AssocRow], wanted: list[str] | None, base: str
) -> None:
    kind = ' virtualEntity="true"' if assoc.api is None else f' api="{assoc.api}"'
    head = f'<{assoc.name} nodeType="{assoc.node_type}"{kind}'
    if not rows:
        out.append(head + "/>\n")
        return
    out.append(head + ">\n")
    names = [n for n in assoc.fields if wanted is None or n in wanted]
    for row in rows:
        href = _href(base, assoc.api, row.get("id", "")) if assoc.api is not None else ""
        out.append(f"\t<{assoc.node_type}{href}>\n")
        for name in names:
            value = row.get(name, "")
            fk = assoc.field_fks.get(name)
            link = _href(base, fk, value) if fk is not None and value not in ("", "0") else ""
            out.append(f"\t<{name}{link}>{cdata(value)}</{name}>\n")
        out.append(f"\t</{assoc.node_type}>\n")
    out.append(f"</{assoc.name}>\n")


def render_entity(
    out: list[str],
    store: Store,
    resource: Resource,
    entity: Entity,
    display: Display,
    languages: list[int],
    base: str,
) -> None:
    """Append one ``<order>..</order>`` element for the full or field-list display."""
    out.append(f"<{resource.node}>\n")
    for fdef in resource.fields_for(store.version):
        if display.mode == "full" or fdef.name in display.fields:
            _field(out, store, entity, fdef, languages, base)
    if display.mode == "full":
        assocs: list[tuple[Association, list[str] | None]] = [(a, None) for a in resource.associations]
    else:
        assocs = [(a, display.assocs[a.name]) for a in resource.associations if a.name in display.assocs]
    if assocs:
        out.append("<associations>\n")
        for assoc, wanted in assocs:
            _association(out, assoc, store.association_rows(resource.name, entity, assoc.name), wanted, base)
        out.append("</associations>\n")
    out.append(f"</{resource.node}>\n")


def render_list(
    store: Store,
    resource: Resource,
    entities: Iterable[Entity],
    display: Display,
    languages: list[int],
    base: str,
) -> str:
    """A list answer: ``<orders>`` with minimum items or full/field-list items (empty: no children)."""
    out = [HEAD, f"<{resource.name}>\n"]
    for entity in entities:
        if display.mode == "minimum":
            out.append(f'\t<{resource.node} id="{entity.id}"{_href(base, resource.name, str(entity.id))}/>\n')
        else:
            render_entity(out, store, resource, entity, display, languages, base)
    out.append(f"</{resource.name}>\n")
    out.append(TAIL)
    return "".join(out)


def render_single(
    store: Store, resource: Resource, entity: Entity, display: Display, languages: list[int], base: str
) -> str:
    """A single-id answer: ``<prestashop><order>..</order></prestashop>``."""
    out = [HEAD]
    render_entity(out, store, resource, entity, display, languages, base)
    out.append(TAIL)
    return "".join(out)


def render_errors(items: Iterable[WsErrorItem]) -> str:
    """An ``<errors>`` document."""
    out = [HEAD, "<errors>\n"]
    for item in items:
        out.append(
            f"<error>\n<code>{cdata(item.code)}</code>\n<message>{cdata(item.message)}</message>\n</error>\n"
        )
    out.append("</errors>\n")
    out.append(TAIL)
    return "".join(out)


def render_root(
    store: Store, grants: dict[str, frozenset[str]], descriptions: dict[str, str], base: str, version: Version
) -> str:
    """``GET /api/``: the resources this key may use with per-method booleans."""
    methods = (
        ("get", "put", "post", "patch", "delete", "head")
        if version >= (8, 0)
        else ("get", "put", "post", "delete", "head")
    )
    out = [HEAD, f"<api shopName={quoteattr(store.config.shop_name)}>\n"]
    for name in sorted(grants):
        allowed = grants[name]
        flags = "".join(f' {m}="{"true" if m.upper() in allowed else "false"}"' for m in methods)
        link = f" xlink:href={quoteattr(base + name)}"
        out.append(f"<{name}{link}{flags}>\n")
        out.append(f"<description{link}{flags}>{descriptions.get(name, name)}</description>\n")
        for kind in ("blank", "synopsis"):
            out.append(f'<schema xlink:href={quoteattr(f"{base}{name}?schema={kind}")} type="{kind}"/>\n')
        out.append(f"</{name}>\n")
    out.append("</api>\n")
    out.append(TAIL)
    return "".join(out)


def render_schema(store: Store, resource: Resource, kind: str) -> str:
    """``schema=blank`` (empty writable template) or ``schema=synopsis`` (field attributes)."""
    out = [HEAD, f"<{resource.node}>\n"]
    synopsis = kind == "synopsis"
    langs = store.language_ids
    for fdef in resource.fields_for(store.version):
        read_only = fdef.is_read_only(store.version)
        if fdef.name == "id":
            if not synopsis:
                out.append("\t<id></id>\n")
            continue
        if read_only and not synopsis:
            continue
        attrs = ""
        if synopsis:
            if fdef.required:
                attrs += ' required="true"'
            if fdef.size is not None:
                attrs += f' maxSize="{fdef.size}"'
            if not fdef.i18n:
                attrs += f' format="{fdef.validate_format}"'
            if read_only:
                attrs += ' readOnly="true" read_only="true"'
        if fdef.i18n:
            fmt = f' format="{fdef.validate_format}"' if synopsis else ""
            inner = "".join(f'<language id="{lang}"{fmt}></language>' for lang in langs)
            out.append(f"\t<{fdef.name}{attrs}>{inner}</{fdef.name}>\n")
        else:
            out.append(f"\t<{fdef.name}{attrs}></{fdef.name}>\n")
    if resource.associations:
        out.append("<associations>\n")
        for assoc in resource.associations:
            kind_attr = ' virtualEntity="true"' if assoc.api is None else f' api="{assoc.api}"'
            fields = "".join(f"<{n}></{n}>" for n in assoc.fields)
            out.append(
                f'<{assoc.name} nodeType="{assoc.node_type}"{kind_attr}>'
                f"<{assoc.node_type}>{fields}</{assoc.node_type}></{assoc.name}>\n"
            )
        out.append("</associations>\n")
    out.append(f"</{resource.node}>\n")
    out.append(TAIL)
    return "".join(out)
