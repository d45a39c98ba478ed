"""Helpers shared by the PrestaShop sandbox tests (no tests here).

``client(...)`` builds a small seeded sandbox behind Starlette's in-process TestClient: the real
ASGI app, lifespan included, without sockets. ``xml(response)`` parses an XML answer.
"""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import TracebackType
from typing import Any

from fastapi.testclient import TestClient

from sandbox.prestashop.app import SandboxApp, create_app
from sandbox.prestashop.config import KeyPermissions, SandboxConfig

KEY = "TESTKEY0123456789ABCDEFGHIJKLMNP"
SMALL = SandboxConfig(keys=(KeyPermissions(KEY),), products=60, customers=30, orders=20, seed=7)


def config(**changes: Any) -> SandboxConfig:
    """The small test shop with some settings changed."""
    return replace(SMALL, **changes)


@contextmanager
def client(
    cfg: SandboxConfig | None = None, *, seed_data: bool = True
) -> Iterator[tuple[TestClient, SandboxApp]]:
    """A TestClient authenticated with ``KEY`` (Basic username) plus the app for state access."""
    app = create_app(cfg or SMALL, seed_data=seed_data)
    with TestClient(app, base_url="http://shop.test") as tc:
        tc.auth = (KEY, "")
        yield tc, app


def xml(text: str) -> ET.Element:
    """Parse an XML answer."""
    return ET.fromstring(text)  # noqa: S314 - our own sandbox's output


def body(node: str, **fields: str) -> bytes:
    """A write body ``<prestashop><node><f>v</f>...</node></prestashop>``."""
    inner = "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in fields.items())
    return f'<prestashop xmlns:xlink="http://www.w3.org/1999/xlink"><{node}>{inner}</{node}></prestashop>'.encode()


def error_codes(text: str) -> list[int]:
    """The codes of an XML ``<errors>`` document."""
    return [int(code.text or 0) for code in xml(text).iter("code")]


class Recorder:
    """A loopback HTTP endpoint recording webhook POSTs (headers lower-cased, raw body).

    ``statuses`` are answered in order (then 200), so a test can make the first attempts fail.
    """

    def __init__(self, statuses: tuple[int, ...] = ()) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.statuses = list(statuses)
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                recorder.received.append(
                    ({k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length))
                )
                self.send_response(recorder.statuses.pop(0) if recorder.statuses else 200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
                return

        self._server = HTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}/hook"

    def __enter__(self) -> Recorder:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
