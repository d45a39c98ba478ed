"""Schemas against the real registry: every example round-trips through the codec; incompatible
changes are refused by the registry and reported by `psinfor schemas register` with subject and reason."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from cli.main import main
from pipeline.errors import InvalidMessage
from pipeline.settings import RegistrySettings
from schemas.catalogue import load_catalogue
from schemas.codec import AvroCodec, SchemaNotRegisteredError
from schemas.examples import Example, load_examples
from schemas.loader import compose, schema_string
from schemas.registry import Registration, catalogue_subjects, register_schemas, registry_client

pytestmark = pytest.mark.integration

EXAMPLES = load_examples()


@pytest.fixture(scope="module")
def client(registry_url: str) -> Iterator[SchemaRegistryClient]:
    with registry_client(RegistrySettings(url=registry_url)) as client:
        yield client


@pytest.fixture(scope="module")
def registered(client: SchemaRegistryClient) -> tuple[str, dict[str, Registration]]:
    """A unique topic prefix with every canonical schema registered under <prefix><topic>-value."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    results = register_schemas(client, catalogue_subjects(load_catalogue(), prefix=prefix))
    assert {r.outcome for r in results} == {"registered"}
    return prefix, {r.subject: r for r in results}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("example", EXAMPLES, ids=[f"{e.record}/{e.name}" for e in EXAMPLES])
def test_example_round_trips_through_the_registry_backed_codec(
    client: SchemaRegistryClient, registered: tuple[str, dict[str, Registration]], example: Example
) -> None:
    prefix, registrations = registered
    topic = prefix + next(t.name for t in load_catalogue().avro_topics() if t.value == example.record)
    codec = AvroCodec(client, example.record)
    datum = example.datum()

    data = codec.encode(datum, topic)

    assert data[0] == 0
    assert int.from_bytes(data[1:5], "big") == registrations[f"{topic}-value"].schema_id
    decoded = codec.decode(data, topic)
    assert decoded == datum
    # repr shows each Decimal's exponent, so this also proves the scale survived exactly.
    assert repr(decoded) == repr(datum)


@pytest.mark.timeout(30)
def test_schema_violation_against_the_real_registry_names_the_field(
    client: SchemaRegistryClient, registered: tuple[str, dict[str, Registration]]
) -> None:
    prefix, _ = registered
    payment = load_examples("Payment")[0].datum()
    payment["amount"]["amount"] = 65.88
    with pytest.raises(InvalidMessage) as caught:
        AvroCodec(client, "Payment").encode(payment, f"{prefix}canonical.payment.v1")
    assert (caught.value.reason, caught.value.field_path) == ("schema_violation", "amount.amount")


@pytest.mark.timeout(30)
def test_codec_refuses_a_topic_whose_subject_lacks_the_schema(client: SchemaRegistryClient) -> None:
    payment = load_examples("Payment")[0].datum()
    with pytest.raises(SchemaNotRegisteredError):
        AvroCodec(client, "Payment").encode(payment, f"t{uuid.uuid4().hex[:10]}.canonical.payment.v1")


@pytest.mark.timeout(30)
def test_register_is_idempotent(
    client: SchemaRegistryClient, registered: tuple[str, dict[str, Registration]]
) -> None:
    prefix, registrations = registered
    again = register_schemas(client, catalogue_subjects(load_catalogue(), prefix=prefix))
    assert [(r.outcome, r.schema_id, r.version) for r in again] == [
        ("unchanged", registrations[r.subject].schema_id, 1) for r in again
    ]


@pytest.mark.timeout(60)
def test_cli_reports_an_incompatible_change_with_subject_and_reason(
    client: SchemaRegistryClient,
    registry_url: str,
    kafka_bootstrap: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}."
    subject = f"{prefix}canonical.payment.v1-value"
    # An earlier Payment without `method`: the committed schema adds `method` with no default, so it
    # cannot read records written with the earlier one, which BACKWARD_TRANSITIVE forbids.
    earlier: dict[str, Any] = copy.deepcopy(compose("Payment"))
    earlier["fields"] = [f for f in earlier["fields"] if f["name"] != "method"]
    earlier_id = client.register_schema(subject, Schema(json.dumps(earlier), "AVRO"))
    monkeypatch.setenv("PSINFOR_KAFKA__BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("PSINFOR_REGISTRY__URL", registry_url)

    assert main(["schemas", "register", "--prefix", prefix, "--dry-run"]) == 1
    dry = capsys.readouterr()
    assert f"{subject} (Payment): INCOMPATIBLE" in dry.err

    assert main(["schemas", "register", "--prefix", prefix]) == 1
    out = capsys.readouterr()
    (line,) = [line for line in out.err.splitlines() if subject in line]
    assert "INCOMPATIBLE" in line
    assert "Incompatible" in line  # the registry's own reason, passed through
    assert f"{prefix}canonical.order.v1-value (Order): registered" in out.out

    assert client.get_versions(subject) == [1]
    latest = client.get_latest_version(subject)
    assert latest.schema_id == earlier_id
    assert latest.schema.schema_str is not None
    assert "method" not in {f["name"] for f in json.loads(latest.schema.schema_str)["fields"]}
    assert schema_string("Payment") != latest.schema.schema_str
