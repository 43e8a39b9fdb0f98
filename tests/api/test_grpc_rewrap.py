"""``rewrapped``: the handler an interceptor returns keeps the kind and the serializers of the
one it wraps, and takes a new request deserializer only when given one; the interceptor
rewraps the handlers of the methods the server knows and leaves the rest to grpc."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from edge_runtime.api.grpc.rewrap import RewrappingInterceptor, rewrapped

KINDS = [
    (grpc.unary_unary_rpc_method_handler, "unary_unary"),
    (grpc.unary_stream_rpc_method_handler, "unary_stream"),
    (grpc.stream_unary_rpc_method_handler, "stream_unary"),
    (grpc.stream_stream_rpc_method_handler, "stream_stream"),
]


def behavior(request: Any, context: Any) -> Any:
    return request


def deserialize(raw: bytes) -> Any:
    return raw


def serialize(message: Any) -> bytes:
    return bytes(message)


@pytest.mark.parametrize(("make", "attr"), KINDS)
def test_kind_and_serializers_are_kept(make: Any, attr: str) -> None:
    handler = make(behavior, request_deserializer=deserialize, response_serializer=serialize)
    seen: list[Any] = []

    def wrap(inner: Any) -> Any:
        seen.append(inner)
        return len

    out = rewrapped(handler, wrap)
    assert seen == [behavior]
    assert (out.request_streaming, out.response_streaming) == (
        handler.request_streaming, handler.response_streaming)
    assert getattr(out, attr) is len
    others = {a for _, a in KINDS} - {attr}
    assert all(getattr(out, a) is None for a in others)
    assert out.request_deserializer is deserialize
    assert out.response_serializer is serialize


def test_a_new_deserializer_replaces_the_old() -> None:
    handler = grpc.unary_unary_rpc_method_handler(behavior, deserialize, serialize)
    out = rewrapped(handler, lambda b: b, str)
    assert out.request_deserializer is str
    assert out.response_serializer is serialize


class Recording(RewrappingInterceptor):
    def __init__(self) -> None:
        self.seen: list[tuple[Any, Any]] = []

    def rewrap(self, handler: Any, details: Any) -> Any:
        self.seen.append((handler, details))
        return rewrapped(handler, lambda _b: len)


async def test_the_interceptor_rewraps_known_methods_only() -> None:
    handler = grpc.unary_unary_rpc_method_handler(behavior, deserialize, serialize)
    known = {"/svc/Known": handler}

    async def continuation(details: Any) -> Any:
        return known.get(details)

    interceptor = Recording()
    assert await interceptor.intercept_service(continuation, "/svc/Other") is None
    out = await interceptor.intercept_service(continuation, "/svc/Known")
    assert interceptor.seen == [(handler, "/svc/Known")]
    assert out.unary_unary is len
