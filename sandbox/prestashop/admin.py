"""The ``/_sandbox`` admin API (JSON, no key): drive the shop like its customers and back office do.

Place orders (same side effects as a checkout), change order states, set tracking, change stock,
edit customers and products, inspect any table as plain JSON, reset; manage fault rules, webhook
targets and deliveries, webservice keys and shop settings. Every route is ``async`` so it runs on
the event loop that also serves the webservice: the store is never touched from two threads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from sandbox.prestashop.config import KeyPermissions, WebhookConfig, WebhookTarget
from sandbox.prestashop.errors import WsError
from sandbox.prestashop.faults import FaultRule
from sandbox.prestashop.resources import IMPLEMENTED
from sandbox.prestashop.shop import NewCustomer, OrderLine, OrderRequest
from sandbox.prestashop.store import Entity

if TYPE_CHECKING:
    from sandbox.prestashop.app import Sandbox


class LineIn(BaseModel):
    """One order line: a product and optionally one of its combinations."""

    product_id: int
    combination_id: int = 0
    quantity: int = Field(1, ge=1)


class CustomerIn(BaseModel):
    """A customer created at checkout."""

    email: str
    firstname: str = "Jane"
    lastname: str = "Doe"
    address1: str = "1 rue de la Paix"
    city: str = "Paris"
    postcode: str = "75001"
    country_iso: str = "FR"
    is_guest: bool = False


class PlaceOrderIn(BaseModel):
    """A checkout: ``customer_id`` (existing) or ``customer`` (new), lines, currency, payment module.

    ``state`` optionally sets the initial state (id or config key such as ``PS_OS_PAYMENT``).
    """

    customer_id: int | None = None
    customer: CustomerIn | None = None
    lines: list[LineIn]
    currency: str = "EUR"
    payment_module: str = "ps_checkpayment"
    carrier_id: int | None = None
    state: int | str | None = None


class StateIn(BaseModel):
    """A new order state: id or ``PS_OS_*`` configuration key."""

    state: int | str
    employee_id: int = 0


class TrackingIn(BaseModel):
    """A tracking number for an order's carrier row."""

    tracking_number: str


class StockIn(BaseModel):
    """A stock change for (product, combination): absolute ``quantity`` or relative ``delta``."""

    id_product: int
    id_product_attribute: int = 0
    quantity: int | None = None
    delta: int | None = None


class FieldsIn(BaseModel):
    """Field values to set (i18n fields: plain text sets every language)."""

    fields: dict[str, str | None]


class ResetIn(BaseModel):
    """Rebuild the shop, optionally from another seed."""

    seed: int | None = None


class FaultIn(BaseModel):
    """A fault rule; ``next`` = fire for the next N matching requests, else ``probability``."""

    kind: Literal["latency", "error", "rate_limit", "timeout", "drop"]
    resource: str | None = None
    method: str | None = None
    probability: float = Field(1.0, ge=0, le=1)
    next: int | None = Field(None, ge=1)
    status: int = Field(503, ge=500, le=599)
    retry_after: int = 1
    hang_seconds: float = 30.0
    latency_ms: int = 0


class TargetIn(BaseModel):
    """A webhook endpoint and its ``whsec_`` secrets."""

    url: str
    secrets: list[str] = []


class WebhooksIn(BaseModel):
    """Webhook configuration: targets, mode and retry delays (seconds)."""

    targets: list[TargetIn]
    mode: Literal["standard", "ps_webhooks"] = "standard"
    retry_delays: list[float] = [0.5, 2.0, 5.0, 15.0, 60.0]
    timeout_seconds: float = 5.0


class KeyIn(BaseModel):
    """A webservice key: ``resources`` maps resource → methods; absent = everything."""

    key: str
    active: bool = True
    resources: dict[str, list[str]] | None = None
    shops: list[int] = [1]


class SettingsIn(BaseModel):
    """Shop settings: webservice on/off (PS_WEBSERVICE), time zone (PS_TIMEZONE)."""

    webservice_enabled: bool | None = None
    timezone: str | None = None


def plain(entity: Entity, resource: str, sandbox: Sandbox) -> dict[str, Any]:
    """An entity as plain JSON: id, values (i18n keyed by language id) and associations."""
    out: dict[str, Any] = {"id": entity.id}
    for name, value in entity.values.items():
        out[name] = {str(k): v for k, v in value.items()} if isinstance(value, dict) else value
    assocs = {
        a.name: sandbox.store.association_rows(resource, entity, a.name)
        for a in IMPLEMENTED[resource].associations
    }
    out["associations"] = {k: v for k, v in assocs.items() if v}
    return out


def _http(err: WsError) -> HTTPException:
    return HTTPException(status_code=400 if err.status < 500 else 409, detail=[i.message for i in err.items])


def build_admin_router(sandbox: Sandbox) -> APIRouter:
    """The ``/_sandbox`` routes bound to one sandbox."""
    router = APIRouter(prefix="/_sandbox", tags=["sandbox admin"])

    def state_id(value: int | str) -> int:
        if isinstance(value, int) or value.isdigit():
            return int(value)
        try:
            return sandbox.shop.state_id(value)
        except KeyError as exc:
            raise HTTPException(400, f"unknown order state key {value}") from exc

    def entity_or_404(resource: str, entity_id: int) -> Entity:
        if resource not in IMPLEMENTED:
            raise HTTPException(404, f"unknown resource {resource}")
        entity = sandbox.store.get(resource, entity_id)
        if entity is None:
            raise HTTPException(404, f"{resource} {entity_id} not found")
        return entity

    @router.get("/info")
    async def info() -> dict[str, Any]:
        """Version, seed, table sizes, keys and whether the webservice is enabled."""
        store = sandbox.store
        return {
            "version": sandbox.config.version,
            "seed": sandbox.config.seed,
            "timezone": store.timezone.key,
            "webservice_enabled": store.webservice_enabled,
            "tables": {name: len(rows) for name, rows in store.tables.items()},
            "keys": list(sandbox.keys),
        }

    @router.post("/orders", status_code=201)
    async def place_order(body: PlaceOrderIn) -> dict[str, Any]:
        """Checkout: order, order_details, order_carrier, history, stock decrement, payment if paid."""
        new = NewCustomer(**body.customer.model_dump()) if body.customer is not None else None
        request = OrderRequest(
            tuple(OrderLine(line.product_id, line.combination_id, line.quantity) for line in body.lines),
            customer_id=body.customer_id,
            new_customer=new,
            currency=body.currency,
            payment_module=body.payment_module,
            carrier_id=body.carrier_id,
            state_id=state_id(body.state) if body.state is not None else None,
        )
        try:
            order = sandbox.shop.place_order(request)
        except WsError as err:
            raise _http(err) from err
        await sandbox.webhooks.flush_sync()
        return plain(order, "orders", sandbox)

    @router.post("/orders/{order_id}/state")
    async def change_state(order_id: int, body: StateIn) -> dict[str, Any]:
        """Add an order history row with all of its side effects."""
        entity_or_404("orders", order_id)
        try:
            history = sandbox.shop.change_order_state(
                order_id, state_id(body.state), employee_id=body.employee_id
            )
        except WsError as err:
            raise _http(err) from err
        await sandbox.webhooks.flush_sync()
        return plain(history, "order_histories", sandbox)

    @router.post("/orders/{order_id}/tracking")
    async def order_tracking(order_id: int, body: TrackingIn) -> dict[str, Any]:
        """Set tracking on the order's (first) order_carrier row; orders.date_upd does not move."""
        entity_or_404("orders", order_id)
        rows = sandbox.store.find("order_carriers", "id_order", str(order_id))
        if not rows:
            raise HTTPException(404, f"order {order_id} has no order_carrier")
        sandbox.shop.set_tracking(rows[0], body.tracking_number)
        await sandbox.webhooks.flush_sync()
        return plain(rows[0], "order_carriers", sandbox)

    @router.post("/order_carriers/{carrier_id}/tracking")
    async def carrier_tracking(carrier_id: int, body: TrackingIn) -> dict[str, Any]:
        """Set tracking on one order_carrier row."""
        row = entity_or_404("order_carriers", carrier_id)
        sandbox.shop.set_tracking(row, body.tracking_number)
        await sandbox.webhooks.flush_sync()
        return plain(row, "order_carriers", sandbox)

    @router.post("/stock")
    async def change_stock(body: StockIn) -> dict[str, Any]:
        """Set or adjust a stock row; the product-level row is recomputed; no date_upd moves."""
        row = sandbox.shop.stock_row(body.id_product, body.id_product_attribute)
        if row is None:
            raise HTTPException(404, "no such stock row")
        if (body.quantity is None) == (body.delta is None):
            raise HTTPException(400, "give exactly one of quantity or delta")
        quantity = body.quantity if body.quantity is not None else row.num("quantity") + (body.delta or 0)
        sandbox.shop.set_stock_quantity(row, quantity)
        await sandbox.webhooks.flush_sync()
        return plain(row, "stock_availables", sandbox)

    async def edit(resource: str, entity_id: int, body: FieldsIn) -> dict[str, Any]:
        entity = entity_or_404(resource, entity_id)
        definition = IMPLEMENTED[resource]
        changes: dict[str, Any] = {}
        for name, value in body.fields.items():
            fdef = definition.field(name)
            if fdef is None or name == "id":
                raise HTTPException(400, f"{resource} has no writable field {name}")
            changes[name] = dict.fromkeys(sandbox.store.language_ids, value or "") if fdef.i18n else value
        if definition.field("date_upd") is not None and "date_upd" not in changes:
            changes["date_upd"] = sandbox.store.now()
        sandbox.store.update(resource, entity, changes)
        prefix = resource[:-1]
        sandbox.shop.emit(
            f"{prefix}.updated",
            resource,
            entity.id,
            {f"id_{prefix}": entity.id},
            hook=f"actionObject{definition.class_name}UpdateAfter",
            ps_entity=definition.class_name,
            ps_action="update",
        )
        await sandbox.webhooks.flush_sync()
        return plain(entity, resource, sandbox)

    @router.patch("/customers/{customer_id}")
    async def edit_customer(customer_id: int, body: FieldsIn) -> dict[str, Any]:
        """Edit customer fields as the back office would (date_upd moves)."""
        return await edit("customers", customer_id, body)

    @router.patch("/products/{product_id}")
    async def edit_product(product_id: int, body: FieldsIn) -> dict[str, Any]:
        """Edit product fields as the back office would (date_upd moves)."""
        return await edit("products", product_id, body)

    @router.get("/resources/{resource}")
    async def list_resource(resource: str, offset: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        """Rows of any table as plain JSON, in id order."""
        if resource not in IMPLEMENTED:
            raise HTTPException(404, f"unknown resource {resource}")
        rows = list(sandbox.store.all(resource))[offset : offset + limit]
        return [plain(e, resource, sandbox) for e in rows]

    @router.get("/resources/{resource}/{entity_id}")
    async def get_resource(resource: str, entity_id: int) -> dict[str, Any]:
        """One row of any table as plain JSON."""
        return plain(entity_or_404(resource, entity_id), resource, sandbox)

    @router.post("/reset")
    async def reset(body: ResetIn) -> dict[str, Any]:
        """Rebuild the seeded shop (keys, faults and webhook settings stay)."""
        sandbox.reset(body.seed)
        return await info()

    @router.get("/faults")
    async def list_faults() -> list[dict[str, Any]]:
        """Active fault rules with how often each fired."""
        return [r.as_dict() for r in sandbox.faults.rules]

    @router.post("/faults", status_code=201)
    async def add_fault(body: FaultIn) -> dict[str, Any]:
        """Add a fault rule (per resource or global, probability or next N requests)."""
        rule = FaultRule(
            kind=body.kind,
            resource=body.resource,
            method=body.method.upper() if body.method else None,
            probability=body.probability,
            remaining=body.next,
            status=body.status,
            retry_after=body.retry_after,
            hang_seconds=body.hang_seconds,
            latency_ms=body.latency_ms,
        )
        return sandbox.faults.add(rule).as_dict()

    @router.delete("/faults")
    async def clear_faults(seed: int | None = None) -> dict[str, int]:
        """Remove every fault rule (optionally reseeding the fault random source)."""
        sandbox.faults.clear(seed)
        return {"active": 0}

    @router.delete("/faults/{rule_id}")
    async def remove_fault(rule_id: int) -> dict[str, int]:
        """Remove one fault rule."""
        if not sandbox.faults.remove(rule_id):
            raise HTTPException(404, f"no fault rule {rule_id}")
        return {"active": len(sandbox.faults.rules)}

    @router.put("/webhooks")
    async def set_webhooks(body: WebhooksIn) -> dict[str, Any]:
        """Configure outbound webhooks (targets, mode, retry delays)."""
        current = sandbox.webhooks.config
        sandbox.webhooks.reconfigure(
            WebhookConfig(
                targets=tuple(WebhookTarget(t.url, tuple(t.secrets)) for t in body.targets),
                mode=body.mode,
                retry_delays=tuple(body.retry_delays),
                timeout_seconds=body.timeout_seconds,
                queue_size=current.queue_size,
                workers=current.workers,
                shop_base_url=current.shop_base_url,
            )
        )
        return {"targets": len(body.targets), "mode": body.mode}

    @router.get("/webhooks/deliveries")
    async def deliveries(status: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Recent deliveries with every attempt (newest last)."""
        rows = [d for d in sandbox.webhooks.deliveries.values() if status is None or d.status == status]
        return [d.as_dict() for d in rows[-limit:]]

    @router.get("/keys")
    async def list_keys() -> list[dict[str, Any]]:
        """Webservice keys and their grants."""
        return [
            {
                "key": k.key,
                "active": k.active,
                "shops": sorted(k.shops),
                "resources": None if k.resources is None else {r: sorted(m) for r, m in k.resources.items()},
            }
            for k in sandbox.keys.values()
        ]

    @router.post("/keys", status_code=201)
    async def add_key(body: KeyIn) -> dict[str, str]:
        """Create or replace a webservice key with resource x method grants."""
        resources = None
        if body.resources is not None:
            resources = {r: frozenset(m.upper() for m in methods) for r, methods in body.resources.items()}
        sandbox.keys[body.key] = KeyPermissions(body.key, body.active, resources, frozenset(body.shops))
        return {"key": body.key}

    @router.put("/settings")
    async def settings(body: SettingsIn) -> dict[str, Any]:
        """Switch the webservice on/off or change the shop time zone."""
        store = sandbox.store
        if body.webservice_enabled is not None:
            store.webservice_enabled = body.webservice_enabled
            row = store.find_one("configurations", "name", "PS_WEBSERVICE")
            if row is not None:
                store.update("configurations", row, {"value": "1" if body.webservice_enabled else "0"})
        if body.timezone is not None:
            store.set_timezone(body.timezone)
            row = store.find_one("configurations", "name", "PS_TIMEZONE")
            if row is not None:
                store.update("configurations", row, {"value": body.timezone})
        return await info()

    return router
