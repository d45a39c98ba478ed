"""``psinfor lag``: consumer lag in messages and in seconds, per group, topic and partition.

The same figures the stages export as ``psinfor_consumer_lag_messages`` / ``_seconds`` (see
:mod:`pipeline.lag`), printed as a table for a person at a terminal: once, or every few seconds with
``--watch``.
"""

from __future__ import annotations

import argparse
import sys
import threading

from confluent_kafka import KafkaException

from pipeline.errors import RetryableError
from pipeline.kafka_config import librdkafka_config
from pipeline.lag import LagMonitor, PartitionLag
from pipeline.settings import load_settings

LAG_HELP = """\
Show how far consumer groups are behind: messages (high watermark minus committed offset) and seconds
(age of the oldest record the group has not committed). STALLED marks a partition with lag whose
committed offset has not moved for --stall-after seconds (needs --watch to be judged). Reaches the
cluster through PSINFOR_KAFKA__* settings; the groups are never joined.
"""


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``lag``."""
    parser = subcommands.add_parser(
        "lag",
        help="consumer lag in messages and seconds per group/topic/partition",
        description=LAG_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("groups", nargs="+", metavar="GROUP", help="consumer group id(s) to measure")
    parser.add_argument("--watch", type=float, metavar="SECONDS", help="repeat every SECONDS until Ctrl-C")
    parser.add_argument(
        "--stall-after", type=float, default=60.0, help="seconds without progress that mean stalled (60)"
    )
    parser.set_defaults(handler=_run)


def render(lags: list[PartitionLag]) -> str:
    """The lag table, one line per partition, worst (oldest) first."""
    if not lags:
        return "no committed offsets for these groups (nothing consumed yet, or unknown group ids)"
    rows = [("GROUP", "TOPIC", "PART", "COMMITTED", "END", "LAG", "LAG_S", "")]
    for lag in sorted(lags, key=lambda item: (-item.seconds, -item.messages, item.topic, item.partition)):
        rows.append(
            (
                lag.group,
                lag.topic,
                str(lag.partition),
                str(lag.committed),
                str(lag.high_watermark),
                str(lag.messages),
                f"{lag.seconds:.1f}",
                "STALLED" if lag.stalled else "",
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def unreachable(bootstrap_servers: str, error: KafkaException) -> str:
    """What to tell a person when the cluster did not answer (pure)."""
    return (
        f"cannot read the groups' offsets from Kafka at {bootstrap_servers} ({error.args[0]}); is the broker "
        "up (psinfor dev kafka up, or make run), and does PSINFOR_KAFKA__BOOTSTRAP_SERVERS name it?"
    )


def _run(args: argparse.Namespace) -> int:
    settings = load_settings()
    monitor = LagMonitor(
        librdkafka_config(settings.kafka, client_id_suffix="lag"), args.groups, stall_after_s=args.stall_after
    )
    stop = threading.Event()
    try:
        while True:
            try:
                print(render(monitor.sample()), flush=True)
            except KafkaException as exc:
                if args.watch is None:
                    raise RetryableError(unreachable(settings.kafka.bootstrap_servers, exc)) from exc
                # Watching: the broker may come back; say so and try again at the next tick.
                print(unreachable(settings.kafka.bootstrap_servers, exc), file=sys.stderr, flush=True)
            if args.watch is None or stop.wait(args.watch):
                return 0
            print()
    except KeyboardInterrupt:
        return 0
    finally:
        monitor.close()
