"""Real gRPC apps for tests.

* :class:`SdkApp`: the official SDK's ``dapr.ext.grpc.App`` (a sync ``grpc.server`` on a thread
  pool), serving on a fixed free loopback port from a thread. ``setup`` registers the
  handlers on each fresh ``App``, so :meth:`SdkApp.stop` then :meth:`SdkApp.start` is an app
  restart on the same port.
* :class:`RawApp`: an ``AppCallback`` servicer on a ``grpc.aio`` server in the test's loop,
  for what the SDK hides (the invoke verb and query string) or cannot do (error statuses);
  methods it does not override answer UNIMPLEMENTED, as generated servicers do.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
from dapr.ext.grpc import App
from dapr.proto.runtime.v1 import appcallback_pb2_grpc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_listening(port: int, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
        else:
            return


class SdkApp:
    """``dapr.ext.grpc.App`` on ``127.0.0.1:port``; ``setup(app)`` registers the handlers."""

    def __init__(self, setup: Callable[[App], None], port: int | None = None) -> None:
        self.setup = setup
        self.port = port or free_port()
        self._app: App | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> SdkApp:
        app = App()
        self.setup(app)
        thread = threading.Thread(target=app.run, args=(self.port, "127.0.0.1"), daemon=True)
        thread.start()
        self._app, self._thread = app, thread
        _wait_listening(self.port)
        return self

    def stop(self) -> None:
        if self._app is not None:
            self._app.stop()
        if self._thread is not None:
            self._thread.join(10)
        self._app = self._thread = None

    def __enter__(self) -> SdkApp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RawApp:
    """``async with RawApp(servicer) as app:`` serves ``servicer`` (an
    ``AppCallbackServicer`` subclass with async methods) on ``app.port``, and ``alpha`` (an
    ``AppCallbackAlphaServicer``) when given."""

    def __init__(self, servicer: Any, alpha: Any = None) -> None:
        self.servicer = servicer
        self.alpha = alpha
        self.port = 0
        self._server: Any = None

    async def __aenter__(self) -> RawApp:
        server = grpc.aio.server()
        appcallback_pb2_grpc.add_AppCallbackServicer_to_server(self.servicer, server)
        if self.alpha is not None:
            appcallback_pb2_grpc.add_AppCallbackAlphaServicer_to_server(self.alpha, server)
        self.port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self._server = server
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._server.stop(None)


async def until(cond: Callable[[], bool], within: float = 10.0) -> None:
    """Wait for ``cond()`` (polling), failing the test after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)
