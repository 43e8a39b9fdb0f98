"""A first-come-first-served window of in-flight publishes whose size can change.

Like :class:`asyncio.Semaphore`, but :meth:`Window.resize` may shrink or grow it while slots
are held: an MQTT 5 broker announces its *Receive Maximum* in every CONNACK (mosquitto: 20), and
a client sending more unacknowledged QoS 1/2 publishes than that is disconnected (MQTT 5
§4.9). Waiters are served in arrival order, so publishes leave in the order they were made.

Concurrency: event-loop only (no locks); cancellation-safe (a cancelled waiter never keeps a
slot).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator

__all__ = ["Window"]


class Window:
    """At most ``capacity`` holders at a time; see the module docstring."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"a window needs at least one slot, got {capacity}")
        self._capacity = capacity
        self._used = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def capacity(self) -> int:
        """How many holders are allowed now."""
        return self._capacity

    @property
    def used(self) -> int:
        """How many slots are held now (may exceed ``capacity`` just after a shrink)."""
        return self._used

    def resize(self, capacity: int) -> None:
        """Allow ``capacity`` holders from now on (at least 1); holders over it keep their slot."""
        self._capacity = max(1, capacity)
        self._wake()

    async def acquire(self) -> None:
        """Wait for a free slot and take it (in arrival order)."""
        if self._used < self._capacity and not self._waiters:
            self._used += 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut  # _wake hands the slot over (counted) before resolving
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # the slot was handed over just as we were cancelled
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(fut)
            raise

    def release(self) -> None:
        """Give a slot back; the next waiter (if any) gets it."""
        self._used -= 1
        self._wake()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """``async with window.slot():`` holds one slot for the block."""
        await self.acquire()
        try:
            yield
        finally:
            self.release()

    def _wake(self) -> None:
        while self._waiters and self._used < self._capacity:
            fut = self._waiters.popleft()
            if not fut.done():
                self._used += 1
                fut.set_result(None)
