"""Reference §1.6 request examples against the sandbox: every filter operator, display, sort, limit,
language and schema, with the documented 400 codes."""

from __future__ import annotations

import pytest

from tests.unit.test_sandbox_prestashop_support import client, error_codes, xml

pytestmark = pytest.mark.timeout(30)


def _ids(tc: object, query: str) -> list[int]:
    from fastapi.testclient import TestClient

    assert isinstance(tc, TestClient)
    answer = tc.get(f"/api/customers?{query}&sort=[id_ASC]&output_format=JSON").json()
    return [row["id"] for row in answer["customers"]] if answer else []


def test_filter_operators() -> None:
    with client() as (tc, app):
        store = app.sandbox.store
        everyone = sorted(store.tables["customers"])
        assert _ids(tc, "filter[id]=[5]") == [5]
        assert _ids(tc, "filter[id]=[3|7|9]") == [3, 7, 9]
        assert _ids(tc, "filter[id]=[4,8]") == [4, 5, 6, 7, 8]  # BETWEEN, inclusive
        assert _ids(tc, "filter[id]=[8,4]") == [4, 5, 6, 7, 8]  # bounds are sorted first
        assert _ids(tc, "filter[id]=>[27]") == [i for i in everyone if i > 27]
        assert _ids(tc, "filter[id]=<[3]") == [1, 2]
        assert _ids(tc, "filter[id]=![1|2]") == everyone[2:]
        assert _ids(tc, "filter[id]=12") == [12]  # bare value
        first = store.get("customers", 1)
        assert first is not None
        email = first.text("email")
        local = email.split("@")[0]
        assert 1 in _ids(tc, f"filter[email]=[{local.upper()}]%25")  # LIKE prefix, case-insensitive
        assert _ids(tc, "filter[email]=%25[@example.com]") == everyone  # LIKE suffix
        assert 1 in _ids(tc, f"filter[email]=%25[{local[2:]}]%25")  # LIKE contains
        assert _ids(tc, f"filter[email]=[{email}]") == [c.id for c in store.find("customers", "email", email)]
        assert _ids(tc, "filter[id]=[5]&filter[lastname]=[nobody]") == []


def test_filter_and_display_errors() -> None:
    with client() as (tc, _):
        cases = {
            "/api/customers?filter[nope]=[1]": 32,
            "/api/customers?filter[lastname]=": 33,
            "/api/products?filter[quantity]=[1]": 34,
            "/api/customers?display=[id,nope]": 35,
            "/api/customers?display=id,email": 36,
            "/api/customers?sort=[id_UP]": 37,
            "/api/customers?sort=[nope_ASC]": 38,
            "/api/customers?limit=1,2,3": 39,
            "/api/customers?schema=full": 28,
            "/api/customers?language=9": 81,
            "/api/custmers": 27,
        }
        for url, code in cases.items():
            r = tc.get(url)
            assert r.status_code == 400, url
            assert error_codes(r.text) == [code], url
        assert 'Did you mean: "customers"?' in tc.get("/api/custmers").text
        assert 'Did you mean: "lastname"?' in tc.get("/api/customers?filter[lastnam]=[x]").text


def test_display_fields_and_association_sub_fields() -> None:
    with client() as (tc, _):
        orders = tc.get(
            "/api/orders?display=[id,reference,order_rows[product_id,product_quantity]]&limit=3&output_format=JSON"
        ).json()["orders"]
        assert len(orders) == 3
        for order in orders:
            assert set(order) == {"id", "reference", "associations"}
            for row in order["associations"]["order_rows"]:
                assert set(row) == {"product_id", "product_quantity"}
        minimum = xml(tc.get("/api/orders?limit=2").text)
        items = minimum.findall("orders/order")
        assert [i.get("id") for i in items] == ["1", "2"]
        assert items[0].get("{http://www.w3.org/1999/xlink}href") == "http://shop.test/api/orders/1"
        full = xml(tc.get("/api/products?display=full&limit=1").text).find("products/product")
        assert full is not None
        assert full.find("associations/stock_availables") is not None
        assert full.find("quantity") is not None
        assert full.find("quantity").get("notFilterable") == "true"  # type: ignore[union-attr]


def test_sort_on_last_underscore_and_limit_window() -> None:
    with client() as (tc, app):
        rows = tc.get(
            "/api/orders?date=1&sort=[date_upd_DESC,id_ASC]&display=[id,date_upd]&limit=2,5&output_format=JSON"
        ).json()["orders"]
        expected = sorted(app.sandbox.store.all("orders"), key=lambda o: (-_ts(o.text("date_upd")), o.id))[
            2:7
        ]
        assert [r["id"] for r in rows] == [o.id for o in expected]
        by_name = tc.get("/api/customers?sort=lastname_ASC&display=[lastname]&output_format=JSON").json()
        names = [c["lastname"] for c in by_name["customers"]]
        assert names == sorted(names, key=str.casefold)
        assert len(tc.get("/api/customers?limit=4&output_format=JSON").json()["customers"]) == 4


def _ts(text: str) -> float:
    return float(text.replace("-", "").replace(" ", "").replace(":", ""))


def test_language_selection_and_schemas() -> None:
    with client() as (tc, _):
        node = xml(tc.get("/api/order_states/2?language=[2]").text).find("order_state/name")
        assert node is not None
        assert [n.get("id") for n in node] == ["2"]
        both = xml(tc.get("/api/order_states/2?language=[1,2]").text).find("order_state/name")
        assert both is not None
        assert len(list(both)) == 2
        blank = xml(tc.get("/api/customers?schema=blank").text).find("customer")
        assert blank is not None
        assert blank.find("secure_key") is None  # read-only on 8.1: not in the blank template
        assert blank.find("passwd") is not None
        synopsis = xml(tc.get("/api/customers?schema=synopsis").text).find("customer")
        assert synopsis is not None
        assert synopsis.find("id") is None
        email = synopsis.find("email")
        assert email is not None
        assert email.get("required") == "true"
        assert email.get("format") == "isEmail"
        secure = synopsis.find("secure_key")
        assert secure is not None
        assert secure.get("readOnly") == "true"


def test_list_filters_are_served_from_indexes_at_scale() -> None:
    with client() as (tc, app):
        store = app.sandbox.store
        order = store.get("orders", 5)
        assert order is not None
        rows = tc.get("/api/order_details?filter[id_order]=[5]&display=full&output_format=JSON").json()
        assert {r["id_order"] for r in rows["order_details"]} == {"5"}
        assert len(rows["order_details"]) == len(store.find("order_details", "id_order", "5"))
        assert tc.get(
            "/api/order_details?filter[id_order]=[05]&output_format=JSON"
        ).json()  # numeric equality
