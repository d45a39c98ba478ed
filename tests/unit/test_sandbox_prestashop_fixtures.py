"""The fixture records (tests/fixtures/prestashop, Airbyte's MIT-licensed sample of a 1.7 shop) load
into the sandbox and come back from ``GET …?display=full&output_format=JSON`` with the same keys,
the same scalar types and the same values."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sandbox.prestashop.seed import load_records
from tests.unit.test_sandbox_prestashop_support import client, config

pytestmark = pytest.mark.timeout(30)

FIXTURE = (
    Path(__file__).resolve().parents[1] / "fixtures" / "prestashop" / "airbyte_expected_records_subset.jsonl"
)
COMPUTED = {"order_rows", "combinations", "stock_availables"}


def _records() -> list[tuple[str, dict[str, Any]]]:
    lines = FIXTURE.read_text(encoding="utf-8").splitlines()
    return [(row["stream"], row["data"]) for row in map(json.loads, lines) if row.get("data")]


def test_fixture_file_covers_the_resources_a_connector_reads() -> None:
    streams = {stream for stream, _ in _records()}
    assert {
        "orders",
        "customers",
        "products",
        "stock_availables",
        "order_histories",
        "order_carriers",
    } <= streams


@pytest.mark.parametrize(("stream", "record"), _records(), ids=lambda v: v if isinstance(v, str) else "")
def test_fixture_record_round_trips_through_the_json_list_output(stream: str, record: dict[str, Any]) -> None:
    with client(config(version="1.7.8.8", languages=("en",)), seed_data=False) as (tc, app):
        store = app.sandbox.store
        store.insert(
            "languages",
            {
                "name": "English",
                "iso_code": "en",
                "locale": "en-US",
                "language_code": "en-us",
                "active": "1",
                "is_rtl": "0",
                "date_format_lite": "m/d/Y",
                "date_format_full": "m/d/Y H:i:s",
            },
        )
        load_records(store, _records())
        answer = tc.get(f"/api/{stream}?display=full&output_format=JSON&filter[id]=[{record['id']}]").json()
        [got] = answer[stream]
        assert list(got) == list(record)
        for key, value in record.items():
            if key == "associations":
                continue
            assert type(got[key]) is type(value), key
            assert got[key] == value, key
        if "associations" in record:
            assert set(got["associations"]) == set(record["associations"])
            for name, rows in record["associations"].items():
                mine = got["associations"][name]
                assert all(set(row) == set(rows[0]) for row in mine), name
                if name not in COMPUTED:
                    assert mine == rows, name
                else:
                    assert mine[0] == rows[0], name  # the fixture's other rows are not in the subset


def test_fixture_order_is_also_served_as_xml_with_links() -> None:
    with client(config(version="1.7.8.8", languages=("en",)), seed_data=False) as (tc, app):
        app.sandbox.store.insert("languages", {"name": "English", "iso_code": "en"})
        load_records(app.sandbox.store, _records())
        text = tc.get("/api/orders/1").text
        assert (
            '<id_customer xlink:href="http://shop.test/api/customers/2"><![CDATA[2]]></id_customer>' in text
        )
        assert '<shipping_number notFilterable="true"><![CDATA[]]></shipping_number>' in text
        assert '<order_rows nodeType="order_row" virtualEntity="true">' in text
        assert '<product_id xlink:href="http://shop.test/api/products/1"><![CDATA[1]]></product_id>' in text
