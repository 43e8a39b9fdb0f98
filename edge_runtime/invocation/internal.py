"""The server side of ``edge_runtime.internal.v1.Invocation/CallLocal``: peers' calls into
our app.

Served with ``grpc.method_handlers_generic_handler`` and the dapr stubs' message types (no
.proto of our own). Every call must carry the shared token (``edge-internal-token``, compared
in constant time) when one is configured, and, with TLS, a client certificate signed by the
configured CA. A call meant for another app id is refused with NOT_FOUND (the caller's name
table points at the wrong device). Errors are answered as gRPC statuses from the error table;
no grpc exception leaves this module.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from dapr.proto.common.v1 import common_pb2

from edge_runtime.appchannel import InvokeCall, InvokeResult
from edge_runtime.errors import APIError, GrpcCode
from edge_runtime.invocation import (
    MD_CALLEE,
    MD_CALLER,
    MD_CALLER_NAMESPACE,
    MD_TOKEN,
    METHOD,
    SERVICE,
    TlsFiles,
)
from edge_runtime.invocation.peers import channel_options
from edge_runtime.invocation.wire import call_of, reply_of
from edge_runtime.support.grpcbind import bind

__all__ = ["InternalServer", "LocalHandler"]

log = logging.getLogger("edge_runtime.invocation")

LocalHandler = Callable[[InvokeCall, str, str], Awaitable[InvokeResult]]
"""``(call, caller app id, caller namespace) -> the app's answer``; raises ``APIError``."""

_STATUS = {code.value[0]: code for code in grpc.StatusCode}


class InternalServer:
    """``CallLocal`` on ``host:port`` (0 picks a free port) for app ``app_id``."""

    def __init__(
        self,
        handler: LocalHandler,
        *,
        app_id: str,
        host: str,
        port: int,
        token: str | None,
        tls: TlsFiles | None,
        max_body_size: int,
        graceful_s: float = 5.0,
    ) -> None:
        self._handler = handler
        self._app_id = app_id
        self._host = host
        self._requested_port = port
        self._token = token.encode() if token else None
        self._tls = tls
        self._max_body_size = max_body_size
        self._graceful_s = graceful_s
        self._server: Any = None
        self.port = 0

    async def start(self) -> None:
        """Bind and serve; raises :class:`OSError` when the port cannot be bound or a TLS
        file cannot be read."""
        options: list[tuple[str, Any]] = [("grpc.so_reuseport", 0)]
        options += channel_options(self._max_body_size)
        server = grpc.aio.server(options=options)
        handler = grpc.unary_unary_rpc_method_handler(
            self._call_local,
            request_deserializer=common_pb2.InvokeRequest.FromString,
            response_serializer=common_pb2.InvokeResponse.SerializeToString,
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, {METHOD: handler}),)
        )
        address = f"{self._host}:{self._requested_port}"
        credentials = None
        if self._tls is not None:
            credentials = grpc.ssl_server_credentials(
                [(self._tls.key.read_bytes(), self._tls.cert.read_bytes())],
                root_certificates=self._tls.ca.read_bytes(),
                require_client_auth=True,
            )
        port = bind(server, address, credentials)
        await server.start()
        self._server = server
        self.port = port
        log.debug("internal invocation port listening on %s:%d", self._host, port)

    async def stop(self) -> None:
        """Stop accepting calls and let in-flight ones finish (up to the grace period)."""
        if self._server is None:
            return
        server, self._server = self._server, None
        await server.stop(self._graceful_s)

    def _authorised(self, metadata: dict[str, str | bytes]) -> bool:
        if self._token is None:
            return True
        given = metadata.get(MD_TOKEN, "")
        raw = given.encode() if isinstance(given, str) else bytes(given)
        return hmac.compare_digest(raw, self._token)

    async def _call_local(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        metadata: dict[str, str | bytes] = dict(context.invocation_metadata() or ())
        if not self._authorised(metadata):
            log.warning("refused an internal call from %s: invalid internal token",
                        context.peer())
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid internal token")
        callee = metadata.get(MD_CALLEE, "")
        if callee != self._app_id:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"this sidecar serves app {self._app_id!r}, not {callee!r}: check the "
                "caller's name resolution table",
            )
        caller = metadata.get(MD_CALLER, "")
        namespace = metadata.get(MD_CALLER_NAMESPACE, "")
        try:
            result = await self._handler(
                call_of(request, metadata),
                caller if isinstance(caller, str) else "",
                namespace if isinstance(namespace, str) else "",
            )
        except APIError as err:
            await context.abort(_STATUS[int(err.kind.grpc)], err.message)
        if len(result.data) > self._max_body_size:
            await context.abort(
                _STATUS[int(GrpcCode.RESOURCE_EXHAUSTED)],
                f"the reply of app {self._app_id!r} ({len(result.data)} bytes) is larger than "
                f"--max-body-size ({self._max_body_size} bytes)",
            )
        reply, trailing = reply_of(result)
        context.set_trailing_metadata(tuple(trailing))
        return reply
