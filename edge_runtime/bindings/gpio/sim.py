"""``chip: sim``: a simulated GPIO chip in the sidecar's process, driven over a Unix socket.

Like a real chip, one simulated chip (one socket path) is shared by every component that
names it: :func:`open_sim` hands each a :class:`SimHandle`, and lines one holds are busy for
the others.

It has :data:`NUM_LINES` lines named ``GPIO0`` ... ``GPIO63`` and keeps the kernel's semantics
(see :mod:`~edge_runtime.bindings.gpio.backend`): it applies ``active_low``, edge selection and
debounce in software exactly where the kernel's character device would, numbers events per
request, buffers at most ``MAX_EVENT_BUFFER`` of them (dropping the oldest, as the kernel
does), timestamps them with ``CLOCK_MONOTONIC``, and signals them through a pipe the binding
watches on the event loop, as it watches a real request's descriptor. A line with
``pull-up``/``pull-down`` bias rests at that level when requested, as gpio-sim's lines do.

Debounce, as the kernel does it: every change of the line restarts a timer of
``debounce_us``; when it fires, the line's level is compared with the last settled level and,
if it differs, becomes the new settled level and yields one event (if that edge is watched)
stamped with the time it settled. The debouncer runs whenever the lines are requested with a
debounce period, watched or not, so a change shorter than the period just before edges are
watched is no edge.

The socket (:class:`SimServer`, a file in the data dir) takes one JSON object per line and
answers one JSON object per line (``"ok": true`` or ``"ok": false`` with ``"error"``):

* ``{"line": 17, "value": 1}``: drive line 17 (an offset or a name) to physical level 1 from
  outside, as a button or a jumper would; ``"values": [1, 0, 1]`` applies several levels at
  once (a bounce). The answer lists the events this produced at once (``seq``, ``edge``);
  debounced events come later.
* ``{"op": "read", "line": 18}``: the line's physical level (``value``; for an output, what
  the binding drives), its ``direction`` (``input``, ``output`` or ``unused``), ``name`` and
  ``consumer``.
* ``{"op": "lines"}``: every line, as ``read`` describes it.

Driving an output line from outside is refused (the binding drives it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge_runtime.bindings.gpio.backend import (
    MAX_EVENT_BUFFER,
    Edge,
    EdgeEvent,
    GpioError,
    Line,
    LineConfig,
    LineError,
)

__all__ = ["NUM_LINES", "SimChip", "SimHandle", "SimRequest", "SimServer", "open_sim"]

NUM_LINES = 64
LABEL = "edge-runtime-sim"
# sun_path holds 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107
_MAX_COMMAND = 64 * 1024

log = logging.getLogger("edge_runtime.bindings.gpio")


class _Line:
    __slots__ = ("level", "name", "offset", "owner")

    def __init__(self, offset: int) -> None:
        self.offset = offset
        self.name = f"GPIO{offset}"
        self.level = 0  # physical
        self.owner: SimRequest | None = None


class SimRequest:
    """Lines of a :class:`SimChip` held by one consumer (see :class:`backend.LineRequest`)."""

    def __init__(
        self, chip: SimChip, lines: Sequence[_Line], config: LineConfig, consumer: str
    ) -> None:
        self.chip = chip
        self.config = config
        self.consumer = consumer
        self.edge: Edge = config.edge
        self._lines = {line.offset: line for line in lines}
        self.lines = tuple(Line(line.offset, line.name) for line in lines)
        self._events: deque[EdgeEvent] = deque()
        self._seq = 0
        self._settled: dict[int, int] = {}  # debounce: the last settled physical level
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self._signalled = False
        self.released = False
        for line in lines:
            line.owner = self
            if config.output:
                line.level = config.initial_value ^ config.active_low
            elif config.bias == "pull-up":
                line.level = 1
            elif config.bias == "pull-down":
                line.level = 0
            self._settled[line.offset] = line.level

    # --- backend.LineRequest -----------------------------------------------------------------

    def fileno(self) -> int:
        """The pipe end that is readable while events wait."""
        return self._read_fd

    def has_events(self) -> bool:
        """Whether events wait."""
        return bool(self._events)

    def read_events(self) -> list[EdgeEvent]:
        """The waiting events, oldest first (never blocks)."""
        self._check()
        events = list(self._events)
        self._events.clear()
        if self._signalled:
            with contextlib.suppress(BlockingIOError):
                os.read(self._read_fd, 64)
            self._signalled = False
        return events

    def get(self, offset: int) -> int:
        """The logical value of a requested line."""
        return self._line(offset).level ^ self.config.active_low

    def set(self, offset: int, value: int) -> None:
        """Drive a requested output line to a logical value."""
        line = self._line(offset)
        if not self.config.output:
            raise GpioError(f"line {offset} is requested as an input")
        line.level = (1 if value else 0) ^ self.config.active_low

    def watch(self, edge: Edge) -> None:
        """Change the watched edges. The debouncer keeps running (it runs whenever the lines
        are requested with a debounce period, watched or not, as the kernel's does)."""
        self._check()
        self.edge = edge

    def release(self) -> None:
        """Give the lines back and close the pipe; idempotent."""
        if self.released:
            return
        self.released = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for line in self._lines.values():
            if line.owner is self:
                line.owner = None
        os.close(self._read_fd)
        os.close(self._write_fd)
        self.chip.forget(self)

    # --- driven by the chip ------------------------------------------------------------------

    def changed(self, line: _Line, old: int) -> EdgeEvent | None:
        """``line`` (an input of this request) went from ``old`` to ``line.level``."""
        if self.config.output or old == line.level:
            return None
        if self.config.debounce_us > 0:
            timer = self._timers.pop(line.offset, None)
            if timer is not None:
                timer.cancel()
            self._timers[line.offset] = asyncio.get_running_loop().call_later(
                self.config.debounce_us / 1e6, self._settle, line
            )
            return None
        return self._emit(line)

    def _settle(self, line: _Line) -> None:
        self._timers.pop(line.offset, None)
        if self.released or self._settled[line.offset] == line.level:
            return
        self._settled[line.offset] = line.level
        self._emit(line)

    def _emit(self, line: _Line) -> EdgeEvent | None:
        rising = bool(line.level ^ self.config.active_low)
        if self.edge == "none" or (self.edge == "rising" and not rising) \
                or (self.edge == "falling" and rising):
            return None
        self._seq += 1  # counted even when the buffer drops the oldest, as in the kernel
        event = EdgeEvent(line.offset, rising, time.monotonic_ns(), self._seq)
        if len(self._events) >= MAX_EVENT_BUFFER:
            self._events.popleft()
        self._events.append(event)
        if not self._signalled:
            os.write(self._write_fd, b"!")
            self._signalled = True
        return event

    def _line(self, offset: int) -> _Line:
        self._check()
        line = self._lines.get(offset)
        if line is None:
            raise GpioError(f"line {offset} is not part of this request")
        return line

    def _check(self) -> None:
        if self.released:
            raise GpioError("the GPIO lines have been released")


class SimChip:
    """The simulated chip (see the module docs). Use it from one event loop."""

    def __init__(self, socket_path: Path | None = None, *, num_lines: int = NUM_LINES) -> None:
        self.lines = [_Line(i) for i in range(num_lines)]
        self._by_name = {line.name: line for line in self.lines}
        self._requests: list[SimRequest] = []
        self.users = 0  # handles from open_sim
        self.server = SimServer(self, socket_path) if socket_path is not None else None

    @property
    def description(self) -> str:
        """``sim`` and where its socket is."""
        where = f" (socket {self.server.path})" if self.server is not None else ""
        return f"the simulated chip {LABEL}{where}"

    async def start(self) -> None:
        """Open the socket, if any. Raises :class:`GpioError` when it cannot."""
        if self.server is not None:
            await self.server.start()

    def find(self, line: int | str) -> _Line:
        """A line by offset, name, or offset written as text; raises :class:`LineError`."""
        if isinstance(line, str):
            found = self._by_name.get(line)
            if found is not None:
                return found
            if not line.strip().isdigit():
                raise LineError(f"{self.description} has no line named {line!r}"
                                f" (its lines are GPIO0 to GPIO{len(self.lines) - 1})")
            line = int(line)
        if not 0 <= line < len(self.lines):
            raise LineError(f"{self.description} has no line {line}"
                            f" (offsets 0 to {len(self.lines) - 1})")
        return self.lines[line]

    def request(
        self, lines: Sequence[int | str], config: LineConfig, consumer: str
    ) -> SimRequest:
        """Hold ``lines`` for ``consumer``; raises :class:`LineError` (unknown, in use)."""
        found: list[_Line] = []
        for spec in lines:
            line = self.find(spec)
            if line.owner is not None:
                raise LineError(f"line {line.offset} ({line.name}) of {self.description} is"
                                f" in use by {line.owner.consumer!r}")
            if line in found:
                raise LineError(f"line {line.offset} ({line.name}) is requested twice")
            found.append(line)
        request = SimRequest(self, found, config, consumer)
        self._requests.append(request)
        return request

    def forget(self, request: SimRequest) -> None:
        """Called by a request when it is released."""
        with contextlib.suppress(ValueError):
            self._requests.remove(request)

    def drive(self, spec: int | str, levels: Sequence[int]) -> list[EdgeEvent]:
        """Drive a line from outside to each of ``levels`` in turn; the events produced at
        once. Raises :class:`GpioError` for an output line or a bad level."""
        line = self.find(spec)
        owner = line.owner
        if owner is not None and owner.config.output:
            raise GpioError(f"line {line.offset} ({line.name}) is an output of"
                            f" {owner.consumer!r}: the binding drives it")
        events = []
        for level in levels:
            if level not in (0, 1):
                raise GpioError(f"a level is 0 or 1, not {level!r}")
            old, line.level = line.level, level
            if owner is not None:
                event = owner.changed(line, old)
                if event is not None:
                    events.append(event)
        return events

    def describe(self, spec: int | str) -> dict[str, Any]:
        """A line's physical level, direction, name and consumer."""
        line = self.find(spec)
        owner = line.owner
        direction = "unused" if owner is None else "output" if owner.config.output else "input"
        return {"line": line.offset, "name": line.name, "value": line.level,
                "direction": direction, "consumer": owner.consumer if owner else ""}

    async def close(self) -> None:
        """Release every request and close the socket; idempotent."""
        for request in list(self._requests):
            request.release()
        if self.server is not None:
            await self.server.close()


_shared: dict[Path, SimChip] = {}


async def open_sim(path: Path) -> SimHandle:
    """A handle on the simulated chip whose socket is ``path``, started on first use.

    Raises :class:`GpioError` when the socket cannot be opened."""
    chip = _shared.get(path)
    if chip is None:
        chip = _shared[path] = SimChip(path)
        try:
            await chip.start()
        except GpioError:
            _shared.pop(path, None)
            raise
    chip.users += 1
    return SimHandle(chip, path)


class SimHandle:
    """One component's use of a shared :class:`SimChip` (see :class:`backend.Chip`)."""

    def __init__(self, chip: SimChip, path: Path) -> None:
        self.chip = chip
        self.path = path
        self._requests: list[SimRequest] = []
        self._closed = False

    @property
    def description(self) -> str:
        """The chip's description."""
        return self.chip.description

    def request(
        self, lines: Sequence[int | str], config: LineConfig, consumer: str
    ) -> SimRequest:
        """See :meth:`SimChip.request`."""
        request = self.chip.request(lines, config, consumer)
        self._requests.append(request)
        return request

    async def close(self) -> None:
        """Release this handle's lines; the last handle closes the chip. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for request in self._requests:
            request.release()
        self.chip.users -= 1
        if self.chip.users <= 0:
            if _shared.get(self.path) is self.chip:
                del _shared[self.path]
            await self.chip.close()


class SimServer:
    """The Unix socket a :class:`SimChip` is driven through (protocol: the module docs)."""

    def __init__(self, chip: SimChip, path: Path) -> None:
        self.chip = chip
        self.path = path
        self._server: asyncio.AbstractServer | None = None
        self._conns: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}

    async def start(self) -> None:
        """Listen at ``path`` (a stale socket file there is replaced)."""
        if len(os.fsencode(self.path)) > MAX_SOCKET_PATH:
            raise GpioError(f"the simulated chip's socket path {self.path} is longer than"
                            f" {MAX_SOCKET_PATH} bytes; set the metadata simSocket to a"
                            " shorter one")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.is_socket():
                self.path.unlink()
            self._server = await asyncio.start_unix_server(
                self._serve, self.path, limit=_MAX_COMMAND
            )
        except OSError as exc:
            raise GpioError(f"cannot open the simulated chip's socket {self.path}: {exc}"
                            ) from None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns[task] = writer
        try:
            while line := await reader.readline():
                writer.write(json.dumps(self.answer(line)).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, ValueError, asyncio.LimitOverrunError):
            pass  # a client that went away, or sent an over-long line: drop it
        finally:
            self._conns.pop(task, None)
            writer.close()

    def answer(self, raw: bytes) -> dict[str, Any]:
        """The reply to one command line (never raises)."""
        try:
            return {"ok": True, **self._run(json.loads(raw))}
        except (GpioError, ValueError) as exc:
            return {"ok": False, "error": str(exc)}

    def _run(self, cmd: object) -> dict[str, Any]:
        if not isinstance(cmd, dict):
            raise GpioError("a command is a JSON object")
        op = cmd.get("op", "drive" if "value" in cmd or "values" in cmd else "read")
        if op == "lines":
            return {"lines": [self.chip.describe(i.offset) for i in self.chip.lines]}
        spec = cmd.get("line")
        if not isinstance(spec, int | str) or isinstance(spec, bool):
            raise GpioError("the command needs \"line\": an offset or a line name")
        if op == "read":
            return self.chip.describe(spec)
        if op != "drive":
            raise GpioError(f"unknown op {op!r}: drive, read or lines")
        levels = cmd["values"] if "values" in cmd else [cmd.get("value")]
        if not isinstance(levels, list):
            raise GpioError("\"values\" is a list of levels")
        events = self.chip.drive(spec, levels)
        return {"line": self.chip.find(spec).offset,
                "events": [{"seq": e.seq, "edge": "rising" if e.rising else "falling"}
                           for e in events]}

    async def close(self) -> None:
        """Stop listening, drop the clients, remove the socket file; idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        # Closing a client's transport ends its loop (EOF); cancelling the task instead
        # would make asyncio log the cancellation as an error.
        for writer in list(self._conns.values()):
            writer.close()
        if self._conns:
            await asyncio.wait(list(self._conns), timeout=5)
        await server.wait_closed()
        with contextlib.suppress(OSError):
            self.path.unlink()
