"""The pure decision of the IMS receiver: one IMS v3 message in, one raw record (or one refusal) out.

No I/O here: the HTTP layer (:mod:`ingest.infor_events.app`) authenticates, reads the body, calls
:meth:`ImsRouter.decide`, and either answers the :class:`Refusal` or produces the :class:`RawBod` and
answers 202 once the broker acknowledged it.

Checks, in the order a message meets them:

1. the body is ``multipart/form-data`` with a ``ParameterRequest`` (JSON: documentName, messageId,
   fromLogicalId, ...) and a ``MessagePayload`` that decodes per its ``encoding`` (else 400 with the
   IMS parser's reason: ``ims_malformed_multipart``, ``ims_missing_part``, ``ims_bad_parameters``,
   ``ims_bad_encoding``, ``ims_empty_payload``, ``ims_payload_too_large``);
2. the message is for us: ``toLogicalId`` is one of our connection point's logical ids when any are
   configured (else 412 ``unexpected_logical_id``), and ``documentName`` is one we route (else 412
   ``unexpected_document``) — both are ION configuration problems, which IMS v3 reports as 412;
3. the payload is a well-formed, DTD-free BOD (else 400 ``malformed_xml``, ``bod_forbidden_xml``,
   ``bod_invalid`` or ``bod_too_large``)
   whose root matches ``documentName`` (else 400 ``document_mismatch``) and whose noun carries its
   entity id (else 400 ``missing_entity_id``).

The record value is the BOD exactly as sent (decoded from its transfer encoding only); the key is the
noun's entity id (order, delivery, invoice, item, ``{warehouse}-{item}`` document or customer number) so
every change of one entity stays in order on one partition; the headers are :data:`RECORD_HEADERS`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from connectors.infor.bod import parse_bod
from connectors.infor.ims import ImsMessage, parse_multipart_message
from pipeline.errors import InvalidMessage
from schemas.catalogue import Catalogue

SOURCE = "infor-ims"
"""The ``source`` header of every record the receiver writes."""

CORRELATION_HEADER = "x-correlation-id"
"""ION may pass a correlation id in this request header; otherwise the messageId is used."""

RECORD_HEADERS = (
    "source",
    "document_name",
    "bodid",
    "variation_id",
    "logical_id",
    "message_id",
    "received_at",
    "content_type",
    "correlation_id",
)
"""Kafka headers of each raw record, in this order."""


class InforEntity(StrEnum):
    """The raw Infor topics' entity part (``raw.infor.<entity>``)."""

    SALESORDERS = "salesorders"
    SHIPMENTS = "shipments"
    INVOICES = "invoices"
    ITEMS = "items"
    INVENTORY = "inventory"
    CUSTOMERS = "customers"


NOUN_ENTITIES: Mapping[str, InforEntity] = {
    "SalesOrder": InforEntity.SALESORDERS,
    "Shipment": InforEntity.SHIPMENTS,
    "Invoice": InforEntity.INVOICES,
    "ItemMaster": InforEntity.ITEMS,
    "InventoryCount": InforEntity.INVENTORY,
    "CustomerPartyMaster": InforEntity.CUSTOMERS,
}
"""The BOD nouns the receiver routes, and where each goes."""

_CORRELATION = re.compile(r"^[\x21-\x7e]{1,128}$")


def raw_topics(catalogue: Catalogue, prefix: str = "") -> dict[InforEntity, str]:
    """``raw.infor.<entity>`` for every entity, checked against the catalogue, with ``prefix``."""
    topics: dict[InforEntity, str] = {}
    for entity in InforEntity:
        name = f"raw.infor.{entity.value}"
        catalogue.topic(name)  # raises when the catalogue lost the topic: a config bug, fail at start
        topics[entity] = prefix + name
    return topics


def received_at_text(now: float) -> str:
    """``received_at`` header value: UTC ISO-8601 with milliseconds."""
    return datetime.fromtimestamp(now, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Refusal(Exception):
    """A message the receiver answers with ``status`` and a JSON body, without producing."""

    status: int
    reason: str
    message: str
    hint: str

    def body(self) -> dict[str, str]:
        """The JSON error body."""
        return {"error": self.reason, "message": self.message, "hint": self.hint}


@dataclass(frozen=True)
class RawBod:
    """What to produce for one accepted IMS message, and the facts the answer and dedupe need."""

    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    document_name: str
    bodid: str
    variation_id: str
    message_id: str
    entity: InforEntity
    correlation_id: str

    @property
    def dedupe_key(self) -> str:
        """BODID (and variation, which some senders keep out of the BODID); the messageId without one."""
        if self.bodid:
            return f"bod\x00{self.bodid}\x00{self.variation_id}"
        return f"msg\x00{self.message_id}"


class ImsRouter:
    """Decides what to do with one IMS message; see the module docstring for the checks."""

    def __init__(
        self,
        *,
        topics: Mapping[InforEntity, str],
        accepted_documents: frozenset[str],
        to_logical_ids: frozenset[str] = frozenset(),
        max_body_bytes: int = 5 * 1024 * 1024,
    ) -> None:
        unroutable = sorted(
            name for name in accepted_documents if name.partition(".")[2] not in NOUN_ENTITIES
        )
        if unroutable:
            raise ValueError(
                f"accepted documents {', '.join(unroutable)} have no raw topic; routed nouns: "
                + ", ".join(sorted(NOUN_ENTITIES))
            )
        missing = sorted(entity.value for entity in InforEntity if entity not in topics)
        if missing:
            raise ValueError(f"no topic for {', '.join(missing)}")
        self._topics = dict(topics)
        self.accepted_documents = accepted_documents
        self.to_logical_ids = to_logical_ids
        self.max_body_bytes = max_body_bytes

    def too_large(self, size: int) -> Refusal:
        """The 413 refusal for a body of at least ``size`` bytes."""
        return Refusal(
            413,
            "payload_too_large",
            f"message of {size} bytes or more exceeds the limit of {self.max_body_bytes} bytes",
            "raise PSINFOR_INFOR_EVENTS__MAX_BODY_BYTES or let ION send the document deflated",
        )

    def decide(self, content_type: str, body: bytes, headers: Mapping[str, str], now: float) -> RawBod:
        """The record to produce for this message, or :class:`Refusal`; ``headers`` names are lower case.

        ``now`` is the receiver's unix time (for ``received_at``).
        """
        if len(body) > self.max_body_bytes:
            raise self.too_large(len(body))
        try:
            message = parse_multipart_message(body, content_type)
        except InvalidMessage as exc:
            raise Refusal(
                400,
                exc.reason,
                str(exc)[:300],
                "send multipart/form-data with a ParameterRequest JSON part (documentName, messageId, "
                "fromLogicalId, toLogicalId, encoding) and a MessagePayload part",
            ) from exc
        self._check_addressed_to_us(message)
        return self._record(message, content_type, headers, now)

    def _check_addressed_to_us(self, message: ImsMessage) -> None:
        parameters = message.parameters
        if self.to_logical_ids and parameters.to_logical_id not in self.to_logical_ids:
            raise Refusal(
                412,
                "unexpected_logical_id",
                f"toLogicalId {parameters.to_logical_id[:100]!r} is not this receiver's connection point",
                "check the document flow in ION Desk: route to " + ", ".join(sorted(self.to_logical_ids)),
            )
        if parameters.document_name not in self.accepted_documents:
            raise Refusal(
                412,
                "unexpected_document",
                f"documentName {parameters.document_name[:100]!r} is not routed by this receiver",
                "send only " + ", ".join(sorted(self.accepted_documents)) + " to this connection point",
            )

    def _record(
        self, message: ImsMessage, content_type: str, headers: Mapping[str, str], now: float
    ) -> RawBod:
        parameters = message.parameters
        try:
            bod = parse_bod(message.payload)
        except InvalidMessage as exc:
            reason = "malformed_xml" if exc.reason == "bod_malformed" else exc.reason
            raise Refusal(
                400,
                reason,
                f"MessagePayload is not a readable BOD: {exc}"[:300],
                "send a well-formed OAGIS BOD (no DTD) in the declared encoding",
            ) from exc
        if bod.document_name != parameters.document_name:
            raise Refusal(
                400,
                "document_mismatch",
                f"documentName {parameters.document_name!r} but the BOD is {bod.document_name!r}",
                "documentName must be the BOD's Verb.Noun",
            )
        entity_id = bod.entity_id
        if not entity_id:
            raise Refusal(
                400,
                "missing_entity_id",
                f"{bod.document_name} carries no entity id (its noun's document id is empty)",
                "the BOD's noun must carry its DocumentID/ID (or ItemID/PartyIDs) to be keyed",
            )
        correlation_id = headers.get(CORRELATION_HEADER, "")
        if not _CORRELATION.match(correlation_id):
            correlation_id = parameters.message_id if _CORRELATION.match(parameters.message_id) else ""
        correlation_id = correlation_id or str(uuid.uuid4())
        entity = NOUN_ENTITIES[bod.noun]
        record_headers: Sequence[tuple[str, str]] = (
            ("source", SOURCE),
            ("document_name", bod.document_name),
            ("bodid", bod.bodid),
            ("variation_id", bod.variation_id),
            ("logical_id", bod.logical_id or parameters.from_logical_id),
            ("message_id", parameters.message_id),
            ("received_at", received_at_text(now)),
            ("content_type", "application/xml"),
            ("correlation_id", correlation_id),
        )
        return RawBod(
            topic=self._topics[entity],
            key=entity_id.encode(),
            value=message.payload,
            headers=tuple((name, value.encode()) for name, value in record_headers),
            document_name=bod.document_name,
            bodid=bod.bodid,
            variation_id=bod.variation_id,
            message_id=parameters.message_id,
            entity=entity,
            correlation_id=correlation_id,
        )
