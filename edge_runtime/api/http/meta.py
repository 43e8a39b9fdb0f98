"""Metadata, health, shutdown and secrets routes."""

from __future__ import annotations

from edge_runtime.api.http.app import Request, Response, Route, route
from edge_runtime.api.universal import Universal


def openapi_document() -> bytes:
    """The OpenAPI 3.0 description of this API (``openapi.json`` beside this module)."""
    from importlib import resources  # only when asked for: ~0.1 MiB of RSS

    return resources.files(__package__).joinpath("openapi.json").read_bytes()


def routes(core: Universal) -> list[Route]:
    """Routes for ``/v1.0/metadata``, ``/v1.0/healthz*``, ``/v1.0/shutdown``, ``/v1.0/secrets``,
    ``/v1.0/openapi.json``."""

    async def get_metadata(req: Request) -> Response:
        return Response.json(core.metadata())

    async def put_metadata(req: Request) -> Response:
        core.set_metadata(req.params["key"], req.body.decode("utf-8", "replace"))
        return Response(204)

    async def healthz(req: Request) -> Response:
        appid = next((v for k, v in req.query if k == "appid"), None)
        core.health(appid)
        return Response(204)

    async def outbound(req: Request) -> Response:
        core.outbound_health()
        return Response(204)

    async def shutdown(req: Request) -> Response:
        core.shutdown(force=req.headers.get("dapr-force-shutdown", "").lower() == "true")
        return Response(204)

    async def secret(req: Request) -> Response:
        values = await core.get_secret(req.params["store"], req.params["key"], req.metadata())
        return Response.json(values) if values else Response(204)

    async def openapi(req: Request) -> Response:
        # Read per request, not kept: it is asked for rarely, and 70 KB is 70 KB on a Pi.
        return Response(200, openapi_document())

    async def bulk_secret(req: Request) -> Response:
        values = await core.bulk_secret(req.params["store"], req.metadata())
        return Response.json(values)

    return [
        route("GET", "/v1.0/metadata", get_metadata, "metadata"),
        route("PUT", "/v1.0/metadata/{key}", put_metadata, "metadata"),
        route("GET", "/v1.0/healthz", healthz, "healthz"),
        route("GET", "/v1.0/healthz/outbound", outbound, "healthz"),
        route("POST", "/v1.0/shutdown", shutdown, "shutdown"),
        route("GET", "/v1.0/secrets/{store}/bulk", bulk_secret, "secrets"),
        route("GET", "/v1.0/secrets/{store}/{key}", secret, "secrets"),
        route("GET", "/v1.0/openapi.json", openapi, "openapi"),
    ]
