"""Where an input binding's committed events go: the ``deliver`` callable the
:class:`~edge_runtime.inbox.deliver.Deliverer` runs for input bindings.

* To the app (contract §3.5): through the channel's
  :class:`~edge_runtime.appchannel.BindingTarget` (HTTP: ``POST /{route}`` with the raw
  payload and the event metadata as headers; 2xx is SUCCESS, anything else RETRY).
* No-code routing (DESIGN.md §5), without the app:

  * ``targetPubsub`` + ``targetTopic``: published as the publish API would (a CloudEvent from
    this app id, into that pubsub's durable outbox); the content type is ``application/json``
    when the payload is JSON, ``text/plain`` when it is other UTF-8 text, else
    ``application/octet-stream`` (``data_base64``). The event metadata is not passed on.
  * ``targetStateStore`` + ``targetKey``: saved as the state API would (the store's key
    prefix applies; the latest event wins); a JSON payload is stored as JSON, anything else
    as bytes.

  A failure there (outbox full, database error ...) is a RETRY under the binding's inbound
  retry policy, then a local dead letter, like an app failure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from edge_runtime.api.publishing import Publisher
from edge_runtime.api.universal import StateItem, Universal
from edge_runtime.appchannel import BindingEvent, BindingTarget, Outcome
from edge_runtime.bindings import PubsubRoute, StateRoute
from edge_runtime.errors import APIError
from edge_runtime.inbox.deliver import RetryEventError
from edge_runtime.inbox.store import InboxRow
from edge_runtime.subscriptions.model import BulkSettings

__all__ = ["KEY_PREFIX", "BindingDelivery", "InputTarget", "content_type", "input_key"]

KEY_PREFIX = "binding:"
_NO_BULK = BulkSettings()  # input-binding events are delivered one at a time


def input_key(name: str) -> str:
    """The inbox key of input binding ``name``: ``binding:<name>`` (a subscription's key
    always holds a ``|``, so the two never collide)."""
    return KEY_PREFIX + name


@dataclass(frozen=True, slots=True)
class InputTarget:
    """One input binding as the deliverer sees it: where its events go."""

    name: str
    route: str  # the app path: the ``route`` metadata, else the name
    target: PubsubRoute | StateRoute | None = None  # no-code routing; None: the app
    dead_letter_topic: str | None = None  # bindings have none: dead letters are local
    bulk: BulkSettings = _NO_BULK

    @property
    def key(self) -> str:
        """``binding:<name>``."""
        return input_key(self.name)

    @property
    def component(self) -> str:
        """The binding: its inbound retry policy applies."""
        return self.name

    def describe(self) -> str:
        """Where events go, for logs and metadata."""
        if isinstance(self.target, PubsubRoute):
            return f"pubsub {self.target.pubsub} topic {self.target.topic}"
        if isinstance(self.target, StateRoute):
            return f"state store {self.target.store} key {self.target.key}"
        return f"the app at /{self.route.lstrip('/')}"


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except (ValueError, RecursionError):
        return False
    return True


def content_type(data: bytes) -> str:
    """``application/json``, ``text/plain`` or ``application/octet-stream`` for ``data``."""
    if _is_json(data):
        return "application/json"
    try:
        data.decode()
    except UnicodeDecodeError:
        return "application/octet-stream"
    return "text/plain"


class BindingDelivery:
    """``await BindingDelivery(app, publisher, core)(target, row)``: deliver one row.

    Raises ``AppUnavailableError`` (the app is unreachable) and :class:`RetryEventError` (a
    routed event could not be published or saved), both retried by the deliverer.
    """

    def __init__(self, app: BindingTarget | None, publisher: Publisher, core: Universal) -> None:
        self.app = app
        self.publisher = publisher
        self.core = core

    async def __call__(self, target: InputTarget, row: InboxRow) -> Outcome:
        route = target.target
        if route is None:
            if self.app is None:  # the runtime only delivers to the app when there is one
                raise RetryEventError("the sidecar has no app channel")
            event = BindingEvent(target.name, target.route, row.data, row.metadata)
            return await self.app.binding_event(event)
        try:
            if isinstance(route, PubsubRoute):
                await self.publisher.publish(
                    route.pubsub, route.topic, row.data, content_type(row.data), {}
                )
            else:
                item = StateItem(route.key, row.data, is_binary=not _is_json(row.data))
                await self.core.save_state(route.store, [item], http=False)
        except APIError as exc:
            raise RetryEventError(f"routing to {target.describe()} failed: {exc}") from None
        return Outcome.SUCCESS
