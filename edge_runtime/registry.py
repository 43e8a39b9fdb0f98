"""Component types by name: ``"state.sqlite"`` (+ version) → factory.

The one list of built-ins is ``builtin.py``; nothing registers itself on import. A lookup of an
unknown type raises :class:`UnknownComponentTypeError` naming the type and what is available.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edge_runtime.config.manifest import ComponentManifest
from edge_runtime.config.metadata import ResolvedMetadata, declared_metadata
from edge_runtime.support.disk import DiskBudget

Durability = Literal["full", "normal"]


@dataclass(frozen=True, slots=True)
class ComponentContext:
    """What a factory gets: the manifest, its resolved metadata and process-wide settings."""

    manifest: ComponentManifest
    metadata: ResolvedMetadata
    app_id: str
    data_dir: Path
    durability: Durability = "full"
    commit_window_ms: float = 0.0
    disk_budget: DiskBudget | None = None

    def resolve_path(self, path: str) -> Path:
        """A metadata path: absolute as given, relative ones under the data dir."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.data_dir / p


Factory = Callable[[ComponentContext], Any]


class LazyFactory:
    """A factory imported on first use, so a type's libraries (paho, grpc, gpiod) load only
    when a component of that type is configured. ``metadata_class`` imports it for validate."""

    def __init__(self, module: str, attr: str = "create") -> None:
        self.module = module
        self.attr = attr

    def _target(self) -> Factory:
        target: Factory = getattr(importlib.import_module(self.module), self.attr)
        return target

    def __call__(self, ctx: ComponentContext) -> Any:
        return self._target()(ctx)

    @property
    def metadata_class(self) -> type[Any] | None:
        """The metadata dataclass the real factory declares."""
        return declared_metadata(self._target())


class UnknownComponentTypeError(LookupError):
    """No factory is registered for a type (or for that version of it)."""


@dataclass(frozen=True, slots=True)
class Registration:
    """One registered type."""

    type: str
    versions: tuple[str, ...]
    factory: Factory
    aliases: tuple[str, ...] = ()


class Registry:
    """Maps component types (and aliases, e.g. Dapr's ``pubsub.mqtt3``) to factories."""

    def __init__(self) -> None:
        self._by_type: dict[str, Registration] = {}

    def register(
        self,
        type_: str,
        factory: Factory,
        *,
        versions: tuple[str, ...] = ("v1",),
        aliases: tuple[str, ...] = (),
    ) -> None:
        """Add a type; registering a name twice is a programming error."""
        reg = Registration(type_, versions, factory, aliases)
        for name in (type_, *aliases):
            key = name.lower()
            if key in self._by_type:
                raise ValueError(f"component type {name!r} is registered twice")
            self._by_type[key] = reg

    def lookup(self, type_: str, version: str = "v1") -> Registration:
        """The registration for ``type_``/``version``; raises :class:`UnknownComponentTypeError`."""
        reg = self._by_type.get(type_.lower())
        if reg is None:
            known = ", ".join(sorted({r.type for r in self._by_type.values()}))
            raise UnknownComponentTypeError(
                f"unknown component type {type_!r}; known types: {known}"
            )
        if version and version not in reg.versions:
            raise UnknownComponentTypeError(
                f"component type {type_!r} has no version {version!r};"
                f" supported: {', '.join(reg.versions)}"
            )
        return reg

    def types(self) -> list[str]:
        """Every registered type name (canonical names only)."""
        return sorted({r.type for r in self._by_type.values()})
