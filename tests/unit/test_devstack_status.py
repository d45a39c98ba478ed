"""The status line's text and the console that keeps it below the scrolling logs."""

from __future__ import annotations

import io

from devstack.status import (
    Console,
    PipelineFigures,
    StatusSnapshot,
    format_duration,
    format_status_line,
    pipeline_topics,
)
from devstack.supervisor import ServiceStatus, State


def status(name: str, state: State, restarts: int = 0) -> ServiceStatus:
    return ServiceStatus(name, "g", "service", state, None, restarts, None)


def test_the_line_counts_services_up_and_shows_the_pipeline_figures() -> None:
    snapshot = StatusSnapshot(
        elapsed_s=133,
        services=[
            status("kafka", State.HEALTHY),
            status("topics", State.DONE),
            status("sink", State.HEALTHY, 2),
        ],
        figures=PipelineFigures(canonical_events_per_s=4.25, sink_lag=37, dlq_entries=1),
    )
    assert format_status_line(snapshot) == (
        "dev up 2m13s | services 3/3 up | canonical 4.2 ev/s | sink lag 37 | DLQ 1 | restarts 2"
    )


def test_services_not_up_are_named_with_their_state_and_unknown_figures_show_a_dash() -> None:
    services = [
        status("kafka", State.HEALTHY),
        status("sink-a", State.BACKOFF, 3),
        status("sink-b", State.STARTING),
        status("sink-c", State.UNHEALTHY),
        status("sink-d", State.STOPPED),
    ]
    line = format_status_line(StatusSnapshot(5, services, PipelineFigures()))
    assert line == (
        "dev up 5s | services 1/5 up (sink-a backoff, sink-b starting, sink-c unhealthy +1) | "
        "canonical - ev/s | sink lag - | DLQ - | restarts 3"
    )


def test_a_narrow_terminal_cuts_the_line() -> None:
    line = format_status_line(StatusSnapshot(5, [status("a", State.HEALTHY)], PipelineFigures()), width=20)
    assert line == "dev up 5s | service…"
    assert len(line) == 20


def test_durations_read_naturally() -> None:
    assert [format_duration(s) for s in (0, 59.9, 60, 3599, 3600, 7325)] == [
        "0s",
        "59s",
        "1m00s",
        "59m59s",
        "1h00m",
        "2h02m",
    ]


def test_on_a_terminal_the_status_line_is_redrawn_below_each_log_line() -> None:
    out = io.StringIO()
    console = Console(out, live=True, colour=True)
    console.show_status("S1")
    console.log_line("\x1b[36m[kafka]\x1b[0m ready")
    console.show_status("S2")
    console.clear_status()
    assert out.getvalue() == (
        "\r\x1b[2KS1" + "\r\x1b[2K\x1b[36m[kafka]\x1b[0m ready\nS1" + "\r\x1b[2KS2" + "\r\x1b[2K"
    )


def test_without_a_terminal_status_lines_are_plain_lines_and_colours_are_dropped() -> None:
    out = io.StringIO()
    console = Console(out, live=False, colour=False)
    console.log_line("\x1b[36m[kafka]\x1b[0m ready")
    console.log_line("[processors] \x1b[?25hstarting")
    console.show_status("S1")
    console.clear_status()
    assert out.getvalue() == "[kafka] ready\n[processors] starting\nS1\n"


def test_the_sampler_watches_the_prefixed_canonical_and_dlq_topics() -> None:
    names = ["raw.prestashop.orders", "canonical.order.v1", "dlq.sink-infor", "state.erp-links"]
    assert pipeline_topics(names, "t1.") == (["t1.canonical.order.v1"], ["t1.dlq.sink-infor"])
    assert pipeline_topics(names) == (["canonical.order.v1"], ["dlq.sink-infor"])
