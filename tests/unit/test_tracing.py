"""The trace context of log records: parsing, lazy sources, the filter, and the bindings the
HTTP adapter and gRPC servicers make per request."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from edge_runtime.api.grpc.errors import handled
from edge_runtime.api.http.app import HttpApp, Request, Response, route
from edge_runtime.observability import tracing

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{SPAN_ID}-01"


def test_parse() -> None:
    assert tracing.parse(TRACEPARENT) == (TRACE_ID, SPAN_ID)
    assert tracing.parse(f" {TRACEPARENT} ") == (TRACE_ID, SPAN_ID)
    assert tracing.parse(f"01-{TRACE_ID}-{SPAN_ID}-01-future") == (TRACE_ID, SPAN_ID)
    for bad in ("", "garbage", f"ff-{TRACE_ID}-{SPAN_ID}-01", f"00-{TRACE_ID.upper()}-{SPAN_ID}-01",
                f"00-{'0' * 32}-{SPAN_ID}-01", f"00-{TRACE_ID}-{'0' * 16}-01",
                f"00-{TRACE_ID}-{SPAN_ID}", f"00-{TRACE_ID[:-1]}g-{SPAN_ID}-01"):
        assert tracing.parse(bad) is None, bad


def record() -> logging.LogRecord:
    rec = logging.LogRecord("t", logging.INFO, __file__, 1, "m", None, None)
    tracing.TraceFilter().filter(rec)
    return rec


def test_sources_are_read_when_a_record_is_made() -> None:
    assert tracing.current_ids() is None
    reads: list[int] = []

    def source() -> str:
        reads.append(1)
        return TRACEPARENT

    token = tracing.bind(source)
    try:
        assert reads == []  # binding reads nothing
        rec = record()
        assert (rec.trace_id, rec.span_id) == (TRACE_ID, SPAN_ID)
        assert reads == [1]
    finally:
        tracing.unbind(token)
    assert record().trace_id == ""
    # Envelopes: traceparent, else traceid (raw-payload metadata); malformed: none.
    for source_map, expected in (({"traceparent": TRACEPARENT}, TRACE_ID),
                                 ({"traceid": TRACEPARENT}, TRACE_ID),
                                 ({"traceparent": "nope"}, ""), ({"traceparent": 7}, ""), ({}, "")):
        token = tracing.bind(source_map)
        try:
            assert record().trace_id == expected, source_map
        finally:
            tracing.unbind(token)


def test_a_broken_source_never_breaks_logging() -> None:
    def broken() -> str:
        raise RuntimeError("no")

    token = tracing.bind(broken)
    try:
        assert tracing.current_ids() is None
        assert record().trace_id == ""
    finally:
        tracing.unbind(token)


def test_ids_given_by_the_caller_win() -> None:
    rec = logging.LogRecord("t", logging.INFO, __file__, 1, "m", None, None)
    rec.trace_id = "given"
    token = tracing.bind(TRACEPARENT)
    try:
        tracing.TraceFilter().filter(rec)
    finally:
        tracing.unbind(token)
    assert rec.trace_id == "given"


async def test_an_http_request_is_the_trace_context_while_it_is_served() -> None:
    seen: list[tuple[str, str] | None] = []

    async def handler(_req: Request) -> Response:
        seen.append(tracing.current_ids())
        return Response()

    app = HttpApp([route("GET", "/v1.0/metadata", handler)], max_body_size=1024)

    async def call(headers: list[tuple[bytes, bytes]]) -> None:
        scope = {"type": "http", "method": "GET", "path": "/v1.0/metadata", "headers": headers,
                 "query_string": b""}

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(_message: dict[str, Any]) -> None:
            return None

        await app(scope, receive, send)

    await call([(b"traceparent", TRACEPARENT.encode())])
    assert tracing.current_ids() is None  # unbound once served, in the same task too
    await call([])
    assert seen == [(TRACE_ID, SPAN_ID), None]


class _Context:
    def __init__(self, metadata: tuple[tuple[str, Any], ...]) -> None:
        self.metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, Any], ...]:
        return self.metadata


async def test_a_grpc_call_is_the_trace_context_while_it_is_served() -> None:
    seen: list[tuple[str, str] | None] = []

    class Servicer:
        @handled
        async def Rpc(self, _request: Any, _context: Any) -> None:  # noqa: N802
            await asyncio.sleep(0)
            seen.append(tracing.current_ids())

    await Servicer().Rpc(None, _Context((("x", "1"), ("traceparent", TRACEPARENT))))
    assert tracing.current_ids() is None
    await Servicer().Rpc(None, _Context((("bin-bin", b"\x00"),)))
    assert seen == [(TRACE_ID, SPAN_ID), None]
