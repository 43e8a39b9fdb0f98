"""Streaming subscriptions (``SubscribeTopicEventsAlpha1``) through the official SDK: the sync
``DaprClient.subscribe`` (its calls run in threads), ``dapr.aio``'s ``subscribe_with_handler``
(in a thread with its own event loop), and raw stubs for the protocol's edges.

Events travel publish → outbox → broker (in-memory, or mosquitto) → inbox → stream, so what
is checked is the durable path: answers settle inbox rows, and nothing the inbox took is lost
when streams close, reopen, or the sidecar restarts.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import textwrap
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from dapr.aio.clients import DaprClient as AioDaprClient
from dapr.clients.grpc._response import TopicEventResponse
from dapr.common.pubsub.subscription import SubscriptionMessage
from dapr.proto.runtime.v1 import appcallback_pb2, dapr_pb2_grpc, metadata_pb2, pubsub_pb2

from tests.api.conftest import Sidecar, StartSidecar
from tests.api.test_grpc_more import reason
from tests.api.test_grpc_sdk import Sdk, connect
from tests.api.test_publish_http import PUBSUB
from tests.appchannel.appserver import AppServer, Reply, Request
from tests.support.mosquitto import Mosquitto, require_mosquitto

MEM = PUBSUB.replace('"5"', '"1000"')

KEPT = """
---
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata: {name: kept}
spec:
  pubsubname: PUBSUB_NAME
  topic: kept
  routes: {default: /kept}
"""


async def next_msg(sub: Any) -> SubscriptionMessage:
    """The sync subscription's next message (it blocks, so in a thread)."""
    async with asyncio.timeout(20):
        msg: SubscriptionMessage = await asyncio.to_thread(sub.next_message)
    return msg


async def backlog(s: Sidecar, key: str) -> int:
    assert s.runtime.subscriptions is not None
    return (await s.runtime.subscriptions.inbox.backlog()).get(key, (0, 0))[0]


async def backlog_is(s: Sidecar, key: str, n: int) -> bool:
    return await backlog(s, key) == n


async def until(check: Callable[[], Any], what: str, limit_s: float = 20) -> None:
    """Poll ``check`` (a predicate, sync or async) until it holds."""
    for _ in range(int(limit_s * 50)):
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def streaming_subs(s: Sidecar) -> list[dict[str, Any]]:
    doc = (await s.client.get("/v1.0/metadata")).json()
    return [x for x in doc.get("subscriptions", []) if x["type"] == "STREAMING"]


async def no_streams(s: Sidecar) -> bool:
    return not await streaming_subs(s)


async def open_streams_gauge(s: Sidecar) -> float:
    r = await s.client.get(f"http://127.0.0.1:{s.runtime.view.ports['metrics']}/metrics")
    for line in r.text.splitlines():
        if line.startswith("edge_runtime_grpc_streaming_subscriptions "):
            return float(line.split()[1])
    raise AssertionError("no streaming gauge")


async def _gauge_is(s: Sidecar, n: float) -> bool:
    return await open_streams_gauge(s) == n


async def _healthy(s: Sidecar) -> bool:
    return (await s.client.get("/v1.0/healthz")).status_code == 204


async def publish(s: Sidecar, topic: str, data: Any, **headers: str) -> None:
    r = await s.client.post(f"/v1.0/publish/mem/{topic}", json=data, headers=headers)
    assert r.status_code == 204


@pytest.fixture
async def side(start_sidecar: StartSidecar) -> Sidecar:
    s: Sidecar = await start_sidecar(MEM)
    return s


@pytest.fixture
async def sdk(side: Sidecar, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Sdk]:
    client = await connect(side, monkeypatch)
    yield client
    await asyncio.to_thread(client.client.close)


async def test_events_arrive_with_cloudevent_fields(sdk: Sdk, side: Sidecar) -> None:
    sub = await sdk(sdk.client.subscribe, "mem", "orders")
    try:
        (listed,) = await streaming_subs(side)
        assert (listed["pubsubname"], listed["topic"]) == ("mem", "orders")
        assert await open_streams_gauge(side) == 1
        tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        await publish(side, "orders", {"n": 1}, traceparent=tp)
        msg = await next_msg(sub)
        assert (msg.topic(), msg.pubsub_name()) == ("orders", "mem")
        assert msg.data() == {"n": 1}
        assert msg.data_content_type() == "application/json"
        assert (msg.type(), msg.source(), msg.spec_version()) == (
            "com.dapr.event.sent", "app", "1.0")
        assert msg.id()
        ext = msg.extensions()
        assert (ext["traceparent"], ext["topic"], ext["pubsubname"]) == (tp, "orders", "mem")
        assert ext["time"]
        assert await backlog(side, "mem|orders") == 1  # in the inbox until answered
        await sdk(sub.respond_success, msg)
        await until(lambda: backlog_is(side, "mem|orders", 0), "the answered event's delete")
    finally:
        await sdk(sub.close)
    await until(lambda: no_streams(side), "the subscription to end with its stream")
    await until(lambda: _gauge_is(side, 0), "the open-streams gauge back to 0")




async def test_retry_redelivers_and_drop_dead_letters(sdk: Sdk, side: Sidecar) -> None:
    dead = await sdk(sdk.client.subscribe, "mem", "dead")
    sub = await sdk(sdk.client.subscribe, "mem", "work", dead_letter_topic="dead")
    try:
        await publish(side, "work", {"n": 1})
        first = await next_msg(sub)
        await sdk(sub.respond_retry, first)
        again = await next_msg(sub)  # the same event, after the retry policy's delay
        assert (again.id(), again.data()) == (first.id(), {"n": 1})
        await sdk(sub.respond_drop, again)
        dropped = await next_msg(dead)  # the original bytes, published to the DLQ topic
        assert (dropped.id(), dropped.topic(), dropped.data()) == (first.id(), "dead", {"n": 1})
        await sdk(dead.respond_success, dropped)
        await until(lambda: backlog_is(side, "mem|work", 0), "the dropped event's delete")
    finally:
        await sdk(sub.close)
        await sdk(dead.close)


async def test_unanswered_event_comes_back_on_the_next_stream(sdk: Sdk, side: Sidecar) -> None:
    sub = await sdk(sdk.client.subscribe, "mem", "once")
    await publish(side, "once", {"n": 7})
    sent = await next_msg(sub)
    await sdk(sub.close)  # without answering
    await until(lambda: no_streams(side), "the first stream to close")
    assert await backlog(side, "mem|once") == 1
    sub = await sdk(sdk.client.subscribe, "mem", "once")
    try:
        again = await next_msg(sub)
        assert (again.id(), again.data()) == (sent.id(), {"n": 7})
        await sdk(sub.respond_success, again)
        await until(lambda: backlog_is(side, "mem|once", 0), "the delete")
    finally:
        await sdk(sub.close)


async def test_declared_subscription_keeps_events_between_streams(
    start_sidecar: StartSidecar, monkeypatch: pytest.MonkeyPatch
) -> None:
    s: Sidecar = await start_sidecar(MEM + KEPT.replace("PUBSUB_NAME", "mem"))
    sdk = await connect(s, monkeypatch)
    try:
        for i in range(3):  # before any stream: kept in the inbox (no app either)
            await publish(s, "kept", {"i": i})
        await until(lambda: backlog_is(s, "mem|kept", 3), "3 events in the inbox")
        sub = await sdk(sdk.client.subscribe, "mem", "kept")
        seen = []
        for _ in range(3):
            msg = await next_msg(sub)
            seen.append(msg.data()["i"])
            if msg.data()["i"] < 2:
                await sdk(sub.respond_success, msg)
        await sdk(sub.close)  # the third was sent but not answered
        for i in range(3, 5):  # while no stream is open
            await publish(s, "kept", {"i": i})
        await until(lambda: backlog_is(s, "mem|kept", 3), "3 events waiting")
        doc = (await s.client.get("/v1.0/metadata")).json()
        assert [(x["topic"], x["type"]) for x in doc["subscriptions"]] == [("kept", "DECLARATIVE")]
        sub = await sdk(sdk.client.subscribe, "mem", "kept")
        try:
            for _ in range(3):
                msg = await next_msg(sub)
                seen.append(msg.data()["i"])
                await sdk(sub.respond_success, msg)
            await until(lambda: backlog_is(s, "mem|kept", 0), "every event answered")
        finally:
            await sdk(sub.close)
        assert seen == [0, 1, 2, 2, 3, 4]  # in order; the unanswered one again first
    finally:
        await asyncio.to_thread(sdk.client.close)


async def test_stream_takes_over_from_the_app_while_open(
    start_sidecar: StartSidecar, monkeypatch: pytest.MonkeyPatch
) -> None:
    subscribe = json.dumps([{"pubsubname": "mem", "topic": "both", "route": "/both"}]).encode()
    at_app: list[Any] = []

    def app(req: Request) -> Reply:
        if req.path == "/dapr/subscribe":
            return Reply(200, subscribe)
        at_app.append(json.loads(req.body)["data"])
        return Reply(200, b"")

    async with AppServer(app) as server:
        s: Sidecar = await start_sidecar(MEM, app_port=server.port)
        await until(lambda: _healthy(s), "the app to be ready")
        sdk = await connect(s, monkeypatch)
        try:
            sub = await sdk(sdk.client.subscribe, "mem", "both")
            try:
                types = sorted((x["topic"], x["type"]) for x in (
                    await s.client.get("/v1.0/metadata")).json()["subscriptions"])
                assert types == [("both", "PROGRAMMATIC"), ("both", "STREAMING")]
                await publish(s, "both", {"to": "stream"})
                msg = await next_msg(sub)
                assert msg.data() == {"to": "stream"}
                await sdk(sub.respond_success, msg)
                # The SDK sends the answer from its own thread: closing at once may end the
                # stream before the answer is sent, and the event then goes to the app too
                # (at least once). Wait until the sidecar took the answer.
                await until(lambda: backlog_is(s, "mem|both", 0), "the answer to settle it")
            finally:
                await sdk(sub.close)
            await until(lambda: no_streams(s), "the stream to end")
            await publish(s, "both", {"to": "app"})
            await until(lambda: len(at_app) >= 1, "the app to get the topic back")
            assert at_app == [{"to": "app"}]  # the stream's event was not delivered twice
        finally:
            await asyncio.to_thread(sdk.client.close)



async def test_restart_keeps_an_unanswered_event(
    start_sidecar: StartSidecar, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    components = MEM + KEPT.replace("PUBSUB_NAME", "mem")
    data = tmp_path / "kept-data"
    first: Sidecar = await start_sidecar(components, data_dir=data)
    sdk = await connect(first, monkeypatch)
    sub = await sdk(sdk.client.subscribe, "mem", "kept")
    await publish(first, "kept", {"i": 42})
    sent = await next_msg(sub)
    first.runtime.request_shutdown()  # with the stream open and the event unanswered
    assert await asyncio.wait_for(first.task, 20) == 0
    await sdk(sub.close)
    await asyncio.to_thread(sdk.client.close)
    second: Sidecar = await start_sidecar(components, data_dir=data)
    sdk = await connect(second, monkeypatch)
    sub = await sdk(sdk.client.subscribe, "mem", "kept")
    try:
        again = await next_msg(sub)
        assert (again.id(), again.data()) == (sent.id(), {"i": 42})
        await sdk(sub.respond_success, again)
    finally:
        await sdk(sub.close)
        await asyncio.to_thread(sdk.client.close)


async def test_one_stream_per_topic(sdk: Sdk, side: Sidecar) -> None:
    sub = await sdk(sdk.client.subscribe, "mem", "solo")
    try:
        with pytest.raises(Exception, match="already subscribed"):
            await sdk(sdk.client.subscribe, "mem", "solo")
        other = await sdk(sdk.client.subscribe, "mem", "solo2")  # another topic is fine
        await sdk(other.close)
    finally:
        await sdk(sub.close)
    await until(lambda: no_streams(side), "both streams to end")
    again = await sdk(sdk.client.subscribe, "mem", "solo")  # free again once closed
    await sdk(again.close)


async def test_aio_subscribe_with_handler(side: Sidecar) -> None:
    """``dapr.aio``: its constructor checks health synchronously, so it runs in a thread
    with its own event loop while the sidecar serves on the test's."""
    got: list[Any] = []
    ready, stop = threading.Event(), threading.Event()
    port = side.runtime.view.ports["grpc"]

    async def client_main() -> None:
        client = AioDaprClient(address=f"127.0.0.1:{port}")

        async def handler(msg: SubscriptionMessage) -> TopicEventResponse:
            got.append(msg.data())
            return TopicEventResponse("success")

        close = await client.subscribe_with_handler("mem", "aio", handler)
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.05)
        await close()
        await client.close()

    thread = threading.Thread(target=asyncio.run, args=(client_main(),))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAPR_HTTP_PORT", str(side.port))
        thread.start()
        try:
            await until(ready.is_set, "the aio subscription")
            for i in range(3):
                await publish(side, "aio", {"i": i})
            await until(lambda: len(got) >= 3, "3 events at the aio handler")
            assert got == [{"i": 0}, {"i": 1}, {"i": 2}]
            await until(lambda: backlog_is(side, "mem|aio", 0), "every event answered")
        finally:
            stop.set()
            await asyncio.to_thread(thread.join, 20)




async def test_sync_subscribe_with_handler_and_grpc_metadata(sdk: Sdk, side: Sidecar) -> None:
    got: list[Any] = []

    def handler(msg: SubscriptionMessage) -> TopicEventResponse:
        got.append(msg.data())
        # RETRY once: the same event comes back to the handler
        return TopicEventResponse("retry" if len(got) == 1 else "success")

    close = await sdk(sdk.client.subscribe_with_handler, "mem", "handled", handler)
    try:
        # gRPC GetMetadata lists the stream too (the SDK's wrapper does not show them).
        async with grpc.aio.insecure_channel(
            f"127.0.0.1:{side.runtime.view.ports['grpc']}"
        ) as channel:
            stub = dapr_pb2_grpc.DaprStub(channel)  # type: ignore[no-untyped-call]
            md = await stub.GetMetadata(metadata_pb2.GetMetadataRequest())
        streaming = metadata_pb2.PubsubSubscriptionType.Value("STREAMING")
        assert [(x.topic, x.type) for x in md.subscriptions] == [("handled", streaming)]
        await publish(side, "handled", {"i": 1})
        await until(lambda: len(got) >= 2, "the event twice at the handler")
        assert got == [{"i": 1}, {"i": 1}]
        await until(lambda: backlog_is(side, "mem|handled", 0), "the event answered")
    finally:
        await sdk(close)
    await until(lambda: no_streams(side), "the stream to end")


async def test_protocol_edges_with_a_raw_stub(side: Sidecar) -> None:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{side.runtime.view.ports['grpc']}")
    stub = dapr_pb2_grpc.DaprStub(channel)  # type: ignore[no-untyped-call]
    req = pubsub_pb2.SubscribeTopicEventsRequestAlpha1
    initial = pubsub_pb2.SubscribeTopicEventsRequestInitialAlpha1
    processed = pubsub_pb2.SubscribeTopicEventsRequestProcessedAlpha1
    try:
        # The first message must be the initial request.
        call = stub.SubscribeTopicEventsAlpha1(iter([req(event_processed=processed(id="x"))]))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call.read()
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # An unknown pubsub is the publish API's error.
        call = stub.SubscribeTopicEventsAlpha1(
            iter([req(initial_request=initial(pubsub_name="nope", topic="t"))]))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call.read()
        assert (info.value.code(), reason(info.value)) == (grpc.StatusCode.INVALID_ARGUMENT,
                                                           "DAPR_PUBSUB_NOT_FOUND")
        # initial_response comes first, then the events; answers settle them.
        outgoing: asyncio.Queue[Any] = asyncio.Queue()
        await outgoing.put(req(initial_request=initial(pubsub_name="mem", topic="raw")))

        async def requests() -> AsyncIterator[Any]:
            while (item := await outgoing.get()) is not None:
                yield item

        call = stub.SubscribeTopicEventsAlpha1(requests())
        first = await call.read()
        assert first.WhichOneof("subscribe_topic_events_response_type") == "initial_response"
        await publish(side, "raw", {"n": 1})
        event = (await call.read()).event_message
        assert (event.topic, event.path, json.loads(event.data)) == ("raw", "/", {"n": 1})
        status = appcallback_pb2.TopicEventResponse(
            status=appcallback_pb2.TopicEventResponse.SUCCESS)
        await outgoing.put(req(event_processed=processed(id=event.id, status=status)))
        await until(lambda: backlog_is(side, "mem|raw", 0), "the answer to settle the event")
        await outgoing.put(None)  # half-close: the server ends the stream
        assert await call.code() == grpc.StatusCode.OK
    finally:
        await channel.close()


@pytest.mark.broker
async def test_streams_over_mqtt_lose_nothing(
    start_sidecar: StartSidecar, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    require_mosquitto()
    with Mosquitto(tmp_path / "broker") as broker:
        mqtt = textwrap.dedent(f"""
            apiVersion: dapr.io/v1alpha1
            kind: Component
            metadata: {{name: mem}}
            spec:
              type: pubsub.mqtt3
              version: v1
              metadata:
              - {{name: url, value: "{broker.url}"}}
              - {{name: consumerID, value: stream-test}}
              - {{name: cleanSession, value: "false"}}
        """)
        s: Sidecar = await start_sidecar(mqtt + KEPT.replace("PUBSUB_NAME", "mem"))
        sdk = await connect(s, monkeypatch)
        try:
            seen: list[int] = []
            for round_ in range(3):  # open, take what is there, close; publish in between
                for i in range(round_ * 5, round_ * 5 + 5):
                    await publish(s, "kept", {"i": i})
                sub = await sdk(sdk.client.subscribe, "mem", "kept")
                try:
                    while len(set(seen)) < round_ * 5 + 5:
                        msg = await next_msg(sub)
                        seen.append(msg.data()["i"])
                        await sdk(sub.respond_success, msg)
                finally:
                    await sdk(sub.close)
            assert sorted(set(seen)) == list(range(15))
        finally:
            await asyncio.to_thread(sdk.client.close)
