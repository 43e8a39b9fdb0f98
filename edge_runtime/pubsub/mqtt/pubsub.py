"""``pubsub.mqtt`` (Dapr's ``pubsub.mqtt3``): the component, over :class:`MqttClient`.

It routes incoming messages to handlers and acknowledges them only after the handler returned.
Differences from Dapr's mqtt3 (contract §8.2), on purpose:

* ``init()`` starts connecting in the background and returns at once; health never depends on
  the broker. Subscriptions may be made before ``init()``: they are in place at the first
  CONNACK, so a persistent session's queued messages find their handler (Dapr #3992, #4074).
* With ``consumerGroup`` (MQTT 5) every subscription becomes ``$share/<group>/<filter>``.
* :meth:`MqttPubSub.reconnect` lets the runtime get unacknowledged messages redelivered without
  waiting for a network failure (MQTT 3.1.1 brokers resend only on reconnect: Dapr #2329).

Routing: a message goes to one subscription, the one whose filter equals its topic, else the
first subscribed whose filter matches it (as Dapr's mqtt3). Each message is handled in its own
task, so handlers run concurrently and without ordering (as Dapr's ``OrderMatters=false``).
A handler that raises leaves the message unacknowledged (logged, counted); a message no
subscription matches is left unacknowledged too (logged at debug, counted): both come back
when the client reconnects with a persistent session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from edge_runtime.config.metadata import declare_metadata, parse_bool
from edge_runtime.observability import metrics as M
from edge_runtime.pubsub import (
    Feature,
    Handler,
    Message,
    PublishError,
    PubSubError,
    Received,
)
from edge_runtime.pubsub.mqtt import topics
from edge_runtime.pubsub.mqtt.client import MqttClient
from edge_runtime.pubsub.mqtt.metadata import MqttMetadata, MqttSettings, parse
from edge_runtime.pubsub.mqtt.model import ClientOptions, Incoming
from edge_runtime.registry import ComponentContext

__all__ = ["MqttPubSub", "create"]

log = logging.getLogger(__name__)

_DRAIN_S = 5.0  # how long close() lets running handlers finish before cancelling them


@dataclass(frozen=True, slots=True)
class _Subscription:
    topic: str  # as passed to subscribe(): what Received.subscription reports
    mqtt_filter: str  # what is subscribed at the broker ($share/<group>/... with a group)
    handler: Handler
    unsubscribe_on_close: bool


class MqttPubSub:
    """An MQTT pub/sub component implementing :class:`edge_runtime.pubsub.PubSub`.

    The client id is ``consumerID`` (default: the app id). Coroutine-safe on one loop.
    """

    def __init__(self, name: str, settings: MqttSettings) -> None:
        self.name = name
        self.settings = settings
        md = settings.metadata
        self.client = MqttClient(
            ClientOptions(
                host=settings.host, port=settings.port, client_id=settings.client_id,
                name=name, mqtt5=settings.mqtt5, clean_session=md.clean_session,
                keepalive=md.keep_alive, username=settings.username,
                password=settings.password, tls=settings.tls, tls_files=settings.tls_files,
                connect_timeout=md.connect_timeout, ack_timeout=md.publish_timeout,
                reconnect_min=md.reconnect_min, reconnect_max=md.reconnect_max,
                inflight=md.inflight,
            ),
            self._route,
        )
        self._subs: dict[str, _Subscription] = {}
        self._valid_topics: set[str] = set()
        self._unrouted_warned: set[str] = set()
        self._handling: set[asyncio.Task[None]] = set()
        self._closed = False
        self._closing: asyncio.Future[None] | None = None
        self._redelivery: asyncio.Task[None] | None = None
        # After a handler fails, reconnect this long later so the broker redelivers what we did
        # not acknowledge (MQTT 3.1.1 brokers resend only on reconnect). Without it, messages
        # left unacknowledged fill the broker's in-flight window and delivery stalls.
        self.redelivery_delay_s = 5.0

    @property
    def features(self) -> frozenset[Feature]:
        """``SUBSCRIBE_WILDCARDS`` (as Dapr's mqtt3)."""
        return frozenset({Feature.SUBSCRIBE_WILDCARDS})

    @property
    def connected(self) -> bool:
        """Whether the broker accepted our connection and it is up now."""
        return self.client.connected

    def is_connected(self) -> bool:
        """:attr:`connected` as a call (what the outbox relay's fast lane asks)."""
        return self.client.connected

    @property
    def acks_keep_messages(self) -> bool:
        """Whether the broker's ack of a publish means it took the message (QoS 1 or 2): the
        outbox relay may then answer a publish on the ack before its row is committed."""
        return self.settings.metadata.qos >= 1

    @property
    def last_error(self) -> str:
        """Why the last connection attempt failed or the connection ended; "" once connected
        (shown as ``pubsub.<name>.lastError`` in ``/v1.0/metadata``)."""
        return self.client.last_error

    @property
    def subscribed(self) -> bool:
        """Connected, and the broker confirmed every subscription made so far."""
        return self.client.subscribed

    async def init(self) -> None:
        """Start connecting in the background; returns at once (never waits for the broker)."""
        if self._closed:
            raise PubSubError(f"pubsub {self.name!r} is closed")
        self.client.start()

    async def close(self) -> None:
        """Unsubscribe what asked for it (``unsubscribeOnClose``), let running handlers finish
        (up to 5 s; the rest are cancelled and their messages stay unacknowledged), disconnect
        and stop every task. Idempotent: every call returns once the first one finished."""
        if self._closing is None:
            self._closed = True
            self._closing = asyncio.create_task(self._close(), name=f"mqtt[{self.name}] close")
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        if self.client.connected:
            for sub in list(self._subs.values()):
                if sub.unsubscribe_on_close:
                    with contextlib.suppress(PubSubError):
                        await self.client.unsubscribe(sub.mqtt_filter)
        if self._redelivery is not None:
            self._redelivery.cancel()
            await asyncio.gather(self._redelivery, return_exceptions=True)
        if self._handling:
            _, running = await asyncio.wait(set(self._handling), timeout=_DRAIN_S)
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
        await self.client.close()

    async def wait_connected(self) -> None:
        """Return once connected; raises ``NotConnectedError`` if closed meanwhile."""
        await self.client.wait_connected()

    async def reconnect(self) -> None:
        """Drop the connection and reconnect now: the broker then redelivers every message we
        did not acknowledge (a handler failed). No-op when disconnected."""
        await self.client.reconnect()

    async def publish(self, message: Message) -> None:
        """See :meth:`edge_runtime.pubsub.PubSub.publish`. QoS is the component's ``qos``;
        ``retain`` in ``message.metadata`` overrides the component's ``retain``.

        Raises :class:`PublishError` for a topic with wildcards or a bad ``retain`` value.
        """
        await (await self.start_publish(message))

    async def start_publish(self, message: Message) -> asyncio.Future[None]:
        """Send ``message`` now (once a window slot is free); a future that resolves when the
        broker acknowledged it (the outbox relay's pipelined path, see
        :meth:`MqttClient.start_publish`). Raises as :meth:`publish` does."""
        topic = message.topic
        if topic not in self._valid_topics:
            try:
                topics.validate_topic(topic)
            except ValueError as exc:
                raise PublishError(str(exc)) from None
            if len(self._valid_topics) < 1024:  # a bounded cache of topics already checked
                self._valid_topics.add(topic)
        retain = self.settings.metadata.retain
        if message.metadata:
            raw = next((v for k, v in message.metadata.items() if k.lower() == "retain"), None)
            if raw is not None:
                try:
                    retain = parse_bool(raw)
                except ValueError:
                    raise PublishError(f"metadata retain must be true or false, got {raw!r}") \
                        from None
        return await self.client.start_publish(
            topic, message.data, qos=self.settings.metadata.qos, retain=retain
        )

    async def subscribe(
        self, topic: str, handler: Handler, metadata: Mapping[str, str] | None = None
    ) -> None:
        """See :meth:`edge_runtime.pubsub.PubSub.subscribe`. May be called before
        :meth:`init`. Subscribing a topic again replaces its handler.

        ``metadata`` may hold Dapr's ``unsubscribeOnClose: true``. Raises
        :class:`PubSubError` for an invalid filter or when the broker refuses it.
        """
        try:
            topics.validate_filter(topic)
            group = self.settings.metadata.consumer_group
            mqtt_filter = topics.shared(group, topic) if group else topic
            topics.validate_filter(mqtt_filter)
        except ValueError as exc:
            raise PubSubError(f"cannot subscribe to {topic!r}: {exc}") from None
        md = {k.lower(): v for k, v in (metadata or {}).items()}
        try:
            on_close = parse_bool(md.get("unsubscribeonclose", "false"))
        except ValueError:
            raise PubSubError(
                f"subscription metadata unsubscribeOnClose must be true or false,"
                f" got {md['unsubscribeonclose']!r}"
            ) from None
        self._subs[topic] = _Subscription(topic, mqtt_filter, handler, on_close)
        try:
            await self.client.subscribe(mqtt_filter, self.settings.metadata.qos)
        except PubSubError:
            self._subs.pop(topic, None)
            raise

    async def unsubscribe(self, topic: str) -> None:
        """See :meth:`edge_runtime.pubsub.PubSub.unsubscribe`; unknown topics are ignored."""
        sub = self._subs.pop(topic, None)
        if sub is not None:
            await self.client.unsubscribe(sub.mqtt_filter)

    def _find(self, topic: str) -> _Subscription | None:
        exact = self._subs.get(topic)  # keyed by the subscription's topic (its filter unshared)
        if exact is not None:
            return exact
        return next((s for s in self._subs.values() if topics.matches(s.mqtt_filter, topic)),
                    None)

    def _route(self, message: Incoming) -> None:
        """Called by the client for every incoming message (synchronously, on the loop)."""
        if self._closed:
            return  # closing: not handled, not acknowledged; the broker keeps it for later
        sub = self._find(message.topic)
        if sub is None:
            M.MQTT_MESSAGES_UNROUTED.labels(self.name).inc()
            # A warning once per topic (a persistent session may replay many), then debug: each
            # holds a slot of the broker's in-flight window until a handler takes it.
            first = message.topic not in self._unrouted_warned and len(self._unrouted_warned) < 256
            if first:
                self._unrouted_warned.add(message.topic)
            log.log(logging.WARNING if first else logging.DEBUG,
                    "pubsub %s: no subscription matches %r; not acknowledged (redelivered"
                    " after a reconnect, once a handler exists)", self.name, message.topic)
            return
        task = asyncio.create_task(self._handle(sub, message),
                                   name=f"mqtt[{self.name}] handle {message.topic}")
        self._handling.add(task)
        task.add_done_callback(self._handling.discard)

    async def _handle(self, sub: _Subscription, message: Incoming) -> None:
        received = Received(
            topic=message.topic, data=message.payload, subscription=sub.topic,
            metadata={"retained": "true" if message.retain else "false"},
        )
        try:
            await sub.handler(received)
        except Exception:
            M.MQTT_HANDLER_FAILURES.labels(self.name).inc()
            log.warning("pubsub %s: the handler of %r failed on a message on %r; not"
                        " acknowledged (redelivered after a reconnect)", self.name, sub.topic,
                        message.topic, exc_info=True)
            self._schedule_redelivery()
            return
        self.client.ack(message)

    def _schedule_redelivery(self) -> None:
        """One pending reconnect at a time, ``redelivery_delay_s`` after the first failure."""
        if self._closed or (self._redelivery is not None and not self._redelivery.done()):
            return
        self._redelivery = asyncio.create_task(self._redeliver(),
                                               name=f"mqtt[{self.name}] redelivery")

    async def _redeliver(self) -> None:
        await asyncio.sleep(self.redelivery_delay_s)
        if self._closed:
            return
        log.info("pubsub %s: reconnecting so the broker redelivers unacknowledged messages",
                 self.name)
        with contextlib.suppress(PubSubError):
            await self.reconnect()


@declare_metadata(MqttMetadata)
def create(ctx: ComponentContext) -> MqttPubSub:
    """The ``pubsub.mqtt`` factory; raises ``MetadataError`` (``file:line``) on bad metadata."""
    return MqttPubSub(ctx.manifest.name, parse(ctx))
