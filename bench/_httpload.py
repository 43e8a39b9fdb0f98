"""A lean HTTP/1.1 load client for benchmarks: keep-alive connections over asyncio streams.

httpx costs a few hundred microseconds of CPU per request, which made the benchmark's own
process the bottleneck at a few hundred requests per second. This client writes prebuilt
request bytes and parses only the status line, the headers and a ``Content-Length`` body.
"""

from __future__ import annotations

import asyncio


class Poster:
    """``conns`` keep-alive connections to ``host:port``; :meth:`post` uses an idle one."""

    def __init__(self, host: str, port: int, path: str, *, conns: int = 16,
                 content_type: str = "application/json") -> None:
        self.host, self.port, self.path = host, port, path
        self.conns = conns
        self._head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                      f"Content-Type: {content_type}\r\nContent-Length: ").encode()
        self._idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue())
        self._all: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> Poster:
        for _ in range(self.conns):
            reader, writer = await asyncio.open_connection(self.host, self.port)
            self._all.append(writer)
            self._idle.put_nowait((reader, writer))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for writer in self._all:
            writer.close()

    async def post(self, body: bytes) -> int:
        """Send one POST and return its status (the body is read and dropped)."""
        reader, writer = await self._idle.get()
        writer.write(self._head + str(len(body)).encode() + b"\r\n\r\n" + body)
        status_line = await reader.readline()
        length = 0
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length:
            await reader.readexactly(length)
        self._idle.put_nowait((reader, writer))
        return int(status_line.split()[1])
