"""Write bodies: XML only, parsed and applied like ``WebserviceRequest::saveEntityFromXml``.

- the body is XML (a ``xml=`` prefix is stripped); anything else, JSON included, is 500 code 127;
- every child of ``<prestashop>`` is one entity, processed in sequence (no transaction);
- POST: a non-empty ``<id>`` is 400 code 91; PUT/PATCH: the id comes from the body (URL ignored),
  missing → 400 code 90, unknown → 404 code 92, twice in one body → 400 code 89;
- a read-only field present → 400 code 93; a required field absent on POST/PUT → 400 code 41; a
  required field empty or a malformed value → 400 code 85; unknown elements are ignored; an unknown
  association → 400 code 86; associations without a setter are ignored;
- PUT is a full replace: every optional field absent from the body goes back to its default (NULL),
  ``date_add`` absent is reset to now, ``date_upd`` is always now; PATCH applies only what is there.
Resource specifics (customers' password hashing and unique email, the product stock row, the
order_histories side effects, stock recomputation, tracking) go through ``shop.Shop``.
"""

from __future__ import annotations

import re

# The body is the caller's own request to a local dev server; expat bounds entity expansion.
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from sandbox.prestashop.errors import WsError, WsErrorItem
from sandbox.prestashop.resources import Field, Resource
from sandbox.prestashop.shop import Shop
from sandbox.prestashop.store import AssocRow, Entity, Store, Value

EVENT_TYPES = {
    "customers": ("customer", "Customer"),
    "addresses": ("address", "Address"),
    "products": ("product", "Product"),
}
_INT = re.compile(r"^-?\d+$")
_UINT = re.compile(r"^\d+$")
_FLOAT = re.compile(r"^-?\d+(\.\d+)?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}( \d{2}:\d{2}(:\d{2})?)?$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(slots=True)
class EntityBody:
    """One entity element of a write body: its id text, present fields and associations."""

    id_text: str | None
    fields: dict[str, Value] = field(default_factory=dict)
    assocs: dict[str, list[AssocRow]] = field(default_factory=dict)


def parse_xml_body(raw: bytes) -> list[ET.Element]:
    """The entity elements of a write body; 500 code 127 when it is not XML."""
    text = raw.decode("utf-8", errors="replace")
    if text.startswith("xml="):
        text = text[4:]
    try:
        root = ET.fromstring(text)  # noqa: S314 - see the import's comment
    except ET.ParseError as exc:
        raise WsError(
            500,
            127,
            f"XML error : String could not be parsed as XML\nXML length : {len(text)}\nOriginal XML : {text}",
        ) from exc
    return list(root)


def _entity_body(element: ET.Element, resource: Resource, store: Store) -> EntityBody:
    body = EntityBody(None)
    for child in element:
        tag = child.tag
        if tag == "id":
            body.id_text = (child.text or "").strip()
        elif tag == "associations":
            for assoc_el in child:
                assoc = resource.association(assoc_el.tag)
                if assoc is None:
                    raise WsError(400, 86, f'The association "{assoc_el.tag}" does not exists')
                if assoc.writable:
                    body.assocs[assoc.name] = [{sub.tag: sub.text or "" for sub in row} for row in assoc_el]
        else:
            fdef = resource.field(tag)
            if fdef is None or not fdef.exists_in(store.version):
                continue  # unknown elements are silently ignored
            languages = [c for c in child if c.tag == "language"]
            if fdef.i18n:
                if languages:
                    body.fields[tag] = {int(c.get("id", "0") or 0): c.text or "" for c in languages}
                else:
                    body.fields[tag] = {store.default_language: child.text or ""}
            else:
                body.fields[tag] = child.text or ""
    return body


def _invalid(resource: Resource, fdef: Field, text: str) -> bool:
    kind = fdef.kind
    if kind == "uint":
        return _UINT.match(text) is None
    if kind == "int":
        return _INT.match(text) is None
    if kind == "float":
        return _FLOAT.match(text) is None
    if kind == "bool":
        return text not in ("0", "1", "true", "false")
    if kind in ("date", "day"):
        return _DATE.match(text) is None
    if kind == "email":
        return _EMAIL.match(text) is None
    return fdef.size is not None and len(text) > fdef.size


def _normalise(fdef: Field, text: str) -> str:
    # What the database hands back after the write: DECIMAL(20,6), integers, 0/1 booleans.
    if fdef.kind == "float":
        try:
            return f"{Decimal(text).quantize(Decimal('0.000001')):f}"
        except InvalidOperation:
            return text
    if fdef.kind in ("int", "uint"):
        return str(int(text))
    if fdef.kind == "bool":
        return "1" if text in ("1", "true") else "0"
    return text


def _check(resource: Resource, store: Store, body: EntityBody, method: str) -> None:
    errors: list[WsErrorItem] = []
    extra = store.config.extra_required.get(resource.name, ())
    for fdef in resource.fields_for(store.version):
        if fdef.name == "id":
            continue
        present = fdef.name in body.fields
        if present and fdef.is_read_only(store.version):
            errors.append(
                WsErrorItem(
                    93, f'parameter "{fdef.name}" not writable. Please remove this attribute of this XML'
                )
            )
        elif not present and (fdef.required or fdef.name in extra) and method in ("POST", "PUT"):
            errors.append(WsErrorItem(41, f'parameter "{fdef.name}" required'))
    if errors:
        raise WsError.many(400, errors)
    for name, value in body.fields.items():
        found = resource.field(name)
        assert found is not None  # _entity_body keeps known fields only
        fdef = found
        texts = list(value.values()) if isinstance(value, dict) else [str(value)]
        if (fdef.required or name in extra) and all(t == "" for t in texts):
            errors.append(
                WsErrorItem(85, f'Validation error: "Property {resource.class_name}->{name} is empty."')
            )
            continue
        if any(t != "" and _invalid(resource, fdef, t) for t in texts):
            errors.append(
                WsErrorItem(85, f'Validation error: "Property {resource.class_name}->{name} is not valid"')
            )
    if errors:
        raise WsError.many(400, errors)


def _values_for(
    resource: Resource, store: Store, body: EntityBody, existing: Entity | None, method: str
) -> dict[str, Value]:
    now = store.now()
    values: dict[str, Value] = {}
    for fdef in resource.fields_for(store.version):
        name = fdef.name
        if name == "id":
            continue
        if name in body.fields:
            given = body.fields[name]
            if isinstance(given, dict):
                merged: dict[int, str] = {}
                if existing is not None and isinstance(existing.values.get(name), dict) and method == "PATCH":
                    merged.update(existing.values[name])  # type: ignore[arg-type]
                first = next(iter(given.values()), "")
                for lang in store.language_ids:
                    merged[lang] = given.get(lang, merged.get(lang, first if method != "PATCH" else ""))
                values[name] = merged
            else:
                values[name] = _normalise(fdef, str(given)) if given != "" else given
        elif method == "PATCH":
            continue
        elif method == "PUT" and fdef.getter:
            continue  # computed fields are not stored by a write
        elif fdef.i18n:
            values[name] = dict.fromkeys(store.language_ids, "")
        else:
            values[name] = fdef.default
    if resource.field("date_upd") is not None and "date_upd" not in body.fields:
        values["date_upd"] = now
    if resource.field("date_add") is not None and "date_add" not in body.fields and method in ("POST", "PUT"):
        values["date_add"] = now  # PUT without date_add destroys the creation date (issue #9819)
    return values


def apply_write(store: Store, shop: Shop, resource: Resource, method: str, raw: bytes) -> list[Entity]:
    """Apply a POST/PUT/PATCH body; returns the written entities (the response renders them)."""
    elements = parse_xml_body(raw)
    written: list[Entity] = []
    seen: set[int] = set()
    for element in elements:
        body = _entity_body(element, resource, store)
        existing: Entity | None = None
        if method == "POST":
            if body.id_text:
                raise WsError(400, 91, "id is forbidden when adding a new resource")
        else:
            if not body.id_text:
                raise WsError(400, 90, "id is required when modifying a resource")
            entity_id = int(body.id_text) if body.id_text.isdigit() else 0
            if entity_id in seen:
                raise WsError(400, 89, f"id({entity_id}) is duplicate in request")
            seen.add(entity_id)
            existing = store.get(resource.name, entity_id)
            if existing is None:
                raise WsError(404, 92, "Invalid ID")
        _check(resource, store, body, method)
        values = _values_for(resource, store, body, existing, method)
        written.append(_save(store, shop, resource, method, body, values, existing))
    return written


def _save(
    store: Store,
    shop: Shop,
    resource: Resource,
    method: str,
    body: EntityBody,
    values: dict[str, Value],
    existing: Entity | None,
) -> Entity:
    name = resource.name
    if name == "orders" and existing is None:
        raise WsError(500, 46, "Cart cannot be loaded or an order has already been placed using this cart")
    if name == "customers":
        _customer_rules(store, shop, values, existing)
    if name == "stock_availables" and existing is not None:
        return _save_stock(store, shop, existing, values)
    if name == "order_histories" and existing is None:
        return shop.change_order_state(
            int(str(values.get("id_order") or 0)),
            int(str(values.get("id_order_state") or 0)),
            employee_id=int(str(values.get("id_employee") or 0)),
        )
    if existing is None:
        entity = store.insert(name, values, assoc=body.assocs)
        _after_insert(store, shop, resource, entity)
        return entity
    new_state = values.pop("current_state", None) if name == "orders" else None
    tracking = values.pop("tracking_number", None) if name == "order_carriers" else None
    store.update(name, existing, values)
    existing.assoc.update(body.assocs)
    if name == "configurations":
        _configuration_side_effects(store, existing)
    if tracking is not None and tracking != existing.text("tracking_number"):
        shop.set_tracking(existing, str(tracking))
    elif tracking is not None:
        store.update(name, existing, {"tracking_number": tracking})
    if name == "orders":
        if new_state not in (None, "", "0", existing.text("current_state")):
            shop.change_order_state(existing.id, int(str(new_state)))  # setWsCurrentState ignores same state
        shop.emit(
            "order.updated",
            "orders",
            existing.id,
            {"id_order": existing.id},
            hook="actionObjectOrderUpdateAfter",
            ps_entity="Order",
            ps_action="update",
        )
    _entity_event(shop, resource, existing, "updated")
    return existing


def _customer_rules(store: Store, shop: Shop, values: dict[str, Value], existing: Entity | None) -> None:
    email = values.get("email")
    is_guest = values.get("is_guest", existing.text("is_guest") if existing else "0") == "1"
    if isinstance(email, str) and not is_guest:
        for other in store.find("customers", "email", email):
            if (
                (existing is None or other.id != existing.id)
                and other.text("is_guest") != "1"
                and other.text("deleted") != "1"
            ):
                code = 140 if existing is None else 141
                raise WsError.many(
                    500,
                    [
                        WsErrorItem(code, "The email is already used, please choose another one"),
                        WsErrorItem(46, "Unable to save resource"),
                    ],
                )
    passwd = values.get("passwd")
    if isinstance(passwd, str) and passwd and (existing is None or passwd != existing.text("passwd")):
        values["passwd"] = shop.hash_password(passwd)  # setWsPasswd hashes a new or changed password
        values["last_passwd_gen"] = store.now()
    if existing is None:
        if not values.get("secure_key"):
            values["secure_key"] = shop.secure_key()
        if not values.get("last_passwd_gen") or values.get("last_passwd_gen") == "0000-00-00 00:00:00":
            values["last_passwd_gen"] = store.now()


def _save_stock(store: Store, shop: Shop, row: Entity, values: dict[str, Value]) -> Entity:
    if store.version < (8, 0) and row.text("depends_on_stock") == "1":
        raise WsError(500, 133, "You cannot update the available stock when it depends on stock.")
    quantity = values.pop("quantity", None)
    store.update("stock_availables", row, values)
    if quantity is not None and quantity != "":
        shop.set_stock_quantity(row, int(str(quantity)))
    return row


def _after_insert(store: Store, shop: Shop, resource: Resource, entity: Entity) -> None:
    if resource.name == "products":
        stock = store.insert(
            "stock_availables",
            {
                "id_product": str(entity.id),
                "id_product_attribute": "0",
                "id_shop": "1",
                "id_shop_group": "0",
                "quantity": "0",
                "depends_on_stock": "0",
                "out_of_stock": "2",
                "location": "",
            },
        )
        name = entity.values.get("name")
        rewrite = entity.values.get("link_rewrite")
        fixes: dict[str, Value] = {
            "quantity": stock.text("quantity"),
            "type": "simple",
            "manufacturer_name": "",
        }
        if isinstance(name, dict) and isinstance(rewrite, dict):
            fixes["link_rewrite"] = {
                k: v or re.sub(r"[^a-z0-9]+", "-", name.get(k, "").lower()).strip("-")
                for k, v in rewrite.items()
            }
        store.update("products", entity, fixes)
    elif resource.name == "combinations":
        store.insert(
            "stock_availables",
            {
                "id_product": entity.text("id_product"),
                "id_product_attribute": str(entity.id),
                "id_shop": "1",
                "id_shop_group": "0",
                "quantity": "0",
                "depends_on_stock": "0",
                "out_of_stock": "2",
                "location": "",
            },
        )
        shop.recompute_product_stock(entity.num("id_product"))
    _entity_event(shop, resource, entity, "created")


def _configuration_side_effects(store: Store, row: Entity) -> None:
    if row.text("name") == "PS_TIMEZONE" and row.text("value"):
        store.set_timezone(row.text("value"))
    if row.text("name") == "PS_WEBSERVICE":
        store.webservice_enabled = row.text("value") == "1"


def _entity_event(shop: Shop, resource: Resource, entity: Entity, what: str) -> None:
    kind = EVENT_TYPES.get(resource.name)
    if kind is None:
        return
    prefix, class_name = kind
    action = {"created": "add", "updated": "update", "deleted": "delete"}[what]
    data: dict[str, str | int | float | bool | None] = {f"id_{prefix}": entity.id}
    if prefix == "customer":
        data["email"] = entity.text("email")
    if prefix == "address":
        data["id_customer"] = entity.num("id_customer")
    if prefix == "product":
        data["reference"] = entity.text("reference")
    hook = f"actionObject{class_name}{action.capitalize()}After"
    shop.emit(
        f"{prefix}.{what}", resource.name, entity.id, data, hook=hook, ps_entity=class_name, ps_action=action
    )


def delete(store: Store, shop: Shop, resource: Resource, ids: list[int]) -> None:
    """DELETE one or several ids; unknown ids → 404 code 87 (nothing deleted)."""
    missing = [i for i in ids if store.get(resource.name, i) is None]
    if missing:
        raise WsError(404, 87, f"Id(s) not exists: {', '.join(map(str, missing))}")
    for entity_id in ids:
        entity = store.delete(resource.name, entity_id)
        if entity is None:
            continue
        if resource.name == "products":
            for row in store.find("stock_availables", "id_product", str(entity_id)):
                store.delete("stock_availables", row.id)
            for combo in store.find("combinations", "id_product", str(entity_id)):
                store.delete("combinations", combo.id)
        if resource.name == "combinations":
            stock = shop.stock_row(entity.num("id_product"), entity_id)
            if stock is not None:
                store.delete("stock_availables", stock.id)
            shop.recompute_product_stock(entity.num("id_product"))
        _entity_event(shop, resource, entity, "deleted")
