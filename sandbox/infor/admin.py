"""The unauthenticated admin API under ``/_sandbox`` (never behind the gateway).

Configuration endpoints take a JSON object of fields to change (unknown fields are refused with 400);
inspection endpoints return the sandbox's own view of the data as JSON.

``GET /_sandbox/ionapi`` and ``POST /_sandbox/ionapi {"path": ...}`` (the ``.ionapi`` document / file);
``POST /_sandbox/reset {"seed", "items", "customers"}``; ``GET|PUT /_sandbox/oauth``,
``GET /_sandbox/tokens``;
``GET|PUT /_sandbox/gateway`` (timeout, quota), ``GET|POST|DELETE /_sandbox/faults``,
``GET /_sandbox/gateway/stats``; ``GET /_sandbox/orders[?cuor=]``, ``GET /_sandbox/orders/{orno}``,
``GET /_sandbox/batch-orders``, ``GET /_sandbox/customers[?mail=]``, ``GET /_sandbox/customers/{cuno}``,
``PUT /_sandbox/items/{itno}``, ``GET /_sandbox/balances/{whlo}/{itno}``, ``GET /_sandbox/deliveries``,
``GET /_sandbox/invoices``, ``POST /_sandbox/invoices/{ivno}/pay``, ``GET /_sandbox/payment-batches``;
``GET|PUT /_sandbox/warehouse``,
``POST /_sandbox/warehouse/step {"times"}``, ``POST /_sandbox/warehouse/drift {"changes"}``;
``GET|PUT /_sandbox/ims/pusher``, ``GET /_sandbox/ims/pusher/stats``, ``POST /_sandbox/ims/pusher/flush``,
``POST /_sandbox/ims/pusher/wait {"timeout_s"}``, ``GET|PUT /_sandbox/ims/inbound``.
All inspection endpoints take ``?cono=`` (default: the service account's company).
"""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from sandbox.infor.gateway import FaultRule
from sandbox.infor.m3_state import Change
from sandbox.infor.seed import SeedSpec

if TYPE_CHECKING:
    from sandbox.infor.app import InforSandbox


class _BadRequestError(Exception):
    pass


def _apply(target: object, updates: dict[str, Any]) -> None:
    """Set dataclass fields from JSON, refusing unknown names and values of the wrong type."""
    names = {f.name for f in dataclasses.fields(target)}  # type: ignore[arg-type]
    for name, value in updates.items():
        if name not in names:
            raise _BadRequestError(f"unknown field {name!r}; known: {', '.join(sorted(names))}")
        current = getattr(target, name)
        if current is not None and value is not None:
            expected = type(current)
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, expected):
                raise _BadRequestError(f"{name} must be {expected.__name__}")
        setattr(target, name, value)


async def _json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise _BadRequestError("body is not JSON") from exc
    if not isinstance(data, dict):
        raise _BadRequestError("body must be a JSON object")
    return data


def _order_view(order: Any) -> dict[str, Any]:
    return {
        "head": order.record(),
        "temp_orno": order.temp_orno,
        "lines": [line.record(order.orno) for line in order.lines],
        "addresses": order.addresses,
        "deliveries": order.deliveries,
        "invoices": order.invoices,
    }


def build_router(sandbox: InforSandbox) -> APIRouter:
    """The admin routes bound to one sandbox."""
    router = APIRouter(prefix="/_sandbox")
    state = sandbox.state

    def cono_of(request: Request) -> int:
        value = request.query_params.get("cono")
        return int(value) if value and value.isdigit() else sandbox.tenant.default_cono

    def not_found(what: str) -> JSONResponse:
        return JSONResponse({"error": "not_found", "message": f"{what} not found"}, status_code=404)

    async def configure(request: Request, target: object) -> Response:
        try:
            _apply(target, await _json(request))
        except _BadRequestError as exc:
            return JSONResponse({"error": "bad_request", "message": str(exc)}, status_code=400)
        describe = getattr(target, "describe", None)
        return JSONResponse(describe() if callable(describe) else dataclasses.asdict(target))  # type: ignore[call-overload]

    @router.get("/ionapi")
    async def ionapi(request: Request) -> dict[str, Any]:
        return sandbox.tenant.ionapi(str(request.base_url))

    @router.post("/ionapi")
    async def write_ionapi(request: Request) -> Response:
        body = await request.json()
        path = sandbox.tenant.write_ionapi(Path(str(body["path"])), str(request.base_url))
        return JSONResponse({"path": str(path)})

    @router.post("/reset")
    async def reset(request: Request) -> dict[str, Any]:
        body = await request.json() if await request.body() else {}
        options = sandbox.options
        spec = SeedSpec(
            int(body.get("seed", options.seed)),
            int(body.get("items", options.items)),
            int(body.get("customers", options.customers)),
        )
        sandbox.reset(spec)
        return {"reset": True, "items": len(state.items), "customers": len(state.customers)}

    @router.get("/oauth")
    async def oauth() -> dict[str, Any]:
        return dataclasses.asdict(sandbox.oauth_config)

    @router.put("/oauth")
    async def oauth_put(request: Request) -> Response:
        return await configure(request, sandbox.oauth_config)

    @router.get("/tokens")
    async def tokens() -> dict[str, Any]:
        return sandbox.tokens.stats()

    @router.get("/gateway")
    async def gateway() -> dict[str, Any]:
        return sandbox.gateway_config.describe()

    @router.put("/gateway")
    async def gateway_put(request: Request) -> Response:
        body = await _json(request)
        body.pop("rules", None)
        try:
            _apply(sandbox.gateway_config, body)
        except _BadRequestError as exc:
            return JSONResponse({"error": "bad_request", "message": str(exc)}, status_code=400)
        return JSONResponse(sandbox.gateway_config.describe())

    @router.get("/gateway/stats")
    async def gateway_stats() -> dict[str, Any]:
        return sandbox.gateway.stats.describe() if sandbox.gateway is not None else {}

    @router.get("/faults")
    async def faults() -> list[dict[str, Any]]:
        return [dataclasses.asdict(rule) for rule in sandbox.gateway_config.rules]

    @router.post("/faults")
    async def add_fault(request: Request) -> Response:
        body = await _json(request)
        if body.get("kind") not in ("error", "latency", "timeout"):
            return JSONResponse(
                {"error": "bad_request", "message": "kind is error|latency|timeout"}, status_code=400
            )
        rule = FaultRule(kind=str(body["kind"]))
        try:
            _apply(rule, {key: value for key, value in body.items() if key != "kind"})
        except _BadRequestError as exc:
            return JSONResponse({"error": "bad_request", "message": str(exc)}, status_code=400)
        if rule.kind == "error" and rule.status not in (500, 502, 503, 504):
            return JSONResponse(
                {"error": "bad_request", "message": "status is 500|502|503|504"}, status_code=400
            )
        sandbox.gateway_config.rules.append(rule)
        return JSONResponse(dataclasses.asdict(rule), status_code=201)

    @router.delete("/faults")
    async def clear_faults() -> dict[str, int]:
        count = len(sandbox.gateway_config.rules)
        sandbox.gateway_config.rules.clear()
        return {"removed": count}

    @router.get("/orders")
    async def orders(request: Request) -> list[dict[str, Any]]:
        cono, cuor = cono_of(request), request.query_params.get("cuor")
        found = (
            state.find_orders_by_cuor(cono, cuor)
            if cuor is not None
            else [order for (c, _), order in sorted(state.orders.items()) if c == cono]
        )
        return [order.record() for order in found]

    @router.get("/orders/{orno}")
    async def order(orno: str, request: Request) -> Response:
        found = state.orders.get((cono_of(request), orno))
        return JSONResponse(_order_view(found)) if found is not None else not_found(f"order {orno}")

    @router.get("/batch-orders")
    async def batch_orders(request: Request) -> list[dict[str, str]]:
        cono = cono_of(request)
        return [batch.record() for (c, _), batch in sorted(state.batch_orders.items()) if c == cono]

    @router.get("/customers")
    async def customers(request: Request) -> list[dict[str, str]]:
        cono, mail = cono_of(request), request.query_params.get("mail")
        if mail is not None:
            numbers = state.customers_by_mail.get((cono, mail.lower()), [])
            return [state.customers[(cono, cuno)].record() for cuno in numbers]
        return [customer.record() for (c, _), customer in sorted(state.customers.items()) if c == cono]

    @router.get("/customers/{cuno}")
    async def customer(cuno: str, request: Request) -> Response:
        found = state.customers.get((cono_of(request), cuno))
        return JSONResponse(found.record()) if found is not None else not_found(f"customer {cuno}")

    @router.put("/items/{itno}")
    async def change_item(itno: str, request: Request) -> Response:
        item = state.items.get((cono_of(request), itno))
        if item is None:
            return not_found(f"item {itno}")
        body = await _json(request)
        for name in ("itds", "fuds", "stat", "sale", "itgr", "itcl"):
            if name in body:
                setattr(item, name, str(body[name]))
        if "price" in body:
            item.price = Decimal(str(body["price"]))
        state.put_item(item)
        return JSONResponse(item.record())

    @router.get("/balances/{whlo}/{itno}")
    async def balance(whlo: str, itno: str, request: Request) -> Response:
        found = state.balances.get((cono_of(request), whlo, itno))
        return JSONResponse(found.record()) if found is not None else not_found(f"balance {whlo}/{itno}")

    @router.put("/balances/{whlo}/{itno}")
    async def set_balance(whlo: str, itno: str, request: Request) -> Response:
        found = state.balances.get((cono_of(request), whlo, itno))
        if found is None:
            return not_found(f"balance {whlo}/{itno}")
        body = await _json(request)
        if "stqt" in body:
            found.stqt = Decimal(str(body["stqt"]))
            state.touch_balance(found)
        return JSONResponse(found.record())

    @router.get("/deliveries")
    async def deliveries(request: Request) -> list[dict[str, Any]]:
        cono = cono_of(request)
        return [
            delivery.record() | {"lines": delivery.line_records()}
            for delivery in state.deliveries.values()
            if delivery.cono == cono
        ]

    @router.get("/invoices")
    async def invoices(request: Request) -> list[dict[str, str]]:
        cono = cono_of(request)
        return [invoice.record() for invoice in state.invoices.values() if invoice.cono == cono]

    @router.post("/invoices/{ivno}/pay")
    async def pay(ivno: int) -> Response:
        found = state.invoices.get(ivno)
        if found is None:
            return not_found(f"invoice {ivno}")
        found.rafc = Decimal(0)
        found.lmts = state.lmts()
        found.variation += 1
        state.notify(Change("invoice", str(ivno), found.cono, found.divi))
        return JSONResponse(found.record())

    @router.get("/payment-batches")
    async def payment_batches(request: Request) -> list[dict[str, Any]]:
        cono = cono_of(request)
        return [batch.record() for (c, _), batch in sorted(state.payment_batches.items()) if c == cono]

    @router.get("/warehouse")
    async def warehouse() -> dict[str, Any]:
        return sandbox.warehouse_config.describe() | {"active_orders": len(state.active_orders)}

    @router.put("/warehouse")
    async def warehouse_put(request: Request) -> Response:
        return await configure(request, sandbox.warehouse_config)

    @router.post("/warehouse/step")
    async def step(request: Request) -> dict[str, int]:
        body = await _json(request)
        return {"orders_changed": sandbox.warehouse.step(int(body.get("times", 1)))}

    @router.post("/warehouse/drift")
    async def drift(request: Request) -> dict[str, int]:
        body = await _json(request)
        changes = int(body.get("changes", 1))
        saved = sandbox.warehouse_config.stock_drift_changes
        sandbox.warehouse_config.stock_drift_changes = changes
        try:
            return {"balances_changed": sandbox.warehouse.drift()}
        finally:
            sandbox.warehouse_config.stock_drift_changes = saved

    @router.get("/ims/pusher")
    async def pusher() -> dict[str, Any]:
        return sandbox.pusher_config.describe()

    @router.put("/ims/pusher")
    async def pusher_put(request: Request) -> Response:
        return await configure(request, sandbox.pusher_config)

    @router.get("/ims/pusher/stats")
    async def pusher_stats() -> dict[str, Any]:
        return sandbox.pusher.stats.describe() | {"pending": sandbox.pusher.pending()}

    @router.post("/ims/pusher/flush")
    async def pusher_flush() -> dict[str, int]:
        held = len(sandbox.pusher.held)
        await sandbox.pusher.flush_held()
        return {"released": held}

    @router.post("/ims/pusher/wait")
    async def pusher_wait(request: Request) -> Response:
        body = await _json(request)
        idle = await sandbox.pusher.wait_idle(float(body.get("timeout_s", 10.0)))
        payload = sandbox.pusher.stats.describe() | {"idle": idle, "pending": sandbox.pusher.pending()}
        return JSONResponse(payload, status_code=200 if idle else 408)

    @router.get("/ims/inbound")
    async def inbound(request: Request) -> dict[str, Any]:
        last = int(request.query_params.get("last", "20"))
        return sandbox.inbound.describe(last) | dataclasses.asdict(sandbox.inbound_config)

    @router.put("/ims/inbound")
    async def inbound_put(request: Request) -> Response:
        return await configure(request, sandbox.inbound_config)

    return router
