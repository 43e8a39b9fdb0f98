"""The W3C trace context of the work in progress, for log records.

Code that handles a request or an event carrying a ``traceparent`` binds where that value lives
with :func:`bind` (the request's header mapping, the event's envelope, the value itself, or a
callable returning it, for gRPC metadata), and the log handlers' :class:`TraceFilter` stamps
``trace_id`` and ``span_id`` on each record emitted meanwhile (empty strings when there is none
or it is malformed). The source is kept as given and read only when a record is emitted, so
binding costs one ``ContextVar.set`` on the hot path and nothing is looked up or parsed unless
something is logged.

Scope: the binding is a context variable. asyncio gives every task a copy of its creator's
context, so a binding made inside a request's or an event's task (our HTTP server and grpc.aio
run each request in a task of its own; the inbox delivers each row in one) is never seen by another
request; binders still :func:`unbind` where the work has a clear end. Worker threads do not
inherit it (records logged there carry no trace id).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from typing import Any

__all__ = ["TraceFilter", "TraceSource", "bind", "current_ids", "parse", "unbind"]

# A traceparent; a mapping holding one under "traceparent" (or "traceid", where a CloudEvent
# envelope or raw-payload metadata keeps it); or a callable returning one.
TraceSource = str | Mapping[str, Any] | Callable[[], str]

_SOURCE: ContextVar[TraceSource | None] = ContextVar("edge_runtime_trace", default=None)
_HEX = frozenset("0123456789abcdef")


def bind(source: TraceSource) -> Token[TraceSource | None]:
    """Make ``source`` the current trace context; the token undoes it (:func:`unbind`)."""
    return _SOURCE.set(source)


def unbind(token: Token[TraceSource | None]) -> None:
    """Restore the trace context that was current before the :func:`bind` of ``token``."""
    _SOURCE.reset(token)


def parse(traceparent: str) -> tuple[str, str] | None:
    """``(trace_id, span_id)`` of a W3C ``traceparent``, or ``None`` when it is not one
    (wrong shape, upper-case or non-hex digits, version ``ff``, all-zero ids)."""
    parts = traceparent.strip().split("-")
    if len(parts) < 4 or len(parts[0]) != 2 or parts[0] == "ff":
        return None
    trace_id, span_id = parts[1], parts[2]
    if len(trace_id) != 32 or len(span_id) != 16 or not _HEX.issuperset(trace_id + span_id):
        return None
    if trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return trace_id, span_id


def _traceparent(source: TraceSource) -> str:
    if isinstance(source, str):
        return source
    if isinstance(source, Mapping):
        value = source.get("traceparent") or source.get("traceid")
    else:
        value = source()
    return value if isinstance(value, str) else ""


def current_ids() -> tuple[str, str] | None:
    """``(trace_id, span_id)`` of the bound trace context, or ``None``. Never raises."""
    source = _SOURCE.get()
    if source is None:
        return None
    try:
        return parse(_traceparent(source))
    except Exception:  # noqa: BLE001 - a broken source must never break logging
        return None


class TraceFilter(logging.Filter):
    """Sets ``record.trace_id`` and ``record.span_id`` (``""`` without a trace context) unless
    the caller passed them in ``extra``. Lets every record through."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "trace_id"):
            ids = current_ids()
            record.trace_id, record.span_id = ids if ids is not None else ("", "")
        return True
