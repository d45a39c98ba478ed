"""Run the processor worker as ``psinfor process`` runs it: a ``python -m processors.main`` subprocess.

For integration tests that need the real worker (faust, the runner, start-up seeding) on the session's
broker and registry, with catalogue topics renamed to the test's own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@contextmanager
def processor_worker(
    *,
    bootstrap: str,
    registry_url: str,
    flows: Sequence[str],
    app_id: str,
    topics: Mapping[str, str],
    log: Path,
) -> Iterator[subprocess.Popen[bytes]]:
    """The running worker of ``flows`` (catalogue name → actual topic in ``topics``), output in ``log``.

    Stopped with SIGTERM on exit (killed after 20 s), even when the test failed; the log's tail is
    written to stderr so a failure shows what the worker said.
    """
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PSINFOR_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "PSINFOR_REGISTRY__URL": registry_url,
        "PSINFOR_SERVICE__LOG_FORMAT": "text",
    }
    # The broker's minimum session timeout: a stopped worker's partitions move on within seconds.
    argv = [sys.executable, "-m", "processors.main", "--flows", ",".join(flows), "--app-id", app_id]
    argv += ["--session-timeout", "6"]
    for name, actual in topics.items():
        argv += ["--topic", f"{name}={actual}"]
    with log.open("ab") as sink:
        process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        sys.stderr.write(log.read_text(errors="replace")[-4000:])
