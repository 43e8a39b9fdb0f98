"""Re-wrapping a grpc method handler: how the server counts, refuses and checks calls.

A wrapper that changes how a method runs (counts it, refuses it, checks its request) returns
a new handler of the same kind (request and response streaming or not), with the behavior it
wraps and the same serializers. :func:`rewrapped` does that once, and :class:`HandlerWrapper`
is what the three (``metrics``, ``guard`` and the token check in ``server``) implement.

They wrap each method's handler once, when the service is registered (:func:`wrap_all`),
not per call as server interceptors would: grpc.aio runs an interceptor's
``intercept_service`` coroutine and builds a new handler for every call, ~33 us of CPU per
call for the three (docs/performance.md), where a do-nothing grpc.aio server spends ~190.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpc

__all__ = ["Behavior", "HandlerWrapper", "rewrapped", "wrap_all"]

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


class HandlerWrapper:
    """Wraps the handler of one method (see the module docstring)."""

    def rewrap(self, handler: Any, method: str) -> Any:
        """The handler to serve ``method`` (its name, e.g. ``GetState``) with: ``handler``
        itself, or :func:`rewrapped` of it."""
        raise NotImplementedError


def wrap_all(
    handlers: Mapping[str, grpc.RpcMethodHandler], wrappers: Sequence[HandlerWrapper]
) -> dict[str, grpc.RpcMethodHandler]:
    """Every handler wrapped by ``wrappers``, the first outermost (it sees a call first)."""
    out = dict(handlers)
    for wrapper in reversed(wrappers):
        out = {name: wrapper.rewrap(handler, name) for name, handler in out.items()}
    return out
