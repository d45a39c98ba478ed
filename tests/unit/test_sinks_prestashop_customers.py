"""The customer sink: owned-field and address decisions (pure), partial writes against the sandbox that
keep every secret and consent flag."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from connectors.prestashop.models import Address, Customer
from pipeline.errors import InvalidMessage, RetryableError
from sandbox.prestashop.server import SandboxServer
from sinks.base import Skip
from sinks.prestashop_customers import (
    ERP_ADDRESS_ALIAS,
    AddressMaster,
    CustomerMaster,
    CustomerSink,
    address_action,
    address_fields,
    customer_changes,
    same_address,
    to_customer_master,
)
from tests.unit.test_sinks_prestashop_support import (
    SHOP_ID,
    VERSIONS,
    Admin,
    Wire,
    admin,
    context,
    datum,
    running_shop,
    sink_client,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

_HOME = AddressMaster(
    first_name="Hélène",
    last_name="Martin",
    company="Brasserie du Port SARL",
    lines=("Quai du Port 4", "Bâtiment B", "3e étage"),
    postal_code="13002",
    city="Marseille",
    region_code=None,
    country_code="FR",
    phone="+33491000000",
    vat_number="FR40303265045",
)


def _master(**changes: Any) -> CustomerMaster:
    values: dict[str, Any] = {
        "customer_key": "1:7",
        "id_customer": 7,
        "email": "helene@example.org",
        "first_name": "Hélène",
        "last_name": "Martin",
        "company": None,
        "address": None,
    }
    values.update(changes)
    return CustomerMaster(**values)


# --- pure ------------------------------------------------------------------------------------------


def test_decode_finds_the_shop_customer_by_key_and_skips_echoes() -> None:
    linked = to_customer_master(datum("Customer", "b2b-from-erp"), shop_id=1)
    assert isinstance(linked, CustomerMaster)
    assert (linked.id_customer, linked.email, linked.last_name) == (
        1450,
        "purchasing@brasserie-du-port.example",
        "Martin",
    )
    assert linked.address is not None
    assert linked.address.lines == ("Quai du Port 4",)
    erp_only = to_customer_master(
        datum("Customer", "b2b-from-erp", customer_key="infor:100:C004410"), shop_id=1
    )
    assert isinstance(erp_only, CustomerMaster)
    assert erp_only.id_customer is None
    assert to_customer_master(datum("Customer", "b2b-from-erp"), shop_id=2) == Skip("not_ours")
    assert to_customer_master(datum("Customer", "registered-fr"), shop_id=1) == Skip("echo")
    with pytest.raises(InvalidMessage) as caught:
        to_customer_master(datum("Customer", "b2b-from-erp", customer_key="C004410"), shop_id=1)
    assert caught.value.field_path == "customer_key"


def test_customer_changes_are_only_the_owned_fields_that_differ() -> None:
    shop = Customer(
        id=7,
        email="Helene@Example.org",
        firstname="Hélène Marie",
        lastname="Martin",
        company="",
        secure_key="0123456789abcdef0123456789abcdef",
        newsletter=True,
    )
    # M3 split "Hélène Marie Martin" at the last word, like the shop: nothing to write.
    assert customer_changes(shop, _master(first_name="Hélène Marie")) == {}
    # The same name split elsewhere is no change either.
    same_name = Customer(id=7, email="helene@example.org", firstname="Hélène", lastname="Marie Martin")
    assert customer_changes(same_name, _master(first_name="Hélène Marie")) == {}
    changed = customer_changes(
        shop, _master(email="h.martin@example.org", last_name="Dupont", company="Brasserie du Port")
    )
    assert changed == {
        "email": "h.martin@example.org",
        "firstname": "Hélène",
        "lastname": "Dupont",
        "company": "Brasserie du Port",
    }
    # A one-word ERP name keeps the shop's first name (the shop requires one).
    assert customer_changes(shop, _master(first_name="", last_name="Dupont")) == {"lastname": "Dupont"}


def test_address_lines_are_joined_without_losing_text_or_refused() -> None:
    fields = address_fields(_HOME, id_country=8, id_state=0)
    assert (fields["address1"], fields["address2"]) == ("Quai du Port 4", "Bâtiment B, 3e étage")
    assert (fields["id_country"], fields["postcode"], fields["company"]) == (
        8,
        "13002",
        "Brasserie du Port SARL",
    )
    too_long = AddressMaster(**{**_HOME.__dict__, "lines": ("x" * 129,)})
    with pytest.raises(InvalidMessage) as caught:
        address_fields(too_long, id_country=8, id_state=0)
    assert (caught.value.reason, caught.value.field_path) == ("address_does_not_fit", "addresses[0].lines")
    assert caught.value.details["limit"] == "128"


def test_an_address_that_came_back_through_the_erp_is_the_same_address() -> None:
    wanted = address_fields(_HOME, id_country=8, id_state=0)
    # The shop's spelling: another name split, street lines wrapped elsewhere, phone and postcode spaced.
    shop = Address(
        id=3,
        alias="Home",
        firstname="Hélène Martin",
        lastname="",
        company="BRASSERIE DU PORT SARL",
        address1="Quai du Port 4, Bâtiment B",
        address2="3e étage",
        postcode="13 002",
        city="Marseille",
        id_country=8,
        phone="+33 4 91 00 00 00",
        vat_number="FR 40303265045",
    )
    assert same_address(shop, wanted)
    assert not same_address(shop.model_copy(update={"city": "Aix"}), wanted)
    assert not same_address(shop.model_copy(update={"address2": "4e étage"}), wanted)
    assert not same_address(shop.model_copy(update={"id_country": 1}), wanted)


def test_the_buyers_addresses_are_never_edited() -> None:
    wanted = address_fields(_HOME, id_country=8, id_state=0)
    same = Address.model_validate({"id": 3, "alias": "Home", **wanted})
    spaced = same.model_copy(update={"city": "  MARSEILLE ", "id": 4})
    other = Address(
        id=5, alias="Home", firstname="Jean", lastname="Martin", address1="1 rue X", city="Lyon", id_country=8
    )
    ours = other.model_copy(update={"id": 9, "alias": ERP_ADDRESS_ALIAS})
    assert address_action([other, same], wanted).kind == "none"
    assert address_action([spaced], wanted).kind == "none"  # case and spacing are not a change
    assert address_action([other], wanted).kind == "create"
    update = address_action([other, ours], wanted)
    assert (update.kind, update.address) == ("update", ours)
    assert update.changes is not None
    assert "id_country" not in update.changes  # only what differs
    assert update.changes["city"] == "Marseille"
    gone = ours.model_copy(update={"deleted": True})
    assert address_action([other, gone], wanted).kind == "create"


# --- against the sandbox ---------------------------------------------------------------------------


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=VERSIONS)
def shop(request: pytest.FixtureRequest) -> Iterator[SandboxServer]:
    with running_shop(request.param) as server:
        yield server


def _from_erp(customer: dict[str, Any], **changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "customer_key": f"{SHOP_ID}:{customer['id']}",
        "email": customer["email"],
        "first_name": customer["firstname"],
        "last_name": "Lefèvre-Martin",
        "company": None,  # the Infor customer flow states none
        "external_ids": {"infor": "C000042", "prestashop": str(customer["id"])},
    }
    values.update(changes)
    return datum("Customer", "b2b-from-erp", **values)


async def _decoded(sink: CustomerSink, record: dict[str, Any]) -> CustomerMaster:
    model = sink.decode(record, context())
    assert isinstance(model, CustomerMaster)
    return model


async def _addresses_of(a: Admin, id_customer: int) -> list[dict[str, Any]]:
    return [row for row in await a.rows("addresses") if int(row["id_customer"]) == id_customer]


_CHANGED_OR_MOVING = {"lastname", "date_upd"}


async def test_an_erp_change_keeps_secrets_and_consent_and_adds_one_erp_address(shop: SandboxServer) -> None:
    wire = Wire()
    async with admin(shop) as a, sink_client(shop, wire) as client:
        before = await a.row("customers", 3)
        addresses_before = await _addresses_of(a, 3)
        sink = CustomerSink(client, shop_id=SHOP_ID)
        model = await _decoded(sink, _from_erp(before))

        first = await sink.apply(model, context())
        writes = len(wire.writes())
        again = await sink.apply(model, context(attempt=2))

        after = await a.row("customers", 3)
        assert first.outcome == "written"
        assert first.facts is not None
        assert (first.facts["fields"], first.facts["address"]) == ("lastname", "create")
        assert again.outcome == "unchanged"
        assert len(wire.writes()) == writes == 2  # the customer and the address, once
        assert after["lastname"] == "Lefèvre-Martin"
        # Every field the write does not own is as it was: secure_key, the password hash, consent...
        for name in ("secure_key", "passwd", "newsletter", "optin", "active", "id_default_group", "date_add"):
            assert after[name] == before[name], name
        assert after["associations"] == before["associations"]
        addresses = await _addresses_of(a, 3)
        assert addresses[: len(addresses_before)] == addresses_before  # the buyer's own, untouched
        [erp] = addresses[len(addresses_before) :]
        assert (erp["alias"], erp["address1"], erp["city"], erp["id_country"]) == (
            ERP_ADDRESS_ALIAS,
            "Quai du Port 4",
            "Marseille",
            "8",
        )


async def test_a_moved_erp_address_updates_the_pipelines_address_only(shop: SandboxServer) -> None:
    async with admin(shop) as a, sink_client(shop) as client:
        customer = await a.row("customers", 4)
        sink = CustomerSink(client, shop_id=SHOP_ID)
        await sink.apply(await _decoded(sink, _from_erp(customer)), context())
        count = len(await _addresses_of(a, 4))
        moved = _from_erp(customer)
        moved["addresses"][0]["lines"] = ["12 rue de la République"]
        moved["addresses"][0]["city"] = "Lyon"
        moved["addresses"][0]["postal_code"] = "69002"

        applied = await sink.apply(await _decoded(sink, moved), context())

        assert applied.facts is not None
        assert applied.facts["address"] == "update"
        addresses = await _addresses_of(a, 4)
        assert len(addresses) == count
        [erp] = [row for row in addresses if row["alias"] == ERP_ADDRESS_ALIAS]
        assert (erp["address1"], erp["city"], erp["postcode"]) == ("12 rue de la République", "Lyon", "69002")


async def test_an_erp_only_customer_is_found_by_email_or_left_alone(shop: SandboxServer) -> None:
    async with admin(shop) as a, sink_client(shop) as client:
        customer = await a.row("customers", 5)
        sink = CustomerSink(client, shop_id=SHOP_ID)
        found = _from_erp(customer, customer_key="infor:100:C000555", addresses=[])
        nobody = _from_erp(
            customer, customer_key="infor:100:C000556", email="nobody@example.net", addresses=[]
        )

        assert (await sink.apply(await _decoded(sink, found), context())).outcome == "written"
        assert (await sink.apply(await _decoded(sink, nobody), context())).outcome == "no_shop_customer"
        assert (await a.row("customers", 5))["lastname"] == "Lefèvre-Martin"


async def test_a_503_on_the_customer_write_is_retryable(shop: SandboxServer) -> None:
    async with admin(shop) as a, sink_client(shop) as client:
        customer = await a.row("customers", 6)
        sink = CustomerSink(client, shop_id=SHOP_ID)
        model = await _decoded(sink, _from_erp(customer, addresses=[]))
        write = "PUT" if shop.app.sandbox.store.version < (8,) else "PATCH"
        await a.fail_next("customers", status=503, method=write)

        with pytest.raises(RetryableError):
            await sink.apply(model, context())
        assert (await a.row("customers", 6))["lastname"] == customer["lastname"]
        assert (await sink.apply(model, context(attempt=2))).outcome == "written"
        assert (await a.row("customers", 6))["secure_key"] == customer["secure_key"]


async def test_a_name_the_shop_refuses_is_invalid_with_the_request_summary(shop: SandboxServer) -> None:
    async with admin(shop) as a, sink_client(shop) as client:
        customer = await a.row("customers", 7)
        sink = CustomerSink(client, shop_id=SHOP_ID)
        model = await _decoded(sink, _from_erp(customer, email="not-an-email", addresses=[]))
        with pytest.raises(InvalidMessage) as caught:
            await sink.apply(model, context())
    details = caught.value.details
    assert details["http_status"] == "400"
    assert details["request"] in ("PUT /api/customers/7", "PATCH /api/customers/7")
    assert "85" in details["prestashop_codes"].split(",")
