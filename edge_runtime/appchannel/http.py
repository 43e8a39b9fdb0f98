"""The HTTP channel to the app: subscription discovery, event delivery (contract §3.1-3.2),
input bindings (§3.5: the ``OPTIONS`` probe and event posts, the
:class:`~edge_runtime.appchannel.BindingTarget` methods) and service invocation (§3.8).

:class:`HttpAppChannel` keeps keep-alive connections to the app. Event delivery, bindings and
discovery go through :class:`~edge_runtime.appchannel.http1.Http1Client` (a small HTTP/1.1
client: httpx's per-request cost was most of the ordered delivery loop's time); service
invocation, which streams replies of any size with exact headers, through one pooled
``httpx.AsyncClient`` (proxy settings from the environment are ignored, the app is local).
Every call carries
``dapr-api-token`` when ``APP_API_TOKEN`` is set (§3.6). Transport failures and timeouts become
:class:`~edge_runtime.appchannel.AppUnavailableError`; no transport exception leaves this
module.

:func:`classify` maps a delivery reply to an :class:`~edge_runtime.appchannel.Outcome` exactly
as the §3.2 table says, and :func:`event_headers` builds the per-message headers Dapr sends.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import quote

from edge_runtime.appchannel import (
    AppReply,
    AppStatusError,
    AppUnavailableError,
    BindingEvent,
    InvokeCall,
    InvokeResult,
    Outcome,
)
from edge_runtime.appchannel.http1 import Http1Client, Http1Error

if TYPE_CHECKING:
    import httpx

__all__ = [
    "BINDING_PROBE_TIMEOUT_S",
    "CLOUDEVENTS_JSON",
    "AppReplyTooLargeError",
    "HttpAppChannel",
    "binding_headers",
    "canonical_header",
    "classify",
    "event_headers",
]

CLOUDEVENTS_JSON = "application/cloudevents+json"
TOKEN_HEADER = "dapr-api-token"  # noqa: S105 - a header name, not a secret
APP_ID_HEADER = "dapr-app-id"
BINDING_PROBE_TIMEOUT_S = 3.0  # daprd's default dapr.io/app-binding-options-timeout

log = logging.getLogger(__name__)

_TOKEN_CHARS = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# Not forwarded from broker metadata: set by the transport, hop-by-hop, or ours to set.
_SKIPPED = frozenset({
    "content-type", "content-length", "connection", "keep-alive", "proxy-connection",
    "transfer-encoding", "upgrade", "te", "trailer", "proxy-authenticate",
    "proxy-authorization", "host", TOKEN_HEADER,
})


# httpx adds these to every request; an invocation sends only what the caller sent.
_CLIENT_DEFAULTS = ("accept", "accept-encoding", "user-agent")
# Characters kept as they are when a decoded method name goes back into a URL path.
_PATH_SAFE = "/:@!$&'()*+,;=-._~"


class AppReplyTooLargeError(AppUnavailableError):
    """The app's reply to an invocation is larger than the channel's ``max_reply_bytes``."""


def _header_bytes(value: str) -> bytes:
    # Header values arrive decoded as latin-1 (HTTP) or as text (gRPC metadata); latin-1 gives
    # the original bytes back for the first, UTF-8 is how Go would send the second.
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode()


def canonical_header(name: str) -> str:
    """Go's ``CanonicalMIMEHeaderKey``: ``content-type`` → ``Content-Type``; a name with
    characters outside an HTTP token is returned unchanged."""
    if not _TOKEN_CHARS.fullmatch(name):
        return name
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def _valid(name: str, value: str) -> bool:
    return bool(_TOKEN_CHARS.fullmatch(name)) and not _BAD_VALUE.search(value)


def binding_headers(metadata: Mapping[str, str]) -> dict[str, str]:
    """One header per metadata entry (lower-cased, then Go-canonicalised). Content type and
    length, hop-by-hop names and ``*-bin`` keys are skipped, and so is an entry that is not a
    valid HTTP header. The headers of an input-binding event (contract §3.5)."""
    out: dict[str, str] = {}
    for key, value in metadata.items():
        low = key.lower()
        if low in _SKIPPED or low.endswith("-bin") or not _valid(low, value):
            continue
        out[canonical_header(low)] = value
    return out


def event_headers(metadata: Mapping[str, str], pubsub_name: str) -> dict[str, str]:
    """The headers for one delivered event: :func:`binding_headers` of the broker metadata,
    plus ``Pubsubname``."""
    out = binding_headers(metadata)
    out["Pubsubname"] = pubsub_name
    return out


def classify(reply: AppReply) -> Outcome:
    """The outcome of a delivery reply (contract §3.2).

    2xx with an empty or non-JSON body, JSON that is not an object or has no (or an empty, or a
    non-string) ``status``: SUCCESS; ``"SUCCESS"``: SUCCESS; ``"RETRY"``: RETRY; ``"DROP"``:
    DROP; any other string (values are case-sensitive): RETRY. 404: DROP. Any other status:
    RETRY. (A connection error is :class:`AppUnavailableError`, which callers treat as RETRY.)
    """
    if reply.status == 404:
        return Outcome.DROP
    if not 200 <= reply.status < 300:
        return Outcome.RETRY
    status = _status_field(reply.body)
    if status in ("", "SUCCESS"):
        return Outcome.SUCCESS
    if status == "DROP":
        return Outcome.DROP
    if status != "RETRY":
        log.warning("the app answered an unknown status %r; the event will be retried", status)
    return Outcome.RETRY


def _status_field(body: bytes) -> str:
    """``status`` as Go decodes it into ``{Status string}``: "" when the body does not decode."""
    if not body.strip():
        return ""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return ""
    if not isinstance(value, dict):
        return ""
    status: object = ""
    for key, v in value.items():  # case-insensitive, the last spelling wins
        if key.lower() == "status":
            status = v
    if status is None:
        return ""
    return status if isinstance(status, str) else ""


class HttpAppChannel:
    """The app at ``http://address:port``, over one pooled client. Coroutine-safe.

    ``timeout_s`` bounds each call (connect, send and the whole reply); ``api_token`` is sent
    as ``dapr-api-token`` on every call; ``app_id`` as ``dapr-app-id`` on discovery.
    """

    def __init__(
        self,
        address: str,
        port: int,
        *,
        api_token: str | None,
        timeout_s: float,
        app_id: str = "",
        max_connections: int = 64,
        max_reply_bytes: int | None = None,
    ) -> None:
        host = f"[{address}]" if ":" in address and not address.startswith("[") else address
        self.base_url = f"http://{host}:{port}"
        self.app_id = app_id
        self.max_reply_bytes = max_reply_bytes
        self._token = api_token or None
        self._timeout_s = timeout_s
        self._max_connections = max_connections
        self._http1 = Http1Client(address.strip("[]"), port, max_connections=max_connections)
        # Made on the first call: httpx costs ~5 MiB of RSS and ~50 ms of start-up, and a
        # sidecar with no app (or an app that is never called) needs none of it.
        self._http: httpx.AsyncClient | None = None

    @property
    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            # Deferred on purpose (docs/performance/footprint.md).
            from http.cookiejar import CookieJar, DefaultCookiePolicy

            import httpx

            self._http = httpx.AsyncClient(
                base_url=self.base_url,
                timeout=httpx.Timeout(self._timeout_s),
                limits=httpx.Limits(
                    max_connections=self._max_connections,
                    max_keepalive_connections=self._max_connections,
                ),
                trust_env=False,  # never send loopback calls through an HTTP_PROXY
                follow_redirects=False,
                # Calls from different callers share this client: a cookie the app sets for one
                # must never travel with another's call.
                cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
            )
        return self._http

    async def close(self) -> None:
        """Close the pooled connections; idempotent (a channel never used has none)."""
        await self._http1.close()
        if self._http is not None:
            await self._http.aclose()

    async def get_subscriptions(self) -> bytes | None:
        """``GET /dapr/subscribe``: the body on 2xx, ``None`` on 404 (no subscriptions).

        Raises :class:`AppStatusError` for any other status (Dapr logs it and uses none; the
        caller decides whether to keep the saved list) and :class:`AppUnavailableError`.
        """
        headers = {"Content-Type": "application/json"}
        if self.app_id:
            headers[APP_ID_HEADER] = self.app_id
        reply = await self.request("GET", "/dapr/subscribe", b"", headers)
        if reply.status == 404:
            return None
        if not 200 <= reply.status < 300:
            raise AppStatusError(
                f"GET /dapr/subscribe answered {reply.status}: {reply.body[:200]!r}", reply.status
            )
        return reply.body

    async def accepts_binding(self, name: str, route: str) -> bool:
        """``OPTIONS /{route}`` (``route`` defaults to ``name``) within 3 s: whether the app
        takes the binding's events (2xx or 405, contract §3.5). Raises
        :class:`AppUnavailableError` when the app does not answer."""
        path = route or name
        reply = await self.request("OPTIONS", path, b"", {}, timeout_s=BINDING_PROBE_TIMEOUT_S)
        accepted = 200 <= reply.status < 300 or reply.status == 405
        if not accepted:
            log.debug("OPTIONS /%s answered %d", path.lstrip("/"), reply.status)
        return accepted

    async def binding_event(self, event: BindingEvent) -> Outcome:
        """``POST /{route}`` with the raw payload, ``Content-Type: application/json`` and one
        header per event-metadata entry (contract §3.5): SUCCESS on 2xx, else RETRY. Raises
        only :class:`AppUnavailableError`."""
        path = event.route or event.name
        reply = await self.post(path, event.data, binding_headers(event.metadata))
        if 200 <= reply.status < 300:
            return Outcome.SUCCESS
        log.info("input binding %s: POST /%s answered %d; the event will be retried",
                 event.name, path.lstrip("/"), reply.status)
        return Outcome.RETRY

    async def post_event(
        self, path: str, body: bytes, headers: Mapping[str, str] | None = None
    ) -> AppReply:
        """POST one CloudEvent (the bytes as received) to ``path`` with
        ``Content-Type: application/cloudevents+json`` plus ``headers``. Raises only
        :class:`AppUnavailableError`."""
        return await self.post(path, body, headers, content_type=CLOUDEVENTS_JSON)

    async def post(
        self, path: str, body: bytes, headers: Mapping[str, str] | None = None,
        *, content_type: str = "application/json",
    ) -> AppReply:
        """POST ``body`` to ``path`` with ``content_type``; the reply whatever its status."""
        merged = dict(headers or {})
        merged["Content-Type"] = content_type
        return await self.request("POST", path, body, merged)

    async def request(
        self, method: str, path: str, body: bytes, headers: Mapping[str, str],
        *, timeout_s: float | None = None,
    ) -> AppReply:
        """One call; headers that are not valid HTTP are left out (and logged at debug).
        ``timeout_s`` replaces the channel's timeout for this call.

        Raises only :class:`AppUnavailableError`.
        """
        # Values go as UTF-8 bytes, as Go sends its strings (httpx would refuse non-ASCII str).
        sent: list[tuple[bytes, bytes]] = []
        for k, v in headers.items():
            if _valid(k, v) and k.lower() != TOKEN_HEADER:
                sent.append((k.encode(), v.strip(" \t").encode()))
            else:
                log.debug("header %r left out of the call to the app", k)
        if self._token:
            sent.append((TOKEN_HEADER.encode(), self._token.encode()))
        url = "/" + path.lstrip("/")
        try:
            status, body, reply_headers = await self._http1.request(
                method, url, sent, body,
                timeout_s=self._timeout_s if timeout_s is None else timeout_s,
            )
        except Http1Error as exc:
            raise AppUnavailableError(
                f"{method} {self.base_url}{url} failed: {exc.kind}: {exc}".rstrip(": ")
            ) from exc
        return AppReply(status, body, reply_headers)

    async def invoke(self, call: InvokeCall) -> InvokeResult:
        """``{verb} /{method}?{query}`` with the call's body, content type and headers (§3.8).

        The reply comes back as the app sent it: status, the raw body bytes (not decompressed),
        its content type and every other header (names lower-cased, repeated ones joined with
        ``", "``). ``dapr-api-token`` is the app token, never a forwarded one. Raises only
        :class:`AppUnavailableError` (:class:`AppReplyTooLargeError` when the body is over
        ``max_reply_bytes``).
        """
        sent: list[tuple[bytes, bytes]] = []
        given: set[str] = set()
        for k, v in call.headers.items():
            low = k.lower()
            if not _valid(low, v) or low in ("content-type", TOKEN_HEADER):
                continue
            given.add(low)
            sent.append((k.encode(), _header_bytes(v.strip(" \t"))))
        if call.content_type:
            sent.append((b"content-type", _header_bytes(call.content_type)))
        if self._token:
            sent.append((TOKEN_HEADER.encode(), self._token.encode()))
        url = "/" + quote(call.method.lstrip("/"), safe=_PATH_SAFE)
        if call.query:
            url += "?" + call.query
        what = f"{call.http_verb} {self.base_url}{url}"
        client = self._client  # imports httpx on the first call
        try:
            request = client.build_request(
                call.http_verb, url, content=call.data, headers=sent
            )
            for name in _CLIENT_DEFAULTS:
                if name not in given:
                    request.headers.pop(name, None)
            resp = await client.send(request, stream=True)
            try:
                body = await self._read_raw(resp, what)
            finally:
                await resp.aclose()
        except _transport_errors() as exc:
            name = type(exc).__name__
            raise AppUnavailableError(f"{what} failed: {name}: {exc}".rstrip(": ")) from exc
        headers: dict[str, str] = {}
        for raw_name, raw_value in resp.headers.raw:
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        content_type = headers.pop("content-type", "")
        return InvokeResult(resp.status_code, body, content_type, headers)

    async def _read_raw(self, resp: httpx.Response, what: str) -> bytes:
        limit = self.max_reply_bytes
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.aiter_raw():
            size += len(chunk)
            if limit is not None and size > limit:
                raise AppReplyTooLargeError(
                    f"{what}: the app's reply is larger than {limit} bytes (--max-body-size)"
                )
            chunks.append(chunk)
        return b"".join(chunks)


def _transport_errors() -> tuple[type[Exception], ...]:
    """httpx's exceptions that mean the app could not be reached or answered badly (httpx is
    imported by then: the client was made before any call)."""
    import httpx  # see _client

    return (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError)
