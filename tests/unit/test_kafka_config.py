"""One KafkaSettings -> the librdkafka dict and the faust broker settings, for each security mode."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import KafkaException, Producer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from faust.auth import SASLCredentials, SSLCredentials
from faust.types.auth import AuthProtocol, SASLMechanism
from pydantic import SecretStr

from pipeline.kafka_config import LibrdkafkaConfig, faust_broker_settings, librdkafka_config
from pipeline.settings import KafkaSettings

KEY_PASSWORD = "key-pass"
SASL_PASSWORD = "scram-secret"


class Pki:
    def __init__(self, ca: Path, cert: Path, key: Path) -> None:
        self.ca, self.cert, self.key = ca, cert, key


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throwaway CA and a client certificate signed by it, the key encrypted with KEY_PASSWORD."""
    directory = tmp_path_factory.mktemp("pki")
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("psinfor test CA"))
        .issuer_name(_name("psinfor test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    client_key = ec.generate_private_key(ec.SECP256R1())
    client_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("psinfor-client"))
        .issuer_name(ca_cert.subject)
        .public_key(client_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(ca_key, hashes.SHA256())
    )
    ca, cert, key = directory / "ca.pem", directory / "client.pem", directory / "client.key"
    ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert.write_bytes(client_cert.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        client_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(KEY_PASSWORD.encode()),
        )
    )
    return Pki(ca, cert, key)


def _ssl_settings(pki: Pki, **extra: object) -> KafkaSettings:
    return KafkaSettings.model_validate(
        {
            "bootstrap_servers": "k1.example:9093,k2.example:9093",
            "client_id": "psinfor",
            "security_protocol": "SSL",
            "ssl_ca_location": pki.ca,
            "ssl_certificate_location": pki.cert,
            "ssl_key_location": pki.key,
            "ssl_key_password": SecretStr(KEY_PASSWORD),
            **extra,
        }
    )


def _librdkafka_accepts(config: LibrdkafkaConfig) -> None:
    """librdkafka validates every property and loads the TLS files when a client is built.

    Without bootstrap servers the client never opens a connection, so this stays a unit test.
    """
    offline = {name: value for name, value in config.items() if name != "bootstrap.servers"}
    offline["log_level"] = 0  # the "no bootstrap.servers" notice is expected here
    Producer(offline).flush(0)


# -- PLAINTEXT -------------------------------------------------------------------------------------


def test_plaintext_librdkafka() -> None:
    settings = KafkaSettings(bootstrap_servers="127.0.0.1:19092", client_id="psinfor")
    config = librdkafka_config(settings, client_id_suffix="sink-infor")
    assert config == {
        "bootstrap.servers": "127.0.0.1:19092",
        "client.id": "psinfor-sink-infor",
        "security.protocol": "plaintext",
    }
    _librdkafka_accepts(config)


def test_plaintext_faust() -> None:
    settings = KafkaSettings(bootstrap_servers="a:9092, b:9092,c:9092")
    faust = faust_broker_settings(settings)
    assert faust.broker == "kafka://a:9092;kafka://b:9092;kafka://c:9092"
    assert faust.broker_credentials is None


# -- SSL (mutual TLS) ------------------------------------------------------------------------------


def test_ssl_librdkafka(pki: Pki) -> None:
    config = librdkafka_config(_ssl_settings(pki), client_id_suffix="processors")
    assert config == {
        "bootstrap.servers": "k1.example:9093,k2.example:9093",
        "client.id": "psinfor-processors",
        "security.protocol": "ssl",
        "ssl.ca.location": str(pki.ca),
        "ssl.certificate.location": str(pki.cert),
        "ssl.key.location": str(pki.key),
        "ssl.key.password": KEY_PASSWORD,
        "ssl.endpoint.identification.algorithm": "https",
    }
    _librdkafka_accepts(config)


def test_ssl_hostname_verification_can_be_switched_off(pki: Pki) -> None:
    settings = _ssl_settings(pki, ssl_check_hostname=False)
    assert (
        librdkafka_config(settings, client_id_suffix="x")["ssl.endpoint.identification.algorithm"] == "none"
    )
    credentials = faust_broker_settings(settings).broker_credentials
    assert isinstance(credentials, SSLCredentials)
    assert credentials.context.check_hostname is False
    # Only the name check is off; the chain is still verified.
    assert credentials.context.verify_mode == ssl.CERT_REQUIRED


def test_ssl_faust(pki: Pki) -> None:
    faust = faust_broker_settings(_ssl_settings(pki))
    assert faust.broker == "kafka://k1.example:9093;kafka://k2.example:9093"
    credentials = faust.broker_credentials
    assert isinstance(credentials, SSLCredentials)
    assert credentials.protocol is AuthProtocol.SSL
    context = credentials.context
    assert context.check_hostname is True
    assert context.verify_mode == ssl.CERT_REQUIRED
    # Exactly our CA is trusted (no system store mixed in when a CA file is given).
    assert [cert["subject"] for cert in context.get_ca_certs()] == [((("commonName", "psinfor test CA"),),)]


def test_ssl_faust_wrong_key_password_fails_at_startup(pki: Pki) -> None:
    with pytest.raises(ssl.SSLError):
        faust_broker_settings(_ssl_settings(pki, ssl_key_password=SecretStr("wrong")))


def test_ssl_librdkafka_wrong_key_password_is_refused(pki: Pki) -> None:
    config = librdkafka_config(_ssl_settings(pki, ssl_key_password=SecretStr("wrong")), client_id_suffix="x")
    with pytest.raises(KafkaException, match=r"ssl\.key"):
        _librdkafka_accepts(config)


# -- SASL_SSL with SCRAM ---------------------------------------------------------------------------


def _scram_settings(pki: Pki) -> KafkaSettings:
    return KafkaSettings.model_validate(
        {
            "bootstrap_servers": "broker.example:9094",
            "client_id": "psinfor",
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": "psinfor-app",
            "sasl_password": SecretStr(SASL_PASSWORD),
            "ssl_ca_location": pki.ca,
        }
    )


def test_sasl_ssl_scram_librdkafka(pki: Pki) -> None:
    config = librdkafka_config(_scram_settings(pki), client_id_suffix="ingest-webhooks")
    assert config == {
        "bootstrap.servers": "broker.example:9094",
        "client.id": "psinfor-ingest-webhooks",
        "security.protocol": "sasl_ssl",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "psinfor-app",
        "sasl.password": SASL_PASSWORD,
        "ssl.ca.location": str(pki.ca),
        "ssl.endpoint.identification.algorithm": "https",
    }
    _librdkafka_accepts(config)


def test_sasl_ssl_scram_faust(pki: Pki) -> None:
    faust = faust_broker_settings(_scram_settings(pki))
    assert faust.broker == "kafka://broker.example:9094"
    credentials = faust.broker_credentials
    assert isinstance(credentials, SASLCredentials)
    assert credentials.protocol is AuthProtocol.SASL_SSL
    assert credentials.mechanism is SASLMechanism.SCRAM_SHA_512
    assert (credentials.username, credentials.password) == ("psinfor-app", SASL_PASSWORD)
    assert credentials.ssl_context is not None
    assert credentials.ssl_context.check_hostname is True
    assert len(credentials.ssl_context.get_ca_certs()) == 1


def test_sasl_plaintext_faust_has_no_tls() -> None:
    settings = KafkaSettings(
        bootstrap_servers="b:9092",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username="u",
        sasl_password=SecretStr("p"),
    )
    credentials = faust_broker_settings(settings).broker_credentials
    assert isinstance(credentials, SASLCredentials)
    assert credentials.protocol is AuthProtocol.SASL_PLAINTEXT
    assert credentials.ssl_context is None
    config = librdkafka_config(settings, client_id_suffix="x")
    assert "ssl.endpoint.identification.algorithm" not in config
    assert config["sasl.mechanism"] == "SCRAM-SHA-256"


def test_secrets_stay_wrapped_in_the_settings(pki: Pki) -> None:
    # The only place they are unwrapped is the returned client config.
    assert SASL_PASSWORD not in repr(_scram_settings(pki))
    assert KEY_PASSWORD not in repr(_ssl_settings(pki))
