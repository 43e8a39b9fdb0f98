"""``/v1.0/publish`` routes: single and bulk publish."""

from __future__ import annotations

from typing import Any

from edge_runtime import errors as E
from edge_runtime.api.http.app import Request, Response, Route, route
from edge_runtime.api.publishing import BulkEntry, Publisher, Trace, decode_bulk_event
from edge_runtime.errors import APIError


def _bulk_entries(body: Any) -> list[BulkEntry]:
    if not isinstance(body, list):
        raise APIError(E.PUBSUB_EVENTS_SER, "the body must be a JSON array of entries")
    entries = []
    for raw in body:
        if not isinstance(raw, dict):
            raise APIError(E.PUBSUB_EVENTS_SER, "each entry must be a JSON object")
        entry_id = raw.get("entryId")
        content_type = raw.get("contentType")
        if not isinstance(entry_id, str) or not isinstance(content_type, str) or not content_type:
            raise APIError(E.PUBSUB_EVENTS_SER, "each entry needs an entryId and a contentType")
        metadata = raw.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise APIError(E.PUBSUB_EVENTS_SER, f"metadata of entry {entry_id} must be an object")
        try:
            event = decode_bulk_event(raw.get("event"), content_type)
        except ValueError as exc:
            raise APIError(E.PUBSUB_EVENTS_SER, f"entry {entry_id}: {exc}") from None
        base = content_type.split(";", 1)[0].strip().lower()
        entries.append(
            BulkEntry(entry_id, event, content_type, {str(k): str(v) for k, v in metadata.items()},
                      json_checked=base == "application/json")  # decode_bulk_event dumped it
        )
    return entries


def routes(publisher: Publisher) -> list[Route]:
    """The publish routes bound to ``publisher``."""

    async def publish(req: Request) -> Response:
        await publisher.publish(
            req.params["pubsub"],
            req.params.get("topic", ""),
            req.body,
            req.headers.get("content-type", ""),
            req.metadata(),
            Trace.of(req.headers),
        )
        return Response(204)

    async def bulk(req: Request) -> Response:
        await publisher.bulk_publish(
            req.params["pubsub"],
            req.params.get("topic", ""),
            _bulk_entries(req.json()),
            req.metadata(),
            Trace.of(req.headers),
        )
        return Response(204)

    return [
        route("POST,PUT", "/v1.0-alpha1/publish/bulk/{pubsub}/{topic...}", bulk, "publish"),
        route("POST,PUT", "/v1.0/publish/bulk/{pubsub}/{topic...}", bulk, "publish"),
        route("POST,PUT", "/v1.0/publish/{pubsub}/{topic...}", publish, "publish"),
        route("POST,PUT", "/v1.0/publish/{pubsub}", publish, "publish"),
    ]
