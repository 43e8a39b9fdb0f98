"""The fleet page's parts: its static files (served without a token: the page asks for one
and sends it as the bearer token on every API call) and the API routes it reads besides
``GET /v1/devices``.

- ``GET /`` (``/index.html``), ``/fleet.js``, ``/fleet.css``: the page (no build step)
- ``GET /v1/devices/{id}/state``: ``[{"store", "key", "hlc", "updatedAt", "value"}]`` of the
  device's live reported values (at most ``limit``, default 500)
- ``GET /v1/devices/{id}/history/{store}/{key}?since=S&limit=N``: ``{"points": [{"hlc",
  "at", "value"}]}``, the newest ``N`` (default 500, at most 5000) values written at or after
  unix time ``S`` (default 0), oldest first
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from importlib import resources
from typing import Any

from edge_runtime.api.http.app import Receive, Request, Response, Route, Scope, Send, route
from edge_runtime.cloudsync.server.store import CloudStore
from edge_runtime.cloudsync.sources import decode_payload

__all__ = ["StaticPages", "fleet_routes"]

_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/fleet.js": ("fleet.js", "text/javascript; charset=utf-8"),
    "/fleet.css": ("fleet.css", "text/css; charset=utf-8"),
}


def _value(payload: bytes, jsonable: Callable[[Any], Any]) -> Any:
    try:
        return jsonable(decode_payload(payload))
    except ValueError:
        return {"base64": base64.b64encode(payload).decode()}


def fleet_routes(store: CloudStore, jsonable: Callable[[Any], Any]) -> list[Route]:
    """The page's API routes over ``store`` (``jsonable`` turns decoded values into JSON)."""

    def _int(req: Request, name: str, default: int, top: int) -> int:
        return max(1, min(top, int(req.arg(name, str(default)) or default)))

    async def states(req: Request) -> Response:
        try:
            limit = _int(req, "limit", 500, 5000)
        except ValueError:
            return Response.json({"error": "limit is a whole number"}, 400)
        return Response.json([
            {"store": r.store, "key": r.key, "hlc": r.hlc, "updatedAt": r.updated_at,
             "value": _value(r.value, jsonable)}
            for r in await store.states(req.params["id"], limit)])

    async def history(req: Request) -> Response:
        p = req.params
        try:
            limit = _int(req, "limit", 500, 5000)
            since = float(req.arg("since", "0") or 0)
        except ValueError:
            return Response.json({"error": "since is unix seconds, limit a whole number"}, 400)
        rows = await store.history(p["id"], p["store"], p["key"], since, limit)
        return Response.json({"points": [
            {"hlc": r.hlc, "at": r.at, "value": _value(r.value, jsonable)} for r in rows]})

    return [
        route("GET", "/v1/devices/{id}/state", states, "state"),
        route("GET", "/v1/devices/{id}/history/{store}/{key...}", history, "history"),
    ]


class StaticPages:
    """ASGI wrapper: ``GET`` of the page's files is answered here, anything else goes to
    ``app`` (which checks the token)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        folder = resources.files("edge_runtime.cloudsync.server") / "static"
        self._files = {path: (folder.joinpath(name).read_bytes(), ctype)
                       for path, (name, ctype) in _FILES.items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        found = self._files.get(scope.get("path", "")) if scope["type"] == "http" else None
        if found is None or scope.get("method") not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        body, ctype = found
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", ctype.encode()), (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-cache"), (b"x-content-type-options", b"nosniff")]})
        await send({"type": "http.response.body",
                    "body": b"" if scope["method"] == "HEAD" else body})
