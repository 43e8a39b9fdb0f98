"""The table of binding implementations the bindings conformance suite runs over.

Each row says how to build the binding and, for an input side, how to make it produce one
event (``emit``): the in-memory binding emits what its ``create`` operation is given; the GPIO
row injects an edge into the simulated chip, a serial row writes a frame to a pty. A binding
whose events cannot carry the emitted bytes (a GPIO edge) names, with ``payload``, which emit
an event came from.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from edge_runtime.bindings import memory as memory_binding
from edge_runtime.bindings.gpio import binding as gpio_binding
from edge_runtime.bindings.gpio.simclient import SimClient

Emit = Callable[[Any, bytes], Awaitable[None]]
Payload = Callable[[Any, bytes], bytes]


async def _memory_emit(binding: Any, data: bytes) -> None:
    await binding.invoke("create", data, {})


_GPIO_SENT: dict[tuple[str, int], bytes] = {}  # (socket, seq) -> what that emit stood for


async def _gpio_emit(binding: Any, data: bytes) -> None:
    """A pulse on line 17 (watched for rising edges): one event, remembered by its seq."""
    socket = binding.options.sim_socket
    async with SimClient(socket) as sim:
        for event in await sim.drive(17, 1, 0):
            _GPIO_SENT[(str(socket), event["seq"])] = data


def _gpio_payload(binding: Any, data: bytes) -> bytes:
    return _GPIO_SENT[(str(binding.options.sim_socket), json.loads(data)["seq"])]


def _same(binding: Any, data: bytes) -> bytes:
    return data


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
    # What an event's data stands for: the emitted bytes (by default, the data itself).
    payload: Payload = _same


BINDING_CASES = [
    BindingCase(
        "memory", "bindings.in-memory", memory_binding.create,
        operations=("create", "get", "list", "delete"), emit=_memory_emit,
    ),
    BindingCase(
        "gpio-sim", "bindings.gpio", gpio_binding.create,
        metadata={"chip": "sim", "lines": "17", "outputs": "18", "edge": "rising"},
        operations=("get", "set", "pulse"), emit=_gpio_emit, payload=_gpio_payload,
        redelivers=True,  # the binding retries an event the handler could not store
    ),
]
