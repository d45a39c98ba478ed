"""Run the sandbox in-process: uvicorn in a background thread on a free loopback port.

Used by tests and end-to-end runs::

    with SandboxServer(SandboxConfig(keys=(KeyPermissions(key),))) as server:
        httpx.get(f"{server.api_url}orders", auth=(key, ""))

``start()`` returns only once uvicorn accepts connections; ``stop()`` (or leaving the ``with``)
shuts it down cleanly (webhook workers stopped, port released) even when the test failed.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

import uvicorn

from sandbox.prestashop.app import SandboxApp, create_app
from sandbox.prestashop.config import SandboxConfig


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS considers free right now on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class SandboxServer:
    """One sandbox shop served by uvicorn on ``host:port`` (port 0 = pick a free one).

    ``seed_data=False`` starts with empty tables, for loading recorded data (``seed.load_records``
    on ``app.sandbox.store``) before :meth:`start`.
    """

    def __init__(
        self, config: SandboxConfig, *, host: str = "127.0.0.1", port: int = 0, seed_data: bool = True
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.app: SandboxApp = create_app(config, seed_data=seed_data)
        self._server = uvicorn.Server(
            uvicorn.Config(self.app, host=self.host, port=self.port, log_level="warning", lifespan="on")
        )
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """``http://host:port`` (no trailing slash)."""
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        """The webservice base, ``http://host:port/api/``."""
        return f"{self.base_url}/api/"

    def start(self, timeout: float = 10.0) -> SandboxServer:
        """Start serving; returns once the socket accepts connections (RuntimeError on timeout)."""
        self._thread = threading.Thread(target=self._server.run, name=f"ps-sandbox-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"PrestaShop sandbox did not start on {self.base_url}")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Ask uvicorn to exit and wait for the thread (idempotent)."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
