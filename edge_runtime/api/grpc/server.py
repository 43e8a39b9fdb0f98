"""The ``grpc.aio`` server for the Dapr API, with the ``dapr-api-token`` check (§2.2)."""

from __future__ import annotations

import hmac
import inspect
import logging
from collections.abc import Callable
from typing import Any

import grpc

from edge_runtime import errors as E
from edge_runtime.api.configuration import Configurations
from edge_runtime.api.grpc.dapr import DaprServicer
from edge_runtime.api.grpc.errors import abort
from edge_runtime.api.grpc.guard import DecodeGuard
from edge_runtime.api.grpc.metrics import CallMetrics
from edge_runtime.api.grpc.rewrap import HandlerWrapper, rewrapped
from edge_runtime.api.grpc.service import add_to_server
from edge_runtime.api.invoking import Invoking
from edge_runtime.api.publishing import Publisher
from edge_runtime.api.universal import Universal
from edge_runtime.errors import APIError
from edge_runtime.runtime.streaming import StreamHub
from edge_runtime.support.grpcbind import bind

log = logging.getLogger("edge_runtime.api.grpc")

TOKEN_KEY = "dapr-api-token"  # noqa: S105 - a metadata key, not a secret


def _unauthorized() -> APIError:
    return APIError(
        E.UNAUTHENTICATED,
        "Unauthorized",
        metadata={"http.code": "401", "http.error_message": "invalid api token"},
    )


class TokenCheck(HandlerWrapper):
    """Deny every call (unary or streaming) whose ``dapr-api-token`` metadata is wrong,
    before its request is read."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    def _allowed(self, metadata: Any) -> bool:
        for key, value in metadata or ():
            if key == TOKEN_KEY:
                got = value.encode() if isinstance(value, str) else bytes(value)
                return hmac.compare_digest(got, self._token)
        return False

    def rewrap(self, handler: Any, method: str) -> Any:
        """Every handler, checking the call's token first."""
        return rewrapped(handler, self._checked)

    def _checked(self, behavior: Callable[..., Any]) -> Callable[..., Any]:
        allowed = self._allowed
        if inspect.isasyncgenfunction(behavior):  # a response stream: stay a generator

            async def stream(request: Any, context: Any) -> Any:
                if not allowed(context.invocation_metadata()):
                    await abort(context, _unauthorized())
                async for response in behavior(request, context):
                    yield response

            return stream

        async def unary(request: Any, context: Any) -> Any:
            if not allowed(context.invocation_metadata()):
                await abort(context, _unauthorized())
            result = behavior(request, context)
            return await result if inspect.isawaitable(result) else result

        return unary


class GrpcServer:
    """``dapr.proto.runtime.v1.Dapr`` on ``host:port`` (port 0 picks a free one)."""

    def __init__(
        self,
        core: Universal,
        publisher: Publisher,
        *,
        host: str = "127.0.0.1",
        port: int = 50001,
        api_token: str | None = None,
        max_message_size: int | None = None,
        graceful_s: float = 5.0,
        invoking: Invoking | None = None,
        streams: StreamHub | None = None,
        configurations: Configurations | None = None,
    ) -> None:
        self._servicer = DaprServicer(core, publisher, invoking, streams=streams,
                                      configurations=configurations)
        self._streams = streams
        self._host = host
        self._requested_port = port
        self._api_token = api_token
        self._max_message_size = max_message_size
        self._graceful_s = graceful_s
        self._server: Any = None
        self.port = 0

    async def start(self) -> None:
        """Bind and serve; raises :class:`OSError` when the port cannot be bound."""
        # Metrics first: it then sees (and counts) the calls the token check refuses.
        # Wrapped once per method here, not per call by interceptors (api/grpc/rewrap.py).
        wrappers: list[HandlerWrapper] = [CallMetrics()]
        if self._api_token:
            wrappers.append(TokenCheck(self._api_token))
        wrappers.append(DecodeGuard())  # last: the others copy its deserializer
        # No SO_REUSEPORT: a second sidecar on the same port must fail, not share our calls.
        options: list[tuple[str, Any]] = [("grpc.so_reuseport", 0)]
        if self._max_message_size:
            options.append(("grpc.max_receive_message_length", self._max_message_size))
        server = grpc.aio.server(options=options)
        add_to_server(self._servicer, server, wrappers)
        address = f"{self._host}:{self._requested_port}"
        port = bind(server, address)
        await server.start()
        self._server = server
        self.port = port
        log.debug("gRPC API listening on %s:%d", self._host, port)

    async def stop(self) -> None:
        """End the streaming subscriptions (their unanswered events stay in the inbox), stop
        accepting calls and let in-flight ones finish (up to the grace period)."""
        if self._server is None:
            return
        if self._streams is not None:
            await self._streams.close_all()
        server, self._server = self._server, None
        await server.stop(self._graceful_s)
