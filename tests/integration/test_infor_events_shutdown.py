"""SIGTERM ends the IMS receiver gracefully: requests finish, the producer flushes, exit code 0."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.timeout(90)
def test_sigterm_flushes_and_exits_zero(kafka_bootstrap: str) -> None:
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PSINFOR_")},
        "PSINFOR_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "PSINFOR_INFOR_EVENTS__TOKENS": "shutdown-test-token",
        "PSINFOR_SERVICE__LOG_FORMAT": "text",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli.main",
            "ingest",
            "infor-events",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.communicate()[0].decode(errors="replace")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the receiver never answered /healthz"
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=60)[0].decode(errors="replace")
        # uvicorn used to re-raise SIGTERM after its shutdown, killing the process (-15) before the
        # producer was flushed and closed.
        assert process.returncode == 0, output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
