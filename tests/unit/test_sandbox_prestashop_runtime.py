"""Seed, faults, outbound webhooks, the in-process server and the CLI entry."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import httpx
import pytest

from cli.main import build_parser
from sandbox.prestashop.app import Sandbox
from sandbox.prestashop.config import KeyPermissions, SandboxConfig, WebhookConfig, WebhookTarget
from sandbox.prestashop.faults import DroppedConnectionError
from sandbox.prestashop.server import SandboxServer
from tests.unit.test_sandbox_prestashop_support import KEY, Recorder, body, client, config

pytestmark = pytest.mark.timeout(60)
SECRET = "whsec_" + base64.b64encode(b"sandbox-test-secret").decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"previous-secret").decode()


def test_default_seed_is_large_fast_and_deterministic() -> None:
    started = time.perf_counter()
    shop = Sandbox(SandboxConfig(seed=42))
    assert time.perf_counter() - started < 2.0
    store = shop.store
    products = list(store.all("products"))
    assert len(products) >= 1000
    assert len(store.tables["customers"]) >= 500
    with_combinations = {c.num("id_product") for c in store.all("combinations")}
    assert len(with_combinations) > 200
    for product in products[:50]:
        ean = product.text("ean13")
        digits = [int(d) for d in ean]
        assert (sum(d * (3 if i % 2 else 1) for i, d in enumerate(digits[:12])) + digits[12]) % 10 == 0
        assert product.text("reference").startswith("PSI-")
        assert len(product.text("price").split(".")[1]) == 6
    currencies = {c.text("iso_code"): c.text("conversion_rate") for c in store.all("currencies")}
    assert currencies["EUR"] == "1.000000"
    assert {"USD", "GBP"} <= set(currencies)
    assert store.get("countries", 1) is not None
    assert store.get("states", 89) is not None
    assert store.config_value("PS_OS_SHIPPING") == "4"
    assert len(store.tables["orders"]) >= 300
    assert store.tables["order_histories"]
    assert store.tables["order_invoices"]
    assert store.tables["order_payments"]
    again = Sandbox(SandboxConfig(seed=42, epoch=None))
    assert [p.text("reference") for p in again.store.all("products")][:100] == [
        p.text("reference") for p in products[:100]
    ]
    assert [p.text("price") for p in again.store.all("products")] == [p.text("price") for p in products]
    other = Sandbox(SandboxConfig(seed=43, products=50, customers=10, orders=0))
    assert [p.text("price") for p in other.store.all("products")] != [p.text("price") for p in products[:50]]


def test_faults_next_n_errors_rate_limit_latency_and_drop_in_process() -> None:
    with client() as (tc, _):
        rule = tc.post(
            "/_sandbox/faults", json={"kind": "error", "resource": "orders", "next": 2, "status": 502}
        )
        assert rule.status_code == 201
        assert [tc.get("/api/orders/1").status_code for _ in range(3)] == [502, 502, 200]
        assert tc.get("/api/customers/1").status_code == 200
        tc.post("/_sandbox/faults", json={"kind": "rate_limit", "next": 1, "retry_after": 7})
        limited = tc.get("/api/customers/1")
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == "7"
        tc.post(
            "/_sandbox/faults",
            json={"kind": "latency", "resource": "customers", "next": 1, "latency_ms": 300},
        )
        started = time.perf_counter()
        assert tc.get("/api/customers/1").status_code == 200
        assert time.perf_counter() - started >= 0.3
        assert tc.get("/_sandbox/faults").json()[0]["fired"] == 2
        tc.post("/_sandbox/faults", json={"kind": "drop", "resource": "orders", "next": 1})
        with pytest.raises(DroppedConnectionError):
            tc.get("/api/orders/1")
        assert tc.get("/api/orders/1").status_code == 200
        assert tc.delete("/_sandbox/faults").json() == {"active": 0}


def test_faults_probability_is_seeded_and_repeatable() -> None:
    def run() -> list[int]:
        with client(config(fault_seed=5)) as (tc, _):
            tc.post("/_sandbox/faults", json={"kind": "error", "probability": 0.5})
            return [tc.get("/api/orders/1").status_code for _ in range(20)]

    first = run()
    assert first == run()
    assert {200, 503} == set(first)


def test_drop_and_timeout_over_a_real_socket() -> None:
    # Only the faulted request gets the short timeout: ordinary ones must not time out on a busy machine.
    with SandboxServer(config()) as server, httpx.Client(auth=(KEY, ""), timeout=10) as http:
        http.post(
            f"{server.base_url}/_sandbox/faults", json={"kind": "drop", "resource": "orders", "next": 1}
        )
        with pytest.raises(httpx.TransportError):
            http.get(f"{server.api_url}orders/1")
        assert http.get(f"{server.api_url}orders/1").status_code == 200
        http.post(
            f"{server.base_url}/_sandbox/faults", json={"kind": "timeout", "next": 1, "hang_seconds": 2}
        )
        with pytest.raises(httpx.ReadTimeout):
            http.get(f"{server.api_url}orders/1", timeout=0.5)
        assert http.get(f"{server.api_url}orders/1").status_code == 200


def _verify(secret: str, headers: dict[str, str], raw: bytes) -> bool:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + raw
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(part == f"v1,{expected}" for part in headers["webhook-signature"].split())


def _of_type(received: list[tuple[dict[str, str], bytes]], kind: str) -> list[tuple[dict[str, str], bytes]]:
    return [(headers, raw) for headers, raw in received if json.loads(raw)["type"] == kind]


def _wait(predicate: object, seconds: float = 10.0) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_standard_webhooks_are_signed_shaped_and_retried_until_2xx() -> None:
    with Recorder(statuses=(500, 503)) as hook:
        # One delivery at a time: the recorder's first two answers (the 5xx) must go to this event, not
        # to another one the same write fires (a paid state also records a payment).
        hooks = WebhookConfig(
            targets=(WebhookTarget(hook.url, (SECRET, OLD_SECRET)),),
            retry_delays=(0.05, 0.05, 0.05),
            workers=1,
        )
        with SandboxServer(config(webhooks=hooks)) as server, httpx.Client(auth=(KEY, "")) as http:
            orders = http.get(f"{server.base_url}/_sandbox/resources/orders").json()
            # not a cancelled order: leaving a cancel restocks, and those stock events would take the 5xx
            order_id = next(o["id"] for o in orders if o["current_state"] not in ("6", "8"))
            r = http.post(
                f"{server.api_url}order_histories",
                content=body("order_history", id_order=str(order_id), id_order_state="4"),
            )
            assert r.status_code == 201
            _wait(lambda: len(_of_type(hook.received, "order.status_changed")) >= 3)
            deliveries = http.get(f"{server.base_url}/_sandbox/webhooks/deliveries").json()
        received = _of_type(hook.received, "order.status_changed")
        assert len(received) == 3  # two failures, then delivered: no further attempt
        ids = {headers["webhook-id"] for headers, _ in received}
        assert len(ids) == 1  # stable across retries
        for headers, raw in hook.received:
            assert _verify(SECRET, headers, raw)
            assert _verify(OLD_SECRET, headers, raw)
            assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
        payload = json.loads(received[-1][1])
        assert payload["id"] in ids
        assert payload["type"] == "order.status_changed"
        assert payload["resource"] == {"type": "orders", "id": order_id}
        assert payload["data"]["new_state"] == 4
        assert payload["source_hook"] == "actionOrderStatusPostUpdate"
        assert payload["ps_version"] == "8.1.7"
        assert "T" in payload["occurred_at"]
        [delivery] = [d for d in deliveries if d["event_type"] == "order.status_changed"]
        assert delivery["status"] == "delivered"
        assert [a["status_code"] for a in delivery["attempts"]] == [500, 503, 200]


def test_webhook_retries_are_bounded_and_events_cover_stock_customers_products() -> None:
    with Recorder(statuses=(500,) * 10) as hook:
        hooks = WebhookConfig(targets=(WebhookTarget(hook.url, (SECRET,)),), retry_delays=(0.02,))
        with SandboxServer(config(webhooks=hooks)) as server, httpx.Client(auth=(KEY, "")) as http:
            stock = http.get(
                f"{server.api_url}stock_availables?filter[id_product_attribute]=[0]&limit=1"
                "&display=full&output_format=JSON"
            ).json()["stock_availables"][0]
            http.patch(
                f"{server.api_url}stock_availables/{stock['id']}",
                content=body("stock_available", id=str(stock["id"]), quantity="77"),
            )
            http.patch(f"{server.base_url}/_sandbox/products/1", json={"fields": {"price": "10.000000"}})
            http.patch(f"{server.api_url}customers/1", content=body("customer", id="1", firstname="Hooked"))

            def settled() -> bool:
                rows = http.get(f"{server.base_url}/_sandbox/webhooks/deliveries").json()
                return len(rows) >= 3 and all(d["status"] != "pending" for d in rows)

            _wait(settled)
            rows = http.get(f"{server.base_url}/_sandbox/webhooks/deliveries").json()
        types = {d["event_type"] for d in rows}
        assert {"stock.changed", "product.updated", "customer.updated"} <= types
        assert all(d["status"] == "failed" and len(d["attempts"]) == 2 for d in rows)
        stock_event = next(json.loads(d["body"]) for d in rows if d["event_type"] == "stock.changed")
        assert stock_event["data"]["quantity"] == 77
        assert set(stock_event["data"]) == {
            "id_product",
            "id_product_attribute",
            "id_shop",
            "quantity",
            "delta",
        }


def test_cli_parses_the_prestashop_subcommand() -> None:
    args = build_parser().parse_args(
        [
            "sandbox",
            "prestashop",
            "--port",
            "8099",
            "--seed",
            "3",
            "--ws-key",
            KEY,
            "--version",
            "9.1.0",
            "--webhook-url",
            "http://127.0.0.1:9/h",
            "--webhook-secret",
            SECRET,
        ]
    )
    assert args.port == 8099
    assert args.seed == 3
    assert args.ps_version == "9.1.0"
    assert args.webhook_url == ["http://127.0.0.1:9/h"]
    assert callable(args.handler)


def test_server_helper_serves_on_a_free_port_and_releases_it() -> None:
    server = SandboxServer(config(keys=(KeyPermissions(KEY),))).start()
    try:
        r = httpx.get(f"{server.api_url}orders/1?output_format=JSON", auth=(KEY, ""))
        assert r.json()["order"]["id"] == 1
        assert httpx.get(f"{server.base_url}/docs").status_code == 200
    finally:
        server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.api_url}orders/1", auth=(KEY, ""), timeout=1)
