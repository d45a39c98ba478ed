"""The Infor client (connectors/infor) against the independently written Infor sandbox, over real HTTP.

Two implementations of the same spec (reference infor.md) meet here; where one deviated, the fix
went into the deviating side. No Kafka is involved, so these tests carry no integration marker:
the sandbox runs in-process on a free loopback port and every test talks to it through sockets.
Covered: the §7 items that concern client and server together, token expiry/revocation/bad
credentials, order creation and the ambiguous-504 Confirm.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
import time
from collections.abc import Awaitable, Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from connectors.infor.adapter import Address, SalesOrderLine, SalesOrderRequest
from connectors.infor.bod import parse_bod, sales_order
from connectors.infor.errors import AmbiguousWriteError, InforAuthError, MiBusinessError
from connectors.infor.gateway import open_gateway
from connectors.infor.ims import parse_multipart_message
from connectors.infor.ionapi import IonApiCredentials, ionapi_from_mapping, load_ionapi
from connectors.infor.m3 import M3Adapter, M3OrderDefaults
from connectors.infor.mi import MiTransaction
from pipeline.errors import InvalidMessage
from sandbox.infor.app import SandboxOptions
from sandbox.infor.server import InforSandboxServer

T = TypeVar("T")
ITEMS = 60
DEFAULTS = M3OrderDefaults(order_type="CO1", warehouse="001")


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


@pytest.fixture(scope="module")
def server() -> Iterator[InforSandboxServer]:
    with InforSandboxServer(SandboxOptions(items=ITEMS, customers=5, credential_seed=7)) as running:
        yield running


@pytest.fixture
def admin(server: InforSandboxServer) -> Iterator[httpx.Client]:
    """The sandbox's admin API, everything reset to defaults before the test."""
    with httpx.Client(base_url=server.base_url + "/_sandbox", timeout=30) as client:
        client.post("/reset").raise_for_status()
        client.put("/oauth", json={"access_token_lifetime_s": 7200.0, "fail_next_token_requests": 0})
        client.put("/gateway", json={"timeout_s": 60.0, "quota_window_s": 60.0})
        client.put("/ims/pusher", json={"url": None})
        yield client


@pytest.fixture
def ionapi_file(server: InforSandboxServer, tmp_path: Path) -> Path:
    return server.write_ionapi(tmp_path / "sandbox.ionapi")


@pytest.fixture
def credentials(ionapi_file: Path) -> IonApiCredentials:
    return load_ionapi(ionapi_file)


def order_request(reference: str, *, customer: str = "PS000042", sku: str = "SKU-1001") -> SalesOrderRequest:
    return SalesOrderRequest(
        external_ref=reference,
        customer_id=customer,
        currency="EUR",
        order_date=dt.date(2025, 3, 4),
        lines=(SalesOrderLine(1, sku, Decimal(2), Decimal("19.90")),),
        ship_to=Address("Jane Doe", ("12 Rue de la Paix",), "Paris", "75002", "FR"),
    )


# -- §7.1 URL and credential assembly --------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("client_auth", ["body", "basic"])
def test_the_ionapi_file_the_sandbox_writes_drives_the_client_as_is(
    admin: httpx.Client, credentials: IonApiCredentials, client_auth: str
) -> None:
    assert credentials.token_url == credentials.pu + credentials.ot
    assert credentials.token_url.endswith(f"/{credentials.ti}/as/token.oauth2")
    assert credentials.api_base == f"{credentials.iu}/{credentials.ti}"

    async def scenario() -> str:
        gateway = open_gateway(credentials, client_auth=client_auth)  # type: ignore[arg-type]
        try:
            item = await gateway.mi(cono=100, divi="AAA").execute(
                "MMS200MI", "GetItmBasic", {"ITNO": "SKU-1001"}
            )
            return (item.first or {}).get("ITDS", "")
        finally:
            await gateway.aclose()

    assert run(scenario()) == "Blue mug"
    tokens = admin.get("/tokens").json()
    assert tokens["issued"] == {"password": 1}
    assert tokens["revocations"] >= 1  # aclose revoked what it held


def test_an_app_without_service_account_is_refused_before_any_request(
    admin: httpx.Client, server: InforSandboxServer
) -> None:
    document = {k: v for k, v in server.ionapi().items() if k not in ("saak", "sask")}
    with pytest.raises(InforAuthError, match="Create Service Account"):
        open_gateway(ionapi_from_mapping(document))
    assert admin.get("/tokens").json()["issued_total"] == 0


# -- §7.2 HTTP 200 is not success ------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_m3_business_errors_with_http_200_become_invalid_message_with_the_quartet(
    admin: httpx.Client, credentials: IonApiCredentials
) -> None:
    async def scenario() -> list[BaseException]:
        gateway = open_gateway(credentials)
        mi = gateway.mi(cono=100, divi="AAA")
        failures: list[BaseException] = []
        calls = [
            mi.execute("OIS100MI", "AddBatchHead", {"CUNO": "NOSUCH", "ORTP": "CO1"}),
            mi.execute("OIS100MI", "AddBatchHead", {"ORTP": "CO1"}),
            mi.execute("OIS100MI", "AddBatchHead", {"CUNO": "PS000042", "CUOR": "X" * 21}),
            mi.execute("OIS100MI", "NoSuchTransaction", {"ORNO": "1"}),
            mi.execute_bulk(
                "MMS200MI",
                [
                    MiTransaction("GetItmBasic", {"ITNO": "SKU-1001"}),
                    MiTransaction("GetItmBasic", {"ITNO": "NOPE"}),
                ],
            ),
        ]
        try:
            for call in calls:
                try:
                    await call
                except InvalidMessage as exc:
                    failures.append(exc)
        finally:
            await gateway.aclose()
        return failures

    unknown_customer, missing, too_long, bare_400, bulk = run(scenario())
    for error, kind, field in (
        (unknown_customer, "ServerReturnedNOK", "CUNO"),
        (missing, "MandatoryInputFieldNotFound", "CUNO"),
        (too_long, "InputFieldTooLong", "CUOR"),
        (bulk, "ServerReturnedNOK", "ITNO"),
    ):
        assert isinstance(error, MiBusinessError)
        assert error.details["errorType"] == kind
        assert error.details["errorField"] == field
        assert error.field_path == field
    assert isinstance(unknown_customer, MiBusinessError)
    assert unknown_customer.reason == "m3_nok"
    assert unknown_customer.details["errorCode"]  # M3's message id travels to the DLQ headers
    assert isinstance(bare_400, InvalidMessage)
    assert bare_400.reason == "infor_bad_request"
    assert admin.get("/batch-orders").json() == []  # nothing half-built was left behind


# -- §7.3 order creation is not atomic; acceptance: CUOR lookup and the ambiguous 504 -------------


@pytest.mark.timeout(30)
def test_an_order_gets_a_final_number_different_from_the_temporary_one_and_is_found_by_cuor(
    admin: httpx.Client, credentials: IonApiCredentials
) -> None:
    async def scenario() -> tuple[Any, Any, Any]:
        gateway = open_gateway(credentials)
        adapter = M3Adapter(gateway.mi(cono=100, divi="AAA"), DEFAULTS)
        try:
            ack = await adapter.create_sales_order(order_request("PS-ORDER-1"), idempotency_key="k1")
            found = await adapter.find_order_by_external_ref("PS-ORDER-1")
            again = await adapter.create_sales_order(order_request("PS-ORDER-1"), idempotency_key="k2")
            return ack, found, again
        finally:
            await gateway.aclose()

    ack, found, again = run(scenario())
    assert ack.created
    assert ack.erp_temp_id
    assert ack.ref.erp_order_id != ack.erp_temp_id
    assert ack.status_native == "90"
    assert found is not None
    assert found.erp_order_id == ack.ref.erp_order_id
    assert not again.created
    assert again.ref.erp_order_id == ack.ref.erp_order_id
    orders = admin.get("/orders", params={"cuor": "PS-ORDER-1"}).json()
    assert [o["ORNO"] for o in orders] == [ack.ref.erp_order_id]
    view = admin.get(f"/orders/{ack.ref.erp_order_id}").json()
    assert view["temp_orno"] == ack.erp_temp_id
    assert view["addresses"]
    assert view["lines"][0]["ITNO"] == "SKU-1001"


@pytest.mark.timeout(40)
def test_a_confirm_that_executes_then_answers_504_creates_exactly_one_order(
    admin: httpx.Client, credentials: IonApiCredentials
) -> None:
    admin.put("/gateway", json={"timeout_s": 0.3}).raise_for_status()
    admin.post(
        "/faults",
        json={
            "kind": "timeout",
            "program": "OIS100MI",
            "transaction": "Confirm",
            "execute": True,
            "remaining": 1,
        },
    ).raise_for_status()
    # The reconciliation lookup right after the 504 fails too, so the outcome stays unknown and
    # the runner's retry is what has to find the order instead of creating a second one.
    admin.post(
        "/faults",
        json={
            "kind": "error",
            "status": 503,
            "program": "OIS100MI",
            "transaction": "GetOrderNo",
            "remaining": 1,
        },
    ).raise_for_status()

    async def scenario() -> tuple[BaseException | None, Any]:
        gateway = open_gateway(credentials)
        adapter = M3Adapter(gateway.mi(cono=100, divi="AAA"), DEFAULTS)
        first: BaseException | None = None
        try:
            try:
                await adapter.create_sales_order(order_request("PS-AMBIG-1"), idempotency_key="a1")
            except AmbiguousWriteError as exc:
                first = exc
            retry = await adapter.create_sales_order(order_request("PS-AMBIG-1"), idempotency_key="a2")
            return first, retry
        finally:
            await gateway.aclose()

    first, retry = run(scenario())
    assert isinstance(first, AmbiguousWriteError)
    assert first.status == 504
    orders = admin.get("/orders", params={"cuor": "PS-AMBIG-1"}).json()
    assert len(orders) == 1
    assert retry.ref.erp_order_id == orders[0]["ORNO"]
    assert len(admin.get("/batch-orders").json()) == 1
    stats = admin.get("/gateway/stats").json()
    assert stats["faults"]["timeout_executed"] == 1
    assert stats["statuses"]["504"] == 1


@pytest.mark.timeout(30)
def test_a_504_on_confirm_is_reconciled_at_once_when_m3_can_say(
    admin: httpx.Client, credentials: IonApiCredentials
) -> None:
    admin.put("/gateway", json={"timeout_s": 0.3}).raise_for_status()
    admin.post(
        "/faults",
        json={
            "kind": "timeout",
            "program": "OIS100MI",
            "transaction": "Confirm",
            "execute": True,
            "remaining": 1,
        },
    ).raise_for_status()

    async def scenario() -> Any:
        gateway = open_gateway(credentials)
        try:
            adapter = M3Adapter(gateway.mi(cono=100, divi="AAA"), DEFAULTS)
            return await adapter.create_sales_order(order_request("PS-AMBIG-2"), idempotency_key="b1")
        finally:
            await gateway.aclose()

    ack = run(scenario())
    orders = admin.get("/orders", params={"cuor": "PS-AMBIG-2"}).json()
    assert [o["ORNO"] for o in orders] == [ack.ref.erp_order_id]


# -- §7.4 company scoping --------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_cono_and_divi_are_always_sent_so_the_right_company_answers(
    admin: httpx.Client, credentials: IonApiCredentials
) -> None:
    async def scenario() -> tuple[str, str, BaseException | None]:
        gateway = open_gateway(credentials)
        try:
            other = gateway.mi(cono=200, divi="ZZZ")
            main = gateway.mi(cono=100, divi="AAA")
            # PS000042 exists in both companies with different names (the seed makes it so).
            theirs = (await other.execute("CRS610MI", "GetBasicData", {"CUNO": "PS000042"})).first or {}
            ours = (await main.execute("CRS610MI", "GetBasicData", {"CUNO": "PS000042"})).first or {}
            refused: BaseException | None = None
            try:
                await main.execute("MMS200MI", "GetItmBasic", {"ITNO": "ZZ-0001"})
            except MiBusinessError as exc:
                refused = exc
            return theirs.get("CUNM", ""), ours.get("CUNM", ""), refused
        finally:
            await gateway.aclose()

    theirs, ours, refused = run(scenario())
    assert theirs == "Someone else entirely"
    assert ours == "Jane Doe"
    assert isinstance(refused, MiBusinessError)
    assert refused.details["errorField"] == "ITNO"


# -- §7.5 silent truncation: maxrecs always sent, paging returns everything -----------------------


@pytest.mark.timeout(30)
def test_lists_are_complete_in_one_call_and_when_paged(
    admin: httpx.Client, credentials: IonApiCredentials
) -> None:
    async def scenario() -> tuple[list[str], list[str]]:
        gateway = open_gateway(credentials)
        try:
            mi = gateway.mi(cono=100, divi="AAA")
            whole = await mi.execute("MMS200MI", "LstItmByItm", {"ITNO": "SKU-"})
            paged = [
                record["ITNO"]
                async for record in mi.paginate(
                    "MMS200MI", "LstItmByItm", {"ITNO": "SKU-"}, restart_from={"ITNO": "ITNO"}, page_size=7
                )
            ]
            return [r["ITNO"] for r in whole.records], paged
        finally:
            await gateway.aclose()

    whole, paged = run(scenario())
    expected = sorted(
        {f"SKU-{1000 + n}" if n != 1 else "SKU-1000-B" for n in range(ITEMS)}
        | {"SKU-1001", "SKU-2002", "SKU-NOSTOCK", "SKU-BLOCKED"}
    )
    assert len(whole) > 100 or len(whole) == len(expected)  # more than a legacy default page would give
    assert sorted(whole) == expected
    assert paged == whole


# -- §7.6 token hygiene; acceptance: expiry under 50 callers, revocation, bad credentials ---------


@pytest.mark.timeout(60)
def test_tokens_are_renewed_once_per_expiry_under_50_concurrent_callers(
    admin: httpx.Client, credentials: IonApiCredentials
) -> None:
    lifetime, skew = 3.0, 0.5
    admin.put("/oauth", json={"access_token_lifetime_s": lifetime}).raise_for_status()
    bearer_seen: set[str] = set()
    calls = 0

    async def scenario() -> float:
        nonlocal calls
        gateway = open_gateway(credentials, expiry_skew=skew)
        gateway.http.event_hooks["request"].append(_remember_bearer(bearer_seen))
        mi = gateway.mi(cono=100, divi="AAA")
        deadline = time.monotonic() + 5.0

        async def caller() -> None:
            nonlocal calls
            while time.monotonic() < deadline:
                await mi.execute("MMS200MI", "GetItmBasic", {"ITNO": "SKU-1001"})
                calls += 1

        started = time.monotonic()
        try:
            await asyncio.gather(*(caller() for _ in range(50)))
        finally:
            await gateway.aclose()
        return time.monotonic() - started

    elapsed = run(scenario())
    tokens = admin.get("/tokens").json()
    issued = tokens["issued_total"]
    # expires_in is lifetime-1 s (as real servers answer); the client renews `skew` before that.
    usable = max(lifetime - 1 - skew, (lifetime - 1) / 2)
    assert calls > 200
    assert tokens["failures"] == {}
    assert tokens["issued"]["password"] == 1  # later renewals use the refresh token
    # One token request per expiry: never more than the run's expiries (+ the first login) ...
    assert issued <= int(elapsed / usable) + 2
    assert issued >= int(elapsed / (lifetime - 1)) - 1  # ... and the token really was renewed mid-run
    assert len(bearer_seen) == issued  # every issued token was used, none requested in vain


def _remember_bearer(seen: set[str]) -> Any:
    async def hook(request: httpx.Request) -> None:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer ") and "/as/" not in request.url.path:
            seen.add(header)

    return hook


@pytest.mark.timeout(30)
def test_a_revoked_token_is_refused_and_the_one_renewal_gets_a_fresh_login(
    admin: httpx.Client, credentials: IonApiCredentials, server: InforSandboxServer
) -> None:
    async def scenario() -> tuple[int, int, str]:
        gateway = open_gateway(credentials)
        try:
            mi = gateway.mi(cono=100, divi="AAA")
            await mi.execute("MMS200MI", "GetItmBasic", {"ITNO": "SKU-1001"})
            old = (await gateway.auth.token()).access_token.get_secret_value()
            # An administrator revokes the app's grant behind the client's back.
            async with httpx.AsyncClient() as other:
                revoked = await other.post(
                    credentials.revoke_url,
                    data={"token": old, "token_type_hint": "access_token"},
                    auth=(credentials.ci, credentials.cs.get_secret_value()),
                )
                assert revoked.status_code == 200
                refused = await other.get(
                    f"{credentials.api_base}/M3/m3api-rest/v2/execute/MMS200MI/GetItmBasic",
                    params={"ITNO": "SKU-1001", "cono": "100", "divi": "AAA", "maxrecs": "0"},
                    headers={"Authorization": f"Bearer {old}"},
                )
            # The client's next call meets the 401, renews once (refresh refused: revoked grant;
            # the service account logs in again) and replays the call once.
            item = await mi.execute("MMS200MI", "GetItmBasic", {"ITNO": "SKU-2002"})
            return refused.status_code, revoked.status_code, (item.first or {}).get("ITDS", "")
        finally:
            await gateway.aclose()

    refused, _, description = run(scenario())
    assert refused == 401
    assert description == "Red plate"
    tokens = admin.get("/tokens").json()
    assert tokens["rejected"]["revoked_token"] == 2  # our probe and the client's first attempt
    assert tokens["failures"] == {"invalid_grant": 1}  # the refresh token died with its grant
    assert tokens["issued"] == {"password": 2}


@pytest.mark.timeout(30)
def test_when_renewal_after_a_401_fails_the_call_fails_with_the_credentials_named(
    admin: httpx.Client, credentials: IonApiCredentials
) -> None:
    async def scenario() -> BaseException | None:
        gateway = open_gateway(credentials)
        try:
            mi = gateway.mi(cono=100, divi="AAA")
            await mi.execute("MMS200MI", "GetItmBasic", {"ITNO": "SKU-1001"})
            await gateway.auth.aclose()  # revoke what the client holds ...
            failing = await asyncio.to_thread(admin.put, "/oauth", json={"fail_next_token_requests": 5})
            failing.raise_for_status()
            try:
                await mi.execute("MMS200MI", "GetItmBasic", {"ITNO": "SKU-1001"})
            except InforAuthError as exc:
                return exc
            return None
        finally:
            await gateway.http.aclose()

    error = run(scenario())
    assert isinstance(error, InforAuthError)
    assert "saak/sask" in str(error)


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("field", "named"), [("sask", "saak/sask"), ("cs", "ci/cs")], ids=["service-account", "client-secret"]
)
def test_bad_credentials_fail_fast_with_one_token_request_for_50_callers(
    admin: httpx.Client, server: InforSandboxServer, field: str, named: str
) -> None:
    document = server.ionapi() | {field: "wrong-secret"}
    credentials = ionapi_from_mapping(document)

    async def scenario() -> list[BaseException | str]:
        gateway = open_gateway(credentials)
        mi = gateway.mi(cono=100, divi="AAA")
        try:
            return await asyncio.gather(
                *(mi.execute("MMS200MI", "GetItmBasic", {"ITNO": "SKU-1001"}) for _ in range(50)),
                return_exceptions=True,
            )  # type: ignore[return-value]
        finally:
            await gateway.http.aclose()

    started = time.monotonic()
    outcomes = run(scenario())
    assert time.monotonic() - started < 5
    assert all(isinstance(o, InforAuthError) for o in outcomes)
    assert named in str(outcomes[0])
    assert "wrong-secret" not in str(outcomes[0])
    tokens = admin.get("/tokens").json()
    assert sum(tokens["failures"].values()) == 1
    assert tokens["issued_total"] == 0


# -- §7.8/§7.9 the BOD envelope pushed by the sandbox's IMS, parsed by connectors/infor/bod.py ----


class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[str, bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.received.append((self.headers.get("Content-Type", ""), body))  # type: ignore[attr-defined]
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        del format, args


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    received: list[tuple[str, bytes]] = []
    httpd.received = received  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/ims", received
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("encoding", ["NONE", "DEFLATE"])
def test_a_sync_sales_order_pushed_by_ims_parses_with_its_envelope(
    admin: httpx.Client,
    credentials: IonApiCredentials,
    receiver: tuple[str, list[tuple[str, bytes]]],
    encoding: str,
) -> None:
    url, received = receiver
    # The module's sandbox still advances the orders of earlier tests; paused, its warehouse adds no
    # traffic, so "pusher idle" means this order's BOD went out (the trickle otherwise never idles).
    admin.put("/warehouse", json={"paused": True}).raise_for_status()
    admin.put(
        "/ims/pusher", json={"url": url, "encoding": encoding, "nouns": ["SalesOrder"]}
    ).raise_for_status()

    async def scenario() -> Any:
        gateway = open_gateway(credentials)
        try:
            adapter = M3Adapter(gateway.mi(cono=100, divi="AAA"), DEFAULTS)
            return await adapter.create_sales_order(order_request("PS-BOD-1"), idempotency_key="c1")
        finally:
            await gateway.aclose()

    ack = run(scenario())
    assert admin.post("/ims/pusher/wait", json={"timeout_s": 10}).status_code == 200
    messages = [parse_multipart_message(body, content_type) for content_type, body in received]
    orders = [m for m in messages if m.parameters.document_name == "Sync.SalesOrder"]
    assert orders, [m.parameters.document_name for m in messages]
    bod = parse_bod(orders[0].payload)
    assert bod.document_name == "Sync.SalesOrder"
    assert bod.bodid
    assert bod.logical_id == orders[0].parameters.from_logical_id
    assert bod.tenant_id == credentials.ti
    assert bod.entity_id == ack.ref.erp_order_id
    assert bod.variation_id
    view = sales_order(bod)
    assert view.customer_reference == "PS-BOD-1"
    assert [line.sku for line in view.lines] == ["SKU-1001"]
    assert json.loads(json.dumps(bod.identity))  # the dedupe key is plain data
