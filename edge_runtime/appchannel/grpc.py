"""The gRPC channel to the app (``--app-protocol grpc``, contract §4.5).

:class:`GrpcAppChannel` calls the app's ``AppCallback``, ``AppCallbackHealthCheck`` and
``AppCallbackAlpha`` services (the ``dapr`` package's generated stubs) over one ``grpc.aio``
insecure channel to ``address:port``. Every call carries ``dapr-api-token`` metadata when
``APP_API_TOKEN`` is set (§3.6) and a deadline of ``timeout_s``.

Errors: the transport ones (UNAVAILABLE: connection refused or reset; DEADLINE_EXCEEDED; a
closed channel) become :class:`~edge_runtime.appchannel.AppUnavailableError`. Any other gRPC
status is the app's answer: each method says what it makes of it, and where it raises, it
raises :class:`AppCallError` (an ``AppStatusError`` with the status mapped to HTTP). No
``grpc`` exception leaves this module.

gRPC status → HTTP status (:func:`http_status`, daprd's table, contract §4.3): OK 200,
CANCELLED 408, INVALID_ARGUMENT / FAILED_PRECONDITION / OUT_OF_RANGE 400, DEADLINE_EXCEEDED
504, NOT_FOUND 404, ALREADY_EXISTS / ABORTED 409, PERMISSION_DENIED 403, UNAUTHENTICATED 401,
RESOURCE_EXHAUSTED 429, UNIMPLEMENTED 501, UNAVAILABLE 503, INTERNAL / UNKNOWN / DATA_LOSS 500.

This module imports ``grpc``: the runtime imports it only when the app speaks gRPC.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any

import grpc
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import appcallback_pb2, appcallback_pb2_grpc
from google.protobuf import any_pb2, empty_pb2

from edge_runtime.appchannel import (
    AppStatusError,
    AppUnavailableError,
    BindingEvent,
    InvokeCall,
    InvokeResult,
    Outcome,
)
from edge_runtime.observability.metrics import APP_EVENTS_UNHANDLED
from edge_runtime.subscriptions.fromgrpc import from_topic_subscriptions
from edge_runtime.subscriptions.model import Subscription

__all__ = ["AppCallError", "GrpcAppChannel", "grpc_metadata", "http_status"]

TOKEN_KEY = "dapr-api-token"  # noqa: S105 - a metadata key, not a secret

log = logging.getLogger(__name__)

_C = grpc.StatusCode
_HTTP = {
    _C.OK: 200, _C.CANCELLED: 408, _C.INVALID_ARGUMENT: 400, _C.FAILED_PRECONDITION: 400,
    _C.OUT_OF_RANGE: 400, _C.DEADLINE_EXCEEDED: 504, _C.NOT_FOUND: 404, _C.ALREADY_EXISTS: 409,
    _C.ABORTED: 409, _C.PERMISSION_DENIED: 403, _C.UNAUTHENTICATED: 401,
    _C.RESOURCE_EXHAUSTED: 429, _C.UNIMPLEMENTED: 501, _C.UNAVAILABLE: 503, _C.INTERNAL: 500,
    _C.UNKNOWN: 500, _C.DATA_LOSS: 500,
}
_TRANSPORT = frozenset({_C.UNAVAILABLE, _C.DEADLINE_EXCEEDED})
_STATUSES = {0: Outcome.SUCCESS, 1: Outcome.RETRY, 2: Outcome.DROP}
_VERBS = dict(common_pb2.HTTPExtension.Verb.items())

_KEY = re.compile(r"[0-9a-z_.\-]+")
_VALUE = re.compile(r"[\x20-\x7e]*")
# Set by the transport or by us; an app-supplied copy must not reach the app.
_RESERVED = frozenset({"content-type", "te", "user-agent", "host", "connection", TOKEN_KEY})


def http_status(code: grpc.StatusCode) -> int:
    """The HTTP status daprd gives a gRPC status (module docstring); 500 for anything else."""
    return _HTTP.get(code, 500)


def grpc_metadata(pairs: Mapping[str, str]) -> list[tuple[str, str]]:
    """``pairs`` as gRPC metadata: keys lower-cased; entries gRPC would refuse (a key outside
    ``[0-9a-z_.-]``, a value outside printable ASCII), ``*-bin`` and ``grpc-*`` keys and the
    transport's own (content-type, te, user-agent, host, ...) are left out."""
    out: list[tuple[str, str]] = []
    for key, value in pairs.items():
        low = key.lower()
        if (low in _RESERVED or low.startswith("grpc-") or low.endswith("-bin")
                or not _KEY.fullmatch(low) or not _VALUE.fullmatch(value)):
            log.debug("metadata %r left out of the call to the app", key)
            continue
        out.append((low, value.strip()))
    return out


class AppCallError(AppStatusError):
    """The app answered a call with a gRPC error status (not a transport failure).

    ``code`` is the ``grpc.StatusCode`` name (``"UNIMPLEMENTED"`` ...), ``status`` its HTTP
    mapping, ``details`` the app's message.
    """

    def __init__(self, what: str, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{what}: the app answered {code.name}: {details}".rstrip(": "),
                         http_status(code))
        self.code = code.name
        self.grpc_code = code
        self.details = details


class GrpcAppChannel:
    """The app's ``AppCallback`` services at ``address:port``. Coroutine-safe.

    Create it inside the running event loop (``grpc.aio`` binds its channel to the loop).
    ``timeout_s`` is each call's deadline; ``api_token`` goes out as ``dapr-api-token``
    metadata; ``max_message_size`` bounds messages both ways. The channel reconnects by
    itself (backoff up to 2 s, so a restarted app is picked up quickly); calls made while
    the app is down fail at once with :class:`AppUnavailableError`.
    """

    def __init__(
        self,
        address: str,
        port: int,
        *,
        api_token: str | None,
        timeout_s: float,
        max_message_size: int | None = None,
    ) -> None:
        host = f"[{address}]" if ":" in address and not address.startswith("[") else address
        self.target = f"{host}:{port}"
        self._token = api_token or None
        self._timeout = timeout_s
        options: list[tuple[str, Any]] = [
            ("grpc.enable_http_proxy", 0),  # never send loopback calls through a proxy
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 2000),
        ]
        if max_message_size:
            options += [("grpc.max_receive_message_length", max_message_size),
                        ("grpc.max_send_message_length", max_message_size)]
        self._channel = grpc.aio.insecure_channel(self.target, options=options)
        self._app = appcallback_pb2_grpc.AppCallbackStub(self._channel)  # type: ignore[no-untyped-call]
        self._alpha = appcallback_pb2_grpc.AppCallbackAlphaStub(self._channel)  # type: ignore[no-untyped-call]
        self._health = appcallback_pb2_grpc.AppCallbackHealthCheckStub(self._channel)  # type: ignore[no-untyped-call]
        self._bindings: frozenset[str] | None = None
        self._bulk_rpc = 0  # the first bulk RPC worth trying (the ones before: UNIMPLEMENTED)
        self._closed = False

    async def close(self) -> None:
        """Close the channel (calls in flight are cancelled); idempotent."""
        if not self._closed:
            self._closed = True
            await self._channel.close()

    # ------------------------------------------------------------------ the one call path
    def _metadata(self, extra: Mapping[str, str] | None) -> list[tuple[str, str]]:
        md = grpc_metadata(extra) if extra else []
        if self._token:
            md.append((TOKEN_KEY, self._token))
        return md

    async def _call(
        self, rpc: Any, request: Any, what: str, metadata: Mapping[str, str] | None = None
    ) -> Any:
        """``await rpc(request)``: the reply, else :class:`AppUnavailableError` (transport)
        or :class:`AppCallError` (the app's status)."""
        try:
            return await rpc(request, timeout=self._timeout, metadata=self._metadata(metadata))
        except grpc.aio.AioRpcError as exc:
            code, details = exc.code(), exc.details() or ""
            if code in _TRANSPORT:
                raise AppUnavailableError(
                    f"{what} to {self.target} failed: {code.name}: {details}".rstrip(": ")
                ) from exc
            raise AppCallError(what, code, details) from exc
        except (grpc.RpcError, grpc.aio.BaseError) as exc:  # closed channel, usage errors
            raise AppUnavailableError(
                f"{what} to {self.target} failed: {type(exc).__name__}: {exc}".rstrip(": ")
            ) from exc

    # ------------------------------------------------------------------ subscriptions
    async def list_subscriptions(self) -> list[Any]:
        """``ListTopicSubscriptions``: the ``TopicSubscription`` messages; ``[]`` when the app
        does not implement it. Raises :class:`AppUnavailableError` or :class:`AppCallError`."""
        try:
            reply = await self._call(self._app.ListTopicSubscriptions, empty_pb2.Empty(),
                                     "ListTopicSubscriptions")
        except AppCallError as exc:
            if exc.grpc_code is _C.UNIMPLEMENTED:
                log.info("the app does not implement ListTopicSubscriptions: no subscriptions")
                return []
            raise
        return list(reply.subscriptions)

    async def discover_subscriptions(self) -> tuple[list[Subscription], list[str]]:
        """The app's subscriptions and the problems found in its list (the subscriptions
        concerned are left out). Raises as :meth:`list_subscriptions`."""
        return from_topic_subscriptions(await self.list_subscriptions())

    # ------------------------------------------------------------------ events
    async def topic_event(self, request: Any, metadata: Mapping[str, str]) -> Outcome:
        """``OnTopicEvent`` with a ``TopicEventRequest``; ``metadata`` goes as gRPC metadata.

        The reply's status: SUCCESS (also an empty reply), RETRY or DROP; an unknown value is
        RETRY. UNIMPLEMENTED counts as processed: SUCCESS (daprd's rule, §4.5). Any other
        error status raises :class:`AppCallError` (a RETRY for the deliverer); transport
        failures :class:`AppUnavailableError`.
        """
        try:
            reply = await self._call(self._app.OnTopicEvent, request, "OnTopicEvent", metadata)
        except AppCallError as exc:
            if exc.grpc_code is _C.UNIMPLEMENTED:
                APP_EVENTS_UNHANDLED.labels(request.pubsub_name).inc()
                log.warning("the app answered UNIMPLEMENTED for event %s on %s/%s (path %r);"
                            " counted as processed", request.id, request.pubsub_name,
                            request.topic, request.path)
                return Outcome.SUCCESS
            raise
        return _outcome(reply.status, f"event {request.id}")

    async def bulk_topic_event(
        self, request: Any, metadata: Mapping[str, str] | None = None
    ) -> dict[str, Outcome] | None:
        """``OnBulkTopicEvent`` (then ``AppCallbackAlpha.OnBulkTopicEventAlpha1`` when that is
        UNIMPLEMENTED) with a ``TopicEventBulkRequest``: each entry id the app answered for →
        its outcome (unknown values RETRY). ``None`` when the app implements neither: the
        caller delivers the entries one by one. Raises :class:`AppCallError` for another
        error status and :class:`AppUnavailableError`."""
        candidates = ((self._app.OnBulkTopicEvent, "OnBulkTopicEvent"),
                      (self._alpha.OnBulkTopicEventAlpha1, "OnBulkTopicEventAlpha1"))
        # Which one the app has is learnt once, not probed again on every batch.
        for index in range(self._bulk_rpc, len(candidates)):
            rpc, name = candidates[index]
            try:
                reply = await self._call(rpc, request, name, metadata)
            except AppCallError as exc:
                if exc.grpc_code is _C.UNIMPLEMENTED:
                    self._bulk_rpc = index + 1
                    continue
                raise
            return {s.entry_id: _outcome(s.status, f"bulk entry {s.entry_id}")
                    for s in reply.statuses}
        return None

    # ------------------------------------------------------------------ invocation
    async def invoke(self, call: InvokeCall) -> InvokeResult:
        """``OnInvoke``: the data as a ``google.protobuf.Any`` value, the content type, the
        HTTP verb (an unknown one goes as NONE) and query string; ``call.headers`` go as gRPC
        metadata. OK → 200 with the reply's data, content type and initial metadata as
        headers. An error status → its HTTP status (:func:`http_status`) with the body
        ``{"code": <gRPC code number>, "message": <details>}`` (daprd's rendering of the
        status). Raises only :class:`AppUnavailableError` (UNAVAILABLE, DEADLINE_EXCEEDED,
        connection failures)."""
        request = common_pb2.InvokeRequest(
            method=call.method,
            data=any_pb2.Any(value=call.data),
            content_type=call.content_type,
            http_extension=common_pb2.HTTPExtension(
                verb=_VERBS.get(call.http_verb.upper(), 0), querystring=call.query
            ),
        )
        grpc_call = None

        async def rpc(req: Any, **kwargs: Any) -> Any:
            nonlocal grpc_call
            grpc_call = self._app.OnInvoke(req, **kwargs)
            return await grpc_call

        try:
            reply = await self._call(rpc, request, f"OnInvoke {call.method}", call.headers)
        except AppCallError as exc:
            body = json.dumps({"code": exc.grpc_code.value[0], "message": exc.details},
                              separators=(",", ":")).encode()
            return InvokeResult(exc.status, body, "application/json")
        initial = await grpc_call.initial_metadata() if grpc_call is not None else None
        headers = {k: v for k, v in initial or ()
                   if isinstance(v, str) and not k.startswith("grpc-")}
        return InvokeResult(200, reply.data.value, reply.content_type, headers)

    # ------------------------------------------------------------------ input bindings
    async def accepts_binding(self, name: str, route: str = "") -> bool:  # noqa: ARG002
        """Whether ``name`` is in the app's ``ListInputBindings`` (asked once, then cached;
        UNIMPLEMENTED: the app takes none). ``route`` is HTTP's and not used. Raises
        :class:`AppUnavailableError` for transport failures and for any other error status
        (nothing is cached then: the next event asks again)."""
        if self._bindings is None:
            try:
                reply = await self._call(self._app.ListInputBindings, empty_pb2.Empty(),
                                         "ListInputBindings")
            except AppCallError as exc:
                if exc.grpc_code is not _C.UNIMPLEMENTED:
                    log.warning("%s: will ask again", exc)
                    raise AppUnavailableError(str(exc)) from exc
                log.info("%s: the app takes no input bindings", exc)
                self._bindings = frozenset()
            else:
                self._bindings = frozenset(reply.bindings)
        return name in self._bindings

    async def binding_event(self, event: BindingEvent) -> Outcome:
        """``OnBindingEvent`` (name, data, metadata): OK → SUCCESS; an error status → RETRY.
        The reply's ``to``/``data``/``concurrency`` are not acted on. Raises only
        :class:`AppUnavailableError`."""
        request = appcallback_pb2.BindingEventRequest(
            name=event.name, data=event.data, metadata=dict(event.metadata)
        )
        try:
            await self._call(self._app.OnBindingEvent, request, f"OnBindingEvent {event.name}")
        except AppCallError as exc:
            log.info("%s; the binding event will be retried", exc)
            return Outcome.RETRY
        return Outcome.SUCCESS

    # ------------------------------------------------------------------ health
    async def health_check(self) -> bool:
        """``AppCallbackHealthCheck.HealthCheck``: whether it answered OK (as daprd's probe:
        an app that does not implement it, or cannot be reached, is not healthy)."""
        try:
            await self._call(self._health.HealthCheck, empty_pb2.Empty(), "HealthCheck")
        except (AppCallError, AppUnavailableError) as exc:
            log.debug("app health check failed: %s", exc)
            return False
        return True


def _outcome(status: int, what: str) -> Outcome:
    outcome = _STATUSES.get(status)
    if outcome is None:
        log.warning("the app answered an unknown status %r for %s; it will be retried",
                    status, what)
        return Outcome.RETRY
    return outcome
