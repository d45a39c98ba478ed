"""Writes, auth and protocol details: POST/PUT/PATCH/DELETE rules and codes, permissions, headers,
conditional GET, the dispatcher route and the admin API's checkout."""

from __future__ import annotations

import pytest

from sandbox.prestashop.config import KeyPermissions
from tests.unit.test_sandbox_prestashop_support import KEY, body, client, config, error_codes, xml

pytestmark = pytest.mark.timeout(30)


def test_post_returns_201_with_the_full_entity_and_write_errors_have_their_codes() -> None:
    with client() as (tc, app):
        created = tc.post(
            "/api/customers",
            content=body(
                "customer",
                passwd="secret12",
                lastname="Doe",
                firstname="Jane",
                email="new@example.org",
                unknown="ignored",
            ),
        )
        assert created.status_code == 201
        node = xml(created.text).find("customer")
        assert node is not None
        new_id = int(node.findtext("id") or 0)
        assert node.findtext("passwd", "").startswith("$2y$")  # hashed, never echoed in clear
        assert len(node.findtext("secure_key", "")) == 32
        assert node.findtext("date_add") == node.findtext("date_upd")
        assert app.sandbox.store.get("customers", new_id) is not None
        assert error_codes(tc.post("/api/customers", content=body("customer", lastname="x")).text) == [
            41,
            41,
            41,
        ]
        empty = tc.post(
            "/api/customers",
            content=body("customer", passwd="p", lastname="", firstname="F", email="e@x.org"),
        )
        assert error_codes(empty.text) == [85]
        assert "Property Customer->lastname is empty." in empty.text
        bad = tc.post(
            "/api/customers",
            content=body("customer", passwd="p", lastname="L", firstname="F", email="not-an-email"),
        )
        assert error_codes(bad.text) == [85]
        assert error_codes(tc.post("/api/customers", content=body("customer", id="5")).text) == [91]
        assert error_codes(tc.put("/api/customers/1", content=body("customer", lastname="x")).text) == [90]
        unknown = tc.patch("/api/customers/1", content=body("customer", id="999999", lastname="x"))
        assert unknown.status_code == 404
        assert error_codes(unknown.text) == [92]
        assoc = tc.patch(
            "/api/customers/1",
            content=b"<prestashop><customer><id>1</id><associations><nope/>"
            b"</associations></customer></prestashop>",
        )
        assert error_codes(assoc.text) == [86]
        legacy = tc.patch("/api/customers/1", content=b"xml=" + body("customer", id="1", note="legacy form"))
        assert legacy.status_code == 200


def test_delete_and_per_resource_forbidden_methods() -> None:
    with client() as (tc, _):
        gone = tc.delete("/api/addresses/3")
        assert gone.status_code == 200
        assert gone.content == b""
        assert tc.get("/api/addresses/3").status_code == 404
        again = tc.delete("/api/addresses/3")
        assert again.status_code == 404
        assert error_codes(again.text) == [87]
        assert tc.delete("/api/addresses?id=[4|5]").status_code == 200
        assert tc.get("/api/addresses/5").status_code == 404
        post_stock = tc.post("/api/stock_availables", content=body("stock_available", quantity="1"))
        assert post_stock.status_code == 405
        assert error_codes(post_stock.text) == [101]
        assert error_codes(tc.delete("/api/stock_availables/1").text) == [101]
        assert error_codes(tc.request("OPTIONS", "/api/orders").text) == [23]
        assert tc.post("/api/orders/1?ps_method=DELETE").status_code == 200  # method override


def test_authentication_and_permissions() -> None:
    reader = KeyPermissions(
        "READERKEY0123456789ABCDEFGHIJKLM", resources={"orders": frozenset({"GET", "HEAD"})}
    )
    inactive = KeyPermissions("INACTIVEKEY0123456789ABCDEFGHIJK", active=False)
    with client(config(keys=(KeyPermissions(KEY), reader, inactive))) as (tc, app):
        assert tc.get(f"/api/orders?ws_key={KEY}", auth=None).status_code == 200
        assert error_codes(tc.get("/api/orders", auth=("short", "")).text) == [18]
        assert error_codes(tc.get("/api/orders", auth=("", "")).text) == [17]
        assert error_codes(tc.get("/api/orders", auth=("X" * 32, "")).text) == [20]
        assert error_codes(tc.get("/api/orders", auth=(inactive.key, "")).text) == [20]
        put = tc.put("/api/orders/1", content=body("order", id="1"), auth=(reader.key, ""))
        assert put.status_code == 405
        assert error_codes(put.text) == [25]
        assert error_codes(tc.get("/api/orders?id_shop=2").text) == [132]
        root = xml(tc.get("/api/", auth=(reader.key, "")).text)
        listed = root.find("api/orders")
        assert listed is not None
        assert listed.get("get") == "true"
        assert listed.get("put") == "false"
        assert root.find("api/customers") is None
        app.sandbox.store.webservice_enabled = False
        disabled = tc.get("/api/orders")
        assert disabled.status_code == 503
        assert error_codes(disabled.text) == [22]


@pytest.mark.parametrize(("version", "conditional"), [("8.1.7", True), ("1.7.8.8", False)])
def test_headers_head_dispatcher_and_conditional_get(version: str, conditional: bool) -> None:
    with client(config(version=version)) as (tc, _):
        r = tc.get("/api/orders/1")
        assert r.headers["PSWS-Version"] == version
        assert r.headers["X-Powered-By"] == "PrestaShop Webservice"
        assert r.headers["Access-Time"].isdigit()
        assert float(r.headers["Execution-Time"]) >= 0
        assert r.headers["content-type"].startswith("text/xml")
        again = tc.get("/api/orders/1", headers={"Local-Content-Sha1": r.headers["Content-Sha1"]})
        assert again.status_code == (304 if conditional else 200)
        head = tc.head("/api/orders/1")
        assert head.status_code == 200
        assert head.content == b""
        assert tc.head("/api/orders/999999").status_code == 404
        via_dispatcher = tc.get("/webservice/dispatcher.php?url=orders/1")
        assert via_dispatcher.text == r.text
        if version == "1.7.8.8":
            assert tc.get("/api/?output_format=JSON").status_code == 200
        else:
            assert tc.get("/api/?output_format=JSON").status_code == 500  # issues #32179 / #34794


def test_admin_checkout_runs_the_side_effects_and_the_webservice_sees_them() -> None:
    with client() as (tc, app):
        shop = app.sandbox.shop
        combo = next(iter(app.sandbox.store.all("combinations")))
        stock = shop.stock_row(combo.num("id_product"), combo.id)
        assert stock is not None
        before = stock.num("quantity")
        placed = tc.post(
            "/_sandbox/orders",
            json={
                "customer": {"email": "buyer@example.org", "firstname": "Bo", "lastname": "Buyer"},
                "lines": [{"product_id": combo.num("id_product"), "combination_id": combo.id, "quantity": 2}],
                "currency": "GBP",
                "payment_module": "ps_wirepayment",
            },
        )
        assert placed.status_code == 201
        order = placed.json()
        assert stock.num("quantity") == before - 2
        assert order["current_state"] == str(shop.state_id("PS_OS_BANKWIRE"))
        assert order["id_currency"] == "3"
        rows = order["associations"]["order_rows"]
        assert rows[0]["product_attribute_id"] == str(combo.id)
        assert rows[0]["product_reference"] == combo.text("reference")
        assert order["total_paid"].count(".") == 1
        assert len(order["total_paid"].split(".")[1]) == 6
        paid = tc.post(f"/_sandbox/orders/{order['id']}/state", json={"state": "PS_OS_PAYMENT"})
        assert paid.status_code == 200
        payments = tc.get(
            f"/api/order_payments?filter[order_reference]=[{order['reference']}]&display=full"
            "&output_format=JSON"
        ).json()["order_payments"]
        assert [p["amount"] for p in payments] == [order["total_paid_tax_incl"]]
        tracking = tc.post(f"/_sandbox/orders/{order['id']}/tracking", json={"tracking_number": "TRACK1"})
        assert tracking.json()["tracking_number"] == "TRACK1"
        stock_change = tc.post(
            "/_sandbox/stock",
            json={"id_product": combo.num("id_product"), "id_product_attribute": combo.id, "delta": 5},
        )
        assert stock_change.json()["quantity"] == str(before - 2 + 5)
        edited = tc.patch("/_sandbox/customers/1", json={"fields": {"lastname": "Edited"}})
        assert edited.json()["lastname"] == "Edited"
        assert tc.get("/_sandbox/resources/customers/1").json()["lastname"] == "Edited"
        assert tc.post("/_sandbox/reset", json={}).status_code == 200
        assert app.sandbox.store.get("customers", 1) is not None
        assert app.sandbox.store.get("customers", 1).text("lastname") != "Edited"  # type: ignore[union-attr]
        assert "/_sandbox/orders" in tc.get("/openapi.json").json()["paths"]
