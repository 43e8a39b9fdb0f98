"""Our small ASGI adapter: a route table over the fixed Dapr API, no web framework.

It reads the body (refusing anything over ``--max-body-size`` with 413 before reading it when
``Content-Length`` says so), checks the API token, finds the route, calls the handler and
renders :class:`~edge_runtime.errors.APIError` as Dapr's JSON error body. Any other exception
is logged with its traceback and answered with a generic 500: never a stack trace on the wire.
The request's headers are the trace context of what is logged while it is served (a
``traceparent`` there gives records their trace id).
Unknown paths get a 404 and known paths with another method a 405, both as JSON errors.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

from edge_runtime import errors as E
from edge_runtime.errors import APIError
from edge_runtime.observability import tracing
from edge_runtime.observability.metrics import HTTP_REQUESTS
from edge_runtime.support import jsonbytes

log = logging.getLogger("edge_runtime.api.http")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON = "application/json"


@dataclass(slots=True)
class Request:
    """A parsed request: path parameters, query pairs, lower-case headers and the body."""

    method: str
    path: str
    params: dict[str, str]
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes = b""
    raw_query: str = ""

    def arg(self, name: str, default: str = "") -> str:
        """The first query value named ``name``."""
        return next((v for k, v in self.query if k == name), default)

    def metadata(self) -> dict[str, str]:
        """``metadata.<key>`` query parameters, prefix stripped, first value kept."""
        out: dict[str, str] = {}
        for k, v in self.query:
            if k.startswith("metadata.") and len(k) > 9:
                out.setdefault(k[9:], v)
        return out

    def json(self) -> Any:
        """The body parsed as JSON; a 400 ``ERR_MALFORMED_REQUEST`` when it is not."""
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            # RecursionError: JSON nested deeper than the interpreter's stack (``[[[[...``).
            raise APIError(E.MALFORMED_REQUEST, f"failed deserializing HTTP body: {exc}") from None


@dataclass(slots=True)
class Response:
    """What a handler returns; ``content_type`` ``None`` sends no Content-Type."""

    status: int = 204
    body: bytes = b""
    content_type: str | None = JSON
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def json(cls, value: Any, status: int = 200) -> Response:
        """A JSON body."""
        return cls(status, jsonbytes.dumps(value))


Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Route:
    """``pattern`` segments are literals, ``{name}`` (one segment) or ``{name...}`` (the rest)."""

    methods: frozenset[str]
    pattern: str
    handler: Handler
    group: str
    # (kind, text) per segment: kind 0 literal, 1 one-segment parameter, 2 rest parameter.
    parts: tuple[tuple[int, str], ...] = ()

    def __post_init__(self) -> None:
        parts = []
        for part in self.pattern.strip("/").split("/"):
            if part.startswith("{") and part.endswith("...}"):
                parts.append((2, part[1:-4]))
            elif part.startswith("{"):
                parts.append((1, part[1:-1]))
            else:
                parts.append((0, part))
        object.__setattr__(self, "parts", tuple(parts))

    def match(self, segments: Sequence[str]) -> dict[str, str] | None:
        """Path parameters when ``segments`` fit the pattern, else ``None``."""
        params: dict[str, str] = {}
        n = len(segments)
        for i, (kind, text) in enumerate(self.parts):
            if kind == 2:
                if i >= n:
                    return None
                params[text] = "/".join(segments[i:])
                return params
            if i >= n:
                return None
            if kind == 1:
                params[text] = segments[i]
            elif text != segments[i]:
                return None
        return params if len(self.parts) == n else None


def route(methods: str, pattern: str, handler: Handler, group: str = "") -> Route:
    """Shorthand: ``route("GET,DELETE", "/v1.0/state/{store}/{key}", h)``."""
    return Route(frozenset(methods.split(",")), pattern, handler, group or pattern.split("/")[2])


def error_response(err: APIError) -> Response:
    """Dapr's JSON error body with the table's HTTP status."""
    resp = Response.json(err.json_body(), err.kind.http)
    resp.headers.extend(err.headers.items())
    return resp


_EXEMPT = frozenset({"/v1.0/healthz", "/v1.0/healthz/outbound"})
# How much of a body over --max-body-size is still read (and dropped) before the 413, and for
# how long at most: enough for an honest client to finish sending and read the answer.
DRAIN_BYTES = 1024 * 1024
DRAIN_S = 1.0


class HttpApp:
    """The ASGI callable serving one route table."""

    def __init__(
        self,
        routes: Sequence[Route],
        *,
        max_body_size: int,
        api_token: str | None = None,
        fallback: Handler | None = None,
    ) -> None:
        self.routes = list(routes)
        self.max_body_size = max_body_size
        self._token = api_token.encode() if api_token else None
        self._counters: dict[tuple[str, int], Any] = {}
        # Serves requests no route matches when they name a target app (``dapr-app-id``):
        # that is service invocation of the whole path (contract §2.6).
        self.fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point (HTTP only; lifespan is handled by the runtime, not uvicorn)."""
        if scope["type"] != "http":
            return
        group = "unmatched"
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        trace = tracing.bind(headers)  # records logged for this request carry its trace id
        body = _BodyTracker(receive)
        try:
            resp, group = await self._handle(scope, headers, body.receive)
        except APIError as err:
            resp = error_response(err)
        except Exception:
            log.exception("unhandled error serving %s %s", scope["method"], scope["path"])
            resp = Response.json(
                {"errorCode": "ERROR", "message": "internal error; see the sidecar log"}, 500
            )
        finally:
            tracing.unbind(trace)
        counter = self._counters.get((group, resp.status))
        if counter is None:  # a labels() lookup takes a lock: once per (route, status)
            counter = self._counters[group, resp.status] = HTTP_REQUESTS.labels(
                group, str(resp.status))
        counter.inc()
        if not body.done and _has_body(scope["headers"]):
            # Answered without reading the whole body (413, 401, 404 ...): close after the
            # reply, or the server would go on receiving (and discarding) what the client
            # still sends, up to a gigabyte behind a lying Content-Length.
            resp.headers.append(("Connection", "close"))
        await self._send(send, resp)

    async def _handle(
        self, scope: Scope, headers: dict[str, str], receive: Receive
    ) -> tuple[Response, str]:
        method: str = scope["method"]
        raw: bytes = scope.get("raw_path") or scope["path"].encode()
        raw_path = raw.decode("latin-1").split("?", 1)[0]
        segments = [unquote(s) for s in raw_path.split("/") if s]
        path = "/" + "/".join(segments)
        if self._token is not None and not (method == "GET" and path in _EXEMPT):
            given = headers.get("dapr-api-token", "").encode("latin-1")
            if not hmac.compare_digest(given, self._token):
                return Response(401, b"invalid api token", "text/plain; charset=utf-8"), "auth"
        found, allowed = self._find(method, segments)
        if found is None and self.fallback is not None and _names_app(headers):
            found = (Route(frozenset({method}), "/", self.fallback, "invoke"), {})
        if found is None:
            if allowed:
                raise APIError(
                    E.METHOD_NOT_ALLOWED,
                    f"method {method} is not allowed for {path}",
                    headers={"Allow": ", ".join(sorted(allowed))},
                )
            raise APIError(E.NOT_FOUND, f"no Dapr API route for {method} {path}")
        r, params = found
        body = await self._read_body(headers, receive)
        raw_query = scope.get("query_string", b"").decode("latin-1")
        query = parse_qsl(raw_query, keep_blank_values=True)
        request = Request(method, path, params, query, headers, body, raw_query)
        return await r.handler(request), r.group

    def _find(
        self,
        method: str,
        segments: Sequence[str],
    ) -> tuple[tuple[Route, dict[str, str]] | None, set[str]]:
        allowed: set[str] = set()
        for r in self.routes:
            params = r.match(segments)
            if params is None:
                continue
            if method in r.methods:
                return (r, params), allowed
            allowed |= r.methods
        return None, allowed

    async def _read_body(self, headers: dict[str, str], receive: Receive) -> bytes:
        limit = self.max_body_size
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            await self._refuse(receive, 0, int(length))
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._refuse(receive, size, None)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _refuse(self, receive: Receive, read: int, declared: int | None) -> None:
        """Raise 413. A body at most :data:`DRAIN_BYTES` over the limit is first read to its
        end (and thrown away, within :data:`DRAIN_S`), so an honest client that is still
        sending gets the 413 rather than a reset connection; anything bigger (a gigabyte
        behind ``Content-Length``, an endless chunked body) is cut off: the reply then closes
        the connection (see ``__call__``)."""
        limit = self.max_body_size
        budget = (declared - read) if declared is not None else DRAIN_BYTES
        if declared is None or declared <= limit + DRAIN_BYTES:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DRAIN_S):
                    while budget > 0:
                        message = await receive()
                        if message["type"] == "http.disconnect":
                            break
                        budget -= len(message.get("body", b""))
                        if not message.get("more_body", False):
                            break
        raise _too_large(limit)

    @staticmethod
    async def _send(send: Send, resp: Response) -> None:
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in resp.headers]
        if resp.content_type is not None and resp.status != 204:
            headers.append((b"content-type", resp.content_type.encode()))
        body = b"" if resp.status in (204, 304) else resp.body
        if resp.status not in (204, 304):
            headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": resp.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class _BodyTracker:
    """Wraps ASGI ``receive`` to tell whether the request body was read to its end."""

    __slots__ = ("_receive", "done")

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.done = False

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.disconnect" or not message.get("more_body", False):
            self.done = True
        return message


def _has_body(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    """Whether the request announces a body (a non-zero Content-Length, or chunks)."""
    for key, value in headers:
        name = key.lower()
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip(b"0 ")):
            return True
    return False


def _names_app(headers: dict[str, str]) -> bool:
    """Whether a request names a target app: ``dapr-app-id``, or Basic auth with the user
    ``dapr-app-id`` (both daprd's)."""
    if headers.get("dapr-app-id"):
        return True
    return basic_auth_app_id(headers.get("authorization", "")) is not None


def basic_auth_app_id(authorization: str) -> str | None:
    """The app id in ``Authorization: Basic base64("dapr-app-id:<target>")``, else ``None``."""
    if not authorization.startswith("Basic "):
        return None
    try:
        decoded = base64.b64decode(authorization[6:], validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    user, sep, target = decoded.partition(":")
    if not sep or user.lower() != "dapr-app-id" or not target or ":" in target:
        return None
    return target


def _too_large(limit: int) -> APIError:
    return APIError(
        E.BODY_TOO_LARGE, f"the request body is larger than --max-body-size ({limit} bytes)"
    )
