"""The configuration API (contract §2.11), shared by the HTTP and gRPC adapters.

Stores are components that implement :class:`ConfigurationStore` (today the desired state of
a ``cloudsync.grpc`` component). :meth:`Configurations.get` reads items;
:meth:`Configurations.subscribe` returns a :class:`Subscription` whose updates the caller
drains (the gRPC stream); :meth:`Configurations.subscribe_app` sends each update to the app
instead, as daprd's HTTP API does: ``POST /configuration/{store}/{key}`` with the update JSON.
Subscription ids are unique across stores; :meth:`Configurations.unsubscribe` ends one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from edge_runtime import errors as E
from edge_runtime.errors import APIError
from edge_runtime.observability.metrics import CONFIGURATION_UPDATES_LOST

__all__ = ["ConfigItem", "ConfigurationStore", "Configurations", "Subscription", "update_json"]

log = logging.getLogger("edge_runtime.api")


@dataclass(frozen=True, slots=True)
class ConfigItem:
    """One configuration value as the API shows it."""

    value: str
    version: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        """daprd's JSON shape of an item."""
        return {"value": self.value, "version": self.version, "metadata": dict(self.metadata)}


Handler = Callable[[dict[str, ConfigItem]], None]
"""Called on the loop with the items that changed (a deleted key has an empty value)."""


@runtime_checkable
class ConfigurationStore(Protocol):
    """What a configuration store component implements."""

    async def get_configuration(self, keys: Sequence[str]) -> dict[str, ConfigItem]:
        """Items for ``keys`` (every item when empty); missing keys are left out."""
        ...

    def watch_configuration(self, keys: Sequence[str], handler: Handler) -> Callable[[], None]:
        """Call ``handler`` with changes of ``keys`` (all keys when empty) until the returned
        function is called."""
        ...


@dataclass(eq=False)
class Subscription:
    """One subscription: :attr:`updates` receives ``{key: item}`` maps until it ends
    (``None`` is queued when it is unsubscribed)."""

    id: str
    store: str
    keys: tuple[str, ...]
    updates: asyncio.Queue[dict[str, ConfigItem] | None] = field(default_factory=asyncio.Queue)
    stop: Callable[[], None] = lambda: None


def update_json(sub_id: str, items: Mapping[str, ConfigItem]) -> bytes:
    """The update event daprd posts to an HTTP app: ``{"id": .., "items": {key: item}}``."""
    doc = {"id": sub_id, "items": {k: v.as_json() for k, v in items.items()}}
    return json.dumps(doc, separators=(",", ":")).encode()


PostToApp = Callable[[str, bytes], Awaitable[None]]
"""``(path, body)``: POST a JSON body to the app; raises when the app did not take it."""


class Configurations:
    """The configuration operations over ``stores`` (a live map, filled by the runtime)."""

    def __init__(self, stores: Mapping[str, ConfigurationStore],
                 post_to_app: PostToApp | None = None) -> None:
        self.stores = stores
        self.post_to_app = post_to_app
        self._subs: dict[str, Subscription] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def _store(self, name: str) -> ConfigurationStore:
        if not self.stores:
            raise APIError(E.CONFIGURATION_STORE_NOT_CONFIGURED,
                           "configuration stores not configured")
        store = self.stores.get(name)
        if store is None:
            raise APIError(E.CONFIGURATION_STORE_NOT_FOUND,
                           f"configuration store {name} not found",
                           resource=("configuration", name))
        return store

    async def get(self, store: str, keys: Sequence[str],
                  metadata: Mapping[str, str] | None = None) -> dict[str, ConfigItem]:
        """Items of ``keys`` (all when empty) from ``store``."""
        s = self._store(store)
        try:
            return await s.get_configuration(list(keys))
        except APIError:
            raise
        except Exception as exc:  # noqa: BLE001 - any store failure is ERR_CONFIGURATION_GET
            log.warning("configuration store %s: get failed: %s", store, exc)
            raise APIError(E.CONFIGURATION_GET,
                           f"failed to get {list(keys)} from Configuration store {store}: {exc}"
                           ) from None

    def subscribe(self, store: str, keys: Sequence[str],
                  metadata: Mapping[str, str] | None = None) -> Subscription:
        """A new subscription whose updates are queued for the caller to drain."""
        s = self._store(store)
        sub = Subscription(str(uuid.uuid4()), store, tuple(keys))
        sub.stop = s.watch_configuration(list(keys), sub.updates.put_nowait)
        self._subs[sub.id] = sub
        return sub

    def subscribe_app(self, store: str, keys: Sequence[str],
                      metadata: Mapping[str, str] | None = None) -> str:
        """Subscribe on behalf of the app: each update is POSTed to
        ``/configuration/{store}/{key}``; the subscription id."""
        if self.post_to_app is None:
            raise APIError(E.CONFIGURATION_SUBSCRIBE,
                           f"failed to subscribe {list(keys)} from Configuration store {store}:"
                           " there is no HTTP app to send updates to (give --app-port)")
        sub = self.subscribe(store, keys, metadata)
        task = asyncio.create_task(self._forward(sub), name=f"configuration:{sub.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return sub.id

    async def _forward(self, sub: Subscription) -> None:
        assert self.post_to_app is not None
        while (items := await sub.updates.get()) is not None:
            for key, item in items.items():
                try:
                    await self.post_to_app(f"configuration/{sub.store}/{key}",
                                           update_json(sub.id, {key: item}))
                except Exception as exc:  # noqa: BLE001 - counted; daprd does not retry either
                    CONFIGURATION_UPDATES_LOST.labels(sub.store).inc()
                    log.warning("configuration update of %s/%s to the app failed: %s",
                                sub.store, key, exc)

    def unsubscribe(self, store: str, sub_id: str) -> None:
        """End a subscription; raises ``ERR_CONFIGURATION_UNSUBSCRIBE`` for an unknown id."""
        self._store(store)
        sub = self._subs.get(sub_id)
        if sub is None or sub.store != store:
            raise APIError(E.CONFIGURATION_UNSUBSCRIBE,
                           f"failed to unsubscribe from Configuration store {store}:"
                           f" subscription {sub_id} not found")
        self.end(sub)

    def end(self, sub: Subscription) -> None:
        """Stop ``sub`` (idempotent); its queue gets ``None``."""
        if self._subs.pop(sub.id, None) is not None:
            sub.stop()
            sub.updates.put_nowait(None)

    async def close(self) -> None:
        """End every subscription and the app forwarders."""
        for sub in list(self._subs.values()):
            self.end(sub)
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
