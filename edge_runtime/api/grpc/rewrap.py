"""Re-wrapping a grpc method handler: what every server interceptor of ours does.

An interceptor that changes how a method runs (counts it, refuses it, checks its request)
returns a new handler of the same kind (request and response streaming or not), with the
behavior it wraps and the same serializers. :func:`rewrapped` does that once, and
:class:`RewrappingInterceptor` is the interceptor around it, for the three (``metrics``,
``guard`` and the token check in ``server``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

__all__ = ["Behavior", "RewrappingInterceptor", "rewrapped"]

#: A method's behavior: ``(request or request iterator, context)`` -> response, awaitable of
#: one, or async iterator of them.
Behavior = Callable[..., Any]

# (request streaming, response streaming) -> the handler's attribute and its maker.
_KINDS: dict[tuple[bool, bool], tuple[str, Callable[..., grpc.RpcMethodHandler]]] = {
    (False, False): ("unary_unary", grpc.unary_unary_rpc_method_handler),
    (False, True): ("unary_stream", grpc.unary_stream_rpc_method_handler),
    (True, False): ("stream_unary", grpc.stream_unary_rpc_method_handler),
    (True, True): ("stream_stream", grpc.stream_stream_rpc_method_handler),
}


def rewrapped(
    handler: Any,
    wrap: Callable[[Behavior], Behavior],
    request_deserializer: Callable[[bytes], Any] | None = None,
) -> grpc.RpcMethodHandler:
    """A handler of ``handler``'s kind whose behavior is ``wrap(handler's behavior)``, with
    ``handler``'s response serializer and its request deserializer, or
    ``request_deserializer`` when one is given."""
    attr, make = _KINDS[bool(handler.request_streaming), bool(handler.response_streaming)]
    if request_deserializer is None:
        request_deserializer = handler.request_deserializer
    return make(
        wrap(getattr(handler, attr)),
        request_deserializer=request_deserializer,
        response_serializer=handler.response_serializer,
    )


class RewrappingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """A server interceptor that hands each known method's handler to :meth:`rewrap`; a method
    the server does not know (no handler) is left to grpc (UNIMPLEMENTED)."""

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        handler_call_details: Any,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        return self.rewrap(handler, handler_call_details)

    def rewrap(self, handler: Any, details: Any) -> Any:
        """The handler to serve the call with: ``handler`` itself, or :func:`rewrapped` of it.
        ``details`` is the call's ``HandlerCallDetails`` (method name, metadata)."""
        raise NotImplementedError
