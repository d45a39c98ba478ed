"""IMS v3 multipart messages: both parts, each payload encoding, and every way a message is refused."""

from __future__ import annotations

import base64
import json
import zlib
from pathlib import Path

import pytest

import connectors.infor
from connectors.infor.bod import parse_bod
from connectors.infor.ims import (
    Encoding,
    ImsParameters,
    build_multipart_message,
    decode_message,
    decode_payload,
    parse_multipart_message,
    parse_parameters,
)
from pipeline.errors import InvalidMessage

TESTDATA = Path(connectors.infor.__file__).parent / "testdata"
BOD = (TESTDATA / "bod" / "SyncShipment.xml").read_bytes()


def raw_message(parameters: bytes, payload: bytes, boundary: str = "b0und4ry") -> tuple[bytes, str]:
    body = (
        f"preamble\r\n--{boundary}\r\n"
        'Content-Disposition: form-data; name="ParameterRequest"\r\nContent-Type: application/json\r\n\r\n'
    ).encode()
    body += parameters
    body += (
        f"\r\n--{boundary}\r\n"
        'Content-Disposition: form-data; name="MessagePayload"; filename="MessagePayload"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    body += payload + f"\r\n--{boundary}--\r\nepilogue".encode()
    return body, f'multipart/form-data; boundary="{boundary}"'


def params(encoding: str) -> bytes:
    data = json.loads((TESTDATA / "ims" / "ParameterRequest.json").read_text())
    data.update(documentName="Sync.Shipment", encoding=encoding, documentId="5000001234")
    return json.dumps(data).encode()


@pytest.mark.parametrize(
    ("encoding", "encoded"),
    [
        ("NONE", BOD),
        ("BASE64", base64.b64encode(BOD)),
        ("BASE64", base64.encodebytes(BOD)),  # line-wrapped base64 is still base64
        ("DEFLATE", zlib.compress(BOD)),
        ("DEFLATE", zlib.compress(BOD, wbits=-15)),  # raw deflate, no zlib header
    ],
)
def test_each_encoding_decodes_to_the_bod(encoding: str, encoded: bytes) -> None:
    message = parse_multipart_message(*raw_message(params(encoding), encoded))
    assert message.payload == BOD
    assert message.parameters.encoding == encoding
    assert (message.verb, message.noun) == ("Sync", "Shipment")
    assert message.parameters.document_id == "5000001234"
    assert message.parameters.message_id == "ps-order-000123-v1"
    assert message.parameters.from_logical_id == "lid://infor.ims.prestashop"
    assert parse_bod(message.payload).document_name == "Sync.Shipment"


def test_binary_payload_with_crlf_and_dashes_survives_exactly() -> None:
    tricky = zlib.compress(BOD + b"\r\n--not-the-boundary\r\n" * 3)
    message = parse_multipart_message(*raw_message(params("DEFLATE"), tricky))
    assert message.payload.endswith(b"\r\n--not-the-boundary\r\n")


@pytest.mark.parametrize("encoding", ["NONE", "BASE64", "DEFLATE"])
def test_build_and_parse_are_inverse(encoding: Encoding) -> None:
    parameters = ImsParameters(
        "Process.SalesOrder", "m-1", "lid://infor.ims.prestashop", "lid://default", encoding
    )
    body, content_type = build_multipart_message(parameters, BOD)
    message = parse_multipart_message(body, content_type)
    assert message.parameters == parameters
    assert message.payload == BOD


def test_v2_json_fixture_payload_decodes_with_the_same_functions() -> None:
    v2 = json.loads((TESTDATA / "ims" / "message_v2_request.json").read_text())
    document = v2.pop("document")
    message = decode_message(json.dumps(v2 | {"encoding": document["encoding"]}), document["value"].encode())
    assert message.payload == b'<ProcessSalesOrder xmlns="http://schema.infor.com/InforOAGIS/2"/>'
    assert message.parameters.document_name == "Process.SalesOrder"


def test_unknown_parameter_keys_are_kept() -> None:
    data = json.loads(params("NONE")) | {"accountingEntity": "100_AAA", "X-Custom": "1"}
    parsed = parse_parameters(json.dumps(data))
    assert parsed.accounting_entity == "100_AAA"
    assert parsed.extra == {"X-Custom": "1"}


@pytest.mark.parametrize(
    ("parameters", "payload", "reason"),
    [
        (b"{not json", BOD, "ims_bad_parameters"),
        (b"[]", BOD, "ims_bad_parameters"),
        (json.dumps({"messageId": "m", "fromLogicalId": "lid://x"}).encode(), BOD, "ims_bad_parameters"),
        (
            json.dumps(
                {"documentName": "SyncShipment", "messageId": "m", "fromLogicalId": "lid://x"}
            ).encode(),
            BOD,
            "ims_bad_parameters",
        ),
        (params("GZIP"), BOD, "ims_bad_encoding"),
        (params("BASE64"), b"@@not base64@@", "ims_bad_encoding"),
        (params("DEFLATE"), b"not deflate at all", "ims_bad_encoding"),
        (params("DEFLATE"), zlib.compress(BOD)[:-10], "ims_bad_encoding"),  # truncated stream
        (params("NONE"), b"  ", "ims_empty_payload"),
    ],
)
def test_bad_messages_are_refused_with_a_reason(parameters: bytes, payload: bytes, reason: str) -> None:
    with pytest.raises(InvalidMessage) as info:
        parse_multipart_message(*raw_message(parameters, payload))
    assert info.value.reason == reason


def test_deflate_bomb_is_refused() -> None:
    bomb = zlib.compress(b"\0" * (5 * 1024 * 1024))
    with pytest.raises(InvalidMessage) as info:
        decode_payload(bomb, "DEFLATE", limit=1024 * 1024)
    assert info.value.reason == "ims_payload_too_large"


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b"whatever", "application/json", "ims_malformed_multipart"),
        (b"whatever", "multipart/form-data", "ims_malformed_multipart"),
        (
            b'--b\r\nContent-Disposition: form-data; name="ParameterRequest"\r\n\r\n{}',
            "multipart/form-data; boundary=b",
            "ims_malformed_multipart",
        ),
        (
            b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--\r\n",
            "multipart/form-data; boundary=b",
            "ims_malformed_multipart",
        ),
    ],
)
def test_malformed_multipart_is_refused(body: bytes, content_type: str, reason: str) -> None:
    with pytest.raises(InvalidMessage) as info:
        parse_multipart_message(body, content_type)
    assert info.value.reason == reason


def test_a_missing_part_is_named() -> None:
    body = b'--b\r\nContent-Disposition: form-data; name="ParameterRequest"\r\n\r\n{}\r\n--b--\r\n'
    with pytest.raises(InvalidMessage, match="MessagePayload") as info:
        parse_multipart_message(body, "multipart/form-data; boundary=b")
    assert info.value.reason == "ims_missing_part"
