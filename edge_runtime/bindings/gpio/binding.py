"""``bindings.gpio``: GPIO lines as an input binding (edges) and an output binding.

Input (``lines``): each watched edge becomes one event, in the order the chip reported them,
handed to the runtime's handler one at a time (so the inbox keeps their order), with the
body (DESIGN.md §5)::

    {"line": 17, "name": "BUTTON", "edge": "rising", "value": 1,
     "timestampNs": <CLOCK_MONOTONIC ns, from the kernel>, "seq": <the request's number>}

and the metadata ``line``, ``name`` and ``edge``. ``name`` is the one given in ``lines``
(``BUTTON=17``), else the chip's (``GPIO17``), else ``""``. ``seq`` counts the events of one
request from 1 (it restarts when the sidecar starts); a gap means the kernel's buffer
overflowed, which is logged and counted in ``edge_runtime_gpio_events_lost_total``. Edges are
watched only between :meth:`GpioBinding.start` and :meth:`GpioBinding.stop`; the events read
before ``stop`` are all handed over before it returns. An event the handler could not store
is retried a few times and then counted and logged as lost: a GPIO edge cannot be asked for
again.

Output operations (metadata ``line``: an offset, a line name or the name given to it):

* ``get``: a line's logical value (input or output): ``{"line": 18, "name": "LED",
  "value": 1}``, and the metadata ``value``;
* ``set``: drive an output line to metadata ``value`` (``1``/``0``, ``true``/``false``,
  ``on``/``off``); no content;
* ``pulse``: drive it to ``value`` (default 1) for ``durationMs`` (1 to 60000), then to the
  other value; the call returns when the pulse is over. ``set`` and ``pulse`` on one line
  take turns.

Without ``outputs`` the only operation is ``get``; without ``lines`` the binding has no input
side. A missing chip or permission fails ``init`` with a message that says what to do.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Mapping, Sequence

from edge_runtime.bindings.contract import (
    BindingError,
    BindingResponse,
    InputHandler,
    InvokeError,
    UnsupportedOperationError,
)
from edge_runtime.bindings.gpio.backend import (
    Chip,
    EdgeEvent,
    GpioError,
    Line,
    LineConfig,
    LineRequest,
)
from edge_runtime.bindings.gpio.options import SIM, GpioMetadata, GpioOptions, LineSpec, parse
from edge_runtime.bindings.storing import store
from edge_runtime.config.metadata import declare_metadata, parse_bool
from edge_runtime.errors import ComponentError
from edge_runtime.observability.metrics import GPIO_EVENTS_LOST
from edge_runtime.registry import ComponentContext

__all__ = ["GpioBinding", "GpioOutputs", "create", "open_chip"]

log = logging.getLogger("edge_runtime.bindings.gpio")

MAX_PULSE_MS = 60_000
# Read events wait in memory up to this many; beyond it the reader pauses, so the kernel's
# buffer takes the strain (and an overflow there shows as a seq gap, counted).
HIGH_WATER = 4096


async def open_chip(options: GpioOptions) -> Chip:
    """The chip ``options`` names: the simulated one (its socket open) or a kernel chip.

    Raises :class:`GpioError` (including a missing ``gpiod`` package)."""
    if options.chip == SIM:
        from edge_runtime.bindings.gpio.sim import open_sim  # only for chip: sim

        assert options.sim_socket is not None
        return await open_sim(options.sim_socket)
    try:
        from edge_runtime.bindings.gpio import kernel  # gpiod loads only here
    except ImportError:
        raise GpioError("a real GPIO chip needs the gpiod package (libgpiod v2):"
                        " pip install 'edge-runtime[gpio]'") from None
    return kernel.open_chip(options.chip)


class GpioOutputs:
    """A ``bindings.gpio`` component without input lines (and the base of
    :class:`GpioBinding`). Use it from one event loop."""

    def __init__(self, name: str, options: GpioOptions) -> None:
        self.name = name
        self.options = options
        self.chip: Chip | None = None
        self.inputs: LineRequest | None = None
        self.outputs: LineRequest | None = None
        self._by_key: dict[str, tuple[LineRequest, Line, str]] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self._closed = False

    # --- lifecycle ---------------------------------------------------------------------------

    async def init(self) -> None:
        """Open the chip and request the lines (inputs with no edge watched yet).

        Raises ``ComponentError`` naming the chip or line and what to do."""
        o = self.options
        consumer = f"edge-runtime:{self.name}"
        try:
            self.chip = await open_chip(o)
            if o.inputs:
                config = LineConfig(bias=o.bias, active_low=o.active_low,
                                    debounce_us=o.debounce_us)
                self.inputs = self.chip.request([s.line for s in o.inputs], config, consumer)
                self._index(self.inputs, o.inputs)
            if o.outputs:
                config = LineConfig(output=True, active_low=o.active_low,
                                    initial_value=o.initial_value)
                self.outputs = self.chip.request([s.line for s in o.outputs], config, consumer)
                self._index(self.outputs, o.outputs)
        except GpioError as exc:
            await self._release()
            raise ComponentError(str(exc)) from None

    def _index(self, request: LineRequest, specs: Sequence[LineSpec]) -> None:
        for spec, line in zip(specs, request.lines, strict=True):
            label = spec.alias or line.name
            for key in {str(line.offset), line.name, spec.alias} - {""}:
                self._by_key.setdefault(key.lower(), (request, line, label))

    async def close(self) -> None:
        """Release the lines and the chip; idempotent."""
        self._closed = True
        await self._release()

    async def _release(self) -> None:
        chip, self.chip = self.chip, None
        for request in (self.inputs, self.outputs):
            if request is not None:
                request.release()
        self.inputs = self.outputs = None
        if chip is not None:
            await chip.close()

    def _check_open(self) -> None:
        if self._closed or self.chip is None:
            state = "closed" if self._closed else "not initialised"
            raise BindingError(f"binding {self.name} is {state}")

    # --- output ------------------------------------------------------------------------------

    def operations(self) -> Sequence[str]:
        """``get``, and with output lines ``set`` and ``pulse``."""
        return ("get", "set", "pulse") if self.options.outputs else ("get",)

    async def invoke(
        self,
        operation: str,
        data: bytes,  # noqa: ARG002 - the contract's signature; GPIO reads only the metadata
        metadata: Mapping[str, str],
    ) -> BindingResponse | None:
        """See the module docs; raises :class:`UnsupportedOperationError` or
        :class:`InvokeError`."""
        self._check_open()
        if operation not in self.operations():
            raise UnsupportedOperationError(
                f"binding {self.name} does not support operation {operation!r};"
                f" supported: {', '.join(self.operations())}"
            )
        md = {k.lower(): v.strip() for k, v in metadata.items()}
        request, line, label = self._line(md.get("line", ""))
        try:
            if operation == "get":
                value = request.get(line.offset)
                body = {"line": line.offset, "name": label, "value": value}
                return BindingResponse(json.dumps(body).encode(), {"value": str(value)})
            if request is not self.outputs:
                raise InvokeError(f"binding {self.name}: line {line.offset} is an input;"
                                  f" {operation} drives output lines only")
            lock = self._locks.get(line.offset)
            if lock is None:  # one per output line, made on first use
                lock = self._locks[line.offset] = asyncio.Lock()
            if operation == "set":
                value = self._value(md, required=True)
                async with lock:
                    request.set(line.offset, value)
                return None
            value, duration_s = self._value(md, required=False), self._duration(md)
            async with lock:
                request.set(line.offset, value)
                try:
                    await asyncio.sleep(duration_s)
                finally:
                    request.set(line.offset, 1 - value)
        except GpioError as exc:
            raise InvokeError(f"binding {self.name}: {exc}") from None
        return None

    def _line(self, key: str) -> tuple[LineRequest, Line, str]:
        if not key:
            raise InvokeError(f"binding {self.name}: the metadata line is required")
        found = self._by_key.get(key.lower())
        if found is None:
            known = ", ".join(sorted({label or str(ln.offset) for _, ln, label
                                      in self._by_key.values()}))
            raise InvokeError(f"binding {self.name}: no line {key!r}; its lines: {known}")
        return found

    def _value(self, md: Mapping[str, str], *, required: bool) -> int:
        text = md.get("value", "")
        if not text:
            if required:
                raise InvokeError(f"binding {self.name}: the metadata value is required (1 or 0)")
            return 1
        try:
            return 1 if parse_bool(text) else 0
        except ValueError:
            raise InvokeError(f"binding {self.name}: value {text!r} is not 1 or 0") from None

    def _duration(self, md: Mapping[str, str]) -> float:
        text = md.get("durationms", "")
        try:
            ms = float(text)
        except ValueError:
            ms = -1.0
        if not 0 < ms <= MAX_PULSE_MS:
            raise InvokeError(f"binding {self.name}: pulse needs the metadata durationMs,"
                              f" from 1 to {MAX_PULSE_MS} (got {text!r})")
        return ms / 1000


class GpioBinding(GpioOutputs):
    """A ``bindings.gpio`` component with input lines: an input and output binding."""

    def __init__(self, name: str, options: GpioOptions) -> None:
        super().__init__(name, options)
        self._pending: deque[EdgeEvent] = deque()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        self._reading_fd: int | None = None
        self._last_seq = 0
        self._labels: dict[int, str] = {}

    async def init(self) -> None:
        """See :meth:`GpioOutputs.init`."""
        await super().init()
        assert self.inputs is not None
        self._labels = {line.offset: spec.alias or line.name
                        for spec, line in zip(self.options.inputs, self.inputs.lines, strict=True)}

    async def start(self, handler: InputHandler) -> None:
        """Watch the edges and hand each event to ``handler``; raises :class:`BindingError`
        when already started, closed, or when the chip refuses."""
        self._check_open()
        if self._pump is not None:
            raise BindingError(f"binding {self.name}: input already started")
        assert self.inputs is not None
        try:
            self.inputs.watch(self.options.edge)
        except GpioError as exc:
            raise BindingError(f"binding {self.name}: {exc}") from None
        self._stopping.clear()
        self._last_seq = 0
        self._resume()
        self._pump = asyncio.create_task(self._run(handler), name=f"gpio-events-{self.name}")

    async def stop(self) -> None:
        """Stop watching; hand over every event read before, then return. Idempotent."""
        pump = self._pump
        if pump is None:
            return
        self._stopping.set()
        self._pause()
        if self.inputs is not None:
            try:
                self._drain()
                self.inputs.watch("none")
                self._drain()
            except GpioError as exc:
                log.error("binding %s: stopping the edge watch: %s", self.name, exc)  # noqa: TRY400 - the message is the whole story
        self._wake.set()
        try:
            await pump
        finally:
            self._pump = None
            if self._pending:
                self._lost(len(self._pending), "stopped before they were stored")
                self._pending.clear()

    async def close(self) -> None:
        """Stop reading, then release everything; idempotent."""
        await self.stop()
        await super().close()

    # --- reading -----------------------------------------------------------------------------

    def _resume(self) -> None:
        if self._reading_fd is None and self.inputs is not None:
            fd = self.inputs.fileno()
            asyncio.get_running_loop().add_reader(fd, self._readable)
            self._reading_fd = fd

    def _pause(self) -> None:
        if self._reading_fd is not None:
            asyncio.get_running_loop().remove_reader(self._reading_fd)
            self._reading_fd = None

    def _readable(self) -> None:
        assert self.inputs is not None
        try:
            self._take(self.inputs.read_events())
        except GpioError as exc:
            self._pause()
            log.error("binding %s: reading GPIO events failed, not reading any more: %s",  # noqa: TRY400 - the message is the whole story
                      self.name, exc)

    def _drain(self) -> None:
        assert self.inputs is not None
        while self.inputs.has_events():
            self._take(self.inputs.read_events())

    def _take(self, events: list[EdgeEvent]) -> None:
        for event in events:
            if self._last_seq and event.seq > self._last_seq + 1:
                self._lost(event.seq - self._last_seq - 1, "the kernel's event buffer was full")
            self._last_seq = event.seq
            self._pending.append(event)
        if len(self._pending) >= HIGH_WATER:
            self._pause()
        self._wake.set()

    def _lost(self, count: int, why: str) -> None:
        GPIO_EVENTS_LOST.labels(self.name).inc(count)
        log.error("binding %s: %d GPIO edge event(s) lost: %s", self.name, count, why)

    async def _run(self, handler: InputHandler) -> None:
        while True:
            if not self._pending:
                if self._stopping.is_set():
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            event = self._pending.popleft()
            if not self._stopping.is_set() and len(self._pending) < HIGH_WATER // 2:
                self._resume()
            await self._deliver(handler, event)

    async def _deliver(self, handler: InputHandler, event: EdgeEvent) -> None:
        edge = "rising" if event.rising else "falling"
        name = self._labels.get(event.offset, "")
        body = json.dumps({"line": event.offset, "name": name, "edge": edge,
                           "value": int(event.rising), "timestampNs": event.timestamp_ns,
                           "seq": event.seq}, separators=(",", ":")).encode()
        metadata = {"line": str(event.offset), "name": name, "edge": edge}
        refused = await store(handler, body, metadata, stopping=self._stopping)
        if refused is not None:
            self._lost(1, f"line {event.offset} seq {event.seq} was not stored: {refused}")


@declare_metadata(GpioMetadata)
def create(ctx: ComponentContext) -> GpioOutputs:
    """The ``bindings.gpio`` factory: a :class:`GpioBinding` when there are input lines,
    else a :class:`GpioOutputs`. Raises ``MetadataError`` (``file:line``)."""
    options = parse(ctx)
    cls = GpioBinding if options.inputs else GpioOutputs
    return cls(ctx.manifest.name, options)
