"""One ION API gateway connection per ``.ionapi`` credential: the httpx client, its auth and its limiter.

Each concern lives in one place: OAuth in :class:`~connectors.infor.auth.IonApiAuth` (an
``httpx.Auth``), the quota in :class:`~pipeline.ratelimit.RateLimitedTransport` (below the auth, so a
request replayed after a 401 is paced too), the MI protocol in :class:`~connectors.infor.mi.MiClient`.
Only gateway calls (``iu/ti/...``) pass the limiter; token and revocation requests go to the
authorization server, which is not under the API quota, and never wait behind a Retry-After.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from connectors.infor.auth import ClientAuth, IonApiAuth
from connectors.infor.ionapi import IonApiCredentials
from connectors.infor.mi import DEFAULT_TIMEOUT, MiClient
from pipeline.ratelimit import AdaptiveRateLimiter, RateLimitedTransport, RatePolicy

TARGET = "infor"


@dataclass
class IonApiGateway:
    """An open gateway connection; build MI clients from it, close it once at shutdown."""

    credentials: IonApiCredentials
    http: httpx.AsyncClient
    auth: IonApiAuth
    limiter: AdaptiveRateLimiter | None

    def mi(self, *, cono: str | int, divi: str, timeout: float = DEFAULT_TIMEOUT) -> MiClient:
        """An M3 MI client for one company/division on this connection (shares token and limiter)."""
        return MiClient(self.http, api_base=self.credentials.api_base, cono=cono, divi=divi, timeout=timeout)

    async def aclose(self) -> None:
        """Revoke the tokens (best effort), then close the connections."""
        try:
            await self.auth.aclose()
        finally:
            await self.http.aclose()


def open_gateway(
    credentials: IonApiCredentials,
    *,
    rate_policy: RatePolicy | None = None,
    limiter: AdaptiveRateLimiter | None = None,
    client_auth: ClientAuth = "body",
    expiry_skew: float = 90.0,
    max_throttled_retries: int = 5,
    max_connections: int = 100,
    transport: httpx.AsyncBaseTransport | None = None,
) -> IonApiGateway:
    """Connect to the gateway of ``credentials``; paced by ``limiter`` (or a new one from ``rate_policy``).

    The gateway's quota is per OAuth client, so one limiter belongs to one ``.ionapi`` credential:
    pass the same limiter only to connections sharing that credential. With neither argument the
    calls are not limited (429s then surface as ``RetryableError`` for the runner's backoff).
    ``transport`` replaces the network (tests).
    """
    if limiter is None and rate_policy is not None:
        limiter = AdaptiveRateLimiter(rate_policy, target=TARGET)
    base: httpx.AsyncBaseTransport = transport or httpx.AsyncHTTPTransport(
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    )
    if limiter is not None:
        gateway_prefix = credentials.api_base.rstrip("/") + "/"
        # On one host (single-region tenants, the sandbox) pu lies below iu/ti: exclude it explicitly.
        sts_prefix = credentials.pu

        def under_quota(request: httpx.Request) -> bool:
            url = str(request.url)
            return url.startswith(gateway_prefix) and not url.startswith(sts_prefix)

        base = RateLimitedTransport(
            base, limiter, max_throttled_retries=max_throttled_retries, applies_to=under_quota
        )
    http = httpx.AsyncClient(transport=base, timeout=DEFAULT_TIMEOUT)
    auth = IonApiAuth(credentials, http, client_auth=client_auth, expiry_skew=expiry_skew)
    http.auth = auth
    return IonApiGateway(credentials=credentials, http=http, auth=auth, limiter=limiter)
