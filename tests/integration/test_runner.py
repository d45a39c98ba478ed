"""The consume -> handle -> route -> commit loop against the real broker.

Each test runs ``ConsumeRunner.run()`` on the test's own thread; the handler calls ``stop()`` once it
has seen what the test needs, so no test sleeps waiting for the runner.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Message, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client import REGISTRY

from pipeline import dlq as dlq_headers
from pipeline.errors import DlqLimitExceeded, InvalidMessage, ProduceError, RetryableError
from pipeline.producer import PipelineProducer
from pipeline.records import SourceRecord
from pipeline.runner import ConsumeRunner
from pipeline.settings import DlqSettings, KafkaSettings, RetrySettings, ServiceSettings, Settings
from tests.conftest import NewTopicFactory

pytestmark = pytest.mark.integration

GroupFactory = Callable[[], str]


def _settings(bootstrap: str, *, max_consecutive_invalid: int = 100) -> Settings:
    return Settings(
        kafka=KafkaSettings(bootstrap_servers=bootstrap),
        retry=RetrySettings(initial_backoff_s=0.05, max_backoff_s=0.1, multiplier=2.0),
        dlq=DlqSettings(max_consecutive_invalid=max_consecutive_invalid, delivery_timeout_s=10.0),
        service=ServiceSettings(commit_interval_s=0.05),
    )


def _produce(
    bootstrap: str, topic: str, records: Sequence[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]
) -> None:
    with PipelineProducer(
        KafkaSettings(bootstrap_servers=bootstrap), client_id_suffix="test-feed"
    ) as producer:
        for key, value, headers in records:
            producer.produce_and_wait(topic, key, value, headers, timeout=20)


def _committed(admin: AdminClient, group: str, topic: str, partition: int = 0) -> int:
    """The group's committed offset for one partition as the broker reports it (-1001: none yet)."""
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, partition)])
    result = admin.list_consumer_group_offsets([request])[group].result(timeout=10)
    offset: int = result.topic_partitions[0].offset
    return offset


def _read_all(bootstrap: str, group: str, topic: str, expect: int, settle_s: float = 1.0) -> list[Message]:
    """Read ``topic`` from the start until ``expect`` records arrived, then ``settle_s`` more for extras."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    messages: list[Message] = []
    deadline = time.monotonic() + 20
    settle_until: float | None = None
    try:
        while time.monotonic() < deadline:
            if len(messages) >= expect and settle_until is None:
                settle_until = time.monotonic() + settle_s
            if settle_until is not None and time.monotonic() >= settle_until:
                break
            message = consumer.poll(0.1)
            if message is not None and message.error() is None:
                messages.append(message)
    finally:
        consumer.close()
    return messages


def _metric(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# -- (a) round trip --------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_round_trip_with_headers_commits_everything_handled(
    kafka_bootstrap: str, new_topic: NewTopicFactory, new_group: GroupFactory, kafka_admin: AdminClient
) -> None:
    topic, dlq_topic, group = new_topic(partitions=2), new_topic(), new_group()
    sent = [
        (
            f"order-{i % 3}".encode(),
            f'{{"n": {i}}}'.encode(),
            [("correlation_id", f"c{i}".encode()), ("x", b"\x00")],
        )
        for i in range(12)
    ]
    _produce(kafka_bootstrap, topic, sent)
    seen: list[SourceRecord] = []
    runner: ConsumeRunner

    def handler(record: SourceRecord) -> None:
        seen.append(record)
        if len(seen) == len(sent):
            runner.stop()

    runner = ConsumeRunner(_settings(kafka_bootstrap), "rt", [topic], group, handler, dlq_topic)
    runner.run()

    assert sorted((r.key, r.value, r.headers) for r in seen) == sorted((k, v, tuple(h)) for k, v, h in sent)
    assert all(r.timestamp_ms is not None and r.topic == topic for r in seen)
    # Per key, the handler saw the values in produce order.
    for key in {k for k, _, _ in sent}:
        assert [r.value for r in seen if r.key == key] == [v for k, v, _ in sent if k == key]
    # Stop committed synchronously: the group's offsets are the partitions' ends.
    ends = {p: max(r.offset for r in seen if r.partition == p) + 1 for p in {r.partition for r in seen}}
    assert {p: _committed(kafka_admin, group, topic, p) for p in ends} == ends
    assert _metric("psinfor_messages_total", {"stage": "rt", "topic": topic, "outcome": "ok"}) == 12
    assert _metric("psinfor_commits_total", {"stage": "rt", "outcome": "ok"}) >= 1
    assert _metric("psinfor_stage_up", {"stage": "rt"}) == 0


# -- (b) InvalidMessage -> DLQ, then commit ---------------------------------------------------------

ORIGINAL_KEY = b"\x00shop1:orders:\xff7"
ORIGINAL_VALUE = b"\x89not json \x00\xfe\xff"
ORIGINAL_HEADERS = [("correlation_id", b"corr-77"), ("webhook-id", b"wh-1"), ("raw", b"\x01\x02")]


class _InvalidOnce:
    """Handler: the record at ``bad_offset`` is invalid, all others succeed; stops after ``last``."""

    def __init__(self, bad_offset: int, last: int) -> None:
        self.bad_offset, self.last = bad_offset, last
        self.calls: list[int] = []
        self.runner: ConsumeRunner | None = None

    def __call__(self, record: SourceRecord) -> None:
        self.calls.append(record.offset)
        if record.offset == self.last and self.runner is not None:
            self.runner.stop()
        if record.offset == self.bad_offset:
            raise InvalidMessage(
                "schema_violation",
                "total is not a decimal",
                field_path="order.total",
                details={"expected": "decimal", "response": "400 Bad Request"},
            )


@pytest.mark.timeout(60)
def test_dlq_write_refused_means_no_commit_of_that_message(
    kafka_bootstrap: str, new_topic: NewTopicFactory, new_group: GroupFactory, kafka_admin: AdminClient
) -> None:
    # The DLQ topic refuses every record: the runner must crash without committing the invalid one.
    topic, group = new_topic(), new_group()
    dlq_topic = new_topic(config={"max.message.bytes": "64"})
    _produce(
        kafka_bootstrap,
        topic,
        [(b"ok", b"fine", []), (ORIGINAL_KEY, ORIGINAL_VALUE, ORIGINAL_HEADERS), (b"after", b"x", [])],
    )
    handler = _InvalidOnce(bad_offset=1, last=2)
    runner = ConsumeRunner(_settings(kafka_bootstrap), "dlq-refused", [topic], group, handler, dlq_topic)
    handler.runner = runner

    with pytest.raises(ProduceError, match="MSG_SIZE_TOO_LARGE"):
        runner.run()

    assert handler.calls == [0, 1], "nothing after the failed dead-letter was handled"
    assert _committed(kafka_admin, group, topic) == 1, "committed offset stays on the invalid message"
    assert _metric("psinfor_dlq_messages_total", {"stage": "dlq-refused", "reason": "schema_violation"}) == 0


class _CommitSpyProducer(PipelineProducer):
    """A real producer that, at the moment a DLQ write is acknowledged, notes the group's committed offset."""

    def __init__(self, settings: KafkaSettings, admin: AdminClient, group: str, topic: str) -> None:
        super().__init__(settings, client_id_suffix="spy")
        self.admin, self.group, self.topic = admin, group, topic
        self.committed_at_ack: list[int] = []

    def produce_and_wait(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]] = (),
        timeout: float = 10.0,
    ) -> tuple[int, int]:
        position = super().produce_and_wait(topic, key, value, headers, timeout)
        self.committed_at_ack.append(_committed(self.admin, self.group, self.topic))
        return position


@pytest.mark.timeout(60)
def test_invalid_message_lands_in_dlq_with_original_bytes_and_story_then_commits(
    kafka_bootstrap: str, new_topic: NewTopicFactory, new_group: GroupFactory, kafka_admin: AdminClient
) -> None:
    topic, dlq_topic, group = new_topic(), new_topic(), new_group()
    _produce(kafka_bootstrap, topic, [(ORIGINAL_KEY, ORIGINAL_VALUE, ORIGINAL_HEADERS), (b"after", b"x", [])])
    handler = _InvalidOnce(bad_offset=0, last=1)
    settings = _settings(kafka_bootstrap)
    with _CommitSpyProducer(settings.kafka, kafka_admin, group, topic) as producer:
        runner = ConsumeRunner(settings, "dlq-ok", [topic], group, handler, dlq_topic, producer=producer)
        handler.runner = runner
        runner.run()

    # At the DLQ ack nothing was committed yet; afterwards both messages are.
    assert producer.committed_at_ack == [-1001]
    assert _committed(kafka_admin, group, topic) == 2
    assert handler.calls == [0, 1]

    [dead] = _read_all(kafka_bootstrap, new_group(), dlq_topic, expect=1)
    assert dead.key() == f"{topic}:0:0".encode()  # coordinates: compaction never drops another failure
    assert dead.value() == ORIGINAL_VALUE
    raw_headers = dead.headers()
    assert isinstance(raw_headers, list)
    headers = {name: value for name, value in raw_headers if isinstance(value, bytes)}
    assert headers.keys() >= {"webhook-id", "raw"}
    assert headers["raw"] == b"\x01\x02"
    failed_at = headers.pop(dlq_headers.FAILED_AT).decode()
    source_timestamp = int(headers.pop(dlq_headers.SOURCE_TIMESTAMP))
    assert abs(source_timestamp / 1000 - time.time()) < 60
    assert failed_at.endswith("+00:00")
    assert "T" in failed_at
    assert {k: v for k, v in headers.items() if k.startswith("dlq.") or k == "correlation_id"} == {
        "correlation_id": b"corr-77",
        "dlq.stage": b"dlq-ok",
        "dlq.reason": b"schema_violation",
        "dlq.error.class": b"pipeline.errors.InvalidMessage",
        "dlq.error.message": b"total is not a decimal",
        "dlq.source.topic": topic.encode(),
        "dlq.source.partition": b"0",
        "dlq.source.offset": b"0",
        "dlq.attempts": b"1",
        "dlq.field_path": b"order.total",
        "dlq.detail.expected": b"decimal",
        "dlq.original_key": ORIGINAL_KEY,
        "dlq.detail.response": b"400 Bad Request",
    }
    assert _metric("psinfor_dlq_messages_total", {"stage": "dlq-ok", "reason": "schema_violation"}) == 1
    assert _metric("psinfor_messages_total", {"stage": "dlq-ok", "topic": topic, "outcome": "invalid"}) == 1


# -- (c) RetryableError: retried in place, commit withheld -----------------------------------------


@pytest.mark.timeout(60)
def test_retryable_error_is_retried_in_place_with_the_commit_withheld(
    kafka_bootstrap: str, new_topic: NewTopicFactory, new_group: GroupFactory, kafka_admin: AdminClient
) -> None:
    topic, dlq_topic, group = new_topic(), new_topic(), new_group()
    _produce(kafka_bootstrap, topic, [(b"k", f"m{i}".encode(), []) for i in range(4)])
    failures_wanted = 3
    retry_after = 0.2
    handled: list[tuple[int, float]] = []
    committed_during_retries: list[int] = []
    runner: ConsumeRunner

    def handler(record: SourceRecord) -> None:
        handled.append((record.offset, time.monotonic()))
        if record.offset == 1:
            attempts = sum(1 for offset, _ in handled if offset == 1)
            if attempts > 1:
                committed_during_retries.append(_committed(kafka_admin, group, topic))
            if attempts <= failures_wanted:
                raise RetryableError("target answered 503", retry_after=retry_after, status=503)
        if record.offset == 3:
            runner.stop()

    runner = ConsumeRunner(_settings(kafka_bootstrap), "retry", [topic], group, handler, dlq_topic)
    runner.run()

    assert [offset for offset, _ in handled] == [0, 1, 1, 1, 1, 2, 3]
    # Between attempts the runner waited at least the target's Retry-After.
    attempt_times = [at for offset, at in handled if offset == 1]
    assert all(b - a >= retry_after for a, b in itertools.pairwise(attempt_times))
    # While retrying, offset 0 was committed (the interval commit went on) but never offset 1's.
    assert committed_during_retries == [1, 1, 1]
    assert _committed(kafka_admin, group, topic) == 4
    assert _metric("psinfor_retries_total", {"stage": "retry", "reason": "http_503"}) == failures_wanted
    assert _read_all(kafka_bootstrap, new_group(), dlq_topic, expect=0, settle_s=0.5) == []


# -- (d) the DLQ limit stops the stage -------------------------------------------------------------


@pytest.mark.timeout(60)
def test_dlq_limit_trip_stops_the_runner_without_dead_lettering_or_committing(
    kafka_bootstrap: str, new_topic: NewTopicFactory, new_group: GroupFactory, kafka_admin: AdminClient
) -> None:
    topic, dlq_topic, group = new_topic(), new_topic(), new_group()
    _produce(kafka_bootstrap, topic, [(f"k{i}".encode(), f"bad{i}".encode(), []) for i in range(5)])
    calls: list[int] = []

    def handler(record: SourceRecord) -> None:
        calls.append(record.offset)
        raise InvalidMessage("undecodable", "not JSON")

    runner = ConsumeRunner(
        _settings(kafka_bootstrap, max_consecutive_invalid=2), "limit", [topic], group, handler, dlq_topic
    )
    with pytest.raises(DlqLimitExceeded, match="3 invalid messages in a row"):
        runner.run()

    assert calls == [0, 1, 2]
    dead = _read_all(kafka_bootstrap, new_group(), dlq_topic, expect=2)
    assert [m.value() for m in dead] == [b"bad0", b"bad1"], "the tripping message was not dead-lettered"
    assert _committed(kafka_admin, group, topic) == 2, "the tripping message was not committed"
    assert _metric("psinfor_dlq_limit_trips_total", {"stage": "limit"}) == 1
    assert _metric("psinfor_dlq_messages_total", {"stage": "limit", "reason": "undecodable"}) == 2


# -- anything else crashes; stop drops a pending retry ---------------------------------------------


@pytest.mark.timeout(60)
def test_handler_bug_propagates_and_commits_nothing_for_that_message(
    kafka_bootstrap: str, new_topic: NewTopicFactory, new_group: GroupFactory, kafka_admin: AdminClient
) -> None:
    topic, dlq_topic, group = new_topic(), new_topic(), new_group()
    _produce(kafka_bootstrap, topic, [(b"k", f"m{i}".encode(), []) for i in range(3)])
    calls: list[int] = []

    def handler(record: SourceRecord) -> None:
        calls.append(record.offset)
        if record.offset == 1:
            raise KeyError("a bug, not a message problem")

    runner = ConsumeRunner(_settings(kafka_bootstrap), "bug", [topic], group, handler, dlq_topic)
    with pytest.raises(KeyError, match="a bug"):
        runner.run()

    assert calls == [0, 1]
    assert _committed(kafka_admin, group, topic) == 1
    assert _read_all(kafka_bootstrap, new_group(), dlq_topic, expect=0, settle_s=0.5) == []


@pytest.mark.timeout(30)
def test_stop_during_backoff_drops_the_retry_and_keeps_the_message_uncommitted(
    kafka_bootstrap: str, new_topic: NewTopicFactory, new_group: GroupFactory, kafka_admin: AdminClient
) -> None:
    topic, dlq_topic, group = new_topic(), new_topic(), new_group()
    _produce(kafka_bootstrap, topic, [(b"k", b"m0", []), (b"k", b"m1", [])])
    calls: list[int] = []
    runner: ConsumeRunner

    def handler(record: SourceRecord) -> None:
        calls.append(record.offset)
        if record.offset == 1:
            # A shutdown arrives while the target is down and asked for a long pause.
            runner.stop()
            raise RetryableError("target down", retry_after=60.0)

    runner = ConsumeRunner(_settings(kafka_bootstrap), "stop-retry", [topic], group, handler, dlq_topic)
    started = time.monotonic()
    runner.run()

    assert time.monotonic() - started < 15, "stop() cut the 60 s backoff short"
    assert calls == [0, 1]
    assert _committed(kafka_admin, group, topic) == 1, "the next owner re-reads the unfinished message"


@pytest.mark.timeout(60)
def test_revocation_during_backoff_drops_the_retry_and_the_owner_rereads(
    kafka_bootstrap: str, new_topic: NewTopicFactory, new_group: GroupFactory, kafka_admin: AdminClient
) -> None:
    topic, dlq_topic, group = new_topic(), new_topic(), new_group()
    _produce(kafka_bootstrap, topic, [(b"k", b"m0", []), (b"k", b"m1", [])])
    settings = _settings(kafka_bootstrap)
    handled: list[tuple[str, int]] = []
    runners: dict[str, ConsumeRunner] = {}
    errors: list[BaseException] = []
    threads: dict[str, threading.Thread] = {}

    def start(name: str) -> None:
        def handler(record: SourceRecord) -> None:
            handled.append((name, record.offset))
            if record.offset != 1:
                return
            if len([1 for _, offset in handled if offset == 1]) == 1:
                # First attempt: a second member joins, the group rebalances while we back off for 30 s.
                start("second")
                raise RetryableError("target down", retry_after=30.0)
            for runner in runners.values():
                runner.stop()

        runners[name] = ConsumeRunner(settings, "revoke", [topic], group, handler, dlq_topic)

        def run() -> None:
            try:
                runners[name].run()
            except BaseException as exc:  # noqa: BLE001 - re-raised by the test thread below
                errors.append(exc)

        threads[name] = threading.Thread(target=run, name=f"runner-{name}")
        threads[name].start()

    started = time.monotonic()
    start("first")
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline and any(t.is_alive() for t in list(threads.values())):
        for thread in list(threads.values()):
            thread.join(0.1)
    for runner in runners.values():
        runner.stop()
    for thread in threads.values():
        thread.join(10)
    if errors:
        raise errors[0]

    assert time.monotonic() - started < 30, "the 30 s backoff was dropped on revocation"
    # Offset 1 was attempted, dropped on revocation, then read again (by whichever member got it).
    assert [offset for _, offset in handled] == [0, 1, 1]
    assert _committed(kafka_admin, group, topic) == 2
