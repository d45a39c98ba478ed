"""A 2,000-call burst through the Infor client and its adaptive limiter against the sandbox's quota.

The acceptance quota is 600 requests/min; 2,000 calls at that rate take 200 s, too long for CI. This
test keeps the same number of calls and the same calls-per-window ratio (600 per window) and shortens
the window to 12 s (50 requests/s), so the run takes ~40 s: a faster quota would measure the CI machine
instead of the limiter (two shared cores serve about 70-90 requests/s of client plus sandbox). Time
compression is not free: ``Retry-After`` is whole seconds (RFC 9110), so each 429 pause is five times
larger relative to the window than at 600/min. Utilisation is printed, not asserted (a speed figure):
the true 600/min run (``python -m bench.infor_quota``, figures in the issue note) is where the 95 % goal
is measured. No Kafka: no integration marker.
"""

from __future__ import annotations

import pytest

from bench.infor_quota import run_quota_bench


@pytest.mark.timeout(120)
def test_a_2000_call_burst_finds_the_quota_honours_429s_and_loses_nothing() -> None:
    report = run_quota_bench(
        quota_requests=600, window_s=12.0, calls=2000, concurrency=50, ceiling_factor=1.5
    )
    print("\n" + "\n".join(report.lines()))

    assert report.failed == 0, report.errors
    assert report.succeeded == 2000
    # The limiter started 50 % above the quota and met it: it was answered 429 and cut its rate below
    # where it started (how far below the quota a cut lands depends on timing: x0.7 of 75/s is 52.5/s,
    # and the Retry-After pauses keep the achieved rate at the quota either way) ...
    assert report.throttled >= 1
    assert report.rate_cuts >= 1
    assert report.min_rate < report.ceiling
    # ... and every 429 was honoured: a request refused for the quota was sent again, never dropped.
    assert report.requests == report.succeeded + report.throttled
    assert report.share_429 <= 0.005
    assert report.share_429_after_adapting <= 0.005
    # Utilisation is a speed figure: printed above, measured at the real 600/min by bench.infor_quota
    # (a loaded CI machine must not fail a correct limiter).
