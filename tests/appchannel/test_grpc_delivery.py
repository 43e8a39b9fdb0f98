"""GrpcAppDelivery: the TopicEventRequest a gRPC app gets (contract §4.5), reply mapping and
bulk delivery, against real gRPC servers (the SDK's App and small recording servicers)."""

from __future__ import annotations

import base64
import json
from typing import Any

import grpc
import pytest
from dapr.ext.grpc import App, SubscriptionMessage, TopicEventResponse
from dapr.proto.runtime.v1 import appcallback_pb2, appcallback_pb2_grpc

from edge_runtime.appchannel import AppChannelError, AppUnavailableError, Outcome
from edge_runtime.appchannel.grpc import GrpcAppChannel
from edge_runtime.inbox import DropEventError, InboxRow, PoisonEventError
from edge_runtime.inbox.grpcdelivery import GrpcAppDelivery, event_data
from edge_runtime.subscriptions import BulkSettings, Subscription, from_object
from tests.appchannel.grpcapp import RawApp, SdkApp, free_port

TOKEN = "app-secret"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def row(seq: int, topic: str, data: bytes, metadata: dict[str, str] | None = None) -> InboxRow:
    return InboxRow(seq=seq, sub_key="k", topic=topic, data=data, metadata=metadata or {},
                    event_id=None, size=len(data), arrived_ms=0, ttl_boot=None,
                    ttl_deadline_ms=None, attempts=0, next_boot=None, next_mono_ms=None,
                    first_attempt_ms=None, last_error=None)


def cloudevent(event_id: str, **fields: Any) -> bytes:
    event = {"id": event_id, "source": "sensor-app", "type": "reading", "specversion": "1.0",
             "datacontenttype": "application/json", "data": {"temp": 21.5, "b": [1, "x"]},
             "topic": "sensors/a/temp", "pubsubname": "mqtt", "traceparent": TRACEPARENT,
             "time": "2026-01-01T00:00:00Z", "site": {"room": 4}}
    event.update(fields)
    return json.dumps(event).encode()


def subscription(item: dict[str, Any]) -> Subscription:
    sub, problems = from_object(item, "test", empty_paths=True)
    assert sub is not None, problems
    return sub


SENSORS = subscription({
    "pubsubname": "mqtt", "topic": "sensors/+/temp",
    "routes": {"rules": [{"match": 'event.type == "alarm"', "path": "alarm"}], "default": ""},
})
CATCH_ALL = subscription({"pubsubname": "mqtt", "topic": "sensors/+/temp",
                          "routes": {"rules": [{"match": "", "path": ""}]}})
RAW = subscription({"pubsubname": "mqtt", "topic": "raw", "metadata": {"rawPayload": "true"},
                    "routes": {"rules": [{"match": "", "path": ""}]}})


class Recorder(appcallback_pb2_grpc.AppCallbackServicer):  # type: ignore[misc]
    """Records OnTopicEvent calls; the event id picks the reply."""

    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.metadata: list[dict[str, str]] = []

    async def OnTopicEvent(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC name
        self.requests.append(request)
        self.metadata.append(dict(context.invocation_metadata()))
        status = {"retry": 1, "drop": 2}.get(request.id, 0)
        return appcallback_pb2.TopicEventResponse(status=status)


def channel(port: int) -> GrpcAppChannel:
    return GrpcAppChannel("127.0.0.1", port, api_token=TOKEN, timeout_s=5)


async def test_topic_event_request_fields() -> None:
    rec = Recorder()
    async with RawApp(rec) as app:
        ch = channel(app.port)
        delivery = GrpcAppDelivery(ch)
        try:
            event = row(1, "sensors/a/temp", cloudevent("e1", type="alarm"),
                        {"retained": "false"})
            assert await delivery(SENSORS, event) is Outcome.SUCCESS
            assert await delivery(SENSORS, row(2, "sensors/b/temp", cloudevent(
                "retry", type="alarm"))) is Outcome.RETRY
            assert await delivery(SENSORS, row(3, "sensors/b/temp", cloudevent(
                "drop", type="alarm"))) is Outcome.DROP
            raw = row(4, "raw", b"\x00\x01\xffbinary", {"retained": "true"})
            assert await delivery(RAW, raw) is Outcome.SUCCESS
            with pytest.raises(DropEventError):  # no rule matches, no default route
                await delivery(SENSORS, row(5, "sensors/a/temp", cloudevent("e5")))
            with pytest.raises(PoisonEventError):
                await delivery(SENSORS, row(6, "sensors/a/temp", b"not a cloudevent"))
        finally:
            await ch.close()
    first, raw_req = rec.requests[0], rec.requests[3]
    assert (first.id, first.source, first.type, first.spec_version) == (
        "e1", "sensor-app", "alarm", "1.0")
    assert first.data_content_type == "application/json"
    assert first.data == b'{"b":[1,"x"],"temp":21.5}'  # JSON re-serialised, as Go writes it
    assert first.topic == "sensors/a/temp"  # the topic it arrived on, not the filter
    assert first.pubsub_name == "mqtt"
    assert first.path == "alarm"
    ext = dict(first.extensions)
    assert ext["topic"] == "sensors/a/temp"
    assert ext["pubsubname"] == "mqtt"
    assert ext["traceparent"] == TRACEPARENT
    assert ext["time"] == "2026-01-01T00:00:00Z"
    assert dict(ext["site"]) == {"room": 4}
    assert not {"id", "source", "type", "specversion", "datacontenttype", "data"} & set(ext)
    md = rec.metadata[0]
    assert md["dapr-api-token"] == TOKEN
    assert md["pubsubname"] == "mqtt"
    assert md["retained"] == "false"
    assert md["traceparent"] == TRACEPARENT
    # rawPayload: the bytes as published, wrapped as daprd wraps them.
    assert raw_req.data == b"\x00\x01\xffbinary"
    assert raw_req.data_content_type == "application/octet-stream"
    assert (raw_req.type, raw_req.source, raw_req.topic) == ("com.dapr.event.sent", "Dapr", "raw")
    assert raw_req.path == ""
    assert rec.metadata[3]["retained"] == "true"


def test_event_data_rendering() -> None:
    assert event_data({"datacontenttype": "text/plain", "data": "héllo"}) == "héllo".encode()
    assert event_data({"datacontenttype": "application/xml", "data": "<a/>"}) == b"<a/>"
    assert event_data({"datacontenttype": "application/json", "data": "s"}) == b'"s"'
    assert event_data({"datacontenttype": "application/json; charset=utf-8",
                       "data": {"z": 1, "a": None}}) == b'{"a":null,"z":1}'
    assert event_data({"datacontenttype": "application/cloudevents+json",
                       "data": [1]}) == b"[1]"
    assert event_data({"data": {"x": 1}}) == b'{"x":1}'  # no content type: JSON
    assert event_data({"datacontenttype": "application/x-custom", "data": "abc"}) == b"abc"
    assert event_data({"datacontenttype": "application/x-custom", "data": 5}) == b"5"
    assert event_data({"datacontenttype": "text/plain"}) == b""
    blob = base64.b64encode(b"\x00\xfe").decode()
    assert event_data({"datacontenttype": "application/octet-stream",
                       "data_base64": blob}) == b"\x00\xfe"
    with pytest.raises(PoisonEventError):
        event_data({"data_base64": "not base64!"})
    with pytest.raises(PoisonEventError):
        event_data({"datacontenttype": "text/plain", "data": {"a": 1}})


def bulk_app(seen: list[SubscriptionMessage]) -> Any:
    def setup(app: App) -> None:
        @app.subscribe("mqtt", "sensors/+/temp")
        def readings(event: SubscriptionMessage) -> TopicEventResponse:
            seen.append(event)
            return TopicEventResponse(event.id() if event.id() in ("retry", "drop")
                                      else "success")

    return setup


BULK = Subscription("mqtt", "sensors/+/temp", rules=CATCH_ALL.rules,
                    bulk=BulkSettings(enabled=True, max_messages=10, max_await_ms=10))


async def test_bulk_through_the_sdk_app() -> None:
    seen: list[SubscriptionMessage] = []
    with SdkApp(bulk_app(seen)) as app:
        ch = channel(app.port)
        try:
            rows = [row(1, "sensors/a/temp", cloudevent("ok")),
                    row(2, "sensors/b/temp", cloudevent("retry")),
                    row(3, "sensors/c/temp", cloudevent("drop")),
                    row(4, "sensors/d/temp", b"{broken")]
            results = await GrpcAppDelivery(ch).bulk(BULK, rows)
        finally:
            await ch.close()
    assert results[1] is Outcome.SUCCESS
    assert results[2] is Outcome.RETRY
    assert results[3] is Outcome.DROP
    assert isinstance(results[4], PoisonEventError)
    assert [e.id() for e in seen] == ["ok", "retry", "drop"]
    assert seen[0].raw_data() == b'{"b":[1,"x"],"temp":21.5}'
    assert seen[0].metadata()["dapr-api-token"] == TOKEN


class AlphaBulk(appcallback_pb2_grpc.AppCallbackAlphaServicer):  # type: ignore[misc]
    """Implements only the Alpha1 bulk method; answers for the first entry only."""

    def __init__(self) -> None:
        self.requests: list[Any] = []

    async def OnBulkTopicEventAlpha1(self, request: Any, _context: Any) -> Any:  # noqa: N802
        self.requests.append(request)
        first = request.entries[0].entry_id
        return appcallback_pb2.TopicEventBulkResponse(statuses=[
            appcallback_pb2.TopicEventBulkResponseEntry(entry_id=first, status=0)])


async def test_bulk_alpha_method_and_missing_statuses() -> None:
    alpha = AlphaBulk()
    async with RawApp(appcallback_pb2_grpc.AppCallbackServicer(), alpha) as app:
        ch = channel(app.port)
        try:
            rows = [row(1, "raw", b"one"), row(2, "raw", b"two")]
            raw_bulk = Subscription("mqtt", "raw", rules=RAW.rules, metadata=RAW.metadata)
            results = await GrpcAppDelivery(ch).bulk(raw_bulk, rows)
        finally:
            await ch.close()
    assert results[1] is Outcome.SUCCESS
    assert isinstance(results[2], AppChannelError)  # left out of the reply: retried
    (request,) = alpha.requests
    assert (request.type, request.topic, request.pubsub_name, request.path) == (
        "com.dapr.event.sent.bulk", "raw", "mqtt", "")
    assert [e.bytes for e in request.entries] == [b"one", b"two"]
    assert request.entries[0].content_type == "application/octet-stream"


async def test_bulk_falls_back_to_one_by_one() -> None:
    rec = Recorder()  # no bulk method at all
    async with RawApp(rec) as app:
        ch = channel(app.port)
        try:
            rows = [row(1, "sensors/a/temp", cloudevent("a")),
                    row(2, "sensors/a/temp", cloudevent("retry"))]
            results = await GrpcAppDelivery(ch).bulk(BULK, rows)
        finally:
            await ch.close()
    assert results == {1: Outcome.SUCCESS, 2: Outcome.RETRY}
    assert [r.id for r in rec.requests] == ["a", "retry"]


class Broken(appcallback_pb2_grpc.AppCallbackServicer):  # type: ignore[misc]
    async def OnBulkTopicEvent(self, _request: Any, context: Any) -> Any:  # noqa: N802
        await context.abort(grpc.StatusCode.INTERNAL, "bulk handler crashed")


async def test_bulk_errors() -> None:
    rows = [row(1, "sensors/a/temp", cloudevent("a"))]
    async with RawApp(Broken()) as app:
        ch = channel(app.port)
        try:
            results = await GrpcAppDelivery(ch).bulk(BULK, rows)
        finally:
            await ch.close()
    assert isinstance(results[1], AppChannelError)
    assert "bulk handler crashed" in str(results[1])
    down = channel(free_port())
    try:
        results = await GrpcAppDelivery(down).bulk(BULK, rows)
    finally:
        await down.close()
    assert isinstance(results[1], AppUnavailableError)
