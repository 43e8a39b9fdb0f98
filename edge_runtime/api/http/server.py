"""Serving an :class:`HttpApp` on a socket we bind ourselves.

Where httptools is installed, our own HTTP/1.1 server (``h1.py``) serves it; else uvicorn with
its pure-Python h11 parser (32-bit ARM: httptools has no armv7l wheel and the project never
compiles on the device), imported only then.

Binding first lets port 0 work (the chosen port is known before serving) and lets the runtime
report "ports open" only once the socket listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import importlib.util
import ipaddress
import logging
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_runtime.api.http.app import HttpApp
from edge_runtime.support.lazypkg import without_init

if TYPE_CHECKING:
    from edge_runtime.api.http.h1 import H1Server

log = logging.getLogger("edge_runtime.api.http")

#: uvicorn's HTTP implementation: "httptools" (C, fast) or "h11" (pure Python).
HTTP_PARSER = "httptools" if importlib.util.find_spec("httptools") is not None else "h11"
KEEP_ALIVE_S = 30.0  # an idle connection is closed after this long


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


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) only reaches this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# Owner and group may connect, nobody else: the socket's mode is the access control.
UNIX_SOCKET_MODE = 0o660


def bind_unix(path: Path) -> socket.socket:
    """A listening Unix stream socket at ``path`` with mode 0660.

    A stale socket file (nothing accepts on it: a sidecar that was killed) is replaced; a live
    one (another sidecar answers) or a path that is not a socket raises ``OSError``.
    """
    try:
        st = path.lstat()
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            log.info("replaced the stale socket %s", path)
        else:
            raise OSError(errno.EADDRINUSE, f"another process serves {path}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        # Before listen(): until then nobody can connect, whatever the umask gave the file.
        os.chmod(path, UNIX_SOCKET_MODE)
        sock.listen(1024)
    except OSError:
        sock.close()
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    sock.setblocking(False)
    return sock


def _uvicorn_server(app: HttpApp, graceful_s: float) -> Any:
    """A uvicorn server (h11) for ``app``, without its signal handlers: the runtime owns
    SIGTERM/SIGINT."""
    # uvicorn's ``__init__`` also imports ``uvicorn.main``, its command line: click,
    # multiprocessing and the reload supervisors, 1.6 MiB of RSS a sidecar never uses
    # (docs/performance/footprint.md). So the package module is made without running its
    # ``__init__``, with ``Config`` and ``Server`` (which its submodules take from the package)
    # set from their own modules. A name asked of it later that is not a submodule
    # (``uvicorn.run``, ``__version__``, by whatever else runs in the process), or ``main`` (a
    # function after the ``__init__``: ``rebound``), runs the real ``__init__`` first, so the
    # package behaves as if imported the usual way.
    without_init("uvicorn", rebound=("main",), Config="config:Config", Server="server:Server")
    from uvicorn.config import Config
    from uvicorn.server import Server

    class _Server(Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return _Server(Config(
        app,
        http="h11",
        ws="none",  # no WebSocket in the Dapr API; "auto" would import wsproto or websockets
        lifespan="off",
        access_log=False,
        log_config=None,
        server_header=False,
        date_header=False,
        timeout_graceful_shutdown=max(round(graceful_s), 1),
        timeout_keep_alive=30,
        proxy_headers=False,  # the Dapr API is local; X-Forwarded-* means nothing here
    ))


class HttpServer:
    """One HTTP server on one bound socket; ``stop()`` lets in-flight requests finish."""

    def __init__(self, app: HttpApp, sock: socket.socket, *, name: str, graceful_s: float) -> None:
        self.sock = sock
        self.name = name
        self.app = app
        self.graceful_s = graceful_s
        self._h1: H1Server | None = None
        self._server: Any = None
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The port actually bound (0 on a Unix socket)."""
        if self.sock.family == socket.AF_UNIX:
            return 0
        port: int = self.sock.getsockname()[1]
        return port

    @property
    def unix_path(self) -> Path | None:
        """The socket file when serving on a Unix socket."""
        if self.sock.family != socket.AF_UNIX:
            return None
        return Path(self.sock.getsockname())

    async def start(self) -> None:
        """Start serving; returns once the socket is served."""
        if HTTP_PARSER == "httptools":
            from edge_runtime.api.http.h1 import H1Server

            self._h1 = H1Server(self.app, keep_alive_s=KEEP_ALIVE_S)
            await self._h1.serve(self.sock)
            return
        self._server = _uvicorn_server(self.app, self.graceful_s)
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
        path = self.unix_path
        if self._h1 is not None:
            h1, self._h1 = self._h1, None
            await h1.stop(self.graceful_s)
        elif self._task is not None:
            self._server.should_exit = True
            await self._task
            self._task = None
        else:
            return
        if path is not None:  # a socket file left behind would look like a live sidecar's
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
