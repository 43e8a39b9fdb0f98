"""GrpcAppChannel against real gRPC apps: the official SDK's ``dapr.ext.grpc.App`` and small
``AppCallback`` servicers on ``grpc.aio`` (for what the SDK hides or cannot answer)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import grpc
import pytest
from dapr.ext.grpc import (
    App,
    BindingRequest,
    InvokeMethodRequest,
    InvokeMethodResponse,
    Rule,
    SubscriptionMessage,
)
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import appcallback_pb2, appcallback_pb2_grpc

from edge_runtime.appchannel import (
    AppUnavailableError,
    BindingEvent,
    BindingTarget,
    InvokeCall,
    Invoker,
    Outcome,
)
from edge_runtime.appchannel.grpc import AppCallError, GrpcAppChannel, grpc_metadata, http_status
from edge_runtime.subscriptions import FILE_NAME, load, route_for, save
from edge_runtime.subscriptions.fromgrpc import from_topic_subscriptions
from tests.appchannel.grpcapp import RawApp, SdkApp, free_port

TOKEN = "app-secret"


def channel(port: int, timeout_s: float = 5.0) -> GrpcAppChannel:
    return GrpcAppChannel("127.0.0.1", port, api_token=TOKEN, timeout_s=timeout_s)


def _noop(event: SubscriptionMessage) -> None:
    return None


def subscribing_app(app: App) -> None:
    app.subscribe("mem", "orders")(_noop)

    def fire(event: SubscriptionMessage) -> None:
        return None

    def high(event: SubscriptionMessage) -> None:
        return None

    # Registered out of priority order: the SDK sorts the rules by priority (and takes the
    # dead-letter topic from the first registration).
    app.subscribe("mem", "alerts", rule=Rule("event.data.level > 5", 2),
                  dead_letter_topic="dead")(high)
    app.subscribe("mem", "alerts", rule=Rule('event.type == "fire"', 1))(fire)
    app.subscribe("mem", "raw", metadata={"rawPayload": "true"})(_noop)
    app.subscribe("mem", "sensors/+", disable_topic_validation=True)(_noop)


async def test_discovery_from_the_sdk_app(tmp_path: Path) -> None:
    with SdkApp(subscribing_app) as app:
        ch = channel(app.port)
        try:
            subs, problems = await ch.discover_subscriptions()
        finally:
            await ch.close()
    assert problems == []
    by_topic = {s.topic: s for s in subs}
    assert set(by_topic) == {"orders", "alerts", "raw", "sensors/+"}
    # No routes: one catch-all rule with the path "" (the app looks up by topic).
    orders = by_topic["orders"]
    assert [(r.match.source, r.path) for r in orders.rules] == [("", "")]
    assert orders.dead_letter_topic is None
    assert route_for(orders, {"type": "anything"}) == ""
    # Rules in priority order; the path is the handler's name; no default route.
    alerts = by_topic["alerts"]
    assert [r.path for r in alerts.rules] == ["fire", "high"]
    assert alerts.default_path is None
    assert alerts.dead_letter_topic == "dead"
    assert route_for(alerts, {"type": "fire", "data": {"level": 9}}) == "fire"
    assert route_for(alerts, {"type": "smoke", "data": {"level": 9}}) == "high"
    assert route_for(alerts, {"type": "smoke", "data": {"level": 1}}) is None
    assert by_topic["raw"].raw_payload
    assert by_topic["sensors/+"].default_path == "sensors/+"
    # The saved list (subscribe from boot) keeps the "" path.
    save(tmp_path / FILE_NAME, subs)
    again = {s.topic: s for s in load(tmp_path / FILE_NAME)}
    assert [(r.match.source, r.path) for r in again["orders"].rules] == [("", "")]
    assert [r.path for r in again["alerts"].rules] == ["fire", "high"]


def test_topic_subscription_conversion_rules() -> None:
    sub = appcallback_pb2.TopicSubscription
    subs = [
        sub(pubsub_name="p", topic="a", routes=appcallback_pb2.TopicRoutes(default="/d"),
          bulk_subscribe=appcallback_pb2.BulkSubscribeConfig(enabled=True)),
        sub(pubsub_name="p", topic="b", bulk_subscribe=appcallback_pb2.BulkSubscribeConfig(
            enabled=True, max_messages_count=10, max_await_duration_ms=50)),
        sub(pubsub_name="p", topic="c", routes=appcallback_pb2.TopicRoutes(
            rules=[appcallback_pb2.TopicRule(match='event.type == "x"', path="x")])),
        sub(pubsub_name="p", topic="bad", routes=appcallback_pb2.TopicRoutes(
            rules=[appcallback_pb2.TopicRule(match="size(event) > 1", path="x")])),
        sub(pubsub_name="p", topic=""),
        sub(pubsub_name="p", topic="a"),
    ]
    out, problems = from_topic_subscriptions(subs)
    by_topic = {s.topic: s for s in out}
    assert set(by_topic) == {"a", "b", "c"}
    a, b, c = by_topic["a"], by_topic["b"], by_topic["c"]
    assert a.default_path == "/d"
    assert a.rules == ()
    assert (a.bulk.enabled, a.bulk.max_messages, a.bulk.max_await_ms) == (True, 100, 1000)
    assert (b.bulk.enabled, b.bulk.max_messages, b.bulk.max_await_ms) == (True, 10, 50)
    assert [r.path for r in b.rules] == [""]
    # Rules but no default: nothing catches the rest (as daprd reads it).
    assert route_for(c, {"type": "y"}) is None
    assert len(problems) == 3
    assert any("item 3" in p and "match" in p for p in problems)
    assert any("item 4" in p and "topic" in p for p in problems)
    assert any("already subscribed" in p for p in problems)


class Bare(appcallback_pb2_grpc.AppCallbackServicer):  # type: ignore[misc]
    """An app that implements nothing: every method answers UNIMPLEMENTED."""


async def test_an_app_that_implements_nothing() -> None:
    async with RawApp(Bare()) as app:
        ch = channel(app.port)
        try:
            assert await ch.discover_subscriptions() == ([], [])
            assert not await ch.accepts_binding("button", "button")
            assert not await ch.health_check()
            request = appcallback_pb2.TopicEventRequest(id="1", topic="t", pubsub_name="p")
            assert await ch.topic_event(request, {}) is Outcome.SUCCESS  # processed
            bulk = appcallback_pb2.TopicEventBulkRequest(topic="t", pubsub_name="p")
            assert await ch.bulk_topic_event(bulk) is None
            result = await ch.invoke(InvokeCall("m"))
            assert result.status == 501
            assert json.loads(result.data)["code"] == grpc.StatusCode.UNIMPLEMENTED.value[0]
            assert await ch.binding_event(BindingEvent("b", "b", b"x")) is Outcome.RETRY
        finally:
            await ch.close()


def method_app(seen: list[InvokeMethodRequest]) -> Any:
    def setup(app: App) -> None:
        @app.method("echo")
        def echo(req: InvokeMethodRequest) -> InvokeMethodResponse:
            seen.append(req)
            resp = InvokeMethodResponse(b"<" + req.data + b">", "text/plain")
            resp.headers = (("x-reply", "yes"),)
            return resp

        @app.method("fail")
        def fail(req: InvokeMethodRequest) -> bytes:
            raise RuntimeError("app failure")

    return setup


async def test_invoke_through_the_sdk_app() -> None:
    seen: list[InvokeMethodRequest] = []
    with SdkApp(method_app(seen)) as app:
        ch = channel(app.port)
        try:
            assert isinstance(ch, Invoker)
            headers = {"x-custom": "v1", "dapr-api-token": "forged", "Bad Key": "x",
                       "x-bin": "\u00e9"}
            result = await ch.invoke(InvokeCall("echo", "POST", b"hello", "text/plain",
                                                headers=headers))
            failed = await ch.invoke(InvokeCall("fail", data=b"{}"))
            missing = await ch.invoke(InvokeCall("nope"))
        finally:
            await ch.close()
    assert result.status == 200
    assert result.data == b"<hello>"
    assert result.content_type == "text/plain"
    assert result.headers["x-reply"] == "yes"
    (req,) = seen
    assert req.data == b"hello"
    assert req.content_type == "text/plain"
    md = {k: v[0] if isinstance(v, list) else v for k, v in req.metadata.items()}
    assert md["dapr-api-token"] == TOKEN  # ours, not the forged one
    assert md["x-custom"] == "v1"
    assert "bad key" not in md
    assert "x-bin" not in md
    # An exception in the handler: UNKNOWN → 500, the status as a JSON body.
    assert failed.status == 500
    assert failed.content_type == "application/json"
    assert "app failure" in json.loads(failed.data)["message"]
    assert missing.status == 501


class Recorder(appcallback_pb2_grpc.AppCallbackServicer):  # type: ignore[misc]
    """Records invocations and binding calls; answers what the test sets."""

    def __init__(self) -> None:
        self.invokes: list[Any] = []
        self.metadata: list[dict[str, str]] = []
        self.list_bindings_calls = 0
        self.binding_events: list[Any] = []
        self.status: grpc.StatusCode | None = None
        self.sleep = 0.0

    async def OnInvoke(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC name
        self.invokes.append(request)
        self.metadata.append(dict(context.invocation_metadata()))
        if self.sleep:
            await asyncio.sleep(self.sleep)
        if self.status is not None:
            await context.abort(self.status, "no such order")
        return common_pb2.InvokeResponse(content_type="application/json")

    async def ListInputBindings(self, _request: Any, _context: Any) -> Any:  # noqa: N802
        self.list_bindings_calls += 1
        return appcallback_pb2.ListInputBindingsResponse(bindings=["button", "serial"])

    async def OnBindingEvent(self, request: Any, context: Any) -> Any:  # noqa: N802
        self.binding_events.append(request)
        self.metadata.append(dict(context.invocation_metadata()))
        if request.name == "serial":
            await context.abort(grpc.StatusCode.INTERNAL, "cannot store it")
        return appcallback_pb2.BindingEventResponse()


class Healthy(appcallback_pb2_grpc.AppCallbackHealthCheckServicer):  # type: ignore[misc]
    async def HealthCheck(self, _request: Any, _context: Any) -> Any:  # noqa: N802 - gRPC name
        return appcallback_pb2.HealthCheckResponse()


async def test_invoke_carries_verb_query_and_content_type() -> None:
    rec = Recorder()
    async with RawApp(rec) as app:
        ch = channel(app.port)
        try:
            ok = await ch.invoke(InvokeCall("orders/7", "put", b'{"n":1}', "application/json",
                                            "a=1&b=two"))
            await ch.invoke(InvokeCall("x", "FETCH"))
            rec.status = grpc.StatusCode.NOT_FOUND
            missing = await ch.invoke(InvokeCall("orders/8", "GET"))
            rec.status = grpc.StatusCode.PERMISSION_DENIED
            denied = await ch.invoke(InvokeCall("orders/9", "DELETE"))
        finally:
            await ch.close()
    first, unknown = rec.invokes[0], rec.invokes[1]
    assert first.method == "orders/7"
    assert first.data.value == b'{"n":1}'
    assert first.content_type == "application/json"
    assert first.http_extension.verb == common_pb2.HTTPExtension.Verb.PUT
    assert first.http_extension.querystring == "a=1&b=two"
    assert unknown.http_extension.verb == common_pb2.HTTPExtension.Verb.NONE
    assert rec.metadata[0]["dapr-api-token"] == TOKEN
    assert ok.status == 200
    assert ok.content_type == "application/json"
    assert (missing.status, json.loads(missing.data)) == (
        404, {"code": grpc.StatusCode.NOT_FOUND.value[0], "message": "no such order"})
    assert denied.status == 403


async def test_bindings_and_health() -> None:
    rec = Recorder()
    async with RawApp(rec) as app:
        ch = channel(app.port)
        try:
            assert isinstance(ch, BindingTarget)
            assert await ch.accepts_binding("button", "button")
            assert await ch.accepts_binding("serial", "serial")
            assert not await ch.accepts_binding("gpio", "gpio")
            assert rec.list_bindings_calls == 1  # cached
            event = BindingEvent("button", "button", b'{"line":17}', {"edge": "rising"})
            assert await ch.binding_event(event) is Outcome.SUCCESS
            assert await ch.binding_event(BindingEvent("serial", "serial", b"x")) is Outcome.RETRY
            assert not await ch.health_check()  # the health service is not registered
        finally:
            await ch.close()
    got = rec.binding_events[0]
    assert (got.name, got.data, dict(got.metadata)) == ("button", b'{"line":17}',
                                                        {"edge": "rising"})
    assert rec.metadata[0]["dapr-api-token"] == TOKEN


async def test_health_check_answered() -> None:
    server = grpc.aio.server()
    appcallback_pb2_grpc.add_AppCallbackHealthCheckServicer_to_server(Healthy(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    ch = channel(port)
    try:
        assert await ch.health_check()
    finally:
        await ch.close()
        await server.stop(None)


def binding_app(seen: list[BindingRequest]) -> Any:
    def setup(app: App) -> None:
        @app.binding("button")
        def button(req: BindingRequest) -> None:
            seen.append(req)
            if req.text() == "boom":
                raise RuntimeError("cannot handle it")

    return setup


async def test_bindings_through_the_sdk_app() -> None:
    seen: list[BindingRequest] = []
    with SdkApp(binding_app(seen)) as app:
        ch = channel(app.port)
        try:
            assert await ch.accepts_binding("button", "button")
            assert not await ch.accepts_binding("other", "other")
            ok = await ch.binding_event(BindingEvent("button", "button", b"pressed",
                                                     {"line": "17"}))
            failed = await ch.binding_event(BindingEvent("button", "button", b"boom"))
        finally:
            await ch.close()
    assert (ok, failed) == (Outcome.SUCCESS, Outcome.RETRY)
    assert seen[0].data == b"pressed"
    assert seen[0].binding_metadata == {"line": "17"}
    assert dict(seen[0].metadata)["dapr-api-token"] == [TOKEN]


async def test_app_not_reachable() -> None:
    ch = channel(free_port(), timeout_s=2)
    try:
        with pytest.raises(AppUnavailableError):
            await ch.invoke(InvokeCall("m"))
        with pytest.raises(AppUnavailableError):
            await ch.topic_event(appcallback_pb2.TopicEventRequest(id="1"), {})
        with pytest.raises(AppUnavailableError):
            await ch.binding_event(BindingEvent("b", "b", b""))
        with pytest.raises(AppUnavailableError):
            await ch.accepts_binding("b", "b")
        with pytest.raises(AppUnavailableError):
            await ch.discover_subscriptions()
        assert not await ch.health_check()
    finally:
        await ch.close()
    with pytest.raises(AppUnavailableError):  # closed: still our error, not grpc's
        await ch.invoke(InvokeCall("m"))


async def test_deadline_and_app_errors() -> None:
    rec = Recorder()
    async with RawApp(rec) as app:
        ch = channel(app.port, timeout_s=0.2)
        try:
            rec.sleep = 5.0
            with pytest.raises(AppUnavailableError, match="DEADLINE_EXCEEDED"):
                await ch.invoke(InvokeCall("slow"))
        finally:
            await ch.close()


class FailingEvents(appcallback_pb2_grpc.AppCallbackServicer):  # type: ignore[misc]
    async def OnTopicEvent(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC name
        if request.id == "unknown-status":
            return appcallback_pb2.TopicEventResponse(status=7)
        await context.abort(grpc.StatusCode.INTERNAL, "database down")
        return None  # not reached: abort raises

    async def ListTopicSubscriptions(self, _request: Any, context: Any) -> Any:  # noqa: N802
        await context.abort(grpc.StatusCode.INTERNAL, "not ready")


async def test_event_error_statuses() -> None:
    async with RawApp(FailingEvents()) as app:
        ch = channel(app.port)
        try:
            odd = appcallback_pb2.TopicEventRequest(id="unknown-status")
            assert await ch.topic_event(odd, {}) is Outcome.RETRY
            with pytest.raises(AppCallError, match="database down") as info:
                await ch.topic_event(appcallback_pb2.TopicEventRequest(id="1"), {})
            assert (info.value.code, info.value.status) == ("INTERNAL", 500)
            with pytest.raises(AppCallError):
                await ch.discover_subscriptions()
        finally:
            await ch.close()


def test_status_mapping_and_metadata_filter() -> None:
    assert http_status(grpc.StatusCode.OK) == 200
    assert http_status(grpc.StatusCode.INVALID_ARGUMENT) == 400
    assert http_status(grpc.StatusCode.ALREADY_EXISTS) == 409
    assert http_status(grpc.StatusCode.UNAVAILABLE) == 503
    assert http_status(grpc.StatusCode.DATA_LOSS) == 500
    assert grpc_metadata({"Retained": "true", "pubsubName": "mem", "grpc-timeout": "1S",
                          "content-type": "x", "a b": "c", "k": "caf\u00e9",
                          "trace-bin": "x", "dapr-api-token": "forged"}) == [
        ("retained", "true"), ("pubsubname", "mem")]

