"""A small HTTP/1.1 client over asyncio streams, for the calls the sidecar makes to its app.

httpx costs ~0.3-0.5 ms of CPU per request (URL and header models, the connection pool's
bookkeeping, anyio's cancel scopes), about 60 % of the ordered delivery loop's time in a
py-spy profile of the subscriber sidecar (docs/performance.md). The app is a local process
that speaks plain HTTP/1.1, so :class:`Http1Client` does just that: keep-alive connections,
the request written in one buffer, and the reply read by ``Content-Length``, chunked encoding
or until the connection closes.

What it sends: the request line, ``Host``, the caller's headers (names and value bytes as
given), ``Content-Length`` when there is a body (always for ``POST``/``PUT``/``PATCH``). No
``Accept-Encoding``: the body comes back as the app wrote it, never compressed.

Errors: any transport failure, a reply that is not HTTP/1.x, and the timeout (which bounds
the whole call: waiting for a connection, connecting, sending and reading the reply) raise
:class:`Http1Error`, whose ``kind`` says which (``ConnectError``, ``Timeout``,
``RemoteProtocolError``, ``ReadError``); the caller turns it into its own error. A connection
that failed, timed out, was cancelled mid-call or was asked to close is closed, never reused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

__all__ = ["Http1Client", "Http1Error", "Reply"]

_MAX_LINE = 64 * 1024  # the longest status or header line (and chunk-size line) accepted
_MAX_HEADERS = 200
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

Reply = tuple[int, bytes, dict[str, str]]
"""Status, body, headers (names lower-cased; a repeated header's values joined by ", ")."""


class Http1Error(Exception):
    """A call failed; ``kind`` names the failure as httpx would (``ConnectError``, ...)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


_Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class Http1Client:
    """Keep-alive connections to ``host:port`` (at most ``max_connections`` at once).

    ``host`` is an address (IPv6 without brackets). Coroutine-safe: each call takes an idle
    connection (or opens one) for itself.
    """

    def __init__(self, host: str, port: int, *, max_connections: int = 64) -> None:
        self.host = host
        self.port = port
        authority = f"[{host}]" if ":" in host else host
        self._host_line = f"Host: {authority}:{port}\r\n".encode("latin-1")
        self._idle: list[_Conn] = []
        self._slots = asyncio.Semaphore(max(1, max_connections))
        self._closed = False

    async def close(self) -> None:
        """Close the idle connections; calls in progress close theirs when they end."""
        self._closed = True
        idle, self._idle = self._idle, []
        for _reader, writer in idle:
            writer.close()

    async def request(
        self, method: str, target: str, headers: Sequence[tuple[bytes, bytes]], body: bytes,
        *, timeout_s: float,
    ) -> Reply:
        """One call; the reply whatever its status. Raises :class:`Http1Error`."""
        head = [f"{method} {target} HTTP/1.1\r\n".encode("latin-1"), self._host_line]
        for name, value in headers:
            head += (name, b": ", value, b"\r\n")
        if body or method in _BODY_METHODS:
            head.append(b"Content-Length: %d\r\n" % len(body))
        head.append(b"\r\n")
        head.append(body)
        data = b"".join(head)
        try:
            async with asyncio.timeout(timeout_s):
                async with self._slots:
                    return await self._call(data, method == "HEAD")
        except TimeoutError:
            raise Http1Error("Timeout", f"no reply within {timeout_s:g} s") from None

    async def _call(self, data: bytes, head_only: bool) -> Reply:
        conn = self._take()
        if conn is None:
            try:
                conn = await asyncio.open_connection(self.host, self.port, limit=_MAX_LINE)
            except OSError as exc:
                raise Http1Error("ConnectError", str(exc) or type(exc).__name__) from exc
        reader, writer = conn
        keep = False
        try:
            writer.write(data)
            status, body, headers, keep = await _read_reply(reader, head_only)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ValueError) as exc:
            raise _failure(exc) from exc
        finally:
            if keep and not self._closed:
                self._idle.append(conn)
            else:
                writer.close()
        return status, body, headers

    def _take(self) -> _Conn | None:
        """An idle connection still open (the app may have closed one since)."""
        while self._idle:
            reader, writer = self._idle.pop()
            if reader.at_eof() or writer.is_closing() or _has_data(reader):
                writer.close()
                continue
            return reader, writer
        return None


def _has_data(reader: asyncio.StreamReader) -> bool:
    """Bytes arrived on an idle connection (nothing was asked): it is out of step. (The
    reader's buffer has no public accessor; without one, this check is skipped.)"""
    buffer = getattr(reader, "_buffer", None)
    return bool(buffer)


def _failure(exc: BaseException) -> Http1Error:
    if isinstance(exc, asyncio.IncompleteReadError):
        return Http1Error("RemoteProtocolError", "the app closed the connection without a"
                          " complete reply")
    if isinstance(exc, (asyncio.LimitOverrunError, ValueError)):
        return Http1Error("RemoteProtocolError", f"malformed reply: {exc}")
    return Http1Error("ReadError", str(exc) or type(exc).__name__)


async def _read_reply(
    reader: asyncio.StreamReader, head_only: bool
) -> tuple[int, bytes, dict[str, str], bool]:
    """Status, body, headers, and whether the connection may be used again."""
    while True:
        line = await reader.readuntil(b"\r\n")
        version, _, rest = line.partition(b" ")
        if not version.startswith(b"HTTP/1."):
            raise ValueError(f"not an HTTP/1.x status line: {line[:80]!r}")
        code = rest[:3]
        if not code.isdigit():
            raise ValueError(f"bad status line: {line[:80]!r}")
        status = int(code)
        headers = await _read_headers(reader)
        if not 100 <= status < 200 or status == 101:
            break  # an interim 1xx reply (100 Continue ...) is followed by the real one
    connection = headers.get("connection", "").lower()
    keep = "close" not in connection and (version != b"HTTP/1.0" or "keep-alive" in connection)
    if head_only or status in (204, 304) or 100 <= status < 200:
        return status, b"", headers, keep
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return status, await _read_chunked(reader), headers, keep
    length = headers.get("content-length")
    if length is not None:
        size = int(length.split(",")[0].strip())
        if size < 0:
            raise ValueError(f"bad Content-Length {length!r}")
        return status, (await reader.readexactly(size) if size else b""), headers, keep
    return status, await reader.read(), headers, False  # the body ends with the connection


async def _read_headers(reader: asyncio.StreamReader) -> dict[str, str]:
    headers: dict[str, str] = {}
    for _ in range(_MAX_HEADERS):
        line = await reader.readuntil(b"\r\n")
        if line == b"\r\n":
            return headers
        name, sep, value = line.partition(b":")
        if not sep:
            raise ValueError(f"bad header line: {line[:80]!r}")
        key = name.strip().decode("latin-1").lower()
        text = value.strip().decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    raise ValueError(f"more than {_MAX_HEADERS} headers")


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    while True:
        line = await reader.readuntil(b"\r\n")
        size = int(line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, ignored
                pass
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise ValueError("a chunk is not followed by CRLF")
