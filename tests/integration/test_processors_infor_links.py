"""ErpLinkStore against the real broker: links written to a compacted state.erp-links topic are found,
a link written while the store runs is found by the very next lookup, and a restart reloads them all."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from confluent_kafka import Producer

from pipeline.settings import KafkaSettings
from processors.erp_links import (
    CustomerLink,
    ErpLinkStore,
    OrderLink,
    customer_link_record,
    order_link_record,
)

pytestmark = pytest.mark.integration

COMPACTED = {"cleanup.policy": "compact"}


def _write(bootstrap: str, topic: str, records: list[tuple[bytes, bytes | None]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
    failures: list[str] = []

    def report(error: object, _message: object) -> None:
        if error is not None:
            failures.append(str(error))

    for key, value in records:
        producer.produce(topic, value=value, key=key, on_delivery=report)
    assert producer.flush(15) == 0
    assert failures == []


@pytest.mark.timeout(60)
def test_links_are_found_followed_and_reloaded(kafka_bootstrap: str, new_topic: Callable[..., str]) -> None:
    topic = new_topic(partitions=3, config=COMPACTED)
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    gone_key, gone_value = order_link_record(OrderLink("1:1", "100", "GONE", "1000000001"))
    _write(
        kafka_bootstrap,
        topic,
        [
            # The sink's two writes of one order: the reference before the create, then the ORNO.
            order_link_record(OrderLink("1:1042", "100", "XKBKNABJK")),
            order_link_record(OrderLink("1:1042", "100", "XKBKNABJK", "1000012345")),
            customer_link_record(CustomerLink("1:42", "100", "PS000042")),
            (gone_key, gone_value),
            (gone_key, None),  # tombstone: the link is gone
            (b"order:1:bad", b"not json"),  # another writer's bytes never break the store
        ],
    )

    store = ErpLinkStore(kafka, topic, sync_timeout_s=10.0)
    try:
        assert store.start() == 2
        assert store.by_erp_order("100", "1000012345") == "1:1042"
        assert store.by_erp_order("", "1000012345") == "1:1042"
        assert store.by_erp_order("200", "1000012345") is None
        assert store.by_reference("XKBKNABJK") == "1:1042"
        assert store.by_erp_customer("100", "PS000042") == "1:42"
        assert store.by_erp_order("100", "1000000001") is None
        assert store.by_reference("GONE") is None

        # Written after the load: the miss waits for the store to reach the topic's end, no sleep.
        _write(kafka_bootstrap, topic, [order_link_record(OrderLink("2:7", "100", "LATEREF", "1000099999"))])
        assert store.by_erp_order("100", "1000099999") == "2:7"
    finally:
        store.close()

    restarted = ErpLinkStore(kafka, topic)
    try:
        assert restarted.start() == 3
        assert restarted.index.by_erp_order("100", "1000099999") == "2:7"
        assert restarted.index.by_reference("XKBKNABJK") == "1:1042"
        assert restarted.index.by_erp_customer("100", "PS000042") == "1:42"
        assert restarted.index.by_erp_order("100", "1000000001") is None
    finally:
        restarted.close()


@pytest.mark.timeout(30)
def test_empty_topic_loads_and_misses_stay_misses(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(partitions=1, config=COMPACTED)
    store = ErpLinkStore(KafkaSettings(bootstrap_servers=kafka_bootstrap), topic)
    try:
        assert store.start() == 0
        assert store.by_erp_order("100", "1000012345") is None
        assert store.by_erp_customer("100", "C1") is None
    finally:
        store.close()
