"""Delivery from the inbox to the app: one task per subscription, retries, dead letters.

What it delivers for is a :class:`Target`: a pub/sub subscription (``Subscription``), or an input
binding (``runtime/binding_inputs.py``); below, "subscription" means either.
:class:`Deliverer` runs one task per target key, named ``inbox-deliver:<key>``. Each
reads its rows in arrival order and calls the runtime's :data:`Deliver` callable (which
routes, posts over HTTP or gRPC and maps the reply to an :class:`Outcome`), at most
``concurrency`` rows at a time (a number, or a function of the target: the runtime gives a
pubsub's ``deliveryConcurrency``): with the default 1, delivery is ordered per subscription;
with N, the N oldest rows are in progress (delivering or waiting for a retry) at once.

The ordered loop does not wait for the database per event: it reads up to
``PREFETCH_ROWS`` rows ahead (at most ``PREFETCH_BYTES`` past the rows it needs), and a
delivered row's delete is queued to one task that commits each batch of deletes in one unit,
without an fsync; the loop skips rows whose delete is pending, so the live loop never delivers
a row twice, and a crash before the delete commits means one redelivery (at least once). It waits
while the ``ready`` event is clear (the app is not up, or unhealthy).

The fast lane (``fast_lane=True``, the runtime's app deliverer; not bulk subscriptions, not
streams or input bindings): :meth:`Inbox.add <edge_runtime.inbox.store.Inbox.add>` offers each
arrival to its subscription's lane, which delivers it from memory, in arrival order, behind
the events queued before it and any rows stored before it (it waits for rows only queued for
insert; when rows wait in the inbox, for a retry or for delivery, the arrival takes the stored
path instead, and so do the lane's queued events, before it). The ack needs the app's success
or the event's commit; an event the app did not take is stored and settled as any row's
delivery (with ``concurrency`` 1 the events queued behind a retried one are stored behind it
and left to the loop). Reads skip the rows of events the lane holds, as they skip rows whose
delete is pending.

Outcomes:

* SUCCESS: the row is deleted.
* DROP: counted, logged, dead-lettered to the subscription's topic when it has one, deleted.
* RETRY (or the callable raised): the failure is recorded in the row (attempt count and next
  attempt time, so a restart resumes the schedule) and retried after the subscription's
  :class:`RetryPolicy` delay. When the retries are spent: published to the dead-letter topic
  through the runtime's :data:`DeadLetter` callable when the subscription has one, else (or
  when that publish fails) parked in the local ``deadletters`` table with the reason.
* :class:`PoisonEventError` raised by the callable: never deliverable (not a CloudEvent ...):
  dead-lettered as above at once, without retries.
* :class:`DropEventError` raised by the callable: dropped as a success, like DROP, counted
  under its ``reason`` label (e.g. ``unrouted``: no rule matched and there is no default).
* :class:`RetryEventError` (or an ``AppChannelError``) raised by the callable: a RETRY with
  its message as the error, logged without a traceback (any other exception is logged as a
  bug, with one, and retried too).
* An expired row (its ``expiration`` passed) is not delivered: counted, logged, dead-lettered
  to the topic when there is one, deleted.

Bulk subscriptions (``sub.bulk.enabled``, contract §3.3), when the runtime passes a
:data:`DeliverBulk` callable: the worker takes the leading due rows, up to
``bulk.max_messages``, waiting at most ``bulk.max_await_ms`` from the first for the batch to
fill, and hands them to that callable in one call (one batch in flight per subscription; a row
waiting for its retry holds the rows behind it, so order is kept as with ``concurrency`` 1).
Each row then gets its own outcome, and follows exactly the single-event path above.

Every drop and dead letter is counted (``edge_runtime_inbox_*``) and logged at WARNING.
Failures of the inbox itself leave the row in place; it is tried again after a pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from edge_runtime.appchannel import AppChannelError, Outcome
from edge_runtime.errors import StorageFullError
from edge_runtime.inbox.retry import DEFAULT_RETRY, RetryPolicy
from edge_runtime.inbox.store import Arrival, Inbox, InboxError, InboxRow
from edge_runtime.observability.metrics import (
    INBOX_DEADLETTERED,
    INBOX_DELIVERED,
    INBOX_DROPPED,
    INBOX_EXPIRED,
    INBOX_RETRIES,
)
from edge_runtime.subscriptions.model import BulkSettings

if TYPE_CHECKING:
    from prometheus_client import Counter

__all__ = [
    "DeadLetter",
    "Deliver",
    "DeliverBulk",
    "Deliverer",
    "DropEventError",
    "PoisonEventError",
    "RetryEventError",
    "RetryLookup",
    "Target",
]

log = logging.getLogger(__name__)



class Target(Protocol):
    """What the :class:`Deliverer` needs to know about what it delivers for (a pub/sub
    subscription, an input binding)."""

    @property
    def key(self) -> str:
        """The inbox key its rows are stored under."""
        ...

    @property
    def component(self) -> str:
        """The component whose inbound retry policy applies (the :data:`RetryLookup` key)."""
        ...

    @property
    def dead_letter_topic(self) -> str | None:
        """The topic (on the component, a pubsub) that gets what cannot be delivered."""
        ...

    @property
    def bulk(self) -> BulkSettings:
        """Whether rows are delivered in batches, and the batch's bounds."""
        ...


T = TypeVar("T", bound=Target)

Deliver = Callable[[T, InboxRow], Awaitable[Outcome]]
"""Deliver one row to the app and say what happened. Raising counts as RETRY (logged), except
:class:`PoisonEventError`."""

DeliverBulk = Callable[[T, Sequence[InboxRow]], Awaitable[Mapping[int, Outcome | Exception]]]
"""Deliver a batch of rows of a bulk subscription; the result maps each row's ``seq`` to its
outcome, or to the exception a :data:`Deliver` callable would have raised for it
(:class:`PoisonEventError`, :class:`DropEventError`, ``AppChannelError`` ...). A row left out,
or the callable raising, counts as RETRY."""

DeadLetter = Callable[[T, InboxRow], Awaitable[None]]
"""Publish the row's original bytes to ``sub.dead_letter_topic`` on ``sub.component``
(through the durable outbox); return once that is durable. Raising parks the row locally."""

RetryLookup = Callable[[str], RetryPolicy]
"""The inbound retry policy of a component (by name: :attr:`Target.component`)."""


class PoisonEventError(Exception):
    """Raised by a :data:`Deliver` callable for an event that no retry can deliver."""


class RetryEventError(Exception):
    """Raised by a :data:`Deliver` callable for a failure to try again later (the message is
    recorded as the row's error)."""


class DropEventError(Exception):
    """Raised by a :data:`Deliver` callable to drop an event as a success (dead-lettered when
    the subscription has a topic); ``label`` names the reason in metrics."""

    def __init__(self, message: str, label: str) -> None:
        super().__init__(message)
        self.label = label


# Rows read ahead per subscription (single-event delivery), and the bytes that may hold.
PREFETCH_ROWS = 64
PREFETCH_BYTES = 256 * 1024
# Events the fast lane holds in memory per subscription beyond those being delivered: MQTT
# delivers in bursts (a publisher's batch arrives at once), and arrivals wait here while rows
# stored before them commit (up to a commit window: 1,000 msg/s x 100 ms is 100 events).
FAST_QUEUE = 256


@dataclass(slots=True)
class _Worker(Generic[T]):
    sub: T
    task: asyncio.Task[None] | None = None
    inflight: dict[int, asyncio.Task[None]] = field(default_factory=dict)
    batch_since: float | None = None  # loop time the pending bulk batch's first row was seen
    # The subscription's oldest rows as last read, in order, less those delivered since (a
    # row's delete may not have committed yet: it is never read back while it is pending).
    # Rows added later come after them, so this stays the head of the queue until this
    # worker changes a row in another way (a retry, a drop, a dead letter, a failure): then
    # it is dropped (None) and read again.
    ahead: list[InboxRow] | None = None
    # The inbox's insert mark (Inbox.insert_mark) when a read found every row of the
    # subscription (None: it did not, or an insert was pending): while it is unchanged and
    # ``ahead`` is empty, no stored row waits, and the fast lane may take an arrival.
    clear_mark: int | None = None
    # Fast-lane events queued or being delivered, by provisional seq; the queue of those not
    # started, the tasks delivering them, and whether one was not taken (ordered delivery:
    # the rest are stored, behind it).
    fast: dict[int, Arrival] = field(default_factory=dict)
    queue: deque[Arrival] = field(default_factory=deque)
    runners: int = 0
    lane_failed: bool = False
    lane: _Lane[T] | None = None  # this worker's lane, as given the inbox


class Deliverer(Generic[T]):
    """Delivers the inbox's rows to the app. Owned by the runtime: :meth:`start`, then
    :meth:`update` when the subscription list changes, :meth:`stop` at shutdown.

    Rows of a subscription that is not (or no longer) in the list stay in the inbox until it
    comes back.
    """

    def __init__(
        self,
        inbox: Inbox,
        deliver: Deliver[T],
        *,
        ready: asyncio.Event,
        dead_letter: DeadLetter[T] | None = None,
        deliver_bulk: DeliverBulk[T] | None = None,
        retry: RetryLookup | None = None,
        concurrency: int | Callable[[T], int] = 1,
        poll_interval_s: float = 5.0,
        error_pause_s: float = 1.0,
        fast_lane: bool = False,
    ) -> None:
        self.inbox = inbox
        self._fast_lane = fast_lane
        self._slots = itertools.count(1)  # keys of fast-lane tasks in ``inflight`` (negated)
        self._deliver = deliver
        self._ready = ready
        self._dead_letter = dead_letter
        self._bulk = deliver_bulk
        self._retry: RetryLookup = retry or (lambda _name: DEFAULT_RETRY)
        if callable(concurrency):
            self._concurrency = concurrency
        else:
            fixed = concurrency

            def same(_sub: T) -> int:
                return fixed

            self._concurrency = same
        self._poll = poll_interval_s
        self._pause = error_pause_s
        self._workers: dict[str, _Worker[T]] = {}
        # Rows delivered whose delete has not committed yet, per subscription: ordered
        # delivery moves on without waiting for that commit (a crash before it commits means
        # one redelivery, which at-least-once allows). The deletes are queued and committed
        # together, one unit of work per batch, by one task at a time.
        self._completing: dict[str, set[int]] = {}
        self._to_delete: list[InboxRow] = []
        self._flusher: asyncio.Task[None] | None = None
        self._delivered: dict[str, Counter] = {}  # INBOX_DELIVERED children by subscription

    @property
    def keys(self) -> list[str]:
        """The subscription keys being delivered."""
        return list(self._workers)

    async def start(self, subs: Iterable[T]) -> None:
        """Start delivering for ``subs`` (the same as :meth:`update`)."""
        await self.update(subs)

    async def update(self, subs: Iterable[T], deadline_s: float = 5.0) -> None:
        """Deliver for exactly ``subs``: start new keys, take changed routes, stop removed
        keys (their in-flight deliveries get ``deadline_s`` to finish)."""
        wanted = {s.key: s for s in subs}
        gone = [w for k, w in self._workers.items() if k not in wanted]
        for key, sub in wanted.items():
            worker = self._workers.get(key)
            if worker is not None:
                worker.sub = sub
                continue
            worker = _Worker[T](sub)
            worker.task = asyncio.create_task(self._loop(worker), name=f"inbox-deliver:{key}")
            self._workers[key] = worker
            if self._fast_lane:
                worker.lane = _Lane(self, worker)
                self.inbox.set_lane(key, worker.lane)
        for worker in gone:
            del self._workers[worker.sub.key]
        await self._stop_workers(gone, deadline_s)

    async def stop(self, deadline_s: float = 5.0) -> None:
        """Stop taking rows, let in-flight deliveries finish within ``deadline_s``, cancel the
        rest (their rows stay and are delivered again later: at-least-once)."""
        workers = list(self._workers.values())
        self._workers.clear()
        await self._stop_workers(workers, deadline_s)
        if self._flusher is not None:
            await asyncio.wait([self._flusher], timeout=deadline_s)

    async def _stop_workers(self, workers: list[_Worker[T]], deadline_s: float) -> None:
        for w in workers:
            if w.lane is not None and self.inbox.lane(w.sub.key) is w.lane:
                self.inbox.set_lane(w.sub.key, None)
            self._spill(w)  # queued arrivals: stored (their ack waits for the commit)
        loops = [w.task for w in workers if w.task is not None]
        for task in loops:
            task.cancel()
        # a batch's task is registered under each of its rows: once each here
        inflight = list(dict.fromkeys(t for w in workers for t in w.inflight.values()))
        if inflight:
            _done, pending = await asyncio.wait(inflight, timeout=deadline_s)
            for task in pending:
                log.warning("delivery %s did not finish within %.1fs; cancelled (it will be"
                            " delivered again)", task.get_name(), deadline_s)
                task.cancel()
        for task in [*loops, *inflight]:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # --- the per-subscription loop -----------------------------------------------------------

    async def _loop(self, w: _Worker[T]) -> None:
        key = w.sub.key
        wake = self.inbox.waiter(key)
        while True:
            if not self._ready.is_set():
                await self._ready.wait()
            wake.clear()
            try:
                if self._bulk is not None and w.sub.bulk.enabled:
                    w.ahead = None
                    timeout = await self._take_batch(w)
                else:
                    w.batch_since = None
                    timeout = await self._take_rows(w)
            except InboxError as exc:
                log.warning("inbox: reading %s failed: %s", key, exc)
                timeout = self._pause
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(timeout, 0.001)):
                    await wake.wait()

    async def _take_rows(self, w: _Worker[T]) -> float:
        """Start delivering the due rows there is room for; the time until one may be due.

        The rows considered are the ``concurrency`` oldest (less those being deleted), as a
        fresh read would give; they come from the rows read ahead (:attr:`_Worker.ahead`),
        read again only when fewer than that are left."""
        key = w.sub.key
        timeout = self._poll
        limit = max(1, self._concurrency(w.sub))
        free = limit - len(w.inflight)
        if free <= 0:
            return timeout
        if w.ahead is None or len(w.ahead) < limit:
            mark = self.inbox.insert_mark(key)
            asked = max(PREFETCH_ROWS, limit)
            w.ahead = await self.inbox.head(
                key, asked, skip=self._skip(w), max_bytes=PREFETCH_BYTES, min_rows=limit,
            )
            # Every row read (fewer than asked, within the byte budget): none is left behind.
            whole = len(w.ahead) < asked and sum(r.size for r in w.ahead) < PREFETCH_BYTES
            w.clear_mark = mark if whole else None
            if not w.ahead:
                self._dispatch(w)  # fast-lane arrivals that waited for these rows
                free = limit - len(w.inflight)
        for row in w.ahead[:limit]:
            if free == 0:
                break
            if row.seq in w.inflight:
                continue
            wait = self.inbox.due_in(row)
            if wait > 0:
                timeout = min(timeout, wait)
                continue
            w.inflight[row.seq] = asyncio.create_task(
                self._handle(w, row), name=f"inbox-deliver:{key}:{row.seq}"
            )
            free -= 1
        return timeout

    def _skip(self, w: _Worker[T]) -> Collection[int]:
        """Rows a read leaves out: those being deleted, and those the fast lane is handling
        (stored when the app was slow or failed)."""
        deleting = self._completing.get(w.sub.key, ())
        fast = [a.seq for a in w.fast.values() if a.seq is not None]
        return {*deleting, *fast} if fast else deleting

    # --- the fast lane (Inbox.add) -------------------------------------------------------------

    def _offer(self, w: _Worker[T], arrival: Arrival) -> bool:
        """Take ``arrival`` to deliver from memory, behind the stored rows and the fast-lane
        events before it (at most ``FAST_QUEUE`` queued); see :meth:`Inbox.add`."""
        sub = w.sub
        if (self._workers.get(sub.key) is not w or not self._ready.is_set()
                or (self._bulk is not None and sub.bulk.enabled)):
            return False
        if w.lane_failed or len(w.queue) >= FAST_QUEUE:
            return False
        if w.ahead is None or w.ahead:
            # Rows wait (being delivered, or for a retry), or the loop must read again: this
            # one is stored behind them. Rows only queued for insert (not committed, so not
            # read yet) are waited for instead: they will be there within a commit.
            return False
        arrival.barrier = self.inbox.insert_count(sub.key)
        w.fast[arrival.row.seq] = arrival
        w.queue.append(arrival)
        if not self._clear(w, arrival.barrier) or any(
                a.started is not None and a.stored is not None and not a.delivered
                for a in w.fast.values()):
            # Stored rows come first (the loop delivers them), or the app is slow (an event
            # outlived its window): this one's window starts now, not when it is posted, so
            # its ack waits no more than that and a commit; it is still delivered from
            # memory, in order (a row written meanwhile is deleted after).
            arrival.block()
        self._dispatch(w)
        if not w.runners:  # the loop starts the lane later: its window runs from now
            arrival.block()
        return True

    def _clear(self, w: _Worker[T], barrier: int) -> bool:
        """Whether every row stored before ``barrier`` (:meth:`Inbox.insert_count`) was read
        and delivered (or is being deleted): then the lane may deliver what came after."""
        return (w.ahead is not None and not w.ahead and w.clear_mark is not None
                and w.clear_mark >= barrier)

    def _dispatch(self, w: _Worker[T]) -> None:
        """Start fast-lane tasks for the queued arrivals, as slots allow, once the first of
        them waits for no stored row."""
        limit = max(1, self._concurrency(w.sub))
        while (w.queue and w.runners < limit and len(w.inflight) < limit
               and (w.lane_failed or self._clear(w, w.queue[0].barrier))):
            w.runners += 1
            slot = -next(self._slots)  # in ``inflight``, so the loop counts it
            w.inflight[slot] = asyncio.create_task(
                self._run_lane(w, slot), name=f"inbox-deliver:{w.sub.key}:fast")

    def _spill(self, w: _Worker[T]) -> None:
        """The lane's queued (not started) arrivals leave it: stored, in order, and counted
        as stored rows, so the loop delivers them from their rows (see :meth:`Lane.spill`)."""
        if not w.queue:
            return
        for arrival in w.queue:
            arrival.refuse()
            self.inbox.store(arrival, counted=True)
            w.fast.pop(arrival.row.seq, None)
        w.queue.clear()
        w.ahead = None

    async def _run_lane(self, w: _Worker[T], slot: int) -> None:
        """Deliver the queued fast-lane events while the first waits for no stored row. With
        ``concurrency`` 1, once one is not taken by the app the rest are stored (in order)
        and left to the loop, behind it."""
        key = w.sub.key
        try:
            while w.queue and (w.lane_failed or self._clear(w, w.queue[0].barrier)):
                arrival = w.queue.popleft()
                try:
                    if w.lane_failed:
                        await self._fall_back(w, arrival)
                    else:
                        await self._fast(w, arrival)
                except Exception:  # a bug must not stop the lane: the event is stored instead
                    log.exception("inbox: the fast lane failed on event %s of %s",
                                  _describe(arrival.row), key)
        except asyncio.CancelledError:
            self._spill(w)
            raise
        finally:
            w.inflight.pop(slot, None)
            w.runners -= 1
            if w.runners == 0 and not w.queue:
                w.lane_failed = False
            for waiting in w.queue:  # left for the loop to start again: windows run from now
                waiting.block()
            self.inbox.waiter(key).set()

    async def _fall_back(self, w: _Worker[T], arrival: Arrival) -> None:
        """Store a queued fast-lane event not posted (one before it was not taken): the loop
        delivers it from its row, in order."""
        try:
            arrival.refuse()
            with contextlib.suppress(InboxError, StorageFullError):
                await self.inbox.store(arrival)  # failed: not acknowledged; the broker has it
        finally:
            w.fast.pop(arrival.row.seq, None)
            w.ahead = None

    async def _fast(self, w: _Worker[T], arrival: Arrival) -> None:
        """Deliver a fast-lane event; on success it needs no row (one stored meanwhile is
        deleted), otherwise its row is stored and settled as any delivery's."""
        sub, row = w.sub, arrival.row
        took = keep = False
        try:
            expired = self.inbox.expired(row)  # while it waited in the queue
            result: Outcome | Exception = Outcome.DROP
            if not expired:
                arrival.begin()
                result = await self._attempt(sub, row)
            if result is Outcome.SUCCESS:
                took = True
                stored = arrival.accept()
                self._count_success(sub.key)
                if stored is not None:  # its insert was queued: delete the row it wrote,
                    # once committed (without waiting: the lane goes on; reads skip the row)
                    keep = True
                    if stored.done():
                        self._fast_stored(w, arrival, stored)
                    else:
                        stored.add_done_callback(partial(self._fast_stored, w, arrival))
                return
            arrival.refuse()
            stored = self.inbox.store(arrival)
            retried = not (expired or result is Outcome.DROP
                           or isinstance(result, (PoisonEventError, DropEventError)))
            if self._concurrency(sub) <= 1 and retried:
                # It will be retried from its row: those behind it wait for it, from rows.
                w.lane_failed = True
                for later in w.queue:  # their rows go behind this one's, in arrival order
                    later.refuse()
                    self.inbox.store(later)
            try:
                written = await stored
            except (InboxError, StorageFullError) as exc:
                log.warning("inbox: event %s of %s was not taken by the app and could not be"
                            " stored (%s); the broker keeps it", _describe(row), sub.key, exc)
                return
            if written is None:  # cannot happen: refused before it was taken
                return
            await self._guarded(written, self._expire(sub, written) if expired
                                else self._settle(sub, written, result))
        finally:
            arrival.refuse()  # no-op once answered; else (cancelled) the ack waits for a commit
            if not keep:
                w.fast.pop(row.seq, None)
            if not took:
                w.ahead = None

    def _fast_stored(self, w: _Worker[T], arrival: Arrival,
                     stored: asyncio.Future[InboxRow | None]) -> None:
        """The insert of a fast-lane event the app took ended: delete the row it wrote."""
        try:
            if not stored.cancelled() and stored.exception() is None:
                written = stored.result()
                if written is not None:
                    self._complete_later(written)
        finally:
            w.fast.pop(arrival.row.seq, None)

    async def _take_batch(self, w: _Worker[T]) -> float:
        """Start a bulk batch once it is full or has waited ``max_await_ms``; else how long
        to wait. One batch is in flight at a time (its end wakes the loop)."""
        if w.inflight:
            return self._poll
        bulk = w.sub.bulk
        limit = max(1, bulk.max_messages)
        rows = await self.inbox.head(w.sub.key, limit, skip=self._skip(w))
        due: list[InboxRow] = []
        blocked = self._poll
        for row in rows:
            wait = self.inbox.due_in(row)
            if wait > 0:  # waiting for its retry: it holds the rows behind it
                blocked = min(blocked, wait)
                break
            due.append(row)
        if not due:
            w.batch_since = None
            return blocked
        now = asyncio.get_running_loop().time()
        if w.batch_since is None:
            w.batch_since = now
        left = w.batch_since + max(0, bulk.max_await_ms) / 1000 - now
        if len(due) < limit and left > 0:  # room for more (or a row soon due), time to wait
            return min(left, blocked)
        w.batch_since = None
        task = asyncio.create_task(
            self._handle_batch(w, due), name=f"inbox-deliver:{w.sub.key}:bulk:{due[0].seq}"
        )
        for row in due:
            w.inflight[row.seq] = task
        return self._poll

    async def _handle(self, w: _Worker[T], row: InboxRow) -> None:
        try:
            await self._guarded(row, self._process(w.sub, row))
        finally:
            w.inflight.pop(row.seq, None)
            # Still read ahead: not delivered (retried, dropped, parked, or it failed), so the
            # rows read may be stale.
            if w.ahead is not None and any(r.seq == row.seq for r in w.ahead):
                w.ahead = None
            self.inbox.waiter(row.sub_key).set()

    async def _handle_batch(self, w: _Worker[T], rows: Sequence[InboxRow]) -> None:
        sub = w.sub
        try:
            live = []
            for row in rows:
                if self.inbox.expired(row):
                    await self._guarded(row, self._expire(sub, row))
                else:
                    live.append(row)
            if not live:
                return
            assert self._bulk is not None
            try:
                results = await self._bulk(sub, live)
            except Exception as exc:  # noqa: BLE001 - settled per row below: a RETRY, logged
                results = dict.fromkeys((r.seq for r in live), exc)
            for row in live:
                result = results.get(row.seq)
                if result is None:
                    result = AppChannelError("the bulk delivery gave no outcome for it")
                await self._guarded(row, self._settle(sub, row, result))
        finally:
            for row in rows:
                w.inflight.pop(row.seq, None)
            self.inbox.waiter(sub.key).set()

    def _complete_later(self, row: InboxRow) -> None:
        """Queue a delivered row's delete; the loop skips the row until it has committed."""
        self._completing.setdefault(row.sub_key, set()).add(row.seq)
        self._to_delete.append(row)
        worker = self._workers.get(row.sub_key)
        ahead = worker.ahead if worker is not None else None
        if ahead:
            if ahead[0].seq == row.seq:
                del ahead[0]  # in order: the common case
            else:
                ahead[:] = [r for r in ahead if r.seq != row.seq]
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_deletes(), name="inbox-deletes")

    async def _flush_deletes(self) -> None:
        """Commit the queued deletes, each batch in one unit of work, until none are left."""
        while self._to_delete:
            rows, self._to_delete = self._to_delete, []
            failed = False
            try:
                await self.inbox.complete_many(rows)
            except (InboxError, StorageFullError) as exc:
                failed = True
                log.warning("inbox: deleting %d delivered events failed (%s); they will be"
                            " delivered again", len(rows), exc)
            finally:
                for row in rows:
                    self._completing.get(row.sub_key, set()).discard(row.seq)
            if failed:  # read the queues again: the rows are still there, ahead of the rest
                for key in {r.sub_key for r in rows}:
                    worker = self._workers.get(key)
                    if worker is not None:
                        worker.ahead = None
                    self.inbox.waiter(key).set()

    async def _guarded(self, row: InboxRow, work: Awaitable[None]) -> None:
        """Run ``work`` for ``row``; a failure leaves the row in place, after a pause."""
        try:
            await work
        except (InboxError, StorageFullError) as exc:
            log.warning("inbox: event %d of %s stays for now: %s", row.seq, row.sub_key, exc)
            await asyncio.sleep(self._pause)
        except Exception:  # a bug must not stop delivery (logged with traceback); row stays
            log.exception("inbox: handling event %d of %s failed", row.seq, row.sub_key)
            await asyncio.sleep(self._pause)

    async def _process(self, sub: T, row: InboxRow) -> None:
        if self.inbox.expired(row):
            await self._expire(sub, row)
            return
        await self._settle(sub, row, await self._attempt(sub, row))

    async def _attempt(self, sub: T, row: InboxRow) -> Outcome | Exception:
        """One delivery of ``row`` within the inbound timeout; its outcome or failure."""
        timeout = self._retry(sub.component).timeout_s
        try:
            work = self._deliver(sub, row)
            return await (asyncio.wait_for(work, timeout) if timeout else work)
        except TimeoutError:  # the Resiliency inbound timeout: a retry, as Dapr counts it
            return RetryEventError(f"the app did not answer within {timeout:g} s")
        except Exception as exc:  # noqa: BLE001 - every failure is settled (and logged) later
            return exc

    def _count_success(self, key: str) -> None:
        counter = self._delivered.get(key)
        if counter is None:
            counter = INBOX_DELIVERED.labels(subscription=key, outcome=str(Outcome.SUCCESS))
            self._delivered[key] = counter
        counter.inc()

    async def _expire(self, sub: T, row: InboxRow) -> None:
        INBOX_EXPIRED.labels(subscription=sub.key).inc()
        log.warning("inbox: event %s of %s expired before delivery; dropped",
                    _describe(row), sub.key)
        await self._drop(sub, row, "expired before delivery")

    async def _settle(self, sub: T, row: InboxRow, result: Outcome | Exception) -> None:
        """Act on a delivery's outcome, or on the exception the delivery raised."""
        key = sub.key
        error = "the app asked to retry"
        if isinstance(result, PoisonEventError):
            INBOX_DELIVERED.labels(subscription=key, outcome="poison").inc()
            await self._give_up(sub, row, f"undeliverable: {result}", row.attempts + 1,
                                str(result))
            return
        if isinstance(result, DropEventError):
            INBOX_DROPPED.labels(subscription=key, reason=result.label).inc()
            log.warning("inbox: event %s of %s dropped: %s", _describe(row), key, result)
            await self._drop(sub, row, str(result))
            return
        if isinstance(result, (AppChannelError, RetryEventError)):
            outcome, error = Outcome.RETRY, str(result)
        elif isinstance(result, Exception):  # any failure of the callable is a retry (logged)
            log.error("inbox: delivering event %s of %s failed", _describe(row), key,
                      exc_info=result)
            outcome, error = Outcome.RETRY, f"{type(result).__name__}: {result}"
        else:
            outcome = result
        if outcome is Outcome.SUCCESS:
            self._count_success(key)
            self._complete_later(row)
            return
        INBOX_DELIVERED.labels(subscription=key, outcome=str(outcome)).inc()
        if outcome is Outcome.DROP:
            INBOX_DROPPED.labels(subscription=key, reason="app_drop").inc()
            log.warning("inbox: the app dropped event %s of %s", _describe(row), key)
            await self._drop(sub, row, "dropped by the app")
        else:
            await self._failed(sub, row, error)

    async def _failed(self, sub: T, row: InboxRow, error: str) -> None:
        failures = row.attempts + 1
        policy = self._retry(sub.component)
        if policy.exhausted(failures):
            reason = (f"retries exhausted: {failures} attempts"
                      f" (retry policy {policy.name or policy.kind})")
            await self._give_up(sub, row, reason, failures, error)
            return
        delay = policy.delay(failures)
        INBOX_RETRIES.labels(subscription=sub.key).inc()
        log.info("inbox: event %s of %s failed (%s); attempt %d in %.2fs",
                 _describe(row), sub.key, error, failures + 1, delay)
        await self.inbox.reschedule(row, attempts=failures, delay_s=delay, error=error)

    async def _drop(self, sub: T, row: InboxRow, reason: str) -> None:
        """Delete the row, publishing it to the dead-letter topic first when there is one."""
        if sub.dead_letter_topic:
            await self._give_up(sub, row, reason, row.attempts, row.last_error)
        else:
            await self.inbox.complete(row)

    async def _give_up(
        self, sub: T, row: InboxRow, reason: str, attempts: int, error: str | None
    ) -> None:
        """Dead-letter the row: to the topic when set (and publishable), else locally."""
        key = sub.key
        if sub.dead_letter_topic:
            if self._dead_letter is None:
                reason += "; no dead-letter publisher is configured"
            else:
                try:
                    await self._dead_letter(sub, row)
                except Exception as exc:  # noqa: BLE001 - any failure parks the row locally
                    topic = sub.dead_letter_topic
                    reason += f"; publishing to dead-letter topic {topic!r} failed: {exc}"
                else:
                    INBOX_DEADLETTERED.labels(subscription=key, where="topic").inc()
                    log.warning("inbox: event %s of %s sent to dead-letter topic %r (%s)",
                                _describe(row), key, sub.dead_letter_topic, reason)
                    await self.inbox.complete(row)
                    return
        dead_id = await self.inbox.park(row, reason=reason, error=error, attempts=attempts)
        INBOX_DEADLETTERED.labels(subscription=key, where="local").inc()
        log.warning("inbox: event %s of %s parked as dead letter %s (%s); see `edge-runtime"
                    " deadletters list`", _describe(row), key, dead_id, reason)


class _Lane(Generic[T]):
    """A worker's fast lane as the inbox sees it (:class:`~edge_runtime.inbox.store.Lane`)."""

    __slots__ = ("_deliverer", "_worker")

    def __init__(self, deliverer: Deliverer[T], worker: _Worker[T]) -> None:
        self._deliverer = deliverer
        self._worker = worker

    def offer(self, arrival: Arrival) -> bool:
        return self._deliverer._offer(self._worker, arrival)

    def spill(self) -> None:
        self._deliverer._spill(self._worker)


def _describe(row: InboxRow) -> str:
    return f"{row.seq} (id {row.event_id!r})" if row.event_id else str(row.seq)
