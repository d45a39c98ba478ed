"""``psinfor review list|show|release|reject``: the orders the anomaly checks held on ``review.order.v1``.

The processors hold a flagged order there instead of sending it to Infor, and keep holding its later
versions (``processors/history.py``). A person decides (format and how the processors follow it:
``processors/review_decisions.py``):

- **release** sends the newest held version to ``canonical.order.v1`` exactly as it was held (same
  event id and provenance headers, plus ``review_decision=released`` and ``reviewed_by``), under the
  order key and with the processors' partitioner, so it lands in order with the key's other versions;
  every worker then stops holding the key and its next versions flow as usual;
- **reject** records that the order is not to reach Infor; its later versions stay held.

Release is idempotent and survives a crash at any point: the decision ``releasing`` is written (acked)
before the order, ``released`` after the order was acknowledged; a release that finds ``releasing``
for the same version first looks for the order on the canonical topic (since that decision) and writes
it only when it is not there. Every command reads the review and decision topics from their beginning
to the end they had at the start (never joins a consumer group).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from cli.dlq import KafkaReader
from cli.write_guards import (
    add_write_guards,
    confirmed,
    operator,
    positive_float,
    require_confirmation_possible,
)
from pipeline.errors import ConfigError, RetryableError
from pipeline.kafka_config import librdkafka_config
from pipeline.producer import PipelineProducer
from pipeline.records import SourceRecord
from pipeline.settings import KafkaSettings, Settings, env_name, load_settings
from processors.review_decisions import DECISIONS_TOPIC, REJECTED, RELEASED, RELEASING, Decision, decision_key
from schemas.codec import AvroCodec, AvroDatum
from schemas.registry import registry_client

REVIEW_TOPIC = "review.order.v1"
CANONICAL_TOPIC = "canonical.order.v1"
RECORD = "Order"
PENDING = "pending"
COPIED_HEADERS = ("event_id", "correlation_id", "causation_id", "flow")
"""Headers of the held record the released one keeps (what the processors write on every record)."""

REVIEW_HELP = f"""\
Orders the anomaly checks held on review.order.v1 (order value outlier, quantity spike, price
deviation) instead of sending them to Infor. `list` shows them with their flags and what was decided;
`show KEY` one of them whole; `release KEY` sends its newest held version on to canonical.order.v1 (and
so to Infor) and lets its later versions flow; `reject KEY --reason TEXT` records that it must not
reach Infor (later versions stay held). KEY is the order key, {{shop_id}}:{{id_order}}, e.g. 1:1043.

Decisions go to state.review-decisions, which every processor worker follows. Reaches the cluster
through {env_name("kafka", "bootstrap_servers")} and the registry through {env_name("registry", "url")}.
Exit codes: 0 done, 1 nothing found or something failed (said on stderr), 2 configuration or usage error.
"""

TOPIC_HELP = (
    "use topic ACTUAL where the catalogue says NAME (review.order.v1, canonical.order.v1, "
    "state.review-decisions; test or side-by-side copies). Repeatable"
)


# -- the pure part: what is held and what was decided ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HeldVersion:
    """One version of an order on the review topic."""

    key: str
    version: int
    event_id: str
    datum: AvroDatum
    record: SourceRecord


@dataclass(slots=True)
class HeldOrder:
    """Every held version of one order key, and the latest decision about it."""

    key: str
    versions: list[HeldVersion] = field(default_factory=list)
    decision: Decision | None = None

    @property
    def newest(self) -> HeldVersion:
        return max(self.versions, key=lambda held: (held.version, held.record.offset))

    @property
    def status(self) -> str:
        """``pending`` unless the latest decision covers the newest held version (then its state)."""
        if self.decision is None or not self.decision.covers(self.newest.version):
            return PENDING
        return self.decision.state


def fold(
    review: Iterable[SourceRecord],
    decisions: Iterable[SourceRecord],
    decode: Callable[[bytes], AvroDatum],
) -> dict[str, HeldOrder]:
    """The held orders by key, from the review topic's records and the decision topic's (pure but for
    ``decode``, the Avro decoder; an undecodable review record raises InvalidMessage)."""
    held: dict[str, HeldOrder] = {}
    for record in review:
        if record.key is None or record.value is None:
            continue
        datum = decode(record.value)
        key = record.key.decode()
        meta = datum["meta"]
        version = HeldVersion(key, int(meta["version"]), str(meta["event_id"]), datum, record)
        held.setdefault(key, HeldOrder(key)).versions.append(version)
    latest: dict[bytes, Decision | None] = {}
    for record in decisions:
        if record.key is None:
            continue
        if record.value is None:
            latest[record.key] = None  # a tombstone clears the decisions of that key
            continue
        try:
            latest[record.key] = Decision.from_bytes(record.value)
        except ValueError:
            continue  # not ours to judge here; the processors log it
    for order in held.values():
        decision = latest.get(decision_key(RECORD, order.key))
        if decision is not None and decision.record == RECORD:
            order.decision = decision
    return held


def _money(value: Mapping[str, Any] | None) -> str:
    if not value:
        return "-"
    amount = value.get("amount")
    text = f"{amount:.2f}" if isinstance(amount, Decimal) else str(amount)
    return f"{text} {value.get('currency', '')}".strip()


def _when(moment_ms: int | None) -> str:
    if moment_ms is None:
        return "-"
    return datetime.fromtimestamp(moment_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _decided(order: HeldOrder) -> str:
    if order.status == PENDING or order.decision is None:
        return PENDING
    text = f"{order.status} by {order.decision.by} at {order.decision.at}"
    return f"{text}: {order.decision.reason}" if order.decision.reason else text


def render_table(orders: Sequence[HeldOrder]) -> str:
    """One line per held order: key, reference, total, held versions, when, flags, decision."""
    rows = [("KEY", "REFERENCE", "TOTAL", "VERSIONS", "HELD AT", "FLAGS", "DECISION")]
    for order in orders:
        newest = order.newest
        datum = newest.datum
        flags = ",".join(str(flag["code"]) for flag in datum.get("anomalies") or []) or "-"
        rows.append(
            (
                order.key,
                str(datum.get("reference", "")),
                _money((datum.get("totals") or {}).get("grand_total")),
                str(len(order.versions)),
                _when(newest.record.timestamp_ms),
                flags,
                _decided(order),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in rows
    )


def _plain(value: Any) -> Any:
    """``value`` as JSON can print it: a decoded Avro datum holds Decimals, UUIDs and datetimes."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value)  # Decimal (exact, as text), UUID


def held_json(order: HeldOrder, *, whole: bool = False) -> dict[str, Any]:
    """What ``list --format json`` (and, with ``whole``, ``show``) prints of one held order."""
    newest = order.newest
    found: dict[str, Any] = {
        "key": order.key,
        "status": order.status,
        "reference": newest.datum.get("reference"),
        "grand_total": _plain((newest.datum.get("totals") or {}).get("grand_total")),
        "newest": {
            "version": newest.version,
            "event_id": newest.event_id,
            "held_at": _when(newest.record.timestamp_ms),
            "where": f"{newest.record.topic}:{newest.record.partition}:{newest.record.offset}",
        },
        "versions": [held.version for held in sorted(order.versions, key=lambda held: held.version)],
        "anomalies": _plain(newest.datum.get("anomalies") or []),
        "decision": None if order.decision is None else asdict(order.decision),
    }
    if whole:
        found["order"] = _plain(newest.datum)
    return found


# -- the command ---------------------------------------------------------------------------------------


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``review list|show|release|reject``."""
    parser = subcommands.add_parser(
        "review",
        help="orders held for review: list, show, release to Infor or reject",
        description=REVIEW_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=lambda _args: _usage(parser))
    actions = parser.add_subparsers(title="actions", metavar="ACTION")

    listing = actions.add_parser(
        "list",
        help="one line per held order: key, reference, total, versions, held at, flags, decision",
        description="List the orders held on review.order.v1: pending ones, or all with --all.",
    )
    listing.add_argument("--all", action="store_true", help="also the released and rejected ones")
    listing.add_argument(
        "--format", choices=("table", "json"), default="table", help="table (default) or a JSON array"
    )
    _add_reading(listing)
    listing.set_defaults(handler=_list)

    show = actions.add_parser(
        "show",
        help="one held order whole: its newest held version, flags with reasons, versions, decision",
        description="Print one held order as JSON: the newest held version in full and what was decided.",
    )
    show.add_argument("key", metavar="KEY", help="the order key, {shop_id}:{id_order}")
    _add_reading(show)
    show.set_defaults(handler=_show)

    release = actions.add_parser(
        "release",
        help="send the newest held version on to canonical.order.v1 (and Infor); later versions flow",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    release.add_argument("key", metavar="KEY", help="the order key, {shop_id}:{id_order}")
    release.add_argument(
        "--by", metavar="NAME", help="who decides, recorded with the decision (default: $USER)"
    )
    _add_reading(release)
    add_write_guards(release, verb="release")
    release.set_defaults(handler=_release)

    reject = actions.add_parser(
        "reject",
        help="record that the held order must not reach Infor (its later versions stay held)",
        description="Record a rejection on state.review-decisions; nothing goes to the canonical topic.",
    )
    reject.add_argument("key", metavar="KEY", help="the order key, {shop_id}:{id_order}")
    reject.add_argument("--reason", required=True, help="why, recorded with the decision")
    reject.add_argument(
        "--by", metavar="NAME", help="who decides, recorded with the decision (default: $USER)"
    )
    _add_reading(reject)
    add_write_guards(reject, verb="reject")
    reject.set_defaults(handler=_reject)


def _add_reading(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--topic", action="append", default=[], metavar="NAME=ACTUAL", help=TOPIC_HELP)
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=30.0,
        metavar="SECONDS",
        help="give up reading (or reaching) the cluster after this long (default: 30)",
    )


def topic_names(pairs: Sequence[str]) -> dict[str, str]:
    """Catalogue name → actual topic for the three topics review uses; ConfigError for a bad pair."""
    names = {name: name for name in (REVIEW_TOPIC, CANONICAL_TOPIC, DECISIONS_TOPIC)}
    for pair in pairs:
        name, sep, actual = pair.partition("=")
        if not sep or not actual or name not in names:
            raise ConfigError(f"--topic {pair!r} is not NAME=ACTUAL with NAME one of {', '.join(names)}")
        names[name] = actual
    return names


def read_state(
    settings: Settings, topics: dict[str, str], timeout_s: float, codec: AvroCodec
) -> dict[str, HeldOrder]:
    """The held orders by key, as the review and decision topics say now."""
    reader = KafkaReader(settings.kafka, timeout_s=timeout_s)
    try:
        snapshot = reader.snapshot([topics[REVIEW_TOPIC], topics[DECISIONS_TOPIC]])
    finally:
        reader.close()
    for topic in snapshot.missing:
        print(f"psinfor: topic {topic} does not exist (`psinfor topics apply` creates it)", file=sys.stderr)
    review = [record for record in snapshot.records if record.topic == topics[REVIEW_TOPIC]]
    decisions = [record for record in snapshot.records if record.topic == topics[DECISIONS_TOPIC]]
    return fold(review, decisions, lambda value: codec.decode(value, topics[REVIEW_TOPIC]))


def read_order(
    args: argparse.Namespace, settings: Settings, topics: dict[str, str], codec: AvroCodec
) -> HeldOrder | None:
    """The held order ``args.key`` names; None, said on stderr, when none is held under that key."""
    found = read_state(settings, topics, args.timeout, codec).get(args.key)
    if found is None:
        print(
            f"psinfor: no order {args.key} on {topics[REVIEW_TOPIC]}; `psinfor review list --all` shows "
            "the held ones",
            file=sys.stderr,
        )
    return found


def _list(args: argparse.Namespace) -> int:
    topics = topic_names(args.topic)
    settings = load_settings()
    with registry_client(settings.require_registry()) as registry:
        held = read_state(settings, topics, args.timeout, AvroCodec(registry, RECORD))
    orders = sorted(held.values(), key=lambda order: order.newest.record.timestamp_ms or 0)
    shown = [order for order in orders if args.all or order.status in (PENDING, RELEASING)]
    if args.format == "json":
        print(json.dumps([held_json(order) for order in shown], indent=2, ensure_ascii=False))
    elif shown:
        print(render_table(shown))
    pending = sum(1 for order in orders if order.status == PENDING)
    print(f"{len(orders)} held orders, {pending} pending a decision", file=sys.stderr)
    return 0 if shown else 1


def _show(args: argparse.Namespace) -> int:
    topics = topic_names(args.topic)
    settings = load_settings()
    with registry_client(settings.require_registry()) as registry:
        order = read_order(args, settings, topics, AvroCodec(registry, RECORD))
    if order is None:
        return 1
    print(json.dumps(held_json(order, whole=True), indent=2, ensure_ascii=False))
    return 0


def _now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _decide(producer: PipelineProducer, topic: str, decision: Decision, timeout_s: float) -> None:
    producer.produce_and_wait(topic, decision.topic_key, decision.to_bytes(), timeout=timeout_s)


def _reject(args: argparse.Namespace) -> int:
    topics = topic_names(args.topic)
    by = operator(args, verb="rejects", recorded_in="the decision")
    require_confirmation_possible(args, "reject")
    if not args.reason.strip():
        raise ConfigError("--reason must say why the order is rejected")
    settings = load_settings()
    with registry_client(settings.require_registry()) as registry:
        order = read_order(args, settings, topics, AvroCodec(registry, RECORD))
    if order is None:
        return 1
    newest = order.newest
    if order.status == REJECTED:
        print(f"{order.key} version {newest.version} is already rejected ({_decided(order)})")
        return 0
    if order.status in (RELEASED, RELEASING):
        raise ConfigError(
            f"{order.key} version {newest.version} was {order.status}; it cannot be rejected now"
        )
    plan = f"reject {order.key} version {newest.version} ({newest.datum.get('reference')}): {args.reason}"
    if args.dry_run:
        print(f"would {plan}")
        return 0
    if not confirmed(args, f"{plan}?"):
        return 1
    decision = Decision(
        RECORD, order.key, REJECTED, newest.version, newest.event_id, by, _now_text(), args.reason
    )
    producer = PipelineProducer(settings.kafka, client_id_suffix="review")
    try:
        _decide(producer, topics[DECISIONS_TOPIC], decision, args.timeout)
    finally:
        producer.close(args.timeout)
    print(f"rejected {order.key} version {newest.version} by {by}")
    return 0


def _release(args: argparse.Namespace) -> int:
    topics = topic_names(args.topic)
    by = operator(args, verb="releases", recorded_in="the decision")
    require_confirmation_possible(args, "release")
    settings = load_settings()
    with registry_client(settings.require_registry()) as registry:
        codec = AvroCodec(registry, RECORD)
        order = read_order(args, settings, topics, codec)
        if order is None:
            return 1
        newest = order.newest
        if order.status == RELEASED:
            print(f"{order.key} version {newest.version} is already released ({_decided(order)})")
            return 0
        resuming = order.status == RELEASING
        plan = (
            f"release {order.key} version {newest.version} ({newest.datum.get('reference')}, "
            f"{_money((newest.datum.get('totals') or {}).get('grand_total'))}) to {topics[CANONICAL_TOPIC]}"
        )
        if args.dry_run:
            print(f"would {plan}" + (" (finishing an interrupted release)" if resuming else ""))
            return 0
        if not confirmed(args, f"{plan}?"):
            return 1
        value = codec.encode(newest.datum, topics[CANONICAL_TOPIC])
    released = Decision(RECORD, order.key, RELEASED, newest.version, newest.event_id, by, _now_text())
    # The processors' partitioner: the order lands in the partition of its key's other versions.
    producer = PipelineProducer(
        settings.kafka, client_id_suffix="review", overrides={"partitioner": "murmur2_random"}
    )
    try:
        already = False
        if resuming:
            assert order.decision is not None
            already = on_topic(
                settings.kafka, topics[CANONICAL_TOPIC], newest.event_id, order.decision, args.timeout
            )
        else:
            releasing = Decision(
                RECORD, order.key, RELEASING, newest.version, newest.event_id, by, _now_text()
            )
            _decide(producer, topics[DECISIONS_TOPIC], releasing, args.timeout)
        where = "already there"
        if not already:
            headers = [(name, value_) for name, value_ in newest.record.headers if name in COPIED_HEADERS]
            headers += [("review_decision", RELEASED.encode()), ("reviewed_by", by.encode())]
            partition, offset = producer.produce_and_wait(
                topics[CANONICAL_TOPIC], order.key.encode(), value, headers, timeout=args.timeout
            )
            where = f"partition {partition} offset {offset}"
        _decide(producer, topics[DECISIONS_TOPIC], released, args.timeout)
    finally:
        producer.close(args.timeout)
    print(
        f"released {order.key} version {newest.version} (event {newest.event_id}) "
        f"to {topics[CANONICAL_TOPIC]} ({where}) by {by}"
    )
    return 0


def on_topic(kafka: KafkaSettings, topic: str, event_id: str, since: Decision, timeout_s: float) -> bool:
    """Whether a record with header ``event_id`` is on ``topic`` at or after the ``releasing``
    decision ``since`` was taken (minus a minute of clock skew); reads to the current ends."""
    try:
        started = datetime.fromisoformat(since.at.replace("Z", "+00:00"))
    except ValueError:
        started = datetime.fromtimestamp(0, UTC)
    since_ms = int(started.timestamp() * 1000) - 60_000
    config = librdkafka_config(kafka, client_id_suffix="review")
    config.update({"group.id": "psinfor-review", "enable.auto.commit": False, "enable.partition.eof": True})
    consumer = Consumer(config)
    wanted = event_id.encode()
    deadline = time.monotonic() + timeout_s
    try:
        described = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if described is None or described.error is not None:
            raise RetryableError(f"cannot read {topic} to finish the release")
        partitions = [TopicPartition(topic, p, since_ms) for p in sorted(described.partitions)]
        starts = consumer.offsets_for_times(partitions, timeout=timeout_s)
        waiting: set[int] = set()
        assignment: list[TopicPartition] = []
        for tp in starts:
            if tp.offset >= 0:
                waiting.add(tp.partition)
                assignment.append(tp)
        if not assignment:
            return False
        consumer.assign(assignment)
        while waiting:
            if time.monotonic() > deadline:
                raise RetryableError(
                    f"{topic} not read to its end within {timeout_s:g}s; try a longer --timeout"
                )
            for message in consumer.consume(500, timeout=0.5):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        waiting.discard(message.partition() or 0)
                    continue
                if SourceRecord.from_message(message).header("event_id") == wanted:
                    return True
        return False
    except KafkaException as exc:
        raise RetryableError(f"reading {topic}: {exc}") from exc
    finally:
        consumer.close()


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 0
