"""The one typed settings object every ``main()`` builds once and passes down.

Environment variables use the prefix ``PSINFOR_`` and ``__`` between nested names, for example
``PSINFOR_KAFKA__BOOTSTRAP_SERVERS``; a whole section may also be given as JSON
(``PSINFOR_SERVICE='{"http_port": 9100}'``), the per-field variables winning. An empty variable counts
as unset. A secret (a ``SecretStr`` field) can come from a mounted file instead: set
``PSINFOR_KAFKA__SASL_PASSWORD_FILE=/run/secrets/kafka`` and the file's content (trailing newline
stripped) becomes ``kafka.sasl_password``; setting both the variable and its ``_FILE`` twin is refused.

Nothing here is read at import time. Tests build settings in code, and explicit values win over the
environment: ``Settings(kafka=KafkaSettings(bootstrap_servers=...))`` or
``load_settings(service={"http_port": 0})`` (a dict merges into what the environment says).

``load_settings()`` is what ``main()`` calls. Every problem becomes one :class:`ConfigError` line that
names the environment variable: a missing or malformed value, an unreadable secret file, a section's
JSON that does not parse, and an unknown ``PSINFOR_*`` variable (most likely a typo, so the message
names the closest supported variable; silence would leave the setting at its default). The variables
in :data:`NON_SETTINGS_VARIABLES` belong to the test fixtures and are let through.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import os
import re
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from pipeline.errors import ConfigError

ENV_PREFIX = "PSINFOR_"
ENV_NESTED_DELIMITER = "__"
FILE_SUFFIX = "_FILE"
MASK = "**********"

NON_SETTINGS_VARIABLES: Mapping[str, str] = {
    "PSINFOR_KAFKA_BOOTSTRAP": "test fixtures only: run the tests against this existing broker",
    "PSINFOR_REGISTRY_URL": "test fixtures only: run the tests against this existing registry",
}
"""``PSINFOR_*`` variables that are not settings (read by the test fixtures), so not typos."""

# Error messages raised by the section validators name fields as ``{field}``; the error reporter
# replaces each with that field's environment variable, so sections stay unaware of where they nest.
_FIELD_MARK = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _upper(value: object) -> object:
    return value.strip().upper() if isinstance(value, str) else value


class KafkaSettings(_Section):
    """How both Kafka client libraries (librdkafka and aiokafka/faust) reach the cluster."""

    bootstrap_servers: str = Field(
        description="Comma-separated host:port list of brokers, e.g. 127.0.0.1:9092,127.0.0.1:9093."
    )
    client_id: str = Field(
        "psinfor", min_length=1, description="Client id prefix; each stage appends its name."
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT",
        description="How clients talk to the brokers: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.",
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512); needed with SASL_*."
    )
    sasl_username: str | None = Field(None, description="SASL user name; needed with SASL_*.")
    sasl_password: SecretStr | None = Field(None, description="SASL password; needed with SASL_*.")
    ssl_ca_location: Path | None = Field(
        None, description="PEM file of the CA that signed the brokers (default: the system trust store)."
    )
    ssl_certificate_location: Path | None = Field(
        None, description="Client certificate PEM for mutual TLS; set together with the key."
    )
    ssl_key_location: Path | None = Field(
        None, description="Client private key PEM for mutual TLS; set together with the certificate."
    )
    ssl_key_password: SecretStr | None = Field(
        None, description="Password of the client private key, if any."
    )
    ssl_check_hostname: bool = Field(
        True, description="Verify that the broker certificate matches its host name (true/false)."
    )

    _normalise_protocol = field_validator("security_protocol", "sasl_mechanism", mode="before")(_upper)

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_port_list(cls, value: str) -> str:
        servers = [part.strip() for part in value.split(",") if part.strip()]
        if not servers:
            raise ValueError("must list at least one host:port")
        for server in servers:
            host, sep, port = server.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{server!r} is not host:port")
        return ",".join(servers)

    @model_validator(mode="after")
    def _security_is_consistent(self) -> KafkaSettings:
        protocol = self.security_protocol
        uses_sasl = protocol.startswith("SASL_")
        uses_ssl = protocol.endswith("SSL")
        sasl: dict[str, object] = {
            "sasl_mechanism": self.sasl_mechanism,
            "sasl_username": self.sasl_username,
            "sasl_password": self.sasl_password,
        }
        if uses_sasl:
            missing = [name for name, value in sasl.items() if value is None]
            if missing:
                needed = ", ".join("{" + name + "}" for name in missing)
                raise ValueError(f"{{security_protocol}}={protocol} also needs {needed}")
        else:
            # A SASL option under a non-SASL protocol means the protocol was forgotten: refuse rather
            # than connect without the credentials the operator meant to use.
            stray = [name for name, value in sasl.items() if value is not None]
            if stray:
                raise ValueError(
                    f"{{{stray[0]}}} is set but {{security_protocol}}={protocol} does not use SASL"
                )
        tls = {
            "ssl_ca_location": self.ssl_ca_location,
            "ssl_certificate_location": self.ssl_certificate_location,
            "ssl_key_location": self.ssl_key_location,
            "ssl_key_password": self.ssl_key_password,
        }
        if not uses_ssl:
            stray = [name for name, value in tls.items() if value is not None]
            if stray:
                raise ValueError(
                    f"{{{stray[0]}}} is set but {{security_protocol}}={protocol} does not use TLS"
                )
        if (self.ssl_certificate_location is None) != (self.ssl_key_location is None):
            raise ValueError("{ssl_certificate_location} and {ssl_key_location} must be set together")
        return self


class RegistrySettings(_Section):
    """A Confluent-compatible Schema Registry (Apicurio's ccompat API in the sandbox)."""

    url: str = Field(
        description="Base URL of the Confluent-compatible API, e.g. http://127.0.0.1:8081/apis/ccompat/v7."
    )
    basic_auth_user: str | None = Field(None, description="Registry basic-auth user, if it needs one.")
    basic_auth_password: SecretStr | None = Field(None, description="Registry basic-auth password.")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip()
        if not re.fullmatch(r"https?://[^/\s]+(/\S*)?", value):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _auth_pair(self) -> RegistrySettings:
        if (self.basic_auth_user is None) != (self.basic_auth_password is None):
            raise ValueError("{basic_auth_user} and {basic_auth_password} must be set together")
        return self


class RetrySettings(_Section):
    """Backoff for ``RetryableError``: exponential with full jitter, capped, never below Retry-After."""

    initial_backoff_s: float = Field(0.2, gt=0, description="First retry delay in seconds.")
    max_backoff_s: float = Field(30.0, gt=0, description="Longest retry delay in seconds.")
    multiplier: float = Field(2.0, ge=1, description="Each retry's delay is the previous one times this.")

    @model_validator(mode="after")
    def _ordered(self) -> RetrySettings:
        if self.max_backoff_s < self.initial_backoff_s:
            raise ValueError("{max_backoff_s} must not be smaller than {initial_backoff_s}")
        return self


class DlqSettings(_Section):
    """The dead-letter limit: a stage whose messages all fail stops instead of draining into the DLQ."""

    max_consecutive_invalid: int = Field(
        100, ge=1, description="Stop after this many invalid messages in a row."
    )
    max_invalid_ratio: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Stop when more than this share (0-1] of the last `window` messages failed.",
    )
    window: int = Field(1000, ge=1, description="How many recent messages the ratio is computed over.")
    delivery_timeout_s: float = Field(30.0, gt=0, description="How long to wait for a DLQ write's ack.")


class ServiceSettings(_Section):
    """The HTTP side every stage serves (/metrics, /healthz, /readyz) and its logs."""

    http_host: str = Field(
        "127.0.0.1", min_length=1, description="Address /metrics, /healthz, /readyz bind to."
    )
    http_port: int = Field(
        0, ge=0, le=65535, description="Port of that server; 0 picks a free port (logged)."
    )
    heartbeat_timeout_s: float = Field(
        30.0, gt=0, description="/healthz fails when the stage's loop has not reported for this long."
    )
    lag_interval_s: float = Field(
        15.0,
        ge=0,
        description="How often a consuming stage samples its own consumer lag (messages and seconds) for "
        "/metrics; 0 turns it off.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Lowest level logged: DEBUG, INFO, WARNING or ERROR."
    )
    log_format: Literal["json", "text"] = Field(
        "json", description="json (one object per line, for collectors) or text (for people)."
    )
    commit_interval_s: float = Field(1.0, gt=0, description="How often stored offsets are committed.")

    _normalise_level = field_validator("log_level", mode="before")(_upper)

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value


class SinkSettings(_Section):
    """The sink runner (`psinfor sink`): key-ordered parallelism, memory bound, circuit breaker, shutdown."""

    max_in_flight_keys: int = Field(
        16, ge=1, description="Most keys applied to the target at once (each key strictly in order)."
    )
    max_buffered_per_partition: int = Field(
        1000,
        ge=1,
        description="A partition is paused while this many of its records are read but not yet committable.",
    )
    breaker_failures: int = Field(
        5, ge=1, description="Consecutive retryable failures of one target that open its circuit breaker."
    )
    breaker_probe_s: float = Field(
        5.0, gt=0, description="While a breaker is open, one held record is tried every this many seconds."
    )
    shutdown_timeout_s: float = Field(
        20.0, gt=0, description="On stop, how long running target calls may take before they are abandoned."
    )
    revoke_timeout_s: float = Field(
        10.0, gt=0, description="On a rebalance, how long running calls of revoked partitions may finish."
    )
    session_timeout_s: float = Field(
        45.0, ge=1, description="Seconds before the group gives a silent (killed) sink's partitions away."
    )
    topic_prefix: str = Field(
        "", description="Prepended to every topic name from the catalogue (as `topics apply --prefix`)."
    )


class RulesSettings(_Section):
    """The transformation rules file every processor (and sink) loads once at start-up."""

    # Named ``path``, not ``file``: PSINFOR_RULES__FILE would read as the ``_FILE`` secret twin of a
    # ``PSINFOR_RULES`` variable under this module's convention.
    path: Path | None = Field(
        None,
        description="Rules YAML file (check it with `psinfor rules check`); unset: rules/default.yaml.",
    )


class WebhookReceiverSettings(_Section):
    """The signed-webhook receiver (`psinfor ingest prestashop-webhooks`), served on `service`'s address."""

    secrets: SecretStr = Field(
        description="Webhook signing secrets, whsec_<base64>, space- or comma-separated (old and new while "
        "rotating); any one that matches is accepted."
    )
    shop_keys: str = Field(
        description=(
            "Comma-separated shop keys accepted in /webhooks/prestashop/{shop_key}; others get 401. "
            "Write key=SHOP_ID to name the shop's numeric id (multistore); a bare key means "
            "PSINFOR_PRESTASHOP__SHOP_ID (default 1). Records are keyed {shop_id}:{resource}:{id}, "
            "as the poller keys them."
        )
    )
    max_body_bytes: int = Field(
        1_048_576, ge=1024, description="Largest webhook body accepted; larger ones get 413 unread."
    )
    timestamp_tolerance_s: float = Field(
        300.0, gt=0, description="webhook-timestamp may be at most this many seconds from now (replay guard)."
    )
    accept_legacy_signature: bool = Field(
        False,
        description="Also accept X-PS-Signature: sha256=<hex> (no timestamp, so no replay protection).",
    )
    dedupe_window_s: float = Field(
        86_400.0, gt=0, description="How long an acknowledged webhook-id is remembered to absorb retries."
    )
    dedupe_max_entries: int = Field(
        1_000_000, ge=1, description="Most webhook-ids remembered; the oldest are forgotten first."
    )
    ack_timeout_s: float = Field(
        10.0, gt=0, description="How long a request waits for the broker's ack before answering 503."
    )
    retry_after_s: int = Field(
        5, ge=1, description="Retry-After (seconds) sent with 503 when Kafka is unavailable."
    )
    topic_prefix: str = Field(
        "", description="Prepended to every raw topic name from the catalogue (as `topics apply --prefix`)."
    )

    @field_validator("secrets")
    @classmethod
    def _whsec_list(cls, value: SecretStr) -> SecretStr:
        tokens = _split_list(value.get_secret_value())
        if not tokens:
            raise ValueError("must list at least one whsec_<base64> secret")
        for position, token in enumerate(tokens, start=1):
            if not token.startswith("whsec_"):
                raise ValueError(f"secret #{position} does not start with whsec_")
            try:
                key = base64.b64decode(token[len("whsec_") :], validate=True)
            except binascii.Error:
                raise ValueError(f"secret #{position} is not whsec_ followed by base64") from None
            if len(key) < 16:
                raise ValueError(f"secret #{position} is shorter than 16 bytes; generate a longer one")
        return value

    @field_validator("shop_keys")
    @classmethod
    def _shop_key_list(cls, value: str) -> str:
        keys = _split_list(value)
        if not keys:
            raise ValueError("must list at least one shop key")
        for key in keys:
            if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}(=[1-9][0-9]{0,9})?", key):
                raise ValueError(
                    f"{key!r} is not a shop key (letters, digits, _ . -, at most 64; optionally =SHOP_ID)"
                )
        return ",".join(keys)

    def secret_list(self) -> list[SecretStr]:
        """Each configured secret on its own, in the order given."""
        return [SecretStr(token) for token in _split_list(self.secrets.get_secret_value())]

    def shop_key_set(self) -> frozenset[str]:
        """The accepted shop keys."""
        return frozenset(self.shop_ids(default_shop_id=1))

    def shop_ids(self, *, default_shop_id: int) -> dict[str, int]:
        """Each accepted shop key with its numeric shop id (``default_shop_id`` for a bare key)."""
        ids: dict[str, int] = {}
        for entry in _split_list(self.shop_keys):
            key, _, shop_id = entry.partition("=")
            ids[key] = int(shop_id) if shop_id else default_shop_id
        return ids


def _split_list(value: str) -> list[str]:
    return [part for part in re.split(r"[\s,]+", value.strip()) if part]


class PrestaShopSettings(_Section):
    """How the poller reaches one shop's webservice (``/api/``) with its webservice key."""

    base_url: str = Field(
        description="Shop root URL, e.g. https://shop.example (a trailing /api is accepted)."
    )
    ws_key: SecretStr = Field(description="Webservice key (32 characters), sent as the Basic-auth user name.")
    shop_id: int = Field(1, ge=1, description="The shop's id; the first part of every raw record key.")
    time_zone: str | None = Field(
        None, description="Shop time zone (IANA name); default: the shop's own PS_TIMEZONE, read once."
    )
    connect_timeout_s: float = Field(5.0, gt=0, description="TCP/TLS connect timeout of a request.")
    timeout_s: float = Field(
        30.0, gt=0, description="Read/write timeout of a request (display=full is slow)."
    )
    page_size: int = Field(
        100, ge=1, le=1000, description="Rows per list request (display=full loads each row: keep modest)."
    )
    send_email: bool = Field(
        False,
        description="Whether an order state the sinks set sends the customer the state's e-mail "
        "(order_histories?sendemail=1).",
    )
    requests_per_second: float = Field(
        50.0, gt=0, description="Pace of the sinks' webservice calls per key (adapts down on 429 answers)."
    )

    @field_validator("base_url")
    @classmethod
    def _shop_url(cls, value: str) -> str:
        value = value.strip()
        if not re.fullmatch(r"https?://[^/\s]+(/\S*)?", value):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            ZoneInfo(value.strip())
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a known IANA time zone") from None
        return value.strip()


class PollerSettings(_Section):
    """The PrestaShop webservice poller: cadences, overlap and where a first run starts."""

    interval_s: float = Field(5.0, gt=0, description="Pause between two incremental date_upd polls.")
    overlap_s: int = Field(
        10,
        ge=1,
        description="Each poll re-reads this many seconds before the watermark (late commits; rows seen "
        "again are dropped by (id, date_upd)).",
    )
    start_at: str = Field(
        "1970-01-02 00:00:00",
        description="Shop-local YYYY-MM-DD HH:MM:SS a first run (no stored watermark) starts from.",
    )
    backstop_interval_s: float = Field(
        30.0,
        gt=0,
        description="Pause between two date_upd polls of customers, addresses and products (the backstop "
        "of their webhook notifications; a first run starts at its first poll, not at start_at).",
    )
    carriers_scan_interval_s: float = Field(
        300.0, gt=0, description="Pause between full scans of order_carriers (tracking numbers)."
    )
    stock_scan_interval_s: float = Field(
        300.0, gt=0, description="Pause between full scans of stock_availables."
    )
    progress_interval_s: float = Field(
        10.0, gt=0, description="How often a running poll logs its progress (records/s, watermark)."
    )
    checkpoint_interval_s: float = Field(
        1.0, gt=0, description="How often a running poll persists its acknowledged watermark."
    )
    notifications: bool = Field(
        True, description="Re-read resources named by webhook notifications on the raw topics (true/false)."
    )
    notifications_lookback_s: float = Field(
        900.0,
        gt=0,
        description="Where the notification reader starts on a raw partition its group never committed: "
        "the notifications of the last this many seconds (older changes are the polling loops' job).",
    )
    group_id: str = Field(
        "psinfor-prestashop-poller", min_length=1, description="Consumer group of the notification reader."
    )
    topic_prefix: str = Field(
        "", description="Prepended to every topic name from the catalogue (as `topics apply --prefix`)."
    )

    @field_validator("start_at")
    @classmethod
    def _shop_timestamp(cls, value: str) -> str:
        try:
            parsed = datetime.strptime(value.strip(), "%Y-%m-%d %H:%M:%S")
        except ValueError:
            raise ValueError(f"{value!r} is not YYYY-MM-DD HH:MM:SS") from None
        return parsed.strftime("%Y-%m-%d %H:%M:%S")


class InforSettings(_Section):
    """How the MI poller reaches Infor M3 through the ION API gateway (``.ionapi`` service account)."""

    ionapi_path: Path = Field(
        description="The .ionapi file of the Backend Service app (with its service account); the file is a "
        "secret, mount it read-only."
    )
    cono: str = Field(
        description="M3 company (CONO), sent with every MI call (never the service account default).",
        pattern=r"^[0-9]{1,3}$",
    )
    divi: str = Field(
        "", max_length=3, description="M3 division (DIVI), sent with every MI call; empty for company level."
    )
    timeout_s: float = Field(
        30.0, gt=0, lt=60, description="Timeout of one MI call (below the gateway's 60 s limit)."
    )
    requests_per_minute: int = Field(
        600,
        ge=1,
        description="ION API quota of the service account: the sinks pace every call below it and adapt "
        "to 429 answers.",
    )
    order_type: str = Field(
        "WEB",
        min_length=1,
        max_length=3,
        description="M3 order type (ORTP) of shop orders, unless the rules' enrichment names one.",
    )
    customer_template: str = Field(
        "WEB", max_length=10, description="M3 customer template (CUTM) new shop customers are created from."
    )
    customer_number_prefix: str = Field(
        "PS",
        min_length=1,
        max_length=3,
        description="Prefix of the M3 customer number (CUNO) of a shop customer: prefix + the shop's "
        "customer id (deterministic, so concurrent creates of one customer meet in M3).",
    )
    shipping_charge_id: str | None = Field(
        None, description="M3 charge (CRID) carrying an order's shipping fee; unset: shipping is not sent."
    )
    wrapping_charge_id: str | None = Field(
        None, description="M3 charge (CRID) carrying gift wrapping; unset: wrapping is not sent."
    )


_DEFAULT_IMS_DOCUMENTS = (
    "Sync.SalesOrder,Sync.Shipment,Sync.Invoice,Sync.ItemMaster,Sync.InventoryCount,Sync.CustomerPartyMaster"
)


class InforEventsSettings(_Section):
    """The Infor event sources: the IMS v3 receiver (`ingest infor-events`) and the MI poller
    (`ingest infor-poller`)."""

    tokens: SecretStr | None = Field(
        None,
        description="Bearer tokens ION sends to the IMS receiver, space- or comma-separated (old and new "
        "while rotating); required by the receiver.",
    )
    max_body_bytes: int = Field(
        5_242_880, ge=1024, description="Largest IMS message accepted; larger ones get 413 unread."
    )
    to_logical_ids: str = Field(
        "",
        description="Comma-separated logical ids (lid://...) of our connection point; a message addressed "
        "to another gets 412. Empty accepts any.",
    )
    accepted_documents: str = Field(
        _DEFAULT_IMS_DOCUMENTS,
        description="Comma-separated Verb.Noun documents the receiver routes; others get 412.",
    )
    dedupe_window_s: float = Field(
        86_400.0, gt=0, description="How long an acknowledged BODID is remembered to absorb redeliveries."
    )
    dedupe_max_entries: int = Field(
        1_000_000, ge=1, description="Most BODIDs remembered; the oldest are forgotten first."
    )
    ack_timeout_s: float = Field(
        10.0, gt=0, description="How long a message waits for the broker's ack before answering 503."
    )
    retry_after_s: int = Field(
        5, ge=1, description="Retry-After (seconds) sent with 503 when Kafka is unavailable."
    )
    topic_prefix: str = Field(
        "", description="Prepended to every topic name from the catalogue (as `topics apply --prefix`)."
    )
    poll_interval_s: float = Field(
        30.0, gt=0, description="MI poller: pause between two passes over the changed-since feeds."
    )
    poll_feeds: str = Field(
        "inventory,customers,items",
        description="MI poller: comma-separated feeds to poll (inventory, customers, items).",
    )
    poll_page_size: int = Field(
        500, ge=1, le=10_000, description="MI poller: records per MI call (maxrecs; never unlimited)."
    )
    poll_overlap_ms: int = Field(
        60_000,
        ge=0,
        description="MI poller: each pass re-reads this many LMTS milliseconds before the cursor (changes "
        "committed late); records already emitted by this process are skipped.",
    )

    @field_validator("tokens")
    @classmethod
    def _token_list(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        tokens = _split_list(value.get_secret_value())
        if not tokens:
            raise ValueError("must list at least one token")
        for position, token in enumerate(tokens, start=1):
            if len(token) < 16:
                raise ValueError(f"token #{position} is shorter than 16 characters; generate a longer one")
        return value

    @field_validator("accepted_documents")
    @classmethod
    def _document_list(cls, value: str) -> str:
        names = _split_list(value)
        if not names:
            raise ValueError("must list at least one Verb.Noun document")
        for name in names:
            if not re.fullmatch(r"[A-Z][A-Za-z]*\.[A-Z][A-Za-z0-9]*", name):
                raise ValueError(f"{name!r} is not Verb.Noun (e.g. Sync.SalesOrder)")
        return ",".join(names)

    @field_validator("poll_feeds")
    @classmethod
    def _feed_list(cls, value: str) -> str:
        feeds = [feed.lower() for feed in _split_list(value)]
        unknown = sorted(set(feeds) - {"inventory", "customers", "items"})
        if unknown:
            raise ValueError(f"unknown feed(s) {', '.join(unknown)}; use inventory, customers, items")
        return ",".join(dict.fromkeys(feeds))

    def token_list(self) -> list[SecretStr]:
        """Each configured bearer token on its own (empty when none is set)."""
        if self.tokens is None:
            return []
        return [SecretStr(token) for token in _split_list(self.tokens.get_secret_value())]

    def to_logical_id_set(self) -> frozenset[str]:
        """The logical ids accepted as toLogicalId (empty: any)."""
        return frozenset(_split_list(self.to_logical_ids))

    def accepted_document_set(self) -> frozenset[str]:
        """The Verb.Noun documents the receiver routes."""
        return frozenset(_split_list(self.accepted_documents))

    def poll_feed_list(self) -> list[str]:
        """The feeds the MI poller runs, in the order given."""
        return _split_list(self.poll_feeds)


class Settings(BaseSettings):
    """Everything a psinfor process needs. Build it once with :func:`load_settings` in ``main()``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        env_ignore_empty=True,
        # Unknown PSINFOR_* variables are reported by load_settings() with a suggestion; BaseSettings
        # itself must ignore the rest of the environment.
        extra="ignore",
        frozen=True,
    )

    kafka: KafkaSettings = Field(description="Kafka cluster connection.")
    registry: RegistrySettings | None = Field(None, description="Schema registry; only stages that use Avro.")
    retry: RetrySettings = Field(RetrySettings(), description="Backoff of retryable failures.")
    dlq: DlqSettings = Field(DlqSettings(), description="Dead-letter limit.")
    service: ServiceSettings = Field(ServiceSettings(), description="HTTP endpoints and logging.")
    prestashop: PrestaShopSettings | None = Field(
        None, description="PrestaShop webservice; only stages that read or write the shop."
    )
    poller: PollerSettings = Field(PollerSettings(), description="PrestaShop webservice poller.")
    webhooks: WebhookReceiverSettings | None = Field(
        None, description="Signed-webhook receiver; only the prestashop-webhooks ingest service."
    )
    infor: InforSettings | None = Field(
        None, description="Infor M3 through the ION API; only stages that call Infor."
    )
    infor_events: InforEventsSettings = Field(
        InforEventsSettings(), description="Infor IMS receiver and MI poller."
    )
    rules: RulesSettings = Field(RulesSettings(), description="Transformation rules of processors and sinks.")
    sinks: SinkSettings = Field(SinkSettings(), description="The sink runner (`psinfor sink`).")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Explicit values (tests, CLI flags) win, then *_FILE secrets, then plain environment.
        return (init_settings, _SecretFileSource(settings_cls), _EnvSource(settings_cls))

    def require_registry(self) -> RegistrySettings:
        """The registry settings, or a ConfigError naming the variable for stages that need one."""
        if self.registry is None:
            raise ConfigError(
                f"{env_name('registry', 'url')} is not set: this command needs the schema registry "
                "(e.g. http://127.0.0.1:8081/apis/ccompat/v7)"
            )
        return self.registry

    def require_webhooks(self) -> WebhookReceiverSettings:
        """The webhook receiver settings, or a ConfigError naming the variables the receiver needs."""
        if self.webhooks is None:
            raise ConfigError(
                f"{env_name('webhooks', 'secrets')} and {env_name('webhooks', 'shop_keys')} are not set: "
                "the webhook receiver needs its signing secrets (whsec_...) and the accepted shop keys"
            )
        return self.webhooks

    def require_prestashop(self) -> PrestaShopSettings:
        """The webservice settings, or a ConfigError naming the variables a shop client needs."""
        if self.prestashop is None:
            raise ConfigError(
                f"{env_name('prestashop', 'base_url')} and {env_name('prestashop', 'ws_key')} are not set: "
                "this command reads the PrestaShop webservice"
            )
        return self.prestashop

    def require_infor(self) -> InforSettings:
        """The Infor connection settings, or a ConfigError naming the variables an M3 client needs."""
        if self.infor is None:
            raise ConfigError(
                f"{env_name('infor', 'ionapi_path')} and {env_name('infor', 'cono')} are not set: "
                "this command calls Infor M3 through the ION API"
            )
        return self.infor

    def require_ims_tokens(self) -> list[SecretStr]:
        """The IMS receiver's bearer tokens, or a ConfigError naming the variable."""
        tokens = self.infor_events.token_list()
        if not tokens:
            raise ConfigError(
                f"{env_name('infor_events', 'tokens')} is not set: the IMS receiver needs the bearer "
                "token(s) configured on ION's API suite for our endpoint"
            )
        return tokens

    def secret_values(self) -> list[str]:
        """The plain values of every secret that is set, for log filters that must never print them."""
        found: list[str] = []

        def walk(model: BaseModel) -> None:
            for name in type(model).model_fields:
                value = getattr(model, name)
                if isinstance(value, SecretStr) and value.get_secret_value():
                    found.append(value.get_secret_value())
                elif isinstance(value, BaseModel):
                    walk(value)

        walk(self)
        return found


class _EnvSource(EnvSettingsSource):
    """The plain environment; a section's JSON that does not parse names its variable."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # The *_FILE twins belong to _SecretFileSource; left here they would explode into a
        # ``sasl_password_file`` field that the sections (extra="forbid") refuse.
        twins = {(env_name(*path) + FILE_SUFFIX).lower() for path in _secret_paths(self.settings_cls)}
        return {key: value for key, value in super()._load_env_vars().items() if key.lower() not in twins}

    def prepare_field_value(
        self, field_name: str, field: FieldInfo, value: Any, value_is_complex: bool
    ) -> Any:
        try:
            return super().prepare_field_value(field_name, field, value, value_is_complex)
        except ValueError as exc:
            # pydantic-settings would wrap this in a SettingsError that names neither the variable
            # nor the problem; ConfigError is not a ValueError, so it passes through untouched.
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConfigError(
                f"configuration error: {env_name(field_name)} is not a valid JSON object ({detail}); "
                f"set its fields one by one instead, e.g. {env_name(field_name)}{ENV_NESTED_DELIMITER}..."
            ) from None


class _SecretFileSource(EnvSettingsSource):
    """Reads ``PSINFOR_<PATH>_FILE`` for secret fields: the named file's content becomes the value."""

    def __call__(self) -> dict[str, Any]:
        environ = {key.upper(): value for key, value in self.env_vars.items() if value is not None}
        nested: dict[str, Any] = {}
        for path in _secret_paths(self.settings_cls):
            variable = env_name(*path) + FILE_SUFFIX
            file_name = environ.get(variable)
            if file_name is None:
                continue
            if environ.get(env_name(*path)) is not None:
                raise ConfigError(
                    f"configuration error: both {env_name(*path)} and {variable} are set; keep only one"
                )
            try:
                value = Path(file_name).read_text(encoding="utf-8").rstrip("\r\n")
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                raise ConfigError(
                    f"configuration error: {variable}: cannot read secret file {file_name!r} ({reason}); "
                    "mount the file or unset the variable"
                ) from None
            cursor = nested
            for part in path[:-1]:
                cursor = cursor.setdefault(part, {})
            cursor[path[-1]] = value
        return nested

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False


@dataclass(frozen=True)
class EnvVariable:
    """One supported environment variable, described from the model (feeds ``psinfor config env``)."""

    name: str
    type: str
    default: str
    description: str
    secret: bool
    required: bool


def env_name(*path: str | int) -> str:
    """The environment variable that sets the setting at ``path`` (``('kafka', 'bootstrap_servers')``)."""
    return ENV_PREFIX + ENV_NESTED_DELIMITER.join(str(part).upper() for part in path)


def _section_type(annotation: Any) -> type[BaseModel] | None:
    """The model class behind ``Section`` or ``Section | None``; None for a leaf type."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                return arg
    return None


def _leaves(
    model: type[BaseModel], prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], FieldInfo]]:
    for name, info in model.model_fields.items():
        section = _section_type(info.annotation)
        if section is None:
            yield (*prefix, name), info
        else:
            yield from _leaves(section, (*prefix, name))


def _section_names(model: type[BaseModel]) -> list[str]:
    return [name for name, info in model.model_fields.items() if _section_type(info.annotation)]


def _is_secret(info: FieldInfo) -> bool:
    annotation = info.annotation
    return annotation is SecretStr or SecretStr in typing.get_args(annotation)


def _secret_paths(model: type[BaseModel]) -> list[tuple[str, ...]]:
    return [path for path, info in _leaves(model) if _is_secret(info)]


def _type_name(annotation: Any) -> str:
    args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    if typing.get_origin(annotation) is Literal:
        return " | ".join(str(arg) for arg in args)
    if args and typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return " | ".join(_type_name(arg) for arg in args)
    names = {SecretStr: "secret", Path: "path", bool: "bool", int: "int", float: "float", str: "string"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def supported_variables(model: type[BaseModel] = Settings) -> list[EnvVariable]:
    """Every environment variable the settings read, in model order, ``_FILE`` twins after secrets."""
    optional_sections = {name for name in _section_names(model) if not model.model_fields[name].is_required()}
    rows: list[EnvVariable] = []
    for path, info in _leaves(model):
        secret = _is_secret(info)
        if info.is_required():
            default = "(required)" if path[0] not in optional_sections else f"(required to use {path[0]})"
        elif info.default is None:
            default = ""
        elif isinstance(info.default, bool):
            default = str(info.default).lower()
        else:
            default = str(info.default)
        rows.append(
            EnvVariable(
                name=env_name(*path),
                type=_type_name(info.annotation),
                default=default,
                description=info.description or "",
                secret=secret,
                required=info.is_required() and path[0] not in optional_sections,
            )
        )
        if secret:
            rows.append(
                EnvVariable(
                    name=env_name(*path) + FILE_SUFFIX,
                    type="path",
                    default="",
                    description=f"File whose content becomes {env_name(*path)} (a mounted secret).",
                    secret=False,
                    required=False,
                )
            )
    return rows


def _known_names(model: type[BaseModel]) -> set[str]:
    names = {row.name for row in supported_variables(model)}
    names.update(
        env_name(name) for name, info in model.model_fields.items() if _section_type(info.annotation)
    )
    return names


def unknown_variables(environ: Mapping[str, str], model: type[BaseModel] = Settings) -> list[str]:
    """One message per ``PSINFOR_*`` variable in ``environ`` that no setting reads, with a suggestion."""
    known = _known_names(model)
    problems: list[str] = []
    for variable in sorted(environ):
        upper = variable.upper()
        if not upper.startswith(ENV_PREFIX) or upper in known or upper in NON_SETTINGS_VARIABLES:
            continue
        close = difflib.get_close_matches(upper, sorted(known), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else "; `psinfor config env` lists the supported ones"
        problems.append(f"{variable} is not a psinfor setting{hint}")
    return problems


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment (and ``overrides``), or raise one readable ConfigError.

    Overrides win over the environment; a dict for a section merges into what the environment says.
    """
    unknown = unknown_variables(os.environ)
    if unknown:
        raise ConfigError("configuration error: " + "; ".join(unknown))
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming every offending setting by its environment variable; secrets never shown."""
    secret_names = {env_name(*path) for path in _secret_paths(Settings)}
    problems: list[str] = []
    for error in exc.errors():
        location = tuple(str(part) for part in error["loc"] if not isinstance(part, int))
        name = env_name(*location) if location else "settings"
        if error["type"] == "missing":
            problems.extend(f"{variable} is required but not set" for variable in _required_under(location))
        elif error["type"] == "value_error" and isinstance(error.get("ctx", {}).get("error"), ValueError):
            text = str(error["ctx"]["error"])
            if _FIELD_MARK.search(text):
                problems.append(_name_fields(text, location))
            else:
                problems.append(f"{name}: {text}{_shown(name, error.get('input'), secret_names)}")
        else:
            problems.append(f"{name}: {error['msg']}{_shown(name, error.get('input'), secret_names)}")
    line = "configuration error: " + "; ".join(dict.fromkeys(problems))
    return " ".join(line.split())


def _name_fields(text: str, section: tuple[str, ...]) -> str:
    """Replace each ``{field}`` mark in a section validator's message by that field's variable."""

    def variable(match: re.Match[str]) -> str:
        return env_name(*section, match.group(1))

    return _FIELD_MARK.sub(variable, text)


def _required_under(location: tuple[str, ...]) -> list[str]:
    """The required leaf variables below a missing setting (the section itself names nothing useful)."""
    model: type[BaseModel] = Settings
    for part in location:
        info = model.model_fields.get(part)
        section = _section_type(info.annotation) if info is not None else None
        if section is None:
            return [env_name(*location)]
        model = section
    required = [env_name(*location, name) for name, info in model.model_fields.items() if info.is_required()]
    return required or [env_name(*location)]


def _shown(name: str, given: object, secret_names: set[str]) -> str:
    if isinstance(given, Mapping) or given is None:
        return ""
    if name in secret_names or isinstance(given, SecretStr):
        return " (value hidden)"
    return f" (got {given!r})"


def environment_snapshot() -> dict[str, str]:
    """The PSINFOR_ variables of this process, secrets and whole-section JSON masked, for start-up logs."""
    secret_names = {env_name(*path) for path in _secret_paths(Settings)}
    sections = {
        env_name(name) for name, info in Settings.model_fields.items() if _section_type(info.annotation)
    }
    return {
        key: (MASK if key.upper() in secret_names | sections else value)
        for key, value in sorted(os.environ.items())
        if key.upper().startswith(ENV_PREFIX)
    }
