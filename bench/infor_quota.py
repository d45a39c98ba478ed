"""How well the adaptive rate limiter uses an ION API quota it is not told: a burst against the sandbox.

``python -m bench.infor_quota`` starts the Infor sandbox (in its own process), gives its gateway a
per-client quota
(default 600 requests per 60 s, a sliding window answering 429 + ``Retry-After``), and fires a burst of
calls (default 2,000 M3 ``GetItmBasic``, 50 concurrent callers) through the real client: ``.ionapi`` ->
OAuth -> :class:`~pipeline.ratelimit.RateLimitedTransport` -> HTTP. The limiter's ceiling is set above
the quota (``--ceiling-factor``) so it has to find the quota from 429s. Printed:

- utilisation: achieved successful calls per second / the quota's rate (a sliding window starting
  empty allows an initial burst, so > 100 % is possible); and against the best any client could do
  for this many calls (every window filled the moment it opens);
- the share of requests answered 429, overall and after the limiter first adapted;
- calls that failed permanently (a 429 retried past its limit, anything else): should be 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from connectors.infor.gateway import open_gateway
from connectors.infor.ionapi import ionapi_from_mapping
from pipeline.errors import PipelineError
from pipeline.ratelimit import AdaptiveRateLimiter, RatePolicy
from sandbox.infor.app import SandboxOptions
from sandbox.infor.server import InforSandboxServer


@dataclass
class QuotaReport:
    """The figures of one run."""

    quota_requests: int
    window_s: float
    calls: int
    concurrency: int
    ceiling: float
    elapsed_s: float
    succeeded: int
    failed: int
    requests: int
    throttled: int
    requests_after_adapting: int
    throttled_after_adapting: int
    rate_cuts: int
    final_rate: float
    min_rate: float
    errors: list[str] = field(default_factory=list)

    @property
    def quota_rate(self) -> float:
        """The quota as requests per second."""
        return self.quota_requests / self.window_s

    @property
    def utilisation(self) -> float:
        """Achieved successful calls per second over the quota's rate."""
        return self.succeeded / self.elapsed_s / self.quota_rate if self.elapsed_s > 0 else 0.0

    @property
    def best_possible_s(self) -> float:
        """The least time any client needs for ``calls`` under a sliding window that starts empty."""
        return (math.ceil(self.calls / self.quota_requests) - 1) * self.window_s

    @property
    def share_429(self) -> float:
        """429 answers over all requests sent."""
        return self.throttled / self.requests if self.requests else 0.0

    @property
    def share_429_after_adapting(self) -> float:
        """429 answers over requests sent after the limiter's first 429 stretch had passed."""
        if not self.requests_after_adapting:
            return 0.0
        return self.throttled_after_adapting / self.requests_after_adapting

    def lines(self) -> list[str]:
        """The human-readable report."""
        best = self.best_possible_s
        return [
            f"quota            {self.quota_requests} requests / {self.window_s:g} s "
            f"({self.quota_rate:g}/s); limiter ceiling {self.ceiling:g}/s (not told the quota)",
            f"burst            {self.calls} calls, {self.concurrency} concurrent callers",
            f"elapsed          {self.elapsed_s:.1f} s (best possible {best:.0f} s, steady-rate "
            f"{self.calls / self.quota_rate:.0f} s)",
            f"succeeded        {self.succeeded}, failed permanently {self.failed}",
            f"utilisation      {self.utilisation:.1%} of the quota rate; "
            f"{(best / self.elapsed_s if self.elapsed_s else 0):.1%} of the best possible",
            f"429 share        {self.share_429:.2%} overall ({self.throttled} of {self.requests} requests), "
            f"{self.share_429_after_adapting:.2%} after adapting "
            f"({self.throttled_after_adapting} of {self.requests_after_adapting})",
            f"limiter          {self.rate_cuts} rate cuts, lowest {self.min_rate:.2f}/s, "
            f"final {self.final_rate:.2f}/s",
        ]


class _Recorder(httpx.AsyncBaseTransport):
    """Below the limiter: sees every request that really goes out, 429 replays included."""

    def __init__(self, inner: httpx.AsyncBaseTransport, limiter: AdaptiveRateLimiter) -> None:
        self._inner = inner
        self._limiter = limiter
        self.requests = 0
        self.throttled = 0
        self.requests_after = 0
        self.throttled_after = 0
        self._adapted = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        if "/as/" in request.url.path:  # the authorization server is outside the quota
            return response
        throttled = response.status_code == 429
        self.requests += 1
        self.throttled += throttled
        if self._adapted:
            self.requests_after += 1
            self.throttled_after += throttled
        elif not throttled and self._limiter.stats.cuts > 0:
            # The first success after the first cut: the limiter has adapted once; count from here.
            self._adapted = True
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


_RUN_CLI = "import sys; from cli.main import main; sys.exit(main(sys.argv[1:]))"


@contextlib.contextmanager
def _sandbox(*, separate_process: bool) -> Iterator[tuple[str, dict[str, Any]]]:
    """A running sandbox: (base URL, .ionapi document). In its own process unless told otherwise,
    so that the client's and the server's CPU time do not share one interpreter lock."""
    if not separate_process:
        with InforSandboxServer(SandboxOptions(items=50, customers=5)) as server:
            yield server.base_url, server.ionapi()
        return
    with tempfile.TemporaryDirectory(prefix="infor-quota-") as tmp:
        ionapi = Path(tmp) / "sandbox.ionapi"
        argv = ["sandbox", "infor", "--port", "0", "--items", "50", "--ionapi-out", str(ionapi)]
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys; from cli.main import main; sys.exit(main(sys.argv[1:]))",
                *argv,
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            document = _wait_ready(ionapi, process)
            yield str(document["iu"]), document
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_ready(ionapi: Path, process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the Infor sandbox exited with {process.returncode}")
        if ionapi.exists():
            with contextlib.suppress(ValueError, httpx.TransportError):
                document: dict[str, Any] = json.loads(ionapi.read_text(encoding="utf-8"))
                if httpx.get(str(document["iu"]) + "/_sandbox/gateway", timeout=2).is_success:
                    return document
        time.sleep(0.1)
    raise RuntimeError("the Infor sandbox did not become ready")


async def _burst(
    base_url: str,
    ionapi: dict[str, Any],
    *,
    calls: int,
    concurrency: int,
    policy: RatePolicy,
    quota_requests: int,
    window_s: float,
) -> QuotaReport:
    async with httpx.AsyncClient(base_url=base_url + "/_sandbox", timeout=30) as admin:
        response = await admin.put(
            "/gateway", json={"quota_requests": quota_requests, "quota_window_s": window_s}
        )
        response.raise_for_status()
    limiter = AdaptiveRateLimiter(policy, target="infor")
    recorder = _Recorder(httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=concurrency)), limiter)
    gateway = open_gateway(ionapi_from_mapping(ionapi), limiter=limiter, transport=recorder)
    mi = gateway.mi(cono=100, divi="AAA")
    remaining = list(range(calls))
    succeeded = 0
    errors: list[str] = []

    async def caller() -> None:
        nonlocal succeeded
        while remaining:
            n = remaining.pop()
            try:
                await mi.execute("MMS200MI", "GetItmBasic", {"ITNO": f"SKU-{1000 + (n % 40) + 2}"})
            except PipelineError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
            else:
                succeeded += 1

    started = time.monotonic()
    try:
        await gateway.auth.token()  # log in first: the burst measures the quota, not the login
        started = time.monotonic()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
    finally:
        elapsed = time.monotonic() - started
        await gateway.aclose()
    return QuotaReport(
        quota_requests=quota_requests,
        window_s=window_s,
        calls=calls,
        concurrency=concurrency,
        ceiling=policy.ceiling,
        elapsed_s=elapsed,
        succeeded=succeeded,
        failed=len(errors),
        requests=recorder.requests,
        throttled=recorder.throttled,
        requests_after_adapting=recorder.requests_after,
        throttled_after_adapting=recorder.throttled_after,
        rate_cuts=limiter.stats.cuts,
        final_rate=limiter.rate,
        min_rate=limiter.stats.min_rate,
        errors=errors[:5],
    )


def run_quota_bench(
    *,
    quota_requests: int = 600,
    window_s: float = 60.0,
    calls: int = 2000,
    concurrency: int = 50,
    ceiling_factor: float = 1.5,
    separate_process: bool = True,
) -> QuotaReport:
    """Run one burst against a fresh sandbox and return its figures."""
    policy = RatePolicy(ceiling=ceiling_factor * quota_requests / window_s)
    with _sandbox(separate_process=separate_process) as (base_url, ionapi):
        return asyncio.run(
            _burst(
                base_url,
                ionapi,
                calls=calls,
                concurrency=concurrency,
                policy=policy,
                quota_requests=quota_requests,
                window_s=window_s,
            )
        )


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run the burst, print the report; exit 1 if a call failed permanently."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.infor_quota",
        description="Fire a burst of M3 MI calls through the Infor client and its adaptive rate limiter "
        "at an in-process Infor sandbox whose gateway enforces a per-client quota (sliding window, "
        "429 + Retry-After), and report quota utilisation and the share of 429 answers.",
    )
    parser.add_argument("--quota", type=int, default=600, help="requests allowed per window (default 600)")
    parser.add_argument("--window", type=float, default=60.0, help="quota window in seconds (default 60)")
    parser.add_argument("--calls", type=int, default=2000, help="calls in the burst (default 2000)")
    parser.add_argument("--concurrency", type=int, default=50, help="concurrent callers (default 50)")
    parser.add_argument(
        "--ceiling-factor",
        type=float,
        default=1.5,
        help="limiter ceiling as a multiple of the quota rate; > 1 makes it find the quota (default 1.5)",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="serve the sandbox from this process (default: its own process, as a real gateway is)",
    )
    args = parser.parse_args(argv)
    report = run_quota_bench(
        quota_requests=args.quota,
        window_s=args.window,
        calls=args.calls,
        concurrency=args.concurrency,
        ceiling_factor=args.ceiling_factor,
        separate_process=not args.in_process,
    )
    for line in report.lines():
        print(line)
    for error in report.errors:
        print(f"error            {error}", file=sys.stderr)
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
