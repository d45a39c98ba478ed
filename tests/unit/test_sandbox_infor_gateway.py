"""The ION API gateway layer of the Infor sandbox: 401/404/405, quota 429, 5xx and 504 injection."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from sandbox.infor.server import InforSandboxServer
from tests.unit.test_sandbox_infor_support import IonClient, ion_client, running_sandbox, wait_for


@pytest.fixture
def client() -> Iterator[IonClient]:
    with running_sandbox() as server, ion_client(server) as logged_in:
        logged_in.admin("PUT", "/warehouse", {"paused": True, "stock_drift_interval_s": 0})
        yield logged_in


def test_missing_or_invalid_bearer_is_401_without_an_mi_body(client: IonClient) -> None:
    path = "/M3/m3api-rest/v2/execute/MMS200MI/GetItmBasic?ITNO=SKU-1001"
    missing = client.http.get(client.api_base + path)
    invalid = client.http.get(client.api_base + path, headers={"Authorization": "Bearer not-a-token"})
    for response in (missing, invalid):
        assert response.status_code == 401
        assert "results" not in response.json()
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_unknown_path_is_404_and_wrong_method_is_405(client: IonClient) -> None:
    assert client.get("/M3/no-such-api").status_code == 404
    assert client.post("/M3/m3api-rest/v2/execute/MMS200MI/GetItmBasic").status_code == 405


def test_quota_answers_429_with_retry_after_and_frees_up_after_the_window(client: IonClient) -> None:
    client.admin("PUT", "/gateway", {"quota_requests": 5, "quota_window_s": 1.0})
    statuses = [client.mi_raw("MMS200MI", "GetItmBasic", {"ITNO": "SKU-1001"}).status_code for _ in range(5)]
    assert statuses == [200] * 5
    refused = client.mi_raw("MMS200MI", "GetItmBasic", {"ITNO": "SKU-1001"})
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    time.sleep(1.05)
    assert client.mi_raw("MMS200MI", "GetItmBasic", {"ITNO": "SKU-1001"}).status_code == 200
    assert client.admin("GET", "/gateway/stats")["statuses"]["429"] == 1


def test_injected_502_and_503_do_not_reach_the_backend(client: IonClient) -> None:
    client.admin("POST", "/faults", {"kind": "error", "status": 502, "program": "OIS100MI", "remaining": 1})
    client.admin(
        "POST", "/faults", {"kind": "error", "status": 503, "transaction": "AddBatchHead", "remaining": 1}
    )
    first = client.mi_raw("OIS100MI", "AddBatchHead", {"CUNO": "PS000042", "cono": 100})
    second = client.mi_raw("OIS100MI", "AddBatchHead", {"CUNO": "PS000042", "cono": 100})
    third = client.mi_raw("OIS100MI", "AddBatchHead", {"CUNO": "PS000042", "cono": 100})
    assert [first.status_code, second.status_code, third.status_code] == [502, 503, 200]
    # Only the third call created a batch order.
    assert [b["ORNO"] for b in client.admin("GET", "/batch-orders")] == ["0000004711"]
    # Other programs are untouched by an OIS100MI rule.
    assert client.mi_raw("MMS200MI", "GetItmBasic", {"ITNO": "SKU-1001"}).status_code == 200


@pytest.mark.timeout(20)
def test_ambiguous_504_on_confirm_creates_the_order_and_a_reconciling_retry_does_not_duplicate(
    client: IonClient,
) -> None:
    client.admin("PUT", "/gateway", {"timeout_s": 0.3})
    client.admin(
        "POST", "/faults", {"kind": "timeout", "transaction": "Confirm", "execute": True, "remaining": 1}
    )
    temp = client.records("OIS100MI", "AddBatchHead", CUNO="PS000042", CUOR="PS-504", cono=100)[0]["ORNO"]
    client.records("OIS100MI", "AddBatchLine", ORNO=temp, ITNO="SKU-1001", ORQT=1, cono=100)
    started = time.monotonic()
    timed_out = client.mi_raw("OIS100MI", "Confirm", {"ORNO": temp, "cono": 100})
    assert timed_out.status_code == 504
    assert time.monotonic() - started >= 0.3
    # The backend ran: the order exists although the caller saw a 504.
    final = client.records("OIS100MI", "GetOrderNo", ORNO=temp, cono=100)[0]["ORNR"]
    assert final
    assert [r["ORNO"] for r in client.records("OIS100MI", "SearchHead", SQRY="CUOR:PS-504", cono=100)] == [
        final
    ]
    retry = client.mi("OIS100MI", "Confirm", ORNO=temp, cono=100)["results"][0]
    assert retry["errorField"] == "ORNO"
    assert len(client.admin("GET", "/orders?cuor=PS-504")) == 1


@pytest.mark.timeout(20)
def test_504_without_execution_and_a_backend_slower_than_the_gateway(client: IonClient) -> None:
    client.admin("PUT", "/gateway", {"timeout_s": 0.2})
    client.admin(
        "POST",
        "/faults",
        {"kind": "timeout", "transaction": "AddBatchHead", "execute": False, "remaining": 1},
    )
    assert client.mi_raw("OIS100MI", "AddBatchHead", {"CUNO": "PS000042"}).status_code == 504
    assert client.admin("GET", "/batch-orders") == []
    client.admin(
        "POST",
        "/faults",
        {"kind": "latency", "transaction": "AddBatchHead", "latency_s": 0.4, "remaining": 1},
    )
    assert client.mi_raw("OIS100MI", "AddBatchHead", {"CUNO": "PS000042"}).status_code == 504
    # The slow backend carries on after the 504 and creates the batch order anyway.
    assert wait_for(lambda: client.admin("GET", "/batch-orders"), timeout_s=5)
    stats = client.admin("GET", "/gateway/stats")["faults"]
    assert stats["timeout_not_executed"] == 1
    assert stats["timeout_slow_backend"] == 1


def test_latency_injection_delays_but_succeeds(client: IonClient) -> None:
    client.admin("POST", "/faults", {"kind": "latency", "program": "MMS200MI", "latency_s": 0.25})
    started = time.monotonic()
    assert client.mi_raw("MMS200MI", "GetItmBasic", {"ITNO": "SKU-1001"}).status_code == 200
    assert time.monotonic() - started >= 0.25


def test_admin_api_needs_no_token_but_refuses_unknown_settings(client: IonClient) -> None:
    response = client.http.put(f"{client.server.base_url}/_sandbox/gateway", json={"no_such_knob": 1})
    assert response.status_code == 400
    assert "no_such_knob" in response.json()["message"]


def test_server_fixture_is_reachable_on_loopback(client: IonClient) -> None:
    server: InforSandboxServer = client.server
    assert server.base_url.startswith("http://127.0.0.1:")
