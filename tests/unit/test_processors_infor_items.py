"""Infor item flow: Sync.ItemMaster BODs and MMS200MI items → canonical.product.v1."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

import pytest

from pipeline.errors import InvalidMessage
from processors import infor_items
from processors.infor_source import EVENT_NAMESPACE
from processors.runner import Skipped
from rules.engine import load_rules
from tests.unit.test_processors_infor_support import assert_valid, context, fixture

RULES = load_rules(None)
PRICED = fixture("bod/SyncItemMaster.xml").replace(
    b"</UserArea>", b'<Property><NameValue name="SAPR">19.90</NameValue></Property></UserArea>'
)


def _run(raw: bytes) -> dict[str, Any]:
    flow = infor_items.build_flow(RULES)
    event = flow.decode(raw, ())
    assert not isinstance(event, Skipped)
    datum = flow.to_record(event, context())
    assert datum is None or isinstance(datum, dict)
    assert datum is not None
    assert_valid("Product", datum)
    assert flow.key(event) == datum["sku"]
    return datum


def test_reference_fixture_with_a_price_field_by_field() -> None:
    datum = _run(PRICED)
    assert datum["sku"] == "SKU-1001"
    assert datum["names"] == {"en": "Blue mug"}
    assert datum["price"] == {"amount": Decimal("19.900000"), "currency": "EUR"}  # rules' base currency
    assert datum["weight_kg"] == Decimal("0.35")
    assert datum["active"] is True  # item status 20
    assert (datum["unit_of_measure"], datum["item_group"]) == ("EA", "MUGS")
    assert datum["erp_item_number"] == "SKU-1001"
    assert datum["meta"]["version"] == 7
    assert datum["meta"]["event_id"] == str(uuid.uuid5(EVENT_NAMESPACE, "INFOR|Sync.ItemMaster|SKU-1001|7"))


def test_mms200mi_record_of_an_expired_item() -> None:
    record = {"ITNO": "SKU-2002", "ITDS": "Red plate", "STAT": "90", "UNMS": "EA", "ITGR": "PLATES",
              "SAPR": "9.90", "GRWE": "0.800", "LMTS": "1741161600000"}  # fmt: skip
    datum = _run(json.dumps(record).encode())
    assert datum["active"] is False
    assert datum["price"]["amount"] == Decimal("9.90")
    assert datum["meta"]["version"] == 1741161600000


def test_item_without_price_is_refused_not_zeroed() -> None:
    with pytest.raises(InvalidMessage) as caught:
        _run(fixture("bod/SyncItemMaster.xml"))
    assert (caught.value.reason, caught.value.field_path) == (
        "missing_field",
        "ItemMaster/ItemMasterHeader/UserArea/SAPR",
    )


def test_wrong_weight_type_names_its_path() -> None:
    with pytest.raises(InvalidMessage) as caught:
        _run(PRICED.replace(b">0.35<", b">heavy<"))
    assert (caught.value.reason, caught.value.field_path) == (
        "wrong_type",
        "ItemMaster/ItemMasterHeader/PackagingUnit/GrossWeightMeasure",
    )
