"""What ``bindings.gpio`` needs from a GPIO chip, whichever backend provides it.

Two backends implement it: :mod:`~edge_runtime.bindings.gpio.kernel` (libgpiod v2 through the
``gpiod`` package, the only module that imports it) and :mod:`~edge_runtime.bindings.gpio.sim`
(a simulated chip in the process). The binding is written against these protocols only, so
both run the same code path: lines are requested with a :class:`LineConfig`, edge events are
read from the request's file descriptor when the event loop says it is readable, and values
are set and read by offset.

Semantics both backends keep (the kernel's GPIO character device's):

* values are **logical**: with ``active_low`` a physical low reads as 1, and a physical
  falling edge is reported as a rising one;
* ``edge`` selects which logical edges produce events; ``debounce_us`` reports an edge only
  once the line has been stable that long (the event carries the settled value and the time
  it settled);
* each event carries a sequence number counted per request from 1, so a gap means the
  request's event buffer overflowed and the oldest events were lost;
* timestamps are ``CLOCK_MONOTONIC`` nanoseconds (``time.monotonic_ns()`` on Linux), never
  the wall clock.

Errors: backends raise only :class:`GpioError` and its subclasses, with messages that say what
to do (a missing chip, a missing permission, a busy or unknown line).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = [
    "BIASES",
    "EDGES",
    "Bias",
    "Chip",
    "ChipNotFoundError",
    "ChipPermissionError",
    "Edge",
    "EdgeEvent",
    "GpioError",
    "Line",
    "LineConfig",
    "LineError",
    "LineRequest",
]

Edge = Literal["none", "rising", "falling", "both"]
Bias = Literal["as-is", "disabled", "pull-up", "pull-down"]
EDGES: tuple[Edge, ...] = ("none", "rising", "falling", "both")
BIASES: tuple[Bias, ...] = ("as-is", "disabled", "pull-up", "pull-down")

# The kernel's largest edge-event buffer for one request (16 events per line, 64 lines).
MAX_EVENT_BUFFER = 1024


class GpioError(Exception):
    """A GPIO operation failed; the message says why and, where it can, what to do."""


class ChipNotFoundError(GpioError):
    """The chip does not exist (no such device, label or path)."""


class ChipPermissionError(GpioError):
    """The chip exists but this user may not open it (e.g. not in the ``gpio`` group)."""


class LineError(GpioError):
    """A line is unknown on the chip, or in use by another consumer."""


@dataclass(frozen=True, slots=True)
class Line:
    """A requested line: its offset on the chip and the chip's name for it (may be empty)."""

    offset: int
    name: str


@dataclass(frozen=True, slots=True)
class LineConfig:
    """How to request a set of lines (all lines of one request share it)."""

    output: bool = False
    edge: Edge = "none"
    bias: Bias = "as-is"
    active_low: bool = False
    debounce_us: int = 0
    initial_value: int = 0  # outputs: the logical value the lines start with


@dataclass(frozen=True, slots=True)
class EdgeEvent:
    """One edge: the line's offset, whether the logical value rose, when (monotonic ns) and
    the request's sequence number."""

    offset: int
    rising: bool
    timestamp_ns: int
    seq: int


class LineRequest(Protocol):
    """Lines held for exclusive use. Not thread-safe: use it from the loop's thread."""

    @property
    def lines(self) -> tuple[Line, ...]:
        """The requested lines, in request order."""
        ...

    def fileno(self) -> int:
        """The descriptor that is readable while edge events are waiting."""
        ...

    def has_events(self) -> bool:
        """Whether :meth:`read_events` would return at once (never blocks)."""
        ...

    def read_events(self) -> list[EdgeEvent]:
        """The waiting edge events, oldest first. Call only when :meth:`fileno` is readable
        or :meth:`has_events` is true: otherwise it may block. Raises :class:`GpioError`."""
        ...

    def get(self, offset: int) -> int:
        """The logical value (0 or 1) of one requested line. Raises :class:`GpioError`."""
        ...

    def set(self, offset: int, value: int) -> None:
        """Drive one requested output line to a logical value. Raises :class:`GpioError`."""
        ...

    def watch(self, edge: Edge) -> None:
        """Change which edges produce events (``"none"``: stop detecting). Events already
        waiting stay readable. Raises :class:`GpioError`."""
        ...

    def release(self) -> None:
        """Give the lines back; idempotent."""
        ...


class Chip(Protocol):
    """An open GPIO chip."""

    @property
    def description(self) -> str:
        """What to call the chip in messages (path and label)."""
        ...

    def request(
        self, lines: Sequence[int | str], config: LineConfig, consumer: str
    ) -> LineRequest:
        """Request ``lines`` (offsets or line names) with ``config``.

        Raises :class:`LineError` for an unknown line or one in use, :class:`GpioError` for
        anything else the chip refuses.
        """
        ...

    async def close(self) -> None:
        """Release everything this chip handed out and close it; idempotent."""
        ...
