"""The ``infor-orders`` sink: the mapping field by field, and apply against the Infor sandbox over HTTP.

What M3 holds is read back through the sandbox's admin API, never through the adapter under test.
The link records go to a recording producer (no broker needed to see them).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.infor.adapter import Address, OrderCharge, SalesOrderLine
from connectors.infor.ionapi import IonApiCredentials
from pipeline.errors import InvalidMessage, RetryableError
from processors.erp_links import ErpLinkIndex, OrderLink
from rules.engine import default_rules_text, parse_rules
from rules.variants import VariantKey, VariantTable
from sandbox.infor.server import InforSandboxServer
from sinks.base import Applied, Skip
from sinks.infor_customers import InforSinkOptions, KeyedLocks
from sinks.infor_orders import OrderWrite, order_customer, to_sales_order_request
from tests.unit.test_sinks_infor_support import (
    OPTIONS,
    RULES,
    admin_client,
    context,
    credentials_of,
    example,
    infor_process,
    money,
    run,
    running_sandbox,
    sandbox_order,
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


# -- the mapping, field by field ------------------------------------------------------------------


def test_the_example_order_maps_field_by_field() -> None:
    request = to_sales_order_request(example("Order", "eur-two-lines-variant"), RULES)

    assert request.external_ref == "XKBKNABJK"
    assert request.customer_id == "PS000318"  # the deterministic number of customer 1:318
    assert request.currency == "EUR"
    assert request.order_date == dt.date(2024, 5, 2)
    assert request.lines == (
        SalesOrderLine(
            1, "TSH-ORG-M-BLU", Decimal(2), Decimal(20), description="Organic T-shirt - Size: M, Colour: Blue"
        ),
        SalesOrderLine(2, "MUG-CER-350", Decimal(1), Decimal("9.9"), description="Ceramic mug 350 ml"),
    )
    assert request.ship_to == Address(
        name="Camille Durand",
        lines=("12 rue des Lilas", "Bâtiment B, 3e étage"),
        city="Lyon",
        postal_code="69003",
        country_code="FR",
        state_code="",
        phone="+33472000000",
    )
    assert request.shipping_amount == Decimal(5)
    assert request.shipping_method == "COL"
    assert request.order_type == "WEB"
    assert request.warehouse == "LYO"
    assert request.charges == ()  # no gift wrapping on this order
    assert request.requested_delivery is None


def test_order_level_discounts_are_shared_over_the_lines_to_the_cent_and_add_up() -> None:
    datum = example("Order", "eur-two-lines-variant")
    datum["totals"]["discounts"] = money("10.00")
    datum["lines"][1]["discount_excl_tax"] = money("0.50")

    lines = to_sales_order_request(datum, RULES).lines

    # 10.00 in proportion to the line totals 40.00 and 9.90: 8.016... and 1.983...; the lost cent goes
    # to the largest remainder. The second line keeps its own 0.50 on top.
    assert [line.discount_amount for line in lines] == [Decimal("8.02"), Decimal("2.48")]
    assert sum(line.discount_amount or 0 for line in lines) == Decimal("10.50")


def test_an_order_discount_with_no_line_value_to_carry_it_is_invalid() -> None:
    datum = example("Order", "eur-two-lines-variant")
    datum["totals"]["discounts"] = money("5.00")
    for line in datum["lines"]:
        line["total_excl_tax"] = money("0")

    with pytest.raises(InvalidMessage) as caught:
        to_sales_order_request(datum, RULES)

    assert (caught.value.reason, caught.value.field_path) == ("discount_without_lines", "totals.discounts")


def test_wrapping_is_a_header_charge_only_when_a_charge_code_is_configured() -> None:
    datum = example("Order", "eur-two-lines-variant")
    datum["totals"]["wrapping"] = money("2.50")

    assert to_sales_order_request(datum, RULES, options=OPTIONS).charges == (
        OrderCharge("WRAP", Decimal("2.5")),
    )
    assert to_sales_order_request(datum, RULES, options=InforSinkOptions()).charges == ()


def test_the_item_number_comes_from_the_product_table_and_region_codes_lose_their_country() -> None:
    datum = example("Order", "usd-multi-currency-anomaly")
    table = VariantTable()
    first = datum["lines"][0]
    table.put(
        VariantKey("2", int(first["product_id"]), int(first["variant_id"] or 0)), first["sku"], "ITEM-0001"
    )

    request = to_sales_order_request(datum, RULES, variants=table)

    assert request.lines[0].sku == "ITEM-0001"
    region = datum["shipping_address"]["region_code"]
    assert request.ship_to is not None
    assert request.ship_to.state_code == (region.split("-", 1)[1] if region else "")
    assert request.currency == "USD"


def test_long_street_lines_are_fitted_into_cua1_to_cua4_without_losing_a_word() -> None:
    datum = example("Order", "eur-two-lines-variant")
    words = "Résidence des Grands Chênes, entrée nord, bâtiment C, escalier 4, porte 12, chez Madame Durand"
    datum["shipping_address"]["lines"] = [words]

    ship_to = to_sales_order_request(datum, RULES).ship_to

    assert ship_to is not None
    assert all(len(line) <= 36 for line in ship_to.lines)
    assert len(ship_to.lines) <= 4
    assert " ".join(ship_to.lines) == words


def test_an_address_that_cannot_fit_is_invalid_with_its_field_path() -> None:
    datum = example("Order", "eur-two-lines-variant")
    datum["shipping_address"]["lines"] = ["word " * 40]

    with pytest.raises(InvalidMessage) as caught:
        to_sales_order_request(datum, RULES)

    assert caught.value.reason == "address_does_not_fit"
    assert caught.value.field_path == "shipping_address.lines"


@pytest.mark.parametrize(
    ("reference", "reason"), [("", "missing_reference"), ("R" * 21, "reference_too_long")]
)
def test_the_reference_must_fit_cuor_because_it_is_how_the_order_is_found(
    reference: str, reason: str
) -> None:
    datum = example("Order", "eur-two-lines-variant")
    datum["reference"] = reference

    with pytest.raises(InvalidMessage) as caught:
        to_sales_order_request(datum, RULES)

    assert (caught.value.reason, caught.value.field_path) == (reason, "reference")


def test_table_only_rules_make_an_unknown_sku_invalid_at_its_line() -> None:
    rules = parse_rules(default_rules_text().replace("source: table_then_sku", "source: table_only"))

    with pytest.raises(InvalidMessage) as caught:
        to_sales_order_request(example("Order", "eur-two-lines-variant"), rules)

    assert (caught.value.reason, caught.value.field_path) == ("unknown_sku", "lines[0].sku")


def test_the_orders_customer_is_the_buyer_with_the_billing_address() -> None:
    datum = example("Order", "eur-two-lines-variant")
    datum["customer"]["email"] = "Camille.Durand@Example.org"
    datum["billing_address"]["lines"] = ["1 place Bellecour"]

    wanted = order_customer(datum, RULES)

    assert wanted.customer_key == "1:318"
    assert wanted.customer.customer_id == "PS000318"
    assert wanted.customer.name == "Camille Durand"
    assert wanted.customer.email == "camille.durand@example.org"
    assert wanted.customer.address is not None
    assert wanted.customer.address.lines == ("1 place Bellecour",)
    assert wanted.field_paths["CUA1"] == "billing_address.lines"


def test_decode_skips_orders_not_from_the_shop_and_notes_a_cancellation(
    credentials: IonApiCredentials,
) -> None:
    async def scenario() -> tuple[Any, Any]:
        async with infor_process(credentials) as process:
            sink = process.orders_sink()
            foreign = example("Order", "eur-two-lines-variant")
            foreign["meta"]["source_system"] = "INFOR"
            cancelled = example("Order", "eur-two-lines-variant")
            cancelled["lifecycle"] = "CANCELLED"
            return sink.decode(foreign, context()), sink.decode(cancelled, context())

    foreign, cancelled = run(scenario())
    assert foreign == Skip("not_ours")
    assert isinstance(cancelled, OrderWrite)
    assert cancelled.cancelled


# -- apply against the sandbox ----------------------------------------------------------------------


def _orders(admin: httpx.Client, reference: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = admin.get("/orders", params={"cuor": reference}).json()
    return found


def test_an_order_is_created_once_with_its_lines_charges_address_and_a_new_customer(
    admin: httpx.Client, credentials: IonApiCredentials
) -> None:
    async def scenario() -> tuple[Applied, Applied, list[Any]]:
        async with infor_process(credentials) as process:
            sink = process.orders_sink()
            datum = sandbox_order()
            datum["totals"]["wrapping"] = money("2.50")
            model = sink.decode(datum, context())
            assert isinstance(model, OrderWrite)
            first = await sink.apply(model, context())
            again = await sink.apply(model, context())  # redelivery
            return first, again, process.producer.links()

    first, again, links = run(scenario())

    orders = _orders(admin, "XKBKNABJK")
    assert len(orders) == 1
    orno = orders[0]["ORNO"]
    assert first == Applied("written", {"erp_order_number": orno, "erp_customer_number": "PS000318"})
    assert again == Applied("unchanged", {"erp_order_number": orno})
    view = admin.get(f"/orders/{orno}").json()
    assert view["head"]["CUNO"] == "PS000318"
    assert view["head"]["ORTP"] == "CO1"
    assert view["head"]["WHLO"] == "001"
    assert view["head"]["MODL"] == "COL"
    assert [(line["ITNO"], line["ORQT"], line["SAPR"]) for line in view["lines"]] == [
        ("SKU-1001", "2", "20.00"),
        ("SKU-2002", "1", "9.90"),
    ]
    assert view["addresses"][0]["CUA1"] == "12 rue des Lilas"
    assert view["addresses"][0]["CUA2"] == "Bâtiment B, 3e étage"
    # Shipping 5.00 and wrapping 2.50 as header charges: BRAM = lines 49.90 + charges 7.50.
    assert view["head"]["BRAM"] == "57.40"
    customer = admin.get("/customers/PS000318").json()
    assert (customer["CUNM"], customer["MAIL"], customer["TOWN"]) == (
        "Camille Durand",
        "camille.durand@example.org",
        "Lyon",
    )
    # Customer link, the order link before the create (no number yet), then the one with M3's number.
    assert links == [
        ("customer:1:318", {"customer_key": "1:318", "cono": "100", "erp_customer_number": "PS000318"}),
        (
            "order:1:1042",
            {"order_key": "1:1042", "cono": "100", "reference": "XKBKNABJK", "erp_order_number": None},
        ),
        (
            "order:1:1042",
            {"order_key": "1:1042", "cono": "100", "reference": "XKBKNABJK", "erp_order_number": orno},
        ),
    ]


def test_after_a_restart_a_redelivered_order_is_found_by_its_reference_and_linked_not_created(
    admin: httpx.Client, credentials: IonApiCredentials
) -> None:
    async def scenario() -> tuple[Applied, Applied, list[Any]]:
        datum = sandbox_order()
        async with infor_process(credentials) as first_process:
            sink = first_process.orders_sink()
            model = sink.decode(datum, context())
            assert isinstance(model, OrderWrite)
            created = await sink.apply(model, context())
        # A new process whose links topic lost the last record (crash between create and link write).
        async with infor_process(credentials) as second_process:
            sink = second_process.orders_sink()
            relinked = await sink.apply(model, context())
            return created, relinked, second_process.producer.links()

    created, relinked, links = run(scenario())

    orders = _orders(admin, "XKBKNABJK")
    assert len(orders) == 1
    assert created.outcome == "written"
    assert relinked == Applied("linked", {"erp_order_number": orders[0]["ORNO"]})
    assert links == [
        (
            "order:1:1042",
            {
                "order_key": "1:1042",
                "cono": "100",
                "reference": "XKBKNABJK",
                "erp_order_number": orders[0]["ORNO"],
            },
        )
    ]


def test_a_confirm_answered_504_after_m3_created_the_order_yields_exactly_one_order(
    admin: httpx.Client, credentials: IonApiCredentials
) -> None:
    admin.put("/gateway", json={"timeout_s": 0.3}).raise_for_status()
    admin.post(
        "/faults",
        json={
            "kind": "timeout",
            "program": "OIS100MI",
            "transaction": "Confirm",
            "execute": True,
            "remaining": 1,
        },
    ).raise_for_status()
    # The adapter's own GetOrderNo right after the 504 fails too: the sink's lookup has to settle it.
    admin.post(
        "/faults",
        json={
            "kind": "error",
            "status": 503,
            "program": "OIS100MI",
            "transaction": "GetOrderNo",
            "remaining": 1,
        },
    ).raise_for_status()

    async def scenario() -> tuple[Applied, list[Any]]:
        async with infor_process(credentials) as process:
            sink = process.orders_sink()
            model = sink.decode(sandbox_order(reference="PS-AMBIG-1"), context())
            assert isinstance(model, OrderWrite)
            return await sink.apply(model, context()), process.producer.links()

    applied, links = run(scenario())

    orders = _orders(admin, "PS-AMBIG-1")
    assert len(orders) == 1
    assert applied.outcome == "written"
    assert links[-1][1]["erp_order_number"] == orders[0]["ORNO"]
    stats = admin.get("/gateway/stats").json()
    assert stats["faults"]["timeout_executed"] == 1
    assert stats["statuses"]["504"] == 1


def test_a_confirm_lost_before_m3_ran_it_is_retried_and_then_creates_exactly_one_order(
    admin: httpx.Client, credentials: IonApiCredentials
) -> None:
    admin.put("/gateway", json={"timeout_s": 0.3}).raise_for_status()
    admin.post(
        "/faults",
        json={
            "kind": "timeout",
            "program": "OIS100MI",
            "transaction": "Confirm",
            "execute": False,
            "remaining": 1,
        },
    ).raise_for_status()
    admin.post(
        "/faults",
        json={
            "kind": "error",
            "status": 503,
            "program": "OIS100MI",
            "transaction": "GetOrderNo",
            "remaining": 1,
        },
    ).raise_for_status()

    async def scenario() -> tuple[BaseException | None, Applied]:
        async with infor_process(credentials) as process:
            sink = process.orders_sink()
            model = sink.decode(sandbox_order(reference="PS-AMBIG-2"), context())
            assert isinstance(model, OrderWrite)
            failure: BaseException | None = None
            try:
                await sink.apply(model, context())
            except RetryableError as exc:
                failure = exc
            return failure, await sink.apply(model, context())  # the runner's retry

    failure, applied = run(scenario())

    assert isinstance(failure, RetryableError)
    assert "outcome unknown" in str(failure)
    orders = _orders(admin, "PS-AMBIG-2")
    assert len(orders) == 1
    assert applied == Applied(
        "written", {"erp_order_number": orders[0]["ORNO"], "erp_customer_number": "PS000318"}
    )
    assert len(admin.get("/batch-orders").json()) == 1  # the retry confirmed the same batch order


def test_an_unknown_item_is_invalid_with_m3s_code_and_field_at_the_lines_sku(
    admin: httpx.Client, credentials: IonApiCredentials
) -> None:
    async def scenario() -> InvalidMessage:
        async with infor_process(credentials) as process:
            sink = process.orders_sink()
            model = sink.decode(sandbox_order(skus=("SKU-1001", "NO-SUCH-ITEM")), context())
            assert isinstance(model, OrderWrite)
            with pytest.raises(InvalidMessage) as caught:
                await sink.apply(model, context())
            return caught.value

    error = run(scenario())

    assert error.reason == "m3_nok"
    assert error.field_path == "lines[1].sku"
    assert error.details["m3_code"] == "WIT0203"
    assert error.details["m3_field"] == "ITNO"
    assert error.details["transaction"] == "OIS100MI.AddBatchLine"
    assert _orders(admin, "XKBKNABJK") == []


def test_a_line_without_an_item_number_is_invalid_for_m3s_missing_mandatory_field(
    admin: httpx.Client, credentials: IonApiCredentials
) -> None:
    async def scenario() -> InvalidMessage:
        async with infor_process(credentials) as process:
            sink = process.orders_sink()
            model = sink.decode(sandbox_order(skus=("SKU-1001", "")), context())
            assert isinstance(model, OrderWrite)
            with pytest.raises(InvalidMessage) as caught:
                await sink.apply(model, context())
            return caught.value

    error = run(scenario())

    assert error.reason == "m3_mandatory_field_missing"
    assert error.field_path == "lines[1].sku"
    assert error.details["m3_type"] == "MandatoryInputFieldNotFound"
    assert error.details["m3_field"] == "ITNO"
    assert error.details["transaction"] == "OIS100MI.AddBatchLine"
    assert _orders(admin, "XKBKNABJK") == []


def test_a_new_customer_without_a_street_line_is_invalid_for_m3s_mandatory_cua1(
    admin: httpx.Client, credentials: IonApiCredentials
) -> None:
    async def scenario() -> InvalidMessage:
        async with infor_process(credentials) as process:
            sink = process.orders_sink()
            datum = sandbox_order()
            datum["billing_address"]["lines"] = []
            model = sink.decode(datum, context())
            assert isinstance(model, OrderWrite)
            with pytest.raises(InvalidMessage) as caught:
                await sink.apply(model, context())
            return caught.value

    error = run(scenario())

    assert error.reason == "m3_mandatory_field_missing"
    assert error.field_path == "billing_address.lines"
    assert (error.details["m3_field"], error.details["transaction"]) == ("CUA1", "CRS610MI.Add")
    assert admin.get("/customers/PS000318").status_code == 404


def test_an_order_cancelled_before_it_reached_m3_is_not_created(
    admin: httpx.Client, credentials: IonApiCredentials
) -> None:
    async def scenario() -> Applied:
        async with infor_process(credentials) as process:
            sink = process.orders_sink()
            datum = sandbox_order()
            datum["lifecycle"] = "CANCELLED"
            model = sink.decode(datum, context())
            assert isinstance(model, OrderWrite)
            return await sink.apply(model, context())

    assert run(scenario()) == Applied("not_created", {"why": "cancelled"})
    assert _orders(admin, "XKBKNABJK") == []


def test_an_order_of_an_existing_customer_uses_it_and_leaves_its_data_alone(
    admin: httpx.Client, credentials: IonApiCredentials
) -> None:
    before = admin.get("/customers/PS000042").json()

    async def scenario() -> Applied:
        async with infor_process(credentials) as process:
            sink = process.orders_sink()
            model = sink.decode(sandbox_order(customer_key="1:42", email="jane.doe@example.com"), context())
            assert isinstance(model, OrderWrite)
            return await sink.apply(model, context())

    applied = run(scenario())

    assert applied.facts is not None
    assert applied.facts["erp_customer_number"] == "PS000042"
    after = admin.get("/customers/PS000042").json()
    assert (after["CUNM"], after["CUA1"], after["TOWN"]) == (before["CUNM"], before["CUA1"], before["TOWN"])


# -- the duplicate customer race ------------------------------------------------------------------


def _slow_customer_creation(admin: httpx.Client) -> None:
    # Every Add waits 0.3 s before M3 runs it: both resolutions have looked the customer up (and found
    # nothing) before the first Add lands, so the race is real, not a lucky interleaving.
    admin.post(
        "/faults", json={"kind": "latency", "program": "CRS610MI", "transaction": "Add", "latency_s": 0.3}
    ).raise_for_status()


def test_two_orders_of_one_new_customer_in_two_processes_at_once_make_one_m3_customer(
    admin: httpx.Client, credentials: IonApiCredentials
) -> None:
    _slow_customer_creation(admin)

    async def scenario() -> list[Applied]:
        async with infor_process(credentials) as one, infor_process(credentials) as two:
            assert one.locks is not two.locks  # nothing shared but M3
            first = one.orders_sink()
            second = two.orders_sink()
            a = first.decode(sandbox_order("1:5001", "REF-A"), context("1:5001"))
            b = second.decode(sandbox_order("1:5002", "REF-B"), context("1:5002"))
            assert isinstance(a, OrderWrite)
            assert isinstance(b, OrderWrite)
            return list(
                await asyncio.gather(first.apply(a, context("1:5001")), second.apply(b, context("1:5002")))
            )

    results = run(scenario())

    assert [result.outcome for result in results] == ["written", "written"]
    customers = admin.get("/customers", params={"mail": "camille.durand@example.org"}).json()
    assert [customer["CUNO"] for customer in customers] == ["PS000318"]
    orders = _orders(admin, "REF-A") + _orders(admin, "REF-B")
    assert [order["CUNO"] for order in orders] == ["PS000318", "PS000318"]
    # Both processes asked M3 to create the customer; M3 took one Add, the other linked the winner's.
    assert admin.get("/gateway/stats").json()["faults"]["latency"] == 2


def test_two_orders_of_one_new_customer_in_one_process_wait_for_each_other(
    admin: httpx.Client, credentials: IonApiCredentials
) -> None:
    _slow_customer_creation(admin)

    async def scenario() -> tuple[list[Applied], int]:
        async with infor_process(credentials) as process:
            sink = process.orders_sink()
            a = sink.decode(sandbox_order("1:5001", "REF-A"), context("1:5001"))
            b = sink.decode(sandbox_order("1:5002", "REF-B"), context("1:5002"))
            assert isinstance(a, OrderWrite)
            assert isinstance(b, OrderWrite)
            results = await asyncio.gather(sink.apply(a, context("1:5001")), sink.apply(b, context("1:5002")))
            return list(results), len(process.locks)

    results, locks_left = run(scenario())

    assert [result.outcome for result in results] == ["written", "written"]
    assert [
        c["CUNO"] for c in admin.get("/customers", params={"mail": "camille.durand@example.org"}).json()
    ] == ["PS000318"]
    # The per-customer lock made the second order wait and find the customer: only one Add was sent.
    assert admin.get("/gateway/stats").json()["faults"]["latency"] == 1
    assert locks_left == 0  # locks are forgotten once nobody holds them


def test_keyed_locks_serialise_one_key_and_let_other_keys_run() -> None:
    locks = KeyedLocks()
    events: list[str] = []

    async def worker(key: str, name: str) -> None:
        async with locks.hold(key):
            events.append(f"{name}+")
            await asyncio.sleep(0.01)
            events.append(f"{name}-")

    async def scenario() -> None:
        await asyncio.gather(worker("a", "1"), worker("a", "2"), worker("b", "3"))

    run(scenario())

    assert events.index("1-") < events.index("2+")  # same key: one after the other
    assert events.index("3+") < events.index("1-")  # another key: not held up
    assert len(locks) == 0


def test_a_link_from_another_company_is_not_taken_for_this_one(
    admin: httpx.Client, credentials: IonApiCredentials
) -> None:
    async def scenario() -> Applied:
        async with infor_process(credentials) as process:
            process.links.link_order(OrderLink("1:1042", "200", "XKBKNABJK", "9999999999"))
            sink = process.orders_sink()
            model = sink.decode(sandbox_order(), context())
            assert isinstance(model, OrderWrite)
            return await sink.apply(model, context())

    applied = run(scenario())

    assert applied.outcome == "written"
    assert len(_orders(admin, "XKBKNABJK")) == 1


def test_links_of_a_previous_process_make_a_later_version_unchanged_without_asking_m3(
    admin: httpx.Client, credentials: IonApiCredentials
) -> None:
    async def scenario() -> tuple[Applied, int]:
        datum = sandbox_order()
        async with infor_process(credentials) as first_process:
            sink = first_process.orders_sink()
            model = sink.decode(datum, context())
            assert isinstance(model, OrderWrite)
            await sink.apply(model, context())
        async with infor_process(credentials) as restarted:
            restarted.links = first_process.producer.replay_into(ErpLinkIndex())
            later = dict(datum, payment_status="PAID")
            model = restarted.orders_sink().decode(later, context())
            assert isinstance(model, OrderWrite)
            applied = await restarted.orders_sink().apply(model, context())
            return applied, len(restarted.transport.calls)

    applied, calls = run(scenario())

    assert applied.outcome == "unchanged"
    assert calls == 0
    assert len(_orders(admin, "XKBKNABJK")) == 1
