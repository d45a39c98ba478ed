"""PrestaShop customer bundles → canonical Customer: field by field, addresses, versions, ids."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from pipeline.errors import InvalidMessage
from pipeline.records import Headers, SourceRecord
from processors import prestashop_customers as flow
from processors.prestashop_source import SKIP_VERSION, Skipped, event_id
from processors.runner import FlowContext
from rules.engine import Rules, load_rules
from rules.preview import preview
from tests.unit.test_processors_prestashop_orders import assert_valid, config, fixture_records

HEADERS: Headers = (
    ("source", b"prestashop-poll"),
    ("event_type", b"customer.bundle"),
    ("shop_id", b"1"),
)
INGESTED = datetime(2024, 5, 2, 9, 30, 0, 120000, tzinfo=UTC)


@pytest.fixture(scope="module")
def rules() -> Rules:
    return load_rules()


def address(id_: int, **changes: str) -> dict[str, Any]:
    base = {
        "id": id_,
        "id_customer": "318",
        "id_country": "8",
        "id_state": "0",
        "alias": "Home",
        "company": "",
        "lastname": "Durand ",
        "firstname": " Camille",
        "vat_number": "",
        "address1": "12  rue des\u00a0Lilas",
        "address2": "Bâtiment B,   3e étage",
        "postcode": "69 003",
        "city": "Lyon",
        "phone": "",
        "phone_mobile": "+33472000000",
        "deleted": "0",
        "date_add": "2024-05-02 11:10:00",
        "date_upd": "2024-05-02 11:10:00",
    }
    return base | changes


def lyon_bundle() -> dict[str, Any]:
    """A French customer with a home address, an office address in Montréal and a deleted one."""
    return {
        "customer": {
            "id": 318,
            "id_default_group": "3",
            "id_lang": "1",
            "email": " Camille.Durand@Example.org",
            "firstname": " Camille",
            "lastname": "Durand",
            "company": "Atelier Durand ",
            "newsletter": "1",
            "optin": "0",
            "is_guest": "0",
            "deleted": "0",
            "active": "1",
            "date_add": "2024-05-02 11:09:30",
            "date_upd": "2024-05-02 11:12:00",
            "associations": {"groups": [{"id": "3"}]},
        },
        "addresses": [
            # Out of id order on purpose: the canonical list is in id order.
            address(
                91,
                alias="Office",
                id_country="4",
                id_state="89",
                company="Atelier Durand",
                address1="1200 rue Sherbrooke Ouest",
                address2="",
                postcode="h3a 1h6",
                city="Montréal",
                phone="+1 514 555 0100",
                phone_mobile="",
                vat_number="CA123456789",
                date_upd="2024-05-02 11:20:00",
            ),
            address(77),
            address(60, deleted="1", city="Paris", postcode="75001", date_upd="2024-05-01 08:00:00"),
        ],
        "countries": [
            {"id": 8, "iso_code": "FR", "name": "France"},
            {"id": 4, "iso_code": "CA", "name": "Canada"},
        ],
        "states": [{"id": 89, "id_country": "4", "iso_code": "QC", "name": "Québec"}],
        "configuration": config(PS_TIMEZONE="Europe/Paris"),
    }


def event_of(data: dict[str, Any], headers: Headers = HEADERS) -> flow.CustomerInput:
    return flow.decode(json.dumps(data).encode(), headers)


def to_customer(data: dict[str, Any], rules: Rules) -> dict[str, Any]:
    event = event_of(data)
    assert isinstance(event, flow.CustomerEvent)
    datum = flow.to_customer(event, rules, ingested_at=INGESTED, correlation_id="corr-7")
    assert datum is not None
    return datum


def test_a_bundle_becomes_the_expected_customer_field_by_field(rules: Rules) -> None:
    customer = to_customer(lyon_bundle(), rules)
    assert_valid(customer, "Customer")
    # The latest date_upd is the office address's, 11:20:00 in Paris (CEST, UTC+2) = 09:20:00 UTC.
    updated = datetime(2024, 5, 2, 9, 20, tzinfo=UTC)
    version = int(updated.timestamp() * 1000)
    assert customer["meta"] == {
        "event_id": event_id("customers", "1", "318", version),
        "source_system": "PRESTASHOP",
        "source_entity": "customers",
        "source_id": "318",
        "version": version,
        "occurred_at": updated,
        "ingested_at": INGESTED,
        "correlation_id": "corr-7",
        "causation_id": None,
        "shop_id": "1",
    }
    assert customer["customer_key"] == "1:318"
    assert customer["email"] == "camille.durand@example.org"
    assert (customer["first_name"], customer["last_name"]) == ("Camille", "Durand")
    assert customer["company"] == "Atelier Durand"
    assert customer["group"] == "3"
    assert (customer["is_guest"], customer["newsletter"], customer["marketing_opt_in"]) == (
        False,
        True,
        False,
    )
    assert customer["created_at"] == datetime(2024, 5, 2, 9, 9, 30, tzinfo=UTC)
    assert customer["updated_at"] == updated
    assert customer["external_ids"] == {"prestashop": "318"}
    # Two live addresses in id order (the deleted one is gone), standardised by the rules.
    home, office = customer["addresses"]
    assert home == {
        "first_name": "Camille",
        "last_name": "Durand",
        "company": None,
        "lines": ["12 rue des Lilas", "Bâtiment B, 3e étage"],
        "postal_code": "69003",
        "city": "Lyon",
        "region_code": None,
        "country_code": "FR",
        "phone": "+33472000000",
        "vat_number": None,
    }
    assert office["country_code"] == "CA"
    assert office["region_code"] == "CA-QC"
    assert office["postal_code"] == "H3A 1H6"
    assert office["city"] == "Montréal"
    assert office["lines"] == ["1200 rue Sherbrooke Ouest"]
    assert office["company"] == "Atelier Durand"
    # The customer's phone and VAT come from the first live address that has one.
    assert customer["phone"] == "+33472000000"
    assert customer["vat_number"] == "CA123456789"


def test_key_version_and_event_id_are_deterministic(rules: Rules) -> None:
    event = event_of(lyon_bundle())
    first = to_customer(lyon_bundle(), rules)
    assert flow.key(event) == "1:318"
    assert flow.version(event) == first["meta"]["version"]
    assert to_customer(lyon_bundle(), rules)["meta"]["event_id"] == first["meta"]["event_id"]
    # An address edit alone is a newer customer version with a new event id.
    data = lyon_bundle()
    data["addresses"][1]["date_upd"] = "2024-05-02 12:00:00"
    data["addresses"][1]["city"] = "Villeurbanne"
    data["addresses"][1]["postcode"] = "69100"
    later = to_customer(data, rules)
    assert later["meta"]["version"] == first["meta"]["version"] + 40 * 60 * 1000
    assert later["meta"]["event_id"] != first["meta"]["event_id"]
    assert later["addresses"][0]["city"] == "Villeurbanne"


def test_the_reference_fixture_customer_maps(rules: Rules) -> None:
    records = fixture_records()
    data = {
        "customer": records["customers"],
        "addresses": [records["addresses"]],
        "countries": [{"id": 21, "iso_code": "US", "name": "United States"}],
        "configuration": config(PS_TIMEZONE="America/New_York"),
    }
    customer = to_customer(data, rules)
    assert_valid(customer, "Customer")
    assert customer["customer_key"] == "1:1"
    assert customer["email"] == "anonymous@psgdpr.com"
    assert customer["marketing_opt_in"] is True
    assert customer["newsletter"] is False
    # 2021-07-23 23:18:07 in New York (EDT) is 2021-07-24 03:18:07 UTC.
    assert customer["created_at"] == datetime(2021, 7, 24, 3, 18, 7, tzinfo=UTC)
    assert [a["country_code"] for a in customer["addresses"]] == ["US"]
    assert customer["addresses"][0]["postal_code"] == "00000"
    assert customer["vat_number"] == "0000"


def test_a_customer_without_addresses_is_a_customer(rules: Rules) -> None:
    data = lyon_bundle()
    data["addresses"] = []
    customer = to_customer(data, rules)
    assert_valid(customer, "Customer")
    assert customer["addresses"] == []
    assert customer["phone"] is None
    assert customer["meta"]["version"] == int(datetime(2024, 5, 2, 9, 12, tzinfo=UTC).timestamp() * 1000)


def test_a_deleted_customer_emits_nothing(rules: Rules) -> None:
    data = lyon_bundle()
    data["customer"]["deleted"] = "1"
    event = event_of(data)
    assert isinstance(event, flow.CustomerEvent)
    assert flow.to_customer(event, rules, ingested_at=INGESTED, correlation_id="c") is None


@pytest.mark.parametrize(
    ("change", "reason", "field_path"),
    [
        (lambda d: d["customer"].update(email="camille at example"), "invalid_format", "customer.email"),
        (
            lambda d: d["customer"].update(date_add="0000-00-00 00:00:00"),
            "missing_field",
            "customer.date_add",
        ),
        (
            lambda d: d["addresses"][1].update(id_customer="9"),
            "invalid_format",
            "addresses[id=77].id_customer",
        ),
        (lambda d: d["addresses"][1].update(city="  "), "missing_field", "addresses[id=77].city"),
        (lambda d: d.update(configuration=[]), "missing_field", "configuration"),
    ],
)
def test_unmappable_bundles_are_invalid_with_the_field_path(
    rules: Rules, change: Any, reason: str, field_path: str
) -> None:
    data = copy.deepcopy(lyon_bundle())
    change(data)
    with pytest.raises(InvalidMessage) as caught:
        to_customer(data, rules)
    assert (caught.value.reason, caught.value.field_path) == (reason, field_path)


def test_unknown_country_and_wrong_types_are_invalid(rules: Rules) -> None:
    data = lyon_bundle()
    data["countries"] = []
    data["addresses"][1]["id_country"] = "999"
    with pytest.raises(InvalidMessage) as caught:
        to_customer(data, rules)
    assert caught.value.field_path is not None
    assert caught.value.field_path.startswith("addresses[id=")
    data = lyon_bundle()
    data["customer"]["id_default_group"] = "three"
    with pytest.raises(InvalidMessage) as caught:
        event_of(data)
    assert (caught.value.reason, caught.value.field_path) == ("wrong_type", "customer.id_default_group")
    with pytest.raises(InvalidMessage) as caught:
        flow.decode(b"{not json", HEADERS)
    assert caught.value.reason == "undecodable"


def test_notifications_and_other_records_are_skipped() -> None:
    webhook: Headers = (("source", b"prestashop-webhook"), ("event_type", b"customer.updated"))
    address_snapshot: Headers = (("source", b"prestashop-poll"), ("event_type", b"address.snapshot"))
    for headers in (webhook, address_snapshot, ()):
        event = flow.decode(b"{}", headers)
        assert isinstance(event, Skipped)
        assert flow.version(event) == SKIP_VERSION
        assert flow.key(event) == ""


def test_the_runner_entry_point_uses_the_context() -> None:
    record = SourceRecord(
        topic="raw.prestashop.customers",
        partition=0,
        offset=5,
        key=b"1:customers:318",
        value=json.dumps(lyon_bundle()).encode(),
        headers=(*HEADERS, ("received_at", b"2024-05-02T09:30:00.120Z")),
        timestamp_ms=None,
    )
    context = FlowContext(record=record, correlation_id="corr-9", source_event_id="x")
    event = flow.decode(json.dumps(lyon_bundle()).encode(), HEADERS)
    datum = flow.to_record(event, context)
    assert datum is not None
    assert datum["meta"]["ingested_at"] == INGESTED
    assert datum["meta"]["correlation_id"] == "corr-9"
    assert flow.to_record(Skipped("webhook"), context) is None
    assert flow.FLOW.to_record is flow.to_record
    assert flow.FLOW.decode is flow.decode


def test_the_preview_is_registered(rules: Rules) -> None:
    assert (
        preview(json.dumps(lyon_bundle()).encode(), rules, "prestashop_customers")["customer_key"] == "1:318"
    )
