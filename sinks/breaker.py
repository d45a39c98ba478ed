"""One circuit breaker per target system: stop calling a target that is down, probe it, resume.

States and transitions (``failure_threshold`` = N, ``probe_interval_s`` = P)::

    CLOSED ──N consecutive failures──▶ OPEN ──P seconds later, one caller admitted──▶ HALF_OPEN
      ▲                                  ▲                                              │
      │                                  └──────────── the probe failed (or gave up) ───┤
      └─────────────────────────────────── the probe succeeded ─────────────────────────┘

- CLOSED: every caller is admitted. A success resets the failure count; a failure counts one.
- OPEN: nobody is admitted. The sink runners pause every partition of the target's sinks (lag grows,
  nothing is dead-lettered) and hold their records.
- HALF_OPEN: exactly one admitted caller, the probe, is talking to the target; everyone else waits.

Only the calls' answers from the target count: ``RetryableError`` is a failure; a result or an
``InvalidMessage`` (the target answered, it just refused this payload) is a success. Answers of callers
admitted while CLOSED that arrive after the breaker opened are ignored: the probe alone decides.

:class:`CircuitBreaker` is shared by every runner of one target in a process (all on one event loop).
Its transitions are pure (an injected clock); :meth:`CircuitBreaker.admit` is the asyncio wait on top.
The state is exported as ``psinfor_circuit_state{target}`` (0 closed, 1 half-open, 2 open) and every
transition is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from pipeline.metrics import CIRCUIT_STATE

log = logging.getLogger(__name__)


class BreakerState(enum.IntEnum):
    """The breaker's state; the value is what ``psinfor_circuit_state`` shows."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass(frozen=True, slots=True)
class Admission:
    """Permission to call the target once; hand it back with the call's outcome."""

    probe: bool
    """True for the one call that decides whether an open breaker closes."""
    generation: int
    """The breaker's open/close cycle the admission belongs to (late answers of older ones are ignored)."""


class CircuitBreaker:
    """The breaker of one target; see the module docstring. Not thread-safe: use it from one loop."""

    def __init__(
        self,
        target: str,
        *,
        failure_threshold: int,
        probe_interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if probe_interval_s <= 0:
            raise ValueError("probe_interval_s must be positive")
        self.target = target
        self._threshold = failure_threshold
        self._probe_interval_s = probe_interval_s
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._next_probe_at = 0.0
        # Bumped each time the breaker opens, so answers of calls admitted before are told apart.
        self._generation = 0
        self._changed: asyncio.Event | None = None
        CIRCUIT_STATE.labels(target).set(BreakerState.CLOSED)

    @property
    def state(self) -> BreakerState:
        """The current state."""
        return self._state

    @property
    def consecutive_failures(self) -> int:
        """Failures counted since the last success while closed."""
        return self._failures

    def seconds_until_probe(self) -> float:
        """While OPEN, how long until the next probe may start (0 when due); 0 otherwise."""
        if self._state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._next_probe_at - self._clock())

    def try_admit(self) -> Admission | None:
        """An admission when a call may go now (the probe, if the breaker was due one), else None."""
        if self._state is BreakerState.CLOSED:
            return Admission(probe=False, generation=self._generation)
        if self._state is BreakerState.OPEN and self._clock() >= self._next_probe_at:
            self._set(BreakerState.HALF_OPEN, "probing the target with one held record")
            return Admission(probe=True, generation=self._generation)
        return None

    def record_success(self, admission: Admission) -> None:
        """The admitted call got an answer from the target (a result, or a refusal of the payload)."""
        if admission.probe:
            if self._state is BreakerState.HALF_OPEN and admission.generation == self._generation:
                self._failures = 0
                self._set(BreakerState.CLOSED, "probe succeeded, resuming")
            return
        if self._state is BreakerState.CLOSED and admission.generation == self._generation:
            self._failures = 0

    def record_failure(self, admission: Admission) -> None:
        """The admitted call failed in a way that may heal (``RetryableError``)."""
        if admission.generation != self._generation:
            return
        if admission.probe:
            if self._state is BreakerState.HALF_OPEN:
                self._reopen("probe failed")
            return
        if self._state is not BreakerState.CLOSED:
            return
        self._failures += 1
        if self._failures >= self._threshold:
            self._generation += 1
            self._reopen(f"{self._failures} consecutive retryable failures")

    def release(self, admission: Admission) -> None:
        """The admitted call ended without an answer (cancelled: shutdown, rebalance).

        An abandoned probe hands its turn to the next waiting caller at once.
        """
        if (
            admission.probe
            and self._state is BreakerState.HALF_OPEN
            and admission.generation == self._generation
        ):
            self._state = BreakerState.OPEN
            self._next_probe_at = self._clock()
            CIRCUIT_STATE.labels(self.target).set(BreakerState.OPEN)
            self._notify()

    async def admit(self) -> Admission:
        """Wait until this caller may call the target: at once while CLOSED, else as the next probe
        (or when another caller's probe closed the breaker). Cancellation-safe."""
        while True:
            admission = self.try_admit()
            if admission is not None:
                return admission
            changed = self._event()
            wait = self.seconds_until_probe() if self._state is BreakerState.OPEN else None
            with contextlib.suppress(TimeoutError):  # the probe is due: try again
                await asyncio.wait_for(changed.wait(), timeout=wait)

    # -- internals ---------------------------------------------------------------------------------

    def _reopen(self, why: str) -> None:
        self._next_probe_at = self._clock() + self._probe_interval_s
        self._set(BreakerState.OPEN, why)

    def _set(self, state: BreakerState, why: str) -> None:
        previous, self._state = self._state, state
        CIRCUIT_STATE.labels(self.target).set(state)
        level = logging.WARNING if state is BreakerState.OPEN else logging.INFO
        log.log(
            level,
            "circuit breaker %s",
            state.name.lower(),
            extra={"target": self.target, "from": previous.name.lower(), "why": why},
        )
        self._notify()

    def _event(self) -> asyncio.Event:
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    def _notify(self) -> None:
        # Wake every waiter; each re-checks the state (one of them may become the probe).
        if self._changed is not None:
            self._changed.set()
            self._changed = None


def breakers_for(
    targets: set[str] | frozenset[str], *, failure_threshold: int, probe_interval_s: float
) -> dict[str, CircuitBreaker]:
    """One breaker per target, to share among the runners of a process."""
    return {
        target: CircuitBreaker(target, failure_threshold=failure_threshold, probe_interval_s=probe_interval_s)
        for target in sorted(targets)
    }
