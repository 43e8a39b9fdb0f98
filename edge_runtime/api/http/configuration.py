"""``/v1.0/configuration`` (and ``/v1.0-alpha1/configuration``) routes (contract §2.11)."""

from __future__ import annotations

from edge_runtime.api.configuration import Configurations, PostToApp
from edge_runtime.api.http.app import Request, Response, Route, route
from edge_runtime.api.invoking import Invoking
from edge_runtime.appchannel import InvokeCall
from edge_runtime.errors import APIError

__all__ = ["app_poster", "routes"]


def app_poster(invoking: Invoking | None) -> PostToApp | None:
    """POSTs configuration updates to the app over its channel (``None`` without an app)."""
    if invoking is None or invoking.local is None:
        return None
    local = invoking.local

    async def post(path: str, body: bytes) -> None:
        result = await local.invoke(InvokeCall(path, "POST", body, "application/json"))
        if not 200 <= result.status < 300:
            raise RuntimeError(f"the app answered {result.status}")

    return post


def routes(configurations: Configurations) -> list[Route]:
    """The configuration routes bound to ``configurations``."""

    def keys(req: Request) -> list[str]:
        return [v for k, v in req.query if k == "key" and v]

    async def get(req: Request) -> Response:
        items = await configurations.get(req.params["store"], keys(req), req.metadata())
        if not items:
            return Response(204)
        return Response.json({k: v.as_json() for k, v in items.items()})

    async def subscribe(req: Request) -> Response:
        sub_id = configurations.subscribe_app(req.params["store"], keys(req), req.metadata())
        return Response.json({"id": sub_id})

    async def unsubscribe(req: Request) -> Response:
        try:
            configurations.unsubscribe(req.params["store"], req.params["id"])
        except APIError as err:
            return Response.json({"ok": False, "message": err.message}, 500)
        return Response.json({"ok": True})

    out = []
    for version in ("v1.0", "v1.0-alpha1"):
        base = f"/{version}/configuration/{{store}}"
        out += [
            route("GET", base, get, "configuration"),
            route("GET", f"{base}/subscribe", subscribe, "configuration"),
            route("GET", f"{base}/{{id}}/unsubscribe", unsubscribe, "configuration"),
        ]
    return out
