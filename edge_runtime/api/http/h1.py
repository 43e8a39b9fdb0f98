"""A small HTTP/1.1 server for our ASGI apps, on httptools' parser.

The sidecar serves a fixed API whose handlers read the whole body and answer with one
response. uvicorn served it before; its configuration, server and protocol modules cost
~1.2 MiB of RSS a device pays for features the API never uses (reload, workers, WebSocket,
lifespan, proxy headers), and ~10 us of every request. This module is what the API needs and
no more:

- keep-alive (HTTP/1.1 by default, HTTP/1.0 with ``Connection: keep-alive``) and pipelining
  (requests answered in order, one at a time per connection; reading pauses while requests
  wait);
- request bodies with ``Content-Length`` or chunked, handed to the app as they arrive, with
  reading paused while more than :data:`HIGH_WATER` bytes wait; ``Expect: 100-continue``
  answered when the app first asks for the body (an app that refuses first, 413 or 401,
  never makes the client send it);
- responses with the app's ``content-length``, or chunked when the app streams without one;
  no body for ``HEAD``, 1xx, 204 and 304;
- limits: request line and headers at most :data:`MAX_HEAD` bytes (431 otherwise), a
  connection idle for ``keep_alive_s`` closed, a request the parser refuses answered 400 and
  the connection closed;
- a graceful stop: listening ends, idle connections close at once, requests in flight get
  ``graceful_s`` to finish before their connections are closed.

No ``Date`` or ``Server`` header is sent (the API never sent them). The app sees an ASGI 3
``http`` scope; ``http.disconnect`` when the client went away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, cast
from urllib.parse import unquote

import httptools

log = logging.getLogger("edge_runtime.api.http")

Scope = dict[str, Any]
Message = dict[str, Any]
App = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
               Awaitable[None]]

MAX_HEAD = 64 * 1024  # request line plus headers, bytes
HIGH_WATER = 256 * 1024  # body bytes buffered before reading pauses

_REASONS = {
    100: "Continue", 200: "OK", 201: "Created", 202: "Accepted", 204: "No Content",
    206: "Partial Content", 301: "Moved Permanently", 302: "Found", 304: "Not Modified",
    307: "Temporary Redirect", 308: "Permanent Redirect", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    408: "Request Timeout", 409: "Conflict", 412: "Precondition Failed",
    413: "Content Too Large", 415: "Unsupported Media Type", 422: "Unprocessable Content",
    429: "Too Many Requests", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout", 507: "Insufficient Storage",
}
_STATUS_LINES: dict[int, bytes] = {}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_DISCONNECT: Message = {"type": "http.disconnect"}


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        reason = _REASONS.get(status, "")
        line = _STATUS_LINES[status] = f"HTTP/1.1 {status} {reason}\r\n".encode("latin-1")
    return line


def _plain(status: int, text: str) -> bytes:
    body = text.encode()
    return (_status_line(status) + b"content-type: text/plain; charset=utf-8\r\n"
            + b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n"
            + body)


class _Request:
    """One request's state: its scope, its body as it arrives, and its response."""

    __slots__ = ("body", "complete", "continue_sent", "expect_continue", "head", "keep_alive",
                 "more", "no_body", "response_started", "scope", "streaming", "task")

    def __init__(self, scope: Scope, keep_alive: bool, expect_continue: bool) -> None:
        self.scope = scope
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.continue_sent = False
        self.body: deque[bytes] = deque()
        self.complete = False
        self.more = asyncio.Event()
        self.response_started = False
        self.streaming = False  # chunked response (the app gave no content-length)
        self.head = scope["method"] == "HEAD"
        self.no_body = self.head  # and for 1xx, 204, 304 once the status is known
        self.task: asyncio.Task[None] | None = None


class Connection(asyncio.Protocol):
    """One client connection: parses requests, runs the app on each in order."""

    def __init__(self, server: H1Server) -> None:
        self.server = server
        self.app = server.app
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.client: tuple[str, int] | None = None
        self.local: tuple[str, int] | None = None
        self.queue: deque[_Request] = deque()  # parsed, waiting for the one in flight
        self.current: _Request | None = None  # the one the app is answering
        self.parsing: _Request | None = None  # whose body the parser is reading
        self.buffered = 0  # body bytes not yet taken by the app
        self.paused = False
        self.closing = False
        self.idle: asyncio.TimerHandle | None = None
        self.writable = asyncio.Event()
        self.writable.set()
        self._pending = b""  # the response head, written with the first body part
        # Per message, while its head is parsed:
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_size = 0

    # ----- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.server.connections.add(self)
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        self.client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None
        self.local = (str(sock[0]), int(sock[1])) if isinstance(sock, tuple) else None
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.closing = True
        self.writable.set()
        if self.idle is not None:
            self.idle.cancel()
            self.idle = None
        for req in (self.current, *self.queue):
            if req is not None:
                req.more.set()  # a body reader sees the disconnect
        self.queue.clear()

    def data_received(self, data: bytes) -> None:
        if self.idle is not None:
            self.idle.cancel()
            self.idle = None
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # An upgrade we do not speak (``h2c``, WebSocket): the request itself is answered
            # in HTTP/1.1, as RFC 9110 allows, and the connection closed after it (the parser
            # reads nothing after an upgrade).
            last = self.queue[-1] if self.queue else self.current
            if last is None:
                self._refuse(400, "protocol upgrades are not supported")
            else:
                last.keep_alive = False
        except httptools.HttpParserError:
            # (A callback's exception comes out as the parser's error: hence the flag.)
            if self._head_size > MAX_HEAD:
                self._refuse(431, "request line and headers over 64 KiB")
            else:
                self._refuse(400, "invalid HTTP request")
        else:
            if self.current is None and not self.closing:
                self._arm_idle()  # a request begun must go on arriving

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    # ----- httptools callbacks

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._head_size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._count_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value))
        self._headers.append((name.lower(), value))

    def _count_head(self, n: int) -> None:
        self._head_size += n
        if self._head_size > MAX_HEAD:
            raise _HeadTooLargeError

    def on_headers_complete(self) -> None:
        parser = self.parser
        url = httptools.parse_url(self._url)
        raw_path = url.path
        method = parser.get_method().decode("ascii")
        version = parser.get_http_version()
        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": version,
            "server": self.local,
            "client": self.client,
            "scheme": "http",
            "method": method,
            "root_path": "",
            "path": _unquote(raw_path),
            "raw_path": raw_path,
            "query_string": url.query or b"",
            "headers": self._headers,
        }
        expect = any(k == b"expect" and v.lower() == b"100-continue" for k, v in self._headers)
        req = _Request(scope, parser.should_keep_alive(), expect)
        self.parsing = req
        if self.current is None and not self.closing:
            self._start(req)
        else:
            self.queue.append(req)
            self._pause()  # pipelined: read no more until the ones before are answered

    def on_body(self, body: bytes) -> None:
        req = self.parsing
        if req is None:
            return
        req.body.append(body)
        req.more.set()
        self.buffered += len(body)
        if self.buffered > HIGH_WATER:
            self._pause()

    def on_message_complete(self) -> None:
        req = self.parsing
        if req is None:
            return
        req.complete = True
        req.more.set()
        self.parsing = None

    # ----- running the app

    def _start(self, req: _Request) -> None:
        self.current = req
        req.task = self.loop.create_task(self._run(req))

    async def _run(self, req: _Request) -> None:
        try:
            await self.app(req.scope, lambda: self._receive(req), lambda m: self._send(req, m))
        except Exception:
            log.exception("unhandled error serving %s %s", req.scope["method"], req.scope["path"])
            if not req.response_started and not self.closing:
                self._write(_plain(500, "internal error; see the sidecar log"))
            req.keep_alive = False
        else:
            if not req.response_started and not self.closing:
                log.error("the app gave no response to %s %s", req.scope["method"],
                          req.scope["path"])
                self._write(_plain(500, "internal error; see the sidecar log"))
                req.keep_alive = False
        self._finished(req)

    async def _receive(self, req: _Request) -> Message:
        if self.closing and not req.body and not req.complete:
            return _DISCONNECT
        if req.expect_continue and not req.continue_sent and not req.complete:
            req.continue_sent = True
            self._write(_CONTINUE)
        while not req.body and not req.complete:
            if self.closing:
                return _DISCONNECT
            req.more.clear()
            self._resume()
            try:
                await asyncio.wait_for(req.more.wait(), self.server.keep_alive_s)
            except TimeoutError:
                log.info("closing a connection whose request body stalled for %.0f s",
                         self.server.keep_alive_s)
                self._close()
                return _DISCONNECT
        if req.body:
            chunk = req.body.popleft() if len(req.body) == 1 else b"".join(req.body)
            req.body.clear()
            self.buffered -= len(chunk)
            if self.buffered <= HIGH_WATER // 2 and not self.queue:
                self._resume()
        else:
            chunk = b""
        return {"type": "http.request", "body": chunk, "more_body": not req.complete}

    async def _send(self, req: _Request, message: Message) -> None:
        if self.closing:
            return  # the client went away; the app finishes, nobody reads the answer
        kind = message["type"]
        if kind == "http.response.start":
            if req.response_started:
                raise RuntimeError("http.response.start sent twice")
            req.response_started = True
            status = int(message["status"])
            parts = [_status_line(status)]
            has_length = False
            for name, value in message.get("headers", ()):
                lname = name.lower()
                if lname == b"content-length":
                    has_length = True
                elif lname == b"connection" and value.lower() == b"close":
                    req.keep_alive = False
                parts += (name, b": ", value, b"\r\n")
            req.no_body = no_body = req.head or status < 200 or status in (204, 304)
            if not has_length and not no_body:
                req.streaming = True
                parts.append(b"transfer-encoding: chunked\r\n")
            if req.keep_alive and self.server.stopping:
                req.keep_alive = False
            if not req.keep_alive:
                parts.append(b"connection: close\r\n")
            parts.append(b"\r\n")
            self._pending = b"".join(parts)
        elif kind == "http.response.body":
            if not req.response_started:
                raise RuntimeError("http.response.body before http.response.start")
            body: bytes = message.get("body", b"")
            more = bool(message.get("more_body", False))
            head, self._pending = self._pending, b""
            if req.no_body:
                out = head
            elif req.streaming:
                out = head + (b"%x\r\n%b\r\n" % (len(body), body) if body else b"")
                if not more:
                    out += b"0\r\n\r\n"
            else:
                out = head + body
            if out:
                self._write(out)
                if not self.writable.is_set():  # a client slow to read a large answer
                    await self.writable.wait()

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _finished(self, req: _Request) -> None:
        self.current = None
        if req.body:  # body parts the app did not read
            self.buffered -= sum(map(len, req.body))
            req.body.clear()
        if self.closing:
            return
        if not req.keep_alive or not req.complete or self.server.stopping:
            # Not read to its end (an early answer): what follows on the wire is the rest of
            # that body, not a request. Close rather than parse it.
            self._close()
            return
        if self.queue:
            self._start(self.queue.popleft())
            if not self.queue:
                self._resume()
        else:
            self._resume()
            self._arm_idle()

    # ----- flow control and closing

    def _pause(self) -> None:
        if not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def _resume(self) -> None:
        if self.paused and self.transport is not None and not self.closing:
            self.paused = False
            self.transport.resume_reading()

    def _arm_idle(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
        self.idle = self.loop.call_later(self.server.keep_alive_s, self._idle_timeout)

    def _idle_timeout(self) -> None:
        self.idle = None
        if self.current is None and not self.queue:
            self._close()

    def _refuse(self, status: int, text: str) -> None:
        if self.current is None:
            self._write(_plain(status, text))
        self._close()

    def _close(self) -> None:
        self.closing = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def shutdown(self) -> None:
        """Close now if idle; else after the response in flight (see ``_finished``)."""
        if self.current is None and not self.queue:
            self._close()


class _HeadTooLargeError(Exception):
    pass


def _unquote(raw: bytes) -> str:
    text = raw.decode("latin-1")
    return unquote(text) if "%" in text else text


class H1Server:
    """Serves ``app`` on sockets already bound and listening."""

    def __init__(self, app: App, *, keep_alive_s: float = 30.0) -> None:
        self.app = app
        self.keep_alive_s = keep_alive_s
        self.loop = asyncio.get_running_loop()
        self.connections: set[Connection] = set()
        self.stopping = False
        self._servers: list[asyncio.AbstractServer] = []

    async def serve(self, sock: Any) -> None:
        """Start accepting on ``sock`` (TCP or Unix, listening)."""
        if sock.family == socket.AF_UNIX:
            server = await self.loop.create_unix_server(lambda: Connection(self), sock=sock)
        else:
            server = await self.loop.create_server(lambda: Connection(self), sock=sock)
        self._servers.append(server)

    async def stop(self, graceful_s: float) -> None:
        """Stop accepting; let requests in flight finish within ``graceful_s``; close all."""
        self.stopping = True
        for server in self._servers:
            server.close()
        for conn in list(self.connections):
            conn.shutdown()
        tasks = [t for c in self.connections for r in (c.current,) if r is not None
                 for t in (r.task,) if t is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=graceful_s)
        for conn in list(self.connections):
            conn._close()
            if conn.current is not None and conn.current.task is not None:
                conn.current.task.cancel()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        self._servers.clear()
