"""``pubsub.in-memory``: a broker inside the process, for tests and for a device without one.

Publishing through the runtime still goes through the durable outbox, and delivery through the
inbox, so only messages between the relay and the inbox live in memory. Like a broker with
manual acks, a handler that raises gets the message again (after a short, growing delay) until
it returns. Topic filters use MQTT's wildcards (``+`` one level, ``#`` the rest).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

from edge_runtime.pubsub import Feature, Handler, Message, NotConnectedError, Received
from edge_runtime.pubsub.mqtt import topics
from edge_runtime.registry import ComponentContext

log = logging.getLogger(__name__)

_MAX_DELAY_S = 5.0


matches = topics.matches  # one MQTT matcher (paho-free module)


class MemoryPubSub:
    """The in-process broker. Coroutine-safe."""

    def __init__(self, name: str = "memory") -> None:
        self.name = name
        self._subs: dict[str, Handler] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._connected = asyncio.Event()

    @property
    def features(self) -> frozenset[Feature]:
        """Wildcards are supported."""
        return frozenset({Feature.SUBSCRIBE_WILDCARDS})

    @property
    def connected(self) -> bool:
        """Always connected once initialised."""
        return self._connected.is_set()

    async def init(self) -> None:
        """Nothing to connect to."""
        self._connected.set()

    async def close(self) -> None:
        """Stop redelivery tasks; idempotent."""
        self._connected.clear()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def wait_connected(self) -> None:
        """Return once initialised."""
        await self._connected.wait()

    async def publish(self, message: Message) -> None:
        """Hand the message to every matching subscription (delivery runs in the background).

        Raises :class:`NotConnectedError` after :meth:`close` (as a broker that went away).
        """
        if not self._connected.is_set():
            raise NotConnectedError(f"in-memory pubsub {self.name} is closed")
        for topic_filter, handler in list(self._subs.items()):
            if matches(topic_filter, message.topic):
                # The message's metadata travels with it, as a broker's message properties.
                received = Received(
                    message.topic, message.data, topic_filter,
                    {**message.metadata, "retained": "false"},
                )
                task = asyncio.create_task(self._deliver(handler, received))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _deliver(self, handler: Handler, received: Received) -> None:
        delay = 0.05
        while True:
            try:
                await handler(received)
            except Exception as exc:  # noqa: BLE001 - a failing handler means "not acked": redeliver
                log.debug("in-memory redelivery of %s in %.2fs: %s", received.topic, delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_DELAY_S)
            else:
                return

    async def subscribe(
        self,
        topic: str,
        handler: Handler,
        metadata: Mapping[str, str] | None = None,  # noqa: ARG002 - protocol; nothing to tune
    ) -> None:
        """Deliver matching messages published from now on to ``handler``."""
        self._subs[topic] = handler

    async def unsubscribe(self, topic: str) -> None:
        """Stop a subscription."""
        self._subs.pop(topic, None)


def create(ctx: ComponentContext) -> MemoryPubSub:
    """Factory for ``pubsub.in-memory``."""
    return MemoryPubSub(ctx.manifest.name)
