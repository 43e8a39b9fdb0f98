"""Frozen dataclasses for the resources read from YAML, each with where it came from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


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
    """One ``spec.metadata`` entry as written (before env, secret and token resolution).

    ``mark`` is the line of the key the value comes from (``value``, ``envRef`` or
    ``secretKeyRef``), else the entry's first line. At most one source is set, except that an
    empty ``value`` may accompany ``env_ref`` (the env var is used then).
    """

    name: str
    mark: Mark
    value: str | None = None
    env_ref: str | None = None
    secret_ref: SecretRef | None = None


@dataclass(frozen=True, slots=True)
class ComponentManifest:
    """A ``kind: Component`` document.

    ``mark`` is the document's first line; ``field_marks`` holds the lines of individual fields
    (``spec.type``, ``auth.secretStore`` ...) for messages, see :meth:`mark_of`.
    """

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
    field_marks: tuple[tuple[str, Mark], ...] = field(default=(), compare=False, repr=False)

    def mark_of(self, path: str) -> Mark:
        """Where field ``path`` (e.g. ``spec.type``) was written; the document's mark if unknown."""
        return next((m for p, m in self.field_marks if p == path), self.mark)

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


@dataclass(frozen=True, slots=True)
class RawResource:
    """A document of another kind (Subscription, Configuration, Resiliency, HTTPEndpoint ...),
    kept as parsed YAML for the code that understands it. ``name`` is ``metadata.name`` or ``""``.
    """

    kind: str
    name: str
    api_version: str
    mark: Mark
    body: Mapping[str, Any]


@dataclass(slots=True)
class Resources:
    """Everything loaded from the resources paths, plus every problem found.

    ``components`` holds only documents without problems; ``files`` lists the files read.
    """

    components: list[ComponentManifest] = field(default_factory=list)
    problems: list[ConfigProblem] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    others: list[RawResource] = field(default_factory=list)
