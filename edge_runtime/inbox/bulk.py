"""Bulk subscribe delivery over HTTP (contract §3.3): the ``deliver_bulk`` callable of the
:class:`~edge_runtime.inbox.deliver.Deliverer` for an HTTP app.

:class:`BulkAppDelivery` turns a batch of rows into one POST per route path, with
``Content-Type: application/json`` and the body
``{"id","type":"com.dapr.event.sent.bulk","topic","pubsubname","metadata":{},"entries":[..]}``;
each entry is ``{"entryId": "<row seq>", "event": <the CloudEvent as a JSON object, or the
raw-payload wrapper>, "contentType": "application/cloudevents+json", "metadata": <the
broker-message metadata>}``. ``topic`` is the subscription's (a wildcard filter stays as is;
each event carries its own topic).

:func:`classify_bulk` maps the reply to one outcome per entry: 2xx with
``{"statuses":[{"entryId","status"}]}`` → per entry (``SUCCESS``, ``RETRY``, ``DROP``; an entry
left out, or any other status string, is RETRY); 2xx without a ``statuses`` list → all
SUCCESS; 404 → all DROP; any other status → all RETRY. A transport failure gives every entry
the ``AppUnavailableError`` (a RETRY with its message as the error).

Rows that are not CloudEvent JSON (poison) or match no route (unrouted) are not sent: they get
the same exceptions :class:`~edge_runtime.inbox.appdelivery.AppDelivery` raises for them.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from edge_runtime.appchannel import AppReply, AppUnavailableError, Outcome
from edge_runtime.appchannel.http import CLOUDEVENTS_JSON
from edge_runtime.inbox.appdelivery import event_of, route_or_drop
from edge_runtime.inbox.deliver import DropEventError, PoisonEventError
from edge_runtime.inbox.store import InboxRow
from edge_runtime.subscriptions.model import Subscription

__all__ = ["BULK_EVENT_TYPE", "BulkAppDelivery", "BulkPoster", "bulk_body", "classify_bulk"]

BULK_EVENT_TYPE = "com.dapr.event.sent.bulk"

log = logging.getLogger(__name__)

_STATUSES = {"SUCCESS": Outcome.SUCCESS, "RETRY": Outcome.RETRY, "DROP": Outcome.DROP}


class BulkPoster(Protocol):
    """The one channel method :class:`BulkAppDelivery` needs (``HttpAppChannel`` has it)."""

    async def post(
        self, path: str, body: bytes, headers: Mapping[str, str] | None = None,
        *, content_type: str = "application/json",
    ) -> AppReply:
        """POST ``body`` to ``path``; raises only ``AppUnavailableError``."""
        ...


def bulk_body(sub: Subscription, entries: Sequence[Mapping[str, Any]]) -> bytes:
    """The JSON body of one bulk delivery of ``entries`` for ``sub``."""
    message = {
        "id": str(uuid.uuid4()),
        "type": BULK_EVENT_TYPE,
        "topic": sub.topic,
        "pubsubname": sub.pubsub_name,
        "metadata": {},
        "entries": list(entries),
    }
    return json.dumps(message, separators=(",", ":")).encode()


def classify_bulk(reply: AppReply, entry_ids: Sequence[str]) -> dict[str, Outcome]:
    """The outcome of each of ``entry_ids`` from the app's reply (contract §3.3)."""
    if reply.status == 404:
        return dict.fromkeys(entry_ids, Outcome.DROP)
    if not 200 <= reply.status < 300:
        return dict.fromkeys(entry_ids, Outcome.RETRY)
    statuses = _statuses(reply.body)
    if statuses is None:
        return dict.fromkeys(entry_ids, Outcome.SUCCESS)
    out = dict.fromkeys(entry_ids, Outcome.RETRY)  # left out: RETRY
    for item in statuses:
        if not isinstance(item, dict):
            continue
        entry_id, status = _field(item, "entryid"), _field(item, "status")
        if not isinstance(entry_id, str) or entry_id not in out:
            continue
        outcome = _STATUSES.get(status) if isinstance(status, str) else None
        if outcome is None:
            log.warning("the app answered an unknown status %r for bulk entry %s; it will be"
                        " retried", status, entry_id)
            outcome = Outcome.RETRY
        out[entry_id] = outcome
    return out


def _field(obj: Mapping[str, Any], lower: str) -> Any:
    """``obj``'s value for ``lower`` as Go decodes JSON: case-insensitive, the last wins."""
    value = None
    for key, v in obj.items():
        if key.lower() == lower:
            value = v
    return value


def _statuses(body: bytes) -> list[Any] | None:
    """The reply's ``statuses`` list; ``None`` when there is none (or the body is not JSON)."""
    if not body.strip():
        return None
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, dict):
        return None
    statuses = _field(value, "statuses")
    return statuses if isinstance(statuses, list) else None


class BulkAppDelivery:
    """``await BulkAppDelivery(channel)(sub, rows)``: each row's ``seq`` → its outcome, or the
    exception that settles it (poison, unrouted, the app unreachable)."""

    def __init__(self, channel: BulkPoster) -> None:
        self.channel = channel

    async def __call__(
        self, sub: Subscription, rows: Sequence[InboxRow]
    ) -> dict[int, Outcome | Exception]:
        results: dict[int, Outcome | Exception] = {}
        by_path: dict[str, list[tuple[InboxRow, dict[str, Any]]]] = {}
        for row in rows:
            try:
                _body, envelope = event_of(sub, row)
                path = route_or_drop(sub, envelope)
            except (PoisonEventError, DropEventError) as exc:
                results[row.seq] = exc
                continue
            by_path.setdefault(path, []).append((row, envelope))
        for path, group in by_path.items():
            entries = [
                {"entryId": str(row.seq), "event": envelope, "contentType": CLOUDEVENTS_JSON,
                 "metadata": dict(row.metadata)}
                for row, envelope in group
            ]
            ids = [str(row.seq) for row, _ in group]
            try:
                reply = await self.channel.post(path, bulk_body(sub, entries))
            except AppUnavailableError as exc:
                results.update((row.seq, exc) for row, _ in group)
                continue
            outcomes = classify_bulk(reply, ids)
            results.update((row.seq, outcomes[str(row.seq)]) for row, _ in group)
        return results
