"""``bindings.mqtt`` (alias Dapr's ``bindings.mqtt3``): MQTT ingest and publish.

Input: one connection (``<consumerID>-consumer``) subscribes to ``topic`` (wildcards allowed)
when the runtime starts reading. Each message becomes an input event: the payload as it is,
metadata ``topic`` (the topic it arrived on). The runtime's handler commits it to the inbox
and only then returns, and only then is the PUBACK sent (``pubsub.mqtt``'s manual ack); a
handler that raises leaves it unacknowledged, and the broker sends it again after a reconnect
(with ``cleanSession: false``, the default). Messages queued by the broker while the sidecar
was down arrive at the next start, since the subscription is in place before CONNECT.

Output operation ``create``: appends the data to this binding's durable outbox (see
``bindings/outboxed.py``) and returns once it is committed (HTTP 204); the runtime's relay
publishes it on the second connection (``<consumerID>-producer``) and deletes it on the
PUBACK, so a ``create`` while the broker is down is published when it is back. Request
metadata: ``topic`` (overrides the component's; no wildcards) and ``retain``
(``true``/``false``, overrides the component's).

Both connections are ``pubsub.mqtt`` components (``pubsub/mqtt``, the only paho user), made
only for the sides the binding's ``direction`` allows. Concurrency: event-loop only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from edge_runtime.bindings.contract import (
    BindingError,
    BindingResponse,
    InputHandler,
    InvokeError,
    UnsupportedOperationError,
)
from edge_runtime.bindings.mqtt.metadata import BindingSettings, MqttBindingMetadata, parse
from edge_runtime.bindings.options import parse_options
from edge_runtime.config.metadata import declare_metadata, parse_bool
from edge_runtime.outbox.store import Item, Outbox
from edge_runtime.pubsub import PubSub, PubSubError, Received
from edge_runtime.pubsub.mqtt import MqttPubSub, topics
from edge_runtime.registry import ComponentContext
from edge_runtime.support.sqlitedb import DBError

__all__ = ["OPERATIONS", "MqttBinding", "create"]

OPERATIONS = ("create",)


class MqttBinding:
    """See the module docstring. ``input``/``output`` say which sides to connect."""

    def __init__(
        self, name: str, settings: BindingSettings, *, input: bool = True, output: bool = True
    ) -> None:
        self.name = name
        self.settings = settings
        self.topic = settings.topic
        self._input = input
        self.producer: MqttPubSub | None = (
            MqttPubSub(f"{name}-producer", settings.producer) if output else None)
        self.consumer: MqttPubSub | None = None
        self._outbox: Outbox | None = None
        self._closed = False

    # --- runtime hooks -----------------------------------------------------------------

    @property
    def relay_target(self) -> PubSub | None:
        """The producer connection the runtime's relay publishes through."""
        return self.producer

    def attach_outbox(self, outbox: Outbox) -> None:
        """The outbox ``create`` appends to."""
        self._outbox = outbox

    @property
    def status(self) -> dict[str, str]:
        """For ``/v1.0/metadata``: each connection's state and the outbox backlog."""
        out: dict[str, str] = {}
        if self.producer is not None:
            out["producer.connected"] = str(self.producer.connected).lower()
            if self.producer.last_error:
                out["producer.lastError"] = self.producer.last_error
        if self._input:
            out["consumer.connected"] = str(self.consumer is not None
                                            and self.consumer.connected).lower()
            if self.consumer is not None and self.consumer.last_error:
                out["consumer.lastError"] = self.consumer.last_error
        if self._outbox is not None:
            out["outbox"] = str(self._outbox.count)
        return out

    # --- lifecycle ---------------------------------------------------------------------

    async def init(self) -> None:
        """Start connecting the producer in the background (never waits for the broker)."""
        self._check_open()
        if self.producer is not None:
            await self.producer.init()

    async def close(self) -> None:
        """Stop reading, disconnect both connections; idempotent."""
        await self.stop()
        self._closed = True
        if self.producer is not None:
            await self.producer.close()

    async def start(self, handler: InputHandler) -> None:
        """Subscribe to ``topic`` and connect; events go to ``handler`` from the first
        CONNACK on. Raises :class:`BindingError` when already started or the filter is
        refused."""
        self._check_open()
        if self.consumer is not None:
            raise BindingError(f"binding {self.name}: input already started")

        async def on_message(received: Received) -> None:
            await handler(received.data, {"topic": received.topic})

        consumer = MqttPubSub(f"{self.name}-consumer", self.settings.consumer)
        try:
            await consumer.subscribe(self.topic, on_message)  # before CONNECT: see the docs
            await consumer.init()
        except PubSubError as exc:
            await consumer.close()
            raise BindingError(f"binding {self.name}: {exc}") from None
        self.consumer = consumer

    async def stop(self) -> None:
        """Disconnect the consumer (handlers in progress finish first); idempotent. With a
        persistent session the broker keeps what arrives meanwhile for the next start."""
        consumer, self.consumer = self.consumer, None
        if consumer is not None:
            await consumer.close()

    # --- output --------------------------------------------------------------------------

    def operations(self) -> Sequence[str]:
        """``create``."""
        return OPERATIONS

    async def invoke(
        self, operation: str, data: bytes, metadata: Mapping[str, str]
    ) -> BindingResponse | None:
        """``create``: store for publishing; returns nothing once committed (HTTP 204).

        Raises :class:`UnsupportedOperationError` or :class:`InvokeError` (bad topic or
        retain, the outbox full or failing).
        """
        self._check_open()
        if operation != "create":
            raise UnsupportedOperationError(
                f"binding {self.name} does not support operation {operation!r};"
                f" supported: {', '.join(OPERATIONS)}"
            )
        outbox = self._outbox
        if outbox is None:
            raise InvokeError(f"binding {self.name}: no outbox (its direction excludes output)")
        md = {k.lower(): v for k, v in metadata.items()}
        topic = md.get("topic") or self.topic
        try:
            topics.validate_topic(topic)
        except ValueError as exc:
            hint = "" if "topic" in md else (
                " (the component's topic is a filter: give the request metadata topic)")
            raise InvokeError(f"binding {self.name}: cannot publish: {exc}{hint}") from None
        options: dict[str, str] = {}
        if "retain" in md:
            try:
                options["retain"] = str(parse_bool(md["retain"])).lower()
            except ValueError:
                raise InvokeError(f"binding {self.name}: metadata retain must be true or"
                                  f" false, got {md['retain']!r}") from None
        try:
            await outbox.append([Item(topic, bytes(data), options)])
        except DBError as exc:
            raise InvokeError(f"binding {self.name}: the message was not stored: {exc}") \
                from None
        # OutboxFullError and StorageFullError go up as they are: the API answers them as it
        # does for a publish (429, 507).
        return None

    def _check_open(self) -> None:
        if self._closed:
            raise BindingError(f"binding {self.name} is closed")


@declare_metadata(MqttBindingMetadata)
def create(ctx: ComponentContext) -> MqttBinding:
    """The ``bindings.mqtt`` factory; raises ``MetadataError`` (``file:line``)."""
    sides = parse_options(ctx.manifest, ctx.metadata)
    return MqttBinding(ctx.manifest.name, parse(ctx), input=sides.input, output=sides.output)
