"""The webservice routes: ``/api/``, ``/api/{resource}[/{id}]`` and ``/webservice/dispatcher.php?url=``.

One dispatcher mirrors ``webservice/dispatcher.php`` + ``WebserviceRequest::fetch``: output format
(``Io-Format`` / ``Output-Format`` headers, then ``output_format`` / ``io_format``; only the exact
``JSON`` selects JSON), authentication (Basic username, else ``ws_key``; none at all → plain-text
401), method checks (PATCH only from 8.0; ``ps_method`` override), per-key resource x method
permissions, per-resource forbidden methods, the response headers (``PSWS-Version``,
``Content-Sha1``, ``Execution-Time``, ``Access-Time``, ``X-Powered-By``) and the 8.x+ conditional GET.
:class:`Sandbox` holds the shop's state; ``create_app`` wires it into FastAPI with the admin API.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import hashlib
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from starlette.types import Receive, Scope, Send

from sandbox.prestashop import render_json, render_xml
from sandbox.prestashop.config import KeyPermissions, SandboxConfig
from sandbox.prestashop.errors import NotFoundEmpty, WsError
from sandbox.prestashop.faults import FaultInjector, FaultMiddleware
from sandbox.prestashop.query import parse_list_query, select
from sandbox.prestashop.resources import IMPLEMENTED, known_resources
from sandbox.prestashop.seed import seed_store
from sandbox.prestashop.shop import Shop
from sandbox.prestashop.store import Store
from sandbox.prestashop.webhooks import WebhookSender
from sandbox.prestashop.writes import apply_write, delete

ALL_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
ROUTE_METHODS = [*ALL_METHODS, "OPTIONS", "TRACE"]
WWW_AUTH = (
    'Basic realm="Welcome to PrestaShop Webservice, please enter the authentication key as the login.'
    ' No password required."'
)
REASONS = {501: "Not Implemented"}


def generate_key(rng: random.Random | None = None) -> str:
    """A 32-character webservice key like the back office generates."""
    source = rng or random.SystemRandom()
    alphabet = "ABCDEFGHIJKLMNPQRSTUVWXYZ123456789"
    return "".join(source.choice(alphabet) for _ in range(32))


class Sandbox:
    """One simulated shop: config, store, business operations, faults, webhooks and keys."""

    def __init__(self, config: SandboxConfig, *, seed_data: bool = True) -> None:
        self.config = config
        self.keys: dict[str, KeyPermissions] = {k.key: k for k in config.keys}
        self.faults = FaultInjector(config.fault_seed)
        self.store = Store(config)
        self.shop = Shop(self.store)
        self.webhooks = WebhookSender(config.webhooks, self.store)
        self.reset(seed_data=seed_data)

    def reset(self, seed: int | None = None, *, seed_data: bool = True) -> None:
        """Throw the data away and rebuild it (same seed unless given); keys and faults stay."""
        if seed is not None:
            self.config = _replace_seed(self.config, seed)
        self.store = Store(self.config)
        self.shop = Shop(self.store, listeners=[self._on_event])
        self.webhooks.store = self.store
        if seed_data:
            seed_store(self.store, self.shop)

    def _on_event(self, event: object) -> None:
        from sandbox.prestashop.shop import ShopEvent

        if isinstance(event, ShopEvent):
            self.webhooks.on_event(event)

    def grants(self, key: KeyPermissions) -> dict[str, frozenset[str]]:
        """Resource → granted methods for that key (PATCH only exists from 8.0)."""
        methods = frozenset(m for m in ALL_METHODS if m != "PATCH" or self.store.version >= (8, 0))
        if key.resources is None:
            return dict.fromkeys(known_resources(self.store.version), methods)
        return {name: frozenset(m & methods) for name, m in key.resources.items()}


def _replace_seed(config: SandboxConfig, seed: int) -> SandboxConfig:
    from dataclasses import replace

    return replace(config, seed=seed)


def _wants_json(request: Request) -> bool:
    for value in (
        request.headers.get("io-format"),
        request.headers.get("output-format"),
        request.query_params.get("output_format"),
        request.query_params.get("io_format"),
    ):
        if value is not None:
            return value == "JSON"
    return False


def _key_from(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth and auth.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(auth[6:].strip()).decode("utf-8", errors="replace")
        except (binascii.Error, ValueError):
            decoded = ""
        return decoded.split(":", 1)[0]
    return request.query_params.get("ws_key")


class Dispatcher:
    """Answers one webservice request (see the module docstring for the order of checks)."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    async def handle(self, request: Request, url: str) -> Response:
        started = time.perf_counter()
        sandbox = self.sandbox
        store = sandbox.store
        as_json = _wants_json(request)
        status = 200
        body = ""
        extra: dict[str, str] = {}
        method = request.method
        try:
            key = _key_from(request)
            if key is None:
                return Response(
                    "401 Unauthorized",
                    status_code=401,
                    media_type="text/plain",
                    headers={"WWW-Authenticate": WWW_AUTH, **self._base_headers(started)},
                )
            override = request.query_params.get("ps_method")
            if override:
                method = override.upper()
            self._check_method(method)
            permissions = self._authenticate(key)
            if not store.webservice_enabled:
                raise WsError(
                    503,
                    22,
                    "The PrestaShop webservice is disabled. Please activate it in the PrestaShop Back Office",
                )
            parts = [p for p in url.strip("/").split("/") if p]
            grants = sandbox.grants(permissions)
            if not parts:
                status, body, as_json = self._root(request, grants, as_json)
            else:
                status, body = await self._resource(request, method, parts, grants, permissions, as_json)
        except NotFoundEmpty:
            status, body = 404, ""
        except WsError as err:
            status = err.status
            body = render_json.render_errors(err.items) if as_json else render_xml.render_errors(err.items)
            if status == 401:
                extra["WWW-Authenticate"] = WWW_AUTH
        await sandbox.webhooks.flush_sync()
        return self._respond(request, method, status, body, as_json, started, extra)

    def _base_headers(self, started: float) -> dict[str, str]:
        return {
            "Access-Time": str(int(time.time())),
            "X-Powered-By": "PrestaShop Webservice",
            "PSWS-Version": self.sandbox.store.config.version,
            "Execution-Time": f"{time.perf_counter() - started:.3f}",
        }

    def _respond(
        self,
        request: Request,
        method: str,
        status: int,
        body: str,
        as_json: bool,
        started: float,
        extra: dict[str, str],
    ) -> Response:
        headers = self._base_headers(started) | extra
        payload = body.encode()
        media = "application/json" if as_json else "text/xml;charset=utf-8"
        if payload:
            sha1 = hashlib.sha1(payload, usedforsecurity=False).hexdigest()
            headers["Content-Sha1"] = sha1
            local = request.headers.get("local-content-sha1")
            if method == "GET" and status == 200 and local == sha1 and self.sandbox.store.version >= (8, 0):
                return Response(status_code=304, headers=headers)
        if method == "HEAD" or not payload:
            return Response(status_code=status, headers=headers, media_type=media if payload else None)
        return Response(payload, status_code=status, headers=headers, media_type=media)

    def _check_method(self, method: str) -> None:
        allowed: tuple[str, ...] = ("GET", "POST", "PUT", "DELETE", "HEAD")
        if self.sandbox.store.version >= (8, 0):
            allowed = (*allowed, "PATCH")
        if method not in allowed:
            raise WsError(405, 23, f"Method {method} is not valid")

    def _authenticate(self, key: str) -> KeyPermissions:
        if key == "":
            raise WsError(401, 17, "Authentication key is empty")
        if len(key) != 32:
            raise WsError(401, 18, "Invalid authentication key format")
        permissions = self.sandbox.keys.get(key)
        if permissions is None or not permissions.active:
            raise WsError(401, 20, "Authentification key is not active")
        if permissions.resources is not None and not permissions.resources:
            raise WsError(401, 21, "No permission for this authentication key")
        return permissions

    def _root(
        self, request: Request, grants: dict[str, frozenset[str]], as_json: bool
    ) -> tuple[int, str, bool]:
        base = _api_base(request)
        store = self.sandbox.store
        if as_json:
            if store.version >= (8, 0):
                # 8.x/9.x crash here (issues #32179, #34794): a PHP TypeError, not a webservice error.
                raise WsError(
                    500,
                    2,
                    "[PHP TypeError] array_filter(): Argument #1 ($array) must be of type array,"
                    " string given",
                )
            return 200, render_json.render_root(grants, base), True
        descriptions = {name: res.description for name, res in IMPLEMENTED.items()}
        return 200, render_xml.render_root(store, grants, descriptions, base, store.version), False

    async def _resource(
        self,
        request: Request,
        method: str,
        parts: list[str],
        grants: dict[str, frozenset[str]],
        permissions: KeyPermissions,
        as_json: bool,
    ) -> tuple[int, str]:
        sandbox = self.sandbox
        store = sandbox.store
        name = parts[0]
        known = known_resources(store.version)
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=1)
            hint = f' Did you mean: "{close[0]}"?' if close else ""
            full = ", ".join(f'"{n}"' for n in known)
            raise WsError(
                400, 27, f'Resource of type "{name}" does not exists.{hint} The full list is: {full}'
            )
        if name not in grants:
            raise WsError(401, 26, f'Resource of type "{name}" is not allowed with this authentication key')
        if method not in grants[name]:
            raise WsError(
                405,
                25,
                f"Method {method} is not allowed for the resource {name} with this authentication key",
            )
        resource = IMPLEMENTED.get(name)
        if resource is None:
            raise WsError(501, 124, f'The resource "{name}" is not simulated by the psinfor sandbox')
        if method in resource.forbidden_methods:
            raise WsError(405, 101, f"Method {method} is not allowed for the resource {name}")
        shop_param = request.query_params.get("id_shop")
        if (
            shop_param
            and shop_param != "all"
            and (not shop_param.isdigit() or int(shop_param) not in permissions.shops)
        ):
            raise WsError(403, 132, "No permission for this key on this shop")
        base = _api_base(request)
        params = dict(request.query_params)
        if method in ("GET", "HEAD"):
            return 200, self._get(resource.name, parts, params, base, as_json)
        if method == "DELETE":
            ids = self._delete_ids(parts, params)
            delete(store, sandbox.shop, resource, ids)
            return 200, ""
        raw = await request.body()
        written = apply_write(store, sandbox.shop, resource, method, raw)
        query = parse_list_query(
            {"language": params["language"]} if "language" in params else {}, resource, store, single=True
        )
        status = 201 if method == "POST" else 200
        if len(written) == 1:
            if as_json:
                return status, render_json.render_single(
                    store, resource, written[0], query.display, query.languages
                )
            return status, render_xml.render_single(
                store, resource, written[0], query.display, query.languages, base
            )
        if as_json:
            return status, render_json.render_list(store, resource, written, query.display, query.languages)
        return status, render_xml.render_list(store, resource, written, query.display, query.languages, base)

    def _get(self, name: str, parts: list[str], params: dict[str, str], base: str, as_json: bool) -> str:
        store = self.sandbox.store
        resource = IMPLEMENTED[name]
        schema = params.get("schema")
        if schema is not None:
            if schema not in ("blank", "synopsis"):
                raise WsError(
                    400,
                    28,
                    "Please select a schema of type 'synopsis' to get the whole schema informations"
                    " (which fields are required, which kind of content...) or 'blank' to get an empty"
                    " schema to fill before using POST request",
                )
            return (
                render_json.render_schema(store, resource, schema)
                if as_json
                else render_xml.render_schema(store, resource, schema)
            )
        if len(parts) > 1:
            entity_id = int(parts[1]) if parts[1].isdigit() else 0
            entity = store.get(name, entity_id)
            query = parse_list_query(params, resource, store, single=True)
            if entity is None:
                raise NotFoundEmpty
            if as_json:
                if query.display.present:
                    return render_json.render_list(store, resource, [entity], query.display, query.languages)
                return render_json.render_single(store, resource, entity, query.display, query.languages)
            return render_xml.render_single(store, resource, entity, query.display, query.languages, base)
        query = parse_list_query(params, resource, store, single=False)
        rows = select(store, resource, query)
        if as_json:
            return render_json.render_list(store, resource, rows, query.display, query.languages)
        return render_xml.render_list(store, resource, rows, query.display, query.languages, base)

    @staticmethod
    def _delete_ids(parts: list[str], params: dict[str, str]) -> list[int]:
        if len(parts) > 1:
            return [int(parts[1]) if parts[1].isdigit() else 0]
        raw = params.get("id", "")
        inner = raw[1:-1] if raw.startswith("[") and raw.endswith("]") else raw
        ids = [int(p) for p in inner.replace(",", "|").split("|") if p.strip().isdigit()]
        if not ids:
            raise WsError(400, 90, "id is required when modifying a resource")
        return ids


def _api_base(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}/api/"


def create_app(config: SandboxConfig, *, seed_data: bool = True) -> SandboxApp:
    """The ASGI app: webservice routes + ``/_sandbox`` admin API, wrapped in fault injection.

    The FastAPI app's OpenAPI page (``/docs``, ``/openapi.json``) documents the admin API.
    """
    from sandbox.prestashop.admin import build_admin_router

    sandbox = Sandbox(config, seed_data=seed_data)
    dispatcher = Dispatcher(sandbox)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await sandbox.webhooks.start()
        try:
            yield
        finally:
            await sandbox.webhooks.stop()

    app = FastAPI(
        title="psinfor PrestaShop sandbox",
        version=config.version,
        description=(
            "A faithful PrestaShop webservice (`/api/...`, XML by default, `output_format=JSON`) with seeded "
            "data, plus the `/_sandbox` admin API (JSON, no key) to place orders, change data, inject faults "
            "and inspect webhook deliveries."
        ),
        lifespan=lifespan,
    )

    @app.api_route("/api", methods=ROUTE_METHODS, include_in_schema=False)
    @app.api_route("/api/", methods=ROUTE_METHODS, include_in_schema=False)
    async def api_root(request: Request) -> Response:
        return await dispatcher.handle(request, "")

    # The webservice routes stay out of the OpenAPI page (one route, many methods); the description
    # above points at them. The page documents the admin API.
    @app.api_route("/api/{url:path}", methods=ROUTE_METHODS, include_in_schema=False)
    async def api(request: Request, url: str) -> Response:
        """The PrestaShop webservice (see reference §1): auth by Basic username or `ws_key`."""
        return await dispatcher.handle(request, url)

    @app.api_route("/webservice/dispatcher.php", methods=ROUTE_METHODS, include_in_schema=False)
    async def dispatcher_php(request: Request) -> Response:
        """The same webservice without URL rewriting: `?url=orders/1`."""
        return await dispatcher.handle(request, request.query_params.get("url", ""))

    app.include_router(build_admin_router(sandbox))
    return SandboxApp(app, sandbox)


class SandboxApp:
    """The ASGI callable handed to uvicorn: fault injection around the FastAPI app.

    ``sandbox`` is the shop state (tests reach into it), ``fastapi`` the app inside.
    """

    def __init__(self, fastapi: FastAPI, sandbox: Sandbox) -> None:
        self.fastapi = fastapi
        self.sandbox = sandbox
        self._asgi = FaultMiddleware(fastapi, sandbox.faults)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._asgi(scope, receive, send)
