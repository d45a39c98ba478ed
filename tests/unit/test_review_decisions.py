"""Review decisions: their record format, what a release does to the held keys, and what
``psinfor review`` makes of the review and decision topics (pure parts; the broker is in
tests/integration/test_review_release.py)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from cli.review import PENDING, HeldOrder, fold, held_json, render_table, topic_names
from pipeline.errors import ConfigError
from pipeline.records import SourceRecord
from processors.history import UNKNOWN_VERSION, AnomalyHistory
from processors.review_decisions import REJECTED, RELEASED, RELEASING, Decision, apply_decision, decision_key


def _decision(state: str = RELEASED, version: int = 200, key: str = "1:1043") -> Decision:
    return Decision("Order", key, state, version, "e-200", "alice", "2026-11-27T10:00:00.000Z", "")


# -- the record -------------------------------------------------------------------------------------------


def test_a_decision_round_trips_through_its_record_and_is_keyed_by_record_and_key() -> None:
    decision = Decision("Order", "1:1043", REJECTED, 7, "e-7", "bob", "2026-11-27T10:00:00.000Z", "fraud")
    assert Decision.from_bytes(decision.to_bytes()) == decision
    assert decision.topic_key == decision_key("Order", "1:1043") == b"Order:1:1043"
    assert json.loads(decision.to_bytes())["state"] == "rejected"


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (b"not json", "not a JSON decision"),
        (b"[1]", "a JSON object"),
        (b'{"record": "Order"}', "usable 'key'"),
        (
            b'{"record":"Order","key":"1:1","state":"maybe","version":1,"event_id":"e","by":"a","at":"t"}',
            "decision state 'maybe'",
        ),
        (
            b'{"record":"Order","key":"1:1","state":"released","version":"x","event_id":"e","by":"a","at":"t"}',
            "usable",
        ),
    ],
)
def test_an_unusable_decision_record_is_refused_with_what_is_wrong(value: bytes, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        Decision.from_bytes(value)


def test_a_decision_covers_its_version_and_older_ones_only() -> None:
    decision = _decision(version=200)
    assert decision.covers(199)
    assert decision.covers(200)
    assert not decision.covers(201)


# -- what a release does to the held keys ---------------------------------------------------------------


def test_a_release_of_the_newest_held_version_unholds_the_key() -> None:
    history = AnomalyHistory()
    history.hold("Order", b"1:1043", 100)
    history.hold("Order", b"1:1043", 200)
    assert not apply_decision(history, _decision(version=100))  # a later version was held since
    assert history.held("Order", b"1:1043")
    assert apply_decision(history, _decision(version=200))
    assert not history.held("Order", b"1:1043")
    # Flagged again later: held again, and waits for its own decision.
    history.hold("Order", b"1:1043", 300)
    assert history.held("Order", b"1:1043")


def test_a_held_record_read_after_the_release_that_covers_it_does_not_hold_the_key_again() -> None:
    # A worker reads the review and the decision topics side by side: either may come first.
    history = AnomalyHistory()
    assert not apply_decision(history, _decision(version=200))
    history.hold("Order", b"1:1043", 200)
    history.hold("Order", b"1:1043", 150)
    assert not history.held("Order", b"1:1043")
    history.hold("Order", b"1:1043", 201)  # held after the decision: waits for its own
    assert history.held("Order", b"1:1043")


def test_only_a_release_unholds_and_a_key_never_held_is_left_alone() -> None:
    history = AnomalyHistory()
    history.hold("Order", b"1:1043", 200)
    for state in (RELEASING, REJECTED):
        assert not apply_decision(history, _decision(state=state, version=200))
    assert history.held("Order", b"1:1043")
    assert not apply_decision(history, _decision(key="1:9999"))
    assert not history.held("Order", b"1:9999")


def test_a_hold_seeded_without_a_version_is_covered_by_any_release() -> None:
    history = AnomalyHistory()
    history.hold("Order", b"1:1043")  # a review record written before records carried their version
    assert history.release("Order", b"1:1043", 0)
    assert UNKNOWN_VERSION < 0


# -- psinfor review: folding the topics ------------------------------------------------------------------


def _held_datum(version: int, *, reference: str = "XKBKNABJK") -> dict[str, Any]:
    return {
        "meta": {"version": version, "event_id": f"e-{version}"},
        "reference": reference,
        "totals": {"grand_total": {"amount": Decimal("65.880000"), "currency": "EUR"}},
        "anomalies": [
            {"code": "order_value_outlier", "score": 9.1, "reason": "order value 65.88 EUR vs median"}
        ],
    }


def _review_record(key: str, version: int, offset: int) -> SourceRecord:
    return SourceRecord(
        topic="review.order.v1",
        partition=0,
        offset=offset,
        key=key.encode(),
        value=json.dumps({"version": version}).encode(),
        headers=(("event_id", f"e-{version}".encode()),),
        timestamp_ms=1_800_000_000_000 + offset,
    )


def _decision_record(decision: Decision | None, key: bytes = b"Order:1:1043") -> SourceRecord:
    value = None if decision is None else decision.to_bytes()
    return SourceRecord("state.review-decisions", 0, 0, key, value, (), 1_800_000_000_000)


def _decode(value: bytes) -> dict[str, Any]:
    return _held_datum(int(json.loads(value)["version"]))


def test_held_versions_fold_per_key_with_the_latest_decision_deciding_the_status() -> None:
    review = [
        _review_record("1:1043", 100, 0),
        _review_record("1:1043", 200, 1),
        _review_record("1:7", 50, 2),
    ]

    pending = fold(review, [], _decode)
    assert [held.version for held in pending["1:1043"].versions] == [100, 200]
    assert pending["1:1043"].newest.version == 200
    assert pending["1:1043"].status == pending["1:7"].status == PENDING

    older = fold(review, [_decision_record(_decision(version=100))], _decode)
    assert older["1:1043"].status == PENDING  # version 200 was held after the release of 100

    released = fold(review, [_decision_record(_decision(version=200))], _decode)
    assert released["1:1043"].status == RELEASED
    assert released["1:7"].status == PENDING

    cleared = fold(review, [_decision_record(_decision(version=200)), _decision_record(None)], _decode)
    assert cleared["1:1043"].status == PENDING


def test_the_table_and_the_json_show_what_a_reviewer_decides_on() -> None:
    orders = fold(
        [_review_record("1:1043", 200, 0), _review_record("1:7", 50, 1)],
        [
            _decision_record(
                Decision(
                    "Order", "1:1043", REJECTED, 200, "e-200", "alice", "2026-11-27T10:00:00.000Z", "fraud"
                )
            )
        ],
        _decode,
    )
    table = render_table([orders["1:1043"], orders["1:7"]]).splitlines()
    assert table[0].split() == ["KEY", "REFERENCE", "TOTAL", "VERSIONS", "HELD", "AT", "FLAGS", "DECISION"]
    assert table[1].split()[:4] == ["1:1043", "XKBKNABJK", "65.88", "EUR"]
    assert "order_value_outlier" in table[1]
    assert table[1].endswith("rejected by alice at 2026-11-27T10:00:00.000Z: fraud")
    assert table[2].endswith("pending")

    shown = held_json(orders["1:1043"], whole=True)
    assert shown["status"] == "rejected"
    assert shown["grand_total"] == {"amount": "65.880000", "currency": "EUR"}
    assert shown["newest"]["where"] == "review.order.v1:0:0"
    assert shown["decision"]["reason"] == "fraud"
    assert shown["order"]["reference"] == "XKBKNABJK"
    json.dumps(shown)  # every value printable as JSON (Decimals as text)


def test_an_order_with_no_decision_is_pending() -> None:
    order = HeldOrder("1:1")
    order.versions.extend(fold([_review_record("1:1", 5, 0)], [], _decode)["1:1"].versions)
    assert order.status == PENDING


def test_topic_renames_name_only_the_three_topics_review_uses() -> None:
    assert topic_names(["review.order.v1=t.review"])["review.order.v1"] == "t.review"
    assert topic_names([])["state.review-decisions"] == "state.review-decisions"
    with pytest.raises(ConfigError, match="NAME one of"):
        topic_names(["canonical.customer.v1=x"])
    with pytest.raises(ConfigError, match="is not NAME=ACTUAL"):
        topic_names(["review.order.v1"])
