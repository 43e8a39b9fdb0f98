"""Bulk publish and streaming subscriptions on ``dapr.proto.runtime.v1.Dapr``: a mixin of
:class:`~edge_runtime.api.grpc.dapr.DaprServicer`.

``BulkPublishEvent`` (and ``BulkPublishEventAlpha1``, the name older SDKs and the Python SDK's
fallback use) goes through the same core as the HTTP bulk publish
(:meth:`~edge_runtime.api.publishing.Publisher.bulk_publish`): the entries are validated
(unique, non-empty ``entry_id``), wrapped each with its own metadata over the request's, and
committed to the outbox in one transaction, so they are accepted all together or not at all.
Over HTTP a failure lists every entry in the body's ``failedEntries``; over gRPC a response
cannot travel with an error status (daprd returns none either), so the error status is the
report and means every entry failed; a success has an empty ``failedEntries``.
"""

from __future__ import annotations

from typing import Any

from dapr.proto.runtime.v1 import pubsub_pb2

from edge_runtime.api.grpc.errors import handled
from edge_runtime.api.grpc.subscribe import subscribe_topic_events
from edge_runtime.api.publishing import BulkEntry, Publisher, Trace
from edge_runtime.runtime.streaming import StreamHub

__all__ = ["PubSubRpcs", "call_trace"]


def call_trace(context: Any) -> Trace:
    """The caller's ``traceparent``/``tracestate`` gRPC metadata."""
    pairs = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
    return Trace.of(pairs)


class PubSubRpcs:
    """``BulkPublishEvent(Alpha1)`` and ``SubscribeTopicEventsAlpha1``."""

    publisher: Publisher
    streams: StreamHub | None

    @handled
    async def BulkPublishEvent(self, request: Any, context: Any) -> Any:  # noqa: N802
        entries = [
            BulkEntry(e.entry_id, bytes(e.event), e.content_type, dict(e.metadata))
            for e in request.entries
        ]
        await self.publisher.bulk_publish(
            request.pubsub_name, request.topic, entries, dict(request.metadata),
            call_trace(context),
        )
        return pubsub_pb2.BulkPublishResponse()

    BulkPublishEventAlpha1 = BulkPublishEvent  # the name older SDKs call (and a fallback)

    @handled
    async def SubscribeTopicEventsAlpha1(  # noqa: N802
        self, request_iterator: Any, context: Any
    ) -> None:
        await subscribe_topic_events(self.streams, request_iterator, context)
