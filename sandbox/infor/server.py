"""Run the sandbox in-process on a free loopback port (tests, end-to-end runs) or in the foreground (CLI).

``with InforSandboxServer(SandboxOptions(...)) as server:`` starts uvicorn in a background thread,
waits until it listens, and exposes ``base_url``, ``ionapi()`` and the :class:`InforSandbox` itself
(read it only from tests that tolerate races; change it through the admin API).
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn

from sandbox.infor.app import InforSandbox, SandboxOptions


class InforSandboxServer:
    """An Infor sandbox served by uvicorn on ``host:port`` (port 0 picks a free one)."""

    def __init__(
        self, options: SandboxOptions | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.sandbox = InforSandbox(options)
        self.host = host
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(self.sandbox.asgi(), log_level="warning", lifespan="on", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """``http://host:port`` (the ``.ionapi`` ``iu``)."""
        return f"http://{self.host}:{self.port}"

    @property
    def tenant_url(self) -> str:
        """``iu/ti``: the API base every gateway call starts with."""
        return f"{self.base_url}/{self.sandbox.tenant.tenant_id}"

    def ionapi(self) -> dict[str, Any]:
        """The ``.ionapi`` document for this server."""
        return self.sandbox.tenant.ionapi(self.base_url)

    def write_ionapi(self, path: Path) -> Path:
        """Write the ``.ionapi`` file for this server."""
        return self.sandbox.tenant.write_ionapi(path, self.base_url)

    def start(self, timeout_s: float = 10.0) -> InforSandboxServer:
        """Serve in a background thread; return once the server accepts connections."""
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name="infor-sandbox", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the Infor sandbox did not start")
            time.sleep(0.01)
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (the CLI)."""
        self._server.run(sockets=[self._socket])

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._socket.close()

    def __enter__(self) -> InforSandboxServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
