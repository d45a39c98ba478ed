"""``main()`` of the MI poller (``psinfor ingest infor-poller``): settings → clients → :class:`MiPoller`.

One process: one ION API client (the ``.ionapi`` service account, :class:`IonApiAuth` with its token
revoked at shutdown), one producer, the cursors of ``state.watermarks`` loaded once at start, and the
health server. SIGTERM/SIGINT stop it after the current pass; SIGKILL loses nothing either (cursors
are stored only after the acks), it only repeats the interrupted pass's records after the restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator

import httpx

from connectors.infor.auth import IonApiAuth
from connectors.infor.ionapi import load_ionapi
from connectors.infor.mi import MiClient
from ingest.infor_events.mi_poller import FEEDS, STAGE, MiPoller
from ingest.infor_events.routing import raw_topics
from pipeline.health import HealthServer, HealthState
from pipeline.log import configure_logging
from pipeline.producer import PipelineProducer
from pipeline.settings import InforSettings, Settings
from pipeline.watermarks import WatermarkStore
from schemas.catalogue import load_catalogue

WATERMARK_TOPIC = "state.watermarks"


@contextlib.asynccontextmanager
async def mi_client(infor: InforSettings) -> AsyncIterator[MiClient]:
    """An MI client on the ``.ionapi`` service account; its token is revoked when the block ends."""
    credentials = load_ionapi(infor.ionapi_path)
    async with httpx.AsyncClient(timeout=infor.timeout_s) as token_http:
        auth = IonApiAuth(credentials, token_http)
        try:
            async with httpx.AsyncClient(auth=auth, timeout=infor.timeout_s) as http:
                yield MiClient(
                    http,
                    api_base=credentials.api_base,
                    cono=infor.cono,
                    divi=infor.divi,
                    timeout=infor.timeout_s,
                )
        finally:
            await auth.aclose()


def main(settings: Settings) -> int:
    """Run the poller until SIGTERM/SIGINT; returns the exit code (0 after a clean stop).

    Raises ConfigError (the CLI prints it as one line) when the Infor settings are missing.
    """
    infor = settings.require_infor()
    configure_logging(settings.service, stage=STAGE, secrets=settings.secret_values())
    health = HealthState.from_settings(settings.service, STAGE)
    with HealthServer.from_settings(settings.service, health):
        asyncio.run(_serve(settings, infor, health))
    return 0


async def _serve(settings: Settings, infor: InforSettings, health: HealthState) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    events = settings.infor_events
    topics = raw_topics(load_catalogue(), events.topic_prefix)
    with PipelineProducer(settings.kafka, client_id_suffix=STAGE) as producer:
        store = WatermarkStore(
            settings.kafka, producer, events.topic_prefix + WATERMARK_TOPIC, client_id_suffix=f"{STAGE}-state"
        )
        await asyncio.to_thread(store.load)
        async with mi_client(infor) as mi:
            poller = MiPoller(
                mi,
                producer,
                store,
                topics=topics,
                feeds=[FEEDS[name] for name in events.poll_feed_list()],
                page_size=events.poll_page_size,
                overlap_ms=events.poll_overlap_ms,
                ack_timeout_s=events.ack_timeout_s,
            )
            health.set_ready(True)

            await poller.run(stop, events.poll_interval_s, heartbeat=health.heartbeat)
            health.set_ready(False, "stopping")
