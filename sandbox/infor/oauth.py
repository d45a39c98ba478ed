"""The ION API authorization server: ``{pu}token.oauth2`` and ``{pu}revoke_token.oauth2``.

Grants (infor.md §1.2): ``password`` (the service account: ``username=saak``, ``password=sask``) and
``refresh_token`` (only while the app "issues refresh tokens"); ``client_credentials`` only when enabled,
since Infor does not list it. Client authentication arrives in the form body (``client_id`` and
``client_secret``) or as HTTP Basic ``ci:cs``; both are accepted (§7 item 1). Errors are RFC 6749 bodies:
``invalid_client`` (401), ``invalid_grant``/``unsupported_grant_type``/``invalid_request`` (400).

Tokens are opaque random strings. Every access token belongs to a *grant* (one password login and the
refreshes that follow it); revoking any token of a grant revokes the whole grant, so a revoked access
token is refused with 401 and its refresh token no longer works (§1.2, "after revoke ... refresh must
fail"). The store counts issued tokens per grant type so tests can assert "one refresh per expiry".
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from sandbox.infor.tenant import Tenant


@dataclass
class OAuthConfig:
    """Knobs of the authorization server; the admin API changes them at run time."""

    access_token_lifetime_s: float = 7200.0
    issue_refresh_tokens: bool = True
    refresh_token_lifetime_s: float = 8 * 3600.0
    allow_client_credentials: bool = False
    fail_next_token_requests: int = 0
    """Answer this many upcoming token requests with ``invalid_grant`` (error injection, §8)."""


@dataclass
class IssuedToken:
    """One access or refresh token; ``grant_id`` ties it to the login it descends from."""

    value: str
    kind: str
    grant_id: int
    client_id: str
    username: str | None
    expires_at: float


@dataclass
class TokenCheck:
    """What the gateway learns from a bearer token: who, or why not."""

    ok: bool
    reason: str
    client_id: str = ""
    username: str | None = None


@dataclass
class TokenStore:
    """All tokens issued by the authorization server, indexed by value."""

    clock: Callable[[], float] = time.monotonic
    tokens: dict[str, IssuedToken] = field(default_factory=dict)
    revoked_grants: set[int] = field(default_factory=set)
    issued: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    revocations: int = 0
    _next_grant: int = 1

    def issue(
        self,
        config: OAuthConfig,
        *,
        grant_type: str,
        client_id: str,
        username: str | None,
        grant_id: int | None,
    ) -> dict[str, Any]:
        """Issue an access token (and a refresh token for a new password grant); the RFC 6749 body."""
        now = self.clock()
        new_grant = grant_id is None
        if grant_id is None:
            grant_id = self._next_grant
            self._next_grant += 1
        access = IssuedToken(
            secrets.token_urlsafe(32),
            "access",
            grant_id,
            client_id,
            username,
            now + config.access_token_lifetime_s,
        )
        self.tokens[access.value] = access
        self.issued[grant_type] += 1
        body: dict[str, Any] = {
            "access_token": access.value,
            "token_type": "Bearer",
            # Real servers answer a second under the lifetime (7199 for 2 h, fixtures/oauth).
            "expires_in": max(int(config.access_token_lifetime_s) - 1, 1),
        }
        if new_grant and config.issue_refresh_tokens and grant_type == "password":
            refresh = IssuedToken(
                secrets.token_urlsafe(48),
                "refresh",
                grant_id,
                client_id,
                username,
                now + config.refresh_token_lifetime_s,
            )
            self.tokens[refresh.value] = refresh
            body["refresh_token"] = refresh.value
        return body

    def check_access(self, value: str) -> TokenCheck:
        """Validate a bearer token: unknown, expired, revoked or not an access token is refused."""
        token = self.tokens.get(value)
        if token is None or token.kind != "access":
            return self._reject("invalid_token")
        if token.grant_id in self.revoked_grants:
            return self._reject("revoked_token")
        if self.clock() >= token.expires_at:
            return self._reject("expired_token")
        return TokenCheck(True, "ok", token.client_id, token.username)

    def _reject(self, reason: str) -> TokenCheck:
        self.rejected[reason] += 1
        return TokenCheck(False, reason)

    def refresh_grant(self, value: str, client_id: str) -> tuple[IssuedToken | None, str]:
        """The refresh token's record if it may be used by ``client_id`` now; else None and why."""
        token = self.tokens.get(value)
        if token is None or token.kind != "refresh" or token.client_id != client_id:
            return None, "Invalid refresh token"
        if token.grant_id in self.revoked_grants:
            return None, "Refresh token has been revoked"
        if self.clock() >= token.expires_at:
            return None, "Refresh token has expired"
        return token, ""

    def revoke(self, value: str, client_id: str) -> None:
        """Revoke the grant the token belongs to; unknown tokens are ignored (RFC 7009 §2.2)."""
        token = self.tokens.get(value)
        if token is not None and token.client_id == client_id:
            self.revoked_grants.add(token.grant_id)
            self.revocations += 1

    def stats(self) -> dict[str, Any]:
        """Counts for the admin API: issued per grant type, failures, rejections, revocations."""
        now = self.clock()
        active = sum(
            1
            for t in self.tokens.values()
            if t.kind == "access" and t.expires_at > now and t.grant_id not in self.revoked_grants
        )
        return {
            "issued": dict(self.issued),
            "issued_total": sum(self.issued.values()),
            "failures": dict(self.failures),
            "rejected": dict(self.rejected),
            "revocations": self.revocations,
            "active_access_tokens": active,
        }

    def reset(self) -> None:
        """Forget every token and count."""
        self.tokens.clear()
        self.revoked_grants.clear()
        self.issued.clear()
        self.failures.clear()
        self.rejected.clear()
        self.revocations = 0


def _oauth_error(status: int, error: str, description: str, *, basic: bool = False) -> JSONResponse:
    headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
    if basic:
        headers["WWW-Authenticate"] = 'Basic realm="token"'
    return JSONResponse(
        {"error": error, "error_description": description}, status_code=status, headers=headers
    )


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        user, sep, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def _client_from(request: Request, form: dict[str, str]) -> tuple[str, str, bool] | None:
    """(client_id, client_secret, via_basic) from the Basic header or the body, None if absent."""
    basic = _basic_credentials(request)
    if basic is not None:
        return basic[0], basic[1], True
    if "client_id" in form:
        return form["client_id"], form.get("client_secret", ""), False
    return None


async def _form(request: Request) -> dict[str, str]:
    if request.method == "GET":
        return dict(request.query_params)
    data = await request.form()
    return {key: value for key, value in data.items() if isinstance(value, str)}


def build_router(tenant: Tenant, config: OAuthConfig, store: TokenStore) -> APIRouter:
    """The authorization server's routes under ``/{tenant}/as/``."""
    router = APIRouter()
    prefix = f"/{tenant.tenant_id}/as"

    def authenticate(request: Request, form: dict[str, str]) -> JSONResponse | str:
        client = _client_from(request, form)
        if client is None:
            store.failures["invalid_client"] += 1
            return _oauth_error(401, "invalid_client", "Client authentication required", basic=True)
        client_id, client_secret, via_basic = client
        if not (
            secrets.compare_digest(client_id, tenant.client_id)
            and secrets.compare_digest(client_secret, tenant.client_secret)
        ):
            store.failures["invalid_client"] += 1
            return _oauth_error(
                401, "invalid_client", "Invalid client or client credentials", basic=via_basic
            )
        return client_id

    @router.post(f"{prefix}/token.oauth2")
    async def token(request: Request) -> Response:
        form = await _form(request)
        client = authenticate(request, form)
        if isinstance(client, JSONResponse):
            return client
        grant_type = form.get("grant_type", "")
        if config.fail_next_token_requests > 0:
            config.fail_next_token_requests -= 1
            store.failures["invalid_grant"] += 1
            return _oauth_error(400, "invalid_grant", "Authentication failed")
        if grant_type == "password":
            username, password = form.get("username"), form.get("password")
            if username is None or password is None:
                store.failures["invalid_request"] += 1
                return _oauth_error(400, "invalid_request", "username and password are required")
            if not (
                secrets.compare_digest(username, tenant.service_account_key)
                and secrets.compare_digest(password, tenant.service_account_secret)
            ):
                store.failures["invalid_grant"] += 1
                return _oauth_error(400, "invalid_grant", "Authentication failed")
            body = store.issue(
                config, grant_type="password", client_id=client, username=username, grant_id=None
            )
        elif grant_type == "refresh_token":
            refresh, why = store.refresh_grant(form.get("refresh_token", ""), client)
            if refresh is None or not config.issue_refresh_tokens:
                store.failures["invalid_grant"] += 1
                return _oauth_error(
                    400, "invalid_grant", why or "Refresh tokens are not issued to this client"
                )
            body = store.issue(
                config,
                grant_type="refresh_token",
                client_id=client,
                username=refresh.username,
                grant_id=refresh.grant_id,
            )
        elif grant_type == "client_credentials" and config.allow_client_credentials:
            body = store.issue(
                config, grant_type="client_credentials", client_id=client, username=None, grant_id=None
            )
        else:
            store.failures["unsupported_grant_type"] += 1
            return _oauth_error(400, "unsupported_grant_type", f"Grant type {grant_type!r} is not supported")
        return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    @router.api_route(f"{prefix}/revoke_token.oauth2", methods=["POST", "GET"])
    async def revoke(request: Request) -> Response:
        form = await _form(request)
        client = authenticate(request, form)
        if isinstance(client, JSONResponse):
            return client
        value = form.get("token")
        if not value:
            return _oauth_error(400, "invalid_request", "token is required")
        store.revoke(value, client)
        return Response(status_code=200)

    return router
