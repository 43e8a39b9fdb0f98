"""Bulk subscribe end to end (contract §3.3): inbox rows batched by the Deliverer and posted by
BulkAppDelivery over real HTTP to a real app server."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from edge_runtime.appchannel import AppReply, Outcome
from edge_runtime.appchannel.http import HttpAppChannel
from edge_runtime.inbox import Deliverer, Inbox, InboxRow, RetryPolicy
from edge_runtime.inbox.appdelivery import AppDelivery, peek_envelope
from edge_runtime.inbox.bulk import BulkAppDelivery, classify_bulk
from edge_runtime.observability import metrics
from edge_runtime.pubsub import Received
from edge_runtime.subscriptions import Subscription, from_app_json
from edge_runtime.subscriptions.model import BulkSettings
from tests.appchannel.appserver import AppServer, Reply, Request, Respond

FAST = RetryPolicy("exponential", initial_s=0.01, multiplier=2, max_interval_s=0.04,
                   max_retries=5, name="fast")


def _event(event_id: str, type_: str = "reading", temp: int = 20) -> bytes:
    return json.dumps({"id": event_id, "specversion": "1.0", "type": type_, "source": "s",
                       "topic": "t", "pubsubname": "p", "data": {"temp": temp}}).encode()


def _value(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def _bulk_sub(max_messages: int = 100, max_await_ms: int = 50, **kwargs: Any) -> Subscription:
    kwargs.setdefault("default_path", "/in")
    return Subscription("p", "t", bulk=BulkSettings(True, max_messages, max_await_ms), **kwargs)


def _ids(req: Request) -> list[str]:
    """The CloudEvent ids of a bulk request's entries, in order."""
    return [e["event"]["id"] for e in json.loads(req.body)["entries"]]


async def _until(cond: Callable[[], bool], within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


@dataclass
class Rig:
    app: AppServer
    inbox: Inbox
    channel: HttpAppChannel
    ready: asyncio.Event
    dead: list[tuple[str | None, bytes]]

    async def add(self, sub: Subscription, *events: bytes, **metadata: str) -> None:
        for data in events:
            facts = peek_envelope(data, raw_payload=sub.raw_payload)
            await self.inbox.add(sub.key, Received(sub.topic, data, sub.topic, metadata),
                                 facts.event_id)

    async def drained(self, sub: Subscription) -> None:
        deadline = time.monotonic() + 3
        while await self.inbox.head(sub.key):
            assert time.monotonic() < deadline, "the inbox did not drain"
            await asyncio.sleep(0.005)

    def posts(self) -> list[Request]:
        return [r for r in self.app.requests if r.method == "POST"]


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """``await rig(respond, subs, ready=True)``: app server, inbox and a running deliverer."""
    stack: list[tuple[AppServer, Inbox, HttpAppChannel, Deliverer]] = []

    async def start(respond: Respond, subs: list[Subscription], *, ready: bool = True) -> Rig:
        app = await AppServer(respond).__aenter__()
        inbox = Inbox(tmp_path)
        await inbox.open()
        channel = HttpAppChannel("127.0.0.1", app.port, api_token="tok", timeout_s=2)
        event = asyncio.Event()
        if ready:
            event.set()
        dead: list[tuple[str | None, bytes]] = []

        async def dead_letter(s: Subscription, row: InboxRow) -> None:
            dead.append((s.dead_letter_topic, row.data))

        deliverer = Deliverer(inbox, AppDelivery(channel), ready=event, poll_interval_s=0.05,
                              error_pause_s=0.01, retry=lambda _p: FAST,
                              dead_letter=dead_letter, deliver_bulk=BulkAppDelivery(channel))
        await deliverer.start(subs)
        stack.append((app, inbox, channel, deliverer))
        return Rig(app, inbox, channel, event, dead)

    yield start
    for app, inbox, channel, deliverer in stack:
        await deliverer.stop(1.0)
        await channel.close()
        await inbox.close()
        await app.__aexit__(None, None, None)


async def test_batches_of_max_messages_with_the_bulk_body(rig: Callable[..., Any]) -> None:
    sub = _bulk_sub(max_messages=4, max_await_ms=50)
    r: Rig = await rig(lambda _req: Reply(200, b""), [sub], ready=False)
    await r.add(sub, *[_event(f"e{i}") for i in range(10)], retained="false")
    r.ready.set()
    await r.drained(sub)
    posts = r.posts()
    assert [len(_ids(p)) for p in posts] == [4, 4, 2]
    assert [i for p in posts for i in _ids(p)] == [f"e{i}" for i in range(10)]
    first = posts[0]
    assert first.path == "/in"
    assert first.header("Content-Type") == "application/json"
    assert first.header("dapr-api-token") == "tok"
    body = json.loads(first.body)
    assert set(body) == {"id", "type", "topic", "pubsubname", "metadata", "entries"}
    uuid.UUID(body["id"])
    assert body["type"] == "com.dapr.event.sent.bulk"
    assert (body["topic"], body["pubsubname"], body["metadata"]) == ("t", "p", {})
    entry = body["entries"][0]
    assert set(entry) == {"entryId", "event", "contentType", "metadata"}
    assert entry["event"] == json.loads(_event("e0"))
    assert entry["contentType"] == "application/cloudevents+json"
    assert entry["metadata"] == {"retained": "false"}
    assert len({e["entryId"] for p in posts for e in json.loads(p.body)["entries"]}) == 10


async def test_mixed_statuses_per_entry(rig: Callable[..., Any]) -> None:
    script = {"e0": "SUCCESS", "e1": "RETRY", "e2": "DROP", "e4": "weird", "e5": "SUCCESS"}
    calls = 0

    def respond(req: Request) -> Reply:
        nonlocal calls
        calls += 1
        entries = json.loads(req.body)["entries"]
        if calls > 1:
            return Reply(200, b'{"statuses":[]}' if calls == 2 else b"{}")
        statuses = [{"entryId": e["entryId"], "status": script[e["event"]["id"]]}
                    for e in entries if e["event"]["id"] in script]  # e3 left out
        return Reply(200, json.dumps({"statuses": statuses}).encode())

    sub = _bulk_sub(dead_letter_topic="dlq")
    dropped = _value("edge_runtime_inbox_dropped_total", subscription=sub.key, reason="app_drop")
    retries = _value("edge_runtime_inbox_retries_total", subscription=sub.key)
    r: Rig = await rig(respond, [sub], ready=False)
    await r.add(sub, *[_event(f"e{i}") for i in range(6)])
    r.ready.set()
    await _until(lambda: len(r.posts()) >= 3)
    await r.drained(sub)
    first, second, third = r.posts()
    assert _ids(first) == [f"e{i}" for i in range(6)]
    # RETRY, the left-out entry and the unknown status come back (an empty statuses list
    # retries them all), then a 2xx with no statuses list settles them
    assert _ids(second) == ["e1", "e3", "e4"] == _ids(third)
    assert json.loads(second.body)["entries"][0]["entryId"] == \
        json.loads(first.body)["entries"][1]["entryId"]
    assert r.dead == [("dlq", _event("e2"))]  # the DROP went to the dead-letter topic
    assert _value("edge_runtime_inbox_dropped_total", subscription=sub.key,
                  reason="app_drop") == dropped + 1
    assert _value("edge_runtime_inbox_retries_total", subscription=sub.key) == retries + 6
    assert await r.inbox.deadletters() == []


async def test_404_drops_all(rig: Callable[..., Any]) -> None:
    sub = _bulk_sub()
    dropped = _value("edge_runtime_inbox_dropped_total", subscription=sub.key, reason="app_drop")
    r: Rig = await rig(lambda _req: Reply(404, b"no"), [sub], ready=False)
    await r.add(sub, *[_event(f"e{i}") for i in range(3)])
    r.ready.set()
    await r.drained(sub)
    assert len(r.posts()) == 1
    assert _value("edge_runtime_inbox_dropped_total", subscription=sub.key,
                  reason="app_drop") == dropped + 3
    assert await r.inbox.deadletters() == []


async def test_500_and_transport_errors_retry_all(rig: Callable[..., Any]) -> None:
    replies = [Reply(500, b"boom"), Reply(close=True), Reply(200, b'{"statuses":"n/a"}')]
    sub = _bulk_sub()
    r: Rig = await rig(lambda _req: replies.pop(0) if replies else Reply(), [sub], ready=False)
    await r.add(sub, *[_event(f"e{i}") for i in range(3)])
    r.ready.set()
    await r.drained(sub)
    assert [_ids(p) for p in r.posts()] == [["e0", "e1", "e2"]] * 3


async def test_max_await_flushes_a_partial_batch(rig: Callable[..., Any]) -> None:
    sub = _bulk_sub(max_messages=100, max_await_ms=150)
    r: Rig = await rig(lambda _req: Reply(), [sub])
    started = time.monotonic()
    await r.add(sub, _event("a"))
    await asyncio.sleep(0.03)
    await r.add(sub, _event("b"), _event("c"))
    await _until(lambda: len(r.posts()) == 1)
    waited = time.monotonic() - started
    assert 0.12 <= waited < 1.0
    assert _ids(r.posts()[0]) == ["a", "b", "c"]
    await r.drained(sub)


async def test_routes_group_entries_and_poison_or_unrouted_rows_are_not_sent(
    rig: Callable[..., Any],
) -> None:
    subs, problems = from_app_json(json.dumps([{
        "pubsubname": "p", "topic": "t",
        "routes": {"rules": [{"match": 'event.type == "alarm"', "path": "/alarm"},
                             {"match": "event.data.temp > 30", "path": "/hot"}]},
        "bulkSubscribe": {"enabled": True, "maxMessagesCount": 10, "maxAwaitDurationMs": 20},
    }, {
        "pubsubname": "p", "topic": "raw", "route": "/raw", "metadata": {"rawPayload": "true"},
        "bulkSubscribe": {"enabled": True, "maxAwaitDurationMs": 20},
    }]).encode())
    assert problems == []
    sub, raw = subs
    unrouted = _value("edge_runtime_inbox_dropped_total", subscription=sub.key,
                      reason="unrouted")
    r: Rig = await rig(lambda _req: Reply(), subs, ready=False)
    await r.add(sub, _event("1", "alarm"), _event("2", temp=40), _event("3", temp=10),
                b"not json", _event("5", "alarm"))
    await r.add(raw, b"\x00\x01")
    r.ready.set()
    await r.drained(sub)
    await r.drained(raw)
    by_path = {p.path: p for p in r.posts()}
    assert len(r.posts()) == 3
    assert _ids(by_path["/alarm"]) == ["1", "5"]
    assert _ids(by_path["/hot"]) == ["2"]
    [entry] = json.loads(by_path["/raw"].body)["entries"]
    assert entry["event"]["type"] == "com.dapr.event.sent"
    assert base64.b64decode(entry["event"]["data_base64"]) == b"\x00\x01"
    assert _value("edge_runtime_inbox_dropped_total", subscription=sub.key,
                  reason="unrouted") == unrouted + 1
    [dead] = await r.inbox.deadletters()
    assert "not JSON" in dead.reason


def test_classify_bulk() -> None:
    ids = ["1", "2", "3"]
    body = json.dumps({"Statuses": [
        {"entryId": "1", "status": "DROP"}, {"EntryID": "2", "Status": "SUCCESS"},
        {"entryId": "9", "status": "SUCCESS"}, "x"]}).encode()
    assert classify_bulk(AppReply(200, body), ids) == {
        "1": Outcome.DROP, "2": Outcome.SUCCESS, "3": Outcome.RETRY}
    assert set(classify_bulk(AppReply(204), ids).values()) == {Outcome.SUCCESS}
    assert set(classify_bulk(AppReply(200, b"not json"), ids).values()) == {Outcome.SUCCESS}
    assert set(classify_bulk(AppReply(404), ids).values()) == {Outcome.DROP}
    assert set(classify_bulk(AppReply(503), ids).values()) == {Outcome.RETRY}
