"""The fixture records read back through the client from a sandbox seeded with them.

tests/fixtures/prestashop holds real records of a 1.7 shop (Airbyte's MIT-licensed sample), each one
element of ``GET /api/<resource>?display=full&output_format=JSON``. A 1.7.8.8 sandbox is loaded with
exactly those records (``seed.load_records``, no generated data) and served over loopback HTTP; the
client reads each one back both ways it reads (a filtered list, and one id with ``display=full``)
and the models must equal, field by field, the models parsed straight from the fixture line.

The computed associations (``order_rows`` from order_details, a product's ``combinations`` and
``stock_availables``) are rebuilt by the shop from its tables, and the fixture holds only the first
row of each of those tables; for them the first entry is compared.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from connectors.prestashop.client import PrestaShopClient
from connectors.prestashop.models import MODEL_BY_RESOURCE, PsModel
from connectors.prestashop.query import Query, equals
from sandbox.prestashop.config import KeyPermissions, SandboxConfig
from sandbox.prestashop.seed import load_records
from sandbox.prestashop.server import SandboxServer

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(20)]

KEY = "FIXTURESANDBOXKEY0123456789ABCDE"
FIXTURE = (
    Path(__file__).resolve().parents[1] / "fixtures" / "prestashop" / "airbyte_expected_records_subset.jsonl"
)
COMPUTED = frozenset({"order_rows", "combinations", "stock_availables"})
LANGUAGE = 1
"""The fixture shop has one language (i18n fields are plain strings), id 1."""


def _records() -> list[tuple[str, dict[str, Any]]]:
    lines = FIXTURE.read_text(encoding="utf-8").splitlines()
    return [(row["stream"], row["data"]) for row in map(json.loads, lines) if row.get("data")]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def fixture_shop() -> Iterator[SandboxServer]:
    """A 1.7.8.8 sandbox holding the fixture records and nothing else (plus its one language)."""
    config = SandboxConfig(version="1.7.8.8", keys=(KeyPermissions(KEY),), languages=("en",))
    server = SandboxServer(config, seed_data=False)
    store = server.app.sandbox.store
    store.insert(
        "languages", {"name": "English (English)", "iso_code": "en", "active": "1"}, entity_id=LANGUAGE
    )
    load_records(store, _records())
    with server:
        yield server


@asynccontextmanager
async def _client(server: SandboxServer) -> AsyncIterator[PrestaShopClient]:
    async with httpx.AsyncClient(timeout=5.0) as http:
        # The fixture shop has no configurations table: language given, as a caller may.
        yield PrestaShopClient(http, server.base_url, SecretStr(KEY), language_id=LANGUAGE)


def _expected(model: type[PsModel], data: dict[str, Any]) -> PsModel:
    return model.model_validate(data, context={"language_id": LANGUAGE})


def _assert_same(got: PsModel, expected: PsModel) -> None:
    mine, theirs = got.model_dump(), expected.model_dump()
    mine_assoc, their_assoc = mine.pop("associations", {}), theirs.pop("associations", {})
    for name in theirs:  # field by field, so a failure names the field
        assert mine[name] == theirs[name], name
    assert mine == theirs
    assert set(mine_assoc) == set(their_assoc)
    for name, rows in their_assoc.items():
        if name in COMPUTED and rows:
            assert mine_assoc[name][0] == rows[0], name
        else:
            assert mine_assoc[name] == rows, name


def test_the_fixture_covers_every_resource_the_client_models() -> None:
    streams = {stream for stream, _ in _records()}
    assert streams - set(MODEL_BY_RESOURCE) == set()
    assert {
        "orders",
        "customers",
        "products",
        "stock_availables",
        "order_histories",
        "order_carriers",
    } <= streams


@pytest.mark.parametrize(("stream", "data"), _records(), ids=[stream for stream, _ in _records()])
async def test_fixture_record_reads_back_equal_through_the_client(
    fixture_shop: SandboxServer, stream: str, data: dict[str, Any]
) -> None:
    model = MODEL_BY_RESOURCE[stream]
    expected = _expected(model, data)
    async with _client(fixture_shop) as client:
        [listed] = await client.list_all(model, Query(filters=(equals("id", data["id"]),)))
        single = await client.get_fetched(model, data["id"])
    _assert_same(listed, expected)
    _assert_same(single.model, expected)
    # The raw record is what the shop sent for that line: same keys, same JSON scalar types.
    assert list(single.record) == list(data)
    for name, value in data.items():
        if name != "associations":
            assert single.record[name] == value, name
            assert type(single.record[name]) is type(value), name
