"""A request that does not parse is the caller's mistake: INVALID_ARGUMENT, not UNKNOWN.

grpc.aio deserializes a request before any servicer code runs, and answers a
``DecodeError`` (bytes that are not the RPC's message, a string field holding invalid UTF-8)
with UNKNOWN, the exception's text and a traceback in the log. :class:`DecodeGuard` gives
every handler a deserializer that turns the failure into a marker, and a behavior that answers
the marker with ``ERR_MALFORMED_REQUEST`` (INVALID_ARGUMENT). On a request stream the bad
message raises :class:`~edge_runtime.errors.APIError` where the servicer reads it, for its
error wrapper to render. Put it last in the wrapper list: the outer wrappers (metrics,
token) copy its deserializer, so a call with a bad token and bad bytes is still refused
UNAUTHENTICATED, and the refusal is counted.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

from google.protobuf.message import DecodeError

from edge_runtime import errors as E
from edge_runtime.api.grpc.errors import abort
from edge_runtime.api.grpc.rewrap import HandlerWrapper, rewrapped
from edge_runtime.errors import APIError

__all__ = ["DecodeGuard"]


class _Undecodable:
    """Stands in for a request that did not parse."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _malformed(bad: _Undecodable) -> APIError:
    return APIError(E.MALFORMED_REQUEST, f"the request is not a valid message: {bad.reason}")


def _guarded(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def parse(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except DecodeError as exc:
            return _Undecodable(str(exc))

    return parse


def _unary_request(behavior: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(behavior):  # a response stream: stay a generator

        async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
            if isinstance(request, _Undecodable):
                await abort(context, _malformed(request))
            async for response in behavior(request, context):
                yield response

        return stream

    async def unary(request: Any, context: Any) -> Any:
        if isinstance(request, _Undecodable):
            await abort(context, _malformed(request))
        result = behavior(request, context)
        return await result if inspect.isawaitable(result) else result

    return unary


async def _checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        if isinstance(request, _Undecodable):
            raise _malformed(request)
        yield request


def _stream_request(behavior: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(behavior):

        async def stream(requests: Any, context: Any) -> AsyncIterator[Any]:
            async for response in behavior(_checked(requests), context):
                yield response

        return stream

    async def unary(requests: Any, context: Any) -> Any:
        result = behavior(_checked(requests), context)
        return await result if inspect.isawaitable(result) else result

    return unary


class DecodeGuard(HandlerWrapper):
    """Answers requests that do not parse with INVALID_ARGUMENT (see the module docstring)."""

    def rewrap(self, handler: Any, method: str) -> Any:
        """Every handler, with a deserializer that cannot raise ``DecodeError``."""
        wrap = _stream_request if handler.request_streaming else _unary_request
        return rewrapped(handler, wrap, _guarded(handler.request_deserializer))
