"""Frozen dataclasses for the resources read from YAML, each with where it came from."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Mark:
    """A place in a YAML file (1-based line)."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True, slots=True)
class SecretRef:
    """``secretKeyRef``: secret ``name`` in the component's secret store, ``key`` inside it."""

    name: str
    key: str


@dataclass(frozen=True, slots=True)
class MetadataItem:
    """One ``spec.metadata`` entry as written (before env, secret and token resolution)."""

    name: str
    mark: Mark
    value: str | None = None
    env_ref: str | None = None
    secret_ref: SecretRef | None = None


@dataclass(frozen=True, slots=True)
class ComponentManifest:
    """A ``kind: Component`` document."""

    name: str
    type: str
    version: str
    mark: Mark
    namespace: str = ""
    ignore_errors: bool = False
    init_timeout_s: float = 5.0
    metadata: tuple[MetadataItem, ...] = ()
    secret_store: str | None = None
    scopes: tuple[str, ...] = ()

    @property
    def block(self) -> str:
        """The building block: ``state`` for ``state.sqlite``."""
        return self.type.split(".", 1)[0]

    def describe(self) -> str:
        """``component 'name' (type)`` for messages."""
        return f"component {self.name!r} ({self.type})"


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong in a resources folder, phrased for a person.

    ``str()`` gives ``file:line: component 'x' (type): field 'f': what is expected``.
    """

    mark: Mark | None
    message: str
    component: str = ""
    field: str = ""

    def __str__(self) -> str:
        parts = [str(self.mark) if self.mark else "<resources>"]
        if self.component:
            parts.append(self.component)
        if self.field:
            parts.append(f"field {self.field!r}")
        parts.append(self.message)
        return ": ".join(parts)


@dataclass(slots=True)
class Resources:
    """Everything loaded from the resources paths, plus every problem found."""

    components: list[ComponentManifest] = field(default_factory=list)
    problems: list[ConfigProblem] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
