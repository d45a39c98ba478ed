"""Assembly: one :class:`InforSandbox` holds every part; :meth:`InforSandbox.asgi` is the served app.

The ASGI app is the gateway wrapping a FastAPI app with the authorization server, MI, IMS and admin
routes. Its lifespan runs the warehouse simulation and the IMS pusher as background tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from sandbox.infor.bod import BodPublisher
from sandbox.infor.gateway import Gateway, GatewayConfig
from sandbox.infor.ims import InboundConfig, InboundStore, Pusher, PusherConfig, build_inbound_router
from sandbox.infor.m3_state import M3State
from sandbox.infor.mi import build_router as build_mi_router
from sandbox.infor.mi_transactions import build_registry
from sandbox.infor.oauth import OAuthConfig, TokenStore
from sandbox.infor.oauth import build_router as build_oauth_router
from sandbox.infor.seed import SeedSpec, seed_state
from sandbox.infor.tenant import Tenant
from sandbox.infor.warehouse import WarehouseConfig, WarehouseSimulation


@dataclass
class SandboxOptions:
    """How to build a sandbox: tenant, seed data, credentials and where to push BODs."""

    tenant_id: str = "ACME_TST"
    seed: int = 1
    items: int = 1000
    customers: int = 50
    credential_seed: int | None = None
    """Fixed credentials for reproducible runs; None draws random ones."""
    ims_push_url: str | None = None
    ims_push_token: str | None = None
    """The bearer token the pusher sends; None draws a random one (see :attr:`PusherConfig.token`)."""


class InforSandbox:
    """Every part of the sandbox, wired together."""

    def __init__(self, options: SandboxOptions | None = None) -> None:
        self.options = options or SandboxOptions()
        seed = self.options.seed
        self.tenant = Tenant.generate(self.options.tenant_id, seed=self.options.credential_seed)
        self.oauth_config = OAuthConfig()
        self.tokens = TokenStore()
        self.gateway_config = GatewayConfig()
        self.state = M3State()
        self.registry = build_registry()
        self.warehouse_config = WarehouseConfig()
        self.warehouse = WarehouseSimulation(self.state, self.warehouse_config, random.Random(seed + 1))
        self.pusher_config = PusherConfig(
            url=self.options.ims_push_url, token=self.options.ims_push_token or secrets.token_urlsafe(24)
        )
        self.pusher = Pusher(self.pusher_config, random.Random(seed + 2))
        self.inbound_config = InboundConfig()
        self.inbound = InboundStore()
        self.publisher = BodPublisher(self.state, self.tenant.tenant_id, self.pusher.submit)
        self.state.listeners.append(self.publisher)
        seed_state(self.state, SeedSpec(seed, self.options.items, self.options.customers))
        self.gateway: Gateway | None = None

    def reset(self, spec: SeedSpec | None = None) -> None:
        """Back to freshly seeded data: orders, tokens, counters and faults forgotten."""
        self.state.reset()
        self.publisher.variations.clear()
        seed_state(
            self.state, spec or SeedSpec(self.options.seed, self.options.items, self.options.customers)
        )
        self.tokens.reset()
        self.gateway_config.rules.clear()
        self.gateway_config.quota_requests = 0
        if self.gateway is not None:
            self.gateway.quota.reset()
            self.gateway.stats.statuses.clear()
            self.gateway.stats.faults.clear()
            self.gateway.stats.requests = 0
        self.inbound.messages.clear()
        self.inbound.accepted = 0
        self.inbound.refused.clear()

    def asgi(self) -> Gateway:
        """The served application: the gateway in front of the FastAPI routes."""
        from sandbox.infor.admin import build_router as build_admin_router

        @contextlib.asynccontextmanager
        async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
            tasks = [
                asyncio.create_task(self.warehouse.run(), name="infor-warehouse"),
                asyncio.create_task(self.pusher.run(), name="infor-ims-pusher"),
            ]
            try:
                yield
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

        app = FastAPI(title="Infor sandbox (ION API gateway, M3 MI, IMS)", lifespan=lifespan)

        @app.exception_handler(StarletteHTTPException)
        async def gateway_style_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
            names = {404: "not_found", 405: "method_not_allowed"}
            return JSONResponse(
                {"error": names.get(exc.status_code, "error"), "message": str(exc.detail)},
                status_code=exc.status_code,
                headers=exc.headers,
            )

        app.include_router(build_oauth_router(self.tenant, self.oauth_config, self.tokens))
        app.include_router(build_mi_router(self.registry, self.state, self.tenant))
        app.include_router(build_inbound_router(self.tenant, self.inbound_config, self.inbound))
        app.include_router(build_admin_router(self))
        self.gateway = Gateway(
            app,
            tenant_id=self.tenant.tenant_id,
            tokens=self.tokens,
            config=self.gateway_config,
            rng=random.Random(self.options.seed + 3),
        )
        return self.gateway
