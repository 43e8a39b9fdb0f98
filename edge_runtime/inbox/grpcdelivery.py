"""Event delivery to a gRPC app (contract §4.5): the ``deliver`` and ``deliver_bulk``
callables of the :class:`~edge_runtime.inbox.deliver.Deliverer` when ``--app-protocol grpc``.

Routing, the raw-payload wrapper and the poison and unrouted cases are the HTTP path's
(:func:`~edge_runtime.inbox.appdelivery.event_of`, ``route_or_drop``). What goes to the app is
a ``TopicEventRequest`` built from the envelope as daprd builds it:

* ``id``, ``source``, ``type``, ``spec_version``, ``data_content_type``: the envelope's string
  fields (``""`` when absent or not a string);
* ``topic``: the topic the message arrived on; ``pubsub_name``: the subscription's; ``path``:
  the matched route;
* ``extensions``: every other envelope field (``topic``, ``pubsubname``, ``traceparent``,
  ``time``, ``subject``, custom ones ...) as a ``Struct``;
* ``data`` (:func:`event_data`): ``data_base64`` decoded; else ``data`` as its UTF-8 text for
  ``text/*`` and ``application/xml``, JSON re-serialised (compact, keys sorted, as Go writes
  it) for ``application/json`` and ``application/cloudevents+json``.
  *Ours*, where daprd would send no data and so lose it: with no ``datacontenttype`` the data
  is JSON (the CloudEvents JSON format's default); with any other content type a string is
  sent as its text and anything else as JSON. A non-string ``data`` under a text type, or
  ``data_base64`` that is not base64, is a :class:`PoisonEventError` (daprd retries it, which
  cannot succeed).

The broker-message metadata, ``pubsubName`` and the envelope's ``traceparent``/``tracestate``
go as gRPC metadata. The reply is classified by
:meth:`~edge_runtime.appchannel.grpc.GrpcAppChannel.topic_event`: SUCCESS, RETRY, DROP;
UNIMPLEMENTED is SUCCESS; another error status raises (a RETRY with its message); a transport
failure raises ``AppUnavailableError``.

Bulk (:meth:`GrpcAppDelivery.bulk`): one ``TopicEventBulkRequest`` per route path, each entry
``{entry_id: <row seq>, cloud_event | bytes (raw payload), content_type, metadata}``, sent
with ``OnBulkTopicEvent`` (or the Alpha1 name). An entry the app leaves out of its reply is
retried. When the app implements neither bulk method the rows go one by one through
``OnTopicEvent`` (*ours*: daprd counts the whole batch as processed, which loses it).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from dapr.proto.runtime.v1 import appcallback_pb2
from google.protobuf import struct_pb2

from edge_runtime.appchannel import AppChannelError, Outcome
from edge_runtime.inbox.appdelivery import event_of, route_or_drop
from edge_runtime.inbox.bulk import BULK_EVENT_TYPE
from edge_runtime.inbox.deliver import DropEventError, PoisonEventError
from edge_runtime.inbox.store import InboxRow
from edge_runtime.observability import tracing
from edge_runtime.subscriptions.model import Subscription
from edge_runtime.support import jsonbytes

__all__ = [
    "EventCaller",
    "GrpcAppDelivery",
    "event_data",
    "event_metadata",
    "extensions",
    "topic_event_request",
]

# Envelope fields that have their own TopicEventRequest field (daprd's list).
_OWN_FIELDS = frozenset({"id", "source", "datacontenttype", "type", "specversion", "data",
                         "data_base64"})
_CLOUDEVENTS_JSON = "application/cloudevents+json"


class EventCaller(Protocol):
    """The channel methods :class:`GrpcAppDelivery` needs (``GrpcAppChannel`` has them)."""

    async def topic_event(self, request: Any, metadata: Mapping[str, str]) -> Outcome:
        """``OnTopicEvent``; raises ``AppChannelError`` subclasses."""
        ...

    async def bulk_topic_event(
        self, request: Any, metadata: Mapping[str, str] | None = None
    ) -> dict[str, Outcome] | None:
        """``OnBulkTopicEvent``; ``None`` when the app has no bulk method."""
        ...


def _text(envelope: Mapping[str, Any], key: str) -> str:
    value = envelope.get(key)
    return value if isinstance(value, str) else ""


def event_data(envelope: Mapping[str, Any]) -> bytes:
    """The ``data`` bytes of a ``TopicEventRequest`` (module docstring). Raises
    :class:`PoisonEventError` for data that cannot be rendered."""
    encoded = envelope.get("data_base64")
    if encoded is not None:
        if not isinstance(encoded, str):
            raise PoisonEventError("data_base64 is not a string")
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise PoisonEventError(f"data_base64 is not base64: {exc}") from None
    data = envelope.get("data")
    if data is None:
        return b""
    ctype = _text(envelope, "datacontenttype").lower()
    media = ctype.split(";", 1)[0].strip()
    if ctype.startswith("text/") or media == "application/xml":
        if not isinstance(data, str):
            raise PoisonEventError(f"data is not a string but the content type is {ctype!r}")
        return data.encode()
    if media and not ctype.startswith("application/json") and media != _CLOUDEVENTS_JSON \
            and isinstance(data, str):
        return data.encode()
    return jsonbytes.dumps(data, sort_keys=True)


def extensions(envelope: Mapping[str, Any]) -> Any:
    """The envelope's other fields as a ``google.protobuf.Struct``."""
    struct = struct_pb2.Struct()
    struct.update({k: v for k, v in envelope.items() if k not in _OWN_FIELDS})
    return struct


def event_metadata(sub: Subscription, row: InboxRow, envelope: Mapping[str, Any]) -> dict[str, str]:
    """The gRPC metadata of one event: the broker metadata, ``pubsubName``, and the
    envelope's ``traceparent``/``tracestate`` (the channel filters what gRPC refuses)."""
    md = dict(row.metadata)
    md["pubsubName"] = sub.pubsub_name
    for key in ("traceparent", "tracestate"):
        value = envelope.get(key)
        if isinstance(value, str) and value:
            md[key] = value
    return md


def _cloudevent_fields(envelope: Mapping[str, Any]) -> dict[str, Any]:
    """The CloudEvent fields ``TopicEventRequest`` and ``TopicEventCERequest`` share."""
    return {
        "id": _text(envelope, "id"),
        "source": _text(envelope, "source"),
        "type": _text(envelope, "type"),
        "spec_version": _text(envelope, "specversion"),
        "data_content_type": _text(envelope, "datacontenttype"),
        "data": event_data(envelope),
        "extensions": extensions(envelope),
    }


def topic_event_request(
    sub: Subscription, row: InboxRow, envelope: Mapping[str, Any], path: str
) -> Any:
    """The ``TopicEventRequest`` for ``row`` routed to ``path`` (module docstring)."""
    return appcallback_pb2.TopicEventRequest(
        **_cloudevent_fields(envelope), topic=row.topic, pubsub_name=sub.pubsub_name,
        path=path,
    )


def _bulk_entry(sub: Subscription, row: InboxRow, envelope: Mapping[str, Any]) -> Any:
    if sub.raw_payload:
        return appcallback_pb2.TopicEventBulkRequestEntry(
            entry_id=str(row.seq), bytes=row.data, content_type="application/octet-stream",
            metadata=dict(row.metadata),
        )
    event = appcallback_pb2.TopicEventCERequest(**_cloudevent_fields(envelope))
    return appcallback_pb2.TopicEventBulkRequestEntry(
        entry_id=str(row.seq), cloud_event=event, content_type=_CLOUDEVENTS_JSON,
        metadata=dict(row.metadata),
    )


class GrpcAppDelivery:
    """``await GrpcAppDelivery(channel)(sub, row)`` delivers one row; ``delivery.bulk`` is
    the ``deliver_bulk`` callable. Raises as :class:`~edge_runtime.inbox.appdelivery.AppDelivery`
    does, plus ``AppChannelError`` subclasses for the app's error statuses (retries)."""

    def __init__(self, channel: EventCaller) -> None:
        self.channel = channel

    async def __call__(self, sub: Subscription, row: InboxRow) -> Outcome:
        _body, envelope = event_of(sub, row)
        tracing.bind(envelope)  # for the rest of the row's task, as AppDelivery does
        path = route_or_drop(sub, envelope)
        request = topic_event_request(sub, row, envelope, path)
        return await self.channel.topic_event(request, event_metadata(sub, row, envelope))

    async def bulk(
        self, sub: Subscription, rows: Sequence[InboxRow]
    ) -> dict[int, Outcome | Exception]:
        """Each row's ``seq`` → its outcome, or the exception that settles it."""
        results: dict[int, Outcome | Exception] = {}
        by_path: dict[str, list[tuple[InboxRow, dict[str, Any], Any]]] = {}
        for row in rows:
            try:
                _body, envelope = event_of(sub, row)
                path = route_or_drop(sub, envelope)
                entry = _bulk_entry(sub, row, envelope)
            except (PoisonEventError, DropEventError) as exc:
                results[row.seq] = exc
                continue
            by_path.setdefault(path, []).append((row, envelope, entry))
        for path, group in by_path.items():
            request = appcallback_pb2.TopicEventBulkRequest(
                id=str(uuid.uuid4()), entries=[entry for _, _, entry in group], metadata={},
                topic=sub.topic, pubsub_name=sub.pubsub_name, type=BULK_EVENT_TYPE, path=path,
            )
            try:
                outcomes = await self.channel.bulk_topic_event(request)
            except AppChannelError as exc:
                results.update((row.seq, exc) for row, _, _ in group)
                continue
            if outcomes is None:
                await self._one_by_one(sub, path, group, results)
                continue
            for row, _, _ in group:
                outcome = outcomes.get(str(row.seq))
                results[row.seq] = outcome if outcome is not None else AppChannelError(
                    "the app's bulk reply has no status for it")
        return results

    async def _one_by_one(
        self, sub: Subscription, path: str, group: list[tuple[InboxRow, dict[str, Any], Any]],
        results: dict[int, Outcome | Exception],
    ) -> None:
        for row, envelope, _ in group:
            try:
                request = topic_event_request(sub, row, envelope, path)
                results[row.seq] = await self.channel.topic_event(
                    request, event_metadata(sub, row, envelope)
                )
            except (AppChannelError, PoisonEventError) as exc:
                results[row.seq] = exc
