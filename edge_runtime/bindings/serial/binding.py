"""``bindings.serial`` (ours): frames read from a serial port become input events; ``write``
sends bytes to it.

Reading: the port's file descriptor is on the event loop (``loop.add_reader``, non-blocking
reads; no thread per port). Each chunk goes through the framing's decoder
(``framing.py``); complete frames wait in a bounded queue and one task hands them to the
runtime's handler one at a time, in order, each committed to the inbox before the next. A
frame that is oversized, truncated, not valid text, beyond the queue's bound, or refused by the
inbox is dropped: counted in ``edge_runtime_serial_frames_dropped{reason}`` and logged (the
first of each reason at once, then a summary at most every 10 s, so garbage on the line cannot
flood the log). Nothing here raises into the loop: a bad frame never stops the binding.

Event: the frame bytes (as UTF-8 text when ``encoding`` names a codec), metadata ``port`` and
``seq`` (frames emitted by this binding since the process started).

Hot-plug: ``init`` tries the port once and, when it is missing, keeps trying every
``reconnectInterval`` in the background (the sidecar starts either way). When an open port
fails (the USB adapter is unplugged: end-of-file or ``EIO``), the binding logs it, counts it,
drops the unfinished frame (``truncated``), shows ``connected: false`` in the metadata and the
``edge_runtime_serial_connected`` gauge, and opens the same path again as soon as it exists,
then reads on. A ``/dev/serial/by-id/...`` link names the same adapter whatever ``ttyUSB<n>``
it gets back.

Output operation ``write``: the data as bytes (request metadata ``encoding`` ``raw``, ``text``
or ``base64``: ``payload.py``). It returns once every byte is in the driver, or fails (not
connected, no room within ``writeTimeout``, an I/O error). Writes never interleave.

Concurrency: every method runs on the loop that called :meth:`SerialBinding.init`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Mapping, Sequence

from edge_runtime.bindings.contract import (
    BindingError,
    BindingResponse,
    InputHandler,
    InvokeError,
    UnsupportedOperationError,
)
from edge_runtime.bindings.serial.framing import Drop, Output, decode_text
from edge_runtime.bindings.serial.metadata import SerialMetadata, SerialSettings, parse
from edge_runtime.bindings.serial.payload import write_payload
from edge_runtime.bindings.serial.port import PortError, PortGoneError, SerialPort, open_port
from edge_runtime.bindings.serial.report import DropReporter
from edge_runtime.bindings.storing import STORE_ATTEMPTS, store
from edge_runtime.config.metadata import declare_metadata
from edge_runtime.observability import metrics as M
from edge_runtime.registry import ComponentContext

__all__ = ["OPERATIONS", "SerialBinding", "create"]

log = logging.getLogger("edge_runtime.bindings.serial")

OPERATIONS = ("write",)
_QUEUE_FRAMES = 10_000  # frames read and not yet committed; beyond: dropped (overflow)
_QUEUE_BYTES = 4 * 1024 * 1024


class SerialBinding:
    """A serial port as an input and output binding; see the module docstring."""

    def __init__(self, name: str, settings: SerialSettings) -> None:
        self.name = name
        self.settings = settings
        self._loop: asyncio.AbstractEventLoop | None = None
        self._port: SerialPort | None = None
        self._decoder = settings.decoder()
        self._handler: InputHandler | None = None
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._wake = asyncio.Event()
        self._stopping = False
        self._stop_event = asyncio.Event()  # the same, for the store's retry pauses
        self._consumer: asyncio.Task[None] | None = None
        self._connector: asyncio.Task[None] | None = None
        self._reading = False
        self._last_rx = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None
        self._write_lock = asyncio.Lock()
        self._write_waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._error = ""
        self.seq = 0
        """Frames emitted since the process started (the ``seq`` of the last event)."""
        self.reporter = DropReporter(name)
        self._frames = M.SERIAL_FRAMES.labels(name)
        self._bytes_in = M.SERIAL_BYTES.labels(name, "in")
        self._bytes_out = M.SERIAL_BYTES.labels(name, "out")
        self._connected = M.SERIAL_CONNECTED.labels(name)
        self._connected.set(0)

    # --- state ---------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether the port is open now."""
        return self._port is not None

    @property
    def status(self) -> dict[str, str]:
        """For ``/v1.0/metadata``: ``connected`` and, while not, ``error``."""
        out = {"connected": str(self.connected).lower(), "port": self.settings.port}
        if not self.connected and self._error:
            out["error"] = self._error
        return out

    # --- lifecycle -----------------------------------------------------------------------

    async def init(self) -> None:
        """Open the port, or start retrying in the background when it is missing."""
        self._check_open()
        self._loop = asyncio.get_running_loop()
        if self._port is not None or self._connector is not None:
            return
        try:
            self._attach(await self._open())
        except PortError as exc:
            self._error = str(exc)
            log.warning("serial %s: %s; trying again every %gs", self.name, exc,
                        self.settings.reconnect_interval)
            self._reconnect()

    async def close(self) -> None:
        """Stop reading, stop retrying, close the port. Idempotent."""
        if self._closed:
            return
        await self.stop()
        self.reporter.flush()
        self._closed = True
        if self._connector is not None:
            self._connector.cancel()
            await asyncio.gather(self._connector, return_exceptions=True)
            self._connector = None
        port, self._port = self._port, None
        if port is not None:
            self._forget(port)
            port.close()
        self._connected.set(0)

    async def start(self, handler: InputHandler) -> None:
        """Hand frames to ``handler`` from now on (once the port is open)."""
        self._check_open()
        if self._handler is not None:
            raise BindingError(f"binding {self.name}: input already started")
        self._handler = handler
        self._stopping = False
        self._stop_event.clear()
        self._consumer = asyncio.create_task(self._consume(), name=f"serial[{self.name}]")
        if self._port is not None:
            self._start_reader(self._port)

    async def stop(self) -> None:
        """Stop reading; frames already read are committed first. Idempotent."""
        self._stop_reader()
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            self._stopping = True
            self._stop_event.set()
            self._wake.set()
            try:
                await asyncio.shield(consumer)
            except asyncio.CancelledError:
                consumer.cancel()
                await asyncio.gather(consumer, return_exceptions=True)
                self._drop_queue("the binding was stopped before they were committed")
                raise
            finally:
                self._handler = None

    # --- the port ------------------------------------------------------------------------

    async def _open(self) -> SerialPort:
        loop = asyncio.get_running_loop()
        opening = loop.run_in_executor(None, open_port, self.settings)
        try:
            return await asyncio.shield(opening)
        except asyncio.CancelledError:
            opening.add_done_callback(_close_if_opened)  # it may still succeed in its thread
            raise

    def _attach(self, port: SerialPort) -> None:
        self._port = port
        self._error = ""
        self._connected.set(1)
        if self._handler is not None and not self._stopping:
            self._start_reader(port)

    def _reconnect(self) -> None:
        if self._closed or (self._connector is not None and not self._connector.done()):
            return
        self._connector = asyncio.create_task(self._retry_open(),
                                              name=f"serial[{self.name}] reconnect")

    async def _retry_open(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.settings.reconnect_interval)
            try:
                port = await self._open()
            except PortError as exc:
                if str(exc) != self._error:
                    log.warning("serial %s: %s; trying again every %gs", self.name, exc,
                                self.settings.reconnect_interval)
                self._error = str(exc)
                continue
            self._attach(port)
            log.info("serial %s: %s is open again; reading on", self.name, self.settings.port)
            return

    def _lost(self, reason: str) -> None:
        """The open port failed: close it, drop the unfinished frame, retry in the back."""
        port, self._port = self._port, None
        if port is None:
            return
        self._forget(port)
        port.close()
        self._take(self._decoder.reset())
        self._error = reason
        self._connected.set(0)
        M.SERIAL_DISCONNECTS.labels(self.name).inc()
        log.warning("serial %s: %s; trying again every %gs", self.name, reason,
                    self.settings.reconnect_interval)
        self._reconnect()

    def _forget(self, port: SerialPort) -> None:
        """Take ``port``'s descriptor off the loop before it is closed."""
        self._stop_reader(port)
        waiter, self._write_waiter = self._write_waiter, None
        if waiter is not None:
            assert self._loop is not None
            self._loop.remove_writer(port.fd)
            if not waiter.done():
                waiter.set_exception(PortGoneError(self._error or f"{port.path} went away"))

    # --- reading -------------------------------------------------------------------------

    def _start_reader(self, port: SerialPort) -> None:
        if not self._reading:
            assert self._loop is not None
            self._loop.add_reader(port.fd, self._on_readable)
            self._reading = True

    def _stop_reader(self, port: SerialPort | None = None) -> None:
        port = port or self._port
        if self._reading and port is not None and self._loop is not None:
            self._loop.remove_reader(port.fd)
        self._reading = False
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _on_readable(self) -> None:
        port = self._port
        if port is None:
            return
        try:
            data = port.read()
        except PortGoneError as exc:
            self._lost(str(exc))
            return
        if not data:
            return
        self._bytes_in.inc(len(data))
        self._last_rx = time.monotonic()
        self._take(self._decoder.feed(data))
        idle = self.settings.idle_timeout
        if idle > 0 and self._idle_timer is None and self._decoder.pending:
            assert self._loop is not None
            self._idle_timer = self._loop.call_later(idle, self._on_idle)

    def _on_idle(self) -> None:
        """The idle timer: the line has been quiet for ``idleTimeout`` (or re-arm)."""
        self._idle_timer = None
        if not self._decoder.pending:
            return
        idle = self.settings.idle_timeout
        quiet = time.monotonic() - self._last_rx
        assert self._loop is not None
        if quiet + 0.001 < idle:
            self._idle_timer = self._loop.call_later(idle - quiet, self._on_idle)
            return
        self._take(self._decoder.idle())

    def _take(self, items: Output) -> None:
        text = self.settings.text
        for item in items:
            if isinstance(item, bytes) and text is not None:
                item = decode_text(item, text)
            if isinstance(item, Drop):
                self.reporter.report(item.reason, item.size, item.detail)
            elif (len(self._queue) >= _QUEUE_FRAMES
                  or self._queued_bytes + len(item) > _QUEUE_BYTES):
                self.reporter.report("overflow", len(item), "a frame read while the inbox was"
                                     f" {len(self._queue)} frames behind")
            else:
                self._queue.append(item)
                self._queued_bytes += len(item)
                self._wake.set()

    async def _consume(self) -> None:
        """Hand queued frames to the handler, in order, one committed before the next."""
        meta = {"port": self.settings.port}
        while True:
            while not self._queue:
                if self._stopping:
                    return
                self._wake.clear()
                await self._wake.wait()
            frame = self._queue.popleft()
            self._queued_bytes -= len(frame)
            handler = self._handler
            if handler is None:  # stopped meanwhile (never normally: stop drains first)
                self.reporter.report("not_stored", len(frame), "a frame read while stopping")
                continue
            self.seq += 1
            refused = await store(handler, frame, {**meta, "seq": str(self.seq)},
                                  stopping=self._stop_event)
            if refused is not None:
                self.reporter.report("not_stored", len(frame),
                                     f"a frame of {len(frame)} bytes the inbox refused "
                                     f"{STORE_ATTEMPTS} times: {refused}")
            else:
                self._frames.inc()

    def _drop_queue(self, why: str) -> None:
        while self._queue:
            frame = self._queue.popleft()
            self.reporter.report("not_stored", len(frame), f"a frame read earlier: {why}")
        self._queued_bytes = 0

    # --- writing -------------------------------------------------------------------------

    def operations(self) -> Sequence[str]:
        """``write``."""
        return OPERATIONS

    async def invoke(
        self, operation: str, data: bytes, metadata: Mapping[str, str]
    ) -> BindingResponse | None:
        """``write`` (see the module docs); returns nothing (HTTP 204).

        Raises :class:`UnsupportedOperationError` or :class:`InvokeError`.
        """
        self._check_open()
        if operation != "write":
            raise UnsupportedOperationError(
                f"binding {self.name} does not support operation {operation!r};"
                f" supported: {', '.join(OPERATIONS)}"
            )
        try:
            payload = write_payload(data, metadata, self.settings.text)
        except ValueError as exc:
            raise InvokeError(f"binding {self.name}: {exc}") from None
        async with self._write_lock:
            await self._write(payload)
        return None

    async def _write(self, payload: bytes) -> None:
        view, total = memoryview(payload), len(payload)
        timeout = self.settings.write_timeout
        try:
            async with asyncio.timeout(timeout):
                while view:
                    port = self._port
                    if port is None:
                        raise InvokeError(
                            f"binding {self.name}: {self.settings.port} is not connected"
                            f" ({self._error or 'not open yet'}); it is tried again every"
                            f" {self.settings.reconnect_interval:g}s"
                        )
                    n = port.write_some(view)
                    if n:
                        self._bytes_out.inc(n)
                        view = view[n:]
                    else:
                        await self._writable(port)
        except PortGoneError as exc:
            self._lost(str(exc))
            raise InvokeError(f"binding {self.name}: {exc}") from None
        except TimeoutError:
            raise InvokeError(f"binding {self.name}: {total - len(view)} of {total} bytes"
                              f" written to {self.settings.port} in {timeout:g}s"
                              " (writeTimeout)") from None

    async def _writable(self, port: SerialPort) -> None:
        assert self._loop is not None
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._write_waiter = waiter
        self._loop.add_writer(port.fd, _resolve, waiter)
        try:
            await waiter
        finally:
            if self._write_waiter is waiter:
                self._write_waiter = None
                self._loop.remove_writer(port.fd)

    def _check_open(self) -> None:
        if self._closed:
            raise BindingError(f"binding {self.name} is closed")


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _close_if_opened(opening: asyncio.Future[SerialPort]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        opening.result().close()


@declare_metadata(SerialMetadata)
def create(ctx: ComponentContext) -> SerialBinding:
    """The ``bindings.serial`` factory; raises ``MetadataError`` (``file:line``)."""
    return SerialBinding(ctx.manifest.name, parse(ctx.manifest, ctx.metadata))
