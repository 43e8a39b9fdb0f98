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
from collections.abc import Callable, Iterator
from typing import Any

from edge_runtime.pubsub import NotConnectedError, PublishError

__all__ = ["AckWaiters"]


class AckWaiters:
    """The table of outstanding calls; see the module docstring."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._early: dict[int, Any] | None = None  # acks seen during the current call
        self._kept: dict[int, Any] = {}  # acks seen during the last call, for its waiter

    def __len__(self) -> int:
        return len(self._pending)

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
        fut = self._pending.get(mid)
        if fut is not None:
            if not fut.done():
                fut.set_result(value)
        elif self._early is not None:
            self._early[mid] = value

    def _register(self, mid: int, what: str) -> asyncio.Future[Any]:
        """The future of ``mid``'s ack: resolved at once when the ack came during the call,
        failed after ``timeout`` seconds, forgotten once done (resolved, failed or cancelled).
        Raises :class:`PublishError` when ``mid`` is already in use."""
        if mid in self._pending:
            raise PublishError(f"message id {mid} is still in use: too many outstanding calls")
        loop = asyncio.get_running_loop()
        ack: asyncio.Future[Any] = loop.create_future()
        self._pending[mid] = ack
        if mid in self._kept:
            ack.set_result(self._kept.pop(mid))
        # A plain timer rather than asyncio.timeout(): a third of the cost per message.
        timer = loop.call_later(self.timeout, _expire, ack, what, self.timeout)

        def forget(f: asyncio.Future[Any]) -> None:
            timer.cancel()
            if self._pending.get(mid) is f:
                del self._pending[mid]

        ack.add_done_callback(forget)
        return ack

    async def wait(self, mid: int, what: str) -> Any:
        """The ack value for ``mid``.

        Raises :class:`NotConnectedError` when the connection is lost first and
        :class:`PublishError` after ``timeout`` seconds (``what`` names the ack) or when ``mid``
        is already waited for (more outstanding calls than message ids).
        """
        return await self._register(mid, what)

    def track(
        self, mid: int, what: str, check: Callable[[Any], BaseException | None],
    ) -> asyncio.Future[None]:
        """A future for ``mid`` that a callback can follow instead of a waiting task.

        It resolves to ``None`` once the ack arrives and ``check(value)`` finds nothing wrong,
        and fails with what ``check`` returns, or as :meth:`wait` raises. Cancelling it
        forgets ``mid``.
        """
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        try:
            ack = self._register(mid, what)
        except PublishError as exc:
            done.set_exception(exc)
            return done

        def settle(f: asyncio.Future[Any]) -> None:
            if done.done():
                return
            if f.cancelled():
                done.cancel()
            elif (exc := f.exception()) is not None:
                done.set_exception(exc)
            elif (bad := check(f.result())) is not None:
                done.set_exception(bad)
            else:
                done.set_result(None)

        def forget(d: asyncio.Future[None]) -> None:
            if d.cancelled() and not ack.done():
                ack.cancel()

        ack.add_done_callback(settle)
        done.add_done_callback(forget)
        return done

    def fail_all(self, message: str) -> None:
        """Fail every waiting call with :class:`NotConnectedError` (the connection is gone)."""
        self._kept = {}
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(NotConnectedError(message))


def _expire(fut: asyncio.Future[Any], what: str, timeout: float) -> None:
    if not fut.done():
        fut.set_exception(PublishError(f"no {what} from the broker in {timeout:g}s"))
