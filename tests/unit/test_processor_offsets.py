"""processors.offsets: each source offset handled once and in order, commits only what is durable."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace
from typing import Any

from faust.types import TP
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.offsets import RESEEK_AFTER_S, Admission, DurableCommitConsumer, SourceOffsets

PARTITION = TP("raw.infor.inventory", 1)
FLOW = "infor_inventory"


def started(start: int = 0, generation: int = 1) -> SourceOffsets:
    offsets = SourceOffsets(clock=lambda: 0.0)
    offsets.subscribe(FLOW, [PARTITION.topic])
    offsets.begin(FLOW, PARTITION, generation, start)
    return offsets


def test_the_next_offset_is_handled_and_becomes_committable_once_durable() -> None:
    offsets = started()
    assert [offsets.admit(FLOW, PARTITION, 1, 1, offset) for offset in range(3)] == [Admission.HANDLE] * 3
    assert offsets.committable(PARTITION, None) is None  # handled, not yet durable
    offsets.record_durable(FLOW, PARTITION, 3)
    assert offsets.committable(PARTITION, None) == 3
    assert offsets.committable(PARTITION, 3) is None  # nothing new since the commit


def test_an_event_that_never_arrived_stops_the_partition_and_asks_for_a_seek_back() -> None:
    """The lost event of the SIGKILL test: 0-132 handled, 133 received, 134 never, 135 received."""
    offsets = started()
    for offset in range(134):
        assert offsets.admit(FLOW, PARTITION, 1, 1, offset) is Admission.HANDLE
    assert offsets.admit(FLOW, PARTITION, 1, 1, 135) is Admission.GAP
    assert offsets.admit(FLOW, PARTITION, 1, 1, 136) is Admission.GAP  # later ones wait as well
    assert offsets.seek_needed(FLOW, PARTITION) == 134
    assert offsets.seek_needed(FLOW, PARTITION) is None  # the seek is on its way; not again at once
    # The refetch repeats what came after the gap once more, in order.
    assert offsets.admit(FLOW, PARTITION, 1, 1, 134) is Admission.HANDLE
    assert offsets.admit(FLOW, PARTITION, 1, 1, 135) is Admission.HANDLE
    offsets.record_durable(FLOW, PARTITION, 136)
    assert offsets.committable(PARTITION, 100) == 136


def test_a_seek_whose_refetch_got_lost_is_asked_again_after_a_while() -> None:
    now = [0.0]
    offsets = SourceOffsets(clock=lambda: now[0])
    offsets.subscribe(FLOW, [PARTITION.topic])
    offsets.begin(FLOW, PARTITION, 1, 0)
    assert offsets.admit(FLOW, PARTITION, 1, 1, 1) is Admission.GAP
    assert offsets.seek_needed(FLOW, PARTITION) == 0
    now[0] = RESEEK_AFTER_S - 0.1
    assert offsets.seek_needed(FLOW, PARTITION) is None
    now[0] = RESEEK_AFTER_S + 0.1
    assert offsets.seek_needed(FLOW, PARTITION) == 0


def test_redeliveries_and_events_of_an_older_generation_are_dropped() -> None:
    offsets = started(start=10, generation=2)
    assert offsets.admit(FLOW, PARTITION, 2, 2, 9) is Admission.REDELIVERED
    assert offsets.admit(FLOW, PARTITION, 1, 2, 10) is Admission.OLD_GENERATION
    assert offsets.admit(FLOW, PARTITION, 2, 2, 10) is Admission.HANDLE


def test_a_new_generation_starts_from_its_committed_offset() -> None:
    offsets = started()
    for offset in range(5):
        offsets.admit(FLOW, PARTITION, 1, 1, offset)
    offsets.record_durable(FLOW, PARTITION, 5)
    assert offsets.knows(FLOW, PARTITION, 1)
    assert not offsets.knows(FLOW, PARTITION, 2)
    offsets.begin(FLOW, PARTITION, 2, 3)  # only 3 was committed before the rebalance
    assert offsets.admit(FLOW, PARTITION, 2, 2, 3) is Admission.HANDLE
    assert offsets.committable(PARTITION, 3) is None
    # A batch of generation 1 that finished after the rebalance is durable all the same.
    offsets.record_durable(FLOW, PARTITION, 5)
    assert offsets.committable(PARTITION, 3) == 5


def test_the_consumer_commits_what_is_durable_not_what_faust_acked() -> None:
    offsets = started()
    offsets.admit(FLOW, PARTITION, 1, 1, 0)
    offsets.record_durable(FLOW, PARTITION, 1)
    fake: Any = SimpleNamespace(
        offsets=offsets,
        # faust believes 0-9 were acked (its skip-and-ack after a rebalance); only 0 is durable.
        _acked=defaultdict(list, {PARTITION: list(range(10))}),
        _acked_index=defaultdict(set, {PARTITION: set(range(10))}),
        _committed_offset=defaultdict(lambda: None),
    )
    assert DurableCommitConsumer._new_offset(fake, PARTITION) == 1
    assert fake._acked[PARTITION] == []
    assert fake._acked_index[PARTITION] == set()
    assert list(DurableCommitConsumer._filter_tps_with_pending_acks(fake)) == [PARTITION]
    assert list(DurableCommitConsumer._filter_tps_with_pending_acks(fake, {"elsewhere"})) == []


@st.composite
def deliveries(draw: st.DrawFn) -> list[int]:
    """What a faulty stream hands over for offsets 0..n-1: in order, with some events dropped and
    some runs repeated (a fetch after a seek)."""
    size = draw(st.integers(1, 60))
    received: list[int] = []
    for offset in range(size):
        if draw(st.integers(0, 9)) == 0:
            continue  # lost
        received.append(offset)
        if draw(st.integers(0, 14)) == 0:
            back = draw(st.integers(0, offset))
            received.extend(range(back, offset + 1))  # repeated
    return received


@settings(max_examples=300, deadline=None)
@given(deliveries())
def test_handled_offsets_are_always_a_gapless_prefix_in_order(received: list[int]) -> None:
    """Whatever the stream loses or repeats, the runner handles 0, 1, 2, ... each once, in order, and
    never commits past an offset it did not handle; the seeks it asks for are where it stopped."""
    offsets = started()
    handled: list[int] = []
    for offset in received:
        if offsets.admit(FLOW, PARTITION, 1, 1, offset) is Admission.HANDLE:
            handled.append(offset)
            offsets.record_durable(FLOW, PARTITION, offset + 1)
    assert handled == list(range(len(handled)))
    committable = offsets.committable(PARTITION, None)
    assert committable is None or committable == len(handled)
    if received and max(received) >= len(handled):
        assert offsets.seek_needed(FLOW, PARTITION) == len(handled)


def test_an_open_gap_is_sought_again_on_the_timer_even_when_nothing_more_arrives() -> None:
    now = [0.0]
    offsets = SourceOffsets(clock=lambda: now[0])
    offsets.subscribe(FLOW, [PARTITION.topic])
    offsets.begin(FLOW, PARTITION, 1, 0)
    assert offsets.admit(FLOW, PARTITION, 1, 1, 5) is Admission.GAP
    assert offsets.overdue_seeks() == []  # no seek asked for yet
    assert offsets.seek_needed(FLOW, PARTITION) == 0
    assert offsets.overdue_seeks() == []  # too early
    now[0] = RESEEK_AFTER_S
    assert offsets.overdue_seeks() == [(PARTITION, 0)]
    assert offsets.overdue_seeks() == []  # asked again just now
    assert offsets.admit(FLOW, PARTITION, 1, 1, 0) is Admission.HANDLE
    now[0] = 10 * RESEEK_AFTER_S
    assert offsets.overdue_seeks() == []  # the gap closed


def test_flows_reading_one_topic_keep_their_own_positions_and_the_slowest_decides_the_commit() -> None:
    """faust hands every event of a topic to every agent reading it (orders and payments both read
    raw.prestashop.orders): neither may drop the other's events, and a commit waits for both."""
    offsets = SourceOffsets(clock=lambda: 0.0)
    offsets.subscribe("orders", [PARTITION.topic])
    offsets.subscribe("payments", [PARTITION.topic])
    offsets.begin("orders", PARTITION, 1, 0)
    for offset in range(4):
        assert offsets.admit("orders", PARTITION, 1, 1, offset) is Admission.HANDLE
    offsets.record_durable("orders", PARTITION, 4)
    assert offsets.committable(PARTITION, None) is None  # payments has not started on it
    offsets.begin("payments", PARTITION, 1, 0)
    assert offsets.admit("payments", PARTITION, 1, 1, 0) is Admission.HANDLE  # not a redelivery
    offsets.record_durable("payments", PARTITION, 1)
    assert offsets.committable(PARTITION, None) == 1
    assert offsets.committable(TP("another.topic", 1), None) is None  # nobody reads it
