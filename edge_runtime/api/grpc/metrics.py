"""Request metrics for the Dapr gRPC API: a handler wrapper, the counterpart of the HTTP
adapter's ``edge_runtime_http_requests``.

Every call to a method the server knows is counted in ``edge_runtime_grpc_requests`` by method
name (``GetState``) and status code name (``OK``, ``ABORTED``, ``UNIMPLEMENTED`` ...), once it
ends; unary calls also feed the ``edge_runtime_grpc_request_seconds`` histogram. Put it first in
the wrapper list, so calls the token check refuses (``UNAUTHENTICATED``) are counted too.
Methods the server does not know are left to grpc (UNIMPLEMENTED) and not counted, so a
client cannot grow the label set.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any

import grpc

from edge_runtime.api.grpc.rewrap import HandlerWrapper, rewrapped
from edge_runtime.observability.metrics import GRPC_LATENCY, GRPC_REQUESTS

__all__ = ["CallMetrics"]


def _status(context: Any, default: grpc.StatusCode) -> str:
    code: Any = context.code()
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    if isinstance(code, int) and code in _BY_NUMBER:  # a number when set from a Status
        return _BY_NUMBER[code]
    return str(default.name)


_BY_NUMBER: dict[int, str] = {c.value[0]: c.name for c in grpc.StatusCode}


def _measured(method: str, behavior: Callable[..., Any], *, unary: bool) -> Callable[..., Any]:
    async def run(request: Any, context: Any) -> Any:
        start = time.perf_counter()
        status = grpc.StatusCode.UNKNOWN.name
        try:
            result = behavior(request, context)
            if inspect.isawaitable(result):
                result = await result
        except asyncio.CancelledError:
            status = grpc.StatusCode.CANCELLED.name
            raise
        except BaseException:
            status = _status(context, grpc.StatusCode.UNKNOWN)
            raise
        else:
            status = _status(context, grpc.StatusCode.OK)
            return result
        finally:
            GRPC_REQUESTS.labels(method, status).inc()
            if unary:
                GRPC_LATENCY.labels(method, status).observe(time.perf_counter() - start)

    return run


def _measured_generator(method: str, behavior: Callable[..., Any]) -> Callable[..., Any]:
    """For a response stream served by an async generator: grpc.aio streams responses only
    from an async generator function, so the wrapper must be one too."""

    async def run(request: Any, context: Any) -> Any:
        status = grpc.StatusCode.UNKNOWN.name
        try:
            async for response in behavior(request, context):
                yield response
        except (asyncio.CancelledError, GeneratorExit):
            status = grpc.StatusCode.CANCELLED.name
            raise
        except BaseException:
            status = _status(context, grpc.StatusCode.UNKNOWN)
            raise
        else:
            status = _status(context, grpc.StatusCode.OK)
        finally:
            GRPC_REQUESTS.labels(method, status).inc()

    return run


def _wrap(method: str, behavior: Callable[..., Any], *, unary: bool) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(behavior):
        return _measured_generator(method, behavior)
    return _measured(method, behavior, unary=unary)


class CallMetrics(HandlerWrapper):
    """Counts and times every call (see the module docstring)."""

    def rewrap(self, handler: Any, method: str) -> Any:
        """Every handler, counted by method name."""
        unary = not (handler.request_streaming or handler.response_streaming)
        return rewrapped(handler, lambda behavior: _wrap(method, behavior, unary=unary))
