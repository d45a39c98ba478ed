"""The one typed settings object every ``main()`` builds once and passes down.

Environment variables use the prefix ``PSINFOR_`` and ``__`` between nested names, for example
``PSINFOR_KAFKA__BOOTSTRAP_SERVERS``. A secret can come from a mounted file instead: set
``PSINFOR_KAFKA__SASL_PASSWORD_FILE=/run/secrets/kafka`` and the file's content (trailing newline
stripped) becomes ``kafka.sasl_password``. Nothing here is read at import time; tests build settings in
code (``Settings(kafka=KafkaSettings(bootstrap_servers=...))``).

``load_settings()`` turns every validation problem into one :class:`ConfigError` line that names the
environment variable, so a bad deploy fails at start-up with a sentence, not a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
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


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaSettings(_Section):
    """How both Kafka client libraries (librdkafka and aiokafka/faust) reach the cluster."""

    bootstrap_servers: str = Field(
        description="Comma-separated host:port list of brokers, e.g. 127.0.0.1:19092.", min_length=1
    )
    client_id: str = Field("psinfor", description="Client id prefix; each stage appends its own name.")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: Path | None = Field(None, description="PEM file of the CA that signed the brokers.")
    ssl_certificate_location: Path | None = Field(None, description="Client certificate (mutual TLS).")
    ssl_key_location: Path | None = Field(None, description="Client private key (mutual TLS).")
    ssl_key_password: SecretStr | None = None
    ssl_check_hostname: bool = True

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL_"):
            missing = [
                name
                for name, value in (
                    ("sasl_mechanism", self.sasl_mechanism),
                    ("sasl_username", self.sasl_username),
                    ("sasl_password", self.sasl_password),
                )
                if value is None
            ]
            if missing:
                raise ValueError(f"security_protocol={self.security_protocol} also needs {', '.join(missing)}")
        return self


class RegistrySettings(_Section):
    """A Confluent-compatible Schema Registry (Apicurio's ccompat API in the sandbox)."""

    url: str = Field(description="Base URL of the ccompat API, e.g. http://127.0.0.1:18081/apis/ccompat/v7")
    basic_auth_user: str | None = None
    basic_auth_password: SecretStr | None = None


class RetrySettings(_Section):
    """Backoff for ``RetryableError``: exponential with full jitter, capped, never below Retry-After."""

    initial_backoff_s: float = Field(0.2, gt=0)
    max_backoff_s: float = Field(30.0, gt=0)
    multiplier: float = Field(2.0, ge=1)


class DlqSettings(_Section):
    """The dead-letter limit: a stage whose messages all fail stops instead of draining into the DLQ."""

    max_consecutive_invalid: int = Field(
        100, ge=1, description="Stop after this many invalid messages in a row."
    )
    max_invalid_ratio: float = Field(
        0.5, gt=0, le=1, description="Stop when more than this share of the last `window` messages failed."
    )
    window: int = Field(1000, ge=1, description="How many recent messages the ratio is computed over.")
    delivery_timeout_s: float = Field(30.0, gt=0, description="How long to wait for a DLQ write's ack.")


class ServiceSettings(_Section):
    """The HTTP side every stage serves (/metrics, /healthz, /readyz) and its logs."""

    http_host: str = "127.0.0.1"
    http_port: int = Field(0, ge=0, le=65535, description="0 picks a free port (printed at start-up).")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    commit_interval_s: float = Field(1.0, gt=0, description="How often stored offsets are committed.")


class Settings(BaseSettings):
    """Everything a psinfor process needs. Build it once with :func:`load_settings` in ``main()``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        extra="ignore",
        frozen=True,
    )

    kafka: KafkaSettings
    registry: RegistrySettings | None = None
    retry: RetrySettings = RetrySettings()
    dlq: DlqSettings = DlqSettings()
    service: ServiceSettings = ServiceSettings()

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
        return (init_settings, _SecretFileSource(settings_cls), env_settings)

    def require_registry(self) -> RegistrySettings:
        """The registry settings, or a ConfigError naming the variable for stages that need one."""
        if self.registry is None:
            raise ConfigError(
                f"{env_name('registry', 'url')} is not set: this command needs the schema registry "
                "(e.g. http://127.0.0.1:18081/apis/ccompat/v7)"
            )
        return self.registry


class _SecretFileSource(EnvSettingsSource):
    """Reads ``PSINFOR_<PATH>_FILE`` variables: the named file's content becomes the value of <PATH>."""

    def __call__(self) -> dict[str, Any]:
        nested: dict[str, Any] = {}
        for var, file_name in self.env_vars.items():
            upper = var.upper()
            if not (upper.startswith(ENV_PREFIX) and upper.endswith(FILE_SUFFIX)):
                continue
            path_parts = upper[len(ENV_PREFIX) : -len(FILE_SUFFIX)].lower().split(ENV_NESTED_DELIMITER)
            if not path_parts or not all(path_parts):
                continue
            try:
                value = Path(file_name).read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise ConfigError(
                    f"{upper}: cannot read secret file {file_name!r} ({exc.strerror or exc}); "
                    "mount the file or unset the variable"
                ) from exc
            cursor = nested
            for part in path_parts[:-1]:
                cursor = cursor.setdefault(part, {})
            cursor[path_parts[-1]] = value
        return nested

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False


def env_name(*path: str | int) -> str:
    """The environment variable that sets the setting at ``path`` (``('kafka', 'bootstrap_servers')``)."""
    return ENV_PREFIX + ENV_NESTED_DELIMITER.join(str(part).upper() for part in path)


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment (and ``overrides``), or raise one readable ConfigError."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from exc


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming every offending setting by its environment variable."""
    problems: list[str] = []
    for error in exc.errors():
        location = [part for part in error["loc"] if not isinstance(part, int) or part >= 0]
        name = env_name(*location) if location else "settings"
        if error["type"] == "missing":
            problems.append(f"{name} is required but not set")
        else:
            given = error.get("input")
            shown = "" if isinstance(given, Mapping) or given is None else f" (got {_redact(name, given)!r})"
            problems.append(f"{name}: {error['msg']}{shown}")
    return "configuration error: " + "; ".join(problems)


def _redact(name: str, value: object) -> object:
    lowered = name.lower()
    if any(word in lowered for word in ("password", "secret", "token", "key")):
        return "***"
    return value


def environment_snapshot() -> dict[str, str]:
    """The PSINFOR_ variables of this process (values of secrets masked), for start-up logs."""
    return {
        key: ("***" if _redact(key, value) == "***" else value)
        for key, value in sorted(os.environ.items())
        if key.startswith(ENV_PREFIX)
    }
