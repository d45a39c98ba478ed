"""The live status line of ``psinfor dev up`` and the console it shares with the services' logs.

::

    dev up 2m13s | services 19/19 up | canonical 4.2 ev/s | sink lag 0 | DLQ 0 | restarts 1

- *services*: how many are healthy (tasks: done) of all; those that are not are named with their state;
- *canonical*: records per second written to the ``canonical.*`` topics since the previous sample;
- *sink lag*: messages the sinks' consumer groups have not committed yet, summed;
- *DLQ*: live dead-letter entries (compaction's view: the newest record per DLQ key, tombstones
  removed, so a replayed entry stops counting);
- *restarts*: services restarted by the supervisor since the start.

On a terminal the line is redrawn in place below the scrolling logs (:class:`Console`); otherwise a
plain line is printed every ``interval`` seconds. :func:`format_status_line` is pure; the figures come
from :class:`PipelineSampler`, which reads the cluster with an admin client and one group-less
consumer and never joins a group.
"""

from __future__ import annotations

import re
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from devstack.supervisor import UP_STATES, ServiceStatus

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
CANONICAL_PREFIX = "canonical."
DLQ_PREFIX = "dlq."


@dataclass(frozen=True)
class PipelineFigures:
    """What the cluster says; None where it could not be measured (yet)."""

    canonical_events_per_s: float | None = None
    sink_lag: int | None = None
    dlq_entries: int | None = None


@dataclass(frozen=True)
class StatusSnapshot:
    """Everything one status line shows."""

    elapsed_s: float
    services: Sequence[ServiceStatus]
    figures: PipelineFigures


def format_duration(seconds: float) -> str:
    """``42s``, ``2m13s``, ``1h02m``."""
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def format_status_line(snapshot: StatusSnapshot, *, width: int | None = None) -> str:
    """The one-line status (see the module docstring), cut to ``width`` characters if given."""
    services = snapshot.services
    up = sum(1 for s in services if s.state in UP_STATES)
    restarts = sum(s.restarts for s in services)
    down = [s for s in services if s.state not in UP_STATES]
    services_part = f"services {up}/{len(services)} up"
    if down:
        shown = ", ".join(f"{s.name} {s.state.value}" for s in down[:3])
        more = f" +{len(down) - 3}" if len(down) > 3 else ""
        services_part += f" ({shown}{more})"
    figures = snapshot.figures
    rate = "-" if figures.canonical_events_per_s is None else f"{figures.canonical_events_per_s:.1f}"
    lag = "-" if figures.sink_lag is None else str(figures.sink_lag)
    dlq = "-" if figures.dlq_entries is None else str(figures.dlq_entries)
    parts = [
        f"dev up {format_duration(snapshot.elapsed_s)}",
        services_part,
        f"canonical {rate} ev/s",
        f"sink lag {lag}",
        f"DLQ {dlq}",
        f"restarts {restarts}",
    ]
    line = " | ".join(parts)
    if width is not None and len(line) > width:
        line = line[: max(0, width - 1)] + "…"
    return line


def visible_length(text: str) -> int:
    """Characters a terminal shows for ``text`` (ANSI colour codes do not count)."""
    return len(_ANSI.sub("", text))


class Console:
    """Log lines scroll; on a terminal (``live``) the status line stays below them, redrawn in place.

    Thread-safe: the supervisor's reader threads and the status thread write concurrently.
    """

    def __init__(self, stream: TextIO, *, live: bool, colour: bool) -> None:
        self._stream = stream
        self.live = live
        self.colour = colour
        self._lock = threading.Lock()
        self._status = ""

    def log_line(self, text: str) -> None:
        """Print one log line (colour codes dropped when the console is not coloured)."""
        if not self.colour:
            text = _ANSI.sub("", text)
        with self._lock:
            if self.live and self._status:
                self._stream.write("\r\x1b[2K")
            self._stream.write(text + "\n")
            if self.live and self._status:
                self._stream.write(self._status)
            self._stream.flush()

    def show_status(self, line: str) -> None:
        """Redraw the status line (live) or print it as a plain line."""
        with self._lock:
            if self.live:
                self._status = line
                self._stream.write("\r\x1b[2K" + line)
            else:
                self._stream.write(line + "\n")
            self._stream.flush()

    def clear_status(self) -> None:
        """Remove the live status line (before the final summary)."""
        with self._lock:
            if self.live and self._status:
                self._stream.write("\r\x1b[2K")
                self._stream.flush()
            self._status = ""


class PipelineSampler:
    """Measures canonical events/s, the sinks' lag and the live DLQ entries on one cluster.

    ``canonical_topics`` and ``dlq_topics`` are actual topic names (see :func:`pipeline_topics`).
    Call :meth:`sample` from one thread at a human cadence; :meth:`close` releases the clients.
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        canonical_topics: Sequence[str],
        dlq_topics: Sequence[str],
        sink_groups: Sequence[str],
        timeout_s: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        config: dict[str, str | int | float | bool] = {"bootstrap.servers": bootstrap, "log_level": 0}
        self._admin = AdminClient(config)
        self._canonical = list(canonical_topics)
        self._dlq = list(dlq_topics)
        self._groups = list(sink_groups)
        self._timeout = timeout_s
        self._clock = clock
        self._previous: tuple[float, int] | None = None
        # Neither subscribes nor commits. Two of them: a consumer fetching the DLQ topics would queue
        # each watermark request behind its long-polling fetches (up to fetch.wait.max.ms apiece).
        self._offsets = Consumer({**config, "group.id": "psinfor-dev-status"})
        self._reader = Consumer(
            {
                **config,
                "group.id": "psinfor-dev-status",
                "enable.auto.commit": False,
                "enable.partition.eof": False,
            }
        )
        self._dlq_assigned = False
        self._dlq_live: dict[tuple[str, bytes | None], bool] = {}

    def close(self) -> None:
        """Release the consumers."""
        self._reader.close()
        self._offsets.close()

    def sample(self) -> PipelineFigures:
        """The figures now; a figure that could not be read this time is None."""
        try:
            partitions = self._partitions([*self._canonical, *self._dlq])
        except KafkaException:
            return PipelineFigures()
        rate = self._canonical_rate(partitions)
        lag = self._sink_lag()
        dlq = self._dlq_entries(partitions)
        return PipelineFigures(canonical_events_per_s=rate, sink_lag=lag, dlq_entries=dlq)

    def _partitions(self, topics: Sequence[str]) -> dict[str, list[int]]:
        metadata = self._admin.list_topics(timeout=self._timeout)
        return {
            name: sorted(metadata.topics[name].partitions)
            for name in topics
            if name in metadata.topics and metadata.topics[name].error is None
        }

    def _latest(self, partitions: Sequence[TopicPartition]) -> dict[tuple[str, int], int]:
        # One request per partition: a few dozen on the loopback, at a human cadence.
        return {
            (tp.topic, tp.partition): self._offsets.get_watermark_offsets(
                tp, timeout=self._timeout, cached=False
            )[1]
            for tp in partitions
        }

    def _canonical_rate(self, partitions: dict[str, list[int]]) -> float | None:
        wanted = [TopicPartition(t, p) for t in self._canonical for p in partitions.get(t, [])]
        try:
            total = sum(self._latest(wanted).values())
        except KafkaException:
            return None
        now = self._clock()
        previous, self._previous = self._previous, (now, total)
        if previous is None or now <= previous[0]:
            return None
        return max(0.0, (total - previous[1]) / (now - previous[0]))

    def _sink_lag(self) -> int | None:
        lag = 0
        try:
            for group in self._groups:
                futures = self._admin.list_consumer_group_offsets(
                    [ConsumerGroupTopicPartitions(group)], request_timeout=self._timeout
                )
                group_offsets: dict[tuple[str, int], int] = {}
                for future in futures.values():
                    for tp in future.result().topic_partitions or []:
                        if tp.offset >= 0:
                            group_offsets[(tp.topic, tp.partition)] = tp.offset
                if not group_offsets:
                    continue
                latest = self._latest([TopicPartition(t, p) for t, p in group_offsets])
                lag += sum(max(0, latest[key] - offset) for key, offset in group_offsets.items())
        except KafkaException:
            return None
        return lag

    def _dlq_entries(self, partitions: dict[str, list[int]]) -> int | None:
        if not self._dlq_assigned:
            assignment = [
                TopicPartition(t, p, OFFSET_BEGINNING) for t in self._dlq for p in partitions.get(t, [])
            ]
            if not assignment:
                return None
            self._reader.assign(assignment)
            self._dlq_assigned = True
        deadline = self._clock() + 0.5
        while self._clock() < deadline:
            messages = self._reader.consume(500, timeout=0.1)
            if not messages:
                break
            for message in messages:
                if message.error() is not None:
                    continue
                key = (str(message.topic()), message.key())
                self._dlq_live[key] = message.value() is not None
        return sum(1 for live in self._dlq_live.values() if live)


def pipeline_topics(catalogue_names: Sequence[str], prefix: str = "") -> tuple[list[str], list[str]]:
    """The actual canonical and DLQ topic names of a stack whose topics carry ``prefix``."""
    canonical = [prefix + name for name in catalogue_names if name.startswith(CANONICAL_PREFIX)]
    dlq = [prefix + name for name in catalogue_names if name.startswith(DLQ_PREFIX)]
    return canonical, dlq


class StatusReporter:
    """A thread that shows the status line every ``interval_s`` until :meth:`stop`."""

    def __init__(
        self,
        console: Console,
        services: Callable[[], Sequence[ServiceStatus]],
        sampler: PipelineSampler | None,
        *,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._console = console
        self._services = services
        self._sampler = sampler
        self._interval = interval_s
        self._clock = clock
        self._started = clock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="devstack-status", daemon=True)
        self.last_line = ""

    def start(self) -> StatusReporter:
        """Start showing the line."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread, clear the live line, release the sampler."""
        self._stop.set()
        self._thread.join(10.0)
        self._console.clear_status()
        if self._sampler is not None:
            self._sampler.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            figures = self._sampler.sample() if self._sampler is not None else PipelineFigures()
            snapshot = StatusSnapshot(self._clock() - self._started, self._services(), figures)
            width = shutil.get_terminal_size((120, 20)).columns - 1 if self._console.live else None
            self.last_line = format_status_line(snapshot, width=width)
            if not self._stop.is_set():
                self._console.show_status(self.last_line)
            self._stop.wait(self._interval)
