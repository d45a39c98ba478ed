"""Status mapping: PrestaShop states by config key/flags (never ids), M3 codes, merging, write-back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.prestashop.models import OrderState
from pipeline.errors import InvalidMessage
from rules.canonical_status import FulfillmentStatus as F
from rules.canonical_status import Lifecycle as L  # noqa: N817
from rules.canonical_status import OrderStatus, StatusUpdate
from rules.canonical_status import PaymentStatus as P
from rules.engine import Rules, default_rules_text, load_rules, parse_rules
from rules.status import MergeOutcome, ShopStates

RULES = load_rules()

# A shop whose standard states carry ids unlike a default install (ids are shop data), plus two custom
# states added by modules: one "shipped" state and one that says nothing.
_STATES = {
    # key: (id, paid, shipped, delivery)
    "PS_OS_CHEQUE": (41, False, False, False),
    "PS_OS_PAYMENT": (42, True, False, False),
    "PS_OS_PREPARATION": (43, True, False, True),
    "PS_OS_SHIPPING": (44, True, True, True),
    "PS_OS_DELIVERED": (45, True, True, True),
    "PS_OS_CANCELED": (46, False, False, False),
    "PS_OS_REFUND": (47, True, False, False),
    "PS_OS_ERROR": (48, False, False, False),
    "PS_OS_OUTOFSTOCK_PAID": (49, True, False, False),
    "PS_OS_BANKWIRE": (50, False, False, False),
    "PS_OS_WS_PAYMENT": (51, True, False, False),
    "PS_OS_OUTOFSTOCK_UNPAID": (52, False, False, False),
    "PS_OS_COD_VALIDATION": (53, False, False, False),
}
CUSTOM_SHIPPED = 90
CUSTOM_SILENT = 91


def _shop(configuration: dict[str, str] | None = None) -> ShopStates:
    states = [
        OrderState(id=id_, paid=paid, shipped=shipped, delivery=delivery, logable=paid)
        for id_, paid, shipped, delivery in _STATES.values()
    ]
    states += [
        OrderState(id=CUSTOM_SHIPPED, paid=True, shipped=True, delivery=True),
        OrderState(id=CUSTOM_SILENT),
    ]
    config = {key: str(values[0]) for key, values in _STATES.items()}
    config["PS_SHOP_NAME"] = "not a state"
    return ShopStates.build(states, configuration if configuration is not None else config)


SHOP = _shop()


@pytest.mark.parametrize(
    ("key", "payment", "fulfillment", "lifecycle"),
    [
        ("PS_OS_CHEQUE", P.PENDING, F.UNFULFILLED, L.OPEN),
        ("PS_OS_BANKWIRE", P.PENDING, F.UNFULFILLED, L.OPEN),
        ("PS_OS_COD_VALIDATION", P.PENDING, F.UNFULFILLED, L.OPEN),
        ("PS_OS_PAYMENT", P.PAID, F.UNFULFILLED, L.OPEN),
        ("PS_OS_WS_PAYMENT", P.PAID, F.UNFULFILLED, L.OPEN),
        ("PS_OS_PREPARATION", P.PAID, F.PICKING, L.OPEN),
        ("PS_OS_SHIPPING", P.PAID, F.SHIPPED, L.OPEN),
        ("PS_OS_DELIVERED", P.PAID, F.DELIVERED, L.CLOSED),
        ("PS_OS_CANCELED", None, None, L.CANCELLED),
        ("PS_OS_REFUND", P.REFUNDED, None, L.CLOSED),
        ("PS_OS_ERROR", P.FAILED, None, L.OPEN),
        ("PS_OS_OUTOFSTOCK_PAID", P.PAID, F.BACKORDERED, L.OPEN),
        ("PS_OS_OUTOFSTOCK_UNPAID", P.PENDING, F.BACKORDERED, L.OPEN),
    ],
)
def test_standard_states_map_by_config_key_as_canonical_md_says(
    key: str, payment: P | None, fulfillment: F | None, lifecycle: L | None
) -> None:
    resolved = RULES.status.from_prestashop(_STATES[key][0], SHOP)
    assert resolved.code == key
    assert resolved.mapped
    assert resolved.update == StatusUpdate(payment=payment, fulfillment=fulfillment, lifecycle=lifecycle)


def test_shipped_and_delivered_share_flags_so_only_the_key_tells_them_apart() -> None:
    # Same flags, different meaning: proof that resolution is by configuration key, not by flags or id.
    assert SHOP.by_id[44].paid == SHOP.by_id[45].paid
    assert SHOP.by_id[44].shipped == SHOP.by_id[45].shipped
    assert RULES.status.from_prestashop(44, SHOP).update.fulfillment is F.SHIPPED
    assert RULES.status.from_prestashop(45, SHOP).update.fulfillment is F.DELIVERED


def test_renumbering_the_shop_moves_the_meaning_with_the_key() -> None:
    config = {key: str(values[0]) for key, values in _STATES.items()}
    config["PS_OS_SHIPPING"], config["PS_OS_DELIVERED"] = "45", "44"
    swapped = _shop(config)
    assert RULES.status.from_prestashop(44, swapped).update.fulfillment is F.DELIVERED


def test_custom_states_map_by_flags_and_unmatched_ones_say_nothing() -> None:
    custom = RULES.status.from_prestashop(CUSTOM_SHIPPED, SHOP)
    assert custom.code == str(CUSTOM_SHIPPED)
    assert custom.update == StatusUpdate(payment=P.PAID, fulfillment=F.SHIPPED)
    silent = RULES.status.from_prestashop(CUSTOM_SILENT, SHOP)
    assert not silent.mapped
    assert silent.update == StatusUpdate()


def test_unmapped_invalid_policy_and_unknown_ids_are_invalid_messages() -> None:
    strict = parse_rules(default_rules_text().replace("unmapped: keep", "unmapped: invalid"))
    with pytest.raises(InvalidMessage) as caught:
        strict.status.from_prestashop(CUSTOM_SILENT, SHOP)
    assert caught.value.reason == "unmapped_status"
    with pytest.raises(InvalidMessage) as unknown:
        RULES.status.from_prestashop(7, SHOP)
    assert unknown.value.reason == "unknown_order_state"


def test_configuration_values_naming_no_state_are_ignored() -> None:
    config = {"PS_OS_SHIPPING": "999", "PS_OS_PAYMENT": "abc", "PS_OS_DELIVERED": "45"}
    shop = _shop(config)
    assert dict(shop.by_key) == {"PS_OS_DELIVERED": 45}
    # 44 is no longer named PS_OS_SHIPPING: its flags (shipped+paid) still say SHIPPED.
    assert RULES.status.from_prestashop(44, shop).code == "44"
    assert RULES.status.from_prestashop(44, shop).update.fulfillment is F.SHIPPED


@pytest.mark.parametrize(
    ("orsl", "orst", "stop", "fulfillment", "lifecycle"),
    [
        ("05", "05", "", F.UNFULFILLED, L.ON_HOLD),
        ("10", "10", "", F.UNFULFILLED, L.ON_HOLD),
        ("20", "20", "", F.UNFULFILLED, L.OPEN),
        ("22", "22", "", F.UNFULFILLED, L.OPEN),
        ("23", "23", "", F.ALLOCATED, L.OPEN),
        ("33", "33", "", F.ALLOCATED, L.OPEN),
        ("24", "24", "", F.PICKING, L.OPEN),
        ("33", "44", "", F.PICKING, L.OPEN),
        ("26", "26", "", F.PARTIALLY_SHIPPED, L.OPEN),
        ("33", "66", "", F.PARTIALLY_SHIPPED, L.OPEN),
        ("46", "46", "", F.PARTIALLY_SHIPPED, L.OPEN),
        ("66", "66", "", F.SHIPPED, L.OPEN),
        ("66", "77", "", F.SHIPPED, L.OPEN),
        ("77", "77", "", F.SHIPPED, L.OPEN),
        ("99", "99", "", None, L.CANCELLED),
        ("23", "33", "1", F.ALLOCATED, L.ON_HOLD),
        ("23", "33", "0", F.ALLOCATED, L.OPEN),
    ],
)
def test_m3_codes_map_as_canonical_md_says(
    orsl: str, orst: str, stop: str, fulfillment: F | None, lifecycle: L
) -> None:
    update = RULES.status.from_m3(orsl, orst, stop).update
    assert (update.fulfillment, update.lifecycle, update.payment) == (fulfillment, lifecycle, None)


def test_m3_malformed_status_is_wrong_type() -> None:
    with pytest.raises(InvalidMessage) as caught:
        RULES.status.from_m3("2", "33")
    assert caught.value.reason == "wrong_type"
    assert caught.value.field_path == "ORSL"


def _status(payment: P, fulfillment: F, lifecycle: L) -> OrderStatus:
    return OrderStatus(payment=payment, fulfillment=fulfillment, lifecycle=lifecycle)


def test_a_late_event_never_moves_an_order_backwards() -> None:
    delivered = _status(P.PAID, F.DELIVERED, L.CLOSED)
    late_shipped = RULES.status.from_prestashop(44, SHOP).update
    result = RULES.status.merge(delivered, late_shipped)
    assert result.status == delivered
    assert result.outcome is MergeOutcome.REFUSED
    assert result.refused == ("fulfillment", "lifecycle")


def test_canceled_keeps_payment_and_fulfilment_and_is_terminal() -> None:
    paid = _status(P.PAID, F.PICKING, L.OPEN)
    cancelled = RULES.status.merge(paid, StatusUpdate(lifecycle=L.CANCELLED)).status
    assert cancelled == _status(P.PAID, F.PICKING, L.CANCELLED)
    reopened = RULES.status.merge(cancelled, StatusUpdate(lifecycle=L.OPEN))
    assert reopened.status.lifecycle is L.CANCELLED


@pytest.mark.parametrize(
    ("dimension", "current", "new", "allowed"),
    [
        ("lifecycle", "OPEN", "ON_HOLD", True),
        ("lifecycle", "ON_HOLD", "OPEN", True),
        ("lifecycle", "ON_HOLD", "CANCELLED", True),
        ("lifecycle", "CLOSED", "CANCELLED", False),
        ("lifecycle", "CLOSED", "OPEN", False),
        ("payment", "PENDING", "FAILED", True),
        ("payment", "PAID", "FAILED", False),
        ("payment", "FAILED", "PAID", True),
        ("payment", "PAID", "REFUNDED", True),
        ("payment", "REFUNDED", "PAID", False),
        ("fulfillment", "DELIVERED", "RETURNED", True),
        ("fulfillment", "PICKING", "RETURNED", False),
        ("fulfillment", "RETURNED", "DELIVERED", False),
        ("fulfillment", "UNKNOWN", "SHIPPED", True),
        ("fulfillment", "SHIPPED", "UNKNOWN", False),
    ],
)
def test_explicit_exceptions_are_the_only_non_forward_moves(
    dimension: str, current: str, new: str, allowed: bool
) -> None:
    assert RULES.status.allows(dimension, current, new) is allowed


_UPDATES = st.builds(
    StatusUpdate,
    payment=st.none() | st.sampled_from([p for p in P if p is not P.UNKNOWN]),
    fulfillment=st.none() | st.sampled_from([f for f in F if f is not F.UNKNOWN]),
    lifecycle=st.none() | st.sampled_from([lc for lc in L if lc is not L.UNKNOWN]),
)


def _rank(rules: Rules, dimension: str, value: str) -> int | None:
    order = getattr(rules.model.status.progressions, dimension).order
    return order.index(value) if value in order else None


@given(st.lists(_UPDATES, max_size=12))
def test_merging_only_moves_forward_or_by_explicit_transition_and_is_idempotent(
    updates: list[StatusUpdate],
) -> None:
    current = OrderStatus()
    for update in updates:
        result = RULES.status.merge(current, update)
        for dimension in ("payment", "fulfillment", "lifecycle"):
            before, after = getattr(current, dimension), getattr(result.status, dimension)
            if before != after:
                assert RULES.status.allows(dimension, before, after)
                old, new = _rank(RULES, dimension, before), _rank(RULES, dimension, after)
                if old is not None and new is not None:
                    assert new > old
        again = RULES.status.merge(result.status, update)
        assert again.status == result.status
        current = result.status


@pytest.mark.parametrize(
    ("desired", "current_key", "expected_key"),
    [
        (_status(P.PAID, F.SHIPPED, L.OPEN), "PS_OS_PAYMENT", "PS_OS_SHIPPING"),
        (_status(P.PAID, F.SHIPPED, L.OPEN), "PS_OS_SHIPPING", None),
        (_status(P.PAID, F.SHIPPED, L.OPEN), "PS_OS_DELIVERED", None),
        (_status(P.PAID, F.DELIVERED, L.CLOSED), "PS_OS_SHIPPING", "PS_OS_DELIVERED"),
        (_status(P.PAID, F.UNFULFILLED, L.OPEN), "PS_OS_BANKWIRE", "PS_OS_PAYMENT"),
        (_status(P.PAID, F.UNFULFILLED, L.OPEN), "PS_OS_PREPARATION", None),
        (_status(P.PENDING, F.UNFULFILLED, L.CANCELLED), "PS_OS_CHEQUE", "PS_OS_CANCELED"),
        (_status(P.PENDING, F.UNFULFILLED, L.CANCELLED), "PS_OS_CANCELED", None),
        (_status(P.REFUNDED, F.DELIVERED, L.CLOSED), "PS_OS_DELIVERED", "PS_OS_REFUND"),
    ],
)
def test_write_back_picks_the_shops_state_and_skips_when_already_there_or_beyond(
    desired: OrderStatus, current_key: str, expected_key: str | None
) -> None:
    target = RULES.status.prestashop_target(desired, _STATES[current_key][0], SHOP)
    expected = None if expected_key is None else _STATES[expected_key][0]
    assert target == expected


def test_write_back_falls_back_to_flags_when_the_shop_lacks_the_key() -> None:
    config = {key: str(values[0]) for key, values in _STATES.items() if key != "PS_OS_SHIPPING"}
    shop = _shop(config)
    target = RULES.status.prestashop_target(_status(P.PAID, F.SHIPPED, L.OPEN), 42, shop)
    # The first non-deleted state with shipped=1 by id: 44 (no longer named, still shipped by its flags).
    assert target == 44
