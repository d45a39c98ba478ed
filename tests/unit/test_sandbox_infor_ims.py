"""IMS in the Infor sandbox: inbound endpoints (infor.md §4.5) and the v3 multipart pusher (§4.4)."""

from __future__ import annotations

import base64
import email
import email.policy
import json
import threading
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.unit.test_sandbox_infor_support import IonClient, ion_client, running_sandbox

NS = "{http://schema.infor.com/InforOAGIS/2}"
IMS = "/IONSERVICES/api/ion/messaging/service"
PROCESS_ORDER = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<ProcessSalesOrder xmlns="http://schema.infor.com/InforOAGIS/2" releaseID="9.2">'
    b"<ApplicationArea><BODID>x</BODID></ApplicationArea><DataArea/></ProcessSalesOrder>"
)


def _xml(payload: bytes) -> ET.Element:
    return ET.fromstring(payload)  # noqa: S314 - the sandbox's own BODs, produced by this test


@dataclass
class Receiver:
    """A tiny IMS v3 receiver: collects every multipart POST; fails the first ``fail_first`` with 500."""

    fail_first: int = 0
    posts: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/ims/v3/multipartMessage"

    def accepted(self) -> list[dict[str, Any]]:
        with self.lock:
            return [post for post in self.posts if post["status"] == 202]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            head = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode()
            message = email.message_from_bytes(head + body, policy=email.policy.HTTP)
            parts: dict[str, bytes] = {}
            for part in message.iter_parts():
                content = part.get_payload(decode=True)
                assert isinstance(content, bytes)
                parts[str(part.get_param("name", header="content-disposition"))] = content
            with receiver.lock:
                status = 500 if len(receiver.posts) < receiver.fail_first else 202
                receiver.posts.append(
                    {
                        "status": status,
                        "authorization": self.headers.get("Authorization"),
                        "parameters": json.loads(parts["ParameterRequest"]),
                        "payload": parts["MessagePayload"],
                    }
                )
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the http.server API
            return

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    collected = Receiver()
    collected.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(collected))
    thread = threading.Thread(target=collected.server.serve_forever, daemon=True)
    thread.start()
    yield collected
    collected.server.shutdown()
    collected.server.server_close()
    thread.join()


@pytest.fixture
def client(receiver: Receiver) -> Iterator[IonClient]:
    with (
        running_sandbox(ims_push_url=receiver.url, ims_push_token="push-secret") as server,
        ion_client(server) as logged_in,
    ):
        logged_in.admin("PUT", "/warehouse", {"paused": True, "stock_drift_interval_s": 0})
        logged_in.admin("PUT", "/ims/pusher", {"initial_backoff_s": 0.01, "max_backoff_s": 0.05})
        yield logged_in


def _parameters(document: str = "Process.SalesOrder", lid: str = "lid://infor.ims.prestashop") -> str:
    return json.dumps(
        {
            "documentName": document,
            "messageId": "ps-order-1",
            "fromLogicalId": lid,
            "toLogicalId": "lid://default",
            "encoding": "NONE",
            "characterSet": "UTF-8",
        }
    )


def _multipart(client: IonClient, version: str, parameters: str, payload: bytes) -> Any:
    files = {
        "ParameterRequest": (None, parameters.encode(), "application/json"),
        "MessagePayload": ("payload", payload, "application/octet-stream"),
    }
    return client.post(f"{IMS}/{version}/multipartMessage", files=files)


def test_inbound_preparation_calls(client: IonClient) -> None:
    assert client.get(f"{IMS}/ping").status_code == 200
    assert "v3" in client.get(f"{IMS}/versions").json()["versions"]
    accepted = client.get(f"{IMS}/v3/lid://infor.ims.prestashop/acceptedDocuments")
    assert accepted.status_code == 200
    assert "Process.SalesOrder" in accepted.json()["documents"]
    assert client.get(f"{IMS}/v3/lid://someone.else/acceptedDocuments").status_code == 403
    client.admin("PUT", "/ims/inbound", {"active": False})
    assert client.get(f"{IMS}/v3/lid://infor.ims.prestashop/acceptedDocuments").status_code == 412


def test_inbound_v3_answers_202_and_v2_201(client: IonClient) -> None:
    assert _multipart(client, "v3", _parameters(), PROCESS_ORDER).status_code == 202
    assert _multipart(client, "v2", _parameters(), PROCESS_ORDER).status_code == 201
    message = {
        "documentName": "Process.SalesOrder",
        "messageId": "m-2",
        "fromLogicalId": "lid://infor.ims.prestashop",
        "toLogicalId": "lid://default",
        "document": {"value": base64.b64encode(PROCESS_ORDER).decode(), "encoding": "BASE64"},
    }
    v2 = client.post(f"{IMS}/v2/message", json=message)
    assert v2.status_code == 201
    assert v2.json() == {"status": "OK", "message": "Published successfully"}
    inbound = client.admin("GET", "/ims/inbound")
    assert inbound["accepted"] == 3
    assert inbound["messages"][-1]["document"].startswith("<?xml")


def test_inbound_refusals_403_412_400(client: IonClient) -> None:
    wrong_lid = _multipart(client, "v3", _parameters(lid="lid://infor.ims.intruder"), PROCESS_ORDER)
    assert wrong_lid.status_code == 403
    not_configured = _multipart(client, "v3", _parameters(document="Sync.SalesOrder"), PROCESS_ORDER)
    assert not_configured.status_code == 412
    malformed = _multipart(client, "v3", _parameters(), b"<ProcessSalesOrder><oops>")
    assert malformed.status_code == 400
    assert "well-formed" in malformed.json()["message"]
    mismatch = _multipart(client, "v3", _parameters(document="Process.ItemMaster"), PROCESS_ORDER)
    assert mismatch.status_code == 400
    missing = _multipart(client, "v3", json.dumps({"documentName": "Process.SalesOrder"}), PROCESS_ORDER)
    assert missing.status_code == 400
    no_token = client.http.post(client.api_base + f"{IMS}/v3/multipartMessage")
    assert no_token.status_code == 401
    assert client.admin("GET", "/ims/inbound")["refused"] == {"403": 1, "412": 1, "400": 3}


@pytest.mark.timeout(30)
def test_pusher_sends_sync_bods_with_envelope_and_increasing_variation(
    client: IonClient, receiver: Receiver
) -> None:
    _, orno = client.create_order("PS-PUSH", [("SKU-1001", 1)])
    client.admin("POST", "/warehouse/step", {"times": 4})
    assert client.admin("POST", "/ims/pusher/wait", {"timeout_s": 10})["idle"]
    posts = receiver.accepted()
    assert {post["authorization"] for post in posts} == {"Bearer push-secret"}
    names = [post["parameters"]["documentName"] for post in posts]
    assert {"Sync.SalesOrder", "Sync.Shipment", "Sync.Invoice", "Sync.InventoryCount"} <= set(names)
    orders = [post for post in posts if post["parameters"]["documentName"] == "Sync.SalesOrder"]
    assert len(orders) == 5  # created + four steps
    variations = []
    for post in orders:
        params = post["parameters"]
        assert params["fromLogicalId"] == "lid://infor.m3.m3"
        assert params["encoding"] == "NONE"
        root = _xml(post["payload"])
        assert root.tag == f"{NS}SyncSalesOrder"
        assert root.get("releaseID") == "9.2"
        bod_id = root.findtext(f"{NS}ApplicationArea/{NS}BODID")
        assert bod_id is not None
        assert root.findtext(f"{NS}ApplicationArea/{NS}Sender/{NS}LogicalID") == "lid://infor.m3.m3"
        assert root.findtext(f"{NS}DataArea/{NS}Sync/{NS}AccountingEntityID") == "100_AAA"
        document = root.find(f"{NS}DataArea/{NS}SalesOrder/{NS}SalesOrderHeader/{NS}DocumentID/{NS}ID")
        assert document is not None
        assert document.text == orno
        variation = document.get("variationID")
        assert bod_id == f"infor-nid:ACME_TST:100_AAA:001:{orno}:{variation}?SalesOrder&verb=Sync"
        variations.append(int(str(variation)))
    assert variations == [1, 2, 3, 4, 5]
    shipment = _xml(next(p["payload"] for p in posts if p["parameters"]["documentName"] == "Sync.Shipment"))
    assert shipment.findtext(f"{NS}DataArea/{NS}Shipment/{NS}ShipmentUnit/{NS}TrackingID", "").startswith(
        "1Z"
    )


@pytest.mark.timeout(30)
def test_pusher_retries_non_2xx_and_encodes_deflate(client: IonClient, receiver: Receiver) -> None:
    receiver.fail_first = 2
    client.admin("PUT", "/ims/pusher", {"encoding": "DEFLATE"})
    client.admin("PUT", "/items/SKU-1001", {"itds": "Blue mug v2"})
    assert client.admin("POST", "/ims/pusher/wait", {"timeout_s": 10})["idle"]
    assert [post["status"] for post in receiver.posts] == [500, 500, 202]
    delivered = receiver.accepted()[0]
    assert delivered["parameters"]["encoding"] == "DEFLATE"
    item = _xml(zlib.decompress(delivered["payload"]))
    assert item.findtext(f"{NS}DataArea/{NS}ItemMaster/{NS}ItemMasterHeader/{NS}Description") == "Blue mug v2"
    stats = client.admin("GET", "/ims/pusher/stats")
    assert (stats["sent"], stats["retries"], stats["failed"]) == (1, 2, 0)


@pytest.mark.timeout(60)
def test_duplicate_and_reorder_knobs(client: IonClient, receiver: Receiver) -> None:
    client.admin(
        "PUT",
        "/ims/pusher",
        {
            "duplicate_probability": 0.2,
            "reorder_probability": 0.2,
            "reorder_hold": 3,
            "nouns": ["InventoryCount"],
        },
    )
    client.admin("POST", "/warehouse/drift", {"changes": 200})
    assert client.admin("POST", "/ims/pusher/wait", {"timeout_s": 30})["idle"]
    posts = receiver.accepted()
    stats = client.admin("GET", "/ims/pusher/stats")
    assert stats["queued"] == 200
    assert stats["duplicates"] > 0
    assert stats["reordered"] > 0
    assert len(posts) == 200 + stats["duplicates"]
    message_ids = [post["parameters"]["messageId"] for post in posts]
    assert len(set(message_ids)) == 200  # every message arrived; duplicates repeat a messageId
    # The balances changed in LMTS order and were queued in that order; first arrivals are not.
    first_arrivals = list({post["parameters"]["messageId"]: post for post in posts}.values())
    stamps = [_name_value(post["payload"], "m3.LMTS") for post in first_arrivals]
    assert len(stamps) == 200
    assert stamps != sorted(stamps)


def _name_value(payload: bytes, name: str) -> int:
    for element in _xml(payload).iter(f"{NS}NameValue"):
        if element.get("name") == name:
            return int(str(element.text))
    raise AssertionError(f"{name} not in the BOD")


@pytest.mark.timeout(30)
def test_without_knobs_messages_arrive_once_and_in_order(client: IonClient, receiver: Receiver) -> None:
    client.admin("PUT", "/ims/pusher", {"nouns": ["InventoryCount"]})
    client.admin("POST", "/warehouse/drift", {"changes": 50})
    assert client.admin("POST", "/ims/pusher/wait", {"timeout_s": 20})["idle"]
    posts = receiver.accepted()
    assert len(posts) == 50, client.admin("GET", "/ims/pusher/stats")
    stamps = [_name_value(post["payload"], "m3.LMTS") for post in posts]
    assert stamps == sorted(stamps)
