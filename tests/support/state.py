"""Building state stores in tests: component contexts as the runtime makes them, a fake clock."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_runtime.config.manifest import ComponentManifest, Mark
from edge_runtime.config.metadata import ResolvedMetadata, Value
from edge_runtime.registry import ComponentContext

YAML = "components/statestore.yaml"

MakeContext = Callable[..., ComponentContext]  # the ``make_context`` fixture of tests/state


def metadata_line(index: int) -> int:
    """The YAML line the ``index``-th metadata entry is written on (see :func:`context`)."""
    return 10 + 2 * index


def context(
    metadata: dict[str, str], data_dir: Path, *, type_: str = "state.sqlite", **kwargs: Any
) -> ComponentContext:
    """A context for component ``statestore`` (written at ``YAML`` line 3), the ``i``-th
    metadata entry at line :func:`metadata_line` ``(i)``; ``kwargs`` go to the context."""
    manifest = ComponentManifest("statestore", type_, "v1", Mark(YAML, 3))
    values = [
        Value(name, value, Mark(YAML, metadata_line(i)))
        for i, (name, value) in enumerate(metadata.items())
    ]
    return ComponentContext(manifest, ResolvedMetadata(values), "app", data_dir, **kwargs)


class FakeClock:
    """Wall-clock unix seconds that only move when a test says so (stores take ``clock=``)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
