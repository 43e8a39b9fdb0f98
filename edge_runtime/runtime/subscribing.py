"""The subscribe path: broker → inbox (durable, or taken by the app through the inbox's fast
lane, then ack) → deliverer → app.

Subscriptions come from ``Subscription`` YAML (declarative) and from the app's
``/dapr/subscribe`` (programmatic). The programmatic list is saved in the data dir, so at the
next start the sidecar subscribes from boot, before the app is up, and nothing the broker holds
for us is lost while the app starts (DESIGN.md §5). When the app answers, the saved list is
replaced and the broker subscriptions follow. Only delivery waits for the app.

The channel to the app (HTTP, or gRPC with ``ListTopicSubscriptions`` for discovery) comes
from :mod:`~edge_runtime.runtime.appconnect`, by ``--app-protocol``.

Delivery is ordered per subscription (one event in flight) unless the pubsub component sets
``deliveryConcurrency`` (metadata, an integer >= 1; default 1): then up to that many of a
subscription's oldest events are delivered at once, and order is not kept, as Dapr's own
MQTT component delivers. A value that is not such an integer is logged and ignored (1).

Streaming subscriptions (:mod:`~edge_runtime.runtime.streaming`) attach here: while a stream
is open for a key, it is that key's delivery target instead of the app, and a key no other
subscription has is subscribed on the component for as long as the stream lasts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from edge_runtime.config.manifest import RawResource
from edge_runtime.config.settings import Settings
from edge_runtime.inbox.appdelivery import peek_envelope
from edge_runtime.inbox.deliver import Deliverer, RetryLookup
from edge_runtime.inbox.resiliency import inbound_retry
from edge_runtime.inbox.store import Inbox, InboxRow
from edge_runtime.outbox.store import Item
from edge_runtime.pubsub import Handler, PubSub, Received
from edge_runtime.runtime.appconnect import AppChannelKind, Discover, connect_app
from edge_runtime.runtime.compstore import CompStore
from edge_runtime.subscriptions import (
    FILE_NAME,
    Subscription,
    combine,
    from_resources,
    load,
    save,
)
from edge_runtime.support.disk import DiskBudget

log = logging.getLogger("edge_runtime.subscriptions")

CONCURRENCY_KEY = "deliveryConcurrency"


class SubscribeError(Exception):
    """Subscription resources have problems; the message lists them with file:line."""


class Subscriptions:
    """Owns the inbox, the deliverer and the subscription lists of one sidecar."""

    def __init__(
        self, settings: Settings, components: CompStore, others: Sequence[RawResource],
        budget: DiskBudget | None,
    ) -> None:
        self.settings = settings
        self.components = components
        self.others = others
        self.inbox = Inbox(settings.data_dir, durability=settings.durability,
                           commit_window_ms=settings.commit_window_ms, disk_budget=budget)
        self.app_ready = asyncio.Event()
        self.declarative: list[Subscription] = []
        self.active: list[Subscription] = []
        self.channel: AppChannelKind | None = None  # HTTP or gRPC, by --app-protocol
        self._discover: Discover | None = None
        self.deliverer: Deliverer[Subscription] | None = None
        self._subscribed: dict[tuple[str, str], Subscription] = {}
        self.retry: RetryLookup | None = None
        self.binding_retry: RetryLookup | None = None
        # Streaming subscriptions by key (runtime/streaming.py); changes to them and to the
        # app's list are made under ``lock``.
        self.streams: dict[str, Subscription] = {}
        self.lock = asyncio.Lock()
        self._concurrency: dict[str, int] = {}  # deliveryConcurrency by pubsub

    async def open(self) -> None:
        """Open the inbox and read the declarative and saved lists.

        Raises :class:`SubscribeError` for problems in ``Subscription``/``Resiliency`` YAML.
        """
        declarative, problems = from_resources(self.others, self.settings.app_id)
        retry, retry_problems = inbound_retry(self.others, self.settings.app_id)
        problems += retry_problems
        if problems:
            raise SubscribeError("; ".join(str(p) for p in problems))
        self.declarative = declarative
        self.retry = retry.for_pubsub
        self.binding_retry = retry.for_binding  # the same Resiliency documents, read once
        saved = load(self.settings.data_dir / FILE_NAME)
        self.active, notes = combine(declarative, saved)
        for note in notes:
            log.warning("%s", note)
        await self.inbox.open()
        app = connect_app(self.settings)
        if app is not None:
            self.channel, self._discover = app.channel, app.discover
            self.deliverer = Deliverer(
                self.inbox, app.deliver, ready=self.app_ready,
                dead_letter=self.dead_letter, retry=retry.for_pubsub,
                deliver_bulk=app.deliver_bulk, concurrency=self.delivery_concurrency,
                fast_lane=True,
            )
        if self.active:
            log.info("subscribing from boot: %s",
                     ", ".join(f"{x.pubsub_name}/{x.topic}" for x in self.active))

    def delivery_concurrency(self, sub: Subscription) -> int:
        """Events of ``sub`` delivered at once: its pubsub's ``deliveryConcurrency`` (1, the
        default, keeps order)."""
        name = sub.pubsub_name
        cached = self._concurrency.get(name)
        if cached is not None:
            return cached
        comp = self.components.pubsubs.get(name)
        if comp is None:
            return 1  # not loaded (yet): ordered, and asked again next time
        item = next((m for m in comp.loaded.manifest.metadata if m.name == CONCURRENCY_KEY),
                    None)
        value = 1
        if item is not None:
            text = (item.value or "").strip()
            if text.isdigit() and int(text) >= 1:
                value = int(text)
            else:
                log.warning("pubsub %s: %s must be an integer >= 1 (a plain value), not %r;"
                            " delivering in order", name, CONCURRENCY_KEY, item.value)
        self._concurrency[name] = value
        return value

    def handler(self, sub: Subscription) -> Handler:
        """Commit a broker message to the inbox, or have the app take it (the inbox's fast
        lane); only then may the broker get its ack."""

        async def store(received: Received) -> None:
            facts = peek_envelope(received.data, raw_payload=sub.raw_payload)
            await self.inbox.add(sub.key, received, facts.event_id, expiration=facts.expiration)

        return store

    async def subscribe_component(self, name: str, pubsub: PubSub) -> None:
        """Subscribe a pub/sub component to its topics; called before it connects."""
        for sub in self.active:
            if sub.pubsub_name == name:
                await pubsub.subscribe(sub.topic, self.handler(sub), sub.metadata)
                self._subscribed[(name, sub.topic)] = sub

    async def start(self) -> None:
        """Start the deliverer (it waits for the app)."""
        if self.deliverer is not None:
            await self.deliverer.start(self.app_subs())

    async def app_is_ready(self) -> None:
        """Ask the app for its subscriptions, follow them, save them, start delivering."""
        if self._discover is None:
            return
        try:
            programmatic, notes = await self._discover()
        except Exception as exc:  # noqa: BLE001 - keep the saved list rather than lose it
            log.warning("asking the app for its subscriptions failed (%s); keeping the saved"
                        " subscriptions", exc)
        else:
            for note in notes:
                log.warning("%s", note)
            save(self.settings.data_dir / FILE_NAME, programmatic)
            merged, notes = combine(self.declarative, programmatic)
            for note in notes:
                log.warning("%s", note)
            await self._follow(merged)
        self.app_ready.set()

    def app_subs(self) -> list[Subscription]:
        """The active subscriptions delivered to the app: those without an open stream."""
        return [s for s in self.active if s.key not in self.streams]

    def _declared(self, key: str) -> bool:
        return any(s.key == key for s in self.active)

    async def attach_stream(self, sub: Subscription) -> None:
        """Make a stream the delivery target of ``sub.key`` (call under :attr:`lock`).

        When a declared or programmatic subscription has the key, the app's deliverer lets
        go of it (in-flight deliveries finish first); otherwise the component is subscribed
        to the topic now. Raises what the component's ``subscribe`` raises.
        """
        self.streams[sub.key] = sub
        try:
            if self._declared(sub.key):
                if self.deliverer is not None:
                    await self.deliverer.update(self.app_subs())
                return
            comp = self.components.pubsubs[sub.pubsub_name]
            await comp.pubsub.subscribe(sub.topic, self.handler(sub), sub.metadata)
            self._subscribed[(sub.pubsub_name, sub.topic)] = sub
        except BaseException:
            del self.streams[sub.key]
            raise

    async def detach_stream(self, sub: Subscription) -> None:
        """The stream of ``sub.key`` ended (call under :attr:`lock`): the app gets the key
        back, or, for a key only the stream had, the component is unsubscribed (daprd's
        streaming subscriptions exist only while their stream is open)."""
        if self.streams.get(sub.key) is sub:
            del self.streams[sub.key]
        if self._declared(sub.key):
            if self.deliverer is not None:
                await self.deliverer.update(self.app_subs())
            return
        pair = (sub.pubsub_name, sub.topic)
        if self._subscribed.pop(pair, None) is not None:
            comp = self.components.pubsubs.get(sub.pubsub_name)
            if comp is not None:
                await comp.pubsub.unsubscribe(sub.topic)

    async def _follow(self, subs: list[Subscription]) -> None:
        async with self.lock:
            await self._follow_locked(subs)

    async def _follow_locked(self, subs: list[Subscription]) -> None:
        wanted = {(s.pubsub_name, s.topic): s for s in subs}
        for s in self.streams.values():  # a stream keeps its topic while it is open
            wanted.setdefault((s.pubsub_name, s.topic), s)
        for key in [k for k in self._subscribed if k not in wanted]:
            comp = self.components.pubsubs.get(key[0])
            if comp is not None:
                await comp.pubsub.unsubscribe(key[1])
            del self._subscribed[key]
        for key, sub in wanted.items():
            comp = self.components.pubsubs.get(key[0])
            if comp is None:
                log.warning("subscription to %s/%s: no pubsub named %s is loaded", *key, key[0])
                continue
            if self._subscribed.get(key) != sub:
                await comp.pubsub.subscribe(sub.topic, self.handler(sub), sub.metadata)
                self._subscribed[key] = sub
        self.active = subs
        if self.deliverer is not None:
            await self.deliverer.update(self.app_subs())
        log.info("subscriptions: %s",
                 ", ".join(f"{s.pubsub_name}/{s.topic}" for s in subs) or "none")

    async def dead_letter(self, sub: Subscription, row: InboxRow) -> None:
        """Send the original bytes to the dead-letter topic, through the durable outbox."""
        comp = self.components.pubsubs.get(sub.pubsub_name)
        if comp is None or not sub.dead_letter_topic:
            raise LookupError(f"pubsub {sub.pubsub_name} is not loaded or has no dead-letter topic")
        await comp.outbox.append([Item(sub.dead_letter_topic, row.data, {})])

    async def stop_delivery(self) -> None:
        """Stop the deliverer (in-flight deliveries get a few seconds to finish)."""
        if self.deliverer is not None:
            await self.deliverer.stop()

    async def close(self) -> None:
        """Close the inbox and the app channel (after :meth:`stop_delivery`)."""
        await self.inbox.close()
        if self.channel is not None:
            await self.channel.close()

    def describe(self) -> list[dict[str, object]]:
        """The subscriptions for ``/v1.0/metadata``."""
        return [
            {
                "pubsubname": s.pubsub_name, "topic": s.topic, "metadata": dict(s.metadata),
                "rules": [{"match": r.match.source, "path": r.path} for r in s.rules]
                + ([{"match": "", "path": s.default_path}] if s.default_path else []),
                "deadLetterTopic": s.dead_letter_topic, "type": str(s.type),
            }
            for s in [*self.active, *self.streams.values()]
        ]
