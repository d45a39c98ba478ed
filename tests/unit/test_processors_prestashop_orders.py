"""PrestaShop order bundles → canonical Order: field by field, money, currency, addresses, status, ids."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastavro.validation import validate

from pipeline.errors import InvalidMessage
from pipeline.records import Headers, SourceRecord
from processors import prestashop_orders as flow
from processors.prestashop_source import SKIP_VERSION, Skipped
from processors.runner import FlowContext
from rules.engine import Rules, load_rules
from rules.preview import preview
from rules.variants import VariantKey, VariantTable
from schemas.codec import find_violation
from schemas.loader import compose, parsed_schema

FIXTURES = Path(__file__).parents[1] / "fixtures" / "prestashop" / "airbyte_expected_records_subset.jsonl"
INGESTED = datetime(2024, 5, 2, 7, 15, 1, 240000, tzinfo=UTC)
SNAPSHOT_HEADERS: Headers = (
    ("source", b"prestashop-poll"),
    ("event_type", b"order.bundle"),
    ("shop_id", b"1"),
)


@pytest.fixture(scope="module")
def rules() -> Rules:
    return load_rules()


def fixture_records() -> dict[str, dict[str, Any]]:
    records: dict[str, dict[str, Any]] = {}
    for line in FIXTURES.read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        records[item["stream"]] = item["data"]
    return records


def config(**values: str) -> list[dict[str, Any]]:
    """configuration records as the webservice returns them (strings, an id each)."""
    return [
        {"id": index, "name": name, "value": value, "id_shop": None, "id_shop_group": None}
        for index, (name, value) in enumerate(values.items(), start=1)
    ]


def state(id_: int, name: str, **flags: str) -> dict[str, Any]:
    base = {"paid": "0", "shipped": "0", "delivery": "0", "logable": "0", "invoice": "0", "deleted": "0"}
    return {"id": id_, **base, **flags, "name": [{"id": "1", "value": name}]}


def lyon_bundle() -> dict[str, Any]:
    """A realistic two-line French order (one line a combination), paid by card, shipped by Colissimo."""
    address = {
        "id": 77,
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
    return {
        "order": {
            "id": 1042,
            "reference": "XKBKNABJK",
            "id_address_delivery": "77",
            "id_address_invoice": "77",
            "id_cart": "5531",
            "id_currency": "1",
            "id_lang": "1",
            "id_customer": "318",
            "id_carrier": "2",
            "current_state": "2",
            "module": "ps_checkout",
            "payment": "Card",
            "date_add": "2024-05-02 11:14:52",
            "date_upd": "2024-05-02 11:15:00",
            "gift": "0",
            "gift_message": "",
            "note": "",
            "id_shop": "1",
            "total_discounts_tax_excl": "0.000000",
            "total_discounts_tax_incl": "0.000000",
            "total_paid": "65.880000",
            "total_paid_tax_incl": "65.880000",
            "total_paid_tax_excl": "54.900000",
            "total_paid_real": "65.880000",
            "total_products": "49.900000",
            "total_products_wt": "59.880000",
            "total_shipping": "6.000000",
            "total_shipping_tax_incl": "6.000000",
            "total_shipping_tax_excl": "5.000000",
            "total_wrapping_tax_excl": "0.000000",
            "total_wrapping_tax_incl": "0.000000",
            "conversion_rate": "1.000000",
            "associations": {"order_rows": [{"id": "2210"}, {"id": "2211"}]},
        },
        "order_details": [
            {
                "id": 2210,
                "id_order": "1042",
                "product_id": "7",
                "product_attribute_id": "31",
                "id_warehouse": "0",
                "product_name": "Organic T-shirt - Size: M, Colour: Blue",
                "product_quantity": "2",
                "product_reference": "TSH-ORG-M-BLU",
                "product_ean13": "3760123450017",
                "unit_price_tax_excl": "20.000000",
                "unit_price_tax_incl": "24.000000",
                "total_price_tax_excl": "40.000000",
                "total_price_tax_incl": "48.000000",
                "original_product_price": "20.000000",
            },
            {
                "id": 2211,
                "id_order": "1042",
                "product_id": "12",
                "product_attribute_id": "0",
                "product_name": "Ceramic mug 350 ml",
                "product_quantity": "1",
                "product_reference": "MUG-CER-350",
                "product_ean13": "",
                "unit_price_tax_excl": "9.900000",
                "unit_price_tax_incl": "11.880000",
                "total_price_tax_excl": "9.900000",
                "total_price_tax_incl": "11.880000",
                "original_product_price": "9.900000",
            },
        ],
        "customer": {
            "id": 318,
            "email": "Camille.Durand@Example.org",
            "firstname": "Camille",
            "lastname": "Durand",
            "company": "",
            "is_guest": "0",
        },
        "addresses": [address],
        "countries": [{"id": 8, "iso_code": "FR", "name": "France"}],
        "states": [],
        "currencies": [{"id": 1, "iso_code": "EUR", "conversion_rate": "1.000000"}],
        "carrier": {"id": 2, "id_reference": "2", "name": "Colissimo"},
        "order_carriers": [{"id": 900, "id_order": "1042", "id_carrier": "2", "tracking_number": ""}],
        "order_payments": [
            {
                "id": 55,
                "order_reference": "XKBKNABJK",
                "id_currency": "1",
                "amount": "65.880000",
                "payment_method": "Card",
                "transaction_id": "pi_3PBx2kLkdIwHu7ix0sQ1",
                "date_add": "2024-05-02 11:14:58",
            }
        ],
        "order_states": [state(2, "Payment accepted", paid="1", logable="1", invoice="1")],
        "configuration": config(
            PS_TIMEZONE="Europe/Paris", PS_CURRENCY_DEFAULT="1", PS_OS_PAYMENT="2", PS_OS_SHIPPING="4"
        ),
    }


def decode(bundle: dict[str, Any], headers: Headers = SNAPSHOT_HEADERS) -> flow.OrderInput:
    return flow.decode(json.dumps(bundle).encode(), headers)


def to_order(bundle: dict[str, Any], rules: Rules, variants: VariantTable | None = None) -> dict[str, Any]:
    event = decode(bundle)
    assert isinstance(event, flow.OrderEvent)
    return flow.to_order(event, rules, ingested_at=INGESTED, correlation_id="corr-1", variants=variants)


def assert_valid(datum: dict[str, Any], record: str = "Order") -> None:
    """The datum fits its Avro schema (the codec's own check, then fastavro's strict validation)."""
    assert find_violation(compose(record), datum) is None
    assert validate(datum, parsed_schema(record), raise_errors=True, strict=True)


def money(amount: str, currency: str = "EUR") -> dict[str, Any]:
    return {"amount": Decimal(amount), "currency": currency}


def test_a_bundle_becomes_the_expected_order_field_by_field(rules: Rules) -> None:
    order = to_order(lyon_bundle(), rules)
    assert_valid(order)
    # date_upd 11:15:00 in Paris (CEST, UTC+2) is 09:15:00 UTC.
    version = int(datetime(2024, 5, 2, 9, 15, tzinfo=UTC).timestamp() * 1000)
    assert order["meta"] | {"event_id": None} == {
        "event_id": None,
        "source_system": "PRESTASHOP",
        "source_entity": "orders",
        "source_id": "1042",
        "version": version,
        "occurred_at": datetime(2024, 5, 2, 9, 15, tzinfo=UTC),
        "ingested_at": INGESTED,
        "correlation_id": "corr-1",
        "causation_id": None,
        "shop_id": "1",
    }
    assert order["order_key"] == "1:1042"
    assert order["reference"] == "XKBKNABJK"
    assert order["cart_id"] == "5531"
    assert order["customer"] == {
        "customer_key": "1:318",
        "email": "camille.durand@example.org",
        "first_name": "Camille",
        "last_name": "Durand",
        "company": None,
        "is_guest": False,
        "group": None,
    }
    assert order["shipping_address"] == {
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
    assert order["billing_address"] == order["shipping_address"]
    first, second = order["lines"]
    assert first == {
        "line_id": "2210",
        "product_id": "7",
        "variant_id": "31",
        "sku": "TSH-ORG-M-BLU",
        "gtin": "3760123450017",
        "name": "Organic T-shirt - Size: M, Colour: Blue",
        "quantity": Decimal("2.0000"),
        "unit_price_excl_tax": money("20.000000"),
        "unit_price_incl_tax": money("24.000000"),
        "tax_rate": Decimal("20.000"),
        "discount_excl_tax": money("0"),
        "total_excl_tax": money("40.000000"),
        "total_incl_tax": money("48.000000"),
    }
    assert (second["variant_id"], second["sku"], second["gtin"]) == (None, "MUG-CER-350", None)
    assert order["totals"] == {
        "products": money("49.90"),
        "shipping": money("5.00"),
        "wrapping": money("0"),
        "discounts": money("0"),
        "tax": money("10.98"),
        "grand_total": money("65.88"),
        "paid": money("65.88"),
    }
    assert order["base_totals"] is None
    assert order["currency_conversion"] is None
    assert order["payment"] == {
        "method": "Card",
        "module": "ps_checkout",
        "amount_paid": money("65.88"),
        "transaction_ids": ["pi_3PBx2kLkdIwHu7ix0sQ1"],
    }
    assert order["carrier"] == {"code": None, "reference_id": "2", "name": "Colissimo"}
    assert (order["payment_status"], order["fulfillment_status"], order["lifecycle"]) == (
        "PAID",
        "UNFULFILLED",
        "OPEN",
    )
    assert order["source_status"] == {
        "system": "PRESTASHOP",
        "code": "PS_OS_PAYMENT",
        "name": "Payment accepted",
    }
    assert order["placed_at"] == datetime(2024, 5, 2, 9, 14, 52, tzinfo=UTC)
    assert (order["is_gift"], order["gift_message"], order["note"]) == (False, None, None)
    assert order["enrichment"] == {
        "cost_centre": "CC-WEB-FR",
        "project": None,
        "order_type": "WEB",
        "warehouse": "LYO",
    }
    assert order["anomalies"] == []
    assert order["external_ids"] == {"prestashop": "1042"}
    # Decimals travel exactly: every money amount keeps the wire scale (6).
    assert order["totals"]["grand_total"]["amount"].as_tuple().exponent == -6


def test_the_reference_fixture_records_make_a_usd_order_converted_to_eur(rules: Rules) -> None:
    records = fixture_records()
    # The fixture subset comes from one demo shop but its rows do not all point at each other; the ids
    # are aligned here, every other field is the recorded one.
    order = records["orders"]
    customer = records["customers"] | {"id": 2, "email": "pub@prestashop.com"}
    address = records["addresses"] | {"id": 5, "id_customer": "2"}
    row1, row2 = order["associations"]["order_rows"]
    detail1 = records["order_details"]
    detail2 = detail1 | {
        "id": 2,
        "product_id": row2["product_id"],
        "product_attribute_id": row2["product_attribute_id"],
        "product_name": row2["product_name"],
        "product_reference": row2["product_reference"],
        "unit_price_tax_incl": row2["unit_price_tax_incl"],
        "unit_price_tax_excl": row2["unit_price_tax_excl"],
        "total_price_tax_incl": "35.900000",
        "total_price_tax_excl": "35.900000",
        "original_product_price": "35.900000",
    }
    bundle = {
        "order": order,
        "order_details": [detail1, detail2],
        "customer": customer,
        "addresses": [address],
        "countries": [],  # id_country 21 is resolved through the rules' PrestaShop country ids (US)
        "currencies": [records["currencies"]],
        "carrier": records["carriers"] | {"id": 2},
        "order_carriers": [records["order_carriers"]],
        "order_payments": [],
        "order_states": [state(6, "Canceled", logable="0")],
        "configuration": config(PS_TIMEZONE="UTC", PS_CURRENCY_DEFAULT="1", PS_OS_CANCELED="6"),
    }
    result = to_order(bundle, rules)
    assert_valid(result)
    assert [line["sku"] for line in result["lines"]] == [row1["product_reference"], "demo_3"]
    assert [line["variant_id"] for line in result["lines"]] == ["1", "9"]
    assert result["totals"]["grand_total"] == money("61.80", "USD")
    assert result["totals"]["paid"] == money("0", "USD")
    # The shop's default currency is USD, not the base EUR, so its conversion_rate cannot be used: the
    # rules' table rate applies (0.923 EUR per USD, dated 2024-05-03).
    assert result["currency_conversion"] == {
        "base_currency": "EUR",
        "rate": Decimal("0.9230000000"),
        "rate_source": "rules.rate_table",
        "rate_date": datetime(2024, 5, 3).date(),
    }
    assert result["base_totals"]["grand_total"] == money("57.041400")
    assert result["base_totals"]["shipping"] == money("1.846000")
    assert result["shipping_address"]["country_code"] == "US"
    assert result["shipping_address"]["postal_code"] == "00000"
    assert (result["payment_status"], result["fulfillment_status"], result["lifecycle"]) == (
        "UNKNOWN",
        "UNKNOWN",
        "CANCELLED",
    )
    assert result["source_status"]["code"] == "PS_OS_CANCELED"
    assert result["carrier"] == {"code": None, "reference_id": "1", "name": "Airbyte"}


def test_a_usd_order_in_a_eur_shop_uses_the_order_conversion_rate(rules: Rules) -> None:
    bundle = lyon_bundle()
    bundle["order"] |= {"id_currency": "2", "conversion_rate": "1.080000"}
    bundle["currencies"].append({"id": 2, "iso_code": "USD", "conversion_rate": "1.090000"})
    order = to_order(bundle, rules)
    assert_valid(order)
    assert order["totals"]["grand_total"] == money("65.88", "USD")
    assert order["lines"][0]["unit_price_excl_tax"] == money("20", "USD")
    # 1 / 1.08 at 10 decimals, half-even; the order's own rate (at order time), not today's 1.09.
    rate = Decimal("0.9259259259")
    assert order["currency_conversion"]["rate"] == rate
    assert order["currency_conversion"]["rate_source"] == "prestashop.currency.conversion_rate"
    assert order["currency_conversion"]["rate_date"] == datetime(2024, 5, 2).date()
    assert order["base_totals"]["grand_total"] == money("61.000000", "EUR")  # 65.88 x rate = 60.9999999983
    assert order["base_totals"]["grand_total"]["amount"] == (Decimal("65.88") * rate).quantize(
        Decimal("1E-6")
    )


def test_addresses_are_standardised_country_region_and_postcode(rules: Rules) -> None:
    bundle = lyon_bundle()
    bundle["order"]["id_address_invoice"] = "78"
    bundle["addresses"].append(
        bundle["addresses"][0]
        | {
            "id": 78,
            "id_country": "21",
            "id_state": "5",
            "company": "Reyes Roasters LLC",
            "address1": "455 W 37th St ",
            "address2": "Suite\t1204",
            "postcode": "10018-1234",
            "city": "New York",
            "vat_number": "us 12 345",
        }
    )
    bundle["addresses"][0] |= {"id_country": "17", "postcode": "sw1a1aa", "city": "London"}
    bundle["countries"] = [{"id": 17, "iso_code": "GB"}, {"id": 21, "iso_code": "US"}]
    bundle["states"] = [{"id": 5, "id_country": "21", "iso_code": "NY", "name": "New York"}]
    order = to_order(bundle, rules)
    assert_valid(order)
    billing, shipping = order["billing_address"], order["shipping_address"]
    assert (billing["country_code"], billing["region_code"], billing["postal_code"]) == (
        "US",
        "US-NY",
        "10018-1234",
    )
    assert billing["lines"] == ["455 W 37th St", "Suite 1204"]
    assert (billing["company"], billing["vat_number"]) == ("Reyes Roasters LLC", "US12345")
    assert (shipping["country_code"], shipping["region_code"], shipping["postal_code"]) == (
        "GB",
        None,
        "SW1A 1AA",
    )


def test_the_three_status_dimensions_come_from_the_state_the_config_key_names(rules: Rules) -> None:
    # A shop whose states are renumbered: 42 is Shipped because PS_OS_SHIPPING says so, not its id.
    bundle = lyon_bundle()
    bundle["order"]["current_state"] = "42"
    bundle["order_states"] = [state(42, "Expédié", paid="1", shipped="1", logable="1")]
    bundle["configuration"] = config(PS_TIMEZONE="Europe/Paris", PS_CURRENCY_DEFAULT="1", PS_OS_SHIPPING="42")
    order = to_order(bundle, rules)
    assert (order["payment_status"], order["fulfillment_status"], order["lifecycle"]) == (
        "PAID",
        "SHIPPED",
        "OPEN",
    )
    assert order["source_status"] == {"system": "PRESTASHOP", "code": "PS_OS_SHIPPING", "name": "Expédié"}

    # The same state under PS_OS_DELIVERED means delivered and closed.
    bundle["configuration"] = config(
        PS_TIMEZONE="Europe/Paris", PS_CURRENCY_DEFAULT="1", PS_OS_DELIVERED="42"
    )
    order = to_order(bundle, rules)
    assert (order["payment_status"], order["fulfillment_status"], order["lifecycle"]) == (
        "PAID",
        "DELIVERED",
        "CLOSED",
    )

    # A custom state without a key is resolved by its flags (paid, not shipped) and keeps its id as code.
    bundle["order_states"] = [state(42, "Paid by PayPal", paid="1", logable="1")]
    bundle["configuration"] = config(PS_TIMEZONE="Europe/Paris", PS_CURRENCY_DEFAULT="1")
    order = to_order(bundle, rules)
    assert (order["payment_status"], order["fulfillment_status"]) == ("PAID", "UNKNOWN")
    assert order["source_status"]["code"] == "42"


def test_a_state_missing_from_the_bundle_is_invalid(rules: Rules) -> None:
    bundle = lyon_bundle()
    bundle["order"]["current_state"] = "9"
    with pytest.raises(InvalidMessage) as caught:
        to_order(bundle, rules)
    assert (caught.value.reason, caught.value.field_path) == ("unknown_order_state", "current_state")


def test_the_sku_comes_from_the_product_table_first_then_the_line_reference(rules: Rules) -> None:
    table = VariantTable()
    table.put(VariantKey("1", 7, 31), "TSHIRT-M-BLUE")
    order = to_order(lyon_bundle(), rules, variants=table)
    assert [line["sku"] for line in order["lines"]] == ["TSHIRT-M-BLUE", "MUG-CER-350"]

    # A SKU whose derived ERP item number would be too long (15) is still the line's SKU: fitting it to
    # the ERP is the Infor sink's question.
    bundle = lyon_bundle()
    bundle["order_details"][1]["product_reference"] = "MUG-CERAMIC-350-WHITE"
    assert to_order(bundle, rules)["lines"][1]["sku"] == "MUG-CERAMIC-350-WHITE"

    bundle = lyon_bundle()
    bundle["order_details"][1]["product_reference"] = ""
    with pytest.raises(InvalidMessage) as caught:
        to_order(bundle, rules)
    assert caught.value.reason == "unknown_variant"
    assert caught.value.field_path == "order_details[1].product_reference"


def test_the_event_id_is_deterministic_and_moves_with_date_upd(rules: Rules) -> None:
    first = to_order(lyon_bundle(), rules)
    again = to_order(copy.deepcopy(lyon_bundle()), rules)
    assert first["meta"]["event_id"] == again["meta"]["event_id"]
    assert first == again
    later = lyon_bundle()
    later["order"]["date_upd"] = "2024-05-02 11:15:01"
    moved = to_order(later, rules)
    assert moved["meta"]["event_id"] != first["meta"]["event_id"]
    assert moved["meta"]["version"] == first["meta"]["version"] + 1000
    # Another shop's order with the same id and version is another event.
    other = flow.decode(json.dumps(lyon_bundle()).encode(), (*SNAPSHOT_HEADERS[:2], ("shop_id", b"2")))
    assert isinstance(other, flow.OrderEvent)
    assert flow.key(other) == "2:1042"
    other_order = flow.to_order(other, rules, ingested_at=INGESTED, correlation_id="c")
    assert other_order["meta"]["event_id"] != first["meta"]["event_id"]
    # The runner's version is the record's meta.version.
    event = decode(lyon_bundle())
    assert flow.version(event) == first["meta"]["version"]


@pytest.mark.parametrize(
    ("path", "value", "field_path", "expected"),
    [
        (("order", "total_paid_tax_incl"), "65,88 EUR", "order.total_paid_tax_incl", "decimal"),
        (("order", "current_state"), "shipped", "order.current_state", "integer"),
        (
            ("order_details", 0, "product_quantity"),
            {"qty": 2},
            "order_details[0].product_quantity",
            "decimal",
        ),
        (("customer", "is_guest"), "maybe", "customer.is_guest", "boolean"),
    ],
)
def test_a_wrong_type_is_invalid_with_its_field_path_and_expected_type(
    path: tuple[str | int, ...], value: object, field_path: str, expected: str
) -> None:
    bundle = lyon_bundle()
    target: Any = bundle
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    with pytest.raises(InvalidMessage) as caught:
        decode(bundle)
    assert caught.value.reason == "wrong_type"
    assert caught.value.field_path == field_path
    assert caught.value.details["expected"] == expected


def test_undecodable_bytes_and_a_missing_shop_id_are_invalid() -> None:
    with pytest.raises(InvalidMessage) as caught:
        flow.decode(b"\xff{not json", SNAPSHOT_HEADERS)
    assert caught.value.reason == "undecodable"
    with pytest.raises(InvalidMessage) as caught:
        flow.decode(json.dumps(lyon_bundle()).encode(), SNAPSHOT_HEADERS[:2])
    assert (caught.value.reason, caught.value.field_path) == ("missing_field", "shop_id")
    with pytest.raises(InvalidMessage) as caught:
        flow.decode(b"[1, 2]", SNAPSHOT_HEADERS)
    assert caught.value.reason == "wrong_type"


def test_totals_that_do_not_add_up_are_invalid_with_the_figures(rules: Rules) -> None:
    bundle = lyon_bundle()
    bundle["order"]["total_paid_tax_incl"] = "65.900000"  # two cents more than lines + shipping + tax
    with pytest.raises(InvalidMessage) as caught:
        to_order(bundle, rules)
    error = caught.value
    assert (error.reason, error.field_path) == ("totals_mismatch", "order.total_paid_tax_incl")
    assert error.details["expected"] == "65.880000"
    assert error.details["gap"] == "0.020000"
    # Within a cent is accepted (shop rounding).
    bundle["order"]["total_paid_tax_incl"] = "65.890000"
    assert_valid(to_order(bundle, rules))
    # A line whose tax-included total disagrees with the grand total is caught too.
    bundle = lyon_bundle()
    bundle["order_details"][1]["total_price_tax_incl"] = "12.880000"
    with pytest.raises(InvalidMessage) as caught:
        to_order(bundle, rules)
    assert caught.value.details["tax"] == "11.980000"


def test_unknown_currency_customer_and_address_are_invalid(rules: Rules) -> None:
    cases: list[tuple[str, str]] = []
    bundle = lyon_bundle()
    bundle["currencies"] = []
    cases.append(("order.id_currency", _reason(bundle, rules)))
    bundle = lyon_bundle()
    bundle["customer"] = None
    cases.append(("customer", _reason(bundle, rules)))
    bundle = lyon_bundle()
    bundle["addresses"] = []
    cases.append(("order.id_address_invoice", _reason(bundle, rules)))
    bundle = lyon_bundle()
    bundle["customer"]["email"] = "not-an-email"
    cases.append(("customer.email", _reason(bundle, rules)))
    bundle = lyon_bundle()
    bundle["configuration"] = config(PS_CURRENCY_DEFAULT="1", PS_OS_PAYMENT="2")
    cases.append(("configuration", _reason(bundle, rules)))
    assert cases == [
        ("order.id_currency", "missing_field@order.id_currency"),
        ("customer", "missing_field@customer"),
        ("order.id_address_invoice", "missing_field@order.id_address_invoice"),
        ("customer.email", "invalid_format@customer.email"),
        ("configuration", "missing_field@configuration"),
    ]


def _reason(bundle: dict[str, Any], rules: Rules) -> str:
    try:
        to_order(bundle, rules)
    except InvalidMessage as exc:
        return f"{exc.reason}@{exc.field_path}"
    return "no error"


def test_a_line_priced_far_from_the_catalogue_is_flagged(rules: Rules) -> None:
    bundle = lyon_bundle()
    bundle["order_details"][0]["original_product_price"] = "50.000000"  # sold at 20, catalogue 50
    order = to_order(bundle, rules)
    assert_valid(order)
    assert [a["code"] for a in order["anomalies"]] == ["price_deviation"]
    assert "TSH-ORG-M-BLU" in order["anomalies"][0]["reason"]


def _record(headers: Headers, value: bytes = b"{}") -> SourceRecord:
    return SourceRecord(
        topic="raw.prestashop.orders",
        partition=0,
        offset=1,
        key=b"1:orders:1042",
        value=value,
        headers=headers,
    )


def test_notifications_and_other_records_are_skipped_not_stale() -> None:
    notification: Headers = (("source", b"prestashop-webhook"), ("event_type", b"order.status_changed"))
    carrier: Headers = (
        ("source", b"prestashop-poll"),
        ("event_type", b"order_carrier.snapshot"),
        ("shop_id", b"1"),
    )
    for headers in (notification, carrier, ()):
        event = flow.decode(b'{"entity": "Order", "data": {"id": 1042}}', headers)
        assert isinstance(event, Skipped)
        assert flow.version(event) == SKIP_VERSION
        context = FlowContext(_record(headers), correlation_id="c", source_event_id="e")
        assert flow.to_record(event, context) is None


def test_the_flow_declaration_maps_a_raw_record_with_its_context() -> None:
    raw = json.dumps(lyon_bundle()).encode()
    headers = (*SNAPSHOT_HEADERS, ("received_at", b"2024-05-02T07:15:01.240Z"))
    context = FlowContext(_record(headers, raw), correlation_id="corr-9", source_event_id="x")
    assert (flow.FLOW.decode, flow.FLOW.to_record) == (flow.decode, flow.to_record)
    event = flow.decode(raw, headers)
    datum = flow.to_record(event, context)
    assert datum is not None
    assert_valid(datum)
    assert datum["meta"]["ingested_at"] == INGESTED
    assert datum["meta"]["correlation_id"] == "corr-9"
    assert flow.key(event) == "1:1042"
    assert (flow.FLOW.output, flow.FLOW.sources, flow.FLOW.record) == (
        "canonical.order.v1",
        ("raw.prestashop.orders",),
        "Order",
    )


def test_the_preview_prints_the_canonical_order_of_a_bundle_file(rules: Rules) -> None:
    result = preview(json.dumps(lyon_bundle()).encode(), rules, "prestashop_orders")
    assert result["order_key"] == "1:1042"
    assert result["totals"]["grand_total"] == money("65.88")
