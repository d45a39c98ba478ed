"""The M3 MI REST v2 client and its result parsing, against MockTransport handlers and the fixtures.

Covers the reference's trap 2 (HTTP 200 is not success), trap 4 (strings, company scope: cono/divi
always sent) and trap 5 (silent truncation: maxrecs always sent, paging).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

import connectors.infor
from connectors.infor.errors import (
    AmbiguousWriteError,
    InforAuthError,
    MiBusinessError,
    UnexpectedResponseError,
)
from connectors.infor.mi import MiClient, MiTransaction, mi_record, parse_mi_response
from pipeline.errors import InvalidMessage, RetryableError

FIXTURES = Path(connectors.infor.__file__).parent / "testdata" / "m3"
BASE = "https://gw.example.test/ACME_TST"
T = TypeVar("T")


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


Handler = Callable[[httpx.Request], httpx.Response]


def client(handler: Handler, **options: Any) -> MiClient:
    return MiClient(
        httpx.AsyncClient(transport=httpx.MockTransport(handler)),
        api_base=BASE,
        cono=100,
        divi="AAA",
        **options,
    )


# --------------------------------------------------------------------------------------------- parsing


def test_ok_fixtures_parse_into_string_records() -> None:
    (head,) = parse_mi_response(fixture("OIS100MI_GetHead_ok.json"), program="OIS100MI")
    assert head.error is None
    assert head.transaction == "GetHead"
    assert head.first is not None
    assert head.first["ORST"] == "66"
    assert head.first["NTAM"] == "39.80"
    (lines,) = parse_mi_response(fixture("OIS100MI_LstLine_ok.json"), program="OIS100MI")
    assert [line["PONR"] for line in lines.records] == ["1", "2"]
    (balance,) = parse_mi_response(fixture("MMS200MI_GetItmWhsBal_ok.json"), program="MMS200MI")
    assert balance.first == {
        "CONO": "100", "WHLO": "001", "ITNO": "SKU-1001", "STQT": "125", "ALQT": "10",
        "AV01": "115", "AVAL": "125", "REQT": "0", "AV02": "115", "IDDT": "20250301", "ODDT": "20250304",
    }  # fmt: skip


def test_trap02_http_200_with_the_error_quartet_is_a_failure() -> None:
    (result,) = parse_mi_response(fixture("OIS100MI_AddBatchHead_nok.json"), program="OIS100MI")
    assert result.error is not None
    assert (result.error.error_type, result.error.error_code, result.error.error_field) == (
        "ServerReturnedNOK",
        "WCU0203",
        "CUNO",
    )
    assert result.error.error_message == "Customer number PS000999 does not exist"


def test_trap02_partial_nok_records_and_an_error_is_a_failure() -> None:
    body = fixture("OIS100MI_LstLine_ok.json")
    body["results"][0].update(errorMessage="Record lock", errorType="ServerReturnedNOK", errorCode="XRE0103")
    (result,) = parse_mi_response(body, program="OIS100MI")
    assert result.error is not None
    assert result.error.error_code == "XRE0103"


def test_trap02_misspelled_success_count_is_read() -> None:
    body = fixture("OIS100MI_GetHead_ok.json")
    body["nrOfSuccessfullTransactions"] = 0
    del body["nrOfFailedTransactions"]
    (result,) = parse_mi_response(body, program="OIS100MI")
    assert result.error is not None
    assert "0 successful of 1" in result.error.error_message
    body["nrOfSuccessfullTransactions"] = 1
    (result,) = parse_mi_response(body, program="OIS100MI")
    assert result.error is None


def test_terminated_job_and_failed_count_without_details_are_failures() -> None:
    terminated = {
        "results": [],
        "wasTerminated": True,
        "terminationReason": "Timeout",
        "terminationErrorType": "X",
    }
    (result,) = parse_mi_response(terminated, program="OIS100MI", transaction="LstLine")
    assert result.error is not None
    assert result.error.error_message == "Timeout"
    silent = {"results": [{"transaction": "GetHead", "records": []}], "nrOfFailedTransactions": 1}
    (result,) = parse_mi_response(silent, program="OIS100MI")
    assert result.error is not None


def test_legacy_v1_error_and_records() -> None:
    (nok,) = parse_mi_response(fixture("legacy_v1_nok.json"), program="CRS610MI", transaction="GetBasicData")
    assert nok.error is not None
    assert (nok.error.error_code, nok.error.error_field, nok.error.error_message) == (
        "XIM0002",
        "CUNO",
        "Customer number is invalid",  # right-trimmed
    )
    ok = {
        "Program": "TST001MI",
        "Transaction": "Lst",
        "MIRecord": [{"NameValue": [{"Name": "F001", "Value": "a  "}]}],
    }
    (result,) = parse_mi_response(ok, program="TST001MI")
    assert result.error is None
    assert result.records == ({"F001": "a"},)


def test_inputs_are_m3_strings() -> None:
    assert mi_record(
        {
            "ORQT": Decimal("2.000"),
            "SAPR": Decimal("19.90"),
            "RLDT": dt.date(2025, 3, 6),
            "CUNO": "PS1",
            "WHLO": None,
        }
    ) == {"ORQT": "2", "SAPR": "19.90", "RLDT": "20250306", "CUNO": "PS1"}
    with pytest.raises(ValueError, match="not an M3 field name"):
        mi_record({"cuno": "x"})


# ---------------------------------------------------------------------------------------------- calls


def test_trap04_trap05_get_always_sends_cono_divi_maxrecs() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=fixture("OIS100MI_GetHead_ok.json"))

    result = run(client(handler).execute("OIS100MI", "GetHead", {"ORNO": "1000012345"}))
    assert result.first is not None
    assert result.first["CUOR"] == "PS-000123"
    (request,) = seen
    assert request.method == "GET"
    assert request.url.path == "/ACME_TST/M3/m3api-rest/v2/execute/OIS100MI/GetHead"
    assert dict(request.url.params) == {"ORNO": "1000012345", "cono": "100", "divi": "AAA", "maxrecs": "0"}
    assert "fnd-csrf-token" not in request.headers


def test_business_error_raises_invalid_message_with_the_quartet() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=fixture("OIS100MI_AddBatchHead_nok.json"))

    with pytest.raises(MiBusinessError) as info:
        run(client(handler).execute("OIS100MI", "AddBatchHead", {"CUNO": "PS000999"}))
    error = info.value
    assert isinstance(error, InvalidMessage)
    assert error.reason == "m3_nok"
    assert error.field_path == "CUNO"
    assert error.details == {
        "errorType": "ServerReturnedNOK",
        "errorCode": "WCU0203",
        "errorField": "CUNO",
        "errorMessage": "Customer number PS000999 does not exist",
        "operation": "OIS100MI.AddBatchHead",
    }


def test_bulk_post_body_and_results_in_order() -> None:
    seen: list[httpx.Request] = []
    lines = fixture("OIS100MI_LstLine_ok.json")["results"][0]
    head = fixture("OIS100MI_GetHead_ok.json")["results"][0]

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            json={"results": [head, lines], "nrOfSuccessfullTransactions": 2, "nrOfFailedTransactions": 0},
        )

    results = run(
        client(handler).execute_bulk(
            "OIS100MI",
            [
                MiTransaction("GetHead", {"ORNO": "1000012345"}),
                MiTransaction(
                    "LstLine",
                    {"ORNO": "1000012345"},
                    ("PONR", "POSX", "ITNO", "ORQT", "ORST", "DLQT", "IVQT"),
                ),
            ],
        )
    )
    assert [r.transaction for r in results] == ["GetHead", "LstLine"]
    (request,) = seen
    assert request.method == "POST"
    assert request.url.path == "/ACME_TST/M3/m3api-rest/v2/execute"
    assert dict(request.url.params) == {"cono": "100", "divi": "AAA", "maxrecs": "0"}
    assert json.loads(request.content) == fixture("bulk_request_OIS100MI.json")


def test_bulk_failure_of_one_transaction_raises_or_is_reported() -> None:
    ok = fixture("OIS100MI_GetHead_ok.json")["results"][0]
    nok = fixture("OIS100MI_AddBatchHead_nok.json")["results"][0]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json={"results": [ok, nok], "nrOfSuccessfullTransactions": 1, "nrOfFailedTransactions": 1}
        )

    transactions = [MiTransaction("GetHead", {"ORNO": "1"}), MiTransaction("AddBatchHead", {"CUNO": "X"})]
    with pytest.raises(MiBusinessError):
        run(client(handler).execute_bulk("OIS100MI", transactions))
    results = run(client(handler).execute_bulk("OIS100MI", transactions, raise_on_error=False))
    assert results[0].error is None
    assert results[1].error is not None


def test_trap05_paging_by_restart_key_loses_nothing_and_repeats_nothing() -> None:
    customers = [f"C{n:04d}" for n in range(23)]
    requests: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        requests.append(params)
        start, limit = params.get("CUNO", ""), int(params["maxrecs"])
        page = [c for c in customers if c >= start][:limit]
        return httpx.Response(
            200, json={"results": [{"transaction": "LstByNumber", "records": [{"CUNO": c} for c in page]}]}
        )

    async def collect() -> list[str]:
        mi = client(handler)
        return [
            r["CUNO"]
            async for r in mi.paginate(
                "CRS610MI", "LstByNumber", {}, restart_from={"CUNO": "CUNO"}, page_size=10
            )
        ]

    assert run(collect()) == customers
    assert [r.get("CUNO") for r in requests] == [None, "C0009", "C0018"]
    assert all(r["maxrecs"] == "10" and r["cono"] == "100" for r in requests)


def test_paging_follows_a_positionkey_header_when_m3_sends_one() -> None:
    pages = {None: (["A", "B"], "pk1"), "pk1": (["C", "D"], "pk2"), "pk2": (["E"], None)}
    sent: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        key = request.headers.get("positionkey")
        sent.append(key)
        rows, nxt = pages[key]
        headers = {"positionkey": nxt} if nxt else {}
        return httpx.Response(
            200, headers=headers, json={"results": [{"records": [{"ITNO": r} for r in rows]}]}
        )

    async def collect() -> list[str]:
        mi = client(handler)
        return [
            r["ITNO"] async for r in mi.paginate("MMS200MI", "LstItmByItm", {}, restart_from={}, page_size=2)
        ]

    assert run(collect()) == ["A", "B", "C", "D", "E"]
    assert sent == [None, "pk1", "pk2"]


# ----------------------------------------------------------------------------------- status mapping


@pytest.mark.parametrize(
    ("status", "headers", "expected", "retry_after"),
    [
        (429, {"Retry-After": "12"}, RetryableError, 12.0),
        (502, {}, RetryableError, None),
        (503, {"Retry-After": "3"}, RetryableError, 3.0),
        (504, {}, RetryableError, None),
    ],
)
def test_transient_statuses_are_retryable_with_the_servers_hint(
    status: int, headers: dict[str, str], expected: type[Exception], retry_after: float | None
) -> None:
    with pytest.raises(expected) as info:
        run(
            client(lambda r: httpx.Response(status, headers=headers)).execute(
                "MMS200MI", "GetItmBasic", {"ITNO": "A"}
            )
        )
    assert isinstance(info.value, RetryableError)
    assert not isinstance(info.value, AmbiguousWriteError)
    assert (info.value.status, info.value.retry_after) == (status, retry_after)


def test_504_on_a_non_idempotent_write_is_ambiguous() -> None:
    mi = client(lambda r: httpx.Response(504))
    with pytest.raises(AmbiguousWriteError) as info:
        run(
            mi.execute(
                "OIS100MI", "Confirm", {"ORNO": "0000004711"}, idempotent=False, reference="0000004711"
            )
        )
    assert (info.value.operation, info.value.reference, info.value.status) == (
        "OIS100MI.Confirm",
        "0000004711",
        504,
    )


def test_429_on_a_write_is_plain_retryable_because_the_gateway_refused_it_first() -> None:
    mi = client(lambda r: httpx.Response(429, headers={"Retry-After": "1"}))
    with pytest.raises(RetryableError) as info:
        run(mi.execute("OIS100MI", "Confirm", {"ORNO": "1"}, idempotent=False))
    assert not isinstance(info.value, AmbiguousWriteError)


def test_timeouts_and_connection_errors() -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(RetryableError) as read:
        run(client(timeout).execute("OIS100MI", "GetHead", {"ORNO": "1"}))
    assert not isinstance(read.value, AmbiguousWriteError)
    with pytest.raises(AmbiguousWriteError):
        run(client(timeout).execute("OIS100MI", "Confirm", {"ORNO": "1"}, idempotent=False))
    with pytest.raises(RetryableError) as never_sent:
        run(client(refused).execute("OIS100MI", "Confirm", {"ORNO": "1"}, idempotent=False))
    assert not isinstance(never_sent.value, AmbiguousWriteError)


def test_bare_400_401_and_non_json_200() -> None:
    with pytest.raises(InvalidMessage) as bad:
        run(client(lambda r: httpx.Response(400, text="Bad Request")).execute("OIS100MI", "Nope"))
    assert bad.value.reason == "infor_bad_request"
    with pytest.raises(InforAuthError):
        run(client(lambda r: httpx.Response(401)).execute("OIS100MI", "GetHead"))
    with pytest.raises(UnexpectedResponseError):
        run(client(lambda r: httpx.Response(200, text="<html>login</html>")).execute("OIS100MI", "GetHead"))
