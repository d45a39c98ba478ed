"""The ``.ionapi`` file and the ION API OAuth2 auth, against MockTransport handlers shaped like the spec.

Covers the reference's trap 1 (URL/credential assembly) and trap 6 (token hygiene).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

import connectors.infor
from connectors.infor.auth import IonApiAuth
from connectors.infor.errors import InforAuthError, classify
from connectors.infor.ionapi import IonApiCredentials, load_ionapi, parse_ionapi
from pipeline.errors import ConfigError, RetryableError

FIXTURES = Path(connectors.infor.__file__).parent / "testdata"
SAMPLE = FIXTURES / "ionapi" / "sample.ionapi"


def credentials() -> IonApiCredentials:
    return load_ionapi(SAMPLE)


# --------------------------------------------------------------------------------------------- .ionapi


def test_trap01_urls_are_assembled_from_the_file() -> None:
    creds = credentials()
    assert creds.token_url == "http://127.0.0.1:8099/ACME_TST/as/token.oauth2"
    assert creds.revoke_url == "http://127.0.0.1:8099/ACME_TST/as/revoke_token.oauth2"
    assert creds.authorization_url == "http://127.0.0.1:8099/ACME_TST/as/authorization.oauth2"
    assert creds.api_base == "http://127.0.0.1:8099/ACME_TST"
    assert creds.has_service_account


def test_every_field_of_the_file_is_loaded_and_unknown_keys_kept() -> None:
    data = json.loads(SAMPLE.read_text())
    creds = parse_ionapi(json.dumps({**data, "sc": ["Infor-ION"], "future": "x"}))
    assert (creds.ti, creds.cn, creds.dt, creds.ci) == (data["ti"], data["cn"], data["dt"], data["ci"])
    assert (creds.iu, creds.pu, creds.oa, creds.ot, creds.or_) == (
        data["iu"],
        data["pu"],
        data["oa"],
        data["ot"],
        data["or"],
    )
    assert (creds.ev, creds.v, creds.saak, creds.sc) == (data["ev"], data["v"], data["saak"], ("Infor-ION",))
    assert creds.cs.get_secret_value() == data["cs"]
    assert creds.sask is not None
    assert creds.sask.get_secret_value() == data["sask"]
    assert creds.model_extra == {"future": "x"}


def test_on_premises_sts_paths_come_from_the_file_too() -> None:
    data = json.loads(SAMPLE.read_text())
    data.update(pu="https://sts.example.test/InforIntSTS/", ot="connect/token", iu="https://gw.example.test/")
    creds = parse_ionapi(json.dumps(data))
    assert creds.token_url == "https://sts.example.test/InforIntSTS/connect/token"
    assert creds.api_base == "https://gw.example.test/ACME_TST"


def test_repr_and_str_never_show_the_secrets() -> None:
    creds = credentials()
    shown = repr(creds) + str(creds) + repr(creds.model_dump())
    assert creds.cs.get_secret_value() not in shown
    assert creds.sask is not None
    assert creds.sask.get_secret_value() not in shown


def test_missing_required_keys_are_named_and_values_hidden() -> None:
    data = json.loads(SAMPLE.read_text())
    del data["ci"], data["pu"]
    with pytest.raises(ConfigError, match=r"missing required key\(s\) ci, pu") as info:
        parse_ionapi(json.dumps(data))
    assert data["cs"] not in str(info.value)


def test_unreadable_and_malformed_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_ionapi(tmp_path / "absent.ionapi")
    bad = tmp_path / "bad.ionapi"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not a JSON"):
        load_ionapi(bad)


def test_a_file_without_service_account_is_refused_for_the_backend_grant() -> None:
    data = json.loads(SAMPLE.read_text())
    del data["saak"], data["sask"]
    creds = parse_ionapi(json.dumps(data))
    assert not creds.has_service_account
    with pytest.raises(InforAuthError, match="Create Service Account"):
        IonApiAuth(creds, httpx.AsyncClient())


# ------------------------------------------------------------------------------------------- fake ION


@dataclass
class FakeIon:
    """Token endpoint + one API path, the way §1.2/§1.4 describe them (state inspectable by tests)."""

    lifetime: int = 7199
    issue_refresh: bool = True
    credentials_ok: bool = True
    refresh_ok: bool = True
    accept_new_tokens: bool = True
    token_requests: list[dict[str, list[str]]] = field(default_factory=list)
    token_auth_headers: list[str | None] = field(default_factory=list)
    revocations: list[tuple[dict[str, list[str]], str | None]] = field(default_factory=list)
    valid: set[str] = field(default_factory=set)
    api_calls: int = 0
    refused: int = 0
    counter: int = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/as/token.oauth2"):
            return await self.token(request)
        if path.endswith("/as/revoke_token.oauth2"):
            form = parse_qs(request.content.decode())
            self.revocations.append((form, request.headers.get("authorization")))
            self.valid.discard(form["token"][0])
            return httpx.Response(200)
        self.api_calls += 1
        await asyncio.sleep(0)  # let the other callers interleave, as on a real network
        bearer = request.headers.get("authorization", "")
        if not bearer.startswith("Bearer ") or bearer[7:] not in self.valid:
            self.refused += 1
            return httpx.Response(401)
        return httpx.Response(200, json={"ok": True})

    async def token(self, request: httpx.Request) -> httpx.Response:
        form = parse_qs(request.content.decode())
        self.token_requests.append(form)
        self.token_auth_headers.append(request.headers.get("authorization"))
        for _ in range(5):
            await asyncio.sleep(0)  # widen the window in which concurrent callers could pile in
        grant = form["grant_type"][0]
        if grant == "password" and not self.credentials_ok:
            return httpx.Response(
                400, json={"error": "invalid_grant", "error_description": "Authentication failed"}
            )
        if grant == "refresh_token" and not self.refresh_ok:
            return httpx.Response(
                400, json={"error": "invalid_grant", "error_description": "refresh revoked"}
            )
        self.counter += 1
        access = f"token-{self.counter}"
        if self.accept_new_tokens:
            self.valid.add(access)
        body: dict[str, object] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.lifetime,
        }
        if self.issue_refresh:
            body["refresh_token"] = f"refresh-{self.counter}"
        return httpx.Response(200, json=body)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def gateway(fake: FakeIon, **auth_options: object) -> tuple[httpx.AsyncClient, IonApiAuth]:
    http = httpx.AsyncClient(transport=httpx.MockTransport(fake))
    auth = IonApiAuth(credentials(), http, **auth_options)  # type: ignore[arg-type]
    http.auth = auth
    return http, auth


API = "http://127.0.0.1:8099/ACME_TST/M3/m3api-rest/v2/execute/CRS610MI/LstByNumber"


# ------------------------------------------------------------------------------------------ the grant


@pytest.mark.timeout(10)
def test_password_grant_sends_the_service_account_and_client_auth_in_the_body() -> None:
    fake = FakeIon()

    async def scenario() -> None:
        http, _ = gateway(fake)
        async with http:
            response = await http.get(API)
            assert response.status_code == 200

    run(scenario)
    data = json.loads(SAMPLE.read_text())
    assert fake.token_requests == [
        {
            "grant_type": ["password"],
            "username": [data["saak"]],
            "password": [data["sask"]],
            "client_id": [data["ci"]],
            "client_secret": [data["cs"]],
        }
    ]
    assert fake.token_auth_headers == [None]


@pytest.mark.timeout(10)
def test_basic_client_auth_moves_ci_cs_to_the_header() -> None:
    fake = FakeIon()

    async def scenario() -> None:
        http, _ = gateway(fake, client_auth="basic")
        async with http:
            assert (await http.get(API)).status_code == 200

    run(scenario)
    data = json.loads(SAMPLE.read_text())
    assert set(fake.token_requests[0]) == {"grant_type", "username", "password"}
    expected = base64.b64encode(f"{data['ci']}:{data['cs']}".encode()).decode()
    assert fake.token_auth_headers == [f"Basic {expected}"]


@pytest.mark.timeout(10)
def test_trap06_token_is_cached_not_fetched_per_call() -> None:
    fake = FakeIon()

    async def scenario() -> None:
        http, _ = gateway(fake)
        async with http:
            for _ in range(20):
                assert (await http.get(API)).status_code == 200

    run(scenario)
    assert len(fake.token_requests) == 1
    assert fake.api_calls == 20


@pytest.mark.timeout(10)
def test_token_is_renewed_skew_seconds_before_it_expires() -> None:
    fake = FakeIon(lifetime=600, issue_refresh=False)
    clock = Clock()

    async def scenario() -> None:
        http, _ = gateway(fake, clock=clock, expiry_skew=60)
        async with http:
            await http.get(API)
            clock.now += 539  # 1 s before the skewed expiry: still the same token
            await http.get(API)
            assert len(fake.token_requests) == 1
            clock.now += 1  # now within the skew: renewed before the server would refuse it
            await http.get(API)
            assert len(fake.token_requests) == 2

    run(scenario)
    assert fake.refused == 0


@pytest.mark.timeout(20)
def test_token_expiry_mid_run_with_50_concurrent_callers_makes_one_request_per_expiry() -> None:
    fake = FakeIon(lifetime=300)
    clock = Clock()

    async def scenario() -> None:
        http, _ = gateway(fake, clock=clock)
        async with http:
            for expiry in range(4):
                responses = await asyncio.gather(*(http.get(API) for _ in range(50)))
                assert all(r.status_code == 200 for r in responses)
                assert len(fake.token_requests) == expiry + 1
                clock.now += 300  # the token lapses between two bursts

    run(scenario)
    grants = [request["grant_type"][0] for request in fake.token_requests]
    assert grants == ["password", "refresh_token", "refresh_token", "refresh_token"]
    assert fake.api_calls == 200
    assert fake.refused == 0


@pytest.mark.timeout(20)
def test_server_side_expiry_50_concurrent_401s_make_exactly_one_refresh() -> None:
    """Our clock says valid, the gateway says expired (clock skew, admin shortened the lifetime)."""
    fake = FakeIon()

    async def scenario() -> None:
        http, _ = gateway(fake)
        async with http:
            assert (await http.get(API)).status_code == 200
            fake.valid.clear()  # every token issued so far now expires server-side
            responses = await asyncio.gather(*(http.get(API) for _ in range(50)))
            assert all(r.status_code == 200 for r in responses)

    run(scenario)
    assert len(fake.token_requests) == 2
    assert fake.refused == 50  # each caller was refused once, then replayed with the one new token


@pytest.mark.timeout(10)
def test_revoked_token_gets_one_refresh_attempt_then_a_clear_failure() -> None:
    """The app's access was revoked: new tokens are issued but refused by the gateway too."""
    fake = FakeIon()

    async def scenario() -> None:
        http, _ = gateway(fake)
        async with http:
            assert (await http.get(API)).status_code == 200
            fake.valid.clear()
            fake.accept_new_tokens = False
            response = await http.get(API)
            assert response.status_code == 401
            error = classify(response, operation="CRS610MI.LstByNumber")
            assert isinstance(error, InforAuthError)
            assert "refused a freshly issued token" in str(error)

    run(scenario)
    assert len(fake.token_requests) == 2  # the first token, then exactly one refresh
    assert fake.api_calls == 3  # the good call, the refused one, the one replay


@pytest.mark.timeout(10)
def test_revoked_refresh_token_falls_back_to_the_service_account() -> None:
    fake = FakeIon(lifetime=300)
    clock = Clock()

    async def scenario() -> None:
        http, _ = gateway(fake, clock=clock)
        async with http:
            await http.get(API)
            fake.refresh_ok = False
            clock.now += 300
            assert (await http.get(API)).status_code == 200

    run(scenario)
    assert [r["grant_type"][0] for r in fake.token_requests] == ["password", "refresh_token", "password"]


@pytest.mark.timeout(10)
def test_bad_credentials_fail_fast_with_a_message_that_says_what_to_check() -> None:
    fake = FakeIon(credentials_ok=False)

    async def scenario() -> None:
        http, _ = gateway(fake)
        async with http:
            results = await asyncio.gather(*(http.get(API) for _ in range(50)), return_exceptions=True)
        assert all(isinstance(r, InforAuthError) for r in results)
        message = str(results[0])
        assert "invalid_grant" in message
        assert "saak/sask" in message
        assert "token.oauth2" in message
        sample = json.loads(SAMPLE.read_text())
        assert sample["cs"] not in message
        assert sample["sask"] not in message

    run(scenario)
    assert len(fake.token_requests) == 1  # the 49 waiters shared the one refusal, no hammering
    assert fake.api_calls == 0


@pytest.mark.timeout(10)
def test_invalid_client_points_at_ci_cs_and_the_client_auth_mode() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": "invalid_client"})

    async def scenario() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            auth = IonApiAuth(credentials(), http)
            with pytest.raises(InforAuthError, match=r"ci/cs.*now 'body', the other is 'basic'"):
                await auth.token()

    run(scenario)


@pytest.mark.timeout(10)
@pytest.mark.parametrize("status", [429, 503])
def test_token_endpoint_trouble_is_retryable(status: int) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers={"Retry-After": "7"})

    async def scenario() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            auth = IonApiAuth(credentials(), http)
            with pytest.raises(RetryableError) as info:
                await auth.token()
            assert info.value.status == status
            assert info.value.retry_after == 7

    run(scenario)


@pytest.mark.timeout(10)
def test_close_revokes_the_tokens_with_basic_client_auth() -> None:
    fake = FakeIon()

    async def scenario() -> None:
        http, auth = gateway(fake)
        async with http:
            await http.get(API)
            await auth.aclose()

    run(scenario)
    data = json.loads(SAMPLE.read_text())
    basic = "Basic " + base64.b64encode(f"{data['ci']}:{data['cs']}".encode()).decode()
    assert [(form["token"], form["token_type_hint"], header) for form, header in fake.revocations] == [
        (["token-1"], ["access_token"], basic),
        (["refresh-1"], ["refresh_token"], basic),
    ]
    assert fake.valid == set()


def test_a_sync_client_is_refused() -> None:
    with httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200))) as http:
        auth = IonApiAuth(credentials(), httpx.AsyncClient())
        with pytest.raises(RuntimeError, match="AsyncClient"):
            http.get("http://x.test/", auth=auth)
