"""``Dapr/InvokeService`` (contract §4.2): translation between the gRPC messages and the
invocation core, with daprd's mapping of the app's HTTP answer.

A 2xx answer is an ``InvokeResponse`` (body as the ``Any``'s value, content type); any other
status ends the call with the gRPC code daprd derives from the HTTP status (§4.3), message the
status text and an ``ErrorInfo`` carrying ``http.code`` and the start of the body as
``http.error_message``. Either way the app's headers come back as initial metadata (reserved
names prefixed ``dapr-``) with ``dapr-http-status``.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

from dapr.proto.common.v1 import common_pb2
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from edge_runtime import errors as E
from edge_runtime.api.invoking import InvokeRequest, Invoking
from edge_runtime.appchannel import InvokeResult
from edge_runtime.errors import APIError, GrpcCode

__all__ = ["code_from_http", "invoke_service"]

HTTP_STATUS_KEY = "dapr-http-status"
_KEY = re.compile(r"[0-9a-z_.-]+")
_PRINTABLE = re.compile(r"[\x20-\x7e]*")
# HTTP headers that mean something else (or are forbidden) in gRPC metadata.
_PERMANENT = frozenset({
    "accept", "accept-charset", "accept-language", "accept-ranges", "connection",
    "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "cache-control",
    "content-type", "content-length", "cookie", "date", "expect", "from", "host", "if-match",
    "if-modified-since", "if-none-match", "if-schedule-tag-match", "if-unmodified-since",
    "max-forwards", "origin", "pragma", "referer", "via", "warning", "te", "user-agent",
})
_FROM_HTTP = {
    408: GrpcCode.CANCELLED, 500: GrpcCode.UNKNOWN, 400: GrpcCode.INTERNAL,
    504: GrpcCode.DEADLINE_EXCEEDED, 404: GrpcCode.NOT_FOUND, 409: GrpcCode.ALREADY_EXISTS,
    403: GrpcCode.PERMISSION_DENIED, 401: GrpcCode.UNAUTHENTICATED,
    429: GrpcCode.RESOURCE_EXHAUSTED, 501: GrpcCode.UNIMPLEMENTED, 503: GrpcCode.UNAVAILABLE,
}
_MAX_DETAIL = 63  # ErrorInfo metadata values are limited to 64 characters


def code_from_http(status: int) -> GrpcCode:
    """daprd's HTTP status → gRPC code (2xx is OK; unlisted statuses are UNKNOWN)."""
    if 200 <= status < 300:
        return GrpcCode.OK
    return _FROM_HTTP.get(status, GrpcCode.UNKNOWN)


def _metadata(result: InvokeResult) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for name, value in result.headers.items():
        key = name.lower()
        if not _KEY.fullmatch(key) or key.endswith("-bin") or not _PRINTABLE.fullmatch(value):
            continue
        if key in _PERMANENT or key.startswith("grpc-"):
            key = "dapr-" + key
        out.append((key, value))
    out.append((HTTP_STATUS_KEY, str(result.status)))
    return out


def _error_status(result: InvokeResult) -> Any:
    try:
        text = HTTPStatus(result.status).phrase
    except ValueError:
        text = ""
    detail = result.data.decode("utf-8", "replace")[:_MAX_DETAIL]
    info = error_details_pb2.ErrorInfo(
        reason=text, domain="dapr.io",
        metadata={"http.code": str(result.status), "http.error_message": detail},
    )
    packed = any_pb2.Any()
    packed.Pack(info)
    code = code_from_http(result.status)
    return rpc_status.to_status(status_pb2.Status(code=int(code), message=text, details=[packed]))


async def invoke_service(invoking: Invoking | None, request: Any, context: Any) -> Any:
    """Serve one ``InvokeService`` call; raises :class:`APIError` for the caller's wrapper."""
    if invoking is None:
        raise APIError(E.DIRECT_INVOKE_NOT_READY, "invoke API is not ready")
    message = request.message
    try:
        verb = common_pb2.HTTPExtension.Verb.Name(message.http_extension.verb)
    except ValueError:  # proto3 enums are open: any number can arrive
        raise APIError(E.MALFORMED_REQUEST,
                       f"unknown HTTP verb {message.http_extension.verb}") from None
    headers = {
        k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)
    }
    result = await invoking.invoke(InvokeRequest(
        target=request.id,
        method=message.method,
        verb="POST" if verb == "NONE" else verb,
        data=bytes(message.data.value),
        content_type=message.content_type,
        query=message.http_extension.querystring,
        headers=headers,
    ))
    await context.send_initial_metadata(tuple(_metadata(result)))
    if code_from_http(result.status) is not GrpcCode.OK:
        await context.abort_with_status(_error_status(result))
    return common_pb2.InvokeResponse(
        data=any_pb2.Any(value=result.data), content_type=result.content_type
    )
