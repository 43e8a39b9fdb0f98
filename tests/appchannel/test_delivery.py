"""End to end: inbox rows delivered by the Deliverer through AppDelivery over real HTTP."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from pathlib import Path

from edge_runtime.appchannel.http import HttpAppChannel
from edge_runtime.inbox import Deliverer, Inbox, RetryPolicy
from edge_runtime.inbox.appdelivery import AppDelivery, peek_envelope
from edge_runtime.pubsub import Received
from edge_runtime.subscriptions import from_app_json
from tests.appchannel.appserver import AppServer, Reply, Request

SUBSCRIBE = json.dumps([
    {"pubsubname": "mqtt", "topic": "sensors/+/temp",
     "routes": {"rules": [{"match": 'event.type == "alarm"', "path": "/alarm"},
                          {"match": "event.data.temp > 30", "path": "/hot"}]}},
    {"pubsubname": "mqtt", "topic": "raw", "route": "/raw", "metadata": {"rawPayload": "true"}},
]).encode()


def _event(event_id: str, type_: str = "reading", temp: int = 20) -> bytes:
    return json.dumps({"id": event_id, "specversion": "1.0", "type": type_, "source": "s",
                       "topic": "sensors/a/temp", "pubsubname": "mqtt",
                       "traceparent": "00-abc-def-01", "data": {"temp": temp}}).encode()


async def _until(cond: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def test_subscribe_route_deliver_over_http(tmp_path: Path) -> None:
    def respond(req: Request) -> Reply:
        if req.path == "/dapr/subscribe":
            return Reply(200, SUBSCRIBE)
        body = json.loads(req.body)
        if body.get("id") == "drop-me":
            return Reply(200, b'{"status":"DROP"}')
        return Reply(200, b'{"status":"SUCCESS"}')

    inbox = Inbox(tmp_path)
    await inbox.open()
    async with AppServer(respond) as app:
        channel = HttpAppChannel("127.0.0.1", app.port, api_token="tok", timeout_s=2,
                                 app_id="me")
        body = await channel.get_subscriptions()
        assert body is not None
        subs, problems = from_app_json(body)
        assert problems == []
        ready = asyncio.Event()
        ready.set()
        deliverer = Deliverer(inbox, AppDelivery(channel), ready=ready, poll_interval_s=0.05,
                              retry=lambda _p: RetryPolicy(max_retries=0))
        await deliverer.start(subs)
        temps, raw = subs
        for data in (_event("1", "alarm"), _event("2", temp=40), _event("3", temp=10),
                     _event("drop-me", "alarm"), b"not json", _event("1", "alarm")):
            facts = peek_envelope(data)
            await inbox.add(temps.key, Received("sensors/a/temp", data, temps.topic,
                                                {"retained": "false"}), facts.event_id)
        await inbox.add(raw.key, Received("raw", b"\x00\x01", "raw", {}), None)
        await _until(lambda: len(app.requests) == 5)  # subscribe + alarm, hot, drop-me, raw
        deadline = time.monotonic() + 5
        while await inbox.head(temps.key) or await inbox.head(raw.key):
            assert time.monotonic() < deadline, "the inbox did not drain"
            await asyncio.sleep(0.005)
        await deliverer.stop(1.0)
        await channel.close()
    paths = sorted(r.path for r in app.requests[1:])
    assert paths == ["/alarm", "/alarm", "/hot", "/raw"]
    alarm = next(r for r in app.requests if r.path == "/alarm")
    assert alarm.body == _event("1", "alarm")  # the original bytes
    assert alarm.header("Content-Type") == "application/cloudevents+json"
    assert alarm.header("Retained") == "false"
    assert alarm.header("Pubsubname") == "mqtt"
    assert alarm.header("traceparent") == "00-abc-def-01"
    assert alarm.header("dapr-api-token") == "tok"
    wrapped = json.loads(next(r for r in app.requests if r.path == "/raw").body)
    assert base64.b64decode(wrapped["data_base64"]) == b"\x00\x01"
    assert wrapped["datacontenttype"] == "application/octet-stream"
    # the unrouted event (temp 10, no default) was dropped; "not json" was parked
    assert await inbox.head(temps.key, 10) == []
    [dead] = await inbox.deadletters()
    assert "not JSON" in dead.reason
    await inbox.close()
