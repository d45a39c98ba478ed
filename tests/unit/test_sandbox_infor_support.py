"""Helpers shared by the Infor sandbox tests (no tests here): a started server and a small client.

The client is written from the spec, not from ``connectors/``: token URL ``pu + ot``, API base
``iu + "/" + ti``, MI GET with query parameters.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from sandbox.infor.app import SandboxOptions
from sandbox.infor.server import InforSandboxServer


@contextmanager
def ion_client(server: InforSandboxServer, *, login: bool = True) -> Iterator[IonClient]:
    """A client for ``server`` (logged in unless told otherwise), closed afterwards."""
    client = IonClient(server)
    try:
        yield client.login() if login else client
    finally:
        client.close()


@contextmanager
def running_sandbox(**options: Any) -> Iterator[InforSandboxServer]:
    """A sandbox on a free loopback port with a small catalogue (tests that need volume say so)."""
    settings: dict[str, Any] = {"items": 60, "customers": 5, "credential_seed": 42}
    settings.update(options)
    with InforSandboxServer(SandboxOptions(**settings)) as server:
        yield server


class IonClient:
    """The least an ION API client does: fetch a token from the .ionapi file and call the gateway."""

    def __init__(self, server: InforSandboxServer) -> None:
        self.server = server
        self.ionapi = server.ionapi()
        self.http = httpx.Client(timeout=30)
        self.token: str | None = None
        self.refresh_token: str | None = None

    @property
    def token_url(self) -> str:
        return str(self.ionapi["pu"]) + str(self.ionapi["ot"])

    @property
    def api_base(self) -> str:
        return f"{self.ionapi['iu']}/{self.ionapi['ti']}"

    def password_grant(self, *, basic: bool = True) -> httpx.Response:
        form = {"grant_type": "password", "username": self.ionapi["saak"], "password": self.ionapi["sask"]}
        if basic:
            return self.http.post(self.token_url, data=form, auth=(self.ionapi["ci"], self.ionapi["cs"]))
        form |= {"client_id": self.ionapi["ci"], "client_secret": self.ionapi["cs"]}
        return self.http.post(self.token_url, data=form)

    def login(self) -> IonClient:
        response = self.password_grant()
        response.raise_for_status()
        self.token = response.json()["access_token"]
        self.refresh_token = response.json().get("refresh_token")
        return self

    def close(self) -> None:
        self.http.close()

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, path: str, *, headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        return self.http.get(self.api_base + path, headers=self.headers() | (headers or {}), **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.post(self.api_base + path, headers=self.headers(), **kwargs)

    def mi_raw(self, program: str, transaction: str, params: dict[str, Any] | None = None) -> httpx.Response:
        return self.get(f"/M3/m3api-rest/v2/execute/{program}/{transaction}", params=params or {})

    def mi(self, program: str, transaction: str, **params: Any) -> dict[str, Any]:
        """One MI call that must be HTTP 200; the v2 body."""
        response = self.mi_raw(program, transaction, params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def records(self, program: str, transaction: str, **params: Any) -> list[dict[str, str]]:
        """The records of a call that must succeed."""
        body = self.mi(program, transaction, **params)
        result = body["results"][0]
        assert "errorMessage" not in result, result
        records: list[dict[str, str]] = result["records"]
        return records

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        response = self.http.request(method, f"{self.server.base_url}/_sandbox{path}", json=body)
        assert response.status_code < 300, response.text
        return response.json()

    def create_order(
        self, cuor: str, lines: list[tuple[str, int]], cuno: str = "PS000042"
    ) -> tuple[str, str]:
        """The batch order sequence; (temporary ORNO, final ORNO)."""
        temp = self.records("OIS100MI", "AddBatchHead", CUNO=cuno, CUOR=cuor, cono=100, divi="AAA")[0]["ORNO"]
        for itno, quantity in lines:
            self.records(
                "OIS100MI", "AddBatchLine", ORNO=temp, ITNO=itno, ORQT=quantity, cono=100, divi="AAA"
            )
        confirmed = self.records("OIS100MI", "Confirm", ORNO=temp, cono=100, divi="AAA")[0]
        assert confirmed["STAT"] == "90", confirmed
        return temp, confirmed["ORNO"]


def wait_for(condition: Callable[[], Any], timeout_s: float = 10.0, interval_s: float = 0.02) -> Any:
    """Poll until ``condition()`` is truthy; its value, or AssertionError at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval_s)
