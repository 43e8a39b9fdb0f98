"""Our HTTP/1.1 server (``api/http/h1.py``) on the wire: raw bytes from a socket, so what the
server writes is checked as written (keep-alive, pipelining, bodies, 100-continue, limits,
idle and graceful closing)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

pytest.importorskip("httptools")

from edge_runtime.api.http.h1 import MAX_HEAD, H1Server

Scope = dict[str, Any]


async def echo(scope: Scope, receive: Any, send: Any) -> None:
    """Answers with method, path, query and the body it read; ``/slow`` waits 0.2 s first,
    ``/refuse`` answers 413 without reading, ``/boom`` raises, ``/stream`` streams three
    parts without a length, ``/hang`` never answers."""
    path = scope["path"]
    if path == "/refuse":
        await send({"type": "http.response.start", "status": 413, "headers": [
            (b"content-length", b"0"), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/boom":
        raise RuntimeError("boom")
    if path == "/hang":
        await asyncio.sleep(3600)
    if path == "/slow":
        await asyncio.sleep(0.2)
    if path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"one ", b"two ", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    body = b""
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            DISCONNECTS.append(path)
            return
        body += msg["body"]
        if not msg["more_body"]:
            break
    out = b"%s %s %s %d:" % (scope["method"].encode(), scope["raw_path"], scope["query_string"],
                             len(body)) + body[:64]
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"text/plain"), (b"content-length", str(len(out)).encode())]})
    await send({"type": "http.response.body", "body": out})


DISCONNECTS: list[str] = []
WRITERS: list[asyncio.StreamWriter] = []


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    WRITERS.append(writer)
    return reader, writer


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    yield
    for writer in WRITERS:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    WRITERS.clear()


async def serving(keep_alive_s: float = 5.0) -> tuple[H1Server, int]:
    """An :class:`H1Server` serving ``echo`` on a free loopback port; (server, port)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    srv = H1Server(echo, keep_alive_s=keep_alive_s)
    await srv.serve(sock)
    return srv, sock.getsockname()[1]


@pytest.fixture
async def server() -> AsyncIterator[tuple[H1Server, int]]:
    srv, port = await serving()
    try:
        yield srv, port
    finally:
        await srv.stop(1.0)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One response: status, headers (lower-case names) and the body (by length)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ln)}
    length = int(headers.get("content-length", "0"))
    body = await asyncio.wait_for(reader.readexactly(length), 5) if length else b""
    return status, headers, body


async def closed(reader: asyncio.StreamReader) -> bool:
    return await asyncio.wait_for(reader.read(1), 5) == b""


async def test_keep_alive_serves_several_requests_on_one_connection(server: Any) -> None:
    _, port = server
    reader, writer = await connect(port)
    for i in range(3):
        writer.write(b"POST /a/%d?x=%d HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi" % (i, i))
        status, headers, body = await read_response(reader)
        assert (status, body) == (200, b"POST /a/%d x=%d 2:hi" % (i, i))
        assert "connection" not in headers
    writer.close()


async def test_pipelined_requests_are_answered_in_order(server: Any) -> None:
    _, port = server
    reader, writer = await connect(port)
    writer.write(b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n"
                 b"POST /fast HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
                 b"GET /third HTTP/1.1\r\nHost: h\r\n\r\n")
    bodies = [(await read_response(reader))[2] for _ in range(3)]
    assert bodies == [b"GET /slow  0:", b"POST /fast  3:abc", b"GET /third  0:"]
    writer.close()


async def test_a_chunked_body_and_a_large_body_arrive_whole(server: Any) -> None:
    _, port = server
    reader, writer = await connect(port)
    writer.write(b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n")
    assert (await read_response(reader))[2] == b"POST /c  7:abcdefg"
    big = bytes(range(256)) * 8192  # 2 MiB: more than the server buffers before pausing
    writer.write(b"POST /big HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % len(big))
    writer.write(big)
    status, _, body = await read_response(reader)
    assert (status, body) == (200, b"POST /big  %d:" % len(big) + big[:64])
    writer.close()


async def test_expect_continue_is_answered_when_the_app_reads_the_body(server: Any) -> None:
    _, port = server
    reader, writer = await connect(port)
    writer.write(b"POST /e HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
                 b"Expect: 100-continue\r\n\r\n")
    assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5) == (
        b"HTTP/1.1 100 Continue\r\n\r\n")
    writer.write(b"hello")
    assert (await read_response(reader))[2] == b"POST /e  5:hello"
    writer.close()


async def test_an_early_refusal_sends_no_continue_and_closes(server: Any) -> None:
    _, port = server
    reader, writer = await connect(port)
    writer.write(b"POST /refuse HTTP/1.1\r\nHost: h\r\nContent-Length: 999999\r\n"
                 b"Expect: 100-continue\r\n\r\n")
    status, headers, _ = await read_response(reader)
    assert (status, headers["connection"]) == (413, "close")
    assert await closed(reader)


async def test_http10_closes_unless_asked_to_keep_alive(server: Any) -> None:
    _, port = server
    reader, writer = await connect(port)
    writer.write(b"GET /old HTTP/1.0\r\n\r\n")
    status, headers, _ = await read_response(reader)
    assert (status, headers["connection"]) == (200, "close")
    assert await closed(reader)
    reader, writer = await connect(port)
    writer.write(b"GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    await read_response(reader)
    writer.write(b"GET /again HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert (await read_response(reader))[2] == b"GET /again  0:"
    writer.close()


async def test_connection_close_from_the_client_is_honoured(server: Any) -> None:
    _, port = server
    reader, writer = await connect(port)
    writer.write(b"GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert (await read_response(reader))[0] == 200
    assert await closed(reader)


@pytest.mark.parametrize("garbage", [
    b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\nBad\x01Header: x\r\n\r\n"])
async def test_bytes_that_are_not_http_get_400_and_a_closed_connection(
    server: Any, garbage: bytes
) -> None:
    _, port = server
    reader, writer = await connect(port)
    writer.write(garbage)
    status, _, body = await read_response(reader)
    assert (status, body) == (400, b"invalid HTTP request")
    assert await closed(reader)
    # The server goes on serving others.
    reader, writer = await connect(port)
    writer.write(b"GET /ok HTTP/1.1\r\nHost: h\r\n\r\n")
    assert (await read_response(reader))[0] == 200
    writer.close()


async def test_oversized_headers_get_431(server: Any) -> None:
    _, port = server
    reader, writer = await connect(port)
    writer.write(b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * (MAX_HEAD + 1) + b"\r\n\r\n")
    assert (await read_response(reader))[0] == 431
    assert await closed(reader)


async def test_an_app_error_is_a_500_without_a_traceback(server: Any) -> None:
    _, port = server
    reader, writer = await connect(port)
    writer.write(b"GET /boom HTTP/1.1\r\nHost: h\r\n\r\n")
    status, _, body = await read_response(reader)
    assert status == 500
    assert b"Traceback" not in body
    assert await closed(reader)


async def test_a_streamed_answer_is_chunked_and_head_has_no_body(server: Any) -> None:
    _, port = server
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        r = await client.get("/stream")
        assert (r.status_code, r.headers["transfer-encoding"], r.content) == (
            200, "chunked", b"one two three")
        r = await client.head("/h")
        assert r.status_code == 200
        assert r.content == b""
        assert int(r.headers["content-length"]) > 0
        # The connection is still good after both.
        assert (await client.get("/after")).content == b"GET /after  0:"


async def test_an_upgrade_is_answered_in_http11_then_closed(server: Any) -> None:
    _, port = server
    reader, writer = await connect(port)
    writer.write(b"GET /u HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                 b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n")
    status, headers, body = await read_response(reader)
    assert (status, body, headers["connection"]) == (200, b"GET /u  0:", "close")
    assert await closed(reader)


async def test_a_client_gone_mid_body_is_a_disconnect_for_the_app(server: Any) -> None:
    _, port = server
    DISCONNECTS.clear()
    _reader, writer = await connect(port)
    writer.write(b"POST /partial HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nabc")
    await writer.drain()
    await asyncio.sleep(0.1)
    writer.close()
    for _ in range(50):
        if DISCONNECTS:
            break
        await asyncio.sleep(0.02)
    assert DISCONNECTS == ["/partial"]


async def test_idle_and_stalled_connections_are_closed() -> None:
    srv, port = await serving(keep_alive_s=0.3)
    try:
        reader, writer = await connect(port)
        writer.write(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
        await read_response(reader)
        assert await closed(reader)  # idle after its answer
        reader, writer = await connect(port)
        writer.write(b"GET /x HTTP/1.1\r\nHost")  # a head that never ends
        assert await closed(reader)
        reader, writer = await connect(port)
        writer.write(b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nab")
        assert await closed(reader)  # a body that stalls
    finally:
        await srv.stop(1.0)


async def test_stop_lets_a_request_in_flight_finish_then_refuses_new_ones() -> None:
    srv, port = await serving()
    busy_r, busy_w = await connect(port)
    idle_r, _idle_w = await connect(port)
    hang_r, hang_w = await connect(port)
    busy_w.write(b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
    hang_w.write(b"GET /hang HTTP/1.1\r\nHost: h\r\n\r\n")
    await asyncio.sleep(0.05)
    stopping = asyncio.create_task(srv.stop(1.0))
    assert await closed(idle_r)  # idle: closed at once
    status, headers, body = await read_response(busy_r)
    assert (status, body, headers["connection"]) == (200, b"GET /slow  0:", "close")
    assert await closed(busy_r)
    assert await closed(hang_r)  # past the graceful period
    await stopping
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
