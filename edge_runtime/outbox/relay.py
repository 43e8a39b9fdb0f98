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

The fast lane (``fast_lane=True``: a far side whose ack means the message is kept, e.g. an
MQTT broker at QoS 1). While the relay is caught up (it has sent everything committed, no
append through the table is pending, it has not failed, the far side is connected, the window
has room and there is no ``drainRateLimit``) an append is handed to it in memory
(:meth:`Relay.offer`) and sent at once, while the append's unit waits in the commit window.
The append returns at its commit or when every message was acknowledged, whichever is first;
rows acknowledged before the unit runs are never written (no page written, no page deleted:
most of the publisher's flash writes, when the far side answers within the commit window).
Rows written anyway (the ack came later) are deleted with the batched deletes. The drain's
cursor moves past the messages sent in memory, so reading the table never sends them again;
anything else (a failure, a backlog, a full window) closes the lane and every append goes
through the table until the relay has caught up. After a failure the relay waits until every
unit of a message it took in memory has run (each unacknowledged row is then committed) before
it reads the table again from the start: such messages are resent (duplicates, never a loss).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from edge_runtime.observability.metrics import OUTBOX_DELIVERED, OUTBOX_DROPPED, OUTBOX_RESENDS
from edge_runtime.outbox.store import Handover, Outbox, Row

log = logging.getLogger(__name__)

FILLING_RETRY_S = 0.02
# The fast lane takes an append only while at most window/LANE_SHARE sends are in flight
# (8 of the default 100).
LANE_SHARE = 12

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
        ack_delay_s: float = 1.0, fast_lane: bool = False,
        connected: Callable[[], bool] | None = None,
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
        # The fast lane (see the module docstring).
        self._connected = connected
        self._lane_open = False
        self._fast: deque[tuple[Handover, int]] = deque()  # taken in memory, not yet sent
        self._hands: set[Handover] = set()  # taken in memory, their unit not yet run
        self._kick = asyncio.Event()
        # While caught up the drain waits on this one future (resolved by offer, close or a
        # failure): three tasks per message on the events showed in the CPU per message.
        self._waiter: asyncio.Future[None] | None = None
        self._window: _Window | None = None
        self._ack_s: float | None = None  # how long acks of messages sent from memory take
        if fast_lane and rate_limit is None:
            outbox.lane = self

    def offer(self, hand: Handover) -> bool:
        """Take ``hand``'s messages in memory and send them at once, if caught up (see the
        module docstring); False: they go through the table."""
        window = self._window
        if not self._lane_open or window is None or self._failed.is_set():
            return False
        n = len(hand.items)
        # Not while more than a few sends are in flight (publishers outpace the broker's
        # acks): then the table's batched path costs less CPU per message (measured with the
        # whole window open to the lane: 158 against 107 us per single HTTP publish at 100
        # concurrent publishers, docs/performance.md); the lane is for the rates where acks
        # keep up, where it saves the writes.
        if ((self._connected is not None and not self._connected())
                or window.used + len(self._fast) + n > max(1, window.size // LANE_SHARE)):
            self._lane_open = False
            return False
        self._fast.extend((hand, i) for i in range(n))
        self._hands.add(hand)
        hand.offered_at = asyncio.get_running_loop().time()
        self._kick.set()
        self._wake()
        return True

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def quick(self, within_s: float) -> bool:
        """Whether the far side's acks of messages sent from memory came within ``within_s``
        lately (a moving average; True before the first)."""
        return self._ack_s is None or self._ack_s < within_s

    def close(self) -> None:
        """An append went through the table: take nothing in memory until it was read."""
        self._lane_open = False
        self._wake()

    def committed(self, hand: Handover) -> None:
        """``hand``'s unit ran: delete (in the next batch) the rows it wrote whose message
        was acknowledged already (those acknowledged later are deleted as they are)."""
        if hand not in self._hands:
            return
        self._hands.discard(hand)
        written = hand.written or frozenset()
        for i, acked in enumerate(hand.acked):
            if acked and hand.first + i in written:
                self._done(hand.row(i))

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
        self._window = window
        cursor = 0
        tokens, last = float(self.window), time.monotonic()
        outbox = self.outbox
        try:
            while not self._failed.is_set():
                self._kick.clear()
                batch: list[tuple[Row, Handover | None, int]]
                if self._fast:
                    batch = [(hand.row(i), hand, i) for hand, i in self._fast]
                    self._fast.clear()
                elif self._lane_open:
                    # Caught up: rows written meanwhile are fast-lane rows already sent.
                    outbox.appended.clear()
                    await self._idle_caught_up()
                    continue
                else:
                    outbox.appended.clear()
                    quiet = outbox.table_units == 0
                    rows = await outbox.claim(cursor, self.batch)
                    if not rows:
                        # Caught up: nothing committed is unsent and no append through the
                        # table is pending (one queued meanwhile would have closed the lane).
                        if (outbox.lane is self and quiet and outbox.table_units == 0
                                and not self._failed.is_set()):
                            self._lane_open = True
                        await self._idle()
                        continue
                    batch = [(row, None, 0) for row in rows]
                for row, hand, i in batch:
                    cursor = max(cursor, row.seq)
                    if row.expired:
                        self._expired.inc()
                        log.warning("outbox %s: message %d expired before delivery; dropped",
                                    outbox.relay, row.seq)
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
                    fut.add_done_callback(
                        functools.partial(self._settled, row, window, inflight, hand, i))
        finally:
            self._lane_open = False
            self._window = None
            # Messages taken in memory and not sent: their units commit them (not acked).
            self._fast.clear()
            if inflight:
                await asyncio.gather(*inflight, return_exceptions=True)
            # Every message taken in memory and not acknowledged is in the table once its
            # unit ran (units run in sequence order): wait for them before the next drain
            # reads the table from the start, and so that the delivered ones written anyway
            # are deleted with the flush below.
            units = [h.unit for h in self._hands if h.unit is not None]
            if units:
                await asyncio.gather(*units, return_exceptions=True)
            await self._flush_acks()

    async def _send_in_task(self, row: Row) -> asyncio.Future[None]:
        return asyncio.ensure_future(self._send(row))

    def _settled(self, row: Row, window: _Window, inflight: set[asyncio.Future[None]],
                 hand: Handover | None, i: int, fut: asyncio.Future[None]) -> None:
        inflight.discard(fut)
        window.release()
        if fut.cancelled():
            self._lane_open = False
            self._failed.set()
            self._wake()
        elif (exc := fut.exception()) is not None:
            self._fail(row, exc)
        else:
            self._delivered.inc()
            if hand is None:
                self._done(row)
                return
            took = asyncio.get_running_loop().time() - hand.offered_at
            self._ack_s = took if self._ack_s is None else 0.9 * self._ack_s + 0.1 * took
            hand.ack(i)  # its row is not written if the unit has not run yet
            if hand.written is not None and row.seq in hand.written:
                self._done(row)  # written before the ack came: delete it

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
        self._lane_open = False
        self._failed.set()
        self._wake()

    async def _idle_caught_up(self) -> None:
        """Wait for an offer, the lane closing or a failure (or a second)."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiter = waiter
        timer = loop.call_later(1.0, self._wake)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    async def _idle(self) -> None:
        """Wait for new rows (or a second, to look at TTLs and failures again)."""
        waiter = asyncio.ensure_future(self.outbox.appended.wait())
        failed = asyncio.ensure_future(self._failed.wait())
        kick = asyncio.ensure_future(self._kick.wait())
        try:
            await asyncio.wait([waiter, failed, kick], timeout=1.0,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            failed.cancel()
            kick.cancel()

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
