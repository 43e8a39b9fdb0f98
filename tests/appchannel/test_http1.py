"""The HTTP/1.1 client the app channel posts events with, against a real loopback server:
keep-alive reuse, the ways a reply may end (length, chunks, the connection closing), interim
replies, connections the app closed, malformed replies and cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from edge_runtime.appchannel import AppUnavailableError
from edge_runtime.appchannel.http import HttpAppChannel
from tests.appchannel.appserver import AppServer, Reply


@dataclass
class Scripted:
    """A server answering the replies queued in ``queue``, in turn (200 when it is empty), and
    a channel to it."""

    server: AppServer
    queue: list[Reply]
    channel: HttpAppChannel


@pytest.fixture
async def app() -> AsyncIterator[Scripted]:
    """The server and a channel to it (2 s timeout), closed after the test."""
    queue: list[Reply] = []
    async with AppServer(lambda _r: queue.pop(0) if queue else Reply()) as server:
        channel = HttpAppChannel("127.0.0.1", server.port, api_token=None, timeout_s=2.0)
        try:
            yield Scripted(server, queue, channel)
        finally:
            await channel.close()


async def test_one_connection_carries_sequential_calls(app: Scripted) -> None:
    for i in range(20):
        reply = await app.channel.post_event("/e", b'{"i":%d}' % i)
        assert reply.status == 200
    requests = app.server.requests
    assert app.server.connections == 1
    assert [r.body for r in requests] == [b'{"i":%d}' % i for i in range(20)]
    assert all(r.header("content-length") == str(len(r.body)) for r in requests)
    assert requests[0].header("host") == f"127.0.0.1:{app.server.port}"


async def test_reply_bodies_by_length_chunks_and_close(app: Scripted) -> None:
    app.queue.append(Reply(raw=b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                               b"X-A: 1\r\nx-a: 2\r\n\r\n"
                               b"7\r\n{\"statu\r\n9;ext=1\r\ns\":\"DROP\"\r\n"
                               b"1\r\n}\r\n0\r\nT: x\r\n\r\n"))
    reply = await app.channel.post_event("/e", b"{}")
    assert (reply.status, reply.body) == (200, b'{"status":"DROP"}')
    assert reply.headers["x-a"] == "1, 2"
    app.queue.append(Reply(raw=b"HTTP/1.1 100 Continue\r\n\r\n"
                               b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"))
    reply = await app.channel.post_event("/e", b"{}")
    assert (reply.status, reply.body) == (201, b"ok")
    assert app.server.connections == 1  # both kept the connection
    app.queue.append(Reply(raw=b"HTTP/1.0 200 OK\r\n\r\nuntil the end", close=True))
    reply = await app.channel.post_event("/e", b"{}")
    assert (reply.status, reply.body) == (200, b"until the end")
    app.queue.append(Reply(raw=b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"))
    assert (await app.channel.post_event("/e", b"{}")).status == 204
    assert (await app.channel.post_event("/e", b"{}")).status == 200
    assert app.server.connections == 3  # a new one after each reply that ended its connection


async def test_a_connection_the_app_closed_while_idle_is_not_used(app: Scripted) -> None:
    # The reply, then the app closes the connection (an idle timeout, a restart).
    app.queue.append(Reply(raw=b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", close=True))
    assert (await app.channel.post_event("/e", b"{}")).status == 200
    await asyncio.sleep(0.05)  # the close arrives
    assert (await app.channel.post_event("/e", b"{}")).status == 200
    assert app.server.connections == 2


@pytest.mark.parametrize("raw", [
    b"SPDY/3 200 OK\r\n\r\n",
    b"HTTP/1.1 2x0 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
])
async def test_a_malformed_or_cut_reply_is_app_unavailable(app: Scripted, raw: bytes) -> None:
    app.queue.append(Reply(raw=raw, close=True))
    with pytest.raises(AppUnavailableError, match="RemoteProtocolError"):
        await app.channel.post_event("/e", b"{}")
    assert (await app.channel.post_event("/e", b"{}")).status == 200  # a fresh connection


async def test_a_cancelled_call_does_not_leave_its_connection_for_the_next(
    app: Scripted,
) -> None:
    gate = asyncio.Event()

    async def late() -> Reply:
        await gate.wait()
        return Reply(200, b'{"status":"RETRY"}')

    app.server.respond = lambda _r: late() if not app.queue else app.queue.pop(0)
    call = asyncio.create_task(app.channel.post_event("/e", b"{}"))
    await asyncio.sleep(0.05)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    gate.set()  # the first call's reply now arrives on the abandoned connection
    app.queue.append(Reply(200, b'{"status":"SUCCESS"}'))
    reply = await app.channel.post_event("/e", b"{}")
    assert reply.body == b'{"status":"SUCCESS"}'  # not the stale RETRY


async def test_too_many_headers_or_a_huge_line_is_app_unavailable(app: Scripted) -> None:
    app.queue.append(Reply(raw=b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 300 + b"\r\n", close=True))
    with pytest.raises(AppUnavailableError, match="RemoteProtocolError"):
        await app.channel.post_event("/e", b"{}")
    app.queue.append(
        Reply(raw=b"HTTP/1.1 200 OK\r\nX: " + b"y" * 100_000 + b"\r\n\r\n", close=True)
    )
    with pytest.raises(AppUnavailableError, match="RemoteProtocolError"):
        await app.channel.post_event("/e", b"{}")


async def test_get_without_a_body_sends_no_length(app: Scripted) -> None:
    app.queue.append(Reply(200, b"[]"))
    assert await app.channel.get_subscriptions() == b"[]"
    [req] = app.server.requests
    assert req.method == "GET"
    assert req.header("content-length") is None
