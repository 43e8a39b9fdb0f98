"""The durable outbox: one SQLite table per relay in ``<data-dir>/outbox.db``.

:meth:`Outbox.append` returns only after the rows are committed (group commit: concurrent
appends share one fsync), which is what lets a publish answer 204, or, on the fast lane (see
:class:`Lane` and :mod:`edge_runtime.outbox.relay`), once the far side acknowledged them, if
that came first: then the rows are not written at all. A relay reads rows in
sequence order (:meth:`claim`) and deletes them once delivered (:meth:`ack`). Everything a
message costs is O(1) or O(log n): the backlog's size is kept in memory (read once at open) and
every query walks the primary key, so an outbox holding a million rows appends as fast as an
empty one.

Message TTL is kept as a deadline on the monotonic clock plus the boot id (DESIGN.md §5), so a
wall-clock jump neither expires nor immortalises a message. The monotonic time is checkpointed
with the boot id (at most every ``CHECKPOINT_S`` while in use, and at close); after a reboot a
row keeps the time it had left at the last checkpoint, counted from the new boot, as the inbox
does: time powered off does not count, and a power cut can extend a message's life by at most
the checkpoint interval. Rows of a boot with no checkpoint get their full TTL again.

Limits (DESIGN.md §5): ``max_messages``, ``max_bytes``; when full, ``reject`` raises
:class:`OutboxFullError` and touches nothing already accepted; ``dropOldest`` deletes the oldest
rows in the same transaction and counts them.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import sqlite3
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from edge_runtime.observability.metrics import (
    OUTBOX_APPENDED,
    OUTBOX_DROPPED,
    OUTBOX_UNWRITTEN,
)
from edge_runtime.support.bootid import read_boot_id
from edge_runtime.support.sqlitedb import Database, DBError, Migration, get_meta, set_meta
from edge_runtime.support.sqlmarks import in_list

log = logging.getLogger(__name__)

_NAME = re.compile(r"[^A-Za-z0-9_]")
_ROW_OVERHEAD = 64
CHECKPOINT_S = 30.0
# Sequence numbers are reserved in blocks: the top of the block is kept in ``_meta`` (written
# in the transaction that first goes past it), so a restart goes on above every number ever
# handed out, at one ``_meta`` write per this many messages.
SEQ_BLOCK = 4096


class OutboxFullError(Exception):
    """The outbox has no room (``onFull: reject``); nothing was written."""


_BOOT_ID = read_boot_id()


@dataclass(frozen=True, slots=True)
class OutboxLimits:
    """Bounds of one relay's table."""

    max_messages: int = 1_000_000
    max_bytes: int = 256 * 1024 * 1024
    on_full: Literal["reject", "dropOldest"] = "reject"


@dataclass(frozen=True, slots=True)
class Item:
    """A message to append: where it goes, its bytes, its options and optional TTL."""

    topic: str
    payload: bytes
    metadata: dict[str, str] = field(default_factory=dict)
    ttl_s: float | None = None

    @property
    def size(self) -> int:
        """Bytes this row costs (for ``max_bytes``)."""
        return len(self.payload) + len(self.topic) + _ROW_OVERHEAD


@dataclass(frozen=True, slots=True)
class Row:
    """A stored message; ``expired`` is computed when it is read. ``deadline`` is when its TTL
    runs out on the outbox's monotonic clock (``time.monotonic`` unless a test injects
    another), ``None`` without a TTL."""

    seq: int
    topic: str
    payload: bytes
    metadata: dict[str, str]
    size: int
    expired: bool
    deadline: float | None = None


def _ddl(table: str) -> str:
    # No AUTOINCREMENT: it rewrites a page of ``sqlite_sequence`` in every commit (a third of
    # an insert commit's flash writes). Sequence numbers are given by the outbox instead
    # (see ``Outbox._next``), never reused, as AUTOINCREMENT's were. Tables made before keep
    # their AUTOINCREMENT (SQLite then also updates sqlite_sequence; nothing else changes).
    return (
        f'CREATE TABLE IF NOT EXISTS "{table}" ('
        "seq INTEGER PRIMARY KEY, topic TEXT NOT NULL, payload BLOB NOT NULL,"
        " metadata TEXT NOT NULL, size INTEGER NOT NULL, created_at REAL NOT NULL,"
        " ttl_s REAL, boot_id TEXT, deadline REAL)"
    )


MIGRATIONS = [Migration(1, "SELECT 1", "outbox file (tables are made per relay)")]


def open_database(path: Path, **kwargs: object) -> Database:
    """The ``outbox.db`` shared by every relay (one writer thread, one fsync per batch)."""
    return Database(path, name="outbox", migrations=MIGRATIONS, **kwargs)  # type: ignore[arg-type]


def table_name(relay: str) -> str:
    """The table of a relay (``pubsub:mqtt-pubsub`` → ``outbox_pubsub_mqtt_pubsub``)."""
    return "outbox_" + _NAME.sub("_", relay)


class _Counter:
    __slots__ = ("next",)

    def __init__(self) -> None:
        self.next = 1


_SEQUENCES: weakref.WeakKeyDictionary[Database, dict[str, _Counter]] = (
    weakref.WeakKeyDictionary())


class Outbox:
    """One relay's outbox table. Coroutine-safe; the sizes are kept on the loop's thread."""

    def __init__(
        self, db: Database, relay: str, limits: OutboxLimits | None = None,
        *, monotonic: Callable[[], float] = time.monotonic, durable: bool | None = None,
    ) -> None:
        self.db = db
        self.durable = durable  # None: the database's durability
        self.relay = relay
        self.table = table_name(relay)
        self.limits = limits or OutboxLimits()
        self._mono = monotonic
        self.count = 0
        self.bytes = 0
        self.appended = asyncio.Event()
        self._appended = OUTBOX_APPENDED.labels(relay)
        self._unwritten = OUTBOX_UNWRITTEN.labels(relay)
        # The relay taking appends in memory while it is caught up (the fast lane), if any.
        self.lane: Lane | None = None
        # Appends through the table queued and not yet settled (the fast lane stays closed
        # until the relay has read them back).
        self.table_units = 0
        t = f'"{self.table}"'
        self._sql_insert = (
            f"INSERT INTO {t}(seq, topic, payload, metadata, size, created_at, ttl_s, boot_id,"
            " deadline) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        self._sql_claim = (
            f"SELECT seq, topic, payload, metadata, size, ttl_s, boot_id, deadline FROM {t}"
            " WHERE seq > ? ORDER BY seq LIMIT ?"
        )
        self._sql_oldest = f"SELECT seq, size FROM {t} ORDER BY seq LIMIT ?"
        # Copies of appended items for other relays' tables in the same file (cloud sync's
        # events), written in the same transaction; see append().
        self.tee: Callable[[Sequence[Item]], list[tuple[Outbox, list[Item]]]] | None = None
        self._checkpoint_key = f"ttl_checkpoint:{self.table}"
        self._checkpointed = float("-inf")
        self._seq_key = f"seq_reserved:{self.table}"
        # The next sequence number to hand out (used on the writer thread; set by open),
        # shared by every Outbox of this table in this database.
        self._seq = _SEQUENCES.setdefault(db, {}).setdefault(self.table, _Counter())

    async def open(self) -> None:
        """Create the table if new, read the backlog's size once (the only full scan) and
        rebase earlier boots' TTLs. Relays come and go with components, so each table is
        made on first use rather than by the file's migrations."""
        await self.db.write(lambda conn: conn.execute(_ddl(self.table)))

        def scan(conn: sqlite3.Connection) -> tuple[int, int]:
            row = conn.execute(f'SELECT COUNT(*), COALESCE(SUM(size), 0) FROM "{self.table}"')
            count, size = row.fetchone()
            return int(count), int(size)

        self.count, self.bytes = await self.db.read(scan)
        first = await self.db.read(self._first_seq)
        self._seq.next = max(self._seq.next, first)
        if self.count:
            log.info("outbox %s: %d message(s), %d bytes waiting from before", self.relay,
                     self.count, self.bytes)

        await self.db.write(self._rebase)

    def _first_seq(self, conn: sqlite3.Connection) -> int:
        """Above every sequence number handed out before: the reserved block's top, the
        largest row, and ``sqlite_sequence`` for a table made with AUTOINCREMENT."""
        top = int(get_meta(conn, self._seq_key) or 0)
        (high,) = conn.execute(f'SELECT COALESCE(MAX(seq), 0) FROM "{self.table}"').fetchone()
        top = max(top, int(high))
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'").fetchone():
            row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?",
                               (self.table,)).fetchone()
            if row is not None:
                top = max(top, int(row[0]))
        return top + 1

    def _take_seqs(self, n: int) -> int:
        """The first of ``n`` new sequence numbers, handed out on the loop's thread when an
        append is made (so a message can be sent before its row is written, and units, queued
        in the same order, commit in sequence order). :meth:`_persist_top` records them."""
        first = self._seq.next
        self._seq.next = first + n
        return first

    def _persist_top(self, conn: sqlite3.Connection, last: int) -> None:
        """Keep the reserved block's top above ``last`` in ``_meta`` (in the writer's
        transaction, also when none of the unit's rows is written). The top is read from
        ``_meta`` each time rather than remembered, so a transaction rolled back (with its
        reservation) cannot leave the memory ahead of the file."""
        if last > int(get_meta(conn, self._seq_key) or 0):
            set_meta(conn, self._seq_key, str(last + SEQ_BLOCK))

    def _rebase(self, conn: sqlite3.Connection) -> None:
        now, t = self._mono(), f'"{self.table}"'
        mark = get_meta(conn, self._checkpoint_key)
        if mark is not None:
            old_boot, _, old_mono = mark.rpartition(" ")
            if old_boot != _BOOT_ID:
                # What was left at the last checkpoint of that boot, counted from now.
                conn.execute(
                    f"UPDATE {t} SET deadline = ? + MAX(0, deadline - ?), boot_id = ?"
                    " WHERE ttl_s IS NOT NULL AND boot_id = ?",
                    (now, float(old_mono), _BOOT_ID, old_boot),
                )
        conn.execute(
            f"UPDATE {t} SET boot_id = ?, deadline = ? + ttl_s"
            " WHERE ttl_s IS NOT NULL AND boot_id IS NOT ?",
            (_BOOT_ID, now, _BOOT_ID),
        )
        self._checkpoint(conn)

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        """Record this boot's monotonic time (what TTLs are measured on) in ``_meta``."""
        mono = self._mono()
        set_meta(conn, self._checkpoint_key, f"{_BOOT_ID} {mono!r}")
        self._checkpointed = mono

    def _maybe_checkpoint(self, conn: sqlite3.Connection) -> None:
        if self._mono() - self._checkpointed >= CHECKPOINT_S:
            self._checkpoint(conn)

    async def checkpoint(self) -> None:
        """Record the monotonic time now (call at close; appends and deletes also do it at
        most every ``CHECKPOINT_S``)."""
        await self.db.write(self._checkpoint, durable=False)

    async def append(self, items: Sequence[Item]) -> list[int]:
        """Store ``items`` durably, in order; their sequence numbers.

        Returns once the rows are committed, or (the fast lane, see :class:`Lane`) once the
        broker acknowledged every one of them, whichever comes first: both mean the messages
        are kept somewhere durable. Raises :class:`OutboxFullError` (nothing written) when they
        do not fit and ``on_full`` is ``reject``; :class:`~edge_runtime.errors.StorageFullError`
        for a full disk (when that comes before the broker's ack: the messages may still
        arrive). When :attr:`tee` is set, the copies it returns go into their (same-file)
        tables in the same transaction: all rows commit, or none do (such an append never
        takes the fast lane).
        """
        plans = [(self, items)]
        if self.tee is not None:
            for other, more in self.tee(items):
                if other.db is not self.db:  # one transaction: the copies must share the file
                    raise ValueError(f"outbox {other.relay} is not in {self.relay}'s database")
                if more:
                    plans.append((other, more))
        reserved: list[tuple[Outbox, Handover, int, tuple[int, int]]] = []
        try:
            for outbox, batch in plans:
                size = sum(i.size for i in batch)
                drop = outbox._reserve(len(batch), size)
                # Sequence numbers now, on the loop's thread, in the order the units queue.
                hand = Handover(outbox, batch, outbox._take_seqs(len(batch)))
                reserved.append((outbox, hand, size, drop))
        except OutboxFullError:
            for outbox, hand, size, _ in reserved:
                outbox._unreserve(len(hand.items), size)
            raise

        def unit(conn: sqlite3.Connection) -> list[tuple[list[int], int, int]]:
            return [o._insert(conn, hand, drop) for o, hand, _, drop in reserved]

        def submit() -> asyncio.Future[list[tuple[list[int], int, int]]]:
            fut = self.db.submit(
                unit, size=sum(r[2] for r in reserved), durable=_strictest(o for o, _ in plans))
            # Counted by what the commit did, whatever the caller does meanwhile (it may be
            # cancelled: the writer does not take a queued unit back).
            fut.add_done_callback(functools.partial(_settle, reserved))
            return fut

        hand = reserved[0][1]
        lane = self.lane
        hand.offered = (lane is not None and len(reserved) == 1 and reserved[0][3] == (0, 0)
                        and lane.offer(hand))
        if not hand.offered:
            # Through the table: the relay reads these rows back once they are committed.
            try:
                fut = submit()
            except BaseException:
                for outbox, h, size, _ in reserved:
                    outbox._unreserve(len(h.items), size)
                raise
            for outbox, _, _, _ in reserved:
                outbox._through_table(fut)
            await asyncio.shield(fut)
            return hand.seqs()
        # Sent from memory. The unit is queued a commit window from now, so that it waits a
        # whole window for the broker's ack (queued now, it would join whatever commit is
        # due next, often at once): at a quiet moment too, when the writer does not wait.
        # Not when the far side's acks take longer than the window (a remote broker): the row
        # is written anyway, and the publish would wait a window more for nothing.
        loop = asyncio.get_running_loop()
        hand.unit = loop.create_future()
        delay = self.db.commit_window_ms / 1000.0
        if delay > 0 and lane is not None and lane.quick(delay):
            loop.call_later(delay, _submit_later, submit, reserved, hand.unit)
        else:
            _submit_later(submit, reserved, hand.unit)
        await hand.answer  # committed, or every message acknowledged by the far side
        return hand.seqs()

    def _through_table(self, fut: asyncio.Future[Any]) -> None:
        """An append goes through the table: the fast lane closes until the relay has read
        it (and everything committed before it) back."""
        self.table_units += 1
        if self.lane is not None:
            self.lane.close()
        fut.add_done_callback(self._table_unit_done)

    def _table_unit_done(self, _: asyncio.Future[Any]) -> None:
        self.table_units -= 1
        self.appended.set()

    def _unreserve(self, n: int, size: int) -> None:
        self.count -= n
        self.bytes -= size

    def _appended_now(self, n: int, dropped: int, dropped_bytes: int, *,
                      signal: bool = True) -> None:
        if dropped:
            self.count -= dropped
            self.bytes -= dropped_bytes
            OUTBOX_DROPPED.labels(self.relay, "full").inc(dropped)
            log.warning("outbox %s full: dropped the %d oldest message(s) (onFull: dropOldest)",
                        self.relay, dropped)
        self._appended.inc(n)
        if signal:  # rows were written for the relay to read
            self.appended.set()

    def filling(self) -> bool:
        """Half full or more (by rows or bytes): the relay then deletes what was delivered at
        once rather than in its next batch, so back-pressure ends with the backlog."""
        lim = self.limits
        return self.count * 2 >= lim.max_messages or self.bytes * 2 >= lim.max_bytes

    def _reserve(self, n: int, size: int) -> tuple[int, int]:
        """Count the rows in now (so concurrent appends see them); (rows, bytes) to drop first."""
        lim = self.limits
        over_n = self.count + n - lim.max_messages
        over_b = self.bytes + size - lim.max_bytes
        fits_at_all = n <= lim.max_messages and size <= lim.max_bytes
        if (over_n > 0 or over_b > 0) and (lim.on_full == "reject" or not fits_at_all):
            raise OutboxFullError(
                f"the outbox of {self.relay} is full ({self.count} messages, {self.bytes} bytes;"
                f" limits {lim.max_messages} messages, {lim.max_bytes} bytes)"
            )
        self.count += n
        self.bytes += size
        return max(over_n, 0), max(over_b, 0)

    def _insert(
        self, conn: sqlite3.Connection, hand: Handover, drop: tuple[int, int]
    ) -> tuple[list[int], int, int]:
        """Write ``hand``'s rows but those the far side already acknowledged (the fast lane;
        ``hand.acked`` is set on the loop's thread before anything is answered); (the sequence
        numbers written, rows dropped, bytes dropped)."""
        dropped = dropped_bytes = 0
        rows, need = drop
        while dropped < rows or dropped_bytes < need:
            # dropOldest: delete from the head until the new rows fit.
            oldest = conn.execute(
                f'DELETE FROM "{self.table}" WHERE seq IN (SELECT seq FROM "{self.table}"'
                " ORDER BY seq LIMIT ?) RETURNING size",
                (max(rows - dropped, 1),),
            ).fetchall()
            if not oldest:
                break
            dropped += len(oldest)
            dropped_bytes += sum(r[0] for r in oldest)
        first, items, acked = hand.first, hand.items, hand.acked
        # Kept even when no row is written: sequence numbers are never reused.
        self._persist_top(conn, first + len(items) - 1)
        keep = [(first + i, item) for i, item in enumerate(items) if not acked[i]]
        if not keep:
            return [], dropped, dropped_bytes
        self._maybe_checkpoint(conn)
        now, mono = time.time(), self._mono()
        conn.executemany(self._sql_insert, [
            (seq, item.topic, item.payload,
             json.dumps(item.metadata) if item.metadata else "{}", item.size, now, item.ttl_s,
             _BOOT_ID if item.ttl_s is not None else None,
             mono + item.ttl_s if item.ttl_s is not None else None)
            for seq, item in keep
        ])
        return [seq for seq, _ in keep], dropped, dropped_bytes

    async def claim(self, after: int, limit: int) -> list[Row]:
        """Up to ``limit`` rows with ``seq > after``, in order (nothing is locked or removed)."""
        mono = self._mono()

        def read(conn: sqlite3.Connection) -> list[Row]:
            out = []
            for seq, topic, payload, md, size, ttl, _boot, deadline in conn.execute(
                self._sql_claim, (after, limit)
            ):
                if ttl is None:
                    deadline = None
                expired = deadline is not None and mono >= deadline
                out.append(Row(seq, topic, bytes(payload), json.loads(md) if md != "{}" else {},
                               size, expired, deadline))
            return out

        return await self.db.read(read)

    async def ack(self, rows: Sequence[Row]) -> int:
        """Delete delivered (or expired) rows; how many were still there. A lost delete only
        means a resend."""
        if not rows:
            return 0
        seqs = [r.seq for r in rows]

        def delete(conn: sqlite3.Connection) -> tuple[int, int]:
            self._maybe_checkpoint(conn)
            n = size = 0
            for i in range(0, len(seqs), 500):
                chunk = seqs[i:i + 500]
                marks, params = in_list(chunk)
                for (s,) in conn.execute(
                    f'DELETE FROM "{self.table}" WHERE seq IN ({marks}) RETURNING size', params
                ):
                    n, size = n + 1, size + s
            return n, size

        return await self._delete(delete)

    async def ack_upto(self, seq: int) -> int:
        """Delete every row with a sequence number up to ``seq`` (a peer acknowledged them
        cumulatively); how many there were."""
        def delete(conn: sqlite3.Connection) -> tuple[int, int]:
            self._maybe_checkpoint(conn)
            n = size = 0
            for (s,) in conn.execute(
                f'DELETE FROM "{self.table}" WHERE seq <= ? RETURNING size', (seq,)
            ):
                n, size = n + 1, size + s
            return n, size

        return await self._delete(delete)

    async def _delete(self, unit: Callable[[sqlite3.Connection], tuple[int, int]]) -> int:
        # Rows already dropped (dropOldest) are not counted twice.
        # No fsync needed: a delete lost in a power cut only means a resend (at least once).
        n, size = await self.db.write(unit, durable=False)
        self.count -= n
        self.bytes -= size
        return n


def _strictest(outboxes: Iterable[Outbox]) -> bool | None:
    """The durability of a commit holding rows of several outboxes: fsynced when any asks
    for it, left to the database's setting when any does, unsynced only when all say so."""
    settings = [o.durable for o in outboxes]
    if True in settings:
        return True
    return None if None in settings else False


def _settle(
    reserved: Sequence[tuple[Outbox, Handover, int, tuple[int, int]]],
    done: asyncio.Future[list[tuple[list[int], int, int]]],
) -> None:
    """Count an append's rows in (committed; less those the far side acknowledged first,
    never written) or back out (failed, or never run), and answer a fast-lane append."""
    if done.cancelled() or done.exception() is not None:
        exc = None if done.cancelled() else done.exception()
        for outbox, hand, size, _ in reserved:
            outbox._unreserve(len(hand.items), size)
            if hand.all_acked():  # answered by the far side: appended all the same
                outbox._appended.inc(len(hand.items))
            hand.committed(frozenset(), exc or DBError("the outbox write was cancelled"))
        return
    for (outbox, hand, _, _), (written, dropped, dropped_bytes) in zip(
            reserved, done.result(), strict=True):
        n = len(hand.items)
        outbox._appended_now(n, dropped, dropped_bytes, signal=bool(written))
        if len(written) < n:
            kept = set(written)
            unwritten = [i for i in range(n) if hand.first + i not in kept]
            outbox.count -= len(unwritten)
            outbox.bytes -= sum(hand.items[i].size for i in unwritten)
            outbox._unwritten.inc(len(unwritten))
        hand.committed(frozenset(written), None)


def _submit_later(
    submit: Callable[[], asyncio.Future[list[tuple[list[int], int, int]]]],
    reserved: Sequence[tuple[Outbox, Handover, int, tuple[int, int]]],
    ran: asyncio.Future[None],
) -> None:
    """Queue a fast-lane append's unit; ``ran`` resolves (never fails) once it ran."""
    try:
        fut = submit()
    except Exception as exc:  # noqa: BLE001 - the database closed meanwhile: answered as failed
        fut = asyncio.get_running_loop().create_future()
        fut.add_done_callback(functools.partial(_settle, reserved))
        fut.set_exception(exc)
    fut.add_done_callback(functools.partial(_ran, ran))


def _ran(ran: asyncio.Future[None], _: asyncio.Future[Any]) -> None:
    if not ran.done():
        ran.set_result(None)


class Handover:
    """The rows of one append, in memory: what its unit writes, and what the relay sends at
    once when the append takes the fast lane (see :class:`Lane`).

    ``acked[i]`` is set on the loop's thread when the far side acknowledged message ``i``,
    before anything is answered; the writer thread reads it when the unit runs and skips
    those rows. ``written`` is the sequence numbers the unit wrote, once it ran (the relay
    deletes those of them it delivered, with its batched deletes).
    """

    __slots__ = ("_left", "acked", "answer", "first", "items", "offered", "offered_at", "outbox",
                 "unit", "written")

    def __init__(self, outbox: Outbox, items: Sequence[Item], first: int) -> None:
        self.outbox = outbox
        self.items = items
        self.first = first
        self.acked = [False] * len(items)
        self._left = len(items)
        self.answer: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.written: frozenset[int] | None = None
        self.offered = False  # taken by the fast lane: the append waits on ``answer``
        self.offered_at = 0.0  # when (the loop's clock)
        self.unit: asyncio.Future[None] | None = None  # fast lane: resolves once the unit ran

    def seqs(self) -> list[int]:
        """The sequence numbers of the items, in order."""
        return list(range(self.first, self.first + len(self.items)))

    def row(self, i: int) -> Row:
        """Item ``i`` as the relay sends it (fresh: never expired)."""
        item = self.items[i]
        return Row(self.first + i, item.topic, item.payload, item.metadata, item.size, False)

    def all_acked(self) -> bool:
        """Every message acknowledged by the far side."""
        return self._left == 0

    def ack(self, i: int) -> None:
        """The far side acknowledged message ``i``: its row need not be written, and once
        every message is acknowledged the append is answered (before its commit)."""
        if not self.acked[i]:
            self.acked[i] = True  # before the answer: the writer must see it set
            self._left -= 1
            if self._left == 0 and not self.answer.done():
                self.answer.set_result(None)

    def committed(self, written: frozenset[int], exc: BaseException | None) -> None:
        """The unit ran (``exc``: it failed and wrote nothing): answer the append unless the
        far side did first, and tell the relay what was written."""
        self.written = written
        if self.offered and not self.answer.done():
            if exc is None:
                self.answer.set_result(None)
            else:
                self.answer.set_exception(exc)
        lane = self.outbox.lane
        if lane is not None:
            lane.committed(self)


class Lane(Protocol):
    """A relay that takes appends in memory while it is caught up (the fast lane).

    :meth:`offer` is called on the loop's thread once the append's sequence numbers were
    given, before its unit is queued (a commit window later while :meth:`quick` says acks
    come within it, so the ack has that long to come first). When it returns True the relay
    sends the messages (in sequence order, after everything it sent before) and calls
    :meth:`Handover.ack` for each acknowledged one. The unit still commits the rows whose ack
    has not come when it runs (a send that fails is then resent from the table, as any row).
    :meth:`close` says a row went through the table: take nothing in memory until it was read
    back. :meth:`committed` is called once the unit ran. :meth:`quick` says whether acks came
    within ``within_s`` seconds lately.
    """

    def offer(self, hand: Handover) -> bool: ...

    def close(self) -> None: ...

    def committed(self, hand: Handover) -> None: ...

    def quick(self, within_s: float) -> bool: ...
