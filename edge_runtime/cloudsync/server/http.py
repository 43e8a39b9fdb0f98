"""The cloud's HTTP API for cloud apps (our small ASGI adapter, served like the Dapr API).

Every request needs ``Authorization: Bearer <token>``. Values are JSON when the device stored
JSON (CBOR turned back into JSON), else the raw bytes as ``application/octet-stream``.

- ``GET /v1/devices``: ``[{"id", "version", "connected", "lastSeen", "backlog", "records",
  "desiredSeq", "desiredAcked"}]``
- ``GET /v1/devices/{id}/state/{store}/{key}``: the reported value (404 when never reported or
  deleted); ``x-hlc`` carries its version
- ``PUT /v1/devices/{id}/desired/{key}`` (body: a JSON value; bytes that are not JSON, or
  ``application/octet-stream``, are kept as bytes): ``{"key", "seq", "hlc"}``; ``DELETE``
  removes it; ``GET .../desired`` lists
- ``GET /v1/devices/{id}/events?after=N&limit=M``: ``{"events": [{"seq", "topic", "id",
  "hlc", "receivedAt", "data"}], "next": N}``
- ``PUT /v1/devices/{id}/limits`` ``{"rate": r, "window": w, "pauseMs": p}``: slow a
  connected device (404 when it is not connected)
- the fleet page and its routes (``GET /v1/devices/{id}/state``, ``.../history/...``):
  :mod:`edge_runtime.cloudsync.server.fleet`
"""

from __future__ import annotations

import base64
import hmac
import json
from collections.abc import Callable
from typing import Any

import cbor2

from edge_runtime.api.http.app import HttpApp, Receive, Request, Response, Route, Scope, Send, route
from edge_runtime.cloudsync.hlc import HLC
from edge_runtime.cloudsync.server.fleet import fleet_routes
from edge_runtime.cloudsync.server.store import CloudStore
from edge_runtime.cloudsync.sources import decode_payload

__all__ = ["TokenGate", "cloud_app"]


def _error(status: int, message: str) -> Response:
    return Response.json({"error": message}, status)


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"base64": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _value_response(payload: bytes, headers: list[tuple[str, str]]) -> Response:
    try:
        value = decode_payload(payload)
    except ValueError:
        value = payload
    if isinstance(value, bytes):
        return Response(200, value, "application/octet-stream", headers)
    resp = Response.json(_jsonable(value))
    resp.headers.extend(headers)
    return resp


def _desired_payload(body: bytes, ctype: str) -> bytes | None:
    """CBOR of a JSON body; other bytes as a CBOR byte string; ``None``: bad JSON."""
    if ctype != "application/octet-stream":
        try:
            return bytes(cbor2.dumps(json.loads(body or b"null")))
        except ValueError:
            if ctype == "application/json":
                return None
    return bytes(cbor2.dumps(bytes(body)))


class TokenGate:
    """ASGI wrapper: refuse (401) any request without ``Authorization: Bearer <token>``."""

    def __init__(self, app: HttpApp, token: str) -> None:
        self.app = app
        self._token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] == "http":
            auth = next((v for k, v in scope["headers"] if k.lower() == b"authorization"), b"")
            given = auth[7:] if auth.startswith(b"Bearer ") else b""
            if not hmac.compare_digest(given.strip(), self._token):
                body = b'{"error":"a valid token is required (Authorization: Bearer ...)"}'
                await send({"type": "http.response.start", "status": 401, "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b"Bearer")]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def cloud_app(store: CloudStore, hlc: HLC, *, desired_changed: Callable[[str], None],
              slow: Callable[..., Any]) -> HttpApp:
    """The route table over ``store``."""

    async def devices(req: Request) -> Response:  # noqa: ARG001 - one handler signature
        return Response.json([
            {"id": d.device_id, "version": d.version, "connected": d.connected,
             "firstSeen": d.first_seen, "lastSeen": d.last_seen, "backlog": d.backlog,
             "records": d.records, "desiredSeq": d.desired_seq, "desiredAcked": d.desired_acked}
            for d in await store.devices()
        ])

    async def state(req: Request) -> Response:
        p = req.params
        row = await store.state(p["id"], p["store"], p["key"])
        if row is None or row.deleted:
            return _error(404, f"device {p['id']} has no value for {p['store']}/{p['key']}")
        return _value_response(row.value, [("x-hlc", str(row.hlc))])

    async def put_desired(req: Request) -> Response:
        p = req.params
        ctype = req.headers.get("content-type", "").split(";")[0].strip().lower()
        payload = _desired_payload(req.body, ctype)
        if payload is None:
            return _error(400, "the body is not JSON")
        row = await store.put_desired(p["id"], p["key"], payload, hlc.now(),
                                      deleted=req.method == "DELETE")
        if row is None:  # pragma: no cover - our clock is monotonic; another server's won
            return _error(409, "a newer desired value was written meanwhile")
        desired_changed(p["id"])
        return Response.json({"key": row.key, "seq": row.seq, "hlc": row.hlc})

    async def list_desired(req: Request) -> Response:
        rows = await store.desired_after(req.params["id"], 0)
        return Response.json([
            {"key": r.key, "seq": r.seq, "hlc": r.hlc, "deleted": r.deleted,
             "value": None if r.deleted else _jsonable(decode_payload(r.value))}
            for r in rows
        ])

    async def events(req: Request) -> Response:
        try:
            after = int(req.arg("after", "0") or 0)
            limit = max(1, min(10_000, int(req.arg("limit", "1000") or 1000)))
        except ValueError:
            return _error(400, "after and limit are whole numbers")
        rows = await store.events(req.params["id"], after, limit)
        out = []
        for e in rows:
            try:
                data = _jsonable(decode_payload(e.payload))
            except ValueError:
                data = {"base64": base64.b64encode(e.payload).decode()}
            out.append({"seq": e.seq, "topic": e.target, "id": e.key, "hlc": e.hlc,
                        "receivedAt": e.received_at, "data": data})
        return Response.json({"events": out, "next": rows[-1].seq if rows else after})

    async def limits(req: Request) -> Response:
        try:
            body = req.json() if req.body else {}
            rate = float(body.get("rate", 0))
            window = int(body.get("window", 0))
            pause = int(body.get("pauseMs", 0))
        except (ValueError, TypeError, AttributeError):
            return _error(400, 'expected {"rate": n, "window": n, "pauseMs": n}')
        if not await slow(req.params["id"], rate=rate, window=window, pause_ms=pause):
            return _error(404, f"device {req.params['id']} is not connected")
        return Response(204)

    routes: list[Route] = [
        route("GET", "/v1/devices", devices, "devices"),
        route("GET", "/v1/devices/{id}/state/{store}/{key...}", state, "state"),
        route("GET", "/v1/devices/{id}/desired", list_desired, "desired"),
        route("PUT,DELETE", "/v1/devices/{id}/desired/{key...}", put_desired, "desired"),
        route("GET", "/v1/devices/{id}/events", events, "events"),
        route("PUT", "/v1/devices/{id}/limits", limits, "limits"),
        *fleet_routes(store, _jsonable),
    ]
    return HttpApp(routes, max_body_size=4 * 1024 * 1024)
