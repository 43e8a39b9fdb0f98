"""Live component instances by name, with typed getters: the only mutable component map."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edge_runtime.config.manifest import ComponentManifest
from edge_runtime.outbox.store import Outbox
from edge_runtime.pubsub import PubSub
from edge_runtime.secretstores import SecretStore
from edge_runtime.state import StateStore
from edge_runtime.state.keys import KeyPrefix


@dataclass(slots=True)
class Loaded:
    """A component that initialised: its manifest, instance and reported capabilities."""

    manifest: ComponentManifest
    instance: Any
    capabilities: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The component name used in API paths."""
        return self.manifest.name


@dataclass(slots=True)
class StateComponent:
    """A state store plus its key prefix."""

    loaded: Loaded
    store: StateStore
    prefix: KeyPrefix


@dataclass(slots=True)
class PubSubComponent:
    """A pub/sub component and the outbox its publishes go through."""

    loaded: Loaded
    pubsub: PubSub
    outbox: Outbox


@dataclass(slots=True)
class CompStore:
    """Every loaded component, in load order (shutdown closes them in reverse)."""

    loaded: list[Loaded] = field(default_factory=list)
    state: dict[str, StateComponent] = field(default_factory=dict)
    secrets: dict[str, SecretStore] = field(default_factory=dict)
    pubsubs: dict[str, PubSubComponent] = field(default_factory=dict)

    def add(self, item: Loaded) -> None:
        """Record a loaded component (typed maps are filled by the builder)."""
        self.loaded.append(item)
