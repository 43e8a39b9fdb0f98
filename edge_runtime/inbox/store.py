"""The durable inbox: incoming events committed, or taken by the app, before the broker's ack
(DESIGN.md §1, §5).

:meth:`Inbox.add` returns only after the event's row is committed (group commit, one fsync per
batch in ``full`` durability), or, when the subscription's fast lane (:class:`Lane`, the
deliverer's) took the event, once the app accepted it, whichever comes first; so the component
may acknowledge the message to the broker as soon as it returns; if it raises, the message
must not be acknowledged. An event the app accepts within the commit window (counted from when
it is posted) is never written: only its dedup id, lazily (:meth:`Database.write_soon`).

Dedup: an event with an id already seen for the same subscription is not stored and ``add``
returns ``False`` (the caller still acknowledges it); a duplicate arriving while the first
copy's commit (or fast delivery) is pending waits for it (and is stored if that one failed).
Ids are kept at most ``seen_ttl_s`` (wall clock) and ``seen_max`` per subscription, pruned by
the maintenance task and, as soon as a subscription passes ``seen_max`` by a tenth, at once
(so the memory they take is bounded).
Events without an id (raw payloads) are at-least-once.

Flash wear (docs/performance.md, the commit window): ids are appended to ``seen_log`` in
arrival order and looked up in memory (:class:`~edge_runtime.inbox.idset.IdSet`, 15-60 bytes
per id, ~3 MiB at the default bound, rebuilt from the log at open), and the backlog counts
live in memory, so an arrival changes only the last pages of ``messages``, of its index and of
the log. New files use 2 KiB pages.

Back-pressure: when the backlog (all subscriptions) would pass ``max_messages`` or
``max_bytes``, ``add`` raises :class:`InboxFullError` and stores nothing: the broker keeps the
unacknowledged message and redelivers it (MQTT: on reconnect), so nothing is lost while the
app catches up. The check reads the trigger-maintained ``backlog`` table (in memory: counted
at open, and again when another process such as the ``deadletters`` command changed the file)
inside the insert's transaction, so it is exact and costs no row count.

Expiry: an ``expiration`` is turned once, on arrival, into remaining milliseconds, kept as a
monotonic deadline plus the boot id. After a reboot, :meth:`Inbox.open` rebases deadlines from
the last monotonic checkpoint (written every maintenance interval and at close), so the time
the device was off does not count, and a clock jump neither expires nor immortalises events.

The delivery side (:mod:`edge_runtime.inbox.deliver`) reads rows with :meth:`head`, then
:meth:`complete`, :meth:`reschedule` or :meth:`park` them. Concurrency: every method may be
awaited by any number of coroutines on the loop that opened the inbox.

Errors: :class:`InboxError` (database failures, cause chained), :class:`InboxFullError`, and
:class:`~edge_runtime.errors.StorageFullError` (disk or budget full) pass out of ``add``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

from edge_runtime.errors import StorageFullError
from edge_runtime.inbox import schema
from edge_runtime.inbox.clock import Clock, SystemClock
from edge_runtime.inbox.idset import IdSet, digest
from edge_runtime.observability.metrics import (
    INBOX_BACKLOG,
    INBOX_BACKLOG_BYTES,
    INBOX_DUPLICATES,
    INBOX_FAST_LANE,
    INBOX_PARKED,
    INBOX_RECEIVED,
    INBOX_REJECTED,
    INBOX_SEEN_PRUNED,
)
from edge_runtime.pubsub import Received
from edge_runtime.support.disk import DiskBudget
from edge_runtime.support.sqlitedb import Database, DBError, Durability, get_meta, set_meta
from edge_runtime.support.sqlmarks import in_list

__all__ = ["Arrival", "Inbox", "InboxError", "InboxFullError", "InboxLimits", "InboxRow", "Lane"]

T = TypeVar("T")
log = logging.getLogger(__name__)

ROW_OVERHEAD = 128  # bytes a row costs beyond its data, metadata and topic
_PRUNE_CHUNK = 2000  # seen ids deleted per unit, so writers interleave with a big prune
_RECLAIM_MIN_BYTES = 1 << 20  # free space worth giving back once the backlog drained
# Page size of a new inbox.db: each commit appends every page it changed to the WAL, and an
# arrival changes ~3 (the ends of messages, of its index and of seen_log), so smaller pages
# write fewer bytes per commit; below 2 KiB a page holds a single ~600-byte event and the
# deletes free a page each (measured, docs/performance.md). Existing files keep theirs.
PAGE_SIZE = 2048
# Pages of WAL between automatic checkpoints (SQLite's default is 1000). Each checkpoint
# writes every page changed since the last one to the file again.
WAL_AUTOCHECKPOINT = 1000
_CHECKPOINT = "mono_checkpoint"
_DELETE_CHUNK = 500  # seqs per DELETE statement (under SQLite's bound-parameter limit)
# How long the dedup ids of events the app took from the fast lane wait in memory before they
# are logged (riding the next commit, or committed together, without an fsync, after this).
SEEN_LINGER_S = 1.0


class InboxError(Exception):
    """The inbox database failed (cause chained)."""


class InboxFullError(InboxError):
    """The backlog is at its limit; the event was not stored (do not acknowledge it)."""


@dataclass(frozen=True, slots=True)
class InboxLimits:
    """Bounds of the inbox (defaults as the outbox's, DESIGN.md §5)."""

    max_messages: int = 1_000_000
    max_bytes: int = 256 * 1024 * 1024
    seen_ttl_s: float = 24 * 3600.0
    seen_max: int = 100_000


@dataclass(frozen=True, slots=True)
class InboxRow:
    """One stored event and its delivery state."""

    seq: int
    sub_key: str
    topic: str
    data: bytes
    metadata: Mapping[str, str]
    event_id: str | None
    size: int
    arrived_ms: int
    ttl_boot: str | None
    ttl_deadline_ms: int | None
    attempts: int
    next_boot: str | None
    next_mono_ms: int | None
    first_attempt_ms: int | None
    last_error: str | None


class Arrival:
    """An event offered to the fast lane on arrival (see :meth:`Inbox.add`): delivered to the
    app from memory while its insert waits.

    ``row`` is the event as it would be stored, with a provisional (negative) ``seq``. The
    lane calls :meth:`accept` when the app took it, or :meth:`refuse` when it did not (and
    then :meth:`Inbox.store` to get the stored row and retry it as any other).
    """

    __slots__ = ("_inbox", "adding", "answer", "barrier", "blocked", "changed", "counted",
                 "delivered", "insert", "key", "remembered", "row", "seq", "started", "stored",
                 "unit")

    def __init__(self, inbox: Inbox, row: InboxRow, key: bytes | None,
                 unit: Callable[[sqlite3.Connection], int | None]) -> None:
        self._inbox = inbox
        self.row = row
        self.key = key  # the dedup digest (None: a raw payload)
        # Read by the writer thread (the insert skips the event's row once it is set); set on
        # the loop before anything else is resolved.
        self.delivered = False
        self.remembered = False  # its dedup id is in memory
        # The stored row's seq: set by the writer thread before its commit, so whoever reads
        # the row on the loop finds it here (and skips it).
        self.seq: int | None = None
        # The insert's outcome once queued: the stored row, or None (skipped: delivered).
        self.stored: asyncio.Future[InboxRow | None] | None = None
        self.answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.unit = unit  # its insert (run on the writer thread)
        self.started: float | None = None  # loop time its delivery began
        self.blocked: float | None = None  # loop time it began waiting for stored rows
        self.barrier = 0  # the lane's: stored rows it must wait for (Inbox.insert_count)
        self.insert: asyncio.Future[int | None] | None = None  # the writer's future
        self.counted = False  # its insert counts in Inbox.insert_mark
        self.changed = asyncio.Event()  # set on every change above (for Inbox.add)
        self.adding: asyncio.Future[None] | None = None  # what its duplicates wait for

    def block(self) -> None:
        """It waits for stored rows before it: its insert is held for the commit window
        from now at most (its ack then waits for the commit)."""
        if self.blocked is None:
            self.blocked = asyncio.get_running_loop().time()
            self.changed.set()

    def begin(self) -> None:
        """Its delivery to the app begins: the app has the commit window from now."""
        self.started = asyncio.get_running_loop().time()
        self.changed.set()

    def accept(self) -> asyncio.Future[InboxRow | None] | None:
        """The app took the event: it needs no row. Returns the insert's future when the
        insert was queued already (a row it wrote must then be deleted), else ``None``: no
        row will ever be written (only its dedup id, lazily)."""
        self.delivered = True
        self._inbox._accepted(self)
        if not self.answer.done():
            self.answer.set_result(True)
        self.changed.set()
        return self.stored

    def taken(self) -> bool:
        """Whether the app took it (:meth:`accept` was called)."""
        return self.delivered

    def refuse(self) -> None:
        """The app did not take it (yet): the event's ack now waits for its commit."""
        if not self.answer.done():
            self.answer.set_result(False)
            self.changed.set()


class Lane(Protocol):
    """A subscription's fast lane (the deliverer's)."""

    def offer(self, arrival: Arrival) -> bool:
        """Take ``arrival`` to deliver from memory (in order, behind what is stored or queued
        before it), or answer ``False``: it then takes the stored path."""
        ...

    def spill(self) -> None:
        """An event of the subscription is being stored (its insert is queued next): give up
        the arrivals queued and not started, storing each (:meth:`Inbox.store` with
        ``counted``), so they are delivered from their rows, before it."""
        ...


class Inbox:
    """``<data_dir>/inbox.db``; :meth:`open` before use, :meth:`close` at shutdown.

    Owns one background task, ``inbox-maintenance`` (prunes dedup ids, checkpoints the
    monotonic clock, refreshes gauges, gives space back after a backlog drained), started by
    :meth:`open` and stopped by :meth:`close`.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        durability: Durability = "full",
        commit_window_ms: float = 0.0,
        disk_budget: DiskBudget | None = None,
        limits: InboxLimits | None = None,
        clock: Clock | None = None,
        maintenance_interval_s: float = 60.0,
    ) -> None:
        self.path = data_dir / schema.FILE_NAME
        self.limits = limits or InboxLimits()
        self.clock: Clock = clock or SystemClock()
        self._interval = maintenance_interval_s
        self.db = Database(
            self.path, name=schema.DB_NAME, migrations=schema.MIGRATIONS,
            durability=durability, commit_window_ms=commit_window_ms, disk_budget=disk_budget,
            page_size=PAGE_SIZE, wal_autocheckpoint=WAL_AUTOCHECKPOINT,
        )
        self._wakers: dict[str, asyncio.Event] = {}
        self._task: asyncio.Task[None] | None = None
        self._ids = IdSet()  # digests of the ids in seen_log
        self._seen: dict[str, int] = {}  # ids in seen_log per subscription
        self._adding: dict[bytes, asyncio.Future[None]] = {}  # ids whose commit is pending
        self._prune_lock = asyncio.Lock()
        self._pruner: asyncio.Task[int] | None = None
        self._data_version = -1  # the write connection's when the backlog was last counted
        # The fast lane (see add): a lane per subscription, the arrivals whose insert is held
        # back, the inserts of rows queued (ever, and not yet committed) per subscription.
        self._lanes: dict[str, Lane] = {}
        self._held: dict[str, list[Arrival]] = {}
        self._inserts: dict[str, int] = {}
        self._inserting: dict[str, int] = {}
        self._generation = 0  # bumped when rows come back from the dead letters
        self._temp_seq = itertools.count(1)
        self._lazy_lock = threading.Lock()
        self._lazy_seen: list[tuple[str, str, int]] | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        """Open (quarantining a corrupt file), migrate, rebase expiries, start maintenance.

        Raises :class:`~edge_runtime.errors.ComponentError` when the file cannot be used.
        """
        await self.db.open()
        await self._guard(self.db.write(self._rebase), "rebase expiries")
        await self._guard(self.db.read(self._load_seen), "read dedup ids")
        await self.refresh_gauges()
        self._task = asyncio.create_task(self._maintenance(), name="inbox-maintenance")

    async def close(self) -> None:
        """Stop maintenance, checkpoint the monotonic clock, close the database. Idempotent."""
        if self._pruner is not None:
            self._pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError, InboxError, StorageFullError):
                await self._pruner
            self._pruner = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            with contextlib.suppress(InboxError, StorageFullError):
                await self._guard(self.db.write(self._checkpoint), "checkpoint")
        await self.db.close()

    def waiter(self, sub_key: str) -> asyncio.Event:
        """An event set whenever a row for ``sub_key`` is added (cleared by its reader)."""
        return self._wakers.setdefault(sub_key, asyncio.Event())

    # --- time --------------------------------------------------------------------------------

    def mono_ms(self) -> int:
        """The clock's monotonic time in ms."""
        return round(self.clock.monotonic() * 1000)

    def wall_ms(self) -> int:
        """The clock's wall time in unix ms."""
        return round(self.clock.wall() * 1000)

    def expired(self, row: InboxRow) -> bool:
        """Whether the row's expiration has passed (rows without one never expire)."""
        if row.ttl_deadline_ms is None or row.ttl_boot != self.clock.boot_id:
            return False  # another boot's deadline is rebased at open; none is left here
        return self.mono_ms() >= row.ttl_deadline_ms

    def due_in(self, row: InboxRow) -> float:
        """Seconds until the row's next attempt (<= 0: due now; a past boot's: due now)."""
        if row.next_mono_ms is None or row.next_boot != self.clock.boot_id:
            return 0.0
        return (row.next_mono_ms - self.mono_ms()) / 1000

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        set_meta(conn, _CHECKPOINT, f"{self.clock.boot_id} {self.mono_ms()}")

    def _rebase(self, conn: sqlite3.Connection) -> None:
        boot, now = self.clock.boot_id, self.mono_ms()
        mark = get_meta(conn, _CHECKPOINT)
        if mark is not None:
            old_boot, _, old_ms = mark.rpartition(" ")
            if old_boot != boot and old_ms.lstrip("-").isdigit():
                conn.execute(
                    "UPDATE messages SET ttl_deadline_ms = ? + MAX(0, ttl_deadline_ms - ?),"
                    " ttl_boot = ? WHERE ttl_boot = ?", (now, int(old_ms), boot, old_boot),
                )
        # Rows of a boot with no checkpoint: what remained on arrival, counted from now.
        conn.execute(
            "UPDATE messages SET ttl_deadline_ms = ? + ttl_ms, ttl_boot = ?"
            " WHERE ttl_boot IS NOT NULL AND ttl_boot != ?", (now, boot, boot),
        )
        self._checkpoint(conn)
        self._count_backlog(conn)

    def _count_backlog(self, conn: sqlite3.Connection) -> None:
        """(Re)count the in-memory backlog; on the write connection, in a transaction."""
        schema.count_backlog(conn)
        self._data_version = int(conn.execute("PRAGMA data_version").fetchone()[0])

    def _load_seen(self, conn: sqlite3.Connection) -> None:
        """Fill the in-memory dedup set from ``seen_log`` (at open)."""
        ids = IdSet()
        for sub_key, event_id in conn.execute("SELECT sub_key, event_id FROM seen_log"):
            ids.add(digest(sub_key, event_id))
        self._ids = ids
        self._seen = schema.seen_counts(conn)

    # --- arrival -----------------------------------------------------------------------------

    def set_lane(self, sub_key: str, lane: Lane | None) -> None:
        """Give ``sub_key`` a fast lane (``None``: take it away); see :meth:`add`."""
        if lane is None:
            self._lanes.pop(sub_key, None)
        else:
            self._lanes[sub_key] = lane

    def lane(self, sub_key: str) -> Lane | None:
        """The fast lane of ``sub_key``, if it has one."""
        return self._lanes.get(sub_key)

    def insert_count(self, sub_key: str) -> int:
        """A number that grows whenever a row of ``sub_key`` is queued for insert outside the
        fast lane (or rows come back from the dead letters)."""
        return self._generation + self._inserts.get(sub_key, 0)

    def insert_mark(self, sub_key: str) -> int | None:
        """A number that changes whenever a row of ``sub_key`` is queued for insert (or rows
        come back from the dead letters); ``None`` while an insert is not committed yet.

        A reader that takes the mark, then reads every row of ``sub_key``, knows while the
        mark is unchanged that no row was added since (by this process)."""
        if self._inserting.get(sub_key, 0):
            return None
        return self.insert_count(sub_key)

    async def add(
        self, sub_key: str, received: Received, event_id: str | None,
        *, expiration: datetime | None = None,
    ) -> bool:
        """Take ``received`` for subscription ``sub_key``; ``False`` for a duplicate id.

        ``expiration`` (an aware datetime, from the envelope) sets the event's lifetime, read
        against the wall clock once, now. Returns after COMMIT, or, for an event the
        subscription's fast lane (:meth:`set_lane`) took, once the app accepted it, whichever
        comes first: either way the broker may be acknowledged. Raises
        :class:`InboxFullError`, :class:`InboxError` or ``StorageFullError``; then nothing
        was stored and the app did not take the event.

        The fast lane: when the subscription's lane takes the event (its delivery is idle and
        no row of it is waiting), the event is posted to the app at once from memory, and its
        insert is held back for the commit window. If the app accepts it within the window,
        no row is written at all (only its dedup id, lazily, riding other commits);
        otherwise the insert is queued then (or at once when the app refused it, or when
        another event of the subscription is stored: rows keep arrival order) and the writer
        skips the row if the app accepted the event before the insert ran.
        """
        meta = json.dumps(dict(received.metadata), separators=(",", ":"), ensure_ascii=False)
        size = len(received.data) + len(meta.encode()) + len(received.topic) + ROW_OVERHEAD
        wall, mono, boot = self.wall_ms(), self.mono_ms(), self.clock.boot_id
        ttl_ms = None
        if expiration is not None:
            ttl_ms = max(0, round(expiration.timestamp() * 1000) - wall)
        limits = self.limits
        event = event_id or None
        key = None if event is None else digest(sub_key, event)
        arrival: Arrival | None = None

        def unit(conn: sqlite3.Connection) -> int | None:
            version = int(conn.execute("PRAGMA data_version").fetchone()[0])
            recount = version != self._data_version  # another process changed the file
            if recount:
                self._count_backlog(conn)
            try:
                return store(conn)
            except BaseException:
                if recount:  # the savepoint's rollback takes the recount back too
                    self._data_version = -1
                raise

        def store(conn: sqlite3.Connection) -> int | None:
            skip = arrival is not None and arrival.delivered  # the app took it meanwhile
            if not skip:
                count, total = conn.execute(
                    "SELECT total(messages), total(bytes) FROM backlog"
                ).fetchone()
                if count + 1 > limits.max_messages or total + size > limits.max_bytes:
                    raise InboxFullError(
                        f"the inbox is full ({int(count)} events, {int(total)} bytes; limits "
                        f"{limits.max_messages} events, {limits.max_bytes} bytes): the event "
                        "is left with the broker"
                    )
            if event is not None:
                conn.execute(
                    "INSERT INTO seen_log(sub_key, event_id, seen_ms) VALUES (?, ?, ?)",
                    (sub_key, event, wall),
                )
            if skip:
                return None
            cur = conn.execute(
                "INSERT INTO messages(sub_key, topic, data, metadata, event_id, size,"
                " arrived_ms, ttl_ms, ttl_boot, ttl_deadline_ms) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (sub_key, received.topic, received.data, meta, event, size, wall, ttl_ms,
                 None if ttl_ms is None else boot, None if ttl_ms is None else mono + ttl_ms),
            )
            if arrival is not None:
                arrival.seq = cur.lastrowid  # before the commit: see Arrival.seq
            return int(conn.execute(
                "SELECT messages FROM backlog WHERE sub_key = ?", (sub_key,)
            ).fetchone()[0])

        if key is not None:
            # A copy of this id whose commit (or fast delivery) is pending: wait for its
            # outcome (the broker's ack for this one must not come before it).
            while (pending := self._adding.get(key)) is not None:
                await asyncio.shield(pending)
            if key in self._ids:
                INBOX_DUPLICATES.labels(subscription=sub_key).inc()
                return False
        lane = self._lanes.get(sub_key)
        if lane is not None and ttl_ms != 0:
            arrival = Arrival(self, InboxRow(
                -next(self._temp_seq), sub_key, received.topic, received.data,
                dict(received.metadata), event, size, wall,
                None if ttl_ms is None else boot, None if ttl_ms is None else mono + ttl_ms,
                0, None, None, None, None), key, unit)
            if not lane.offer(arrival):
                arrival = None
                INBOX_FAST_LANE.labels(subscription=sub_key, path="stored").inc()
        if arrival is not None:
            return await self._add_fast(arrival)
        # Events of the fast lane that arrived before this one get their rows first; those
        # not started leave the lane, to be delivered from their rows, before this one.
        self._queue_held(sub_key)
        if lane is not None:
            lane.spill()
        done = self._submit_insert(sub_key, unit, size)
        if key is not None:
            self._adding[key] = asyncio.get_running_loop().create_future()
            # On the commit's outcome, even if this caller is cancelled meanwhile.
            done.add_done_callback(partial(self._added, sub_key, key))
        try:
            backlog = await self._guard(asyncio.shield(done), "add")
        except InboxFullError:
            INBOX_REJECTED.labels(subscription=sub_key).inc()
            raise
        INBOX_RECEIVED.labels(subscription=sub_key).inc()
        INBOX_BACKLOG.labels(subscription=sub_key).set(backlog or 0)
        waker = self._wakers.get(sub_key)
        if waker is not None:
            waker.set()
        return True

    def _submit_insert(
        self, sub_key: str, unit: Callable[[sqlite3.Connection], int | None], size: int,
        *, counted: bool = True,
    ) -> asyncio.Future[int | None]:
        """Queue an insert unit of ``sub_key`` (``counted``: for :meth:`insert_mark`)."""
        try:
            done = self.db.submit(unit, size=size)
        except DBError as exc:
            raise InboxError(f"inbox: add failed: {exc}") from exc
        if counted:
            self._count_insert(sub_key, done)
        return done

    def _count_insert(self, sub_key: str, done: asyncio.Future[Any]) -> None:
        self._inserts[sub_key] = self._inserts.get(sub_key, 0) + 1
        if not done.done():
            self._inserting[sub_key] = self._inserting.get(sub_key, 0) + 1
            done.add_done_callback(partial(self._insert_ended, sub_key))

    def _insert_ended(self, sub_key: str, _done: asyncio.Future[Any]) -> None:
        left = self._inserting.get(sub_key, 1) - 1
        if left > 0:
            self._inserting[sub_key] = left
        else:
            self._inserting.pop(sub_key, None)

    async def _add_fast(self, arrival: Arrival) -> bool:
        """:meth:`add` for an event the fast lane took: see there."""
        sub_key, key = arrival.row.sub_key, arrival.key
        if key is not None:
            arrival.adding = self._adding[key] = asyncio.get_running_loop().create_future()
        held = self._held.setdefault(sub_key, [])
        held.append(arrival)
        try:
            # Hold the insert back until the app has had the commit window to answer, counted
            # from when its delivery began (it may wait in the lane's queue), unless it is
            # refused or queued meanwhile.
            hold = self.db.commit_window_ms / 1000
            loop = asyncio.get_running_loop()
            while not arrival.answer.done() and arrival.stored is None:
                since = arrival.started if arrival.started is not None else arrival.blocked
                left = None if since is None else since + hold - loop.time()
                if left is not None and left <= 0:
                    break
                arrival.changed.clear()
                try:
                    async with asyncio.timeout(left):
                        await arrival.changed.wait()
                except TimeoutError:
                    break
            if arrival.taken():
                return True
            if arrival.stored is None:
                # The app had its window: this insert now, after those of the events before
                # it (rows keep arrival order); the window of those behind starts now.
                self._queue_held(sub_key, upto=arrival)
            stored = self.store(arrival)
            if not arrival.answer.done():
                # The ack on whichever comes first: the commit or the app's success.
                either: list[asyncio.Future[Any]] = [stored, arrival.answer]
                await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                if arrival.taken():
                    return True
            if not stored.done():
                await asyncio.wait([stored])
            if stored.exception() is not None and not arrival.answer.done():
                # Not stored (full, failing): the app's success may still allow the ack.
                await asyncio.shield(arrival.answer)
                if arrival.taken():
                    return True
            await stored  # raises why it was not stored
            return True
        finally:
            path = "row" if arrival.seq is not None else "no_row"
            INBOX_FAST_LANE.labels(subscription=sub_key, path=path).inc()
            with contextlib.suppress(ValueError):
                held.remove(arrival)
            if not held:
                self._held.pop(sub_key, None)
            if key is not None and arrival.adding is not None:
                self._release(key, arrival.adding)

    def store(self, arrival: Arrival, *, counted: bool = False) -> asyncio.Future[InboxRow | None]:
        """Queue the insert of an event of the fast lane (once: later calls give the same
        future); the future gives the stored row (its real ``seq``) after the commit (``None``
        if the app took the event before the insert ran: no row), or raises what :meth:`add`
        raises (then nothing was stored). ``counted``: the row leaves the lane, so it counts
        in :meth:`insert_mark` like any stored row (also when queued before)."""
        if counted and not arrival.counted:
            arrival.counted = True
            if arrival.insert is not None:
                self._count_insert(arrival.row.sub_key, arrival.insert)
        if arrival.stored is None:
            row = arrival.row
            with contextlib.suppress(ValueError):
                self._held.get(row.sub_key, []).remove(arrival)
            loop = asyncio.get_running_loop()
            outer: asyncio.Future[InboxRow | None] = loop.create_future()
            arrival.stored = outer
            arrival.changed.set()
            try:
                # Not counted in insert_mark while the lane has it (Arrival.seq says which).
                done = self._submit_insert(row.sub_key, arrival.unit, row.size,
                                           counted=arrival.counted)
            except InboxError as exc:
                outer.set_exception(exc)
            else:
                arrival.insert = done
                done.add_done_callback(partial(self._arrival_stored, arrival))
        return arrival.stored

    def _arrival_stored(self, arrival: Arrival, done: asyncio.Future[int | None]) -> None:
        """The insert of a fast-lane event ended: settle :attr:`Arrival.stored`."""
        outer = arrival.stored
        assert outer is not None
        row = arrival.row
        failure = None if done.cancelled() else done.exception()
        if done.cancelled() or failure is not None:
            arrival.seq = None
            err: BaseException = failure if failure is not None else asyncio.CancelledError()
            if isinstance(err, InboxFullError):
                INBOX_REJECTED.labels(subscription=row.sub_key).inc()
            elif isinstance(err, DBError):
                wrapped = InboxError(f"inbox: add failed: {err}")
                wrapped.__cause__ = err
                err = wrapped
            if not outer.done():
                outer.set_exception(err)
            return
        backlog = done.result()
        self._remember(arrival)  # the unit logged its id
        if backlog is None or arrival.seq is None:  # skipped: the app had taken it
            if not outer.done():
                outer.set_result(None)
            return
        INBOX_BACKLOG.labels(subscription=row.sub_key).set(backlog)
        if not outer.done():
            outer.set_result(replace(row, seq=arrival.seq))
        waker = self._wakers.get(row.sub_key)
        if waker is not None:
            waker.set()

    def _accepted(self, arrival: Arrival) -> None:
        """The app took a fast-lane event (see :meth:`Arrival.accept`)."""
        row = arrival.row
        with contextlib.suppress(ValueError):
            self._held.get(row.sub_key, []).remove(arrival)
        if arrival.stored is None and row.event_id is not None and not arrival.remembered:
            self._log_seen_lazily(row.sub_key, row.event_id, row.arrived_ms)
        self._remember(arrival)

    def _remember(self, arrival: Arrival) -> None:
        """Count a fast-lane event taken, its dedup id in memory (once), free its copies."""
        if arrival.remembered:
            return
        arrival.remembered = True
        row, key = arrival.row, arrival.key
        INBOX_RECEIVED.labels(subscription=row.sub_key).inc()
        if key is not None:
            self._remember_id(row.sub_key, key)
            pending = arrival.adding
            if pending is not None:
                self._release(key, pending)

    def _release(self, key: bytes, pending: asyncio.Future[None]) -> None:
        if self._adding.get(key) is pending:
            del self._adding[key]
        if not pending.done():
            pending.set_result(None)

    def _log_seen_lazily(self, sub_key: str, event_id: str, seen_ms: int) -> None:
        """Log a dedup id without a commit of its own: with the next write, or with the other
        ids so logged within :data:`SEEN_LINGER_S` (no fsync: an id lost in a power cut only
        lets a redelivered copy through, which at-least-once allows)."""
        with self._lazy_lock:
            batch = self._lazy_seen
            first = batch is None
            if batch is None:
                batch = self._lazy_seen = []
            batch.append((sub_key, event_id, seen_ms))
        if not first:
            return
        taken: list[tuple[str, str, int]] = []

        def unit(conn: sqlite3.Connection) -> None:
            if not taken:  # once: a unit may run again after its transaction was aborted
                with self._lazy_lock:
                    taken.extend(self._lazy_seen or ())
                    self._lazy_seen = None
            conn.executemany(
                "INSERT INTO seen_log(sub_key, event_id, seen_ms) VALUES (?, ?, ?)", taken)

        try:
            fut = self.db.write_soon(unit, linger_s=SEEN_LINGER_S)
        except DBError as exc:
            with self._lazy_lock:
                self._lazy_seen = None
            log.warning("inbox: logging dedup ids failed: %s", exc)
            return
        fut.add_done_callback(_log_lazy_failure)

    def _queue_held(self, sub_key: str, upto: Arrival | None = None) -> None:
        """Queue the inserts of ``sub_key``'s fast-lane events still held back (in arrival
        order), so a row stored now comes after them; with ``upto``, of those up to it (the
        window of the others starts now)."""
        after = False
        for arrival in list(self._held.get(sub_key, ())):
            if after:
                arrival.block()
            elif not arrival.delivered:
                self.store(arrival)
            after = after or arrival is upto

    def _added(self, sub_key: str, key: bytes, done: asyncio.Future[int | None]) -> None:
        """The commit of an event with an id ended: remember the id if it was stored."""
        if not done.cancelled() and done.exception() is None:
            self._remember_id(sub_key, key)
        pending = self._adding.pop(key, None)
        if pending is not None and not pending.done():
            pending.set_result(None)

    def _remember_id(self, sub_key: str, key: bytes) -> None:
        self._ids.add(key)
        n = self._seen[sub_key] = self._seen.get(sub_key, 0) + 1
        keep = self.limits.seen_max
        if n > keep + max(1, keep // 10) and (self._pruner is None or self._pruner.done()):
            self._pruner = asyncio.create_task(self.prune_seen(), name="inbox-prune-seen")
            self._pruner.add_done_callback(_log_failure)


    # --- delivery ----------------------------------------------------------------------------

    async def head(
        self, sub_key: str, limit: int = 1, *, skip: Collection[int] = (),
        max_bytes: int | None = None, min_rows: int = 1,
    ) -> list[InboxRow]:
        """The oldest ``limit`` rows of ``sub_key``, in arrival order, leaving out the seqs in
        ``skip`` (rows being deleted). With ``max_bytes``, rows stop once their ``size`` adds
        up to that, after at least ``min_rows``: rows are read one at a time, so a prefetch of
        large events holds at most the budget plus one row."""
        def read(conn: sqlite3.Connection) -> list[InboxRow]:
            out: list[InboxRow] = []
            total = 0
            cur = conn.execute(
                f"SELECT {schema.MESSAGE_COLUMNS} FROM messages WHERE sub_key = ?"
                " ORDER BY seq LIMIT ?", (sub_key, limit + len(skip)),
            )
            for r in cur:
                if r[0] in skip:
                    continue
                out.append(_row(r))
                total += r[6]
                if len(out) >= limit or (
                        max_bytes is not None and total >= max_bytes and len(out) >= min_rows):
                    break
            cur.close()
            return out

        return await self._guard(self.db.read(read), "read")

    async def complete(self, row: InboxRow) -> None:
        """Delete a delivered (or dropped) row."""
        await self.complete_many([row])

    async def complete_many(self, rows: Sequence[InboxRow]) -> None:
        """Delete delivered rows, in one unit of work (one commit, without an fsync: a
        completion lost in a power cut means one more delivery, which at-least-once allows)."""
        seqs = [r.seq for r in rows]
        keys = sorted({r.sub_key for r in rows})

        def unit(conn: sqlite3.Connection) -> list[int]:
            for i in range(0, len(seqs), _DELETE_CHUNK):
                marks, params = in_list(seqs[i:i + _DELETE_CHUNK])
                conn.execute(f"DELETE FROM messages WHERE seq IN ({marks})", params)
            left = []
            for key in keys:
                found = conn.execute(
                    "SELECT messages FROM backlog WHERE sub_key = ?", (key,)
                ).fetchone()
                left.append(int(found[0]) if found else 0)
            return left

        if not seqs:
            return
        left = await self._guard(self.db.write(unit, durable=False), "delete")
        for key, n in zip(keys, left, strict=True):
            INBOX_BACKLOG.labels(subscription=key).set(n)

    async def reschedule(
        self, row: InboxRow, *, attempts: int, delay_s: float, error: str
    ) -> None:
        """Record a failed attempt: ``attempts`` so far, the next one ``delay_s`` from now."""
        boot, wall = self.clock.boot_id, self.wall_ms()
        next_ms = self.mono_ms() + round(delay_s * 1000)

        def unit(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE messages SET attempts = ?, next_boot = ?, next_mono_ms = ?,"
                " first_attempt_ms = COALESCE(first_attempt_ms, ?), last_error = ?"
                " WHERE seq = ?", (attempts, boot, next_ms, wall, error[:2000], row.seq),
            )

        await self._guard(self.db.write(unit, durable=False), "reschedule")

    async def park(
        self, row: InboxRow, *, reason: str, error: str | None, attempts: int
    ) -> int | None:
        """Move the row to the local ``deadletters`` table; its id there (``None``: gone)."""
        now = self.wall_ms()
        err = None if error is None else error[:2000]
        dead_id = await self._guard(self.db.write(lambda conn: schema.park(
            conn, row.seq, reason=reason, error=err, attempts=attempts, now_ms=now,
        )), "park")
        INBOX_BACKLOG.labels(subscription=row.sub_key).dec()
        INBOX_PARKED.inc()
        return dead_id

    # --- dead letters ------------------------------------------------------------------------

    async def deadletters(self, limit: int = -1) -> list[schema.DeadLetterRow]:
        """Parked events, oldest first."""
        return await self._guard(self.db.read(lambda c: schema.list_dead(c, limit)), "read")

    async def replay(self, ids: Sequence[int] | None) -> int:
        """Move parked events back for delivery (``None``: all); the number moved."""
        now = self.wall_ms()
        moved = await self._guard(
            self.db.write(lambda c: schema.replay_dead(c, ids, now)), "replay"
        )
        self._generation += 1  # rows are back: fast lanes must read them first
        for waker in self._wakers.values():
            waker.set()
        await self.refresh_gauges()
        return moved

    # --- maintenance -------------------------------------------------------------------------

    async def backlog(self) -> dict[str, tuple[int, int]]:
        """``{sub_key: (events, bytes)}`` waiting for delivery (rows added by the CLI
        included)."""
        def read(conn: sqlite3.Connection) -> dict[str, tuple[int, int]]:
            # The counts are the write connection's (in memory): read there, changing nothing.
            version = int(conn.execute("PRAGMA data_version").fetchone()[0])
            if version != self._data_version:
                self._count_backlog(conn)
            rows = conn.execute("SELECT sub_key, messages, bytes FROM backlog").fetchall()
            return {k: (int(n), int(b)) for k, n, b in rows if n}

        return await self._guard(self.db.write(read, durable=False), "read")

    async def refresh_gauges(self) -> dict[str, tuple[int, int]]:
        """Set the backlog gauges from the database (rows added by the CLI included)."""
        backlog = await self.backlog()
        for key, (n, _) in backlog.items():
            INBOX_BACKLOG.labels(subscription=key).set(n)
        INBOX_BACKLOG_BYTES.set(sum(b for _, b in backlog.values()))
        parked = await self._guard(self.db.read(
            lambda c: int(c.execute("SELECT count(*) FROM deadletters").fetchone()[0])
        ), "read")
        INBOX_PARKED.set(parked)
        return backlog

    def seen_memory(self) -> tuple[int, int]:
        """(ids remembered for dedup, bytes of memory their set takes)."""
        return len(self._ids), self._ids.nbytes

    async def prune_seen(self) -> int:
        """Forget dedup ids older than ``seen_ttl_s`` or beyond ``seen_max`` per subscription
        (oldest first, walking ``seen_log`` from its start); the number forgotten."""
        async with self._prune_lock:
            cutoff = self.wall_ms() - round(self.limits.seen_ttl_s * 1000)
            keep = self.limits.seen_max
            over = {k: n - keep for k, n in self._seen.items() if n > keep}
            excess = sum(over.values())
            after, total = 0, 0
            while True:
                rows = await self._guard(self.db.read(
                    partial(schema.seen_after, after=after, limit=_PRUNE_CHUNK)), "prune")
                drop: list[tuple[int, str, str]] = []
                stop = False
                for rowid, sub_key, event_id, seen_ms in rows:
                    if over.get(sub_key, 0) > 0:
                        over[sub_key] -= 1
                        excess -= 1
                    elif seen_ms >= cutoff and excess <= 0:
                        stop = True  # the rest is newer (wall-clock jumps aside)
                        break
                    elif seen_ms >= cutoff:
                        continue
                    drop.append((rowid, sub_key, event_id))
                if drop:
                    ids = [d[0] for d in drop]
                    # No fsync: a prune lost in a power cut only remembers ids longer.
                    await self._guard(self.db.write(
                        partial(schema.forget_seen, ids=ids), durable=False), "prune")
                    for _, sub_key, event_id in drop:
                        self._ids.discard(digest(sub_key, event_id))
                        self._seen[sub_key] = self._seen.get(sub_key, 1) - 1
                    total += len(drop)
                if stop or len(rows) < _PRUNE_CHUNK:
                    break
                after = rows[-1][0]
            self._seen = {k: n for k, n in self._seen.items() if n > 0}
        if total:
            INBOX_SEEN_PRUNED.inc(total)
        return total

    async def maintain(self) -> None:
        """One maintenance pass (what the background task runs every interval)."""
        backlog = await self.refresh_gauges()
        if not any(n for n, _ in backlog.values()):
            # Before pruning: the pages the last prune freed are reused by the ids logged
            # since, not given back and taken again every pass.
            free = await self._guard(self.db.read(lambda c: int(
                c.execute("PRAGMA freelist_count").fetchone()[0]
                * c.execute("PRAGMA page_size").fetchone()[0])), "read")
            if free >= _RECLAIM_MIN_BYTES:
                await self._guard(self.db.reclaim(), "reclaim")
        await self.prune_seen()
        await self._guard(self.db.write(self._checkpoint), "checkpoint")

    async def _maintenance(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.maintain()
            except (InboxError, StorageFullError) as exc:
                log.warning("inbox maintenance failed: %s", exc)
            except Exception:  # a bug must not end the loop silently (logged with traceback)
                log.exception("inbox maintenance failed")

    async def _guard(self, work: Awaitable[T], what: str) -> T:
        try:
            return await work
        except DBError as exc:
            raise InboxError(f"inbox: {what} failed: {exc}") from exc


def _row(r: tuple[Any, ...]) -> InboxRow:
    (seq, sub_key, topic, data, metadata, event_id, size, arrived, ttl_boot, ttl_deadline,
     attempts, next_boot, next_mono, first, last_error) = r
    try:
        meta = json.loads(metadata)
    except ValueError:
        meta = {}
    return InboxRow(
        seq, sub_key, topic, bytes(data),
        {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {},
        event_id, size, arrived, ttl_boot, ttl_deadline, attempts, next_boot, next_mono, first,
        last_error,
    )


def _log_lazy_failure(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.warning("inbox: logging dedup ids failed: %s", fut.exception())


def _log_failure(task: asyncio.Task[int]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("pruning dedup ids failed: %s", task.exception())
