"""Deduplication of webhook deliveries on ``webhook-id``, within one receiver process.

Senders retry (and sometimes send twice at once). :meth:`WebhookDeduper.once` runs the produce step
for the first delivery of an id and answers the rest from it:

- a duplicate of an id whose record the broker already acknowledged returns ``duplicate=True``
  without producing again (for ``window_s`` seconds, at most ``max_entries`` ids, oldest forgotten
  first);
- a duplicate arriving while the first is still in flight waits for the first's outcome: its
  success (→ duplicate) or its exception, re-raised to the waiter so it gets the same answer (503);
- a failed first attempt is forgotten, so the sender's next retry produces afresh.

The memory is per process and lost on restart: a retry then produces a second copy, which the
pipeline's deterministic event ids absorb downstream (at-least-once, never lost).

Only for use from one asyncio event loop (no locks: the loop is the lock).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Once(Generic[T]):
    """The outcome of :meth:`WebhookDeduper.once`: the action's result, or a duplicate (result None)."""

    duplicate: bool
    result: T | None


class WebhookDeduper:
    """Remembers acknowledged webhook ids for a window; see the module docstring."""

    def __init__(
        self, *, window_s: float, max_entries: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._window_s = window_s
        self._max_entries = max_entries
        self._clock = clock
        self._acked: OrderedDict[str, float] = OrderedDict()
        self._in_flight: dict[str, asyncio.Future[None]] = {}

    def __len__(self) -> int:
        """How many acknowledged ids are remembered."""
        return len(self._acked)

    def seen(self, key: str) -> bool:
        """True when ``key`` was acknowledged within the window."""
        acked_at = self._acked.get(key)
        return acked_at is not None and self._clock() - acked_at <= self._window_s

    async def once(self, key: str, action: Callable[[], Awaitable[T]]) -> Once[T]:
        """Run ``action`` unless ``key`` was acknowledged or is in flight; see the module docstring.

        ``action`` succeeding means its record was acknowledged; its exception propagates to this
        caller and to every duplicate that waited on it.
        """
        while True:
            if self.seen(key):
                return Once(True, None)
            pending = self._in_flight.get(key)
            if pending is None:
                break
            # wait() never cancels what it waits for: a waiter whose client went away leaves the
            # first delivery alone.
            await asyncio.wait([pending])
            error = None if pending.cancelled() else pending.exception()
            if error is not None:
                raise error
            # The first succeeded (now remembered) or was cancelled (forgotten): look again.
        settled: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = settled
        try:
            result = await action()
        except asyncio.CancelledError:
            settled.cancel()
            raise
        except BaseException as exc:
            settled.set_exception(exc)
            # Mark retrieved: with no duplicate waiting, asyncio would log "never retrieved" at GC.
            settled.exception()
            raise
        else:
            self._remember(key)
            settled.set_result(None)
            return Once(False, result)
        finally:
            del self._in_flight[key]

    def _remember(self, key: str) -> None:
        now = self._clock()
        self._acked[key] = now
        self._acked.move_to_end(key)
        # Entries are in acknowledgement order, so the expired ones are at the front.
        while self._acked:
            oldest_key, oldest_at = next(iter(self._acked.items()))
            if len(self._acked) > self._max_entries or now - oldest_at > self._window_s:
                del self._acked[oldest_key]
            else:
                break
