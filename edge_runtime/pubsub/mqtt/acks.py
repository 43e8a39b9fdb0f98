"""One future per outstanding broker call, keyed by its MQTT message id.

The waiter registers its future right after the library call returned the id, and removes it
in a ``finally`` whatever happens. An ack that arrives *during* the library call (before the id
is known to the waiter; paho may fire ``on_publish`` from inside ``publish()``) is kept by
:meth:`AckWaiters.resolve` and handed to the waiter when it registers. A connection loss fails
every waiting future at once (:meth:`AckWaiters.fail_all`), so no wait outlives the connection,
and each wait is bounded by ``timeout``.

Concurrency: event-loop only.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from edge_runtime.pubsub import NotConnectedError, PublishError

__all__ = ["AckWaiters"]

_Check = Callable[[Any], BaseException | None]


class AckWaiters:
    """The table of outstanding calls; see the module docstring.

    One future per call and no timer of its own: the deadlines (all ``timeout`` from their
    start, so in order) wait in a queue swept by a single timer at the oldest one. At
    thousands of publishes a second the timer, second future and callbacks per message were a
    tenth of the relay's time.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._pending: dict[int, tuple[asyncio.Future[Any], _Check | None]] = {}
        self._deadlines: deque[tuple[float, int, asyncio.Future[Any], str]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._early: dict[int, Any] | None = None  # acks seen during the current call
        self._kept: dict[int, Any] = {}  # acks seen during the last call, for its waiter

    def __len__(self) -> int:
        return sum(1 for fut, _ in self._pending.values() if not fut.done())

    def begin_call(self) -> None:
        """Call right before the library call that sends a packet: acks it fires during the
        call are kept for the waiter. Pair with :meth:`end_call` in a ``finally``."""
        self._early = {}

    def end_call(self) -> None:
        """Call right after the library call (see :meth:`begin_call`)."""
        self._kept, self._early = self._early or {}, None

    @contextlib.contextmanager
    def calling(self) -> Iterator[None]:
        """``with acks.calling():`` around the library call (begin_call/end_call)."""
        self.begin_call()
        try:
            yield
        finally:
            self.end_call()

    def resolve(self, mid: int, value: Any) -> None:
        """The broker acknowledged ``mid`` with ``value``; unknown ids are ignored."""
        entry = self._pending.pop(mid, None)
        if entry is not None:
            _settle(entry[0], entry[1], value)
        elif self._early is not None:
            self._early[mid] = value

    def _register(self, mid: int, what: str, check: _Check | None) -> asyncio.Future[Any]:
        """The future of ``mid``'s ack: resolved at once when the ack came during the call,
        failed after ``timeout`` seconds. Raises :class:`PublishError` when ``mid`` is
        already in use."""
        old = self._pending.get(mid)
        if old is not None and not old[0].done():
            raise PublishError(f"message id {mid} is still in use: too many outstanding calls")
        loop = asyncio.get_running_loop()
        ack: asyncio.Future[Any] = loop.create_future()
        if mid in self._kept:
            _settle(ack, check, self._kept.pop(mid))
            return ack
        self._pending[mid] = (ack, check)
        deadlines = self._deadlines
        while deadlines and deadlines[0][2].done():  # settled ones, oldest first
            self._forget(deadlines.popleft())
        deadlines.append((loop.time() + self.timeout, mid, ack, what))
        if self._timer is None:
            self._timer = loop.call_at(deadlines[0][0], self._sweep)
        return ack

    def _forget(self, item: tuple[float, int, asyncio.Future[Any], str]) -> None:
        entry = self._pending.get(item[1])
        if entry is not None and entry[0] is item[2]:
            del self._pending[item[1]]

    def _sweep(self) -> None:
        """Fail the calls whose time is up; come back at the next deadline."""
        self._timer = None
        deadlines = self._deadlines
        loop = asyncio.get_running_loop()
        now = loop.time()
        while deadlines:
            item = deadlines[0]
            if not item[2].done() and item[0] > now:
                break
            deadlines.popleft()
            self._forget(item)
            if not item[2].done():
                item[2].set_exception(
                    PublishError(f"no {item[3]} from the broker in {self.timeout:g}s"))
        if deadlines:
            self._timer = loop.call_at(deadlines[0][0], self._sweep)

    async def wait(self, mid: int, what: str) -> Any:
        """The ack value for ``mid``.

        Raises :class:`NotConnectedError` when the connection is lost first and
        :class:`PublishError` after ``timeout`` seconds (``what`` names the ack) or when ``mid``
        is already waited for (more outstanding calls than message ids).
        """
        return await self._register(mid, what, None)

    def track(
        self, mid: int, what: str, check: Callable[[Any], BaseException | None],
    ) -> asyncio.Future[None]:
        """A future for ``mid`` that a callback can follow instead of a waiting task.

        It resolves to ``None`` once the ack arrives and ``check(value)`` finds nothing wrong,
        and fails with what ``check`` returns, or as :meth:`wait` raises. Cancelling it
        forgets ``mid``.
        """
        try:
            return self._register(mid, what, check)
        except PublishError as exc:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done.set_exception(exc)
            return done

    def fail_all(self, message: str) -> None:
        """Fail every waiting call with :class:`NotConnectedError` (the connection is gone)."""
        self._kept = {}
        pending, self._pending = self._pending, {}
        self._deadlines.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for fut, _ in pending.values():
            if not fut.done():
                fut.set_exception(NotConnectedError(message))


def _settle(fut: asyncio.Future[Any], check: _Check | None, value: Any) -> None:
    if fut.done():
        return
    if check is None:
        fut.set_result(value)
    elif (bad := check(value)) is not None:
        fut.set_exception(bad)
    else:
        fut.set_result(None)
