"""The HTTP app channel against a real loopback server: the §3.2 reply table, discovery,
headers and the API token, and transport failures."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest

from edge_runtime.appchannel import (
    AppChannel,
    AppReply,
    AppStatusError,
    AppUnavailableError,
    Outcome,
)
from edge_runtime.appchannel.http import (
    HttpAppChannel,
    canonical_header,
    classify,
    event_headers,
)
from tests.appchannel.appserver import AppServer, Reply, Request


def _channel(port: int, token: str | None = None, timeout: float = 2.0) -> HttpAppChannel:
    return HttpAppChannel("127.0.0.1", port, api_token=token, timeout_s=timeout, app_id="me")


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[AppServer, list[Reply]]]:
    """A server answering the replies queued in the list, in turn."""
    queue: list[Reply] = []
    async with AppServer(lambda _r: queue.pop(0)) as server:
        yield server, queue


# Every row of the contract's §3.2 table.
TABLE = [
    (200, b"", Outcome.SUCCESS),                              # 2xx, empty body
    (204, b"", Outcome.SUCCESS),
    (200, b"OK, thanks", Outcome.SUCCESS),                    # 2xx, non-JSON body
    (200, b"[1, 2]", Outcome.SUCCESS),                        # JSON that is not an object
    (200, b"{}", Outcome.SUCCESS),                            # JSON with no status
    (200, b'{"status": ""}', Outcome.SUCCESS),                # ... or an empty one
    (200, b'{"status": null}', Outcome.SUCCESS),
    (200, b'{"status": 3}', Outcome.SUCCESS),                 # does not decode as Go's string
    (200, b'{"status": "SUCCESS"}', Outcome.SUCCESS),
    (201, b'{"status": "SUCCESS"}', Outcome.SUCCESS),
    (200, b'{"status": "RETRY"}', Outcome.RETRY),
    (200, b'{"status": "DROP"}', Outcome.DROP),
    (202, b'{"STATUS": "DROP"}', Outcome.DROP),                # keys decode case-insensitively
    (200, b'{"status": "drop"}', Outcome.RETRY),              # values are case-sensitive
    (200, b'{"status": "LATER"}', Outcome.RETRY),             # any other status string
    (404, b"", Outcome.DROP),                                 # 404 acts like DROP
    (404, b'{"status": "RETRY"}', Outcome.DROP),
    (500, b'{"status": "SUCCESS"}', Outcome.RETRY),           # any other status code
    (400, b"", Outcome.RETRY),
    (503, b"", Outcome.RETRY),
    (302, b"", Outcome.RETRY),
]


@pytest.mark.parametrize(("status", "body", "expected"), TABLE)
async def test_reply_table_over_http(
    scripted: tuple[AppServer, list[Reply]], status: int, body: bytes, expected: Outcome
) -> None:
    server, queue = scripted
    queue.append(Reply(status, body))
    channel = _channel(server.port)
    try:
        reply = await channel.post_event("/events", b'{"id":"1"}', {})
    finally:
        await channel.close()
    assert (reply.status, reply.body) == (status, body)
    assert classify(reply) is expected


async def test_connection_refused_is_app_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    channel = _channel(port)
    with pytest.raises(AppUnavailableError, match="ConnectError"):
        await channel.post_event("/e", b"{}")
    with pytest.raises(AppUnavailableError):
        await channel.get_subscriptions()
    await channel.close()


async def test_timeout_and_dropped_connection_are_app_unavailable(
    scripted: tuple[AppServer, list[Reply]]
) -> None:
    server, queue = scripted
    channel = _channel(server.port, timeout=0.2)
    queue.append(Reply(hang=True))
    with pytest.raises(AppUnavailableError, match="Timeout"):
        await channel.post_event("/e", b"{}")
    queue.append(Reply(close=True))
    with pytest.raises(AppUnavailableError):
        await channel.post_event("/e", b"{}")
    queue.append(Reply(200, b""))
    assert (await channel.post_event("/e", b"{}")).status == 200  # the pool recovers
    await channel.close()


async def test_post_event_sends_bytes_type_headers_and_token(
    scripted: tuple[AppServer, list[Reply]]
) -> None:
    server, queue = scripted
    queue.extend([Reply(), Reply()])
    channel = _channel(server.port, token="s3cret")
    assert isinstance(channel, AppChannel)
    body = b'{"id":"1","data":{"x":1}}'
    headers = event_headers({"retained": "false", "Content-Type": "text/plain",
                             "x-custom-KEY": "v\u00e9", "bad\nname": "x", "tok-bin": "x",
                             "dapr-api-token": "forged", "Connection": "close"}, "mqtt")
    await channel.post_event("events/orders", body, headers)
    [req] = server.requests
    assert (req.method, req.path, req.body) == ("POST", "/events/orders", body)
    assert req.header("content-type") == "application/cloudevents+json"
    assert req.header("dapr-api-token") == "s3cret"
    assert req.header("Retained") == "false"
    assert req.header("Pubsubname") == "mqtt"
    assert req.header("X-Custom-Key") == "v\u00e9".encode().decode("latin-1")  # UTF-8 bytes
    names = {k.lower() for k, _ in req.headers}
    assert "tok-bin" not in names
    assert "bad\nname" not in names
    assert [v for k, v in req.headers if k.lower() == "dapr-api-token"] == ["s3cret"]
    await channel.close()
    channel = _channel(server.port, token=None)
    await channel.post_event("/e", b"{}")
    assert server.requests[1].header("dapr-api-token") is None
    await channel.close()


async def test_get_subscriptions() -> None:
    seen: list[Request] = []

    def respond(req: Request) -> Reply:
        seen.append(req)
        return {0: Reply(200, b'[{"pubsubname":"p"}]'), 1: Reply(404), 2: Reply(500, b"oops")}[
            len(seen) - 1]

    async with AppServer(respond) as server:
        channel = _channel(server.port, token="t")
        assert await channel.get_subscriptions() == b'[{"pubsubname":"p"}]'
        assert await channel.get_subscriptions() is None
        with pytest.raises(AppStatusError) as info:
            await channel.get_subscriptions()
        assert info.value.status == 500
        await channel.close()
    req = seen[0]
    assert (req.method, req.path) == ("GET", "/dapr/subscribe")
    assert req.header("dapr-app-id") == "me"
    assert req.header("content-type") == "application/json"
    assert req.header("dapr-api-token") == "t"


def test_canonical_header_as_go() -> None:
    assert canonical_header("content-type") == "Content-Type"
    assert canonical_header("pubsubname") == "Pubsubname"
    assert canonical_header("x-B3-traceid") == "X-B3-Traceid"
    assert canonical_header("with space") == "with space"


def test_classify_without_a_server() -> None:
    assert classify(AppReply(299, b'{"status":"RETRY"}')) is Outcome.RETRY
    assert classify(AppReply(200, b'{"status":"DROP","status":"SUCCESS"}')) is Outcome.SUCCESS
    assert classify(AppReply(200, b"{" * 10000)) is Outcome.SUCCESS


async def test_ipv6_address_is_bracketed() -> None:
    channel = HttpAppChannel("::1", 80, api_token=None, timeout_s=1)
    assert channel.base_url == "http://[::1]:80"
    await channel.close()
