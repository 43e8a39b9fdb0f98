"""A relay drains one outbox table into its far side (a broker, the cloud), in order.

It sends rows in sequence order with at most ``window`` unacknowledged at once, deletes a row
only after the far side acknowledged it, and on any failure (disconnect, refusal) waits for all
in-flight sends to settle, waits until the far side is ready again, and resends from the oldest
row not yet acknowledged. Expired rows are dropped and counted, never sent. An optional
``drainRateLimit`` caps messages per second, so a backlog after a long outage does not flood
the broker or a metered link.

Deletes are batched: acknowledged rows are deleted once ``batch`` of them are waiting, or
``ack_delay_s`` after the first of them was acknowledged, and when the relay stops or a drain
ends, or at once while the outbox is half full or more (publishers are refused with 429 when
it is full, until the delete commits). Each delete is a commit that rewrites the pages it
empties; one per burst instead of one per message or two is most of what the publisher writes
to flash at a steady rate. A delete
lost to a crash only means those messages are sent again (at least once), never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable

from edge_runtime.observability.metrics import OUTBOX_DELIVERED, OUTBOX_DROPPED, OUTBOX_RESENDS
from edge_runtime.outbox.store import Outbox, Row

log = logging.getLogger(__name__)

FILLING_RETRY_S = 0.02

Send = Callable[[Row], Awaitable[None]]
"""Deliver one row; return when the far side acknowledged it, raise when it did not."""

StartSend = Callable[[Row], Awaitable["asyncio.Future[None]"]]
"""Hand one row to the far side now; a future that resolves on its ack (fails when it was not
acknowledged). The pipelined form of :data:`Send`: no task per message."""


class Relay:
    """Owns one named task that drains ``outbox`` through ``send``."""

    def __init__(
        self, outbox: Outbox, send: Send, wait_ready: Callable[[], Awaitable[None]], *,
        window: int = 100, rate_limit: float | None = None, batch: int = 500,
        retry_delay_s: float = 1.0, start_send: StartSend | None = None,
        ack_delay_s: float = 1.0,
    ) -> None:
        self.outbox = outbox
        self._send = send
        # One sending path: a plain ``send`` runs in a task whose future is followed like the
        # pipelined form's.
        self._start_send: StartSend = start_send or self._send_in_task
        self._wait_ready = wait_ready
        self.window = max(1, window)
        self.rate_limit = rate_limit
        self.batch = batch
        self.retry_delay_s = retry_delay_s
        self._task: asyncio.Task[None] | None = None
        self.ack_delay_s = ack_delay_s
        self._acked: list[Row] = []
        self._ack_timer: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None
        self._failed = asyncio.Event()
        self._delivered = OUTBOX_DELIVERED.labels(outbox.relay)
        self._expired = OUTBOX_DROPPED.labels(outbox.relay, "expired")

    def start(self) -> None:
        """Start draining in the background."""
        self._task = asyncio.create_task(self._run(), name=f"relay:{self.outbox.relay}")

    async def stop(self) -> None:
        """Stop; sends in flight are abandoned (they are resent at the next start)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._flush_acks()
        try:
            await self.outbox.checkpoint()  # TTLs keep their remaining time across a reboot
        except Exception as exc:  # noqa: BLE001 - at worst a TTL restarts after a reboot
            log.warning("outbox %s: could not checkpoint the TTL clock: %s",
                        self.outbox.relay, exc)

    async def _run(self) -> None:
        while True:
            await self._wait_ready()
            try:
                await self._drain()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("relay %s failed; restarting", self.outbox.relay)
            OUTBOX_RESENDS.labels(self.outbox.relay).inc()
            await asyncio.sleep(self.retry_delay_s)

    async def _drain(self) -> None:
        """Send until a failure; returns after every in-flight send settled."""
        window = _Window(self.window)
        inflight: set[asyncio.Future[None]] = set()
        self._failed.clear()
        cursor = 0
        tokens, last = float(self.window), time.monotonic()
        try:
            while not self._failed.is_set():
                self.outbox.appended.clear()
                rows = await self.outbox.claim(cursor, self.batch)
                if not rows:
                    await self._idle()
                    continue
                for row in rows:
                    cursor = row.seq
                    if row.expired:
                        self._expired.inc()
                        log.warning("outbox %s: message %d expired before delivery; dropped",
                                    self.outbox.relay, row.seq)
                        self._done(row)
                        continue
                    if self.rate_limit:
                        tokens, last = await self._throttle(tokens, last)
                    if window.used >= window.size:
                        await window.room()
                    window.used += 1
                    if self._failed.is_set():
                        window.release()
                        break
                    try:
                        fut = await self._start_send(row)
                    except Exception as exc:  # noqa: BLE001 - resend from the oldest
                        window.release()
                        self._fail(row, exc)
                        break
                    inflight.add(fut)
                    fut.add_done_callback(functools.partial(self._settled, row, window, inflight))
        finally:
            if inflight:
                await asyncio.gather(*inflight, return_exceptions=True)
            await self._flush_acks()

    async def _send_in_task(self, row: Row) -> asyncio.Future[None]:
        return asyncio.ensure_future(self._send(row))

    def _settled(self, row: Row, window: _Window, inflight: set[asyncio.Future[None]],
                 fut: asyncio.Future[None]) -> None:
        inflight.discard(fut)
        window.release()
        if fut.cancelled():
            self._failed.set()
        elif (exc := fut.exception()) is not None:
            self._fail(row, exc)
        else:
            self._done(row)
            self._delivered.inc()

    def _done(self, row: Row) -> None:
        """``row`` may be deleted: with the next batch of deletes (see the module docstring).
        Deletes are committed in the background: sending never waits for them."""
        self._acked.append(row)
        if len(self._acked) >= self.batch or self.outbox.filling():
            self._flush_in_background()
        elif self._ack_timer is None:
            self._ack_timer = asyncio.get_running_loop().call_later(
                self.ack_delay_s, self._flush_in_background)

    def _fail(self, row: Row, exc: BaseException) -> None:
        """A send failed: stop sending; the drain restarts from the oldest unacknowledged."""
        if not self._failed.is_set():
            log.info("relay %s: send of message %d failed (%s); will resend",
                     self.outbox.relay, row.seq, exc)
        self._failed.set()

    async def _idle(self) -> None:
        """Wait for new rows (or a second, to look at TTLs and failures again)."""
        waiter = asyncio.ensure_future(self.outbox.appended.wait())
        failed = asyncio.ensure_future(self._failed.wait())
        try:
            await asyncio.wait([waiter, failed], timeout=1.0,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            failed.cancel()

    async def _throttle(self, tokens: float, last: float) -> tuple[float, float]:
        """Token bucket: ``rate_limit`` per second, bursts up to ``window``."""
        rate = self.rate_limit or 1.0
        now = time.monotonic()
        tokens = min(float(self.window), tokens + (now - last) * rate)
        if tokens < 1:
            await asyncio.sleep((1 - tokens) / rate)
            tokens, now = 1.0, time.monotonic()
        return tokens - 1, now

    def _flush_in_background(self) -> None:
        """Start deleting the acknowledged rows unless a delete is already running (the rows
        acknowledged meanwhile go with the next one)."""
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(
                self._flush_acks(), name=f"relay:{self.outbox.relay}:ack")
        elif self._acked and self._ack_timer is None:
            # Try again later rather than leave them waiting for the next ack (soon when the
            # outbox is filling: publishers are refused until the delete commits).
            delay = FILLING_RETRY_S if self.outbox.filling() else self.ack_delay_s
            self._ack_timer = asyncio.get_running_loop().call_later(
                delay, self._flush_in_background)

    async def _flush_acks(self) -> None:
        """Delete every acknowledged row (waiting for a background delete first)."""
        running = self._flushing
        if running is not None and running is not asyncio.current_task():
            await asyncio.gather(running, return_exceptions=True)
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        rows, self._acked = self._acked, []
        if rows:
            try:
                await self.outbox.ack(rows)
            except Exception:
                log.exception("relay %s: deleting %d delivered rows failed; they will be resent",
                              self.outbox.relay, len(rows))


class _Window:
    """Sends in flight, at most ``size``: a counter and an event (``asyncio.Semaphore``'s
    acquire scans its waiters each time, and showed in profiles). One waiter: the drain."""

    __slots__ = ("_room", "size", "used")

    def __init__(self, size: int) -> None:
        self.size = size
        self.used = 0
        self._room = asyncio.Event()

    async def room(self) -> None:
        """Wait until fewer than ``size`` are in flight."""
        while self.used >= self.size:
            self._room.clear()
            await self._room.wait()

    def release(self) -> None:
        self.used -= 1
        if self.used < self.size:
            self._room.set()
