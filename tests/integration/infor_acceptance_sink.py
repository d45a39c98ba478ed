"""The ``infor-orders`` sink as the acceptance test's worker subprocesses run it, with a journal.

``--sinks tests.integration.infor_acceptance_sink:build_journalled_orders`` runs the production
:class:`~sinks.infor_orders.InforOrdersSink`, built exactly as ``psinfor sink --sinks infor-orders``
builds it (:func:`sinks.infor_orders.build`: the worker's settings, ``PSINFOR_INFOR__*`` and the
sandbox's ``.ionapi``, ``state.erp-links`` on the real broker), behind :class:`JournalledSink`, which
appends one line per outcome to the file named by ``INFOR_ACCEPTANCE_JOURNAL`` so the test can see,
across SIGKILLs, which process applied which order and how often::

    applied <order_key> <outcome> <pid> <partition> <offset>
    retry <order_key> <reason> <pid> <partition> <offset>
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

from pipeline.errors import RetryableError
from schemas.codec import AvroDatum
from sinks import infor_orders
from sinks.base import Applied, SinkContext, SinkResources, Skip
from sinks.infor_orders import InforOrdersSink, OrderWrite
from sinks.runner import retry_reason

JOURNAL_ENV = "INFOR_ACCEPTANCE_JOURNAL"


class JournalledSink:
    """Delegates to an :class:`InforOrdersSink` and journals each apply's outcome and each retry."""

    def __init__(self, inner: InforOrdersSink, journal: Path) -> None:
        self._inner = inner
        self._journal = journal
        self.name = inner.name
        self.target = inner.target
        self.sources = inner.sources
        self.record = inner.record
        self.coalesce_s = inner.coalesce_s

    def decode(self, datum: AvroDatum, context: SinkContext) -> OrderWrite | Skip:
        """The inner sink's model."""
        return self._inner.decode(datum, context)

    async def apply(self, model: OrderWrite, context: SinkContext) -> Applied:
        """The inner sink's apply, journalled: ``applied`` with its outcome, or ``retry`` with why."""
        try:
            applied = await self._inner.apply(model, context)
        except RetryableError as exc:
            self._write("retry", model.order_key, retry_reason(exc), context)
            raise
        self._write("applied", model.order_key, applied.outcome, context)
        return applied

    def _write(self, event: str, order_key: str, what: str, context: SinkContext) -> None:
        record = context.record
        line = f"{event} {order_key} {what} {os.getpid()} {record.partition} {record.offset}\n"
        # One O_APPEND write per line: lines of several processes never interleave, a SIGKILL never
        # leaves half a line.
        fd = os.open(self._journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


@contextlib.asynccontextmanager
async def build_journalled_orders(resources: SinkResources) -> AsyncIterator[JournalledSink]:
    """The factory for worker subprocesses (a :data:`~sinks.base.SinkFactory`)."""
    journal = Path(os.environ[JOURNAL_ENV])
    async with infor_orders.build(resources) as sink:
        yield JournalledSink(sink, journal)
