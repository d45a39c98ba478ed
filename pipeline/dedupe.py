"""At most one acknowledged write per delivery id, within one ingest process.

Push senders (PrestaShop webhooks, Infor ION over IMS) deliver at least once: they retry, and sometimes
send the same message twice at once. :meth:`DeliveryDeduper.once` runs the write (produce and wait for
the broker's ack) for the first delivery of an id and answers every other delivery from it:

- a delivery whose id was acknowledged within ``window_s`` (at most ``max_entries`` ids remembered,
  the oldest forgotten first) gets ``duplicate=True`` and nothing is written again;
- a delivery arriving while the first is still being written waits for that outcome: the first's
  success makes it a duplicate, the first's exception is raised to it too (so both get the same 503);
- a failed or cancelled write is forgotten, so the sender's next retry writes afresh.

The memory is per process and lost on restart: a redelivery then writes a second copy, which the
pipeline's deterministic event ids absorb downstream (at-least-once, never lost).

Vendor-free on purpose: every push receiver uses it with its own id (``webhook-id``, BODID). Only for
use from one asyncio event loop (the loop serialises access; there are no locks).
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
    """What :meth:`DeliveryDeduper.once` did: wrote (``result`` is the write's) or found a duplicate."""

    duplicate: bool
    result: T | None


class DeliveryDeduper:
    """Remembers acknowledged delivery ids for a window; see the module docstring."""

    def __init__(
        self, *, window_s: float, max_entries: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if window_s <= 0 or max_entries < 1:
            raise ValueError("window_s must be > 0 and max_entries >= 1")
        self._window_s = window_s
        self._max_entries = max_entries
        self._clock = clock
        self._acked: OrderedDict[str, float] = OrderedDict()
        self._writing: dict[str, asyncio.Future[None]] = {}

    def __len__(self) -> int:
        """How many acknowledged ids are remembered."""
        return len(self._acked)

    def seen(self, key: str) -> bool:
        """True when ``key`` was acknowledged within the window."""
        acked_at = self._acked.get(key)
        return acked_at is not None and self._clock() - acked_at <= self._window_s

    async def once(self, key: str, write: Callable[[], Awaitable[T]]) -> Once[T]:
        """Run ``write`` unless ``key`` was acknowledged or is being written; see the module docstring.

        ``write`` returning means its record was acknowledged; its exception propagates to this caller
        and to every duplicate delivery that waited for it.
        """
        while not self.seen(key):
            first = self._writing.get(key)
            if first is None:
                return await self._write(key, write)
            # asyncio.wait never cancels what it waits on: a duplicate whose sender hung up leaves the
            # first delivery's write alone.
            await asyncio.wait([first])
            if not first.cancelled() and (error := first.exception()) is not None:
                raise error
            # The first write succeeded (remembered now) or was cancelled (forgotten): decide again.
        return Once(True, None)

    async def _write(self, key: str, write: Callable[[], Awaitable[T]]) -> Once[T]:
        outcome: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._writing[key] = outcome
        try:
            result = await write()
        except asyncio.CancelledError:
            outcome.cancel()
            raise
        except BaseException as exc:
            outcome.set_exception(exc)
            # Retrieved here: without a waiting duplicate asyncio would log "exception never retrieved".
            outcome.exception()
            raise
        finally:
            del self._writing[key]
        self._remember(key)
        outcome.set_result(None)
        return Once(False, result)

    def _remember(self, key: str) -> None:
        now = self._clock()
        self._acked[key] = now
        self._acked.move_to_end(key)
        # Kept in acknowledgement order, so whatever is too old or too many sits at the front.
        while self._acked:
            oldest, acked_at = next(iter(self._acked.items()))
            if len(self._acked) <= self._max_entries and now - acked_at <= self._window_s:
                break
            del self._acked[oldest]
