"""Streaming subscriptions (contract §4.4), the transport-neutral side of gRPC
``SubscribeTopicEventsAlpha1``: a client opens a stream for one pubsub and topic and gets that
topic's events on it, answering each with SUCCESS, RETRY or DROP.

A stream is a delivery target of the durable path, like the app: events come from the broker
into the inbox (committed before the broker's ack), and a :class:`StreamSession` has its own
:class:`~edge_runtime.inbox.deliver.Deliverer` for the key ``pubsub|topic``, so retries
(with the pubsub's inbound retry policy), dead letters (the stream's ``dead_letter_topic``,
else the local table), expiry and ordering are exactly the app's. The client's answer maps as
an app's reply does: SUCCESS deletes the row, RETRY retries it later, DROP drops it
(dead-lettered when there is a topic). An event not answered within ``answer_timeout_s`` is a
RETRY.

Which subscription a stream serves, and what happens while none is open:

* When a declarative or programmatic subscription has the key, the stream takes its events
  while it is open (daprd gives streams the highest priority) and the app gets them back when
  it closes. The sidecar stays subscribed throughout, so events arriving while no stream is
  open wait in the inbox (for the app, or, with no app, for the next stream).
* Otherwise the subscription is the stream's own (type ``STREAMING`` in metadata): as in
  daprd it exists only while the stream is open. The component is subscribed when the stream
  opens and unsubscribed when it closes, so what the broker gets meanwhile is not for us (an
  MQTT broker keeps nothing for a topic we unsubscribed). Declare the subscription (a
  ``Subscription`` resource) to keep a topic's events while no stream is open.
* Either way nothing the sidecar acknowledged to the broker is lost: events in the inbox
  (including one that was sent on a stream that closed before answering) stay there and go to
  the next stream on the key, or to the app, untouched (the attempt is not counted).

One stream per key at a time (daprd's rule): a second one is refused with
``ERR_PUBSUB_STREAM_EXISTS`` (ALREADY_EXISTS), unless the first is closing, which is waited for.
Delivery on a stream is ordered, one event at a time, as for the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edge_runtime import errors as E
from edge_runtime.appchannel import AppUnavailableError, Outcome
from edge_runtime.errors import APIError
from edge_runtime.inbox.appdelivery import event_of
from edge_runtime.inbox.deliver import Deliverer
from edge_runtime.inbox.retry import DEFAULT_RETRY
from edge_runtime.inbox.store import InboxRow
from edge_runtime.observability.metrics import GRPC_STREAMS
from edge_runtime.runtime.subscribing import Subscriptions
from edge_runtime.subscriptions.model import Subscription, SubscriptionType, subscription_key

__all__ = ["Render", "StreamHub", "StreamRequest", "StreamSession"]

log = logging.getLogger(__name__)

STREAM_PATH = "/"  # daprd gives a streaming subscription the single rule path "/"

Render = Callable[[Subscription, InboxRow, Mapping[str, Any], str], Any]
"""Turn an event into the transport's message: ``(sub, row, envelope, path)``. May raise
:class:`~edge_runtime.inbox.deliver.PoisonEventError` for data it cannot render."""

CheckPubSub = Callable[[str, str], None]
"""Raise the ``APIError`` a publish to ``(pubsub, topic)`` would get (unknown pubsub ...)."""


@dataclass(frozen=True, slots=True)
class StreamRequest:
    """The stream's first message: what to subscribe to."""

    pubsub_name: str
    topic: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    dead_letter_topic: str = ""


class StreamSession:
    """One open stream. The transport sends what :meth:`next_message` returns, reports each
    answer with :meth:`processed`, and calls :meth:`close` when the stream ends (idempotent;
    it also ends :meth:`next_message`). Coroutine-safe."""

    def __init__(
        self, hub: StreamHub, sub: Subscription, render: Render, *, answer_timeout_s: float
    ) -> None:
        self.sub = sub
        self._hub = hub
        self._render = render
        self._timeout = answer_timeout_s
        self._outgoing: asyncio.Queue[Any] = asyncio.Queue()
        self._pending: dict[str, asyncio.Future[Outcome]] = {}
        self._closing: asyncio.Future[None] | None = None
        ready = asyncio.Event()
        ready.set()  # a stream is ready as soon as it is open
        subs = hub.subscriptions
        self.deliverer = Deliverer(
            subs.inbox, self._deliver, ready=ready, dead_letter=subs.dead_letter,
            retry=subs.retry or (lambda _name: DEFAULT_RETRY),
        )

    @property
    def closing(self) -> bool:
        """Whether :meth:`close` has started."""
        return self._closing is not None

    async def next_message(self) -> Any:
        """The next rendered event to send; ``None`` once the session is closing."""
        if self.closing:
            return None
        return await self._outgoing.get()

    def processed(self, event_id: str, outcome: Outcome) -> bool:
        """Settle the event the client answered; ``False`` for an id not awaiting an answer."""
        fut = self._pending.get(event_id)
        if fut is None or fut.done():
            return False
        fut.set_result(outcome)
        return True

    async def _deliver(self, sub: Subscription, row: InboxRow) -> Outcome:
        if self.closing:  # leave the row as it is for the next stream (no attempt counted)
            raise asyncio.CancelledError
        _body, envelope = event_of(sub, row)
        event_id = envelope.get("id")
        if not isinstance(event_id, str) or not event_id:
            event_id = f"edge-runtime-{row.seq}"  # the client needs an id to answer with
            envelope = {**envelope, "id": event_id}
        message = self._render(sub, row, envelope, STREAM_PATH)
        fut: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._pending[event_id] = fut
        self._outgoing.put_nowait(message)
        try:
            async with asyncio.timeout(self._timeout):
                return await fut
        except TimeoutError:
            raise AppUnavailableError(
                f"the stream did not answer event {event_id} within {self._timeout:g}s"
            ) from None
        finally:
            self._pending.pop(event_id, None)

    async def start(self) -> None:
        """Start delivering the key's rows to this stream."""
        await self.deliverer.start([self.sub])

    async def close(self) -> None:
        """Stop delivering, put unanswered events back and detach from the subscription.

        Events sent but not answered keep their row untouched (the next stream gets them
        first); answers that arrived before the close are settled. Safe to call from a task
        that is being cancelled: the work finishes in the background.
        """
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close())
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        self._outgoing.put_nowait(None)
        for fut in self._pending.values():
            fut.cancel()
        try:
            await self.deliverer.stop()
        finally:
            await self._hub.detach(self)


class StreamHub:
    """The open streams of one sidecar, over its :class:`Subscriptions`."""

    def __init__(
        self, subscriptions: Subscriptions, check: CheckPubSub, *,
        answer_timeout_s: float = 60.0, close_wait_s: float = 5.0,
    ) -> None:
        self.subscriptions = subscriptions
        self._check = check
        self._timeout = answer_timeout_s
        self._close_wait = close_wait_s
        self._sessions: dict[str, StreamSession] = {}

    @property
    def keys(self) -> list[str]:
        """The keys with an open stream."""
        return list(self._sessions)

    async def open(self, req: StreamRequest, render: Render) -> StreamSession:
        """Open a stream for ``req`` and start delivering to it.

        Raises :class:`APIError`: a publish's errors for the pubsub and topic (not found,
        empty ...), ``ERR_PUBSUB_STREAM_EXISTS`` while another stream has the key, and
        ``ERR_PUBSUB_SUBSCRIBE`` when the component refuses the subscription.
        """
        self._check(req.pubsub_name, req.topic)
        key = subscription_key(req.pubsub_name, req.topic)
        other = self._sessions.get(key)
        if other is not None and other.closing:  # e.g. an SDK reconnecting: let it finish
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(other.close(), self._close_wait)
        subs = self.subscriptions
        async with subs.lock:
            if key in self._sessions:
                raise APIError(
                    E.PUBSUB_STREAM_EXISTS,
                    f"streamer already subscribed to pubsub {req.pubsub_name!r} topic"
                    f" {req.topic!r}",
                    resource=("pubsub", req.pubsub_name),
                )
            base = next((s for s in subs.active if s.key == key), None)
            sub = Subscription(
                req.pubsub_name, req.topic, default_path=STREAM_PATH,
                # a declared subscription's metadata decided how its events were received
                metadata=dict(base.metadata if base is not None else req.metadata),
                dead_letter_topic=req.dead_letter_topic
                or (base.dead_letter_topic if base is not None else None),
                type=SubscriptionType.STREAMING,
            )
            session = StreamSession(self, sub, render, answer_timeout_s=self._timeout)
            try:
                await subs.attach_stream(sub)
            except Exception as exc:  # noqa: BLE001 - any component failure is this API error
                raise APIError(
                    E.PUBSUB_SUBSCRIBE,
                    f"subscribing to topic {req.topic!r} on pubsub {req.pubsub_name} failed:"
                    f" {exc}",
                    resource=("pubsub", req.pubsub_name),
                ) from None
            self._sessions[key] = session
        GRPC_STREAMS.inc()
        try:
            await session.start()
        except BaseException:  # cancelled while starting: give the key back
            await session.close()
            raise
        log.info("streaming subscription opened: %s/%s%s", req.pubsub_name, req.topic,
                 " (takes over a declared subscription)" if base is not None else "")
        return session

    async def detach(self, session: StreamSession) -> None:
        """Called by a closing session: give its key back (see the module docstring)."""
        key = session.sub.key
        async with self.subscriptions.lock:
            if self._sessions.get(key) is not session:
                return
            try:
                await self.subscriptions.detach_stream(session.sub)
            finally:
                del self._sessions[key]
                GRPC_STREAMS.dec()
        log.info("streaming subscription closed: %s/%s", session.sub.pubsub_name,
                 session.sub.topic)

    async def close_all(self) -> None:
        """Close every stream (at shutdown, before the gRPC server stops)."""
        sessions = list(self._sessions.values())
        if sessions:
            await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
