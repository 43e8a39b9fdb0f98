"""Service invocation over HTTP (contract §2.6): ``/v1.0/invoke/{appid}/method/{method...}``
with any verb, and the ``dapr-app-id`` form on any other path (the app's fallback route).

The app's status, body, content type and headers go back to the caller as they came
(hop-by-hop headers aside); errors are the core's ``ERR_DIRECT_INVOKE``.
"""

from __future__ import annotations

from edge_runtime import errors as E
from edge_runtime.api.http.app import Handler, Request, Response, Route, basic_auth_app_id, route
from edge_runtime.api.invoking import InvokeRequest, Invoking
from edge_runtime.appchannel import InvokeResult
from edge_runtime.errors import APIError
from edge_runtime.invocation.headers import relayable

__all__ = ["fallback", "routes"]

VERBS = "GET,HEAD,POST,PUT,DELETE,CONNECT,OPTIONS,TRACE,PATCH"
_NO_APP_ID = "failed getting app id either from the URL path or the header dapr-app-id"


def _invoke_request(req: Request, target: str, method: str) -> InvokeRequest:
    return InvokeRequest(
        target=target,
        method=method,
        verb=req.method,
        data=req.body,
        content_type=req.headers.get("content-type", ""),
        query=req.raw_query,
        headers=req.headers,
    )


def _latin1(value: str) -> str:
    # The HTTP server writes header values as latin-1; a value decoded otherwise (a gRPC
    # app's metadata) goes out as its UTF-8 bytes.
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode().decode("latin-1")
    return value


def _response(result: InvokeResult) -> Response:
    return Response(
        result.status,
        result.data,
        _latin1(result.content_type) or None,
        [(k, _latin1(v)) for k, v in relayable(result.headers).items()],
    )


def routes(invoking: Invoking) -> list[Route]:
    """The invoke routes bound to ``invoking``."""

    async def invoke(req: Request) -> Response:
        target = req.params["appid"]
        return _response(await invoking.invoke(_invoke_request(req, target, req.params["method"])))

    async def no_method(req: Request) -> Response:
        raise APIError(E.DIRECT_INVOKE_NO_APP_ID, _NO_APP_ID)

    return [
        route(VERBS, "/v1.0/invoke/{appid}/method/{method...}", invoke, "invoke"),
        route(VERBS, "/v1.0/invoke/{rest...}", no_method, "invoke"),
    ]


def fallback(invoking: Invoking) -> Handler:
    """The handler for paths no route matches that carry ``dapr-app-id`` (or Basic auth with
    that user): the whole path is the method. The header is not forwarded."""

    async def by_header(req: Request) -> Response:
        target = req.headers.get("dapr-app-id") or basic_auth_app_id(
            req.headers.get("authorization", "")
        )
        if not target:
            raise APIError(E.DIRECT_INVOKE_NO_APP_ID, _NO_APP_ID)
        method = req.path.lstrip("/")
        return _response(await invoking.invoke(_invoke_request(req, target, method)))

    return by_header
