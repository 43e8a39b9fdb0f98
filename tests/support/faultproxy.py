"""A TCP proxy that tests put between two real peers (a sidecar and mosquitto) to inject
network faults at run time::

    proxy = FaultProxy("127.0.0.1", broker.port)
    await proxy.start()             # listens on 127.0.0.1:proxy.port; forwards both ways
    proxy.pause()                   # half-open partition: nothing forwarded, TCP stays up
    proxy.slow(delay_s=0.2)         # every chunk waits 200 ms before it is forwarded
    proxy.slow(bytes_per_s=1024)    # a 1 KB/s link (both directions, each on its own)
    await proxy.cut()               # close both sides of every connection now
    await proxy.cut(after_bytes=37, direction="up")  # ...after 37 more bytes: mid-packet
    proxy.refuse = True             # new connections are accepted and closed at once
    proxy.resume()                  # forward normally again (clears pause, slow, refuse)
    await proxy.stop()

"up" is client → server (sidecar → broker), "down" is server → client. While paused the
proxy stops reading, so the kernel buffers fill and the sender sees TCP backpressure, as on a
link whose far end went silent. Counters (``bytes_up``, ``bytes_down``, ``connections``,
``cuts``) let a scenario print what happened. Everything runs on the test's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

__all__ = ["FaultProxy"]

_CHUNK = 16 * 1024


@dataclass(eq=False)  # kept in a set: hashed by identity
class _Conn:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def abort(self) -> None:
        for writer in (self.client, self.server):
            writer.transport.abort()


@dataclass
class _CutPlan:
    budget: int
    direction: str  # "up", "down" or "both"
    done: asyncio.Event = field(default_factory=asyncio.Event)


class FaultProxy:
    """One listening socket forwarding to ``target_host:target_port``; see the module doc."""

    def __init__(self, target_host: str, target_port: int, *, port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.port = port
        self.refuse = False
        self.delay_s = 0.0
        self.bytes_per_s: float | None = None
        self.bytes_up = 0
        self.bytes_down = 0
        self.connections = 0
        self.cuts = 0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._conns: set[_Conn] = set()
        self._server: asyncio.Server | None = None
        self._plan: _CutPlan | None = None

    @property
    def url(self) -> str:
        """``tcp://127.0.0.1:PORT`` of the proxy (what the sidecar is told the broker is)."""
        return f"tcp://127.0.0.1:{self.port}"

    @property
    def paused(self) -> bool:
        return not self._flowing.is_set()

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Close the listener and every connection."""
        if self._server is not None:
            self._server.close()
        self._flowing.set()
        await self._abort_all()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None

    def pause(self) -> None:
        """Stop forwarding in both directions; connections stay open (a silent far end)."""
        self._flowing.clear()

    def slow(self, *, delay_s: float = 0.0, bytes_per_s: float | None = None) -> None:
        """Delay every forwarded chunk by ``delay_s`` and/or cap each direction's rate."""
        self.delay_s = delay_s
        self.bytes_per_s = bytes_per_s

    def resume(self) -> None:
        """Back to plain forwarding: no pause, no slowness, new connections accepted."""
        self.delay_s = 0.0
        self.bytes_per_s = None
        self.refuse = False
        self._flowing.set()

    async def cut(self, *, after_bytes: int | None = None, direction: str = "both",
                  limit_s: float = 30.0) -> None:
        """Close both sides of every current connection: now, or once ``after_bytes`` more
        bytes went ``direction`` (so the cut lands inside a packet). Returns after the cut;
        raises ``TimeoutError`` if that many bytes did not flow within ``limit_s``."""
        if after_bytes is None or after_bytes <= 0:
            await self._abort_all()
            return
        plan = _CutPlan(after_bytes, direction)
        self._plan = plan
        try:
            await asyncio.wait_for(plan.done.wait(), limit_s)
        finally:
            self._plan = None

    async def _abort_all(self) -> None:
        conns, self._conns = list(self._conns), set()
        if conns:
            self.cuts += 1
        me = asyncio.current_task()
        for conn in conns:
            conn.abort()
            for task in conn.tasks:
                if task is not me:
                    task.cancel()
        for conn in conns:
            for task in conn.tasks:
                if task is not me:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refuse:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        conn = _Conn(writer, up_writer)
        self._conns.add(conn)
        conn.tasks = [
            asyncio.create_task(self._pump(conn, reader, up_writer, "up")),
            asyncio.create_task(self._pump(conn, up_reader, writer, "down")),
        ]

    async def _pump(self, conn: _Conn, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter, direction: str) -> None:
        try:
            while True:
                await self._flowing.wait()  # paused: stop reading, the sender's buffers fill
                size = _CHUNK
                if self.bytes_per_s:
                    size = max(1, min(_CHUNK, int(self.bytes_per_s / 8)))
                data = await reader.read(size)
                if not data:
                    break
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                if self.bytes_per_s:
                    await asyncio.sleep(len(data) / self.bytes_per_s)
                await self._flowing.wait()  # paused while this chunk was in hand
                plan = self._plan
                if plan is not None and plan.direction in (direction, "both"):
                    if len(data) >= plan.budget:
                        writer.write(data[: plan.budget])
                        self._count(direction, plan.budget)
                        with contextlib.suppress(ConnectionError):
                            await writer.drain()
                        plan.done.set()
                        self._plan = None
                        await self._abort_all()
                        return
                    plan.budget -= len(data)
                writer.write(data)
                self._count(direction, len(data))
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            # One side ended: end the other too (as a router would after a reset).
            conn.abort()
            self._conns.discard(conn)

    def _count(self, direction: str, n: int) -> None:
        if direction == "up":
            self.bytes_up += n
        else:
            self.bytes_down += n
