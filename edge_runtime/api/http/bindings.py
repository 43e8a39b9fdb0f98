"""``POST|PUT /v1.0/bindings/{name}``: invoke an output binding (contract §2.5).

The body is ``{"data": <any JSON>, "metadata": {"k": "v"}, "operation": "create"}``, decoded
as Go decodes it into daprd's request struct: field names case-insensitively, unknown fields
ignored, ``null`` as absent, metadata values strings only; anything else is 400
``ERR_MALFORMED_REQUEST``. ``data`` reaches the binding re-encoded as JSON
(:func:`~edge_runtime.api.bindings.go_json`: ``"hi"`` arrives as the 4 bytes ``"hi"``; no
``data`` arrives as ``null``). ``traceparent``/``tracestate`` request headers are added to the
metadata unless it has them. The reply is 200 with the binding's bytes (``Content-Type:
application/json``, whatever they are), or 204 when the binding returned nothing; response
metadata comes back as ``metadata.<key>`` headers, on errors too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from edge_runtime import errors as E
from edge_runtime.api.bindings import OutputBindings, go_json, metadata_headers
from edge_runtime.api.http.app import Request, Response, Route, route
from edge_runtime.errors import APIError

__all__ = ["parse_body", "routes"]

_TRACE_HEADERS = ("traceparent", "tracestate")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _malformed(reason: str) -> APIError:
    return APIError(E.MALFORMED_REQUEST, f"failed deserializing HTTP body: {reason}")


def _field(body: Mapping[str, Any], name: str) -> Any:
    """Go's struct decoding: an exact name wins, else the last case-insensitive match."""
    if name in body:
        return body[name]
    value = None
    for key, v in body.items():
        if key.lower() == name:
            value = v
    return value


def parse_body(raw: bytes) -> tuple[bytes, dict[str, str], str]:
    """``(data, metadata, operation)`` from a request body; raises ``ERR_MALFORMED_REQUEST``."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise _malformed(str(exc)) from None
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise _malformed("the body must be a JSON object")
    operation = _field(body, "operation")
    if operation is None:
        operation = ""
    if not isinstance(operation, str):
        raise _malformed("operation must be a string")
    metadata = _field(body, "metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _malformed("metadata must be an object of string values")
    try:
        data = go_json(_field(body, "data"))
    except ValueError as exc:  # NaN/Infinity cannot be re-encoded
        raise _malformed(f"data: {exc}") from None
    return data, dict(metadata), operation


def _sendable(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    """The headers HTTP can carry (others are left out); values go out as UTF-8 bytes."""
    out = []
    for name, value in headers.items():
        if _TOKEN.fullmatch(name) and not _BAD_VALUE.search(value):
            out.append((name, value.encode().decode("latin-1")))
    return out


def routes(bindings: OutputBindings) -> list[Route]:
    """The output binding routes bound to ``bindings``."""

    async def invoke(req: Request) -> Response:
        data, metadata, operation = parse_body(req.body)
        for name in _TRACE_HEADERS:
            if name in req.headers and name not in metadata:
                metadata[name] = req.headers[name]
        try:
            result = await bindings.invoke(req.params["name"], operation, data, metadata)
        except APIError as err:
            err.headers = dict(_sendable(err.headers))
            raise
        if result is None:
            return Response(204)
        return Response(200, result.data, headers=_sendable(metadata_headers(result.metadata)))

    return [route("POST,PUT", "/v1.0/bindings/{name}", invoke, "bindings")]
