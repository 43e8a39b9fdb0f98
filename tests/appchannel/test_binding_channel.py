"""The HTTP channel's input-binding side against a real loopback app (contract §3.5): the
OPTIONS probe and event delivery."""

from __future__ import annotations

import socket

import pytest

from edge_runtime.appchannel import AppUnavailableError, BindingEvent, BindingTarget, Outcome
from edge_runtime.appchannel.http import HttpAppChannel
from tests.appchannel.appserver import AppServer, Reply, Request


def _channel(port: int, token: str | None = None) -> HttpAppChannel:
    return HttpAppChannel("127.0.0.1", port, api_token=token, timeout_s=2.0, app_id="me")


@pytest.mark.parametrize(
    ("status", "accepted"),
    [(200, True), (204, True), (405, True), (404, False), (500, False), (301, False)],
)
async def test_options_probe(status: int, accepted: bool) -> None:
    async with AppServer(lambda _r: Reply(status)) as server:
        channel = _channel(server.port, token="t")
        assert isinstance(channel, BindingTarget)
        assert await channel.accepts_binding("sensors", "") is accepted
        assert await channel.accepts_binding("sensors", "/in/temp") is accepted
        await channel.close()
    first, second = server.requests
    assert (first.method, first.path) == ("OPTIONS", "/sensors")  # the route defaults to it
    assert (second.method, second.path) == ("OPTIONS", "/in/temp")
    assert first.header("dapr-api-token") == "t"


async def test_probe_of_an_app_that_does_not_answer() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    channel = _channel(port)
    with pytest.raises(AppUnavailableError):
        await channel.accepts_binding("b", "")
    await channel.close()


async def test_event_post_raw_payload_with_metadata_headers() -> None:
    async with AppServer(lambda _r: Reply(200, b'{"anything": "ignored"}')) as server:
        channel = _channel(server.port, token="t")
        event = BindingEvent("sensors", "in", b"\x00raw\xff",
                             {"topic": "a/b", "x-Custom-KEY": "v", "content-type": "text/x",
                              "traceparent": "00-abc-def-01", "bad\nkey": "x"})
        assert await channel.binding_event(event) is Outcome.SUCCESS
        await channel.close()
    [req] = server.requests
    assert (req.method, req.path, req.body) == ("POST", "/in", b"\x00raw\xff")
    assert req.header("content-type") == "application/json"  # whatever the payload is
    assert req.header("Topic") == "a/b"
    assert req.header("X-Custom-Key") == "v"
    assert req.header("Traceparent") == "00-abc-def-01"
    assert req.header("dapr-api-token") == "t"
    assert "bad\nkey" not in {k.lower() for k, _ in req.headers}


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(200, Outcome.SUCCESS), (299, Outcome.SUCCESS), (404, Outcome.RETRY),
     (500, Outcome.RETRY), (400, Outcome.RETRY)],
)
async def test_event_outcomes(status: int, outcome: Outcome) -> None:
    # Unlike pub/sub deliveries, the body's status means nothing and 404 is not a drop.
    def respond(_r: Request) -> Reply:
        return Reply(status, b'{"status": "DROP"}')

    async with AppServer(respond) as server:
        channel = _channel(server.port)
        assert await channel.binding_event(BindingEvent("b", "", b"{}")) is outcome
        await channel.close()
    assert server.requests[0].path == "/b"
