"""The IMS receiver's pure decision: routing per noun, key, headers, and every refusal with its status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connectors.infor.ims import ImsParameters, build_multipart_message
from ingest.infor_events.routing import (
    RECORD_HEADERS,
    ImsRouter,
    InforEntity,
    Refusal,
    raw_topics,
    received_at_text,
)
from schemas.catalogue import load_catalogue

BODS = Path(__file__).resolve().parents[2] / "connectors" / "infor" / "testdata" / "bod"
NOW = 1_741_162_000.125
TOPICS = {entity: f"t.{entity.value}" for entity in InforEntity}
SYNC_DOCUMENTS = frozenset(
    {
        "Sync.SalesOrder",
        "Sync.Shipment",
        "Sync.Invoice",
        "Sync.ItemMaster",
        "Sync.InventoryCount",
        "Sync.CustomerPartyMaster",
    }
)
OUR_LID = "lid://infor.ims.prestashop"


def _router(*, to_logical_ids: frozenset[str] = frozenset({OUR_LID}), max_body: int = 1 << 20) -> ImsRouter:
    return ImsRouter(
        topics=TOPICS,
        accepted_documents=SYNC_DOCUMENTS,
        to_logical_ids=to_logical_ids,
        max_body_bytes=max_body,
    )


def _message(
    document: bytes,
    document_name: str,
    *,
    encoding: str = "NONE",
    to_logical_id: str = OUR_LID,
    message_id: str = "msg-1",
) -> tuple[bytes, str]:
    parameters = ImsParameters(
        document_name=document_name,
        message_id=message_id,
        from_logical_id="lid://infor.m3.m3",
        to_logical_id=to_logical_id,
        encoding=encoding,  # type: ignore[arg-type]
    )
    return build_multipart_message(parameters, document)


@pytest.mark.parametrize(
    ("fixture", "entity", "key", "variation"),
    [
        ("SyncSalesOrder.xml", InforEntity.SALESORDERS, "1000012345", "3"),
        ("SyncShipment.xml", InforEntity.SHIPMENTS, "5000001234", "1"),
        ("SyncInvoice.xml", InforEntity.INVOICES, "700123", "1"),
        ("SyncItemMaster.xml", InforEntity.ITEMS, "SKU-1001", "7"),
        ("SyncInventoryCount.xml", InforEntity.INVENTORY, "INV-20250305-0805", "1"),
        ("SyncCustomerPartyMaster.xml", InforEntity.CUSTOMERS, "PS000042", "2"),
    ],
)
@pytest.mark.parametrize("encoding", ["NONE", "BASE64", "DEFLATE"])
def test_each_noun_goes_to_its_topic_keyed_by_entity_with_the_bod_as_sent(
    fixture: str, entity: InforEntity, key: str, variation: str, encoding: str
) -> None:
    document = (BODS / fixture).read_bytes()
    name = "Sync." + fixture.removeprefix("Sync").removesuffix(".xml")
    body, content_type = _message(document, name, encoding=encoding)
    record = _router().decide(content_type, body, {}, NOW)
    assert record.topic == TOPICS[entity]
    assert record.entity is entity
    assert record.key == key.encode()
    assert record.value == document  # decoded from the transfer encoding, otherwise byte for byte
    assert record.variation_id == variation
    assert record.document_name == name


def test_record_headers_carry_the_provenance() -> None:
    document = (BODS / "SyncSalesOrder.xml").read_bytes()
    body, content_type = _message(document, "Sync.SalesOrder", message_id="m-42")
    record = _router().decide(content_type, body, {"x-correlation-id": "corr-7"}, NOW)
    headers = dict(record.headers)
    assert [name for name, _ in record.headers] == list(RECORD_HEADERS)
    assert headers == {
        "source": b"infor-ims",
        "document_name": b"Sync.SalesOrder",
        "bodid": b"infor-nid:ACME_TST:100_AAA::1000012345:3?SalesOrder&verb=Sync",
        "variation_id": b"3",
        "logical_id": b"lid://infor.m3.m3",
        "message_id": b"m-42",
        "received_at": received_at_text(NOW).encode(),
        "content_type": b"application/xml",
        "correlation_id": b"corr-7",
    }
    assert record.dedupe_key == "bod\x00infor-nid:ACME_TST:100_AAA::1000012345:3?SalesOrder&verb=Sync\x003"


def test_the_message_id_is_the_correlation_id_when_none_is_given() -> None:
    body, content_type = _message((BODS / "SyncShipment.xml").read_bytes(), "Sync.Shipment", message_id="m-9")
    assert _router().decide(content_type, body, {}, NOW).correlation_id == "m-9"


def test_any_logical_id_is_accepted_when_none_is_configured() -> None:
    body, content_type = _message(
        (BODS / "SyncInvoice.xml").read_bytes(), "Sync.Invoice", to_logical_id="lid://default"
    )
    assert _router(to_logical_ids=frozenset()).decide(content_type, body, {}, NOW).key == b"700123"


def _params(**values: str) -> bytes:
    return json.dumps(
        {"documentName": "Sync.Invoice", "messageId": "m", "fromLogicalId": "lid://x", "toLogicalId": OUR_LID}
        | values
    ).encode()


def _raw_multipart(parts: list[tuple[str, bytes]], boundary: str = "b0undary") -> tuple[bytes, str]:
    chunks = []
    for name, content in parts:
        chunks.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + content
            + b"\r\n"
        )
    return b"".join(chunks) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


INVOICE = (BODS / "SyncInvoice.xml").read_bytes()


@pytest.mark.parametrize(
    ("case", "status", "reason"),
    [
        ("not_multipart", 400, "ims_malformed_multipart"),
        ("no_payload_part", 400, "ims_missing_part"),
        ("parameters_not_json", 400, "ims_bad_parameters"),
        ("no_message_id", 400, "ims_bad_parameters"),
        ("bad_base64", 400, "ims_bad_encoding"),
        ("malformed_xml", 400, "malformed_xml"),
        ("doctype", 400, "bod_forbidden_xml"),
        ("not_a_bod", 400, "bod_invalid"),
        ("name_mismatch", 400, "document_mismatch"),
        ("unrouted_document", 412, "unexpected_document"),
        ("other_logical_id", 412, "unexpected_logical_id"),
        ("too_large", 413, "payload_too_large"),
    ],
)
def test_refusals_name_status_reason_and_what_to_do(case: str, status: int, reason: str) -> None:
    content_type = "multipart/form-data; boundary=b0undary"
    if case == "not_multipart":
        body, content_type = INVOICE, "application/xml"
    elif case == "no_payload_part":
        body, content_type = _raw_multipart([("ParameterRequest", _params())])
    elif case == "parameters_not_json":
        body, content_type = _raw_multipart([("ParameterRequest", b"{nope"), ("MessagePayload", INVOICE)])
    elif case == "no_message_id":
        body, content_type = _raw_multipart(
            [("ParameterRequest", _params(messageId="")), ("MessagePayload", INVOICE)]
        )
    elif case == "bad_base64":
        body, content_type = _raw_multipart(
            [("ParameterRequest", _params(encoding="BASE64")), ("MessagePayload", b"%%%not base64%%%")]
        )
    elif case == "malformed_xml":
        body, content_type = _message(INVOICE[:-40], "Sync.Invoice")
    elif case == "doctype":
        evil = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]>' + INVOICE.split(b"?>", 1)[1]
        body, content_type = _message(evil, "Sync.Invoice")
    elif case == "not_a_bod":
        body, content_type = _message(b"<SyncInvoice><Nothing/></SyncInvoice>", "Sync.Invoice")
    elif case == "name_mismatch":
        body, content_type = _message(INVOICE, "Sync.Shipment")
    elif case == "unrouted_document":
        body, content_type = _message((BODS / "ProcessSalesOrder.xml").read_bytes(), "Process.SalesOrder")
    elif case == "other_logical_id":
        body, content_type = _message(INVOICE, "Sync.Invoice", to_logical_id="lid://infor.ims.someone-else")
    else:
        body, content_type = _message(INVOICE, "Sync.Invoice")
    router = _router(max_body=len(body) - 1 if case == "too_large" else 1 << 20)
    with pytest.raises(Refusal) as caught:
        router.decide(content_type, body, {}, NOW)
    refusal = caught.value
    assert (refusal.status, refusal.reason) == (status, reason)
    assert refusal.message
    assert refusal.hint
    assert refusal.body() == {"error": reason, "message": refusal.message, "hint": refusal.hint}


def test_a_document_without_a_raw_topic_cannot_be_accepted() -> None:
    with pytest.raises(ValueError, match=r"Process\.Foo"):
        ImsRouter(topics=TOPICS, accepted_documents=frozenset({"Process.Foo"}))


def test_raw_topics_come_from_the_catalogue_with_the_prefix() -> None:
    topics = raw_topics(load_catalogue(), "dev.")
    assert topics[InforEntity.INVENTORY] == "dev.raw.infor.inventory"
    assert set(topics) == set(InforEntity)
