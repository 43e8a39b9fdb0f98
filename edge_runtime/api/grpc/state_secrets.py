"""Bulk delete, the query API and secrets on ``dapr.proto.runtime.v1.Dapr``: a mixin of
:class:`~edge_runtime.api.grpc.dapr.DaprServicer`, translating to the core
(:mod:`edge_runtime.api.universal`) that the HTTP routes use too.

* ``DeleteBulkState``: each item deleted on its own (not atomic), with its etag and options;
  a failure is ``ERR_STATE_BULK_DELETE`` (ABORTED for an etag mismatch). HTTP has no bulk
  delete; the Python SDK never calls it.
* ``QueryStateAlpha1``: no store here has the query API, so it answers what the HTTP query
  route answers (an unknown store INVALID_ARGUMENT, else ``ERR_STATE_STORE_NOT_SUPPORTED``).
* ``GetSecret`` / ``GetBulkSecret``: the secrets API (an unknown store is INVALID_ARGUMENT,
  ``ERR_SECRET_STORE_NOT_FOUND``; a missing secret INTERNAL, ``ERR_SECRET_GET``).
"""

from __future__ import annotations

from typing import Any

from dapr.proto.runtime.v1 import secret_pb2
from google.protobuf import empty_pb2

from edge_runtime.api.grpc.errors import handled
from edge_runtime.api.universal import StateItem, Universal

__all__ = ["CONCURRENCY", "CONSISTENCY", "StateSecretRpcs", "delete_item"]

#: ``common.v1.StateOptions`` enum values -> the core's names ("" when unset).
CONCURRENCY = {0: "", 1: "first-write", 2: "last-write"}
CONSISTENCY = {0: "", 1: "eventual", 2: "strong"}


def delete_item(item: Any) -> StateItem:
    """A ``DeleteStateRequest`` or a bulk delete's ``StateItem`` -> :class:`StateItem` (key,
    etag, metadata and options; no value)."""
    options = item.options if item.HasField("options") else None
    return StateItem(
        key=item.key,
        value=b"",
        etag=item.etag.value if item.HasField("etag") and item.etag.value else None,
        metadata=dict(item.metadata),
        concurrency=CONCURRENCY.get(options.concurrency, "") if options else "",
        consistency=CONSISTENCY.get(options.consistency, "") if options else "",
    )


class StateSecretRpcs:
    """``DeleteBulkState``, ``QueryStateAlpha1``, ``GetSecret`` and ``GetBulkSecret``."""

    core: Universal

    @handled
    async def DeleteBulkState(self, request: Any, context: Any) -> Any:  # noqa: N802
        await self.core.delete_bulk_state(
            request.store_name, [delete_item(s) for s in request.states]
        )
        return empty_pb2.Empty()

    @handled
    async def QueryStateAlpha1(self, request: Any, context: Any) -> Any:  # noqa: N802
        self.core.query_state(request.store_name)
        raise AssertionError("query_state always raises")  # pragma: no cover

    @handled
    async def GetSecret(self, request: Any, context: Any) -> Any:  # noqa: N802
        data = await self.core.get_secret(request.store_name, request.key, dict(request.metadata))
        return secret_pb2.GetSecretResponse(data=data)

    @handled
    async def GetBulkSecret(self, request: Any, context: Any) -> Any:  # noqa: N802
        data = await self.core.bulk_secret(request.store_name, dict(request.metadata))
        return secret_pb2.GetBulkSecretResponse(
            data={name: secret_pb2.SecretResponse(secrets=values) for name, values in data.items()}
        )
