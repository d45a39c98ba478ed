"""Which webhook notifications a newer read already answered, so the poller does not read twice.

A notification received at time R says "this row changed at or before R". Any read of that row that
*started* after R saw the change, so re-reading it for the notification is wasted work: the shop's
webhooks come several per order (created, each state change, the tracking number) and, under load, the
orders loop often reads an order between its webhook and the notification reader getting to it.
Wasted reads are what made notifications queue behind each other at checkout peaks (seconds of
latency on the real-time path).

The receiver's ``received_at`` and this process's clock are compared, so a margin
(:data:`CLOCK_MARGIN_S`) absorbs clock skew between the two hosts. A skew beyond it can only make a
notification skipped that should have been read; the orders loop and the scans, which are
authoritative, still read the row on their next pass, so nothing is lost, only later.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

CLOCK_MARGIN_S = 1.0
"""A read must start this long after the notification was received to answer it."""

CAPACITY = 100_000
"""Rows remembered (least recently read forgotten first): a few minutes of a busy shop."""


class FreshReads:
    """When each (resource, id) was last read, wall-clock; shared by the poller's loops (thread-safe)."""

    def __init__(
        self,
        *,
        margin_s: float = CLOCK_MARGIN_S,
        capacity: int = CAPACITY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._margin_s = margin_s
        self._capacity = capacity
        self._clock = clock
        self._read_at: OrderedDict[tuple[str, int], float] = OrderedDict()
        self._lock = threading.Lock()

    def now(self) -> float:
        """The clock reads are stamped with (take it BEFORE the read starts)."""
        return self._clock()

    def record(self, resource: str, ids: Iterable[int], started_at: float) -> None:
        """Rows of ``resource`` were read by a read that started at ``started_at`` and were written."""
        with self._lock:
            for id_ in ids:
                key = (resource, id_)
                if self._read_at.get(key, float("-inf")) < started_at:
                    self._read_at[key] = started_at
                    self._read_at.move_to_end(key)
            while len(self._read_at) > self._capacity:
                self._read_at.popitem(last=False)

    def answered(self, resource: str, id_: int, received_at: float) -> bool:
        """True when a read of the row started safely after a notification received at ``received_at``."""
        with self._lock:
            read_at = self._read_at.get((resource, id_))
        return read_at is not None and read_at > received_at + self._margin_s
