"""Publish and bulk publish (contract §2.4, §5), shared by the HTTP and gRPC adapters.

A publish is wrapped in a CloudEvent (unless ``rawPayload``) and appended to the pub/sub
component's outbox; it returns once the row is committed, so the 204 means "on disk". The
relay takes it to the broker from there.

Trace context: the caller's W3C ``traceparent``/``tracestate`` (HTTP headers, gRPC metadata;
the adapters pass them in a :class:`Trace`) become the envelope's ``traceid``/``traceparent``
and ``tracestate`` (``metadata.cloudevent.*`` still override them). A ``rawPayload`` publish
has no envelope, so, as daprd does, they go into the message metadata given to the component
as ``traceid`` and ``tracestate``, where a subscriber's raw-payload wrapper finds them.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edge_runtime import errors as E
from edge_runtime.api.universal import RuntimeView
from edge_runtime.errors import APIError, StorageFullError
from edge_runtime.observability.metrics import OUTBOX_REJECTED
from edge_runtime.outbox.store import Item, OutboxFullError
from edge_runtime.pubsub import cloudevents
from edge_runtime.runtime.compstore import CompStore, PubSubComponent
from edge_runtime.support import jsonbytes
from edge_runtime.support.sqlitedb import DBError

# Request metadata the runtime consumes; everything else is passed to the component.
_RUNTIME_KEYS = ("rawpayload", "ttlinseconds", "ttl")


@dataclass(frozen=True, slots=True)
class Trace:
    """The caller's W3C trace context (empty strings when it sent none)."""

    traceparent: str = ""
    tracestate: str = ""

    @classmethod
    def of(cls, pairs: Mapping[str, str]) -> Trace:
        """From lower-case header or metadata names."""
        return cls(pairs.get("traceparent", ""), pairs.get("tracestate", ""))


NO_TRACE = Trace()


@dataclass(frozen=True, slots=True)
class BulkEntry:
    """One bulk publish entry with its event already as bytes."""

    entry_id: str
    event: bytes
    content_type: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    json_checked: bool = False  # ``event`` is JSON we serialised ourselves: no need to parse it


@dataclass(frozen=True, slots=True)
class FailedEntry:
    """An entry that was not accepted, and why."""

    entry_id: str
    error: str


def decode_bulk_event(event: Any, content_type: str) -> bytes:
    """A bulk entry's ``event`` JSON value as bytes, decided by its content type (§2.4).

    Raises :class:`ValueError` for a type that does not fit (→ ``ERR_PUBSUB_EVENTS_SER``).
    """
    base = content_type.split(";", 1)[0].strip().lower()
    if base == "application/octet-stream":
        if not isinstance(event, str):
            raise ValueError("an application/octet-stream event must be a base64 string")
        return base64.b64decode(event, validate=True)
    if base.startswith("text/") or base == "application/xml":
        if not isinstance(event, str):
            raise ValueError(f"a {base} event must be a string")
        return jsonbytes.text(event)
    if base in ("application/json", "application/cloudevents+json"):
        return jsonbytes.dumps(event)
    raise ValueError(f"unsupported contentType {content_type!r}")


class Publisher:
    """Publish operations over the loaded pub/sub components."""

    def __init__(self, view: RuntimeView, components: CompStore) -> None:
        self.view = view
        self.components = components

    def _pubsub(self, name: str, topic: str) -> PubSubComponent:
        if not self.components.pubsubs:
            raise APIError(E.PUBSUB_NOT_CONFIGURED, "no pubsub is configured")
        if not name:
            raise APIError(E.PUBSUB_EMPTY, "pubsub name is empty")
        comp = self.components.pubsubs.get(name)
        if comp is None:
            raise APIError(
                E.PUBSUB_NOT_FOUND, f"pubsub {name} is not found", resource=("pubsub", name)
            )
        if not topic:
            raise APIError(
                E.TOPIC_NAME_EMPTY, f"topic is empty in pubsub {name}", resource=("pubsub", name)
            )
        return comp

    def check(self, name: str, topic: str) -> None:
        """Raise the :class:`APIError` a publish to ``name``/``topic`` would get for them
        (no pubsub configured, empty or unknown name, empty topic)."""
        self._pubsub(name, topic)

    def _item(
        self, name: str, topic: str, data: bytes, content_type: str, metadata: Mapping[str, str],
        trace: Trace = NO_TRACE, json_checked: bool = False,
    ) -> Item:
        try:
            options = cloudevents.options_from_metadata(metadata)
        except ValueError as exc:
            raise APIError(
                E.PUBSUB_REQUEST_METADATA,
                f"failed deserializing metadata: {exc}",
                resource=("pubsub", name),
            ) from None
        try:
            payload = cloudevents.envelope(
                data,
                content_type,
                topic=topic,
                pubsub=name,
                source=self.view.app_id,
                options=options,
                traceparent=trace.traceparent,
                tracestate=trace.tracestate,
                json_checked=json_checked,
            )
        except cloudevents.EnvelopeError as exc:
            raise APIError(
                E.PUBSUB_CLOUD_EVENTS_SER,
                f"error when packing a cloud event envelope: {exc}",
                resource=("pubsub", name),
            ) from None
        passthrough = {
            k: v
            for k, v in metadata.items()
            if k.lower() not in _RUNTIME_KEYS and not k.lower().startswith("cloudevent.")
        } if metadata else {}
        if options.raw_payload:
            fields = {"traceid": trace.traceparent, "tracestate": trace.tracestate}
            passthrough.update({k: v for k, v in fields.items() if v})
        ttl = float(options.ttl_seconds) if options.ttl_seconds else None
        return Item(topic, payload, passthrough, ttl)

    async def _append(self, comp: PubSubComponent, items: Sequence[Item]) -> None:
        try:
            await comp.outbox.append(items)
        except OutboxFullError as exc:
            OUTBOX_REJECTED.labels(comp.outbox.relay).inc(len(items))
            raise APIError(
                E.PUBSUB_OUTBOX_FULL, str(exc), resource=("pubsub", comp.loaded.name)
            ) from None
        except StorageFullError as exc:
            raise APIError(E.STORAGE_FULL, str(exc)) from None
        except DBError as exc:
            raise APIError(
                E.PUBSUB_PUBLISH_MESSAGE,
                f"error when publishing to topic in pubsub {comp.loaded.name}: the outbox"
                f" could not store it: {exc}",
                resource=("pubsub", comp.loaded.name),
            ) from None

    async def publish(
        self,
        pubsub: str,
        topic: str,
        data: bytes,
        content_type: str,
        metadata: Mapping[str, str],
        trace: Trace = NO_TRACE,
    ) -> None:
        """Wrap, store durably and return (the relay delivers it later)."""
        comp = self._pubsub(pubsub, topic)
        await self._append(comp, [self._item(pubsub, topic, data, content_type, metadata, trace)])

    async def bulk_publish(
        self,
        pubsub: str,
        topic: str,
        entries: Sequence[BulkEntry],
        metadata: Mapping[str, str],
        trace: Trace = NO_TRACE,
    ) -> list[FailedEntry]:
        """Store every entry in one commit (all or none); the entries that failed."""
        comp = self._pubsub(pubsub, topic)
        ids = [e.entry_id for e in entries]
        if any(not i for i in ids) or len(set(ids)) != len(ids):
            raise APIError(E.PUBSUB_EVENTS_SER, "every entry needs a unique, non-empty entryId")
        items = [
            self._item(pubsub, topic, e.event, e.content_type,
                       {**metadata, **e.metadata} if e.metadata else metadata, trace,
                       e.json_checked)
            for e in entries
        ]
        if not items:
            return []
        try:
            await self._append(comp, items)
        except APIError as err:
            failed = [FailedEntry(i, err.message) for i in ids]
            err.extra_body["failedEntries"] = [
                {"entryId": f.entry_id, "error": f.error} for f in failed
            ]
            raise
        return []
