"""``/v1.0/state`` routes: JSON in, :mod:`edge_runtime.api.universal` calls, JSON out."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from edge_runtime import errors as E
from edge_runtime.api.http.app import JSON, Request, Response, Route, route
from edge_runtime.api.universal import BulkItem, StateItem, StateResult, TransactionOp, Universal
from edge_runtime.errors import APIError
from edge_runtime.support import jsonbytes


def _dumps(value: Any) -> bytes:
    return jsonbytes.dumps(value)


def _field(obj: Mapping[str, Any], name: str) -> Any:
    """A field matched case-insensitively (Dapr decodes these with Go's rules)."""
    if name in obj:
        return obj[name]
    lname = name.lower()
    return next((v for k, v in obj.items() if k.lower() == lname), None)


def _str_map(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise APIError(E.MALFORMED_REQUEST, f"{what} must be an object of strings")
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}


def parse_item(obj: Any, defaults: Mapping[str, str], *, need_value: bool = True) -> StateItem:
    """One SetRequest JSON object → :class:`StateItem` (value kept as its JSON text)."""
    if not isinstance(obj, dict):
        raise APIError(E.MALFORMED_REQUEST, "each state item must be a JSON object")
    key = _field(obj, "key")
    if not isinstance(key, str) or not key:
        raise APIError(E.MALFORMED_REQUEST, "key is a required field")
    etag = _field(obj, "etag")
    if etag is not None and not isinstance(etag, str):
        raise APIError(E.MALFORMED_REQUEST, f"etag of key {key} must be a string")
    options = _field(obj, "options") or {}
    if not isinstance(options, dict):
        raise APIError(E.MALFORMED_REQUEST, f"options of key {key} must be an object")
    metadata = {**defaults, **_str_map(_field(obj, "metadata"), "metadata")}
    value = _dumps(_field(obj, "value")) if need_value else b""
    return StateItem(
        key=key,
        value=value,
        is_binary=False,
        etag=etag,
        metadata=metadata,
        concurrency=str(_field(options, "concurrency") or ""),
        consistency=str(_field(options, "consistency") or ""),
    )


def _data_json(result: StateResult) -> bytes:
    """A stored value as JSON for bulk get: JSON values verbatim; bytes as JSON if they parse,
    else as a UTF-8 string, else as a base64 string."""
    if not result.is_binary:
        return result.value
    try:
        json.loads(result.value)
    except (ValueError, UnicodeDecodeError):
        try:
            return _dumps(result.value.decode())
        except UnicodeDecodeError:
            return _dumps(base64.b64encode(result.value).decode())
    return result.value


def _bulk_body(items: list[BulkItem]) -> bytes:
    parts = []
    for item in items:
        out = [b'{"key":' + _dumps(item.key)]
        if item.result is not None:
            out.append(b',"data":' + _data_json(item.result))
            out.append(b',"etag":' + _dumps(item.result.etag))
            if item.result.metadata:
                out.append(b',"metadata":' + _dumps(item.result.metadata))
        if item.error:
            out.append(b',"error":' + _dumps(item.error))
        parts.append(b"".join(out) + b"}")
    return b"[" + b",".join(parts) + b"]"


def routes(core: Universal) -> list[Route]:
    """The state routes bound to ``core``."""

    async def get(req: Request) -> Response:
        result = await core.get_state(
            req.params["store"],
            req.params["key"],
            consistency=req.arg("consistency"),
            metadata=req.metadata(),
        )
        if result is None:
            return Response(204)
        headers = [("ETag", result.etag)]
        headers += [(f"metadata.{k}", v) for k, v in result.metadata.items()]
        return Response(200, result.value, JSON, headers)

    async def save(req: Request) -> Response:
        body = req.json()
        if not isinstance(body, list):
            raise APIError(E.MALFORMED_REQUEST, "the body must be a JSON array of state items")
        defaults = req.metadata()
        await core.save_state(req.params["store"], [parse_item(o, defaults) for o in body])
        return Response(204)

    async def delete(req: Request) -> Response:
        item = StateItem(
            key=req.params["key"],
            value=b"",
            etag=req.headers.get("if-match") or None,
            metadata=req.metadata(),
            concurrency=req.arg("concurrency"),
            consistency=req.arg("consistency"),
        )
        await core.delete_state(req.params["store"], item)
        return Response(204)

    async def bulk(req: Request) -> Response:
        body = req.json()
        keys = body.get("keys") if isinstance(body, dict) else None
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise APIError(E.MALFORMED_REQUEST, 'the body must be {"keys": ["k1", ...]}')
        metadata = {**_str_map(body.get("metadata"), "metadata"), **req.metadata()}
        items = await core.bulk_get_state(req.params["store"], keys, metadata)
        return Response(200, _bulk_body(items))

    async def transaction(req: Request) -> Response:
        body = req.json()
        ops = body.get("operations") if isinstance(body, dict) else None
        if not isinstance(ops, list):
            raise APIError(E.MALFORMED_REQUEST, 'the body must be {"operations": [...]}')
        parsed = []
        for op in ops:
            if not isinstance(op, dict):
                raise APIError(E.MALFORMED_REQUEST, "each operation must be a JSON object")
            kind = str(_field(op, "operation") or "")
            request = _field(op, "request")
            parsed.append(TransactionOp(kind, parse_item(request, {}, need_value=kind == "upsert")))
        await core.transaction(req.params["store"], parsed)
        return Response(204)

    async def query(req: Request) -> Response:
        core.query_state(req.params["store"])
        return Response(204)  # pragma: no cover - query_state always raises

    return [
        route("POST,PUT", "/v1.0/state/{store}/bulk", bulk, "state"),
        route("POST,PUT", "/v1.0/state/{store}/transaction", transaction, "state"),
        route("GET", "/v1.0/state/{store}/{key}", get, "state"),
        route("DELETE", "/v1.0/state/{store}/{key}", delete, "state"),
        route("POST,PUT", "/v1.0/state/{store}", save, "state"),
        route("POST,PUT", "/v1.0-alpha1/state/{store}/query", query, "state"),
    ]
