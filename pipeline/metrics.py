"""The one catalogue of psinfor's Prometheus metrics; stages import these, never declare their own.

Every name starts with ``psinfor_``. Labels stay bounded: stage, topic, partition, target system,
operation, outcome, reason code. Never an order id, a key or an error message.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Buckets from 1 ms to 60 s: HTTP calls to targets and end-to-end latency share them.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

MESSAGES = Counter(
    "psinfor_messages_total",
    "Messages a stage finished with, by outcome: ok (effect durable), invalid (dead-lettered), "
    "stale (older version dropped), duplicate (already seen event id), skipped (nothing to emit, e.g. "
    "a thin notification), review (routed to the review topic by an anomaly rule).",
    ["stage", "topic", "outcome"],
)
"""Every consumed message ends in exactly one outcome; the sum equals what was committed."""

HANDLER_SECONDS = Histogram(
    "psinfor_handler_duration_seconds",
    "Time spent in a stage's business handler per message, retries included.",
    ["stage"],
    buckets=LATENCY_BUCKETS,
)

RETRIES = Counter(
    "psinfor_retries_total",
    "Retries of the same message after a RetryableError (commit withheld meanwhile).",
    ["stage", "reason"],
)

DLQ_MESSAGES = Counter(
    "psinfor_dlq_messages_total",
    "Messages written to a dead-letter topic, by stage and short reason code.",
    ["stage", "reason"],
)

DLQ_LIMIT_TRIPS = Counter(
    "psinfor_dlq_limit_trips_total",
    "Times a stage stopped because too many messages were invalid (a bad deploy, not bad data).",
    ["stage"],
)

COMMITS = Counter(
    "psinfor_commits_total",
    "Offset commits by outcome (ok, failed).",
    ["stage", "outcome"],
)

PRODUCED = Counter(
    "psinfor_produced_total",
    "Records acknowledged by the broker, by topic.",
    ["topic"],
)

PRODUCE_FAILURES = Counter(
    "psinfor_produce_failures_total",
    "Records the broker did not acknowledge (after librdkafka's own retries), by topic.",
    ["topic"],
)

TARGET_REQUEST_SECONDS = Histogram(
    "psinfor_target_request_duration_seconds",
    "HTTP calls to PrestaShop or Infor, by system, business operation and HTTP status (or 'error').",
    ["system", "operation", "status"],
    buckets=LATENCY_BUCKETS,
)

END_TO_END_SECONDS = Histogram(
    "psinfor_end_to_end_latency_seconds",
    "Source event time to target confirmed, by flow (e.g. order_to_infor).",
    ["flow"],
    buckets=LATENCY_BUCKETS,
)

CONSUMER_LAG_MESSAGES = Gauge(
    "psinfor_consumer_lag_messages",
    "High watermark minus committed offset, per consumer group and partition.",
    ["group", "topic", "partition"],
)

CONSUMER_LAG_SECONDS = Gauge(
    "psinfor_consumer_lag_seconds",
    "Age of the oldest uncommitted record (now minus its timestamp), per consumer group and partition.",
    ["group", "topic", "partition"],
)

PARTITION_STALLED = Gauge(
    "psinfor_partition_stalled",
    "1 when a partition has lag but its committed offset has not moved for the stall window.",
    ["group", "topic", "partition"],
)

CIRCUIT_STATE = Gauge(
    "psinfor_circuit_state",
    "Per-target circuit breaker: 0 closed, 1 half-open (probing), 2 open (partitions paused).",
    ["target"],
)

RATE_LIMIT_WAIT_SECONDS = Histogram(
    "psinfor_rate_limit_wait_seconds",
    "Time a call waited for the per-credential rate limiter.",
    ["target"],
    buckets=LATENCY_BUCKETS,
)

STAGE_UP = Gauge(
    "psinfor_stage_up",
    "1 while the stage's loop is running and ready (partitions assigned or HTTP listening).",
    ["stage"],
)

WEBHOOK_REQUESTS = Counter(
    "psinfor_webhook_requests_total",
    "Webhook requests answered by an ingest receiver, by source, HTTP status and outcome (accepted, "
    "duplicate, or the bounded refusal code such as signature_mismatch or kafka_unavailable).",
    ["source", "status", "outcome"],
)
"""Refusals are expected at some rate (retries, rotation mistakes); a rising 401/503 share is the alarm."""

POLLER_NOTIFICATIONS = Counter(
    "psinfor_poller_notifications_total",
    "Rows named by webhook notifications, by resource and what the poller did: read (re-read and written), "
    "fresh (a read that started after the notification already wrote it), gone (the row no longer exists).",
    ["resource", "outcome"],
)
"""A high fresh share is the orders loop winning the race; a rising lag with few fresh is a slow shop."""

WEBHOOK_PRODUCE_SECONDS = Histogram(
    "psinfor_webhook_produce_seconds",
    "Time from handing a webhook's record to the producer until the broker acknowledged it (or gave up).",
    ["source", "outcome"],
    buckets=LATENCY_BUCKETS,
)
"""The part of a webhook's response time spent waiting for Kafka; the rest is HTTP and verification."""

SINK_IN_FLIGHT_KEYS = Gauge(
    "psinfor_sink_in_flight_keys",
    "Keys a sink is working on right now (applying, retrying or waiting for its target's breaker).",
    ["stage"],
)
"""Pinned at ``sinks.max_in_flight_keys`` means the target is the bottleneck, not Kafka."""

SINK_BUFFERED_RECORDS = Gauge(
    "psinfor_sink_buffered_records",
    "Records a sink has read but not yet committed (queued, in flight, or done behind an unfinished one).",
    ["stage"],
)

SINK_PAUSED_PARTITIONS = Gauge(
    "psinfor_sink_paused_partitions",
    "Assigned partitions a sink has paused, by reason: breaker (target down) or backpressure (buffer full).",
    ["stage", "reason"],
)
