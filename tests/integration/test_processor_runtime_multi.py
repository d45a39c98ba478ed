"""The runner's SKIP and multi-emit through the real worker, proven by its records and its counters.

The ``SPREAD`` test flow (``tests.integration.test_processor_runtime_flows``) turns one event into one
record per warehouse, keyed by ``Flow.record_key``; notifications are ``SKIP`` at decode. The worker's
``/metrics`` shows that a notification after a version of its key is counted ``skipped``, not ``stale``
(the check happens before the version comparison).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.records import Headers
from pipeline.settings import RegistrySettings
from schemas.codec import AvroCodec
from schemas.registry import SubjectSchema, register_schemas, registry_client
from tests.conftest import NewTopicFactory
from tests.integration.test_processor_runtime_flows import event_id
from tests.integration.test_processor_runtime_production import _by_key, _consume, _produce

pytestmark = pytest.mark.integration

GroupFactory = Callable[[], str]
REPO = Path(__file__).resolve().parents[2]
NOTIFICATION: Headers = (("event_type", b"notification"),)
STAGE = "processor-test-inventory-spread"


def _spread(item: str, version: int, **warehouses: str) -> bytes:
    return json.dumps(
        {"item": item, "version": version, "changed_at_ms": 1_700_000_000_000, "warehouses": warehouses}
    ).encode()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _outcomes(url: str, topic: str) -> dict[str, float]:
    """The worker's ``psinfor_messages_total`` for this flow and source topic, by outcome."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "psinfor_messages":
            continue
        for sample in family.samples:
            labels = sample.labels
            if sample.name.endswith("_total") and labels["stage"] == STAGE and labels["topic"] == topic:
                found[labels["outcome"]] = sample.value
    return found


@pytest.mark.timeout(90)
def test_skip_is_counted_before_staleness_and_one_event_emits_one_record_per_warehouse(
    kafka_bootstrap: str,
    registry_url: str,
    new_topic: NewTopicFactory,
    new_group: GroupFactory,
    tmp_path: Path,
) -> None:
    source, output, dlq = new_topic(partitions=2), new_topic(partitions=3), new_topic()
    with registry_client(RegistrySettings(url=registry_url)) as client:
        results = register_schemas(client, [SubjectSchema(f"{output}-value", "InventoryLevel")])
        assert all(result.outcome in ("registered", "unchanged") for result in results), results
        codec = AvroCodec(client, "InventoryLevel")

        _produce(
            kafka_bootstrap,
            [
                (source, b"MUG", _spread("MUG", 1, LYO="5", PAR="7", BOR="0"), ()),
                (source, b"MUG", b"not even json", NOTIFICATION),  # skipped at decode, after version 1
                (source, b"MUG", _spread("MUG", 2, LYO="4"), ()),
                (source, b"MUG", _spread("MUG", 2, LYO="4"), ()),  # duplicate
                (source, b"MUG", _spread("MUG", 1, LYO="9"), ()),  # stale
                (source, b"CAP", _spread("CAP", 3), ()),  # no warehouse: nothing to emit, skipped
                (source, b"CAP", _spread("CAP", 4, PAR="1.25"), ()),
            ],
        )
        port = _free_port()
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "PSINFOR_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
            "PSINFOR_REGISTRY__URL": registry_url,
            "PSINFOR_SERVICE__LOG_FORMAT": "text",
            "PSINFOR_SERVICE__HTTP_PORT": str(port),
        }
        argv = [
            sys.executable,
            "-m",
            "processors.main",
            "--flows",
            "tests.integration.test_processor_runtime_flows:SPREAD",
            "--app-id",
            new_group(),
            "--topic",
            f"raw.infor.items={source}",
            "--topic",
            f"canonical.inventory.v1={output}",
            "--topic",
            f"dlq.processors={dlq}",
        ]
        log = tmp_path / "worker.log"
        with log.open("ab") as sink:
            process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            levels = _by_key(_consume(kafka_bootstrap, output, 5, deadline, process), codec, output)
            figures = {
                key: [(datum["meta"]["version"], datum["on_hand"]) for datum in datums]
                for key, datums in levels.items()
            }
            assert figures == {
                "MUG@BOR": [(1, Decimal(0))],
                "MUG@LYO": [(1, Decimal(5)), (2, Decimal(4))],
                "MUG@PAR": [(1, Decimal(7))],
                "CAP@PAR": [(4, Decimal("1.25"))],
            }
            assert str(levels["MUG@PAR"][0]["meta"]["event_id"]) == event_id("MUG", "PAR", 1)

            expected = {"ok": 3.0, "skipped": 2.0, "duplicate": 1.0, "stale": 1.0}
            outcomes: dict[str, float] = {}
            while time.monotonic() < deadline and outcomes != expected:
                outcomes = _outcomes(f"http://127.0.0.1:{port}", source)
                time.sleep(0.2)
            assert outcomes == expected
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            sys.stderr.write(log.read_text(errors="replace")[-4000:])
