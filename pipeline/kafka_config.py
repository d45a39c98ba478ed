"""Kafka connection settings turned into each client library's configuration, one function each.

``KafkaSettings`` is the only description of how to reach the cluster. The librdkafka clients
(confluent-kafka producer, consumer, admin) get a flat property dict from :func:`librdkafka_config`; the
faust app (aiokafka underneath) gets a broker URL list and a credentials object from
:func:`faust_broker_settings`, with an ``ssl.SSLContext`` built from the same CA, certificate and key
files. Secrets are unwrapped here and nowhere else, right before they reach the client library.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from faust.auth import SASLCredentials, SSLCredentials
from faust.types.auth import CredentialsT

from pipeline.settings import KafkaSettings

LibrdkafkaConfig = dict[str, str | int | float | bool]
"""A librdkafka property dict as confluent-kafka's ``Producer``/``Consumer``/``AdminClient`` take it."""


def librdkafka_config(settings: KafkaSettings, *, client_id_suffix: str) -> LibrdkafkaConfig:
    """Connection and security properties for a librdkafka client.

    ``client.id`` is ``<settings.client_id>-<client_id_suffix>`` so broker logs and quotas tell the
    stages apart. Only connection properties are returned; callers add their role's own (``group.id``,
    ``acks``...).
    """
    config: LibrdkafkaConfig = {
        "bootstrap.servers": settings.bootstrap_servers,
        "client.id": f"{settings.client_id}-{client_id_suffix}",
        "security.protocol": settings.security_protocol.lower(),
    }
    if settings.security_protocol.startswith("SASL_"):
        # The settings validator guarantees mechanism, username and password for SASL_* protocols.
        if settings.sasl_mechanism is not None:
            config["sasl.mechanism"] = settings.sasl_mechanism
        if settings.sasl_username is not None:
            config["sasl.username"] = settings.sasl_username
        if settings.sasl_password is not None:
            config["sasl.password"] = settings.sasl_password.get_secret_value()
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        if settings.ssl_ca_location is not None:
            config["ssl.ca.location"] = str(settings.ssl_ca_location)
        if settings.ssl_certificate_location is not None:
            config["ssl.certificate.location"] = str(settings.ssl_certificate_location)
        if settings.ssl_key_location is not None:
            config["ssl.key.location"] = str(settings.ssl_key_location)
        if settings.ssl_key_password is not None:
            config["ssl.key.password"] = settings.ssl_key_password.get_secret_value()
        # "https" checks the broker certificate's name against the host we dialled; "none" switches it off.
        config["ssl.endpoint.identification.algorithm"] = "https" if settings.ssl_check_hostname else "none"
    return config


@dataclass(frozen=True, slots=True)
class FaustBrokerSettings:
    """What ``faust.App(broker=..., broker_credentials=...)`` needs to reach the same cluster."""

    broker: str
    """``kafka://host:port`` URLs joined with ``;`` (faust's multi-broker syntax)."""
    broker_credentials: CredentialsT | None
    """None for PLAINTEXT; ``SSLCredentials`` for SSL; ``SASLCredentials`` for SASL_PLAINTEXT/SASL_SSL."""


def faust_broker_settings(settings: KafkaSettings) -> FaustBrokerSettings:
    """The faust broker URL list and credentials equivalent to :func:`librdkafka_config`.

    Raises ``OSError``/``ssl.SSLError`` when a CA, certificate or key file cannot be loaded, so a wrong
    mount fails at start-up rather than at the first connection.
    """
    hosts = [part.strip() for part in settings.bootstrap_servers.split(",") if part.strip()]
    broker = ";".join(f"kafka://{host}" for host in hosts)
    protocol = settings.security_protocol
    credentials: CredentialsT | None
    if protocol == "PLAINTEXT":
        credentials = None
    elif protocol == "SSL":
        credentials = SSLCredentials(_ssl_context(settings))
    else:
        credentials = SASLCredentials(
            username=settings.sasl_username,
            password=settings.sasl_password.get_secret_value() if settings.sasl_password else None,
            mechanism=settings.sasl_mechanism,
            # An SSL context is what makes faust speak SASL_SSL instead of SASL_PLAINTEXT.
            ssl_context=_ssl_context(settings) if protocol == "SASL_SSL" else None,
        )
    return FaustBrokerSettings(broker=broker, broker_credentials=credentials)


def _ssl_context(settings: KafkaSettings) -> ssl.SSLContext:
    """A client TLS context trusting ``ssl_ca_location`` (system CAs when unset), with mutual TLS if set."""
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH,
        cafile=str(settings.ssl_ca_location) if settings.ssl_ca_location is not None else None,
    )
    if settings.ssl_certificate_location is not None:
        context.load_cert_chain(
            certfile=str(settings.ssl_certificate_location),
            keyfile=str(settings.ssl_key_location) if settings.ssl_key_location is not None else None,
            password=settings.ssl_key_password.get_secret_value() if settings.ssl_key_password else None,
        )
    # Hostname checking is switched off only on request (brokers reached through an IP or a tunnel);
    # the certificate chain is still verified against the CA.
    context.check_hostname = settings.ssl_check_hostname
    return context
