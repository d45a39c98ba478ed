"""What every PrestaShop flow reads of a raw record: snapshot or notification, the shop, its clock, meta.

The raw contract is written by the poller (``ingest/prestashop_poller/raw.py``): only records whose
``source`` header is ``prestashop-poll`` carry a payload to map. Everything else on the raw PrestaShop
topics (``source=prestashop-webhook`` thin notifications, which the poller answers with a snapshot of
its own) decodes to :class:`Skipped`, for which a flow's ``to_record`` returns None (counted
``skipped``). A flow also skips the snapshots of resources it does not map (the orders topic carries
order bundles, order_carrier snapshots and payment bundles, each for its own flow).

Identity (ARCHITECTURE.md §4): ``meta.version`` is the row's ``date_upd`` (shop-local, converted with
the shop's ``PS_TIMEZONE``) as UTC epoch milliseconds; ``meta.event_id`` is the UUIDv5 of
``PRESTASHOP|<entity>|<shop_id>:<id>|<version>`` under :data:`EVENT_NAMESPACE`. The shop id is part of
the name because two shops (installations) number their rows independently.

Every PrestaShop flow maps a BUNDLE (one entity's records plus the shop data its mapping needs) and
differs from the others only in its bundle model (a :class:`Bundle` naming its key and version in
:meth:`Bundle.identity`) and its pure mapping: :func:`bundle_flow` builds the rest from those (decode,
key, version, ``to_record``, the ``psinfor rules preview`` function and the runner's
:class:`~processors.runner.Flow`), so every flow skips, decodes and versions alike.
"""

from __future__ import annotations

import inspect
import json
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, NamedTuple, Protocol, TypeAlias, TypeVar, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connectors.prestashop.models import Address, Configuration, Country, State
from pipeline.errors import InvalidMessage
from pipeline.records import Headers
from processors.runner import Flow, FlowContext
from rules.engine import Rules
from rules.preview import register_flow
from rules.validation import invalid_from_validation_error
from schemas.codec import AvroDatum

SOURCE_SNAPSHOT = "prestashop-poll"
"""``source`` header of the records that carry a payload (see the module docstring)."""

EVENT_NAMESPACE = uuid.UUID("3f0c2b8e-9d4a-5e61-a7c3-1b2d4e6f8a90")
"""UUIDv5 namespace of PrestaShop canonical event ids. Never change it: ids would stop colliding."""

SKIP_VERSION = 2**63 - 1
"""Version reported for a :class:`Skipped` event.

The runner compares versions before it calls ``to_record``; a notification has no version of its own
and must reach ``to_record`` (which returns None, counted ``skipped``) rather than be counted as a
stale copy of the snapshot sharing its key. Nothing is remembered for a skipped event, so this value
never enters the version table.
"""

ModelT = TypeVar("ModelT", bound=BaseModel)
EventT = TypeVar("EventT")


@dataclass(frozen=True, slots=True)
class Skipped:
    """A raw record this flow maps to nothing: a webhook notification or another flow's record."""

    why: str


def decode_for_preview(
    decode: Callable[[bytes, Headers], EventT | Skipped], raw: bytes, event_type: str, what: str
) -> EventT:
    """Decode a bundle file for ``psinfor rules preview`` as the poller's snapshot of shop 1."""
    headers: Headers = (
        ("source", SOURCE_SNAPSHOT.encode()),
        ("event_type", event_type.encode()),
        ("shop_id", b"1"),
    )
    event = decode(raw, headers)
    if isinstance(event, Skipped):  # not reachable with the headers above; keeps the types honest
        raise InvalidMessage("undecodable", f"not {what}: {event.why}")
    return event


def header(headers: Headers, name: str) -> str | None:
    """The first header ``name`` as text, or None."""
    for key, value in headers:
        if key == name:
            return value.decode("utf-8", "replace")
    return None


def skip_reason(headers: Headers, *event_types: str) -> str | None:
    """Why this record carries nothing for a flow reading ``event_types``; None when it does."""
    source = header(headers, "source")
    if source != SOURCE_SNAPSHOT:
        return f"not a snapshot (source={source})"
    event_type = header(headers, "event_type")
    if event_type not in event_types:
        return f"event_type {event_type} belongs to another flow"
    return None


def shop_id_of(headers: Headers) -> str:
    """The psinfor shop id the poller stamped on the record (``shop_id`` header); InvalidMessage if none."""
    value = (header(headers, "shop_id") or "").strip()
    if not value.isdigit():
        raise InvalidMessage(
            "missing_field", "raw PrestaShop record without a numeric shop_id header", field_path="shop_id"
        )
    return value


def parse_json(raw: bytes) -> Any:
    """The JSON value of a raw payload; InvalidMessage ``undecodable`` when it is not JSON."""
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidMessage("undecodable", f"raw PrestaShop payload is not JSON: {exc}") from exc


def parse_model(model: type[ModelT], data: Any) -> ModelT:
    """``data`` validated as ``model``; a type error is InvalidMessage naming the field path and type."""
    if not isinstance(data, dict):
        raise InvalidMessage(
            "wrong_type",
            f"expected a JSON object for {model.__name__}, got {type(data).__name__}",
            field_path="$",
            details={"expected": "object", "got": type(data).__name__},
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_from_validation_error(exc) from exc


def configuration_map(rows: Iterable[Configuration]) -> dict[str, str]:
    """Configuration rows as name → value; the shop-wide row (no id_shop) wins, as in the client."""
    values: dict[str, str] = {}
    ordered = sorted(rows, key=lambda r: (r.id_shop or 0, r.id_shop_group or 0), reverse=True)
    for row in ordered:
        values[row.name] = row.value
    return values


@dataclass(frozen=True, slots=True)
class ShopClock:
    """Turns the shop's naive local timestamps into UTC (PrestaShop stores no zone; PS_TIMEZONE says it)."""

    zone: ZoneInfo

    @classmethod
    def from_configuration(cls, configuration: Mapping[str, str], *, field_path: str) -> ShopClock:
        """From the shop's ``PS_TIMEZONE``; InvalidMessage when it is missing or unknown."""
        name = configuration.get("PS_TIMEZONE", "").strip()
        if not name:
            raise InvalidMessage(
                "missing_field", "the record carries no PS_TIMEZONE configuration", field_path=field_path
            )
        try:
            return cls(ZoneInfo(name))
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise InvalidMessage(
                "invalid_format", f"PS_TIMEZONE {name!r} is not a known time zone", field_path=field_path
            ) from exc

    def utc(self, local: datetime) -> datetime:
        """``local`` (naive, shop time) as an aware UTC datetime (the earlier reading of a DST fold)."""
        return local.replace(tzinfo=self.zone).astimezone(UTC)

    def epoch_ms(self, local: datetime) -> int:
        """``local`` as UTC epoch milliseconds."""
        return int(self.utc(local).timestamp() * 1000)

    def required(self, local: datetime | None, field_path: str) -> datetime:
        """``local`` in UTC; InvalidMessage ``missing_field`` when the shop sent a zero/empty date."""
        if local is None:
            raise InvalidMessage(
                "missing_field", f"{field_path} is empty or a zero date", field_path=field_path
            )
        return self.utc(local)


def event_id(entity: str, shop_id: str, source_id: str, version: int) -> str:
    """The deterministic event id of one version of one PrestaShop row (module docstring)."""
    return str(uuid.uuid5(EVENT_NAMESPACE, f"PRESTASHOP|{entity}|{shop_id}:{source_id}|{version}"))


def meta(
    entity: str,
    shop_id: str,
    source_id: str,
    changed_at: datetime,
    *,
    ingested_at: datetime,
    correlation_id: str,
    id_entity: str | None = None,
) -> dict[str, Any]:
    """The canonical ``Meta`` of a PrestaShop record (a first event: no causation).

    ``changed_at`` (UTC) is both ``occurred_at`` and, as epoch ms, the ``version``. ``id_entity`` names
    the entity in the event id when one source row yields records of two kinds (default: ``entity``).
    """
    version = int(changed_at.timestamp() * 1000)
    return {
        "event_id": event_id(id_entity or entity, shop_id, source_id, version),
        "source_system": "PRESTASHOP",
        "source_entity": entity,
        "source_id": source_id,
        "version": version,
        "occurred_at": changed_at,
        "ingested_at": ingested_at,
        "correlation_id": correlation_id,
        "causation_id": None,
        "shop_id": shop_id,
    }


def canonical_address(
    address: Address,
    countries: Iterable[Country],
    states: Iterable[State],
    rules: Rules,
    *,
    field_path: str,
) -> dict[str, Any]:
    """The canonical ``Address`` datum of one PrestaShop address, standardised by the rules.

    The ISO country comes from the address's country record (else its id, which the rules may map),
    the ISO 3166-2 region from its state record; InvalidMessage (``unknown_country``,
    ``invalid_postcode``, ``missing_field`` for an empty city, ...) names ``field_path``.
    """
    country = next((c for c in countries if c.id == address.id_country), None)
    state = next((s for s in states if s.id == address.id_state), None) if address.id_state else None
    standard = rules.address.standardise(
        country=country.iso_code if country is not None and country.iso_code else address.id_country,
        lines=[address.address1, address.address2],
        city=address.city,
        postal_code=address.postcode,
        region=(state.iso_code or state.name) if state is not None else None,
        first_name=address.firstname,
        last_name=address.lastname,
        company=address.company,
        phone=address.phone_mobile or address.phone,
        vat_number=address.vat_number,
        field_path=field_path,
    )
    city = (standard.city or "").strip()
    if not city:
        raise InvalidMessage("missing_field", f"{field_path}.city is empty", field_path=f"{field_path}.city")
    return {
        "first_name": standard.first_name,
        "last_name": standard.last_name,
        "company": standard.company,
        "lines": list(standard.lines),
        "postal_code": standard.postal_code,
        "city": city,
        "region_code": standard.region_code,
        "country_code": standard.country_code,
        "phone": standard.phone,
        "vat_number": standard.vat_number,
    }


# --- the bundle flow builder -------------------------------------------------------------------------


class BundleIdentity(NamedTuple):
    """What keys and versions one bundle: the id in its key, its shop-local change time, that field."""

    key_id: int
    """The id in the canonical key ``{shop_id}:{key_id}``."""
    changed_at: datetime | None
    """Shop-local time of the change that made this bundle (the version); None: empty or a zero date."""
    changed_at_path: str
    """The field path an empty ``changed_at`` is reported under."""


class Bundle(BaseModel, ABC):
    """Base of the bundle models: tolerant of fields the poller may add, immutable once read.

    A subclass declares the bundle's records (each a PrestaShop source model) and its :meth:`identity`.
    Every bundle carries the shop's configuration rows its mapping needs (``PS_TIMEZONE`` at least:
    every version is a shop-local time).
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    configuration: list[Configuration] = Field(default_factory=list)

    @abstractmethod
    def identity(self) -> BundleIdentity:
        """The bundle's key id and version time."""

    @staticmethod
    def check_owner(
        what: str, row_id: int, owner: str, owner_id: int, expected_id: int, field_path: str
    ) -> None:
        """InvalidMessage ``invalid_format`` at ``field_path`` when a bundled row belongs to another record.

        E.g. ``check_owner("address", 5, "customer", address.id_customer, customer.id, path)``: a bundle
        mixing two owners' rows would map one owner's data onto the other.
        """
        if owner_id != expected_id:
            raise InvalidMessage(
                "invalid_format",
                f"{what} {row_id} belongs to {owner} {owner_id}, not {expected_id}",
                field_path=field_path,
            )

    def settings(self) -> dict[str, str]:
        """The bundle's configuration rows as name → value (see :func:`configuration_map`)."""
        return configuration_map(self.configuration)

    def clock(self) -> ShopClock:
        """The shop's clock (``PS_TIMEZONE``); InvalidMessage when the bundle lacks it or names no zone."""
        return ShopClock.from_configuration(self.settings(), field_path="configuration")


class AddressBook(Bundle, ABC):
    """A bundle carrying addresses with the countries and states they name (orders, customers)."""

    addresses: list[Address] = Field(default_factory=list)
    countries: list[Country] = Field(default_factory=list)
    states: list[State] = Field(default_factory=list)

    def canonical_address(self, address: Address, rules: Rules, *, field_path: str) -> dict[str, Any]:
        """``address`` as a canonical ``Address`` datum (see :func:`canonical_address`)."""
        return canonical_address(address, self.countries, self.states, rules, field_path=field_path)


BundleT = TypeVar("BundleT", bound=Bundle)
BundleEventT = TypeVar("BundleEventT", bound="BundleEvent[Any]")
BundleEventT_contra = TypeVar("BundleEventT_contra", bound="BundleEvent[Any]", contravariant=True)

MappedRecords: TypeAlias = AvroDatum | Sequence[AvroDatum] | None
"""What a bundle mapping returns: one canonical datum, one per sellable unit, or None (nothing)."""
MappedT = TypeVar("MappedT", bound=MappedRecords)
MappedT_co = TypeVar("MappedT_co", bound=MappedRecords, covariant=True)


@dataclass(frozen=True, slots=True)
class BundleEvent(Generic[BundleT]):
    """One bundle of one shop (the shop id comes from the record's ``shop_id`` header).

    Each flow names its own subclass (``OrderEvent``), so an event says which bundle it carries.
    """

    shop_id: str
    bundle: BundleT


class BundleMapping(Protocol[BundleEventT_contra, MappedT_co]):
    """A flow's pure mapping: ``to_order(event, rules, *, ingested_at, correlation_id)``.

    A mapping that also declares a ``history`` parameter is given the worker's
    :class:`~processors.history.AnomalyHistory` (``FlowContext.history``) to read.
    """

    def __call__(
        self, event: BundleEventT_contra, rules: Rules, /, *, ingested_at: datetime, correlation_id: str
    ) -> MappedT_co: ...


class BundleFlow(NamedTuple, Generic[BundleEventT, MappedT]):
    """A built bundle flow: the functions its module exports and the runner's :class:`Flow` of them."""

    decode: Callable[[bytes, Headers], BundleEventT | Skipped]
    key: Callable[[BundleEventT | Skipped], str]
    version: Callable[[BundleEventT | Skipped], int]
    to_record: Callable[[BundleEventT | Skipped, FlowContext], MappedT | None]
    flow: Flow[BundleEventT | Skipped]


def bundle_flow(
    name: str,
    source: str,
    output: str,
    record: str,
    event_type: str,
    bundle: type[BundleT],
    event: Callable[[str, BundleT], BundleEventT],
    mapping: BundleMapping[BundleEventT, MappedT],
    *,
    record_key: Callable[[AvroDatum], str] | None = None,
    preview_as: str = "records",
) -> BundleFlow[BundleEventT, MappedT]:
    """Build the PrestaShop flow ``name`` mapping ``event_type`` bundles of ``source`` to ``output``.

    Every bundle flow behaves alike: a record whose ``source`` header is not the poller's snapshot, or
    whose ``event_type`` is another flow's, decodes to :class:`Skipped` (version :data:`SKIP_VERSION`,
    ``to_record`` None: counted skipped). A bundle decodes with its ``shop_id`` header checked first
    (InvalidMessage ``missing_field``), then the JSON (``undecodable``), then the ``bundle`` model
    (``wrong_type`` / ``missing_field`` naming the field path), and becomes ``event(shop_id, bundle)``.
    The key is ``{shop_id}:{key_id}`` and the version the bundle's change time on the shop's clock as
    UTC epoch ms (:meth:`Bundle.identity`). ``to_record`` is ``mapping`` with the worker's rules.

    Registers the flow's ``psinfor rules preview`` (a bundle file as shop 1's, ingested now; a
    multi-record mapping previews as ``{preview_as: [...]}``, a mapping to nothing as ``{}``).
    """
    reads_history = "history" in inspect.signature(mapping).parameters

    def decode(raw: bytes, headers: Headers) -> BundleEventT | Skipped:
        why = skip_reason(headers, event_type)
        if why is not None:
            return Skipped(why)
        shop_id = shop_id_of(headers)
        return event(shop_id, parse_model(bundle, parse_json(raw)))

    def key(decoded: BundleEventT | Skipped) -> str:
        if isinstance(decoded, Skipped):
            return ""  # never produced: a skipped record emits nothing
        return f"{decoded.shop_id}:{decoded.bundle.identity().key_id}"

    def version(decoded: BundleEventT | Skipped) -> int:
        if isinstance(decoded, Skipped):
            return SKIP_VERSION
        found: Bundle = decoded.bundle
        clock = found.clock()
        identity = found.identity()
        return int(clock.required(identity.changed_at, identity.changed_at_path).timestamp() * 1000)

    def to_record(decoded: BundleEventT | Skipped, context: FlowContext) -> MappedT | None:
        if isinstance(decoded, Skipped):
            return None
        if reads_history:
            with_history = cast(Callable[..., MappedT], mapping)
            return with_history(
                decoded,
                context.rules,
                ingested_at=context.ingested_at,
                correlation_id=context.correlation_id,
                history=context.history,
            )
        return mapping(
            decoded, context.rules, ingested_at=context.ingested_at, correlation_id=context.correlation_id
        )

    def preview(raw: bytes, rules: Rules) -> dict[str, Any]:
        decoded = decode_for_preview(decode, raw, event_type, f"a {event_type}")
        mapped = mapping(decoded, rules, ingested_at=datetime.now(UTC), correlation_id="preview")
        if mapped is None:
            return {}
        return mapped if isinstance(mapped, dict) else {preview_as: list(mapped)}

    register_flow(name, preview)
    flow: Flow[BundleEventT | Skipped] = Flow(
        name, (source,), output, record, decode, to_record, key, version, record_key
    )
    return BundleFlow(decode, key, version, to_record, flow)
