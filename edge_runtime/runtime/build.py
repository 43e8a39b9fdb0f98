"""Building and initialising components from manifests, secret stores first.

A component that fails to build or initialise stops the start (the error names the component
and says why), unless its ``spec.ignoreErrors`` is true: then it is logged, counted and left
out. Components scoped to other app ids are skipped.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from edge_runtime.bindings import BindingOptions, parse_options
from edge_runtime.bindings.outboxed import OutboxedBinding
from edge_runtime.config.manifest import ComponentManifest
from edge_runtime.config.metadata import MetadataError
from edge_runtime.config.resolve import in_scope, resolve_metadata
from edge_runtime.config.settings import Settings
from edge_runtime.errors import ComponentError
from edge_runtime.observability.metrics import COMPONENT_INIT_FAILURES
from edge_runtime.outbox.limits import outbox_metadata
from edge_runtime.outbox.relay import Relay, StartSend
from edge_runtime.outbox.store import Outbox, Row
from edge_runtime.pubsub import Message, PubSub
from edge_runtime.pubsub.cloudevents import restamp_expiration
from edge_runtime.registry import ComponentContext, Registry, UnknownComponentTypeError
from edge_runtime.runtime.compstore import (
    BindingComponent,
    CompStore,
    Loaded,
    PubSubComponent,
    StateComponent,
    binding_capabilities,
)
from edge_runtime.secretstores import secret_getter
from edge_runtime.state.keys import KeyPrefix
from edge_runtime.support.disk import DiskBudget
from edge_runtime.support.sqlitedb import Database

log = logging.getLogger("edge_runtime.runtime")


class StartError(Exception):
    """The sidecar cannot start; the message says what to fix."""


class Builder:
    """Turns manifests into initialised components in a :class:`CompStore`."""

    def __init__(
        self, settings: Settings, registry: Registry, budget: DiskBudget | None,
        outbox_db: Database | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.budget = budget
        self.outbox_db = outbox_db
        self.components = CompStore()
        self.before_connect: Callable[[str, PubSub], Awaitable[None]] | None = None
        self.relays: list[Relay] = []

    def _context(self, manifest: ComponentManifest) -> ComponentContext:
        s = self.settings
        store = manifest.secret_store
        if store is None and len(self.components.secrets) == 1:
            store = next(iter(self.components.secrets))
        md = resolve_metadata(
            manifest,
            app_id=s.app_id,
            namespace=s.namespace,
            get_secret=secret_getter(self.components.secrets),
            default_secret_store=store,
            environ=os.environ,
        )
        return ComponentContext(
            manifest=manifest,
            metadata=md,
            app_id=s.app_id,
            data_dir=s.data_dir,
            durability=s.durability,
            commit_window_ms=s.commit_window_ms,
            disk_budget=self.budget,
        )

    async def build_all(self, manifests: Sequence[ComponentManifest]) -> CompStore:
        """Build every in-scope component; raises :class:`StartError` on a fatal failure."""
        ordered = sorted(
            (m for m in manifests if self._in_scope(m)),
            key=lambda m: 0 if m.block == "secretstores" else 1,
        )
        for manifest in ordered:
            try:
                await self._build(manifest)
            except (
                ComponentError,
                MetadataError,
                UnknownComponentTypeError,
                KeyError,
                OSError,
                TimeoutError,
            ) as exc:
                COMPONENT_INIT_FAILURES.labels(manifest.name, manifest.type).inc()
                if isinstance(exc, MetadataError):  # its problems carry file:line already
                    message = "; ".join(str(p) for p in exc.problems)
                else:
                    reason = "timed out" if isinstance(exc, TimeoutError) else str(exc)
                    message = (
                        f"{manifest.mark}: {manifest.describe()} failed to initialise: {reason}"
                    )
                if manifest.ignore_errors:
                    log.error("%s (ignored: spec.ignoreErrors is true)", message)  # noqa: TRY400 - the message is the whole story
                    continue
                raise StartError(message) from None
        return self.components

    def _in_scope(self, manifest: ComponentManifest) -> bool:
        if in_scope(manifest, self.settings.app_id):
            return True
        log.info("skipping %s: not scoped to app %r", manifest.describe(), self.settings.app_id)
        return False

    async def _build(self, manifest: ComponentManifest) -> None:
        registration = self.registry.lookup(manifest.type, manifest.version)
        ctx = self._context(manifest)
        instance = registration.factory(ctx)
        options = parse_options(manifest, ctx.metadata) if manifest.block == "bindings" else None
        if options is not None and not binding_capabilities(instance, options):
            raise ComponentError("it has no input or output side that its direction allows")
        relay = await self._with_outbox(ctx, instance) if manifest.block == "pubsub" else None
        binding_relay = await self._binding_outbox(ctx, instance, options)
        if relay is not None and self.before_connect is not None:
            # Handlers exist before CONNECT, so a persistent session's queue is not lost.
            await self.before_connect(manifest.name, instance)
        await asyncio.wait_for(instance.init(), manifest.init_timeout_s)
        features = tuple(sorted(str(f) for f in getattr(instance, "features", ())))
        loaded = Loaded(manifest, instance, features)
        if manifest.block == "state":
            prefix = self._prefix(ctx)
            self.components.state[manifest.name] = StateComponent(loaded, instance, prefix)
        elif relay is not None:
            self.components.pubsubs[manifest.name] = PubSubComponent(loaded, instance, relay.outbox)
            self.relays.append(relay)
        elif manifest.block == "secretstores":
            self.components.secrets[manifest.name] = instance
        elif options is not None:
            binding = BindingComponent(loaded, instance, options)
            loaded.capabilities = binding.capabilities
            self.components.bindings[manifest.name] = binding
            if binding_relay is not None:
                self.relays.append(binding_relay)
        if hasattr(instance, "get_configuration"):  # e.g. cloudsync.grpc's desired state
            self.components.configuration[manifest.name] = instance
        self.components.add(loaded)
        log.info("component loaded: %s", manifest.describe())

    async def _binding_outbox(
        self, ctx: ComponentContext, instance: object, options: BindingOptions | None
    ) -> Relay | None:
        """The outbox and relay of a binding whose output goes through one (``create`` of
        ``bindings.mqtt``), as a pub/sub component gets them; ``None`` for any other."""
        if options is None or not options.output or not isinstance(instance, OutboxedBinding):
            return None
        target = instance.relay_target
        if target is None:
            return None
        relay = await self._with_outbox(ctx, target, f"binding:{ctx.manifest.name}")
        instance.attach_outbox(relay.outbox)
        return relay

    async def _with_outbox(
        self, ctx: ComponentContext, pubsub: PubSub, relay_name: str = ""
    ) -> Relay:
        """A pub/sub component's outbox table and relay (the runtime starts the relay)."""
        assert self.outbox_db is not None, "the outbox database opens before components"
        settings = outbox_metadata(ctx.metadata, ctx.manifest)
        outbox = Outbox(self.outbox_db, relay_name or f"pubsub:{ctx.manifest.name}",
                        settings.limits(), durable=settings.durable)
        await outbox.open()

        async def send(row: Row) -> None:
            await pubsub.publish(Message(row.topic, _fresh_payload(row), row.metadata))

        start_send: StartSend | None = None
        start_publish = getattr(pubsub, "start_publish", None)  # MQTT's pipelined publish
        if start_publish is not None:
            async def start_send(row: Row) -> asyncio.Future[None]:
                fut: asyncio.Future[None] = await start_publish(
                    Message(row.topic, _fresh_payload(row), row.metadata))
                return fut

        window = int(getattr(pubsub, "inflight", 100) or 100)
        # The fast lane (edge_runtime/outbox/relay.py) when the far side's ack means it keeps
        # the message (MQTT at QoS 1 or 2).
        fast = bool(getattr(pubsub, "acks_keep_messages", False))
        connected = getattr(pubsub, "is_connected", None)
        return Relay(outbox, send, pubsub.wait_connected, window=window,
                     rate_limit=settings.drain_rate_limit, start_send=start_send,
                     fast_lane=fast, connected=connected)

    def _prefix(self, ctx: ComponentContext) -> KeyPrefix:
        strategy = ctx.metadata.text("keyPrefix")
        try:
            return KeyPrefix.from_strategy(
                strategy,
                app_id=self.settings.app_id,
                component=ctx.manifest.name,
                namespace=self.settings.namespace,
            )
        except ValueError as exc:
            raise ComponentError(str(exc)) from None

    async def close_all(self) -> None:
        """Close components in reverse order of loading; errors are logged, not raised."""
        for loaded in reversed(self.components.loaded):
            try:
                await loaded.instance.close()
            except Exception:
                log.exception("closing %s failed", loaded.manifest.describe())


def _fresh_payload(row: Row) -> bytes:
    """The row's bytes, with a CloudEvent ``expiration`` restamped from the TTL the outbox
    says is left (monotonic), so a wall-clock jump while it waited changes nothing."""
    if row.deadline is None:
        return row.payload
    return restamp_expiration(row.payload, row.deadline - time.monotonic())


def data_loss_notes(components: CompStore) -> list[str]:
    """Quarantined database files reported by stores (shown in metadata)."""
    return [
        f"{loaded.name}: corrupt database quarantined to {Path(path)}"
        for loaded in components.loaded
        for path in getattr(loaded.instance, "quarantined", ()) or ()
    ]
