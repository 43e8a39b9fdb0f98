"""``rewrapped``: the handler a wrapper returns keeps the kind and the serializers of the
one it wraps, and takes a new request deserializer only when given one; ``wrap_all`` wraps
every method's handler once, in the order given."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from edge_runtime.api.grpc.rewrap import HandlerWrapper, rewrapped, wrap_all

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


class Recording(HandlerWrapper):
    def __init__(self, name: str, seen: list[tuple[str, str]]) -> None:
        self.name = name
        self.seen = seen

    def rewrap(self, handler: Any, method: str) -> Any:
        self.seen.append((self.name, method))
        inner = handler.unary_unary

        def outer(_behavior: Any) -> Any:
            return lambda request, context: f"{self.name}({inner(request, context)})"

        return rewrapped(handler, outer)


def test_wrap_all_wraps_every_handler_once_the_first_outermost() -> None:
    handler = grpc.unary_unary_rpc_method_handler(lambda _r, _c: "call", deserialize, serialize)
    seen: list[tuple[str, str]] = []
    out = wrap_all({"A": handler, "B": handler},
                   [Recording("outer", seen), Recording("inner", seen)])
    assert sorted(seen) == [("inner", "A"), ("inner", "B"), ("outer", "A"), ("outer", "B")]
    assert out["A"].unary_unary(None, None) == "outer(inner(call))"
    assert out["B"].request_deserializer is deserialize
    assert out["B"].response_serializer is serialize
