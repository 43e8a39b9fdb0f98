"""A tiny real HTTP/1.1 app for tests: a loopback server on a free port (keep-alive, with
Content-Length bodies) that records each request and answers what ``respond`` returns."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus


@dataclass
class Request:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    hang: bool = False  # never answer (for timeouts)
    close: bool = False  # drop the connection without answering (after ``raw``, if set)
    raw: bytes | None = None  # these bytes instead of a formatted reply
    headers: dict[str, str] = field(default_factory=dict)


Respond = Callable[[Request], Awaitable[Reply] | Reply]


class AppServer:
    """``async with AppServer(respond) as app:`` then ``app.port``; ``app.requests``.

    ``port`` 0 picks a free one; a given port lets a test start the app late on the port a
    sidecar already waits for."""

    def __init__(self, respond: Respond | None = None, port: int = 0) -> None:
        self.respond: Respond = respond or (lambda _r: Reply())
        self.requests: list[Request] = []
        self.port = port
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()
        self.connections = 0  # accepted so far

    async def __aenter__(self) -> AppServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._conns):
            task.cancel()
        for task in list(self._conns):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _version = lines[0].split(" ", 2)
                headers = [tuple(line.split(": ", 1)) for line in lines[1:] if line]
                length = next((int(v) for k, v in headers if k.lower() == "content-length"), 0)
                body = await reader.readexactly(length) if length else b""
                request = Request(method, target, [(k, v) for k, v in headers], body)
                self.requests.append(request)
                reply = self.respond(request)
                if not isinstance(reply, Reply):
                    reply = await reply
                if reply.hang:
                    await asyncio.Event().wait()
                if reply.raw is not None:
                    writer.write(reply.raw)
                    await writer.drain()
                    if reply.close:
                        return
                    continue
                if reply.close:
                    return
                try:
                    reason = HTTPStatus(reply.status).phrase
                except ValueError:
                    reason = "Status"
                extra = "".join(f"{k}: {v}\r\n" for k, v in reply.headers.items())
                writer.write(
                    f"HTTP/1.1 {reply.status} {reason}\r\nContent-Length: {len(reply.body)}\r\n"
                    f"Content-Type: {reply.content_type}\r\n{extra}\r\n".encode() + reply.body
                )
                await writer.drain()
        finally:
            writer.close()
            self._conns.discard(task)
