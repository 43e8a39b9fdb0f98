"""Live component instances by name, with typed getters: the only mutable component map."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edge_runtime.bindings import BindingOptions, InputBinding, OutputBinding
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
class BindingComponent:
    """A binding and what the runtime uses it for (its ``direction``, route and routing)."""

    loaded: Loaded
    instance: Any
    options: BindingOptions

    @property
    def output(self) -> OutputBinding | None:
        """The output side, when the binding has one and its direction allows it."""
        ok = self.options.output and isinstance(self.instance, OutputBinding)
        return self.instance if ok else None

    @property
    def input(self) -> InputBinding | None:
        """The input side, when the binding has one and its direction allows it."""
        ok = self.options.input and isinstance(self.instance, InputBinding)
        return self.instance if ok else None

    @property
    def capabilities(self) -> tuple[str, ...]:
        """``INPUT_BINDING`` and/or ``OUTPUT_BINDING``, as daprd reports them."""
        return binding_capabilities(self.instance, self.options)


def binding_capabilities(instance: object, options: BindingOptions) -> tuple[str, ...]:
    """The sides of ``instance`` its ``direction`` allows, as daprd names them."""
    out = []
    if options.input and isinstance(instance, InputBinding):
        out.append("INPUT_BINDING")
    if options.output and isinstance(instance, OutputBinding):
        out.append("OUTPUT_BINDING")
    return tuple(out)


@dataclass(slots=True)
class CompStore:
    """Every loaded component, in load order (shutdown closes them in reverse)."""

    loaded: list[Loaded] = field(default_factory=list)
    state: dict[str, StateComponent] = field(default_factory=dict)
    secrets: dict[str, SecretStore] = field(default_factory=dict)
    pubsubs: dict[str, PubSubComponent] = field(default_factory=dict)
    bindings: dict[str, BindingComponent] = field(default_factory=dict)
    # Components that serve the configuration API (api/configuration.ConfigurationStore).
    configuration: dict[str, Any] = field(default_factory=dict)

    def add(self, item: Loaded) -> None:
        """Record a loaded component (typed maps are filled by the builder)."""
        self.loaded.append(item)
