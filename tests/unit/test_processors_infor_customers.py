"""Infor customer flow: Sync.CustomerPartyMaster BODs and CRS610MI records → canonical.customer.v1."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from pipeline.errors import ConfigError, InvalidMessage
from pipeline.records import Headers
from processors import infor_customers
from processors.erp_links import CustomerLink, ErpLinkIndex
from processors.infor_source import EVENT_NAMESPACE
from rules.engine import load_rules
from rules.preview import preview
from sandbox.infor.m3_state import Customer
from tests.unit.test_processors_infor_support import assert_valid, context, fixture

RULES = load_rules(None)
BOD = fixture("bod/SyncCustomerPartyMaster.xml")
MI_HEADERS: Headers = (("program", b"CRS610MI"), ("transaction", b"LstByNumber"))


def _linked() -> ErpLinkIndex:
    links = ErpLinkIndex()
    links.link_customer(CustomerLink("1:42", "100", "PS000042"))
    return links


def _run(raw: bytes, links: ErpLinkIndex, headers: Headers = ()) -> dict[str, Any] | None:
    flow = infor_customers.build_flow(links, RULES)
    event = flow.decode(raw, headers)
    assert isinstance(event, infor_customers.InforCustomer)
    datum = flow.to_record(event, context())
    if datum is None:
        return None
    assert isinstance(datum, dict)
    assert_valid("Customer", datum)
    assert flow.key(event) == datum["customer_key"]
    assert flow.version(event) == datum["meta"]["version"]
    return datum


def _mi(**fields: str) -> bytes:
    customer = Customer(
        cono=100,
        cuno="C0000777",
        cunm="Maria  van der Berg",
        cua1="Keizersgracht 1",
        cua2="",
        pono="1015cj",
        town="amsterdam",
        cscd="NL",
        phno="+31 20 555 0100",
        mail="Maria.Berg@Example.NL",
        lmts=1_741_165_200_000,
    )
    record = customer.record()
    record.update(fields)
    return json.dumps(record).encode()


def test_linked_bod_field_by_field() -> None:
    datum = _run(BOD, _linked())
    assert datum is not None
    assert datum["customer_key"] == "1:42"
    assert datum["email"] == "jane.doe@example.com"
    assert (datum["first_name"], datum["last_name"]) == ("Jane", "Doe")
    assert datum["addresses"] == [
        {
            "first_name": "Jane",
            "last_name": "Doe",
            "company": None,
            "lines": ["12 Rue de la Paix"],
            "postal_code": "75002",
            "city": "Paris",
            "region_code": None,
            "country_code": "FR",
            "phone": None,
            "vat_number": None,
        }
    ]
    assert datum["external_ids"] == {"infor": "PS000042", "prestashop": "42"}
    assert datum["updated_at"] == datetime(2025, 3, 4, 10, 20, tzinfo=UTC)
    meta = datum["meta"]
    assert (meta["shop_id"], meta["version"], meta["source_entity"]) == (
        "1",
        2,
        "Sync.CustomerPartyMaster",
    )
    assert meta["source_id"] == "100:PS000042"
    expected = uuid.uuid5(EVENT_NAMESPACE, "INFOR|Sync.CustomerPartyMaster|100:PS000042|2")
    assert meta["event_id"] == str(expected)


def test_erp_only_customer_is_keyed_by_company_and_number() -> None:
    datum = _run(BOD, ErpLinkIndex())
    assert datum is not None
    assert datum["customer_key"] == "infor:100:PS000042"
    assert datum["external_ids"] == {"infor": "PS000042"}
    assert datum["meta"]["shop_id"] is None


def test_a_link_in_another_company_does_not_match() -> None:
    links = ErpLinkIndex()
    links.link_customer(CustomerLink("1:42", "200", "PS000042"))
    datum = _run(BOD, links)
    assert datum is not None
    assert datum["customer_key"] == "infor:100:PS000042"


def test_one_m3_customer_behind_two_shop_customers_stays_erp_keyed() -> None:
    links = _linked()
    links.link_customer(CustomerLink("2:7", "100", "PS000042"))
    datum = _run(BOD, links)
    assert datum is not None
    assert datum["customer_key"] == "infor:100:PS000042"


def test_crs610mi_record_standardised() -> None:
    datum = _run(_mi(), ErpLinkIndex(), MI_HEADERS)
    assert datum is not None
    assert datum["customer_key"] == "infor:100:C0000777"
    assert datum["email"] == "maria.berg@example.nl"
    assert (datum["first_name"], datum["last_name"]) == ("Maria van der", "Berg")
    assert datum["phone"] == "+31 20 555 0100"
    [address] = datum["addresses"]
    assert address["lines"] == ["Keizersgracht 1"]
    assert address["postal_code"] == "1015 CJ"  # the rules' NL postcode format
    assert address["country_code"] == "NL"
    assert datum["meta"]["version"] == 1_741_165_200_000
    assert datum["meta"]["source_entity"] == "CRS610MI.LstByNumber"
    assert datum["updated_at"] == datetime(2025, 3, 5, 9, 0, tzinfo=UTC)


def test_erp_only_customer_without_email_is_skipped() -> None:
    assert _run(_mi(MAIL=""), ErpLinkIndex(), MI_HEADERS) is None


def test_linked_customer_without_email_is_invalid() -> None:
    links = ErpLinkIndex()
    links.link_customer(CustomerLink("1:9", "100", "C0000777"))
    with pytest.raises(InvalidMessage) as caught:
        _run(_mi(MAIL=""), links, MI_HEADERS)
    assert (caught.value.reason, caught.value.field_path) == ("missing_field", "MAIL")


def test_delete_is_skipped() -> None:
    deleted = BOD.replace(b'actionCode="Replace"', b'actionCode="Delete"')
    assert _run(deleted, _linked()) is None


def test_unknown_country_names_the_field() -> None:
    with pytest.raises(InvalidMessage) as caught:
        _run(_mi(CSCD="XX"), ErpLinkIndex(), MI_HEADERS)
    assert caught.value.reason == "unknown_country"
    assert caught.value.field_path == "address.country"


def test_missing_customer_number() -> None:
    with pytest.raises(InvalidMessage) as caught:
        _run(_mi(CUNO=" "), ErpLinkIndex(), MI_HEADERS)
    assert (caught.value.reason, caught.value.field_path) == ("missing_field", "CUNO")


def test_split_name_keeps_every_word() -> None:
    assert infor_customers.split_name("  Jane   Q.  Public ") == ("Jane Q.", "Public")
    assert infor_customers.split_name("Acme") == ("", "Acme")
    assert infor_customers.split_name("") == ("", "")


def test_preview() -> None:
    record = preview(BOD, RULES, "infor_customers")
    assert record["customer_key"] == "infor:100:PS000042"


def test_infor_flow_factory_builds_every_flow_with_the_links() -> None:
    from processors.infor_flows import INFOR_FLOW_NAMES, build_infor_flows

    flows = build_infor_flows(INFOR_FLOW_NAMES, _linked(), RULES)
    assert sorted(flow.name for flow in flows) == sorted(INFOR_FLOW_NAMES)
    customers = next(flow for flow in flows if flow.name == infor_customers.NAME)
    event = customers.decode(BOD, ())
    assert isinstance(event, infor_customers.InforCustomer)
    assert customers.key(event) == "1:42"  # the factory's links reached the flow
    with pytest.raises(ConfigError):
        build_infor_flows(["infor_nothing"], _linked())
