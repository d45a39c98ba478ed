"""Settings: environment parsing, secrets from files, validation and the one-line ConfigError."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from pipeline.errors import ConfigError
from pipeline.settings import (
    NON_SETTINGS_VARIABLES,
    KafkaSettings,
    ServiceSettings,
    Settings,
    env_name,
    environment_snapshot,
    load_settings,
    supported_variables,
    unknown_variables,
)

pytestmark = pytest.mark.timeout(10)

BOOTSTRAP = "PSINFOR_KAFKA__BOOTSTRAP_SERVERS"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no PSINFOR_ variable, whatever the developer's shell exported."""
    for key in list(os.environ):
        if key.upper().startswith("PSINFOR_"):
            monkeypatch.delenv(key)


@pytest.fixture
def bootstrap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BOOTSTRAP, "127.0.0.1:9092")


def config_error(**overrides: object) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(**overrides)
    message = str(caught.value)
    assert "\n" not in message, "a ConfigError must be one line"
    return message


def sasl_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSINFOR_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("PSINFOR_KAFKA__SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("PSINFOR_KAFKA__SASL_USERNAME", "psinfor")


# --- parsing ---------------------------------------------------------------------------------------


@pytest.mark.usefixtures("bootstrap")
def test_nested_variables_reach_their_sections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSINFOR_SERVICE__HTTP_PORT", "9100")
    monkeypatch.setenv("PSINFOR_DLQ__MAX_INVALID_RATIO", "0.25")
    monkeypatch.setenv("PSINFOR_RETRY__MAX_BACKOFF_S", "5")
    monkeypatch.setenv("PSINFOR_REGISTRY__URL", "http://127.0.0.1:8081/apis/ccompat/v7/")

    settings = load_settings()

    assert settings.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert settings.service.http_port == 9100
    assert settings.dlq.max_invalid_ratio == 0.25
    assert settings.retry.max_backoff_s == 5.0
    assert settings.retry.initial_backoff_s == 0.2, "untouched fields keep their defaults"
    assert settings.require_registry().url == "http://127.0.0.1:8081/apis/ccompat/v7"


def test_section_json_merges_with_field_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSINFOR_KAFKA", '{"bootstrap_servers": "a:1", "client_id": "from-json"}')
    monkeypatch.setenv("PSINFOR_KAFKA__CLIENT_ID", "from-field")

    settings = load_settings()

    assert settings.kafka.bootstrap_servers == "a:1"
    assert settings.kafka.client_id == "from-field"


def test_lower_case_variable_names_and_values_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("psinfor_kafka__bootstrap_servers", "b:2")
    monkeypatch.setenv("PSINFOR_SERVICE__LOG_LEVEL", "debug")
    monkeypatch.setenv("PSINFOR_SERVICE__LOG_FORMAT", "TEXT")

    settings = load_settings()

    assert settings.kafka.bootstrap_servers == "b:2"
    assert settings.service.log_level == "DEBUG"
    assert settings.service.log_format == "text"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        *[(raw, False) for raw in ("false", "False", "0", "no", "off")],
        *[(raw, True) for raw in ("true", "TRUE", "1", "yes", "on")],
    ],
)
@pytest.mark.usefixtures("bootstrap")
def test_booleans_parse_as_booleans(monkeypatch: pytest.MonkeyPatch, raw: str, expected: bool) -> None:
    monkeypatch.setenv("PSINFOR_KAFKA__SSL_CHECK_HOSTNAME", raw)
    monkeypatch.setenv("PSINFOR_KAFKA__SECURITY_PROTOCOL", "SSL")

    assert load_settings().kafka.ssl_check_hostname is expected


@pytest.mark.usefixtures("bootstrap")
def test_a_boolean_that_is_not_one_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSINFOR_KAFKA__SSL_CHECK_HOSTNAME", "nope")
    monkeypatch.setenv("PSINFOR_KAFKA__SECURITY_PROTOCOL", "SSL")

    message = config_error()

    assert "PSINFOR_KAFKA__SSL_CHECK_HOSTNAME" in message
    assert "'nope'" in message


@pytest.mark.usefixtures("bootstrap")
def test_an_empty_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSINFOR_KAFKA__SASL_MECHANISM", "")
    monkeypatch.setenv("PSINFOR_SERVICE__HTTP_PORT", "")

    settings = load_settings()

    assert settings.kafka.sasl_mechanism is None
    assert settings.service.http_port == 0


def test_bootstrap_list_is_normalised() -> None:
    kafka = KafkaSettings(bootstrap_servers=" a:1 , b:2,")
    assert kafka.bootstrap_servers == "a:1,b:2"


# --- overrides in code -----------------------------------------------------------------------------


def test_settings_built_in_code_need_no_environment() -> None:
    settings = Settings(kafka=KafkaSettings(bootstrap_servers="c:3"), service=ServiceSettings(http_port=0))
    assert settings.kafka.bootstrap_servers == "c:3"
    assert settings.registry is None


@pytest.mark.usefixtures("bootstrap")
def test_overrides_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSINFOR_SERVICE__HTTP_PORT", "9100")
    monkeypatch.setenv("PSINFOR_SERVICE__LOG_LEVEL", "WARNING")

    settings = load_settings(kafka={"bootstrap_servers": "override:1"}, service={"http_port": 0})

    assert settings.kafka.bootstrap_servers == "override:1"
    assert settings.service.http_port == 0
    assert settings.service.log_level == "WARNING", "a dict override merges with the environment"
    built = Settings(kafka=KafkaSettings(bootstrap_servers="model:1"))
    assert built.kafka.bootstrap_servers == "model:1"


def test_settings_are_immutable() -> None:
    settings = Settings(kafka=KafkaSettings(bootstrap_servers="c:3"))
    with pytest.raises(ValidationError):
        settings.kafka.client_id = "other"  # type: ignore[misc]


# --- secrets -----------------------------------------------------------------------------------------


@pytest.mark.usefixtures("bootstrap")
def test_a_file_secret_is_read_and_never_printed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret_file = tmp_path / "kafka-password"
    secret_file.write_text("s3cr3t-from-file\n", encoding="utf-8")
    sasl_env(monkeypatch)
    monkeypatch.setenv("PSINFOR_KAFKA__SASL_PASSWORD_FILE", str(secret_file))

    settings = load_settings()

    assert settings.kafka.sasl_password is not None
    assert settings.kafka.sasl_password.get_secret_value() == "s3cr3t-from-file"
    for rendering in (repr(settings), str(settings), settings.model_dump_json(), str(settings.model_dump())):
        assert "s3cr3t-from-file" not in rendering
    assert settings.secret_values() == ["s3cr3t-from-file"]


@pytest.mark.usefixtures("bootstrap")
def test_a_file_secret_wins_over_nothing_but_both_forms_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret_file = tmp_path / "pw"
    secret_file.write_text("a", encoding="utf-8")
    sasl_env(monkeypatch)
    monkeypatch.setenv("PSINFOR_KAFKA__SASL_PASSWORD", "b")
    monkeypatch.setenv("PSINFOR_KAFKA__SASL_PASSWORD_FILE", str(secret_file))

    message = config_error()

    assert "PSINFOR_KAFKA__SASL_PASSWORD" in message
    assert "PSINFOR_KAFKA__SASL_PASSWORD_FILE" in message


@pytest.mark.usefixtures("bootstrap")
def test_an_unreadable_secret_file_names_the_file_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sasl_env(monkeypatch)
    monkeypatch.setenv("PSINFOR_KAFKA__SASL_PASSWORD_FILE", str(tmp_path / "absent"))

    message = config_error()

    assert message.startswith("configuration error: PSINFOR_KAFKA__SASL_PASSWORD_FILE:")
    assert "No such file" in message


@pytest.mark.usefixtures("bootstrap")
def test_a_secret_file_that_is_a_directory_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PSINFOR_REGISTRY__URL", "http://r:1")
    monkeypatch.setenv("PSINFOR_REGISTRY__BASIC_AUTH_USER", "u")
    monkeypatch.setenv("PSINFOR_REGISTRY__BASIC_AUTH_PASSWORD_FILE", str(tmp_path))

    assert "PSINFOR_REGISTRY__BASIC_AUTH_PASSWORD_FILE" in config_error()


@pytest.mark.usefixtures("bootstrap")
def test_file_variants_exist_only_for_secrets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "user").write_text("u", encoding="utf-8")
    monkeypatch.setenv("PSINFOR_KAFKA__SASL_USERNAME_FILE", str(tmp_path / "user"))

    message = config_error()

    assert "PSINFOR_KAFKA__SASL_USERNAME_FILE is not a psinfor setting" in message


@pytest.mark.usefixtures("bootstrap")
def test_a_bad_secret_value_is_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSINFOR_REGISTRY__URL", "http://r:1")
    monkeypatch.setenv("PSINFOR_REGISTRY__BASIC_AUTH_PASSWORD", "hunter2")

    message = config_error()

    assert "hunter2" not in message
    assert "PSINFOR_REGISTRY__BASIC_AUTH_USER" in message


def test_environment_snapshot_masks_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BOOTSTRAP, "a:1")
    monkeypatch.setenv("PSINFOR_KAFKA__SASL_PASSWORD", "hunter2")
    monkeypatch.setenv("PSINFOR_KAFKA", '{"sasl_password": "hunter3"}')

    snapshot = environment_snapshot()

    assert snapshot[BOOTSTRAP] == "a:1"
    assert "hunter2" not in str(snapshot)
    assert "hunter3" not in str(snapshot)


# --- SASL / TLS --------------------------------------------------------------------------------------


@pytest.mark.usefixtures("bootstrap")
def test_sasl_ssl_without_credentials_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSINFOR_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")

    message = config_error()

    assert message == (
        "configuration error: PSINFOR_KAFKA__SECURITY_PROTOCOL=SASL_SSL also needs "
        "PSINFOR_KAFKA__SASL_MECHANISM, PSINFOR_KAFKA__SASL_USERNAME, PSINFOR_KAFKA__SASL_PASSWORD"
    )


@pytest.mark.usefixtures("bootstrap")
def test_sasl_ssl_with_credentials_and_ca_is_accepted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sasl_env(monkeypatch)
    monkeypatch.setenv("PSINFOR_KAFKA__SECURITY_PROTOCOL", "sasl_ssl")
    monkeypatch.setenv("PSINFOR_KAFKA__SASL_PASSWORD", "pw")
    monkeypatch.setenv("PSINFOR_KAFKA__SSL_CA_LOCATION", str(tmp_path / "ca.pem"))

    kafka = load_settings().kafka

    assert kafka.security_protocol == "SASL_SSL"
    assert kafka.sasl_mechanism == "SCRAM-SHA-512"
    assert kafka.sasl_password == SecretStr("pw")
    assert kafka.ssl_ca_location == tmp_path / "ca.pem"


@pytest.mark.usefixtures("bootstrap")
def test_sasl_options_without_a_sasl_protocol_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSINFOR_KAFKA__SASL_USERNAME", "u")

    message = config_error()

    assert "PSINFOR_KAFKA__SASL_USERNAME is set but PSINFOR_KAFKA__SECURITY_PROTOCOL=PLAINTEXT" in message


@pytest.mark.usefixtures("bootstrap")
def test_tls_options_without_a_tls_protocol_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSINFOR_KAFKA__SSL_CA_LOCATION", "/ca.pem")

    assert "PSINFOR_KAFKA__SSL_CA_LOCATION is set but" in config_error()


@pytest.mark.usefixtures("bootstrap")
def test_mutual_tls_needs_certificate_and_key_together(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSINFOR_KAFKA__SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("PSINFOR_KAFKA__SSL_CERTIFICATE_LOCATION", "/client.pem")

    message = config_error()

    assert "PSINFOR_KAFKA__SSL_CERTIFICATE_LOCATION and PSINFOR_KAFKA__SSL_KEY_LOCATION" in message


# --- the one clear line ------------------------------------------------------------------------------


def test_missing_bootstrap_names_the_variable() -> None:
    assert config_error() == "configuration error: PSINFOR_KAFKA__BOOTSTRAP_SERVERS is required but not set"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("PSINFOR_SERVICE__HTTP_PORT", "abc", "valid integer"),
        ("PSINFOR_SERVICE__HTTP_PORT", "70000", "less than or equal to 65535"),
        ("PSINFOR_DLQ__MAX_INVALID_RATIO", "2", "less than or equal to 1"),
        ("PSINFOR_DLQ__WINDOW", "1.5", "valid integer"),
        ("PSINFOR_KAFKA__SECURITY_PROTOCOL", "TLS", "'PLAINTEXT', 'SSL'"),
        ("PSINFOR_SERVICE__LOG_FORMAT", "xml", "'json' or 'text'"),
        ("PSINFOR_KAFKA__BOOTSTRAP_SERVERS", "localhost", "'localhost' is not host:port"),
        ("PSINFOR_REGISTRY__URL", "registry:8081", "http:// or https://"),
    ],
)
@pytest.mark.usefixtures("bootstrap")
def test_a_malformed_value_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)

    message = config_error()

    assert message.startswith(f"configuration error: {variable}")
    assert expected in message


@pytest.mark.usefixtures("bootstrap")
def test_retry_bounds_are_ordered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSINFOR_RETRY__INITIAL_BACKOFF_S", "10")
    monkeypatch.setenv("PSINFOR_RETRY__MAX_BACKOFF_S", "1")

    message = config_error()

    assert "PSINFOR_RETRY__MAX_BACKOFF_S must not be smaller than PSINFOR_RETRY__INITIAL_BACKOFF_S" in message


@pytest.mark.parametrize("section", ["PSINFOR_KAFKA", "PSINFOR_SERVICE"])
@pytest.mark.usefixtures("bootstrap")
def test_malformed_section_json_names_the_variable(monkeypatch: pytest.MonkeyPatch, section: str) -> None:
    monkeypatch.setenv(section, "{not json")

    message = config_error()

    assert message.startswith(f"configuration error: {section} is not a valid JSON object")


def test_several_problems_share_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSINFOR_SERVICE__HTTP_PORT", "abc")

    message = config_error()

    assert "PSINFOR_KAFKA__BOOTSTRAP_SERVERS is required" in message
    assert "PSINFOR_SERVICE__HTTP_PORT" in message


def test_the_config_error_carries_no_pydantic_traceback_chain() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


# --- unknown variables -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typo", "suggestion"),
    [
        ("PSINFOR_KAFKA__BOOTSTRAP_SERVER", "PSINFOR_KAFKA__BOOTSTRAP_SERVERS"),
        ("PSINFOR_KAFAK__BOOTSTRAP_SERVERS", "PSINFOR_KAFKA__BOOTSTRAP_SERVERS"),
        ("PSINFOR_SERVICE_HTTP_PORT", "PSINFOR_SERVICE__HTTP_PORT"),
        ("PSINFOR_KAFKA__SASL_PASSWORD_FIEL", "PSINFOR_KAFKA__SASL_PASSWORD_FILE"),
    ],
)
@pytest.mark.usefixtures("bootstrap")
def test_a_misspelt_variable_is_an_error_with_a_suggestion(
    monkeypatch: pytest.MonkeyPatch, typo: str, suggestion: str
) -> None:
    monkeypatch.setenv(typo, "x")

    assert (
        config_error() == f"configuration error: {typo} is not a psinfor setting; did you mean {suggestion}?"
    )


def test_unrelated_and_fixture_variables_are_not_settings_typos() -> None:
    environ = {"HOME": "/h", "PSINFOR_SERVICE__HTTP_PORT": "1", "PSINFOR_KAFKA": "{}"}
    environ.update(dict.fromkeys(NON_SETTINGS_VARIABLES, "x"))
    assert unknown_variables(environ) == []
    assert unknown_variables({"PSINFOR_ZZZZZZZZZZZZZZZZZZZZ": "1"}) == [
        "PSINFOR_ZZZZZZZZZZZZZZZZZZZZ is not a psinfor setting; `psinfor config env` lists the supported ones"
    ]


# --- the generated variable list -----------------------------------------------------------------------


def test_every_supported_variable_is_described_and_accepted() -> None:
    rows = supported_variables()
    names = [row.name for row in rows]

    assert len(names) == len(set(names))
    assert all(row.description for row in rows), [row.name for row in rows if not row.description]
    assert BOOTSTRAP in names
    assert "PSINFOR_KAFKA__SASL_PASSWORD_FILE" in names
    assert "PSINFOR_KAFKA__SASL_USERNAME_FILE" not in names
    assert [row.name for row in rows if row.required] == [BOOTSTRAP]
    assert unknown_variables(dict.fromkeys(names, "x")) == []
    by_name = {row.name: row for row in rows}
    assert by_name["PSINFOR_SERVICE__HTTP_PORT"].default == "0"
    assert by_name["PSINFOR_KAFKA__SSL_CHECK_HOSTNAME"].default == "true"
    assert by_name["PSINFOR_REGISTRY__URL"].default == "(required to use registry)"
    assert by_name["PSINFOR_KAFKA__SASL_PASSWORD"].secret


def test_env_name_builds_the_nested_variable() -> None:
    assert env_name("kafka", "bootstrap_servers") == BOOTSTRAP
