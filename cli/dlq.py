"""``psinfor dlq list|show|replay|purge``: look at dead-lettered records, put them back, or remove them.

Every action starts by reading the chosen DLQ topics from their beginning to the end they had at that
moment (a snapshot: records written meanwhile are not waited for, and a topic that cannot be read to
its end within ``--timeout`` is an error, never a hang). The snapshot is folded as compaction will fold
it (:class:`pipeline.dlq_admin.LiveEntries`): the newest record per DLQ key, nothing after a tombstone.

Replay is idempotent by construction: each selected entry's original record goes back to its source
topic and partition; only once the broker acknowledged that write does the entry get its tombstone in
the DLQ, so a second replay no longer finds it. A failed replay write leaves the entry in the DLQ. The
one gap is a crash (or a refused tombstone) between the two acknowledgements: the entry is then replayed
again by the next run, once more, and the stage's own idempotence (deterministic event ids, lookups
before creates) absorbs the duplicate; the ``dlq.replayed_from`` audit header identifies it.

Writes use explicit partitions, so a plain confluent-kafka ``Producer`` configured by
:func:`pipeline.producer.producer_config` (idempotent, ``acks=all``) is used here:
``PipelineProducer`` lets the partitioner choose, and the raw topics (librdkafka's partitioner) and the
canonical ones (murmur2) were not partitioned by the same one.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition

from cli.write_guards import (
    add_write_guards,
    confirmed,
    positive_float,
    require_confirmation_possible,
)
from cli.write_guards import operator as operator_name
from pipeline.dlq_admin import (
    Coordinates,
    DlqEntry,
    DlqFilter,
    LiveEntries,
    OutgoingRecord,
    UnusableEntry,
    parse_coordinates,
    parse_time,
    preview_value,
    printable,
    replay_record,
    tombstone_for,
)
from pipeline.errors import ConfigError, RetryableError
from pipeline.kafka_config import librdkafka_config
from pipeline.producer import producer_config
from pipeline.records import SourceRecord
from pipeline.settings import KafkaSettings, env_name, load_settings
from schemas.catalogue import load_catalogue

DLQ_PREFIX = "dlq."
CLIENT_SUFFIX = "dlq-admin"
MESSAGE_WIDTH = 60
PROGRESS_EVERY_S = 1.0

DLQ_HELP = f"""\
Look at dead-lettered records and deal with them. Each DLQ record holds the ORIGINAL value bytes, the
original key (header dlq.original_key) and headers telling the story: dlq.stage, dlq.reason,
dlq.error.*, dlq.source.topic/partition/offset, dlq.failed_at, dlq.field_path, dlq.detail.*.

Entries are named by their DLQ coordinates TOPIC:PARTITION:OFFSET, as `list` prints them. The DLQ
topics are compacted: `replay` and `purge` remove an entry with a tombstone for its key.

Reaches the cluster through {env_name("kafka", "bootstrap_servers")} (and the other PSINFOR_KAFKA__*
settings). Exit codes: 0 done, 1 nothing matched or something failed (said on stderr), 2 configuration
or usage error.
"""

TOPIC_HELP = (
    "DLQ topic to read, by catalogue name (default: every dlq.* topic of the catalogue); NAME=ACTUAL reads "
    "catalogue topic NAME under the name ACTUAL (test or side-by-side copies). Repeatable"
)

REPLAY_HELP = """\
Put each selected entry's original record back where it failed, so the stage processes it again (after
the rule or data was fixed): its source topic and partition (dlq.source.topic/partition), its original
key and value bytes, its original headers (minus the dlq.* story), plus the audit headers
dlq.replayed_from (the DLQ coordinates), dlq.replayed_at and dlq.replayed_by.

Idempotent: once the broker acknowledged a replayed record, its entry is tombstoned in the DLQ, so a
second replay finds nothing; a record whose write failed stays in the DLQ. Entries are replayed in DLQ
order. Progress (count/total, rate) goes to stderr, one line per replayed entry to stdout.
"""

PURGE_HELP = """\
Remove the selected entries from the DLQ for good: a tombstone per entry (same key, null value), which
compaction applies. Needs at least one filter (--id, --stage, --reason, --key, --source-topic, --since,
--until), or --all to purge everything in the chosen topics.
"""

TIME_HELP = "ISO-8601 (naive = UTC) or a duration before now: 30m, 2h, 7d, 1d12h"


class _OncePerMessage(logging.Filter):
    """Lets each distinct librdkafka complaint through once: an unreachable broker is otherwise reported
    every few milliseconds until the command gives up (and says so itself)."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        shape = re.sub(r"\d+", "#", record.getMessage())
        if shape in self._seen:
            return False
        self._seen.add(shape)
        return True


def _librdkafka_logger() -> logging.Logger:
    logger = logging.getLogger("cli.dlq.librdkafka")
    if not logger.filters:
        logger.addFilter(_OncePerMessage())
    return logger


# -- the command tree --------------------------------------------------------------------------------


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``dlq list|show|replay|purge``."""
    parser = subcommands.add_parser(
        "dlq",
        help="dead-letter topics: list, show, replay or purge entries",
        description=DLQ_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=lambda _args: _usage(parser))
    actions = parser.add_subparsers(title="actions", metavar="ACTION")

    listing = actions.add_parser(
        "list",
        help="one line per entry: where, stage, reason, source, key, when, field, message",
        description="List the live entries of the DLQ topics that match the filters, in DLQ order.",
    )
    _add_reading(listing)
    _add_filters(listing)
    listing.add_argument(
        "--format", choices=("table", "json"), default="table", help="table (default) or a JSON array"
    )
    listing.set_defaults(handler=_list)

    show = actions.add_parser(
        "show",
        help="every header and the original value of one entry",
        description=(
            "Print every header of one DLQ record and its original value: pretty JSON when it is JSON, "
            "the text when it is text (XML), else a hex preview (Avro values show their schema id)."
        ),
    )
    show.add_argument("id", metavar="ID", help="the entry's TOPIC:PARTITION:OFFSET, as `list` prints it")
    show.add_argument("--raw", action="store_true", help="write only the original value bytes to stdout")
    _add_timeout(show)
    show.set_defaults(handler=_show)

    replay = actions.add_parser(
        "replay",
        help="re-produce entries to their source topic (with an audit header), then tombstone them",
        description=REPLAY_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_reading(replay)
    _add_filters(replay)
    add_write_guards(replay, verb="replay")
    replay.add_argument(
        "--by",
        metavar="NAME",
        help="operator recorded in dlq.replayed_by (default: $USER; a name, no host)",
    )
    replay.set_defaults(handler=_replay)

    purge = actions.add_parser(
        "purge",
        help="tombstone entries (refuses without a filter unless --all)",
        description=PURGE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_reading(purge)
    _add_filters(purge)
    add_write_guards(purge, verb="purge")
    purge.add_argument("--all", action="store_true", help="purge every entry of the chosen topics")
    purge.set_defaults(handler=_purge)


def _add_timeout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=30.0,
        metavar="SECONDS",
        help="give up reading (or reaching) the cluster after this long (default: 30)",
    )


def _add_reading(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--topic", action="append", default=[], metavar="NAME[=ACTUAL]", help=TOPIC_HELP)
    _add_timeout(parser)


def _add_filters(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("filters (all must hold; a repeated option means any of its values)")
    group.add_argument(
        "--id", action="append", default=[], metavar="ID", help="entry TOPIC:PARTITION:OFFSET as listed"
    )
    group.add_argument(
        "--stage", action="append", default=[], help="dlq.stage, e.g. processors, infor-orders"
    )
    group.add_argument("--reason", action="append", default=[], help="dlq.reason, e.g. unknown_sku")
    group.add_argument("--key", action="append", default=[], help="the original record key, exactly")
    group.add_argument(
        "--source-topic", action="append", default=[], metavar="TOPIC", help="dlq.source.topic"
    )
    group.add_argument("--since", metavar="T", help=f"failed at or after T ({TIME_HELP})")
    group.add_argument("--until", metavar="T", help=f"failed before T ({TIME_HELP})")
    group.add_argument("--limit", type=_positive_int, metavar="N", help="at most the first N matches")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 0


# -- arguments to the pure parts ------------------------------------------------------------------------


def build_filter(args: argparse.Namespace, *, now: datetime) -> DlqFilter:
    """The :class:`DlqFilter` the filter options describe; ConfigError naming the bad option."""
    try:
        ids = frozenset(parse_coordinates(text) for text in args.id)
    except ValueError as exc:
        raise ConfigError(f"--id: {exc}") from None
    bounds: dict[str, datetime | None] = {}
    for option in ("since", "until"):
        text = getattr(args, option)
        try:
            bounds[option] = parse_time(text, now=now) if text is not None else None
        except ValueError as exc:
            raise ConfigError(f"--{option}: {exc}") from None
    try:
        return DlqFilter(
            ids=ids,
            stages=frozenset(args.stage),
            reasons=frozenset(args.reason),
            keys=frozenset(key.encode("utf-8") for key in args.key),
            source_topics=frozenset(args.source_topic),
            since=bounds["since"],
            until=bounds["until"],
        )
    except ValueError as exc:
        raise ConfigError(f"--since/--until: {exc}") from None


def dlq_topic_names(
    selections: Sequence[str], ids: Sequence[Coordinates], catalogue_names: Sequence[str]
) -> list[str]:
    """The actual topics to read: the ``--topic`` selections (renames applied) plus the ``--id`` topics;
    every catalogue DLQ topic when neither is given. ConfigError for a name the catalogue lacks."""
    chosen: list[str] = []
    for item in selections:
        name, sep, actual = item.partition("=")
        if sep and not (name and actual):
            raise ConfigError(f"--topic {item!r} is not NAME or NAME=ACTUAL")
        if name not in catalogue_names:
            raise ConfigError(
                f"--topic {name!r} is not a DLQ topic of the catalogue ({', '.join(catalogue_names)}); "
                "write NAME=ACTUAL to read one of them under another name"
            )
        chosen.append(actual if sep else name)
    chosen += [coordinates.topic for coordinates in ids]
    if not selections and not ids:
        chosen = list(catalogue_names)
    return list(dict.fromkeys(chosen))


def _catalogue_dlq_names() -> list[str]:
    return [topic.name for topic in load_catalogue().topics if topic.name.startswith(DLQ_PREFIX)]


# -- reading the DLQ --------------------------------------------------------------------------------


@dataclass
class Snapshot:
    """The chosen DLQ topics as read from their beginning to their end at the start."""

    records: list[SourceRecord]
    """Every record read, tombstones included, in offset order per partition."""
    missing: list[str]
    """Chosen topics the cluster does not have."""

    def live(self) -> list[DlqEntry]:
        """The entries compaction keeps, in DLQ order."""
        live = LiveEntries()
        for record in self.records:
            live.add(record)
        return live.entries()


class KafkaReader:
    """Reads whole topics to the end they had when asked, and topic metadata; never joins a group."""

    def __init__(self, kafka: KafkaSettings, *, timeout_s: float) -> None:
        config = librdkafka_config(kafka, client_id_suffix=CLIENT_SUFFIX)
        config.update(
            {
                # Required by librdkafka; the consumer only assigns, never subscribes or commits.
                "group.id": f"psinfor-{CLIENT_SUFFIX}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": True,
                "isolation.level": "read_committed",
            }
        )
        self._bootstrap = kafka.bootstrap_servers
        self._timeout_s = timeout_s
        self._consumer = Consumer({**config, "logger": _librdkafka_logger()})

    def close(self) -> None:
        """Release the consumer."""
        self._consumer.close()

    def partition_counts(self, topics: Sequence[str] | None = None) -> dict[str, int]:
        """Partitions per existing topic (all topics when ``topics`` is None); RetryableError if the
        cluster does not answer within the timeout."""
        try:
            metadata: Any = self._consumer.list_topics(timeout=self._timeout_s)
        except KafkaException as exc:
            raise RetryableError(
                f"cannot reach Kafka at {self._bootstrap} within {self._timeout_s:g}s ({exc}); check "
                f"{env_name('kafka', 'bootstrap_servers')} and that the brokers run"
            ) from exc
        counts = {
            name: len(described.partitions)
            for name, described in metadata.topics.items()
            if described.error is None and described.partitions
        }
        if topics is None:
            return counts
        return {name: counts[name] for name in topics if name in counts}

    def snapshot(self, topics: Sequence[str]) -> Snapshot:
        """Every record of ``topics`` up to each partition's end as of now.

        RetryableError when a partition was not read to that end within the timeout (the records
        between its low and high watermark must all be seen for the snapshot to be right).
        """
        counts = self.partition_counts(topics)
        missing = [topic for topic in topics if topic not in counts]
        deadline = time.monotonic() + self._timeout_s
        ends: dict[tuple[str, int], int] = {}
        for topic, count in counts.items():
            for partition in range(count):
                low, high = self._consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=self._remaining(deadline), cached=False
                )
                if high > low:
                    ends[(topic, partition)] = high
        records: list[SourceRecord] = []
        if not ends:
            return Snapshot(records, missing)
        self._consumer.assign([TopicPartition(topic, part, OFFSET_BEGINNING) for topic, part in ends])
        try:
            while ends:
                if time.monotonic() > deadline:
                    unread = ", ".join(f"{topic}[{part}]" for topic, part in sorted(ends))
                    raise RetryableError(
                        f"{unread} not read to the end within {self._timeout_s:g}s; try a longer --timeout"
                    )
                message = self._consumer.poll(0.2)
                if message is None:
                    continue
                error = message.error()
                if error is not None:
                    where = (str(message.topic()), int(message.partition() or 0))
                    if error.code() == KafkaError._PARTITION_EOF:
                        # The end as of now; a transaction left open upstream never makes us wait for it.
                        ends.pop(where, None)
                        continue
                    raise RetryableError(f"reading {where[0]}[{where[1]}]: {error.str()}")
                record = SourceRecord.from_message(message)
                where = (record.topic, record.partition)
                end = ends.get(where)
                if end is None or record.offset >= end:
                    ends.pop(where, None)  # written after the snapshot started
                    continue
                records.append(record)
                if record.offset + 1 >= end:
                    del ends[where]
        finally:
            self._consumer.unassign()
        return Snapshot(records, missing)

    def _remaining(self, deadline: float) -> float:
        return max(1.0, deadline - time.monotonic())


# -- writing: replay records and tombstones ----------------------------------------------------------------


@dataclass
class ChainOutcome:
    """What became of one chain of writes (each written only after the one before it was acknowledged)."""

    acked: list[Coordinates] = field(default_factory=list)
    """Where each acknowledged write landed, in chain order."""
    error: str | None = None
    """Why the first unacknowledged write failed; the rest of the chain was not written."""


class Progress:
    """``count/total, rate`` lines on a stream, at most one per ``every_s`` seconds, and a final line."""

    def __init__(
        self,
        verb: str,
        total: int,
        stream: TextIO,
        *,
        every_s: float = PROGRESS_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._verb = verb
        self._total = total
        self._stream = stream
        self._every_s = every_s
        self._clock = clock
        self._started = self._last = clock()

    def update(self, done: int) -> None:
        """Report ``done`` finished items if the last line is older than ``every_s``."""
        now = self._clock()
        if now - self._last >= self._every_s:
            self._last = now
            print(self.line(done, now), file=self._stream, flush=True)

    def line(self, done: int, now: float | None = None) -> str:
        """The progress text for ``done`` finished items."""
        elapsed = (self._clock() if now is None else now) - self._started
        rate = done / elapsed if elapsed > 0 else 0.0
        return f"{self._verb}: {done}/{self._total} ({rate:.1f}/s, {elapsed:.1f} s)"


class KafkaWriter:
    """Writes chains of records to exact partitions with the pipeline's idempotent ``acks=all`` config."""

    def __init__(self, kafka: KafkaSettings) -> None:
        config = producer_config(kafka, client_id_suffix=CLIENT_SUFFIX)
        self._producer = Producer({**config, "logger": _librdkafka_logger()})

    def close(self, timeout_s: float = 10.0) -> None:
        """Deliver anything still queued (nothing is, after :meth:`write_chains`), then release librdkafka."""
        if self._producer.flush(timeout_s) == 0:
            self._producer.close()

    def write_chains(
        self, chains: Sequence[Sequence[OutgoingRecord]], progress: Progress | None = None
    ) -> list[ChainOutcome]:
        """Write every chain; a chain's next record is produced only after the broker acknowledged the
        previous one, so a tombstone never precedes its replay. Chains run concurrently (pipelined).

        Returns once every write was acknowledged or failed (librdkafka's ``delivery.timeout.ms`` bounds
        that); one outcome per chain, in order.
        """
        outcomes = [ChainOutcome() for _ in chains]
        ready: deque[int] = deque()  # chains whose last write was acknowledged and which have another
        in_flight = 0
        finished = 0

        def report(index: int, record: OutgoingRecord) -> Callable[[KafkaError | None, Any], None]:
            def on_delivery(error: KafkaError | None, message: Any) -> None:
                nonlocal in_flight, finished
                in_flight -= 1
                outcome = outcomes[index]
                if error is not None:
                    outcome.error = f"{record.topic}[{record.partition}]: {error.name()}: {error.str()}"
                    finished += 1
                    return
                outcome.acked.append(Coordinates(message.topic(), message.partition(), message.offset()))
                if len(outcome.acked) < len(chains[index]):
                    ready.append(index)
                else:
                    finished += 1

            return on_delivery

        def send(index: int) -> None:
            nonlocal in_flight, finished
            record = chains[index][len(outcomes[index].acked)]
            while True:
                try:
                    self._producer.produce(
                        record.topic,
                        value=record.value,
                        key=record.key,
                        partition=record.partition,
                        headers=list(record.headers),
                        on_delivery=report(index, record),
                    )
                except BufferError:
                    self._producer.poll(0.1)  # the local queue is full: let deliveries drain it
                    continue
                except KafkaException as exc:
                    outcomes[index].error = f"{record.topic}[{record.partition}]: refused: {exc}"
                    finished += 1
                    return
                in_flight += 1
                return

        def serve(wait_s: float) -> None:
            self._producer.poll(wait_s)
            while ready:
                send(ready.popleft())
            if progress is not None:
                progress.update(finished)

        for index, chain in enumerate(chains):
            if chain:
                send(index)
                serve(0)
            else:
                finished += 1
        while in_flight or ready:
            serve(0.1)
        return outcomes


# -- the actions ------------------------------------------------------------------------------------------


def _chosen(args: argparse.Namespace) -> tuple[DlqFilter, list[str]]:
    """The filter and the actual DLQ topics the arguments name (ConfigError before any connection)."""
    selected = build_filter(args, now=datetime.now(UTC))
    return selected, dlq_topic_names(args.topic, sorted(selected.ids), _catalogue_dlq_names())


def _read_entries(
    args: argparse.Namespace, reader: KafkaReader, selected: DlqFilter, topics: Sequence[str]
) -> tuple[list[DlqEntry], int]:
    snapshot = reader.snapshot(topics)
    for topic in snapshot.missing:
        print(
            f"psinfor: topic {topic} does not exist on the cluster; skipped "
            "(`psinfor topics apply` creates the DLQ topics)",
            file=sys.stderr,
        )
    live = snapshot.live()
    return selected.select(live, limit=args.limit), len(live)


def _list(args: argparse.Namespace) -> int:
    selected, topics = _chosen(args)
    settings = load_settings()
    reader = KafkaReader(settings.kafka, timeout_s=args.timeout)
    try:
        entries, live = _read_entries(args, reader, selected, topics)
    finally:
        reader.close()
    if args.format == "json":
        print(json.dumps([entry_json(entry) for entry in entries], indent=2, ensure_ascii=False))
    elif entries:
        print(render_table(entries))
    print(f"{len(entries)} of {live} live DLQ entries match", file=sys.stderr)
    return 0 if entries else 1


def _show(args: argparse.Namespace) -> int:
    try:
        wanted = parse_coordinates(args.id)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    settings = load_settings()
    reader = KafkaReader(settings.kafka, timeout_s=args.timeout)
    try:
        snapshot = reader.snapshot([wanted.topic])
    finally:
        reader.close()
    if snapshot.missing:
        print(f"psinfor: topic {wanted.topic} does not exist on the cluster", file=sys.stderr)
        return 1
    record = next(
        (r for r in snapshot.records if Coordinates(r.topic, r.partition, r.offset) == wanted), None
    )
    if record is None or record.value is None:
        what = "a tombstone" if record is not None else "no record (compacted away, or not written yet)"
        print(f"psinfor: {wanted} is {what}", file=sys.stderr)
        return 1
    if args.raw:
        sys.stdout.flush()
        sys.stdout.buffer.write(record.value)
        sys.stdout.buffer.flush()
        return 0
    live_ids = {entry.id for entry in snapshot.live()}
    print(render_show(record, live=wanted in live_ids))
    return 0


@dataclass(frozen=True)
class _Plan:
    entry: DlqEntry
    chain: tuple[OutgoingRecord, ...]


def _replay(args: argparse.Namespace) -> int:
    selected, topics = _chosen(args)
    operator = operator_name(args, verb="replays", recorded_in="dlq.replayed_by")
    require_confirmation_possible(args, "replay")
    settings = load_settings()
    reader = KafkaReader(settings.kafka, timeout_s=args.timeout)
    try:
        entries, _live = _read_entries(args, reader, selected, topics)
        if not entries:
            print("psinfor: no DLQ entries match; nothing to replay", file=sys.stderr)
            return 1
        replayed_at = datetime.now(UTC)
        plans: list[_Plan] = []
        unusable: list[str] = []
        for entry in entries:
            try:
                chain = (
                    replay_record(entry, replayed_at=replayed_at, replayed_by=operator),
                    tombstone_for(entry),
                )
            except UnusableEntry as exc:
                unusable.append(str(exc))
                continue
            plans.append(_Plan(entry, chain))
        counts = reader.partition_counts(sorted({plan.chain[0].topic for plan in plans}))
    finally:
        reader.close()
    usable: list[_Plan] = []
    for plan in plans:
        target = plan.chain[0]
        if target.topic not in counts:
            unusable.append(f"{plan.entry.id}: source topic {target.topic} does not exist on the cluster")
        elif target.partition >= counts[target.topic]:
            unusable.append(
                f"{plan.entry.id}: source topic {target.topic} has {counts[target.topic]} partitions, "
                f"the record came from partition {target.partition}"
            )
        else:
            usable.append(plan)
    for problem in unusable:
        print(f"psinfor: cannot replay {problem}", file=sys.stderr)
    if args.dry_run:
        for plan in usable:
            target = plan.chain[0]
            print(
                f"would replay {plan.entry.id} -> {target.topic}:{target.partition} "
                f"key={_key_text(target.key)} "
                f"({len(target.value or b'')} bytes, {len(target.headers)} headers)"
            )
        print(f"dry run: {len(usable)} entries would be replayed; nothing written", file=sys.stderr)
        return 0 if usable and not unusable else 1
    if not usable:
        return 1
    if not confirmed(args, f"replay {len(usable)} entries to {_destinations(usable)}?"):
        print("psinfor: nothing replayed", file=sys.stderr)
        return 1
    progress = Progress("replay", len(usable), sys.stderr)
    writer = KafkaWriter(settings.kafka)
    try:
        outcomes = writer.write_chains([plan.chain for plan in usable], progress)
    finally:
        writer.close()
    failed = 0
    for plan, outcome in zip(usable, outcomes, strict=True):
        if len(outcome.acked) == 2:
            print(f"replayed {plan.entry.id} -> {outcome.acked[0]}")
        elif outcome.acked:
            failed += 1
            print(
                f"psinfor: {plan.entry.id} replayed to {outcome.acked[0]} but its tombstone failed "
                f"({outcome.error}); it stays in the DLQ and a second replay would send it again: "
                f"remove it with `psinfor dlq purge --id {plan.entry.id}`",
                file=sys.stderr,
            )
        else:
            failed += 1
            print(
                f"psinfor: {plan.entry.id} not replayed ({outcome.error}); it stays in the DLQ",
                file=sys.stderr,
            )
    print(progress.line(len(usable) - failed), file=sys.stderr)
    print(f"replayed {len(usable) - failed} of {len(entries)} selected entries", file=sys.stderr)
    return 0 if not failed and not unusable else 1


def _purge(args: argparse.Namespace) -> int:
    selected, topics = _chosen(args)
    if not selected.narrows and not args.all:
        raise ConfigError(
            "purge removes entries for good: choose them with a filter (--id, --stage, --reason, --key, "
            "--source-topic, --since, --until), or pass --all to purge every entry of the chosen topics"
        )
    require_confirmation_possible(args, "purge")
    settings = load_settings()
    reader = KafkaReader(settings.kafka, timeout_s=args.timeout)
    try:
        entries, _live = _read_entries(args, reader, selected, topics)
    finally:
        reader.close()
    if not entries:
        print("psinfor: no DLQ entries match; nothing to purge", file=sys.stderr)
        return 1
    plans: list[_Plan] = []
    unusable: list[str] = []
    for entry in entries:
        try:
            plans.append(_Plan(entry, (tombstone_for(entry),)))
        except UnusableEntry as exc:
            unusable.append(str(exc))
    for problem in unusable:
        print(f"psinfor: cannot purge {problem}", file=sys.stderr)
    if args.dry_run:
        for plan in plans:
            print(f"would purge {plan.entry.id} ({_summary(plan.entry)})")
        print(f"dry run: {len(plans)} entries would be purged; nothing written", file=sys.stderr)
        return 0 if plans and not unusable else 1
    if not plans:
        return 1
    if not confirmed(args, f"purge {len(plans)} DLQ entries for good?"):
        print("psinfor: nothing purged", file=sys.stderr)
        return 1
    progress = Progress("purge", len(plans), sys.stderr)
    writer = KafkaWriter(settings.kafka)
    try:
        outcomes = writer.write_chains([plan.chain for plan in plans], progress)
    finally:
        writer.close()
    failed = 0
    for plan, outcome in zip(plans, outcomes, strict=True):
        if outcome.acked:
            print(f"purged {plan.entry.id}")
        else:
            failed += 1
            print(f"psinfor: {plan.entry.id} not purged ({outcome.error})", file=sys.stderr)
    print(f"purged {len(plans) - failed} of {len(entries)} selected entries", file=sys.stderr)
    return 0 if not failed and not unusable else 1


# -- rendering --------------------------------------------------------------------------------------------


def _key_text(key: bytes | None) -> str:
    return "-" if key is None else printable(key)


def _time_text(moment: datetime | None) -> str:
    return (
        "-"
        if moment is None
        else moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def _short(text: str | None, width: int = MESSAGE_WIDTH) -> str:
    if not text:
        return "-"
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def _summary(entry: DlqEntry) -> str:
    key = _key_text(entry.original_key)
    return f"{entry.stage or '-'} {entry.reason or '-'} from {entry.source or '-'} key={key}"


def _destinations(plans: Sequence[_Plan]) -> str:
    counts: dict[str, int] = {}
    for plan in plans:
        counts[plan.chain[0].topic] = counts.get(plan.chain[0].topic, 0) + 1
    return ", ".join(f"{topic} ({count})" for topic, count in counts.items())


def render_table(entries: Sequence[DlqEntry]) -> str:
    """One line per entry under a header row; columns padded to their widest cell."""
    rows = [("ID", "STAGE", "REASON", "SOURCE", "KEY", "FAILED_AT", "FIELD", "MESSAGE")]
    for entry in entries:
        rows.append(
            (
                str(entry.id),
                entry.stage or "-",
                entry.reason or "-",
                str(entry.source) if entry.source is not None else "-",
                _key_text(entry.original_key),
                _time_text(entry.when),
                entry.field_path or "-",
                _short(entry.error_message),
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def entry_json(entry: DlqEntry) -> dict[str, object]:
    """One entry as a JSON object (``list --format json``)."""
    key = entry.original_key
    return {
        "id": str(entry.id),
        "stage": entry.stage,
        "reason": entry.reason,
        "source": None
        if entry.source is None
        else {
            "topic": entry.source.topic,
            "partition": entry.source.partition,
            "offset": entry.source.offset,
        },
        "original_key": None if key is None else printable(key),
        "failed_at": None if entry.when is None else _time_text(entry.when),
        "field_path": entry.field_path,
        "error_class": entry.error_class,
        "message": entry.error_message,
        "attempts": entry.attempts,
        "correlation_id": entry.correlation_id,
        "details": entry.details,
        "value_bytes": len(entry.record.value or b""),
    }


def render_show(record: SourceRecord, *, live: bool) -> str:
    """Every header of ``record`` in order and its value, for ``show``."""
    state = "live" if live else "removed (a later tombstone or a newer copy of its key: replayed or purged)"
    stamp = None if record.timestamp_ms is None else datetime.fromtimestamp(record.timestamp_ms / 1000, UTC)
    lines = [
        f"id:        {record.topic}:{record.partition}:{record.offset}",
        f"state:     {state}",
        f"dlq key:   {_key_text(record.key)}",
        f"timestamp: {_time_text(stamp)}",
        "headers:",
    ]
    lines += [f"  {name}: {printable(value)}" for name, value in record.headers]
    preview = preview_value(record.value)
    size = len(record.value or b"")
    lines.append(f"value ({size} bytes, {preview.kind}):")
    lines.append(preview.text)
    if preview.truncated:
        lines.append("… (cut; `psinfor dlq show --raw ID` writes the whole value)")
    return "\n".join(lines)
