"""The AsyncAPI document is generated from the catalogue and the committed file is up to date."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from fastavro import parse_schema

from cli.main import main
from schemas.asyncapi import ASYNCAPI_PATH, AVRO_SCHEMA_FORMAT, render_asyncapi
from schemas.catalogue import load_catalogue


def test_committed_document_equals_the_generated_one() -> None:
    assert ASYNCAPI_PATH.read_text(encoding="utf-8") == render_asyncapi(), (
        "schemas/asyncapi.yaml is stale: run `psinfor topics asyncapi`"
    )


def test_document_has_a_channel_per_topic_with_avro_payloads_and_keys() -> None:
    document = yaml.safe_load(render_asyncapi())
    catalogue = load_catalogue()
    assert document["asyncapi"] == "3.0.0"
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert addresses == {topic.name for topic in catalogue.topics}
    messages = document["components"]["messages"]
    schemas = document["components"]["schemas"]
    for topic in catalogue.topics:
        channel = next(c for c in document["channels"].values() if c["address"] == topic.name)
        (message_ref,) = channel["messages"].values()
        message = messages[message_ref["$ref"].rsplit("/", 1)[1]]
        assert topic.key.pattern in message["bindings"]["kafka"]["key"]["description"]
        assert channel["bindings"]["kafka"]["topicConfiguration"][
            "cleanup.policy"
        ] == topic.cleanup_policy.split(",")
        if topic.is_avro():
            payload = schemas[message["payload"]["$ref"].rsplit("/", 1)[1]]
            assert payload["schemaFormat"] == AVRO_SCHEMA_FORMAT
            parse_schema(payload["schema"])
            assert len(message["examples"]) >= 2
    assert len(document["operations"]) == len(catalogue.topics)


def test_cli_check_detects_a_stale_file_and_output_regenerates_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "asyncapi.yaml"
    target.write_text("asyncapi: 3.0.0\n", encoding="utf-8")
    assert main(["topics", "asyncapi", "--output", str(target), "--check"]) == 1
    assert "out of date" in capsys.readouterr().err
    assert main(["topics", "asyncapi", "--output", str(target)]) == 0
    assert target.read_text(encoding="utf-8") == render_asyncapi()
    assert main(["topics", "asyncapi", "--output", str(target), "--check"]) == 0


def test_cli_list_prints_every_topic(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topics", "list"]) == 0
    out = capsys.readouterr().out
    for topic in load_catalogue().topics:
        assert topic.name in out
    assert "infinite" in out
