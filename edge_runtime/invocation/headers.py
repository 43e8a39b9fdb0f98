"""Headers of an invocation: what is forwarded to the app, what comes back, trace context.

Forwarded (contract §2.6, §3.8): every request header except hop-by-hop ones (and any the
``Connection`` header names), ``host``, ``content-length``, ``content-type`` (carried on its
own), ``expect``, the Dapr API token, ``dapr-app-id``, gRPC pseudo and reserved keys
(``:authority``, ``grpc-*``), and caller-supplied copies of ``dapr-caller-app-id``,
``dapr-callee-app-id`` and ``dapr-caller-namespace``, which the sidecar sets itself.

Trace context: a valid W3C ``traceparent`` is propagated unchanged with its ``tracestate``;
when there is none (or it is malformed) a new one is made, not sampled (flags ``00``), as
daprd does with tracing off. A ``tracestate`` without a valid ``traceparent`` is dropped.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

__all__ = [
    "CALLEE_HEADER",
    "CALLER_HEADER",
    "CALLER_NAMESPACE_HEADER",
    "for_app",
    "forwardable",
    "relayable",
    "valid_traceparent",
    "with_trace",
]

CALLER_HEADER = "dapr-caller-app-id"
CALLEE_HEADER = "dapr-callee-app-id"
CALLER_NAMESPACE_HEADER = "dapr-caller-namespace"
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

_HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te",
    "trailer", "proxy-authenticate", "proxy-authorization",
})
_NOT_FORWARDED = _HOP_BY_HOP | {
    "host", "content-length", "content-type", "expect", "dapr-api-token", "dapr-app-id",
    CALLER_HEADER, CALLEE_HEADER, CALLER_NAMESPACE_HEADER,
}
# Not relayed from the app's reply: the server writing the reply sets these itself.
_NOT_RELAYED = _HOP_BY_HOP | {"content-length", "content-type"}
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")


def _dropped_by_connection(headers: Mapping[str, str]) -> set[str]:
    value = next((v for k, v in headers.items() if k.lower() == "connection"), "")
    return {token.strip().lower() for token in value.split(",") if token.strip()}


def forwardable(headers: Mapping[str, str]) -> dict[str, str]:
    """The request headers that may travel to the app, names lower-cased."""
    named = _dropped_by_connection(headers)
    out: dict[str, str] = {}
    for key, value in headers.items():
        low = key.lower()
        if low in _NOT_FORWARDED or low in named or low.startswith((":", "grpc-")):
            continue
        out[low] = value
    return out


def relayable(headers: Mapping[str, str]) -> dict[str, str]:
    """The app's reply headers that go back to the caller (hop-by-hop ones removed)."""
    named = _dropped_by_connection(headers)
    return {
        k: v for k, v in headers.items()
        if k.lower() not in _NOT_RELAYED and k.lower() not in named
    }


def valid_traceparent(value: str) -> bool:
    """Whether ``value`` is a W3C traceparent we may propagate (version ``ff`` and all-zero
    ids are invalid; version 00 has exactly four fields)."""
    m = _TRACEPARENT.fullmatch(value.strip())
    if m is None:
        return False
    version, trace_id, span_id, _flags, rest = m.groups()
    if version == "ff" or (version == "00" and rest):
        return False
    return trace_id != "0" * 32 and span_id != "0" * 16


def new_traceparent() -> str:
    """A fresh, unsampled traceparent (``os.urandom``, what ``secrets.token_hex`` reads, without
    importing ``secrets`` and ``hmac`` for it)."""
    return f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-00"


def with_trace(headers: Mapping[str, str]) -> dict[str, str]:
    """``headers`` (lower-case names) with a valid ``traceparent``: the given one, else new."""
    out = dict(headers)
    if not valid_traceparent(out.get(TRACEPARENT, "")):
        out[TRACEPARENT] = new_traceparent()
        out.pop(TRACESTATE, None)
    return out


def for_app(
    headers: Mapping[str, str], *, caller: str, callee: str, caller_namespace: str = ""
) -> dict[str, str]:
    """The headers the app receives: ``headers`` plus the caller and callee app ids (and the
    caller's namespace when it has one)."""
    out = dict(headers)
    out[CALLER_HEADER] = caller
    out[CALLEE_HEADER] = callee
    if caller_namespace:
        out[CALLER_NAMESPACE_HEADER] = caller_namespace
    return out
