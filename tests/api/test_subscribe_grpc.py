"""``--app-protocol grpc``: publish → outbox → broker → inbox → the official SDK's gRPC app
(``dapr.ext.grpc.App``), in one sidecar on the in-memory broker."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from typing import Any

from dapr.ext.grpc import App, Rule, SubscriptionMessage, TopicEventResponse

from edge_runtime.appchannel import BindingTarget, Invoker
from edge_runtime.observability import metrics
from tests.api.conftest import Sidecar, StartSidecar
from tests.appchannel.grpcapp import SdkApp, until

TOKEN = "app-secret"

RESOURCES = """
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: mem}
spec:
  type: pubsub.in-memory
  version: v1
---
apiVersion: dapr.io/v1alpha1
kind: Subscription
metadata: {name: ghost}
spec:
  pubsubname: mem
  topic: ghost
  route: /ghost
---
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: fast}
spec:
  policies:
    retries:
      quick: {policy: constant, duration: 50ms, maxRetries: -1}
  targets:
    components:
      mem: {inbound: {retry: quick}}
"""


class Events:
    """What the app saw, per handler; ``fail`` counts down failures per handler."""

    def __init__(self) -> None:
        self.seen: dict[str, list[SubscriptionMessage]] = {}
        self.calls: Counter[str] = Counter()
        self.lock = threading.Lock()

    def record(self, name: str, event: SubscriptionMessage) -> int:
        with self.lock:
            self.seen.setdefault(name, []).append(event)
            self.calls[name] += 1
            return self.calls[name]

    def count(self, name: str) -> int:
        with self.lock:
            return len(self.seen.get(name, []))

    async def wait(self, name: str, n: int = 1) -> list[SubscriptionMessage]:
        await until(lambda: self.count(name) >= n)
        with self.lock:
            return list(self.seen[name])


def app_of(events: Events) -> Any:
    def setup(app: App) -> None:
        @app.subscribe("mem", "orders")
        def orders(event: SubscriptionMessage) -> None:
            events.record("orders", event)

        @app.subscribe("mem", "alerts", rule=Rule('event.type == "fire"', 1))
        def fire(event: SubscriptionMessage) -> None:
            events.record("fire", event)

        @app.subscribe("mem", "flaky")
        def flaky(event: SubscriptionMessage) -> TopicEventResponse:
            n = events.record("flaky", event)
            return TopicEventResponse("retry" if n <= 2 else "success")

        @app.subscribe("mem", "drops", dead_letter_topic="dead")
        def drops(event: SubscriptionMessage) -> TopicEventResponse:
            events.record("drops", event)
            return TopicEventResponse("drop")

        @app.subscribe("mem", "dead")
        def dead(event: SubscriptionMessage) -> None:
            events.record("dead", event)

        @app.subscribe("mem", "boom")
        def boom(event: SubscriptionMessage) -> None:
            if events.record("boom", event) <= 2:
                raise RuntimeError("handler crashed")

        @app.subscribe("mem", "raw", metadata={"rawPayload": "true"})
        def raw(event: SubscriptionMessage) -> None:
            events.record("raw", event)

    return setup


async def started(start_sidecar: StartSidecar, port: int) -> Sidecar:
    s: Sidecar = await start_sidecar(RESOURCES, app_port=port, app_protocol="grpc",
                                     app_api_token=TOKEN)
    await until(lambda: s.runtime.view.app_ready)
    return s


async def test_events_reach_the_grpc_app(start_sidecar: StartSidecar) -> None:
    events = Events()
    with SdkApp(app_of(events)) as app:
        s = await started(start_sidecar, app.port)
        r = await s.client.post("/v1.0/publish/mem/orders", json={"n": 1})
        assert r.status_code == 204
        (ev,) = await events.wait("orders")
        assert ev.data_content_type() == "application/json"
        assert ev.raw_data() == b'{"n":1}'
        assert ev.data() == {"n": 1}
        assert (ev.topic(), ev.pubsub_name(), ev.spec_version()) == ("orders", "mem", "1.0")
        assert ev.type() == "com.dapr.event.sent"
        assert ev.id()
        assert ev.source()
        assert ev.extensions()["topic"] == "orders"
        assert ev.extensions()["pubsubname"] == "mem"
        assert "traceparent" in ev.extensions()
        assert ev.metadata()["dapr-api-token"] == TOKEN
        assert ev.metadata()["pubsubname"] == "mem"
        # A rule picks the handler (the path is its name); an event matching none is dropped.
        await s.client.post("/v1.0/publish/mem/alerts?metadata.cloudevent.type=smoke",
                            content=b"x")
        await s.client.post("/v1.0/publish/mem/alerts?metadata.cloudevent.type=fire",
                            content=b"y", headers={"content-type": "text/plain"})
        (fire,) = await events.wait("fire")
        assert (fire.type(), fire.raw_data(), fire.data()) == ("fire", b"y", "y")
        # rawPayload: the bytes as published.
        await s.client.post("/v1.0/publish/mem/raw?metadata.rawPayload=true",
                            content=b"\x00\x01binary")
        (raw,) = await events.wait("raw")
        assert raw.raw_data() == b"\x00\x01binary"
        assert raw.data_content_type() == "application/octet-stream"
        meta = (await s.client.get("/v1.0/metadata")).json()
        subs = {x["topic"]: x for x in meta["subscriptions"]}
        assert subs["alerts"]["rules"] == [{"match": 'event.type == "fire"', "path": "fire"}]
        assert subs["ghost"]["type"] == "DECLARATIVE"
        assert meta["appConnectionProperties"]["protocol"] == "grpc"
        channel = s.runtime.subscriptions.channel  # type: ignore[union-attr]
        assert isinstance(channel, Invoker)
        assert isinstance(channel, BindingTarget)


async def test_reply_statuses(start_sidecar: StartSidecar) -> None:
    events = Events()
    with SdkApp(app_of(events)) as app:
        s = await started(start_sidecar, app.port)
        inbox = s.runtime.subscriptions.inbox  # type: ignore[union-attr]
        ghost = {"subscription": "mem|ghost", "outcome": "success"}
        ghosts = metrics.REGISTRY.get_sample_value("edge_runtime_inbox_delivered_total", ghost)
        unhandled_before = metrics.REGISTRY.get_sample_value(
            "edge_runtime_app_events_unhandled_total", {"pubsub": "mem"}) or 0
        for topic in ("flaky", "drops", "boom", "ghost"):
            r = await s.client.post(f"/v1.0/publish/mem/{topic}", json={"t": topic})
            assert r.status_code == 204
        # RETRY twice, then SUCCESS: three deliveries, then done.
        await events.wait("flaky", 3)
        # DROP: dead-lettered to the subscription's topic, not retried.
        (dead,) = await events.wait("dead")
        assert json.loads(dead.raw_data()) == {"t": "drops"}
        # An exception in the handler: retried until it succeeds.
        await events.wait("boom", 3)
        # UNIMPLEMENTED (a declarative route the app has no handler for): processed.
        keys = ("mem|flaky", "mem|drops", "mem|boom", "mem|ghost")

        async def pending() -> int:
            backlog = await inbox.backlog()
            return sum(backlog.get(k, (0, 0))[0] for k in keys)

        for _ in range(500):
            if await pending() == 0:
                break
            await asyncio.sleep(0.02)
        assert await pending() == 0
        after = metrics.REGISTRY.get_sample_value("edge_runtime_inbox_delivered_total", ghost)
        assert (after or 0) == (ghosts or 0) + 1  # delivered once, answered UNIMPLEMENTED
        unhandled = metrics.REGISTRY.get_sample_value("edge_runtime_app_events_unhandled_total",
                                                      {"pubsub": "mem"})
        assert (unhandled or 0) - unhandled_before == 1  # and counted as unhandled
        assert await inbox.deadletters() == []  # nothing parked locally
        assert events.count("drops") == 1
        assert events.count("flaky") == 3


async def test_app_down_then_up_loses_nothing(start_sidecar: StartSidecar) -> None:
    events = Events()
    app = SdkApp(app_of(events)).start()
    try:
        s = await started(start_sidecar, app.port)
        await s.client.post("/v1.0/publish/mem/orders", json={"i": -1})
        await events.wait("orders")
        app.stop()
        for i in range(5):
            r = await s.client.post("/v1.0/publish/mem/orders", json={"i": i})
            assert r.status_code == 204
        await asyncio.sleep(0.3)  # deliveries fail meanwhile (the app is down) and are retried
        app.start()
        await events.wait("orders", 6)
        got = {json.loads(e.raw_data())["i"] for e in events.seen["orders"]}
        assert got == {-1, 0, 1, 2, 3, 4}
    finally:
        app.stop()


async def test_invoking_a_grpc_app(start_sidecar: StartSidecar) -> None:
    from dapr.ext.grpc import InvokeMethodRequest, InvokeMethodResponse

    def setup(app: App) -> None:
        @app.method("echo")
        def echo(request: InvokeMethodRequest) -> InvokeMethodResponse:
            body = json.dumps({"got": request.text(), "ct": request.content_type})
            return InvokeMethodResponse(body.encode(), "application/json")

    with SdkApp(setup) as app:
        s = await started(start_sidecar, app.port)
        r = await s.client.post("/v1.0/invoke/app/method/echo", content=b"hello",
                                headers={"content-type": "text/plain"})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("application/json")
        assert r.json() == {"got": "hello", "ct": "text/plain"}
        r = await s.client.post("/v1.0/invoke/app/method/nosuch", content=b"x")
        assert r.status_code != 200


BINDING = """
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: loop}
spec:
  type: bindings.in-memory
  version: v1
"""


async def test_binding_events_reach_a_grpc_app(start_sidecar: StartSidecar) -> None:
    from dapr.ext.grpc import BindingRequest

    got: list[tuple[bytes, dict[str, str]]] = []

    def setup(app: App) -> None:
        @app.binding("loop")
        def loop(request: BindingRequest) -> None:
            got.append((request.data, dict(request.binding_metadata)))

    with SdkApp(setup) as app:
        s: Sidecar = await start_sidecar(BINDING, app_port=app.port, app_protocol="grpc")
        await until(lambda: s.runtime.view.app_ready)
        r = await s.client.post("/v1.0/bindings/loop", json={
            "operation": "create", "data": {"c": 21.5}, "metadata": {"key": "t1"}})
        assert r.status_code in (200, 204), r.text
        await until(lambda: len(got) == 1)
        data, metadata = got[0]
        assert json.loads(data) == {"c": 21.5}
        assert metadata.get("key") == "t1"
