"""Serving an :class:`HttpApp` with uvicorn (httptools) on a socket we bind ourselves.

Binding first lets port 0 work (the chosen port is known before serving) and lets the runtime
report "ports open" only once the socket listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn

from edge_runtime.api.http.app import HttpApp

log = logging.getLogger("edge_runtime.api.http")


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket (``SO_REUSEADDR``); raises ``OSError`` when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the runtime owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpServer:
    """One uvicorn server on one bound socket; ``stop()`` lets in-flight requests finish."""

    def __init__(self, app: HttpApp, sock: socket.socket, *, name: str, graceful_s: float) -> None:
        self.sock = sock
        self.name = name
        config = uvicorn.Config(
            app,
            http="httptools",
            ws="none",  # no WebSocket in the Dapr API; "auto" would import wsproto or websockets
            lifespan="off",
            access_log=False,
            log_config=None,
            server_header=False,
            date_header=False,
            timeout_graceful_shutdown=max(round(graceful_s), 1),
            timeout_keep_alive=30,
            proxy_headers=False,  # the Dapr API is local; X-Forwarded-* means nothing here
        )
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The port actually bound."""
        port: int = self.sock.getsockname()[1]
        return port

    async def start(self) -> None:
        """Start serving; returns once uvicorn has started."""
        self._task = asyncio.create_task(
            self._server.serve(sockets=[self.sock]), name=f"http:{self.name}"
        )
        while not self._server.started:
            if self._task.done():
                await self._task
                raise RuntimeError(f"the {self.name} server stopped while starting")
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        """Stop accepting, wait for in-flight requests (up to the graceful period), close."""
        if self._task is None:
            return
        self._server.should_exit = True
        await self._task
        self._task = None
