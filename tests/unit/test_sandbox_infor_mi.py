"""M3 MI REST v2 in the Infor sandbox (infor.md §2, §7 items 2-5)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox.infor.server import InforSandboxServer
from tests.unit.test_sandbox_infor_support import IonClient, ion_client, running_sandbox


@pytest.fixture
def server() -> Iterator[InforSandboxServer]:
    with running_sandbox() as started:
        # Orders stay where the test puts them: the warehouse is paused, stock does not drift.
        with ion_client(started) as admin:
            admin.admin("PUT", "/warehouse", {"paused": True, "stock_drift_interval_s": 0})
        yield started


@pytest.fixture
def client(server: InforSandboxServer) -> Iterator[IonClient]:
    with ion_client(server) as logged_in:
        yield logged_in


def test_business_error_is_http_200_with_the_error_quartet_and_the_successfull_spelling(
    client: IonClient,
) -> None:
    response = client.mi_raw("OIS100MI", "AddBatchHead", {"CUNO": "PS000999", "cono": 100, "divi": "AAA"})
    assert response.status_code == 200
    assert response.json() == {
        "results": [
            {
                "transaction": "AddBatchHead",
                "errorMessage": "Customer number PS000999 does not exist",
                "errorType": "ServerReturnedNOK",
                "errorCode": "WCU0203",
                "errorField": "CUNO",
            }
        ],
        "wasTerminated": False,
        "nrOfSuccessfullTransactions": 0,
        "nrOfFailedTransactions": 1,
    }
    ok = client.mi("MMS200MI", "GetItmBasic", ITNO="SKU-1001", cono=100)
    assert ok["nrOfSuccessfullTransactions"] == 1
    assert "nrOfSuccessfulTransactions" not in ok
    record = ok["results"][0]["records"][0]
    assert record["ITDS"] == "Blue mug"
    assert all(isinstance(value, str) for value in record.values())


def test_unknown_item_is_rejected_on_itno_and_a_blocked_item_too(client: IonClient) -> None:
    temp = client.records("OIS100MI", "AddBatchHead", CUNO="PS000042", cono=100, divi="AAA")[0]["ORNO"]
    unknown = client.mi("OIS100MI", "AddBatchLine", ORNO=temp, ITNO="SKU-NOPE", ORQT=1, cono=100)["results"][
        0
    ]
    assert (unknown["errorType"], unknown["errorField"]) == ("ServerReturnedNOK", "ITNO")
    blocked = client.mi("OIS100MI", "AddBatchLine", ORNO=temp, ITNO="SKU-BLOCKED", ORQT=1, cono=100)[
        "results"
    ][0]
    assert (blocked["errorType"], blocked["errorField"]) == ("ServerReturnedNOK", "ITNO")


def test_mandatory_and_too_long_inputs_come_from_the_field_metadata(client: IonClient) -> None:
    missing = client.mi("OIS100MI", "AddBatchHead", CUOR="PS-1", cono=100)["results"][0]
    assert missing["errorType"] == "MandatoryInputFieldNotFound"
    assert missing["errorField"] == "CUNO"
    too_long = client.mi("OIS100MI", "AddBatchHead", CUNO="PS000042", CUOR="X" * 21, cono=100)["results"][0]
    assert too_long["errorType"] == "InputFieldTooLong"
    assert too_long["errorField"] == "CUOR"
    fits = client.mi("OIS100MI", "AddBatchHead", CUNO="PS000042", CUOR="X" * 20, cono=100)
    assert fits["nrOfFailedTransactions"] == 0
    not_numeric = client.mi("OIS100MI", "AddBatchLine", ORNO="0000004711", ITNO="SKU-1001", ORQT="two")
    assert not_numeric["results"][0]["errorField"] == "ORQT"


def test_unknown_transaction_is_a_bare_400_on_get_and_transaction_not_found_in_bulk(
    client: IonClient,
) -> None:
    response = client.mi_raw("OIS100MI", "AddHead", {"CUNO": "PS000042"})
    assert response.status_code == 400
    assert "results" not in response.json()
    bulk = client.post(
        "/M3/m3api-rest/v2/execute",
        json={
            "program": "OIS100MI",
            "cono": 100,
            "divi": "AAA",
            "transactions": [
                {"transaction": "AddHead", "record": {"CUNO": "PS000042"}},
                {"transaction": "GetOrderNo", "record": {"ORNO": "0000009999"}},
            ],
        },
    )
    assert bulk.status_code == 200
    body = bulk.json()
    assert body["results"][0]["errorType"] == "TransactionNotFound"
    assert body["results"][1]["errorType"] == "ServerReturnedNOK"
    assert body["nrOfFailedTransactions"] == 2


def test_bulk_post_answers_one_result_per_transaction_with_selected_columns(client: IonClient) -> None:
    _, orno = client.create_order("PS-BULK", [("SKU-1001", 2), ("SKU-2002", 1)])
    response = client.post(
        "/M3/m3api-rest/v2/execute",
        json={
            "program": "OIS100MI",
            "cono": 100,
            "divi": "AAA",
            "excludeEmptyValues": False,
            "rightTrim": True,
            "maxReturnedRecords": 0,
            "transactions": [
                {"transaction": "GetHead", "record": {"ORNO": orno}},
                {
                    "transaction": "LstLine",
                    "record": {"ORNO": orno},
                    "selectedColumns": ["PONR", "ITNO", "ORST"],
                },
            ],
        },
    )
    body = response.json()
    assert body["nrOfSuccessfullTransactions"] == 2
    assert [result["transaction"] for result in body["results"]] == ["GetHead", "LstLine"]
    assert body["results"][0]["records"][0]["CUOR"] == "PS-BULK"
    assert body["results"][1]["records"] == [
        {"PONR": "1", "ITNO": "SKU-1001", "ORST": "22"},
        {"PONR": "2", "ITNO": "SKU-2002", "ORST": "22"},
    ]


def test_order_creation_is_not_atomic_temporary_then_final_number(client: IonClient) -> None:
    temp = client.records("OIS100MI", "AddBatchHead", CUNO="PS000042", CUOR="PS-000123", cono=100)[0]["ORNO"]
    assert temp == "0000004711"
    line = client.records("OIS100MI", "AddBatchLine", ORNO=temp, ITNO="SKU-1001", ORQT=2, cono=100)[0]
    assert line == {"PONR": "1", "POSX": "0", "ATNR": "0"}
    client.records("OIS100MI", "AddBatchHeadChg", ORNO=temp, CRID="SHIP", CRAM="5.00", cono=100)
    client.records("OIS100MI", "AddBatchAddress", ORNO=temp, ADRT=1, CUNM="Jane Doe", TOWN="Paris", cono=100)
    client.records("OIS100MI", "AddBatchText", ORNO=temp, TYPE=1, PARM="Leave at the door", cono=100)
    before = client.records("OIS100MI", "GetOrderNo", ORNO=temp, cono=100)[0]
    assert before["ORNR"] == ""
    assert before["STAT"] != "90"
    confirmed = client.records("OIS100MI", "Confirm", ORNO=temp, cono=100)[0]
    assert confirmed["STAT"] == "90"
    final = confirmed["ORNO"]
    assert final != temp
    assert client.records("OIS100MI", "GetOrderNo", ORNO=temp, cono=100)[0]["ORNR"] == final
    head = client.records("OIS100MI", "GetHead", ORNO=final, cono=100)[0]
    assert (head["CUOR"], head["ORSL"], head["ORST"]) == ("PS-000123", "22", "22")
    assert (head["NTAM"], head["VTAM"], head["TOPY"]) == ("39.80", "8.96", "53.76")
    # A blind second Confirm is refused and names the order it created: no second order.
    again = client.mi("OIS100MI", "Confirm", ORNO=temp, cono=100)["results"][0]
    assert again["errorField"] == "ORNO"
    assert final in again["errorMessage"]
    assert len(client.admin("GET", "/orders?cuor=PS-000123")) == 1


def test_a_rejected_batch_order_stays_below_90(client: IonClient) -> None:
    temp = client.records("OIS100MI", "AddBatchHead", CUNO="BLOCKED01", CUOR="PS-BLK", cono=100)[0]["ORNO"]
    client.records("OIS100MI", "AddBatchLine", ORNO=temp, ITNO="SKU-1001", ORQT=1, cono=100)
    confirmed = client.records("OIS100MI", "Confirm", ORNO=temp, cono=100)[0]
    assert confirmed == {"ORNO": temp, "STAT": "15"}
    batches = client.records("OIS100MI", "LstBatchHead", CUOR="PS-BLK", cono=100, maxrecs=0)
    assert [(b["ORNO"], b["STAT"], b["ORNR"]) for b in batches] == [(temp, "15", "")]
    assert client.admin("GET", "/orders?cuor=PS-BLK") == []
    empty = client.records("OIS100MI", "AddBatchHead", CUNO="PS000042", cono=100)[0]["ORNO"]
    assert client.records("OIS100MI", "Confirm", ORNO=empty, cono=100)[0]["STAT"] == "25"


def test_an_order_is_found_again_by_cuor(client: IonClient) -> None:
    _, orno = client.create_order("PS-FIND-ME", [("SKU-1001", 1)])
    client.create_order("PS-OTHER", [("SKU-1001", 1)])
    found = client.records("OIS100MI", "SearchHead", SQRY="CUOR:PS-FIND-ME", cono=100, maxrecs=0)
    assert [record["ORNO"] for record in found] == [orno]
    by_customer = client.records("OIS100MI", "LstHead", CUNO="PS000042", cono=100, maxrecs=0)
    assert [r["ORNO"] for r in by_customer if r["CUOR"] == "PS-FIND-ME"] == [orno]
    assert client.records("OIS100MI", "SearchHead", SQRY="CUOR:PS-NEVER", cono=100) == []


def test_omitting_cono_lands_in_the_service_accounts_default_company(client: IonClient) -> None:
    default = client.records("CRS610MI", "GetBasicData", CUNO="PS000042")[0]
    explicit = client.records("CRS610MI", "GetBasicData", CUNO="PS000042", cono=100)[0]
    other = client.records("CRS610MI", "GetBasicData", CUNO="PS000042", cono=200)[0]
    assert default["CUNM"] == explicit["CUNM"] == "Jane Doe"
    assert other["CUNM"] == "Someone else entirely"
    # Data is per company: company 200 does not know company 100's items.
    missing = client.mi("MMS200MI", "GetItmBasic", ITNO="SKU-1001", cono=200)["results"][0]
    assert missing["errorField"] == "ITNO"
    unauthorized = client.mi("MMS200MI", "GetItmBasic", ITNO="SKU-1001", cono=999)["results"][0]
    assert (unauthorized["errorCode"], unauthorized["errorField"]) == ("XAU0008", "CONO")
    wrong_division = client.mi("MMS200MI", "GetItmBasic", ITNO="SKU-1001", cono=100, divi="ZZZ")["results"][0]
    assert wrong_division["errorField"] == "DIVI"


def test_strings_fixed_width_and_date_formats(client: IonClient) -> None:
    trimmed = client.records("MMS200MI", "GetItmBasic", ITNO="SKU-1001", cono=100)[0]
    padded = client.records("MMS200MI", "GetItmBasic", ITNO="SKU-1001", cono=100, righttrim="false")[0]
    assert trimmed["ITNO"] == "SKU-1001"
    assert padded["ITNO"] == "SKU-1001".ljust(15)
    assert padded["ITDS"] == "Blue mug".ljust(30)
    lmdt = trimmed["LMDT"]
    assert len(lmdt) == 8
    assert lmdt.isdigit()
    dashed = client.records("MMS200MI", "GetItmBasic", ITNO="SKU-1001", cono=100, dateformat="YMD8-")[0]
    assert dashed["LMDT"] == f"{lmdt[:4]}-{lmdt[4:6]}-{lmdt[6:]}"
    sparse = client.records("MMS200MI", "GetItmBasic", ITNO="SKU-1001", cono=100, excludeempty="true")[0]
    assert "ITNE" in trimmed
    assert "ITNE" not in sparse


def test_matrix_parameters_and_returncols(client: IonClient) -> None:
    response = client.get(
        "/M3/m3api-rest/v2/execute/MMS200MI/LstItmByItm;maxrecs=3;returncols=ITNO,STAT?ITNO=SKU-1"
    )
    body = response.json()
    assert [set(record) for record in body["results"][0]["records"]] == [{"ITNO", "STAT"}] * 3


def test_maxrecs_truncates_silently_and_zero_means_unlimited(client: IonClient) -> None:
    unlimited = client.records("MMS200MI", "LstItmByItm", ITNO="SKU", cono=100, maxrecs=0)
    assert len(unlimited) == 64  # 60 seeded + the four named items
    two = client.mi("MMS200MI", "LstItmByItm", ITNO="SKU", cono=100, maxrecs=2)
    assert two["nrOfFailedTransactions"] == 0  # truncation is not an error
    assert [r["ITNO"] for r in two["results"][0]["records"]] == [r["ITNO"] for r in unlimited[:2]]
    refused = client.mi("MMS200MI", "LstItmByItm", ITNO="", cono=100)["results"][0]
    assert refused["errorType"] == "MandatoryInputFieldNotFound"


def test_maxrecs_default_is_100_and_positionkey_pages_on() -> None:
    with running_sandbox(items=150) as big, ion_client(big) as client:
        everything = client.records("MMS200MI", "LstItmByItm", ITNO="SKU", cono=100, maxrecs=0)
        assert len(everything) == 154
        first = client.mi_raw("MMS200MI", "LstItmByItm", {"ITNO": "SKU", "cono": 100})
        page = first.json()["results"][0]["records"]
        assert len(page) == 100  # truncated without any error: the caller must ask for more
        position = first.headers["positionkey"]
        second = client.get(
            "/M3/m3api-rest/v2/execute/MMS200MI/LstItmByItm",
            params={"ITNO": "SKU", "cono": 100, "maxrecs": 100},
            headers={"positionkey": position},
        )
        rest = second.json()["results"][0]["records"]
        assert "positionkey" not in second.headers
        assert [r["ITNO"] for r in page + rest] == [r["ITNO"] for r in everything]


def test_lmts_feeds_list_changes_since_a_timestamp(client: IonClient) -> None:
    everything = client.records("OIS100MI", "LstNewBalances", LMTS=0, cono=100, maxrecs=0)
    newest = max(int(record["LMTS"]) for record in everything)
    assert client.records("OIS100MI", "LstNewBalances", LMTS=newest, cono=100, maxrecs=0) == []
    client.admin("PUT", "/balances/001/SKU-2002", {"stqt": 7})
    changed = client.records("OIS100MI", "LstNewBalances", LMTS=newest, cono=100, maxrecs=0)
    assert [(r["ITNO"], r["AV01"]) for r in changed] == [("SKU-2002", "7")]
    assert int(changed[0]["LMTS"]) > newest
    customers = client.records("CRS610MI", "LstByNumber", CUNO="", cono=100, maxrecs=0)
    newest_customer = max(int(record["LMTS"]) for record in customers)
    client.records("CRS610MI", "ChgBasicData", CUNO="PS000042", PHNO="+33111111111", cono=100)
    since = client.records("CRS610MI", "LstByNumber", LMTS=newest_customer, cono=100, maxrecs=0)
    assert [(r["CUNO"], r["PHNO"]) for r in since] == [("PS000042", "+33111111111")]


def test_customers_items_balances_and_no_invented_email_search(client: IonClient) -> None:
    added = client.records(
        "CRS610MI", "Add", CUTM="WEBTEMPL", CUNM="New Person", CUA1="1 Road", MAIL="new@example.com", cono=100
    )[0]
    cuno = added["CUNO"]
    assert client.records("CRS610MI", "GetBasicData", CUNO=cuno, cono=100)[0]["MAIL"] == "new@example.com"
    duplicate = client.mi("CRS610MI", "Add", CUTM="WEBTEMPL", CUNM="X", CUA1="Y", CUNO=cuno, cono=100)
    assert duplicate["results"][0]["errorField"] == "CUNO"
    # The spec names no e-mail search in CRS610MI: a client pages LstByNumber and compares MAIL.
    assert client.mi_raw("CRS610MI", "SearchCustomer", {"SQRY": "new@example.com"}).status_code == 400
    listed = client.records("CRS610MI", "LstByNumber", CUNO="", cono=100, maxrecs=0)
    assert [r["CUNO"] for r in listed if r["MAIL"] == "new@example.com"] == [cuno]
    balance = client.records("MMS200MI", "GetItmWhsBal", WHLO="001", ITNO="SKU-1001", cono=100)[0]
    assert (balance["STQT"], balance["ALQT"], balance["AV01"]) == ("125", "0", "125")
    by_date = client.records("MMS200MI", "LstItmByChgDate", FLMD="20000101", cono=100, maxrecs=0)
    assert len(by_date) == 64
    listing = client.records("MMS060MI", "List", WHLO="001", ITNO="SKU-1001", cono=100)
    assert [(r["ITNO"], r["STQT"]) for r in listing] == [("SKU-1001", "125")]
