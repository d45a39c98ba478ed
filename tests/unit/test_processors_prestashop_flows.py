"""The PrestaShop flow references resolve to the declared flows and register their previews."""

from __future__ import annotations

from processors.flows_prestashop import PRESTASHOP_FLOWS, register_previews
from processors.main import resolve_flow
from rules.preview import registered_flows
from schemas.catalogue import load_catalogue


def test_every_reference_resolves_to_a_flow_of_that_name_on_catalogue_topics() -> None:
    catalogue = load_catalogue()
    for name, reference in PRESTASHOP_FLOWS.items():
        flow = resolve_flow(reference)
        assert flow.name == name
        for topic in (*flow.sources, flow.output):
            catalogue.topic(topic)  # raises KeyError for a topic the catalogue lacks


def test_importing_the_flows_registers_their_previews() -> None:
    assert set(register_previews()) <= set(registered_flows())
