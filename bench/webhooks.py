"""Webhook receiver throughput and latency beside a raw-Kafka baseline.

``python -m bench.webhooks [--bootstrap HOST:PORT] [--requests N] [--connections C] [--generators G]
[--rate R] [--profile FILE]``

1. Uses the broker at ``--bootstrap``, or starts its own single-node KafkaCluster (sandbox launcher).
2. Creates the four raw topics under a unique prefix and starts the receiver in ONE child process
   (:class:`~ingest.prestashop_webhooks.service.ReceiverProcess`: the production server on a free
   loopback port).
3. Drives it with a closed-loop load generator: ``C`` keep-alive HTTP/1.1 connections over asyncio
   streams, each sending the next pre-signed webhook as soon as the previous answer arrived (a minimal
   client so the generator, which shares the machine, costs less than the server). With
   ``--rate R`` the load is open loop instead: request ``i`` is due at ``i / R`` s and its latency
   counts from then, so "N webhooks/s at p99 <= X ms" is measured as stated. The generator runs
   in ``G`` processes of its own (default 1), so it never shares the receiver's or the bench's
   interpreter; ``--generators 0`` keeps it in the bench process.
4. Baseline: the same bodies, keys and headers produced with a bare confluent-kafka ``Producer``
   (acks=all, idempotent, same linger) by ``C`` concurrent waiters, each waiting for its record's ack.
5. Prints requests/s, p50/p99 latency and the CPU time per request of the measured process (the
   receiver; the bench itself for the baseline) side by side. On a shared machine CPU per request is
   the steadier figure: 1e6 / (CPU us/req) is what one core could serve.
6. ``--profile FILE`` samples the receiver during the measured run with py-spy (a dev dependency) and
   writes raw collapsed stacks (one line per stack, ``frame;frame;... count``).

Run by hand; it is not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import gc
import json
import multiprocessing
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from pydantic import SecretStr

from connectors.prestashop.webhook_signature import sign
from ingest.prestashop_webhooks.receiver import RESOURCE_ENTITIES, Entity, raw_topics
from ingest.prestashop_webhooks.service import ReceiverProcess
from pipeline.producer import PRODUCER_DEFAULTS
from pipeline.settings import KafkaSettings, ServiceSettings, Settings, WebhookReceiverSettings
from schemas.catalogue import load_catalogue

SHOP = "bench"
RESOURCES = sorted(RESOURCE_ENTITIES)


@dataclass(frozen=True)
class Result:
    """One measured run."""

    label: str
    count: int
    errors: int
    seconds: float
    latencies: list[float]
    cpu_seconds: float | None = None
    """CPU time (user + system, all threads) the measured process spent on the run, when known."""

    def row(self) -> str:
        ordered = sorted(self.latencies) or [0.0]

        def pct(p: float) -> float:
            return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000

        rate = self.count / self.seconds if self.seconds else 0.0
        cpu = (
            f"{self.cpu_seconds / self.count * 1e6:>12.0f}"
            if self.cpu_seconds and self.count
            else f"{'-':>12}"
        )
        return (
            f"{self.label:<28}{self.count:>9}{rate:>12.0f}{pct(0.50):>10.1f}{pct(0.99):>10.1f}"
            f"{ordered[-1] * 1000:>10.1f}{self.errors:>8}{cpu}"
        )


HEADER = (
    f"{'':<28}{'requests':>9}{'req/s':>12}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}{'errors':>8}"
    f"{'CPU us/req':>12}"
)


@dataclass(frozen=True)
class Webhook:
    """A pre-built, pre-signed webhook."""

    key: bytes
    body: bytes
    headers: list[tuple[str, str]]


def build_webhooks(count: int, secret: str) -> list[Webhook]:
    """``count`` distinct signed webhooks spread over the routed resources (~300-byte bodies)."""
    timestamp = int(time.time())
    webhooks: list[Webhook] = []
    for index in range(count):
        webhook_id = f"msg_{uuid.uuid4().hex}"
        resource = RESOURCES[index % len(RESOURCES)]
        body = json.dumps(
            {
                "id": webhook_id,
                "type": f"{resource}.updated",
                "occurred_at": "2024-05-01T10:22:33+02:00",
                "shop": {"id_shop": 1, "base_url": "https://shop.example"},
                "source_hook": "actionObjectUpdateAfter",
                "resource": {"type": resource, "id": index + 1},
                "data": {"id": index + 1, "old_state": 2, "new_state": 4},
                "ps_version": "8.1.7",
            },
            separators=(",", ":"),
        ).encode()
        headers = [
            ("content-type", "application/json"),
            ("webhook-id", webhook_id),
            ("webhook-timestamp", str(timestamp)),
            ("webhook-signature", sign(secret, webhook_id, timestamp, body)),
        ]
        webhooks.append(Webhook(f"1:{resource}:{index + 1}".encode(), body, headers))  # shop id 1
    return webhooks


# -- the HTTP load generator -----------------------------------------------------------------------


def _request_bytes(host: str, port: int, webhook: Webhook) -> bytes:
    lines = [f"POST /webhooks/prestashop/{SHOP} HTTP/1.1", f"host: {host}:{port}"]
    lines += [f"{name}: {value}" for name, value in webhook.headers]
    lines.append(f"content-length: {len(webhook.body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + webhook.body


@dataclass(frozen=True)
class Pace:
    """Open loop: request ``i`` is due at ``first + i / rate`` (monotonic seconds)."""

    first: float
    rate: float


async def _http_connection(
    host: str,
    port: int,
    requests: list[bytes],
    cursor: list[int],
    latencies: list[float],
    errors: list[int],
    pace: Pace | None,
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while cursor[0] < len(requests):
            index = cursor[0]
            request = requests[index]
            cursor[0] += 1
            if pace is None:
                started = time.monotonic()
            else:
                # Latency counts from when the request was due, not from when a free connection got to
                # send it: a slow server is not let off by the generator waiting for it.
                started = pace.first + index / pace.rate
                delay = started - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            latencies.append(time.monotonic() - started)
            if status != 200:
                errors[0] += 1
    finally:
        writer.close()
        await writer.wait_closed()


@dataclass(frozen=True)
class Share:
    """What one generator process measured: its latencies and its monotonic start/end."""

    latencies: list[float]
    errors: int
    started: float
    finished: float


async def _drive_share(
    host: str, port: int, requests: list[bytes], connections: int, rate: float | None
) -> Share:
    latencies: list[float] = []
    errors = [0]
    cursor = [0]
    started = time.monotonic()
    pace = Pace(started + 0.05, rate) if rate else None
    await asyncio.gather(
        *(_http_connection(host, port, requests, cursor, latencies, errors, pace) for _ in range(connections))
    )
    return Share(latencies, errors[0], started, time.monotonic())


def _generator_process(
    host: str, port: int, requests: list[bytes], connections: int, rate: float | None, start_at: float
) -> Share:
    """One generator process: wait for the common start time, then drive its share."""
    # A collection pause in the generator would be counted as the receiver's latency (in the open
    # loop, from when each request was due). This process lives for one run: no collector at all.
    gc.collect()
    gc.disable()
    time.sleep(max(0.0, start_at - time.monotonic()))
    return asyncio.run(_drive_share(host, port, requests, connections, rate))


def drive_http(
    host: str,
    port: int,
    webhooks: Sequence[Webhook],
    connections: int,
    generators: int,
    server_pid: int,
    rate: float | None = None,
) -> Result:
    """Send every webhook over ``connections`` keep-alive connections, spread over ``generators``
    processes of their own (0: in this process), and measure the server's CPU time.

    Closed loop (each connection sends its next request when the answer came) unless ``rate`` is
    given: then requests are due at that many per second in all, and latency counts from when each
    was due. Requests/s is over the wall time from the first generator's start to the last one's end
    (``time.monotonic`` is one clock for every process on the machine).
    """
    requests = [_request_bytes(host, port, webhook) for webhook in webhooks]
    cpu_before = _cpu_seconds(server_pid)
    if generators == 0:
        shares = [asyncio.run(_drive_share(host, port, requests, connections, rate))]
    else:
        slices = [requests[index::generators] for index in range(generators)]
        per_process = [
            connections // generators + (index < connections % generators) for index in range(generators)
        ]
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(generators, mp_context=context) as pool:
            # Spawned interpreters need a moment to import; start them all at one agreed time.
            start_at = time.monotonic() + 2.0 + 0.5 * generators
            futures = [
                pool.submit(
                    _generator_process,
                    host,
                    port,
                    slices[i],
                    per_process[i],
                    rate / generators if rate else None,
                    start_at,
                )
                for i in range(generators)
            ]
            shares = [future.result() for future in futures]
    cpu_after = _cpu_seconds(server_pid)
    latencies = [latency for share in shares for latency in share.latencies]
    seconds = max(share.finished for share in shares) - min(share.started for share in shares)
    cpu = cpu_after - cpu_before if cpu_before is not None and cpu_after is not None else None
    return Result(
        "receiver (HTTP, acked)", len(latencies), sum(s.errors for s in shares), seconds, latencies, cpu
    )


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` (all threads) from /proc; None where there is none."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # After the command name: state is field 3, utime and stime are fields 14 and 15 (proc(5)).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the raw-Kafka baseline ------------------------------------------------------------------------


async def drive_kafka(
    bootstrap: str, topics: dict[Entity, str], webhooks: Sequence[Webhook], concurrency: int
) -> Result:
    """The same records through a bare confluent-kafka producer; ``concurrency`` waiters, each acked."""
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, **PRODUCER_DEFAULTS}
    producer = Producer(config)
    loop = asyncio.get_running_loop()
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            producer.poll(0.1)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    latencies: list[float] = []
    errors = [0]
    cursor = [0]
    topic_of = {resource: topics[entity] for resource, entity in RESOURCE_ENTITIES.items()}

    async def waiter() -> None:
        while cursor[0] < len(webhooks):
            webhook = webhooks[cursor[0]]
            cursor[0] += 1
            acked: asyncio.Future[KafkaError | None] = loop.create_future()

            def report(
                error: KafkaError | None, _message: object, acked: asyncio.Future[Any] = acked
            ) -> None:
                loop.call_soon_threadsafe(acked.set_result, error)

            topic = topic_of[webhook.key.split(b":")[1].decode()]
            headers: list[tuple[str, str | bytes | None]] = [(n, v.encode()) for n, v in webhook.headers]
            started = time.perf_counter()
            producer.produce(topic, webhook.body, webhook.key, headers=headers, on_delivery=report)
            if await acked is not None:
                errors[0] += 1
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    cpu_before = _cpu_seconds(os.getpid())
    await asyncio.gather(*(waiter() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    cpu_after = _cpu_seconds(os.getpid())
    stop.set()
    poller.join()
    producer.flush(10)
    cpu = cpu_after - cpu_before if cpu_before is not None and cpu_after is not None else None
    return Result("raw Kafka (bare, acked)", len(latencies), errors[0], elapsed, latencies, cpu)


# -- orchestration ---------------------------------------------------------------------------------


def run(
    bootstrap: str,
    requests: int,
    connections: int,
    generators: int,
    profile: Path | None,
    rate: float | None = None,
) -> None:
    """Create topics, start the receiver child, run both measurements and print the table."""
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    topics = raw_topics(load_catalogue(), prefix)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(name, 6, 1) for name in topics.values()]).values():
        future.result(timeout=30)
    settings = Settings(
        kafka=KafkaSettings(bootstrap_servers=bootstrap),
        service=ServiceSettings(log_level="WARNING"),
        webhooks=WebhookReceiverSettings(secrets=SecretStr(secret), shop_keys=SHOP, topic_prefix=prefix),
    )
    spy: subprocess.Popen[bytes] | None = None
    with ReceiverProcess(settings, host="127.0.0.1", port=0) as server:
        port = int(server.url.rsplit(":", 1)[1])
        try:
            warmup = build_webhooks(min(2000, requests), secret)
            drive_http("127.0.0.1", port, warmup, connections, 0, server.pid)
            webhooks = build_webhooks(requests, secret)
            if profile is not None:
                spy = _start_py_spy(server.pid, profile)
            http = drive_http("127.0.0.1", port, webhooks, connections, generators, server.pid, rate)
        finally:
            if spy is not None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its profile on SIGINT
                spy.wait(30)
    kafka = asyncio.run(drive_kafka(bootstrap, topics, build_webhooks(requests, secret), connections))
    where = f"{generators} generator process(es)" if generators else "the generator in the bench process"
    where += f", open loop at {rate:g} req/s" if rate else ", closed loop"
    print(f"\nwebhook receiver, one process, {connections} connections, {requests} distinct webhooks")
    print(f"({where}; the same {os.cpu_count()}-core machine, loopback; CPU = the server process's)\n")
    print(HEADER)
    print(http.row())
    print(kafka.row())
    if profile is not None:
        print(f"\nprofile of the receiver during the measured run (py-spy, raw stacks): {profile}")


def _start_py_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """Sample the receiver with py-spy (a dev dependency) until SIGINT; raw collapsed stacks to ``out``."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    argv = [py_spy, "record", "--pid", str(pid), "--rate", "250", "--format", "raw", "--output", str(out)]
    spy = subprocess.Popen([*argv, "--threads", "--nonblocking"], stdout=subprocess.DEVNULL)
    time.sleep(1.0)  # let it attach before the measured run starts
    return spy


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m bench.webhooks --help``."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.webhooks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--bootstrap", help="an existing broker (host:port); default: start one")
    parser.add_argument("--requests", type=int, default=20_000, help="webhooks to send (default 20000)")
    parser.add_argument("--connections", type=int, default=64, help="concurrent connections (default 64)")
    parser.add_argument(
        "--generators",
        type=int,
        default=1,
        help="load-generator processes sharing the connections (default 1; 0: in the bench process)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        help="open loop: send this many requests/s in all (latency from when each was due); "
        "default: closed loop, as fast as the answers come",
    )
    parser.add_argument(
        "--profile", type=Path, help="write a py-spy profile (raw stacks) of the receiver's measured run here"
    )
    args = parser.parse_args(argv)
    if args.bootstrap:
        run(args.bootstrap, args.requests, args.connections, args.generators, args.profile, args.rate)
        return 0
    from sandbox.kafka.launcher import KafkaCluster

    with (
        tempfile.TemporaryDirectory(prefix="bench-kafka-") as run_dir,
        KafkaCluster(1, Path(run_dir)) as cluster,
    ):
        run(
            cluster.bootstrap_servers,
            args.requests,
            args.connections,
            args.generators,
            args.profile,
            args.rate,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
