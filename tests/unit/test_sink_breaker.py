"""The per-target circuit breaker: state machine on a fake clock, metric, and the asyncio admission."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY

from sinks.breaker import Admission, BreakerState, CircuitBreaker


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _gauge(target: str) -> float | None:
    return REGISTRY.get_sample_value("psinfor_circuit_state", {"target": target})


def _breaker(target: str, clock: FakeClock, threshold: int = 3, probe_s: float = 5.0) -> CircuitBreaker:
    return CircuitBreaker(target, failure_threshold=threshold, probe_interval_s=probe_s, clock=clock)


def state_of(breaker: CircuitBreaker) -> BreakerState:
    # Through a function, so the type checker does not pin the state after the first assertion.
    return breaker.state


def _admit(breaker: CircuitBreaker) -> Admission:
    admission = breaker.try_admit()
    assert admission is not None
    return admission


def test_opens_after_the_threshold_of_consecutive_failures() -> None:
    clock = FakeClock()
    breaker = _breaker("t-open", clock)
    for _ in range(2):
        breaker.record_failure(_admit(breaker))
    assert state_of(breaker) is BreakerState.CLOSED
    breaker.record_failure(_admit(breaker))
    assert state_of(breaker) is BreakerState.OPEN
    assert _gauge("t-open") == 2
    assert breaker.try_admit() is None
    assert breaker.seconds_until_probe() == pytest.approx(5.0)


def test_a_success_resets_the_count() -> None:
    clock = FakeClock()
    breaker = _breaker("t-reset", clock)
    breaker.record_failure(_admit(breaker))
    breaker.record_failure(_admit(breaker))
    breaker.record_success(_admit(breaker))
    breaker.record_failure(_admit(breaker))
    breaker.record_failure(_admit(breaker))
    assert state_of(breaker) is BreakerState.CLOSED
    assert breaker.consecutive_failures == 2


def test_one_probe_after_the_interval_and_it_decides() -> None:
    clock = FakeClock()
    breaker = _breaker("t-probe", clock, threshold=1)
    breaker.record_failure(_admit(breaker))
    clock.now += 4.9
    assert breaker.try_admit() is None
    clock.now += 0.1
    probe = _admit(breaker)
    assert probe.probe
    assert state_of(breaker) is BreakerState.HALF_OPEN
    assert _gauge("t-probe") == 1
    assert breaker.try_admit() is None  # only one probe at a time
    breaker.record_failure(probe)
    assert state_of(breaker) is BreakerState.OPEN
    assert breaker.seconds_until_probe() == pytest.approx(5.0)
    clock.now += 5
    probe = _admit(breaker)
    breaker.record_success(probe)
    assert state_of(breaker) is BreakerState.CLOSED
    assert _gauge("t-probe") == 0
    assert not _admit(breaker).probe


def test_late_answers_of_calls_admitted_before_it_opened_are_ignored() -> None:
    clock = FakeClock()
    breaker = _breaker("t-late", clock, threshold=2)
    early = [_admit(breaker) for _ in range(4)]
    breaker.record_failure(early[0])
    breaker.record_failure(early[1])
    assert state_of(breaker) is BreakerState.OPEN
    breaker.record_success(early[2])  # the target answered one in-flight call: the probe still decides
    breaker.record_failure(early[3])
    assert state_of(breaker) is BreakerState.OPEN
    assert breaker.seconds_until_probe() == pytest.approx(5.0)  # not pushed back by the late failure


def test_an_abandoned_probe_hands_its_turn_on_at_once() -> None:
    clock = FakeClock()
    breaker = _breaker("t-release", clock, threshold=1)
    breaker.record_failure(_admit(breaker))
    clock.now += 5
    probe = _admit(breaker)
    breaker.release(probe)
    assert state_of(breaker) is BreakerState.OPEN
    assert _admit(breaker).probe


def test_invalid_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreaker("x", failure_threshold=0, probe_interval_s=1)
    with pytest.raises(ValueError, match="probe_interval_s"):
        CircuitBreaker("x", failure_threshold=1, probe_interval_s=0)


def test_admit_waits_while_open_and_lets_exactly_one_probe_through() -> None:
    async def scenario() -> tuple[list[bool], BreakerState]:
        breaker = CircuitBreaker("t-async", failure_threshold=1, probe_interval_s=0.05)
        breaker.record_failure(_admit(breaker))
        admitted: list[Admission] = []

        async def caller() -> None:
            admitted.append(await breaker.admit())

        callers = [asyncio.create_task(caller()) for _ in range(3)]
        await asyncio.sleep(0.2)
        # After the interval one caller became the probe; the others still wait.
        assert [a.probe for a in admitted] == [True]
        breaker.record_success(admitted[0])
        await asyncio.wait_for(asyncio.gather(*callers), timeout=2)
        return [a.probe for a in admitted], breaker.state

    probes, state = asyncio.run(scenario())
    assert probes == [True, False, False]
    assert state is BreakerState.CLOSED
