"""OAuth 2.0 for the ION API gateway as an ``httpx.Auth``: one token shared by every concurrent call.

Contract of :class:`IonApiAuth`:

- The first call gets a token with the resource-owner password grant of the ``.ionapi`` service
  account (``username=saak``, ``password=sask``); the client authenticates in the form body
  (``client_id``/``client_secret``) or, when configured, with HTTP Basic ``ci:cs``.
- The token is reused until ``expiry_skew`` seconds before it expires; then it is renewed with the
  refresh token when the app issues one (falling back to the password grant), else the password grant.
- Renewal is single-flight: however many calls find the token expired (or refused) at once, exactly
  one token request is made per renewal; the others wait for it and share its result, success or
  failure.
- A 401 from the gateway renews the token once (unless someone already did) and replays the request
  once. A second 401 is returned to the caller, whose error helper turns it into
  :class:`~connectors.infor.errors.InforAuthError`.
- Bad credentials (``invalid_grant`` / ``invalid_client``) raise ``InforAuthError`` at once, with a
  message naming the ``.ionapi`` fields to check; the token endpoint being down or throttled raises
  ``RetryableError``.
- :meth:`IonApiAuth.aclose` revokes the tokens it holds (``pu + or``, Basic ``ci:cs``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Callable, Generator
from dataclasses import dataclass
from typing import Literal

import httpx
from pydantic import SecretStr

from connectors.infor.errors import SYSTEM, InforAuthError, UnexpectedResponseError, classify
from connectors.infor.ionapi import IonApiCredentials
from pipeline.errors import PipelineError
from pipeline.metrics import TARGET_REQUEST_SECONDS

log = logging.getLogger(__name__)

ClientAuth = Literal["body", "basic"]

DEFAULT_EXPIRES_IN = 3600.0
"""Lifetime assumed when the token response has no ``expires_in`` (Infor's default is about 2 h)."""

# Sent with the token requests so that, even when they share the gateway client that carries this
# very auth, they bypass it instead of recursing into it.
_NO_AUTH = httpx.Auth()


@dataclass(frozen=True)
class AccessToken:
    """A bearer token; ``expires_at`` is on the auth's clock and already includes the skew."""

    access_token: SecretStr
    expires_at: float
    refresh_token: SecretStr | None = None


class IonApiAuth(httpx.Auth):
    """Bearer tokens for ION API calls; attach to an ``httpx.AsyncClient`` as ``auth=``.

    ``http`` sends the token and revocation requests (it may be the same client this auth is attached
    to). ``clock`` is monotonic seconds and exists for tests.
    """

    requires_response_body = False

    def __init__(
        self,
        credentials: IonApiCredentials,
        http: httpx.AsyncClient,
        *,
        client_auth: ClientAuth = "body",
        expiry_skew: float = 90.0,
        scope: str | None = None,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not credentials.has_service_account:
            raise InforAuthError(
                f"{credentials.cn or credentials.ti}: the .ionapi file has no service account (saak/sask); "
                "download the Backend Service app's credentials again with 'Create Service Account' ticked"
            )
        self._credentials = credentials
        self._http = http
        self._client_auth: ClientAuth = client_auth
        self._skew = expiry_skew
        self._scope = scope
        self._timeout = timeout
        self._clock = clock
        self._lock = asyncio.Lock()
        self._token: AccessToken | None = None
        self._attempts = 0
        self._failure: PipelineError | None = None
        self._failure_attempt = 0

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Refused: the pipeline is async; a sync client would block the event loop on token refresh."""
        raise RuntimeError("IonApiAuth needs an httpx.AsyncClient")

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """Send with the current token; on 401 renew once (single-flight) and replay once."""
        token = await self.token()
        request.headers["Authorization"] = "Bearer " + token.access_token.get_secret_value()
        attempts_seen = self._attempts
        response = yield request
        if response.status_code != 401:
            return
        renewed = await self._renew(stale=token, attempts_seen=attempts_seen)
        request.headers["Authorization"] = "Bearer " + renewed.access_token.get_secret_value()
        yield request

    async def token(self) -> AccessToken:
        """A token valid for at least the skew; renews (single-flight) when there is none or it expired."""
        current = self._token
        if current is not None and self._clock() < current.expires_at:
            return current
        return await self._renew(stale=current, attempts_seen=self._attempts)

    async def _renew(self, *, stale: AccessToken | None, attempts_seen: int) -> AccessToken:
        async with self._lock:
            current = self._token
            if current is not None and current is not stale and self._clock() < current.expires_at:
                return current  # someone renewed while we waited
            if self._failure is not None and self._failure_attempt > attempts_seen:
                raise self._failure  # someone just failed on our behalf: fail fast, don't hammer
            # Counted once finished: callers that arrived while this attempt was in flight saw the
            # old count, so they recognise its failure as "on their behalf" above.
            try:
                self._token = await self._fetch(current)
            except PipelineError as exc:
                self._token = None
                self._attempts += 1
                self._failure, self._failure_attempt = exc, self._attempts
                raise
            self._attempts += 1
            self._failure = None
            return self._token

    async def _fetch(self, current: AccessToken | None) -> AccessToken:
        if current is not None and current.refresh_token is not None:
            try:
                renewed = await self._grant(
                    {"grant_type": "refresh_token", "refresh_token": current.refresh_token.get_secret_value()}
                )
            except InforAuthError:
                # Refresh token expired or revoked: the service account can still get a fresh token.
                log.info("ION API refresh token refused; falling back to the password grant")
            else:
                if renewed.refresh_token is not None:
                    return renewed
                # RFC 6749 §6: a refresh response MAY omit a new refresh token; the old one stays valid.
                return AccessToken(renewed.access_token, renewed.expires_at, current.refresh_token)
        sask = self._credentials.sask
        assert sask is not None  # checked in __init__
        return await self._grant(
            {
                "grant_type": "password",
                "username": self._credentials.saak or "",
                "password": sask.get_secret_value(),
            }
        )

    async def _grant(self, form: dict[str, str]) -> AccessToken:
        data = dict(form)
        if self._scope:
            data["scope"] = self._scope
        auth: httpx.Auth = _NO_AUTH
        if self._client_auth == "basic":
            auth = httpx.BasicAuth(self._credentials.ci, self._credentials.cs.get_secret_value())
        else:
            data["client_id"] = self._credentials.ci
            data["client_secret"] = self._credentials.cs.get_secret_value()
        started = time.perf_counter()
        status = "error"
        try:
            response = await self._http.post(
                self._credentials.token_url, data=data, auth=auth, timeout=self._timeout
            )
            status = str(response.status_code)
        except httpx.TransportError as exc:
            raise classify(exc, operation="token") from exc
        finally:
            TARGET_REQUEST_SECONDS.labels(SYSTEM, "token", status).observe(time.perf_counter() - started)
        if response.status_code in (400, 401):
            raise self._refusal(response, grant=form["grant_type"])
        if not response.is_success:
            raise classify(response, operation="token", after_refresh=False)
        return self._parse(response)

    def _refusal(self, response: httpx.Response, *, grant: str) -> InforAuthError:
        try:
            body = response.json()
        except ValueError:
            body = {}
        error = str(body.get("error", "")) if isinstance(body, dict) else ""
        description = str(body.get("error_description", "")) if isinstance(body, dict) else ""
        said = f"{error}: {description}" if description else (error or f"HTTP {response.status_code}")
        where = f"ION API token request to {self._credentials.token_url} refused ({said})"
        if error in ("invalid_client", "unauthorized_client") or (not error and response.status_code == 401):
            return InforAuthError(
                f"{where}; check the client id/secret (ci/cs) in the .ionapi file and the client "
                f"authentication mode (now '{self._client_auth}', the other is "
                f"'{'basic' if self._client_auth == 'body' else 'body'}')"
            )
        if grant == "refresh_token":
            return InforAuthError(f"{where}; the refresh token is expired or revoked")
        return InforAuthError(
            f"{where}; check the service account keys (saak/sask) in the .ionapi file: the service "
            "account may have been deleted or its keys regenerated, and the app must be a Backend Service"
        )

    def _parse(self, response: httpx.Response) -> AccessToken:
        try:
            body = response.json()
        except ValueError:
            raise UnexpectedResponseError(
                f"ION API token endpoint answered {response.status_code} without JSON"
            ) from None
        access = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(access, str) or not access:
            raise UnexpectedResponseError("ION API token response has no access_token")
        token_type = str(body.get("token_type", "Bearer"))
        if token_type.lower() != "bearer":
            raise UnexpectedResponseError(f"ION API token response has token_type {token_type!r}, not Bearer")
        try:
            lifetime = float(body.get("expires_in", DEFAULT_EXPIRES_IN))
        except (TypeError, ValueError):
            lifetime = DEFAULT_EXPIRES_IN
        # Renew `skew` early so a request never leaves with a token about to lapse; for very short
        # lifetimes keep at least half of it usable.
        usable = max(lifetime - self._skew, lifetime / 2)
        refresh = body.get("refresh_token")
        return AccessToken(
            access_token=SecretStr(access),
            expires_at=self._clock() + usable,
            refresh_token=SecretStr(refresh) if isinstance(refresh, str) and refresh else None,
        )

    async def aclose(self) -> None:
        """Revoke the held tokens (best effort: shutdown must not fail on an unreachable STS)."""
        async with self._lock:
            token, self._token = self._token, None
        if token is None:
            return
        auth = httpx.BasicAuth(self._credentials.ci, self._credentials.cs.get_secret_value())
        pairs = [(token.access_token, "access_token")]
        if token.refresh_token is not None:
            pairs.append((token.refresh_token, "refresh_token"))
        for secret, hint in pairs:
            try:
                response = await self._http.post(
                    self._credentials.revoke_url,
                    data={"token": secret.get_secret_value(), "token_type_hint": hint},
                    auth=auth,
                    timeout=self._timeout,
                )
            except httpx.TransportError as exc:
                log.warning("ION API token revocation failed: %s", type(exc).__name__)
                continue
            if not response.is_success:
                log.warning("ION API token revocation answered HTTP %s", response.status_code)
