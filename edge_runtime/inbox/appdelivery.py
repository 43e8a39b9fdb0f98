"""Glue between the inbox and an app channel: what the runtime passes to the inbox on arrival
and as the :class:`~edge_runtime.inbox.deliver.Deliverer`'s ``deliver`` callable.

* :func:`peek_envelope` reads the id and ``expiration`` of an incoming CloudEvent for
  :meth:`Inbox.add <edge_runtime.inbox.store.Inbox.add>` (dedup and TTL), tolerating anything;
* :class:`AppDelivery` delivers one row over HTTP as contract §3.2 says: the original bytes
  (wrapped as a CloudEvent with ``data_base64`` when the subscription has ``rawPayload``),
  routed by the subscription's rules, ``Content-Type: application/cloudevents+json``, one
  header per broker-metadata entry plus ``Pubsubname``, ``traceparent``/``tracestate`` from the
  envelope, and the reply classified by :func:`~edge_runtime.appchannel.http.classify`. The
  envelope is bound as the trace context (:mod:`~edge_runtime.observability.tracing`) for the
  rest of the row's delivery task, so what the deliverer logs about it carries its trace id.

Not covered: binary-mode messages (``content-type: application/octet-stream`` metadata with
``ce_*`` fields) are taken as structured JSON; MQTT carries no such metadata.
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from edge_runtime.appchannel import AppReply, Outcome
from edge_runtime.appchannel.http import classify, event_headers
from edge_runtime.inbox.deliver import DropEventError, PoisonEventError
from edge_runtime.inbox.store import InboxRow
from edge_runtime.observability import tracing
from edge_runtime.subscriptions.model import Subscription, route_for

__all__ = [
    "AppDelivery",
    "EnvelopeFacts",
    "event_of",
    "peek_envelope",
    "raw_envelope",
    "route_or_drop",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EnvelopeFacts:
    """What the inbox needs from an envelope on arrival."""

    event_id: str | None = None
    expiration: datetime | None = None


def peek_envelope(data: bytes, *, raw_payload: bool = False) -> EnvelopeFacts:
    """The CloudEvent ``id`` and ``expiration`` (RFC 3339; no offset means UTC) of ``data``.

    Raw payloads, bytes that are not a JSON object and unreadable values give ``None`` for
    the fact concerned; never raises.
    """
    if raw_payload or not data.lstrip().startswith(b"{"):
        return EnvelopeFacts()
    try:
        event = json.loads(data)
    except (ValueError, RecursionError):
        return EnvelopeFacts()
    if not isinstance(event, dict):
        return EnvelopeFacts()
    event_id = event.get("id")
    expiration = None
    text = event.get("expiration")
    if isinstance(text, str) and text:
        try:
            expiration = datetime.fromisoformat(text)
        except ValueError:
            log.warning("ignoring the event's expiration %r: not an RFC 3339 time", text[:64])
        else:
            if expiration.tzinfo is None:
                expiration = expiration.replace(tzinfo=UTC)
    return EnvelopeFacts(event_id if isinstance(event_id, str) and event_id else None,
                         expiration)


def raw_envelope(sub: Subscription, row: InboxRow) -> dict[str, Any]:
    """The CloudEvent Dapr wraps a raw payload in (contract §3.2 step 1)."""
    event: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "specversion": "1.0",
        "datacontenttype": "application/octet-stream",
        "source": "Dapr",
        "type": "com.dapr.event.sent",
        "topic": row.topic,
        "pubsubname": sub.pubsub_name,
        "data_base64": base64.b64encode(row.data).decode(),
    }
    for key in ("traceid", "traceparent", "tracestate"):
        value = _meta(row.metadata, key)
        if value is not None:
            event[key] = value
    return event


def event_of(sub: Subscription, row: InboxRow) -> tuple[bytes, dict[str, Any]]:
    """The bytes to post and the envelope routing sees: the original bytes and their JSON, or
    the raw-payload wrapper. Raises :class:`PoisonEventError` when the bytes are not a
    CloudEvent JSON object."""
    if sub.raw_payload:
        envelope = raw_envelope(sub, row)
        return json.dumps(envelope, separators=(",", ":")).encode(), envelope
    try:
        envelope = json.loads(row.data)
    except (ValueError, RecursionError) as exc:
        raise PoisonEventError(f"the event is not JSON: {exc}") from None
    if not isinstance(envelope, dict):
        raise PoisonEventError("the event is not a CloudEvent JSON object")
    return row.data, envelope


def route_or_drop(sub: Subscription, envelope: Mapping[str, Any]) -> str:
    """:func:`route_for`, raising :class:`DropEventError` (``unrouted``) for no route."""
    path = route_for(sub, envelope)
    if path is None:
        raise DropEventError("no routing rule matched and there is no default route",
                             "unrouted")
    return path


def _meta(metadata: Mapping[str, str], key: str) -> str | None:
    return next((v for k, v in metadata.items() if k.lower() == key), None)


class EventPoster(Protocol):
    """The one channel method :class:`AppDelivery` needs (``HttpAppChannel`` has it)."""

    async def post_event(
        self, path: str, body: bytes, headers: Mapping[str, str] | None = None
    ) -> AppReply:
        """POST one event; raises only ``AppUnavailableError``."""
        ...


class AppDelivery:
    """The ``deliver`` callable for an HTTP app: ``await AppDelivery(channel)(sub, row)``.

    Raises :class:`PoisonEventError` for bytes that are not a CloudEvent JSON object (Dapr
    returns that error to the component; here it is dead-lettered at once),
    :class:`DropEventError` (label ``unrouted``) when no rule matches and there is no default
    route, and lets ``AppUnavailableError`` through (a retry).
    """

    def __init__(self, channel: EventPoster) -> None:
        self.channel = channel

    async def __call__(self, sub: Subscription, row: InboxRow) -> Outcome:
        body, envelope = event_of(sub, row)
        # For the rest of this row's task (the deliverer logs its outcome there): records
        # carry the event's trace id.
        tracing.bind(envelope)
        path = route_or_drop(sub, envelope)
        headers = event_headers(row.metadata, sub.pubsub_name)
        for key in ("traceparent", "tracestate"):
            value = envelope.get(key)
            if isinstance(value, str) and value:
                headers[key] = value
        reply = await self.channel.post_event(path, body, headers)
        return classify(reply)
