"""``CallLocal`` on the wire: :class:`InvokeCall`/:class:`InvokeResult` ↔ the dapr stubs'
``common.v1.InvokeRequest``/``InvokeResponse`` plus call metadata (names in the package root).

The verb travels both in ``http_extension.verb`` (when it is one of the enum's) and in
``edge-http-verb`` (any verb); the query in ``http_extension.querystring``; the body as the
``Any``'s value. Imports protobuf, never grpc.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from dapr.proto.common.v1 import common_pb2
from google.protobuf import any_pb2

from edge_runtime.appchannel import InvokeCall, InvokeResult
from edge_runtime.invocation import MD_HEADERS, MD_STATUS, MD_VERB

__all__ = [
    "call_of",
    "decode_headers",
    "encode_headers",
    "reply_of",
    "request_of",
    "result_of",
]

Metadata = Sequence[tuple[str, str | bytes]]


def encode_headers(headers: Mapping[str, str]) -> bytes:
    """Headers as compact JSON pairs."""
    return json.dumps(list(headers.items()), separators=(",", ":")).encode()


def decode_headers(raw: str | bytes | None) -> dict[str, str]:
    """The headers sent by :func:`encode_headers`; anything malformed is ``{}`` for the whole
    value or skipped per pair."""
    if not raw:
        return {}
    try:
        pairs = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return {}
    if not isinstance(pairs, list):
        return {}
    out: dict[str, str] = {}
    for pair in pairs:
        if isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair):
            out[pair[0].lower()] = pair[1]
    return out


def request_of(call: InvokeCall) -> tuple[Any, list[tuple[str, str | bytes]]]:
    """The request message and the metadata entries that carry the rest of ``call``."""
    try:
        verb = common_pb2.HTTPExtension.Verb.Value(call.http_verb.upper())
    except ValueError:
        verb = common_pb2.HTTPExtension.Verb.Value("NONE")
    message = common_pb2.InvokeRequest(
        method=call.method,
        data=any_pb2.Any(value=call.data),
        content_type=call.content_type,
        http_extension=common_pb2.HTTPExtension(verb=verb, querystring=call.query),
    )
    return message, [(MD_VERB, call.http_verb), (MD_HEADERS, encode_headers(call.headers))]


def call_of(message: Any, metadata: Mapping[str, str | bytes]) -> InvokeCall:
    """The call a ``CallLocal`` request carries (verb ``POST`` when none is given)."""
    verb = metadata.get(MD_VERB)
    if not isinstance(verb, str) or not verb:
        name = common_pb2.HTTPExtension.Verb.Name(message.http_extension.verb)
        verb = "POST" if name == "NONE" else name
    return InvokeCall(
        method=message.method,
        http_verb=verb,
        data=bytes(message.data.value),
        content_type=message.content_type,
        query=message.http_extension.querystring,
        headers=decode_headers(metadata.get(MD_HEADERS)),
    )


def reply_of(result: InvokeResult) -> tuple[Any, list[tuple[str, str | bytes]]]:
    """The reply message and its trailing metadata."""
    message = common_pb2.InvokeResponse(
        data=any_pb2.Any(value=result.data), content_type=result.content_type
    )
    return message, [(MD_STATUS, str(result.status)), (MD_HEADERS, encode_headers(result.headers))]


def result_of(message: Any, trailing: Metadata) -> InvokeResult:
    """The app's answer from a reply and its trailing metadata (status 200 when missing)."""
    md = dict(trailing)
    status = md.get(MD_STATUS)
    code = int(status) if isinstance(status, str) and status.isdigit() else 200
    return InvokeResult(
        code, bytes(message.data.value), message.content_type, decode_headers(md.get(MD_HEADERS))
    )
