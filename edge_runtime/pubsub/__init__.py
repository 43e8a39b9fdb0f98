"""The pub/sub building block: the contract every broker component implements.

A component moves bytes; it is **not** durable by itself. The runtime makes it so (DESIGN.md
§5): publishes go through the outbox (``edge_runtime.outbox``), whose relay calls
:meth:`PubSub.publish` and deletes the row only when that call returned (the broker's PUBACK);
incoming messages go to a :data:`Handler` that commits them to the inbox and only then returns,
and only then does the component acknowledge them to the broker (manual ack).

Concurrency: every method may be called from any number of coroutines on the event loop.
Components raise only the exceptions defined here; library exceptions (paho ...) are
translated inside the component.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

__all__ = [
    "Feature",
    "Handler",
    "Message",
    "NotConnectedError",
    "PubSub",
    "PubSubError",
    "PublishError",
    "Received",
]


class Feature(StrEnum):
    """Capabilities reported in metadata (Dapr's strings)."""

    MESSAGE_TTL = "MESSAGE_TTL"
    SUBSCRIBE_WILDCARDS = "SUBSCRIBE_WILDCARDS"
    BULK_PUBSUB = "BULK_PUBSUB"


class PubSubError(Exception):
    """Base class of the errors a component raises."""


class NotConnectedError(PubSubError):
    """The broker is not reachable now; the caller should wait for :meth:`PubSub.wait_connected`."""


class PublishError(PubSubError):
    """The broker refused or did not acknowledge a publish (after a reconnect it may succeed)."""


@dataclass(frozen=True, slots=True)
class Message:
    """One message to publish: the topic, the exact bytes, and per-message options.

    ``metadata`` holds Dapr's per-publish options the component understands (``retain`` for
    MQTT); unknown keys are ignored.
    """

    topic: str
    data: bytes
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Received:
    """One incoming message: the concrete topic it arrived on, the bytes and broker metadata.

    ``subscription`` is the filter (as subscribed) that matched; ``metadata`` carries e.g.
    ``retained: "true"|"false"`` for MQTT.
    """

    topic: str
    data: bytes
    subscription: str
    metadata: Mapping[str, str] = field(default_factory=dict)


Handler = Callable[[Received], Awaitable[None]]
"""Store an incoming message durably, then return. Raising means "not stored": the component
does not acknowledge the message, so the broker redelivers it."""


@runtime_checkable
class PubSub(Protocol):
    """The required contract of a pub/sub component."""

    @property
    def features(self) -> frozenset[Feature]:
        """What the component supports."""
        ...

    @property
    def connected(self) -> bool:
        """Whether the broker is reachable now (reported in metadata, never in health)."""
        ...

    async def init(self) -> None:
        """Start connecting in the background; never waits for the broker to be reachable.

        Raises ``ComponentError`` only for bad configuration (a bad URL, unreadable certs).
        """
        ...

    async def close(self) -> None:
        """Disconnect and stop background tasks; idempotent."""
        ...

    async def wait_connected(self) -> None:
        """Return once connected (immediately if connected now)."""
        ...

    async def publish(self, message: Message) -> None:
        """Publish and return when the broker acknowledged it (QoS >= 1) or it was sent (QoS 0).

        Raises :class:`NotConnectedError` when disconnected (before or during the wait) and
        :class:`PublishError` when the broker refuses it.
        """
        ...

    async def subscribe(
        self, topic: str, handler: Handler, metadata: Mapping[str, str] | None = None
    ) -> None:
        """Subscribe to ``topic`` (wildcards allowed where supported) from now on, across
        reconnects. The handler sees every matching message; the message is acknowledged to
        the broker only when the handler returned without raising."""
        ...

    async def unsubscribe(self, topic: str) -> None:
        """Stop a subscription made with :meth:`subscribe`."""
        ...
