"""The table of binding implementations the bindings conformance suite runs over.

Each row says how to build the binding and, for an input side, how to make it produce one
event (``emit``): the in-memory binding emits what its ``create`` operation is given; a GPIO
row will inject an edge into the simulated chip, a serial row write a frame to a pty.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from edge_runtime.bindings import memory as memory_binding

Emit = Callable[[Any, bytes], Awaitable[None]]


async def _memory_emit(binding: Any, data: bytes) -> None:
    await binding.invoke("create", data, {})


@dataclass(frozen=True)
class BindingCase:
    """One implementation: its factory and metadata, what it claims, how to trigger it."""

    id: str
    type: str
    factory: Callable[..., Any]
    metadata: dict[str, str] = field(default_factory=dict)
    operations: tuple[str, ...] = ()  # the output operations it claims (empty: no output)
    emit: Emit | None = None  # makes the input side produce one event (None: no input)
    # An input event whose handler raised is redelivered by its source (a broker), rather than
    # reported to whoever caused it (loopback: the invoke fails).
    redelivers: bool = False


BINDING_CASES = [
    BindingCase(
        "memory", "bindings.in-memory", memory_binding.create,
        operations=("create", "get", "list", "delete"), emit=_memory_emit,
    ),
]
