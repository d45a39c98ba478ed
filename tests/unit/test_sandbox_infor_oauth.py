"""The Infor sandbox's authorization server and token handling (infor.md §1, §7 items 1 and 6)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sandbox.infor.server import InforSandboxServer
from tests.unit.test_sandbox_infor_support import IonClient, ion_client, running_sandbox


@pytest.fixture
def server() -> Iterator[InforSandboxServer]:
    with running_sandbox() as started:
        yield started


@pytest.fixture
def client(server: InforSandboxServer) -> Iterator[IonClient]:
    with ion_client(server, login=False) as unauthenticated:
        yield unauthenticated


def test_ionapi_file_has_every_key_and_urls_assemble_as_documented(
    server: InforSandboxServer, tmp_path: Path
) -> None:
    path = server.write_ionapi(tmp_path / "sandbox.ionapi")

    document = json.loads(path.read_text())
    assert {
        "ti",
        "cn",
        "ci",
        "cs",
        "iu",
        "pu",
        "oa",
        "ot",
        "or",
        "saak",
        "sask",
        "ev",
        "v",
    } <= document.keys()
    tenant = document["ti"]
    assert document["pu"].endswith(f"/{tenant}/as/")
    assert f"/{tenant}" not in document["iu"]
    assert document["ci"].startswith(f"{tenant}~")
    assert document["saak"].startswith(f"{tenant}#")
    assert path.stat().st_mode & 0o077 == 0
    # pu + ot is the token endpoint; iu + "/" + ti the API base.
    response = httpx.post(
        document["pu"] + document["ot"],
        data={"grant_type": "password", "username": document["saak"], "password": document["sask"]},
        auth=(document["ci"], document["cs"]),
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 7199
    assert body["refresh_token"]
    ping = httpx.get(
        f"{document['iu']}/{tenant}/IONSERVICES/api/ion/messaging/service/ping",
        headers={"Authorization": f"Bearer {body['access_token']}"},
    )
    assert ping.status_code == 200


@pytest.mark.parametrize("basic", [True, False], ids=["basic-header", "form-body"])
def test_client_authentication_in_basic_header_or_form_body(client: IonClient, basic: bool) -> None:
    response = client.password_grant(basic=basic)
    assert response.status_code == 200, response.text
    client.token = response.json()["access_token"]
    assert client.mi_raw("MMS200MI", "GetItmBasic", {"ITNO": "SKU-1001"}).status_code == 200


def test_bad_credentials_fail_fast_with_rfc6749_errors(client: IonClient) -> None:
    io = client.ionapi
    wrong_secret = client.http.post(
        client.token_url,
        data={"grant_type": "password", "username": io["saak"], "password": io["sask"]},
        auth=(io["ci"], "wrong"),
    )
    assert wrong_secret.status_code == 401
    assert wrong_secret.json()["error"] == "invalid_client"
    wrong_password = client.http.post(
        client.token_url,
        data={"grant_type": "password", "username": io["saak"], "password": "wrong"},
        auth=(io["ci"], io["cs"]),
    )
    assert wrong_password.status_code == 400
    assert wrong_password.json() == {"error": "invalid_grant", "error_description": "Authentication failed"}
    no_client = client.http.post(client.token_url, data={"grant_type": "password"})
    assert no_client.status_code == 401
    assert no_client.json()["error"] == "invalid_client"
    unsupported = client.http.post(
        client.token_url, data={"grant_type": "client_credentials"}, auth=(io["ci"], io["cs"])
    )
    assert unsupported.status_code == 400
    assert unsupported.json()["error"] == "unsupported_grant_type"
    stats = client.admin("GET", "/tokens")
    assert stats["issued_total"] == 0
    assert stats["failures"] == {"invalid_client": 2, "invalid_grant": 1, "unsupported_grant_type": 1}


@pytest.mark.timeout(20)
def test_expired_token_is_refused_and_one_refresh_per_expiry_is_counted(client: IonClient) -> None:
    client.admin("PUT", "/oauth", {"access_token_lifetime_s": 0.5})
    client.login()
    assert client.mi_raw("MMS200MI", "GetItmBasic", {"ITNO": "SKU-1001"}).status_code == 200
    time.sleep(0.6)
    expired = client.mi_raw("MMS200MI", "GetItmBasic", {"ITNO": "SKU-1001"})
    assert expired.status_code == 401
    assert "expired" in expired.json()["message"]
    refreshed = client.http.post(
        client.token_url,
        data={"grant_type": "refresh_token", "refresh_token": client.refresh_token},
        auth=(client.ionapi["ci"], client.ionapi["cs"]),
    )
    assert refreshed.status_code == 200, refreshed.text
    client.token = refreshed.json()["access_token"]
    assert client.mi_raw("MMS200MI", "GetItmBasic", {"ITNO": "SKU-1001"}).status_code == 200
    stats = client.admin("GET", "/tokens")
    assert stats["issued"] == {"password": 1, "refresh_token": 1}
    assert stats["rejected"] == {"expired_token": 1}


def test_revoked_token_is_refused_and_its_refresh_token_no_longer_works(client: IonClient) -> None:
    client.login()
    io = client.ionapi
    revoked = client.http.post(
        str(io["pu"]) + str(io["or"]),
        data={"token": client.token, "token_type_hint": "access_token"},
        auth=(io["ci"], io["cs"]),
    )
    assert revoked.status_code == 200
    response = client.mi_raw("MMS200MI", "GetItmBasic", {"ITNO": "SKU-1001"})
    assert response.status_code == 401
    refresh = client.http.post(
        client.token_url,
        data={"grant_type": "refresh_token", "refresh_token": client.refresh_token},
        auth=(io["ci"], io["cs"]),
    )
    assert refresh.status_code == 400
    assert refresh.json()["error"] == "invalid_grant"
    # A fresh login still works: revocation ends one grant, not the client.
    client.login()
    assert client.mi_raw("MMS200MI", "GetItmBasic", {"ITNO": "SKU-1001"}).status_code == 200


def test_refresh_tokens_only_when_the_app_issues_them(client: IonClient) -> None:
    client.admin("PUT", "/oauth", {"issue_refresh_tokens": False})
    response = client.password_grant()
    assert response.status_code == 200
    assert "refresh_token" not in response.json()


def test_injected_invalid_grant_then_recovery(client: IonClient) -> None:
    client.admin("PUT", "/oauth", {"fail_next_token_requests": 1})
    assert client.password_grant().json()["error"] == "invalid_grant"
    assert client.password_grant().status_code == 200
