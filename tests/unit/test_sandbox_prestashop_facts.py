"""Reference §7, the ten facts, each shown against the sandbox (one test group per fact)."""

from __future__ import annotations

import hashlib
import json

import httpx
import pytest

from sandbox.prestashop.config import KeyPermissions, WebhookConfig, WebhookTarget
from sandbox.prestashop.server import SandboxServer
from tests.unit.test_sandbox_prestashop_support import KEY, Recorder, body, client, config, error_codes, xml

pytestmark = pytest.mark.timeout(60)


# 1. Writes are XML only; JSON output only for the exact value "JSON".
def test_fact1_json_body_is_500_code_127_and_only_uppercase_json_selects_json() -> None:
    with client() as (tc, _):
        r = tc.post("/api/customers", content=b'{"customer":{"email":"a@b.c"}}')
        assert r.status_code == 500
        assert error_codes(r.text) == [127]
        assert "String could not be parsed as XML" in r.text
        assert tc.get("/api/orders?output_format=json").headers["content-type"].startswith("text/xml")
        assert tc.get("/api/orders?output_format=JSON").headers["content-type"] == "application/json"
        assert tc.get("/api/orders", headers={"Output-Format": "JSON"}).json()["orders"]
        assert tc.get("/api/orders", headers={"Io-Format": "JSON"}).json()["orders"]
        assert tc.get("/api/orders?io_format=JSON").json()["orders"]
        # the header wins over the query parameter, as in getOutputObject
        assert tc.get("/api/orders?output_format=JSON", headers={"Io-Format": "xml"}).text.startswith("<?xml")


# 2. JSON shape quirks.
def test_fact2_single_vs_list_wrapping_and_bare_empty_list() -> None:
    with client() as (tc, _):
        single = tc.get("/api/orders/1?output_format=JSON").json()
        assert list(single) == ["order"]
        assert single["order"]["id"] == 1
        assert isinstance(single["order"]["id_customer"], str)
        wrapped = tc.get("/api/orders/1?display=full&output_format=JSON").json()
        assert list(wrapped) == ["orders"]
        assert [o["id"] for o in wrapped["orders"]] == [1]
        listed = tc.get("/api/orders?display=[id]&limit=2&output_format=JSON").json()
        assert listed == {"orders": [{"id": 1}, {"id": 2}]}
        empty = tc.get("/api/orders?filter[id]=[999999]&output_format=JSON")
        assert empty.status_code == 200
        assert empty.text == "[]"


def _zero_stock_row(app_sandbox_store: object) -> int:
    from sandbox.prestashop.store import Store

    assert isinstance(app_sandbox_store, Store)
    for row in app_sandbox_store.all("stock_availables"):
        if row.num("id_product_attribute") == 0:
            app_sandbox_store.update("stock_availables", row, {"quantity": "0"})
            return row.id
    raise AssertionError("no product-level stock row")


@pytest.mark.parametrize(("version", "dropped"), [("8.1.7", True), ("9.1.0", True), ("1.7.8.8", False)])
def test_fact2_single_entity_json_omits_falsy_fields_on_8_and_9(version: str, dropped: bool) -> None:
    with client(config(version=version)) as (tc, app):
        row_id = _zero_stock_row(app.sandbox.store)
        single = tc.get(f"/api/stock_availables/{row_id}?output_format=JSON").json()["stock_available"]
        assert ("quantity" not in single) is dropped
        assert ("id_product_attribute" not in single) is dropped
        full = tc.get(f"/api/stock_availables/{row_id}?display=full&output_format=JSON").json()
        assert full["stock_availables"][0]["quantity"] == "0"
        # "0.000000" is truthy in PHP: kept even on 8.x
        product = tc.get("/api/products/1?output_format=JSON").json()["product"]
        assert product["width"] == "0.000000"


def test_fact2_i18n_is_a_string_with_one_language_and_a_list_with_several() -> None:
    with client() as (tc, _):
        several = tc.get("/api/products/1?output_format=JSON").json()["product"]["name"]
        assert isinstance(several, list)
        assert [item["id"] for item in several] == ["1", "2"]
        one = tc.get("/api/products/1?language=1&output_format=JSON").json()["product"]["name"]
        assert isinstance(one, str)
        assert one == several[0]["value"]
        names = xml(tc.get("/api/products/1").text).find("product/name")
        assert names is not None
        assert [lang.get("id") for lang in names] == ["1", "2"]


# 3. PUT is a full replace; PATCH partial (8.x+ only).
def test_fact3_put_nulls_omitted_fields_resets_date_add_and_takes_id_from_body() -> None:
    with client() as (tc, app):
        before = app.sandbox.store.get("addresses", 1)
        assert before is not None
        old_date_add = before.text("date_add")
        assert before.text("phone") != ""
        put = body(
            "address",
            id="1",
            id_country="8",
            alias="Home",
            lastname="Doe",
            firstname="J",
            address1="x",
            city="Y",
        )
        r = tc.put("/api/addresses/2", content=put)  # the URL id is ignored
        assert r.status_code == 200
        node = xml(r.text).find("address")
        assert node is not None
        assert node.findtext("id") == "1"
        assert node.findtext("phone") == ""
        assert node.findtext("lastname") == "Doe"
        assert node.findtext("date_add") != old_date_add
        patched = tc.patch("/api/addresses/1", content=body("address", id="1", city="Lyon"))
        assert patched.status_code == 200
        assert xml(patched.text).findtext("address/lastname") == "Doe"
        assert xml(patched.text).findtext("address/city") == "Lyon"


def test_fact3_patch_is_405_code_23_on_1_7() -> None:
    with client(config(version="1.7.8.8")) as (tc, _):
        r = tc.patch("/api/addresses/1", content=body("address", id="1", city="Lyon"))
        assert r.status_code == 405
        assert error_codes(r.text) == [23]


# 4. Read-only fields are a hard 400 code 93; unknown fields are ignored.
def test_fact4_read_only_fields_are_400_code_93() -> None:
    with client() as (tc, app):
        customer = app.sandbox.store.get("customers", 1)
        assert customer is not None
        fields = {
            "id": "1",
            "passwd": "secret12",
            "lastname": "L",
            "firstname": "F",
            "email": customer.text("email"),
        }
        r = tc.put("/api/customers/1", content=body("customer", secure_key="abc", **fields))
        assert r.status_code == 400
        assert error_codes(r.text) == [93]
        assert 'parameter "secure_key" not writable' in r.text
        r = tc.patch("/api/products/1", content=body("product", id="1", quantity="5"))
        assert error_codes(r.text) == [93]
        r = tc.patch("/api/products/1", content=body("product", id="1", manufacturer_name="x"))
        assert error_codes(r.text) == [93]
        # unknown elements are silently ignored; a PUT without secure_key wipes it (issue #42206)
        r = tc.put("/api/customers/1", content=body("customer", no_such_field="x", **fields))
        assert r.status_code == 200
        assert xml(r.text).findtext("customer/secure_key") == ""


def test_fact4_customer_secure_key_is_writable_on_1_7() -> None:
    with client(config(version="1.7.8.8")) as (tc, app):
        customer = app.sandbox.store.get("customers", 1)
        assert customer is not None
        fields = {
            "id": "1",
            "passwd": "secret12",
            "lastname": "L",
            "firstname": "F",
            "email": customer.text("email"),
        }
        r = tc.put("/api/customers/1", content=body("customer", secure_key="a" * 32, **fields))
        assert r.status_code == 200
        assert xml(r.text).findtext("customer/secure_key") == "a" * 32


# 5. 404 with empty body; 401 for resource permission; duplicate email 500; plain-text 401 without key.
def test_fact5_statuses() -> None:
    limited = KeyPermissions("LIMITEDKEY0123456789ABCDEFGHIJKL", resources={"products": frozenset({"GET"})})
    with client(config(keys=(KeyPermissions(KEY), limited))) as (tc, app):
        missing = tc.get("/api/orders/424242")
        assert missing.status_code == 404
        assert missing.content == b""
        denied = tc.get("/api/orders", auth=(limited.key, ""))
        assert denied.status_code == 401
        assert error_codes(denied.text) == [26]
        assert "WWW-Authenticate" in denied.headers
        email = app.sandbox.store.get("customers", 1)
        assert email is not None
        dup = tc.post(
            "/api/customers",
            content=body(
                "customer", passwd="secret12", lastname="L", firstname="F", email=email.text("email")
            ),
        )
        assert dup.status_code == 500
        assert error_codes(dup.text) == [140, 46]
        anonymous = tc.get("/api/orders", auth=None)
        assert anonymous.status_code == 401
        assert anonymous.text == "401 Unauthorized"
        assert anonymous.headers["content-type"].startswith("text/plain")
        assert anonymous.headers["www-authenticate"].startswith(
            'Basic realm="Welcome to PrestaShop Webservice'
        )


# 6. Dates need date=1; BETWEEN is inclusive on both ends; shop-local dates with 1 s granularity.
def test_fact6_date_filters_need_date_1_and_between_is_inclusive() -> None:
    with client() as (tc, app):
        r = tc.get("/api/orders?filter[date_upd]=[2020-01-01 00:00:00,2030-01-01 00:00:00]")
        assert error_codes(r.text) == [32]
        r = tc.get("/api/orders?sort=[date_upd_ASC]")
        assert error_codes(r.text) == [38]
        order = app.sandbox.store.get("orders", 3)
        assert order is not None
        stamp = order.text("date_upd")
        assert len(stamp) == 19
        same = tc.get(
            f"/api/orders?date=1&filter[date_upd]=[{stamp},{stamp}]&display=[id,date_upd]&output_format=JSON"
        ).json()["orders"]
        assert 3 in [o["id"] for o in same]
        assert all(o["date_upd"] == stamp for o in same)


# 7. limit=offset,count paging with an explicit sort and a short last page.
def test_fact7_paging_to_a_short_page_visits_every_row_once() -> None:
    with client() as (tc, app):
        seen: list[int] = []
        offset = 0
        while True:
            page = tc.get(f"/api/customers?sort=[id_DESC]&limit={offset},7&output_format=JSON").json()
            rows = page["customers"] if page else []
            seen += [row["id"] for row in rows]
            if len(rows) < 7:
                break
            offset += 7
        assert seen == sorted(app.sandbox.store.tables["customers"], reverse=True)


# 8. Status changes through POST order_histories, with side effects and no dedupe.
def test_fact8_order_history_side_effects() -> None:
    with client() as (tc, app):
        store = app.sandbox.store
        states = tc.get(
            "/api/configurations?filter[name]=[PS_OS_PAYMENT|PS_OS_CANCELED]&display=[name,value]"
            "&output_format=JSON"
        ).json()["configurations"]
        by_key = {row["name"]: int(row["value"]) for row in states}
        order = next(o for o in store.all("orders") if o.text("current_state") in ("1", "10", "13"))
        detail = store.find("order_details", "id_order", str(order.id))[0]
        stock = app.sandbox.shop.stock_row(detail.num("product_id"), detail.num("product_attribute_id"))
        assert stock is not None
        stock_before = stock.num("quantity")
        history = body("order_history", id_order=str(order.id), id_order_state=str(by_key["PS_OS_PAYMENT"]))
        r = tc.post("/api/order_histories?sendemail=1", content=history)
        assert r.status_code == 201
        assert order.text("current_state") == str(by_key["PS_OS_PAYMENT"])
        assert order.text("valid") == "1"
        assert order.num("invoice_number") > 0
        assert store.find("order_invoices", "id_order", str(order.id))
        payments = store.find("order_payments", "order_reference", order.text("reference"))
        assert sum(float(p.text("amount")) for p in payments) == pytest.approx(
            float(order.text("total_paid_tax_incl"))
        )
        again = tc.post("/api/order_histories", content=history)
        assert again.status_code == 201
        rows = tc.get(
            f"/api/order_histories?filter[id_order]=[{order.id}]&display=full&output_format=JSON"
        ).json()
        assert (
            sum(1 for h in rows["order_histories"] if h["id_order_state"] == str(by_key["PS_OS_PAYMENT"]))
            == 2
        )
        cancel = body("order_history", id_order=str(order.id), id_order_state=str(by_key["PS_OS_CANCELED"]))
        assert tc.post("/api/order_histories", content=cancel).status_code == 201
        assert stock.num("quantity") == stock_before + detail.num("product_quantity")
        assert order.text("valid") == "0"


# 9. Changes invisible to date_upd polling.
def test_fact9_tracking_and_stock_do_not_move_date_upd_and_attr0_is_the_sum() -> None:
    with client() as (tc, app):
        store = app.sandbox.store
        carrier = store.get("order_carriers", 1)
        assert carrier is not None
        order = store.get("orders", carrier.num("id_order"))
        assert order is not None
        order_upd = order.text("date_upd")
        r = tc.patch("/api/order_carriers/1", content=body("order_carrier", id="1", tracking_number="1Z999"))
        assert r.status_code == 200
        assert order.text("date_upd") == order_upd
        assert order.text("shipping_number") == "1Z999"
        combo = next(iter(store.all("combinations")))
        product = store.get("products", combo.num("id_product"))
        assert product is not None
        product_upd = product.text("date_upd")
        row = app.sandbox.shop.stock_row(product.id, combo.id)
        assert row is not None
        r = tc.patch(
            f"/api/stock_availables/{row.id}",
            content=body("stock_available", id=str(row.id), quantity="1234"),
        )
        assert r.status_code == 200
        assert product.text("date_upd") == product_upd
        rows = tc.get(
            f"/api/stock_availables?filter[id_product]=[{product.id}]&display=full&output_format=JSON"
        ).json()
        by_attr = {int(s["id_product_attribute"]): int(s["quantity"]) for s in rows["stock_availables"]}
        assert by_attr[0] == sum(q for a, q in by_attr.items() if a != 0)
        assert 1234 in by_attr.values()
        # payments join orders by reference, not by id
        payment = next(iter(store.all("order_payments")))
        assert store.find("orders", "reference", payment.text("order_reference"))
        assert (
            "id_order"
            not in tc.get(f"/api/order_payments/{payment.id}?output_format=JSON").json()["order_payment"]
        )


# 10. No rate limits in core; ps_webhooks modules send unsigned, synchronous raw dumps.
def test_fact10_no_rate_limit_and_ps_webhooks_mode_is_synchronous_unsigned_raw_dump() -> None:
    with Recorder() as hook:
        received = hook.received
        hooks = WebhookConfig(targets=(WebhookTarget(hook.url, ("whsec_c2VjcmV0",)),), mode="ps_webhooks")
        _run_ps_webhooks(hooks, received)


def _run_ps_webhooks(hooks: WebhookConfig, received: list[tuple[dict[str, str], bytes]]) -> None:
    with SandboxServer(config(webhooks=hooks)) as server, httpx.Client(auth=(KEY, "")) as http:
        statuses = {http.get(f"{server.api_url}products?limit=1").status_code for _ in range(50)}
        assert statuses == {200}
        r = http.patch(f"{server.api_url}customers/2", content=body("customer", id="2", lastname="Sync"))
        assert r.status_code == 200
        # synchronous: delivered before the webservice answered
        assert len(received) == 1
        headers, raw = received[0]
        assert "webhook-signature" not in headers
        payload = json.loads(raw)
        assert payload["action"] == "update"
        assert payload["entity"] == "Customer"
        assert payload["data"]["id"] == 2
        assert payload["data"]["lastname"] == "Sync"
        assert "passwd" not in payload["data"]
        assert "secure_key" not in payload["data"]


def test_content_sha1_is_sha1_of_body() -> None:
    with client() as (tc, _):
        r = tc.get("/api/orders/1")
        assert r.headers["Content-Sha1"] == hashlib.sha1(r.content, usedforsecurity=False).hexdigest()
