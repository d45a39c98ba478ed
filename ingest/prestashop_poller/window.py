"""The arithmetic of incremental polling on ``date_upd``: shop time, windows, dedupe, safe watermark.

Facts this module encodes (reference §1.6, §7 facts 6 and 7):

- ``date_upd`` is shop-local wall time (``PS_TIMEZONE``), naive, with 1-second granularity; "no date" is
  ``0000-00-00 00:00:00``. Every datetime here is such a naive shop-local value, never UTC.
- ``filter[date_upd]=[low,high]`` is SQL ``BETWEEN``: inclusive on both ends.
- A poll reads the window ``[watermark - overlap, now]``. The overlap re-reads the last seconds because
  a row can become visible after a poll that already covered its second: a shop request stamps
  ``date_upd`` before its transaction commits, and the current second is still being written while we
  read it. Versions re-read that way are dropped by their ``(id, date_upd)``.
- The watermark may only move to a position whose record, and every record before it, the broker
  acknowledged (:class:`AckTracker`); otherwise a crash between "read" and "acked" would skip a version.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Generic, TypeVar

SHOP_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
"""How the shop writes timestamps (and how they travel in headers and watermarks)."""

ZERO_DATE = "0000-00-00 00:00:00"

P = TypeVar("P")


def parse_shop_time(text: str) -> datetime | None:
    """A shop timestamp as a naive datetime; None for the zero date or an empty value.

    Raises ValueError for anything else that is not ``YYYY-MM-DD HH:MM:SS``.
    """
    text = text.strip()
    if not text or text.startswith("0000-00-00"):
        return None
    return datetime.strptime(text, SHOP_TIME_FORMAT)


def format_shop_time(moment: datetime) -> str:
    """``YYYY-MM-DD HH:MM:SS`` of a naive shop-local datetime (sub-seconds dropped)."""
    if moment.tzinfo is not None:
        raise ValueError("shop timestamps are naive shop-local values; convert before formatting")
    return moment.strftime(SHOP_TIME_FORMAT)


def shop_now(zone: tzinfo, now: datetime | None = None) -> datetime:
    """The current shop-local wall time, truncated to the second (the shop's granularity).

    ``now`` (aware) is the instant to convert; default: the system clock.
    """
    instant = now if now is not None else datetime.now(zone)
    if instant.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    return instant.astimezone(zone).replace(tzinfo=None, microsecond=0)


@dataclass(frozen=True, slots=True)
class Window:
    """The closed interval ``[low, high]`` of ``date_upd`` values one poll reads (shop-local, naive)."""

    low: datetime
    high: datetime

    @classmethod
    def after(cls, watermark: datetime, *, overlap_s: int, now: datetime) -> Window:
        """The window of the next poll: ``[watermark - overlap_s, now]``.

        ``now`` is shop-local and truncated to the second. If the shop clock is behind the watermark
        (a clock or time-zone change), ``high`` is held at the watermark so the window is never empty
        and never skips backwards.
        """
        if overlap_s < 0:
            raise ValueError("overlap_s must not be negative")
        low = watermark.replace(microsecond=0) - timedelta(seconds=overlap_s)
        high = max(now.replace(microsecond=0), watermark.replace(microsecond=0))
        return cls(low, high)

    def contains(self, moment: datetime) -> bool:
        """True when ``low <= moment <= high`` (both bounds inclusive, like BETWEEN)."""
        return self.low <= moment <= self.high

    def seconds_after(self, moment: datetime) -> Window | None:
        """The part of this window strictly after ``moment``'s second, or None when nothing is left.

        With 1-second granularity "after T" is ``[T + 1 s, high]``: the remaining rows of second T
        itself are read separately (by id), so no row is read twice and none is skipped.
        """
        start = moment.replace(microsecond=0) + timedelta(seconds=1)
        if start > self.high:
            return None
        return Window(start, self.high)


Version = tuple[int, datetime]
"""One version of a row: ``(id, date_upd)``."""


class RecentVersions:
    """The versions already written whose ``date_upd`` lies inside the overlap: the dedupe memory.

    A version is remembered from when it is produced; :meth:`forget_before` drops what no future
    window can return again. Persisted with the watermark, so a restart dedupes the overlap too
    (losing it would only cause duplicates, never a gap).
    """

    def __init__(self, versions: Iterable[Version] = ()) -> None:
        self._versions: set[Version] = set(versions)

    def __contains__(self, version: object) -> bool:
        return version in self._versions

    def __len__(self) -> int:
        return len(self._versions)

    def __iter__(self) -> Iterator[Version]:
        return iter(sorted(self._versions, key=lambda v: (v[1], v[0])))

    def add(self, version: Version) -> None:
        """Remember that this version was written."""
        self._versions.add(version)

    def forget_before(self, horizon: datetime) -> None:
        """Drop every version older than ``horizon`` (the low bound of any future window)."""
        self._versions = {v for v in self._versions if v[1] >= horizon}

    def at_or_after(self, horizon: datetime) -> list[Version]:
        """The remembered versions with ``date_upd >= horizon``, oldest first."""
        return [v for v in self if v[1] >= horizon]


@dataclass(slots=True)
class _Slot(Generic[P]):
    position: P
    acked: bool = False


class AckTracker(Generic[P]):
    """Positions registered in read order; the safe position is the last one of the acknowledged prefix.

    ``register()`` returns a ticket; the producer's delivery callback calls ``ack(ticket)`` or
    ``fail(ticket, error)`` (from its poll thread: every method is thread-safe). :meth:`safe` never
    returns a position while an earlier one is still unacknowledged, so a watermark taken from it
    cannot pass an unacknowledged record. After a failure nothing past the failed ticket ever
    becomes safe; the poll ends and the next one starts again from the last safe position.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: deque[_Slot[P]] = deque()
        self._first_ticket = 0  # ticket number of _slots[0]
        self._safe: P | None = None
        self._failure: BaseException | None = None
        self._failed_ticket: int | None = None

    def register(self, position: P) -> int:
        """Record that the record at ``position`` was handed to the producer; returns its ticket."""
        with self._lock:
            self._slots.append(_Slot(position))
            return self._first_ticket + len(self._slots) - 1

    def ack(self, ticket: int) -> None:
        """The broker acknowledged the record of ``ticket``."""
        with self._lock:
            index = ticket - self._first_ticket
            if index < 0:
                return  # already part of the safe prefix
            self._slots[index].acked = True
            if self._failed_ticket is not None:
                return  # nothing at or after a failure may become safe
            while self._slots and self._slots[0].acked:
                self._safe = self._slots.popleft().position
                self._first_ticket += 1

    def fail(self, ticket: int, error: BaseException) -> None:
        """The record of ``ticket`` was not delivered; the safe position stops before it for good."""
        with self._lock:
            if self._failed_ticket is None or ticket < self._failed_ticket:
                self._failed_ticket = ticket
                self._failure = error

    def safe(self) -> P | None:
        """The last position of the acknowledged prefix (None before the first ack)."""
        with self._lock:
            return self._safe

    @property
    def failure(self) -> BaseException | None:
        """The first delivery error, if any record failed."""
        with self._lock:
            return self._failure

    @property
    def pending(self) -> int:
        """How many registered records are not yet part of the acknowledged prefix."""
        with self._lock:
            return len(self._slots)
