"""``main()`` of the poller: logging, the health server, signal handling, then the service.

SIGTERM and SIGINT ask for a graceful stop: each loop ends after its current page, the producer is
flushed and the watermark persisted. A second signal is not needed; SIGKILL loses nothing either
(positions are persisted only after the acks), it only repeats some records after the restart.
"""

from __future__ import annotations

import asyncio
import signal

from ingest.prestashop_poller.changes import STAGE
from ingest.prestashop_poller.service import PollerService, check_topics
from pipeline.health import HealthServer, HealthState
from pipeline.log import configure_logging
from pipeline.settings import Settings


def main(settings: Settings) -> int:
    """Run the poller until SIGTERM/SIGINT; returns the process exit code (0 after a clean stop).

    Raises ConfigError (the CLI prints it as one line) when the shop settings are missing or a topic
    is absent from the catalogue.
    """
    settings.require_prestashop()
    check_topics(settings)
    configure_logging(settings.service, stage=STAGE, secrets=settings.secret_values())
    health = HealthState.from_settings(settings.service, STAGE)
    with HealthServer.from_settings(settings.service, health):
        asyncio.run(_serve(settings, health))
    return 0


async def _serve(settings: Settings, health: HealthState) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await PollerService(settings, health=health).run(stop)
