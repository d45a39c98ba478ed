"""The ``infor-customers`` sink: the mapping field by field, and the upsert against the Infor sandbox.

What M3 holds is read back through the sandbox's admin API; the M3 calls the sink made are seen on a
recording transport under the real HTTP one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.infor.adapter import Address, Customer
from connectors.infor.errors import MiBusinessError, MiError
from connectors.infor.ionapi import IonApiCredentials
from pipeline.errors import InvalidMessage, RetryableError
from processors.erp_links import CustomerLink
from sandbox.infor.server import InforSandboxServer
from sinks.base import Applied, Skip
from sinks.infor_customers import (
    CustomerUpsert,
    erp_customer_number,
    m3_rejection,
    m3_state_code,
    to_customer_upsert,
)
from tests.unit.test_sinks_infor_support import (
    RULES,
    admin_client,
    context,
    credentials_of,
    example,
    infor_process,
    run,
    running_sandbox,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def server() -> Iterator[InforSandboxServer]:
    with running_sandbox() as running:
        yield running


@pytest.fixture
def admin(server: InforSandboxServer) -> Iterator[httpx.Client]:
    with admin_client(server) as client:
        yield client


@pytest.fixture
def credentials(server: InforSandboxServer, tmp_path: Path) -> IonApiCredentials:
    return credentials_of(server, tmp_path)


def shop_customer(key: str = "1:318", **changes: Any) -> dict[str, Any]:
    """The registered French example customer, without an M3 number of its own unless given."""
    datum = example("Customer", "registered-fr")
    datum["customer_key"] = key
    datum["external_ids"] = {"prestashop": key.split(":")[1]}
    datum.update(changes)
    return datum


def ctx() -> Any:
    return context("1:318", topic="canonical.customer.v1")


# -- the mapping, field by field ------------------------------------------------------------------


def test_the_example_customer_maps_field_by_field() -> None:
    wanted = to_customer_upsert(example("Customer", "registered-fr"), RULES)

    assert wanted.customer_key == "1:318"
    assert wanted.erp_id == "C000318"  # the M3 number the record names is tried first
    assert wanted.customer == Customer(
        customer_id="PS000318",
        name="Camille Durand",
        address=Address(
            name="Camille Durand",
            lines=("12 rue des Lilas", "Bâtiment B, 3e étage"),
            city="Lyon",
            postal_code="69003",
            country_code="FR",
            state_code="",
            phone="+33472000000",
        ),
        email="camille.durand@example.org",
        phone="+33472000000",
    )
    assert wanted.has_address
    assert wanted.field_paths["TOWN"] == "addresses[0].city"
    assert wanted.field_paths["CUNM"] == "last_name"


def test_a_business_customer_is_named_by_its_company() -> None:
    datum = shop_customer(company="Brasserie du Port SARL")

    wanted = to_customer_upsert(datum, RULES)

    assert wanted.customer.name == "Brasserie du Port SARL"
    assert wanted.field_paths["CUNM"] == "company"


def test_a_customer_without_address_cannot_be_created() -> None:
    wanted = to_customer_upsert(shop_customer(addresses=[], phone=None), RULES)

    assert wanted.customer.address is None
    assert not wanted.has_address
    assert wanted.customer.phone == ""


@pytest.mark.parametrize(
    ("key", "number"),
    [("1:42", "PS000042"), ("1:12345678", "PS12345678"), ("2:42", "PS2-42"), ("12:4567", "PS12-4567")],
)
def test_customer_numbers_are_deterministic_and_never_collide_across_shops(key: str, number: str) -> None:
    assert erp_customer_number(key) == number


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("318", "invalid_customer_key"),
        ("1:x", "invalid_customer_key"),
        ("12:1234567", "customer_number_too_long"),
    ],
)
def test_a_customer_key_without_an_m3_number_is_invalid(key: str, reason: str) -> None:
    with pytest.raises(InvalidMessage) as caught:
        erp_customer_number(key)

    assert (caught.value.reason, caught.value.field_path) == (reason, "customer_key")


@pytest.mark.parametrize(("region", "state"), [("US-NY", "NY"), ("CA-QC", "QC"), (None, ""), ("", "")])
def test_m3_states_are_the_subdivision_part_of_iso_3166_2(region: str | None, state: str) -> None:
    assert m3_state_code(region) == state


def test_m3_refusals_blame_the_canonical_field_and_busy_records_are_retried() -> None:
    refused = MiBusinessError(
        MiError("ServerReturnedNOK", "WCU0302", "TOWN", "City is invalid", "CRS610MI", "Add")
    )
    locked = MiBusinessError(
        MiError(
            "ServerReturnedNOK",
            "XRE0103",
            "CUNO",
            "Record is locked by another user",
            "CRS610MI",
            "ChgBasicData",
        )
    )

    invalid = m3_rejection(refused, {"TOWN": "addresses[0].city"})
    busy = m3_rejection(locked, {})

    assert isinstance(invalid, InvalidMessage)
    assert invalid.field_path == "addresses[0].city"
    assert invalid.details == {
        "m3_code": "WCU0302",
        "m3_field": "TOWN",
        "m3_type": "ServerReturnedNOK",
        "m3_message": "City is invalid",
        "transaction": "CRS610MI.Add",
    }
    assert isinstance(busy, RetryableError)


def test_records_from_infor_are_echoes(credentials: IonApiCredentials) -> None:
    async def scenario() -> tuple[Any, Any]:
        async with infor_process(credentials) as process:
            sink = process.customers_sink()
            from_erp = sink.decode(example("Customer", "b2b-from-erp"), ctx())
            erp_only = sink.decode(shop_customer("infor:100:C1"), ctx())
            return from_erp, erp_only

    assert run(scenario()) == (Skip("echo"), Skip("echo"))


# -- the upsert against the sandbox ---------------------------------------------------------------


async def _apply(sink: Any, datum: dict[str, Any]) -> Applied:
    model = sink.decode(datum, ctx())
    assert isinstance(model, CustomerUpsert)
    result: Applied = await sink.apply(model, ctx())
    return result


def test_a_new_customer_is_created_once_and_its_link_written(
    admin: httpx.Client, credentials: IonApiCredentials
) -> None:
    async def scenario() -> tuple[Applied, Applied, list[Any], int]:
        async with infor_process(credentials) as process:
            sink = process.customers_sink()
            created = await _apply(sink, shop_customer())
            again = await _apply(sink, shop_customer())  # redelivery
            return created, again, process.producer.links(), process.transport.count("CRS610MI/Add")

    created, again, links, adds = run(scenario())

    assert created == Applied("written", {"erp_customer_number": "PS000318", "found_by": "created"})
    assert again == Applied("unchanged", {"erp_customer_number": "PS000318", "found_by": "link"})
    assert adds == 1
    m3 = admin.get("/customers/PS000318").json()
    assert (
        m3["CUNM"],
        m3["CUA1"],
        m3["CUA2"],
        m3["PONO"],
        m3["TOWN"],
        m3["CSCD"],
        m3["MAIL"],
        m3["PHNO"],
    ) == (
        "Camille Durand",
        "12 rue des Lilas",
        "Bâtiment B, 3e étage",
        "69003",
        "Lyon",
        "FR",
        "camille.durand@example.org",
        "+33472000000",
    )
    assert links == [
        ("customer:1:318", {"customer_key": "1:318", "cono": "100", "erp_customer_number": "PS000318"})
    ]


def test_a_changed_customer_gets_only_the_fields_that_differ(
    admin: httpx.Client, credentials: IonApiCredentials
) -> None:
    async def scenario() -> tuple[Applied, Applied, list[dict[str, str]]]:
        async with infor_process(credentials) as process:
            sink = process.customers_sink()
            await _apply(sink, shop_customer())
            moved = shop_customer(phone="+33472999999")
            moved["addresses"][0]["city"] = "Villeurbanne"
            moved["addresses"][0]["postal_code"] = "69100"
            changed = await _apply(sink, moved)
            unchanged = await _apply(sink, moved)
            changes = [params for name, params in process.transport.calls if name == "CRS610MI/ChgBasicData"]
            return changed, unchanged, changes

    changed, unchanged, changes = run(scenario())

    assert changed.outcome == "written"
    assert unchanged.outcome == "unchanged"
    assert len(changes) == 1
    sent = {name: value for name, value in changes[0].items() if len(name) == 4 and name.isupper()}
    assert sent == {"CUNO": "PS000318", "PONO": "69100", "TOWN": "Villeurbanne", "PHNO": "+33472999999"}
    m3 = admin.get("/customers/PS000318").json()
    assert (m3["TOWN"], m3["PONO"], m3["PHNO"], m3["CUA1"]) == (
        "Villeurbanne",
        "69100",
        "+33472999999",
        "12 rue des Lilas",
    )


def test_a_customer_m3_already_has_under_the_same_email_is_linked_not_created_again(
    admin: httpx.Client, credentials: IonApiCredentials
) -> None:
    existing = next(c for c in admin.get("/customers").json() if c["CUNO"].startswith("C0"))
    count_before = len(admin.get("/customers").json())

    async def scenario() -> tuple[Applied, list[Any]]:
        async with infor_process(credentials) as process:
            sink = process.customers_sink()
            applied = await _apply(sink, shop_customer("1:777", email=existing["MAIL"].upper()))
            return applied, process.producer.links()

    applied, links = run(scenario())

    assert applied.outcome == "written"  # linked, and the shop's data differs from M3's: changed
    assert applied.facts == {"erp_customer_number": existing["CUNO"], "found_by": "email"}
    assert len(admin.get("/customers").json()) == count_before
    assert admin.get("/customers/PS000777").status_code == 404
    assert links == [
        ("customer:1:777", {"customer_key": "1:777", "cono": "100", "erp_customer_number": existing["CUNO"]})
    ]


def test_a_customer_created_in_m3_after_the_first_lookup_is_still_found_by_email(
    admin: httpx.Client, credentials: IonApiCredentials
) -> None:
    async def scenario() -> tuple[Applied, Applied]:
        async with infor_process(credentials) as process:
            sink = process.customers_sink()
            first = await _apply(sink, shop_customer("1:501", email="first@example.org"))
            # Someone creates a customer in M3 directly; the shop then registers the same person.
            await process.adapter.upsert_customer(
                Customer(
                    "M3ONLY1",
                    "Late Comer",
                    Address("Late Comer", ("1 Rue Neuve",), "Lyon", "69001", "FR"),
                    email="late@example.org",
                )
            )
            second = await _apply(sink, shop_customer("1:502", email="late@example.org"))
            return first, second

    first, second = run(scenario())

    assert first.facts == {"erp_customer_number": "PS000501", "found_by": "created"}
    assert second.facts == {"erp_customer_number": "M3ONLY1", "found_by": "email"}


def test_the_m3_number_the_record_names_wins(admin: httpx.Client, credentials: IonApiCredentials) -> None:
    async def scenario() -> Applied:
        async with infor_process(credentials) as process:
            datum = shop_customer(email="someone.else@example.org")
            datum["external_ids"] = {"prestashop": "318", "infor": "PS000042"}
            return await _apply(process.customers_sink(), datum)

    applied = run(scenario())

    assert applied.facts == {"erp_customer_number": "PS000042", "found_by": "external_id"}
    assert admin.get("/customers/PS000318").status_code == 404


def test_a_known_link_is_used_without_searching(admin: httpx.Client, credentials: IonApiCredentials) -> None:
    async def scenario() -> tuple[Applied, list[str]]:
        async with infor_process(credentials) as process:
            process.links.link_customer(CustomerLink("1:318", "100", "PS000042"))
            applied = await _apply(process.customers_sink(), shop_customer(email="jane.doe@example.com"))
            return applied, [name for name, _ in process.transport.calls]

    applied, calls = run(scenario())

    assert applied.facts is not None
    assert applied.facts["found_by"] == "link"
    assert "CRS610MI/LstByNumber" not in calls


def test_two_processes_creating_the_same_new_customer_make_one(
    admin: httpx.Client, credentials: IonApiCredentials
) -> None:
    admin.post(
        "/faults", json={"kind": "latency", "program": "CRS610MI", "transaction": "Add", "latency_s": 0.3}
    ).raise_for_status()

    async def scenario() -> list[Applied]:
        async with infor_process(credentials) as one, infor_process(credentials) as two:
            return list(
                await asyncio.gather(
                    _apply(one.customers_sink(), shop_customer()),
                    _apply(two.customers_sink(), shop_customer()),
                )
            )

    results = run(scenario())

    assert sorted(r.facts["found_by"] for r in results if r.facts) == ["created", "number"]
    assert [
        c["CUNO"] for c in admin.get("/customers", params={"mail": "camille.durand@example.org"}).json()
    ] == ["PS000318"]
    assert admin.get("/gateway/stats").json()["faults"]["latency"] == 2  # both sent Add; M3 took one


def test_a_customer_without_address_waits_for_its_first_order(
    admin: httpx.Client, credentials: IonApiCredentials
) -> None:
    async def scenario() -> tuple[Applied, list[Any]]:
        async with infor_process(credentials) as process:
            applied = await _apply(process.customers_sink(), shop_customer(addresses=[]))
            return applied, process.producer.links()

    applied, links = run(scenario())

    assert applied == Applied("deferred", {"why": "no_address"})
    assert links == []
    assert admin.get("/customers/PS000318").status_code == 404


def test_a_value_m3_refuses_is_invalid_with_m3s_code_field_and_the_canonical_path(
    admin: httpx.Client, credentials: IonApiCredentials
) -> None:
    async def scenario() -> InvalidMessage:
        async with infor_process(credentials) as process:
            datum = shop_customer()
            datum["addresses"][0]["city"] = "Saint-Remy-de-Provence-sur-Durance"
            with pytest.raises(InvalidMessage) as caught:
                await _apply(process.customers_sink(), datum)
            return caught.value

    error = run(scenario())

    assert error.reason == "m3_field_too_long"
    assert error.field_path == "addresses[0].city"
    assert (error.details["m3_field"], error.details["m3_type"], error.details["transaction"]) == (
        "TOWN",
        "InputFieldTooLong",
        "CRS610MI.Add",
    )
    assert admin.get("/customers/PS000318").status_code == 404
