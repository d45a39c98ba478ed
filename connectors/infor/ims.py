"""ION Messaging Service (IMS) v3 messages: pure functions for the receiver (and our own publisher).

ION pushes ``POST .../v3/multipartMessage`` as ``multipart/form-data`` with two parts:
``ParameterRequest`` (JSON: documentName, messageId, fromLogicalId, toLogicalId, encoding,
characterSet, optionally documentId, accountingEntity, ...) and ``MessagePayload`` (the BOD bytes,
encoded per ``encoding``: ``NONE``, ``BASE64`` or ``DEFLATE``, the last as zlib or raw deflate).

:func:`parse_multipart_message` turns the raw body into an :class:`ImsMessage` with the decoded payload;
:func:`decode_message` does the same when a web framework already split the parts. Every problem is an
:class:`~pipeline.errors.InvalidMessage` whose ``reason`` the receiver returns with its 400.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from pipeline.errors import InvalidMessage

Encoding = Literal["NONE", "BASE64", "DEFLATE"]
ENCODINGS: tuple[Encoding, ...] = ("NONE", "BASE64", "DEFLATE")
PARAMETER_PART = "ParameterRequest"
PAYLOAD_PART = "MessagePayload"
MAX_PAYLOAD_BYTES = 20 * 1024 * 1024
"""Decoded payloads above this are refused (a deflate bomb must not exhaust memory)."""


@dataclass(frozen=True)
class ImsParameters:
    """The ``ParameterRequest`` part. ``extra`` keeps keys this code does not know, unchanged."""

    document_name: str
    message_id: str
    from_logical_id: str
    to_logical_id: str = ""
    encoding: Encoding = "NONE"
    character_set: str = "UTF-8"
    document_id: str = ""
    accounting_entity: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> bytes:
        """The part as ION sends it (camelCase keys)."""
        data: dict[str, str] = {
            "documentName": self.document_name,
            "messageId": self.message_id,
            "fromLogicalId": self.from_logical_id,
            "toLogicalId": self.to_logical_id,
            "encoding": self.encoding,
            "characterSet": self.character_set,
        }
        if self.document_id:
            data["documentId"] = self.document_id
        if self.accounting_entity:
            data["accountingEntity"] = self.accounting_entity
        data.update(self.extra)
        return json.dumps(data).encode()


@dataclass(frozen=True)
class ImsMessage:
    """One IMS message: its parameters and the payload decoded to the BOD's bytes."""

    parameters: ImsParameters
    payload: bytes

    @property
    def verb(self) -> str:
        return self.parameters.document_name.partition(".")[0]

    @property
    def noun(self) -> str:
        return self.parameters.document_name.partition(".")[2]


_KNOWN = {
    "documentName": "document_name",
    "messageId": "message_id",
    "fromLogicalId": "from_logical_id",
    "toLogicalId": "to_logical_id",
    "encoding": "encoding",
    "characterSet": "character_set",
    "documentId": "document_id",
    "accountingEntity": "accounting_entity",
}
_DOCUMENT_NAME = re.compile(r"^[A-Z][A-Za-z]*\.[A-Z][A-Za-z0-9]*$")


def parse_parameters(raw: bytes | str) -> ImsParameters:
    """The ``ParameterRequest`` JSON; InvalidMessage ``ims_bad_parameters`` naming what is wrong."""
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidMessage("ims_bad_parameters", f"{PARAMETER_PART} is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InvalidMessage("ims_bad_parameters", f"{PARAMETER_PART} is not a JSON object")
    values: dict[str, str] = {}
    extra: dict[str, str] = {}
    for key, value in data.items():
        text = "" if value is None else str(value)
        if key in _KNOWN:
            values[_KNOWN[key]] = text
        else:
            extra[str(key)] = text
    for required in ("documentName", "messageId", "fromLogicalId"):
        if not values.get(_KNOWN[required]):
            raise InvalidMessage(
                "ims_bad_parameters",
                f"{PARAMETER_PART} lacks {required}",
                field_path=f"{PARAMETER_PART}.{required}",
            )
    if not _DOCUMENT_NAME.match(values["document_name"]):
        raise InvalidMessage(
            "ims_bad_parameters",
            f"documentName {values['document_name']!r} is not Verb.Noun",
            field_path=f"{PARAMETER_PART}.documentName",
        )
    encoding = (values.pop("encoding", "") or "NONE").upper()
    if encoding not in ENCODINGS:
        raise InvalidMessage(
            "ims_bad_encoding",
            f"encoding {encoding!r} is not one of {', '.join(ENCODINGS)}",
            field_path=f"{PARAMETER_PART}.encoding",
        )
    return ImsParameters(
        document_name=values["document_name"],
        message_id=values["message_id"],
        from_logical_id=values["from_logical_id"],
        to_logical_id=values.get("to_logical_id", ""),
        encoding=encoding,
        character_set=values.get("character_set") or "UTF-8",
        document_id=values.get("document_id", ""),
        accounting_entity=values.get("accounting_entity", ""),
        extra=extra,
    )


def decode_payload(raw: bytes, encoding: Encoding, *, limit: int = MAX_PAYLOAD_BYTES) -> bytes:
    """The payload bytes for an IMS ``encoding``; InvalidMessage ``ims_bad_encoding`` if they don't decode."""
    if encoding == "NONE":
        data = raw
    elif encoding == "BASE64":
        try:
            data = base64.b64decode(b"".join(raw.split()), validate=True)
        except binascii.Error as exc:
            raise InvalidMessage("ims_bad_encoding", f"payload is not valid BASE64 ({exc})") from None
    else:
        data = _inflate(raw, limit)
    if len(data) > limit:
        raise InvalidMessage("ims_payload_too_large", f"payload exceeds {limit} bytes")
    if not data.strip():
        raise InvalidMessage("ims_empty_payload", f"{PAYLOAD_PART} is empty")
    return data


def _inflate(raw: bytes, limit: int) -> bytes:
    # "Deflated" is ambiguous on the wire: zlib-wrapped (RFC 1950) or raw deflate (RFC 1951); try both.
    for wbits in (zlib.MAX_WBITS, -zlib.MAX_WBITS):
        inflater = zlib.decompressobj(wbits)
        try:
            data = inflater.decompress(raw, limit + 1)
        except zlib.error:
            continue
        if len(data) > limit:
            raise InvalidMessage("ims_payload_too_large", f"inflated payload exceeds {limit} bytes")
        if inflater.eof:
            return data
    raise InvalidMessage("ims_bad_encoding", "payload is not valid DEFLATE data")


def encode_payload(data: bytes, encoding: Encoding) -> bytes:
    """The inverse of :func:`decode_payload` (zlib-wrapped for DEFLATE), for publishing and tests."""
    if encoding == "BASE64":
        return base64.b64encode(data)
    if encoding == "DEFLATE":
        return zlib.compress(data)
    return data


def decode_message(parameter_request: bytes | str, payload: bytes) -> ImsMessage:
    """An IMS message from its two parts, already split by the web framework."""
    parameters = parse_parameters(parameter_request)
    return ImsMessage(parameters, decode_payload(payload, parameters.encoding))


def parse_multipart_message(body: bytes, content_type: str) -> ImsMessage:
    """An IMS v3 message from a raw ``multipart/form-data`` body and its Content-Type header."""
    parts = split_multipart(body, content_type)
    missing = [name for name in (PARAMETER_PART, PAYLOAD_PART) if name not in parts]
    if missing:
        raise InvalidMessage("ims_missing_part", f"multipart message lacks part(s) {', '.join(missing)}")
    return decode_message(parts[PARAMETER_PART], parts[PAYLOAD_PART])


_BOUNDARY = re.compile(r"""boundary=(?:"([^"]+)"|([^;\s]+))""", re.IGNORECASE)
_NAME = re.compile(r"""\bname=(?:"([^"]*)"|([^;\s]+))""", re.IGNORECASE)


def split_multipart(body: bytes, content_type: str) -> dict[str, bytes]:
    """The parts of a ``multipart/form-data`` body by their form name, bytes exactly as sent.

    Refuses (``ims_malformed_multipart``) a missing boundary, a body without a closing delimiter, a part
    without a name, and duplicate names.
    """
    if not content_type.lower().startswith("multipart/"):
        raise InvalidMessage("ims_malformed_multipart", f"Content-Type {content_type!r} is not multipart")
    match = _BOUNDARY.search(content_type)
    if match is None:
        raise InvalidMessage("ims_malformed_multipart", "Content-Type has no boundary")
    delimiter = b"--" + (match.group(1) or match.group(2)).encode("latin-1")
    start = body.find(delimiter)
    if start < 0 or body.find(delimiter + b"--", start) < 0:
        raise InvalidMessage("ims_malformed_multipart", "body lacks the boundary delimiters")
    parts: dict[str, bytes] = {}
    chunks = body[start + len(delimiter) :].split(b"\r\n" + delimiter)
    for chunk in chunks:
        if chunk.startswith(b"--"):
            break  # the closing delimiter; anything after it is epilogue
        if not chunk.startswith(b"\r\n"):
            raise InvalidMessage("ims_malformed_multipart", "a delimiter is not followed by CRLF")
        head, separator, content = chunk[2:].partition(b"\r\n\r\n")
        if not separator:
            raise InvalidMessage("ims_malformed_multipart", "a part has no header/body separator")
        headers = _part_headers(head)
        disposition = headers.get("content-disposition", "")
        name_match = _NAME.search(disposition)
        if name_match is None:
            raise InvalidMessage("ims_malformed_multipart", "a part has no Content-Disposition name")
        name = name_match.group(1) if name_match.group(1) is not None else name_match.group(2)
        if name in parts:
            raise InvalidMessage("ims_malformed_multipart", f"part {name!r} appears twice")
        parts[name] = content
    return parts


def _part_headers(head: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in head.decode("utf-8", errors="replace").split("\r\n"):
        key, colon, value = line.partition(":")
        if colon:
            headers[key.strip().lower()] = value.strip()
    return headers


def build_multipart_message(
    parameters: ImsParameters, document: bytes, *, boundary: str | None = None
) -> tuple[bytes, str]:
    """(body, Content-Type) of an IMS v3 multipart message carrying ``document`` encoded as declared."""
    token = boundary or f"ims-{uuid.uuid4().hex}"
    payload = encode_payload(document, parameters.encoding)
    if f"--{token}".encode() in payload:
        raise ValueError("boundary occurs in the payload; choose another")
    body = b"".join(
        [
            f"--{token}\r\n".encode(),
            f'Content-Disposition: form-data; name="{PARAMETER_PART}"\r\n'.encode(),
            b"Content-Type: application/json\r\n\r\n",
            parameters.to_json(),
            f"\r\n--{token}\r\n".encode(),
            f'Content-Disposition: form-data; name="{PAYLOAD_PART}"; filename="{PAYLOAD_PART}"\r\n'.encode(),
            b"Content-Type: application/octet-stream\r\n\r\n",
            payload,
            f"\r\n--{token}--\r\n".encode(),
        ]
    )
    return body, f"multipart/form-data; boundary={token}"
