"""Every processor flow is a stage of the topic catalogue, under the name its metrics and DLQ use."""

from __future__ import annotations

import importlib

from processors import FLOWS
from processors.runner import Flow
from schemas.catalogue import load_catalogue


def _flows() -> list[Flow[object]]:
    flows: list[Flow[object]] = []
    for reference in FLOWS.values():
        module, _, attribute = reference.partition(":")
        target = getattr(importlib.import_module(module), attribute)
        # Builders take the ERP-link lookups; their topics do not depend on them.
        flows.append(target if isinstance(target, Flow) else target(None))
    return flows


def test_each_flow_reads_and_writes_the_topics_the_catalogue_says() -> None:
    catalogue = load_catalogue()
    for flow in _flows():
        stage = f"processor-{flow.name.replace('_', '-')}"
        for source in flow.sources:
            assert stage in catalogue.topic(source).consumers, (stage, source)
        assert stage in catalogue.topic(flow.output).producers, (stage, flow.output)
        assert stage in catalogue.topic("dlq.processors").producers, stage


def test_the_catalogue_names_no_processor_stage_that_does_not_exist() -> None:
    stages = {f"processor-{flow.name.replace('_', '-')}" for flow in _flows()}
    named = {
        stage
        for topic in load_catalogue().topics
        for stage in (*topic.producers, *topic.consumers)
        if stage.startswith("processor-")
    }
    assert named == stages
