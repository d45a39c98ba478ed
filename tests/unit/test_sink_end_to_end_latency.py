"""The sinks observe end-to-end latency: pipeline received the source event → target confirmed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import REGISTRY

from sinks.runner import _observe_end_to_end


def _samples(stage: str) -> tuple[float, float]:
    labels = {"flow": stage}
    count = REGISTRY.get_sample_value("psinfor_end_to_end_latency_seconds_count", labels) or 0.0
    total = REGISTRY.get_sample_value("psinfor_end_to_end_latency_seconds_sum", labels) or 0.0
    return count, total


def test_a_confirmed_write_is_timed_from_when_the_pipeline_received_the_event() -> None:
    stage = "test-latency-sink"
    before_count, before_sum = _samples(stage)
    received = datetime.now(UTC) - timedelta(seconds=2)
    _observe_end_to_end(stage, {"meta": {"ingested_at": received}})
    count, total = _samples(stage)
    assert count == before_count + 1
    assert 2.0 <= total - before_sum < 60.0


def test_a_record_without_an_aware_ingestion_time_is_not_timed() -> None:
    stage = "test-latency-sink-naive"
    _observe_end_to_end(stage, {"meta": {"ingested_at": datetime(2025, 1, 1)}})
    _observe_end_to_end(stage, {"meta": {}})
    _observe_end_to_end(stage, {})
    assert _samples(stage) == (0.0, 0.0)
