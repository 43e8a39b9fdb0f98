"""One SQLite database: a group-commit writer thread and a reader thread over one file.

Shared by every store that keeps a SQLite file (state stores, the outbox, the inbox). A
:class:`Database` owns two connections: a write connection on the group-commit writer thread
(:mod:`edge_runtime.support.sqlitewriter`) and a read connection, so reads never wait for an
fsync. Reads of a file database run on the event loop's thread: a read from SQLite's page cache
takes microseconds, while handing it to a thread cost ~0.3 ms a read under load (the threads
queue for the GIL), which halved HTTP get throughput in ``bench/state_bench.py``. An in-memory
database has one connection shared by the writer and a reader thread under a lock.

:meth:`Database.open` checks the file, quarantines it when corrupt, configures durability and
runs migrations (:mod:`edge_runtime.support.sqlitefile`); then :meth:`Database.write` and
:meth:`Database.read` may be awaited by any number of coroutines at once, until
:meth:`Database.close`.

Errors: :class:`~edge_runtime.errors.ComponentError` from ``open``; :class:`DBError` or
:class:`~edge_runtime.errors.StorageFullError` from ``write``/``read``, plus whatever a unit of
work raises itself. No sqlite3 exception leaves this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from edge_runtime.support.disk import DiskBudget
from edge_runtime.support.sqlitefile import (
    Durability,
    FileOptions,
    Migration,
    get_meta,
    open_file,
    set_meta,
)
from edge_runtime.support.sqlitewriter import DBError, GroupCommitWriter, translate

__all__ = ["DBError", "Database", "Durability", "Migration", "get_meta", "set_meta"]

T = TypeVar("T")

log = logging.getLogger(__name__)

RECLAIM_CHUNK = 2048  # pages per unit of work: ~50 ms of write lock on a small CPU


class Database:
    """A SQLite database with a group-commit writer and a reader thread.

    ``path`` is a file path, or ``None`` for a private in-memory database. ``name`` labels
    metrics and logs. ``schema`` names the ``_meta`` key of the schema version when several
    components share a file. ``quarantine_dir`` defaults to ``<path's folder>/quarantine``.
    ``commit_window_ms`` > 0 makes the writer wait that long for more work before committing.
    ``disk_budget`` is checked before each unit of work that declares a size. ``page_size``
    sets the page size of a new file (an existing one keeps its own); ``wal_autocheckpoint``
    the WAL pages between automatic checkpoints (0 for both: SQLite's defaults).
    """

    def __init__(
        self,
        path: Path | None,
        *,
        name: str,
        migrations: Sequence[Migration] = (),
        durability: Durability = "full",
        quarantine_dir: Path | None = None,
        commit_window_ms: float = 0.0,
        busy_timeout_s: float = 2.0,
        wal: bool = True,
        read_only: bool = False,
        immutable: bool = False,
        schema: str = "",
        disk_budget: DiskBudget | None = None,
        page_size: int = 0,
        wal_autocheckpoint: int = 0,
    ) -> None:
        versions = [m.version for m in migrations]
        if versions != sorted(set(versions)) or any(v < 1 for v in versions):
            raise ValueError("migration versions must be unique, ascending and >= 1")
        read_only = read_only or immutable
        self.options = FileOptions(
            path=path,
            name=name,
            migrations=tuple(migrations),
            durability=durability,
            quarantine_dir=quarantine_dir,
            busy_timeout_ms=max(0, int(busy_timeout_s * 1000)),
            wal=wal and path is not None and not read_only,
            read_only=read_only,
            immutable=immutable,
            schema_key=f"schema_version:{schema}" if schema else "schema_version",
            page_size=page_size,
            wal_autocheckpoint=wal_autocheckpoint,
        )
        self.name = name
        self.path = path
        self.commit_window_ms = commit_window_ms
        self.disk_budget = disk_budget
        self.quarantined: list[str] = []
        self.epoch = ""
        self.schema_version = 0
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None
        self._shared: threading.Lock | None = None
        self._writer: GroupCommitWriter | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._close_task: asyncio.Future[None] | None = None
        self._soon: list[tuple[Callable[[sqlite3.Connection], object], asyncio.Future[Any]]] = []
        self._soon_timer: asyncio.TimerHandle | None = None

    @property
    def writer(self) -> GroupCommitWriter:
        """The writer (for its ``commits``/``units`` counts); raises before :meth:`open`."""
        if self._writer is None:
            raise DBError(f"database {self.name!r} is not open")
        return self._writer

    async def open(self) -> None:
        """Check (quarantining a corrupt file), configure, migrate, start the threads.

        Raises :class:`~edge_runtime.errors.ComponentError` when the file cannot be used.
        """
        opened = await asyncio.to_thread(open_file, self.options)
        self._wconn, self._rconn, self._shared = opened.writer, opened.reader, opened.shared
        self.epoch, self.schema_version = opened.epoch, opened.schema_version
        self.quarantined = opened.quarantined
        self._writer = GroupCommitWriter(
            opened.writer, name=self.name, commit_window_ms=self.commit_window_ms,
            disk_budget=self.disk_budget, lock=self._shared,
            durable=(self.options.durability == "full") if self.options.path is not None
            and not self.options.read_only else None,
        )
        self._writer.start()
        self._reader = ThreadPoolExecutor(1, thread_name_prefix=f"sqlite-reader-{self.name}")

    async def close(self) -> None:
        """Commit queued writes, stop the threads, checkpoint and close. Idempotent."""
        self._submit_soon()
        if self._close_task is None:
            self._close_task = asyncio.ensure_future(asyncio.to_thread(self._close_sync))
        await asyncio.shield(self._close_task)

    def _close_sync(self) -> None:
        if self._writer is not None:
            self._writer.stop()
        if self._reader is not None:
            self._reader.shutdown(wait=True)
        if self._rconn is not None and self._rconn is not self._wconn:
            self._rconn.close()
        if self._wconn is not None:
            if self.options.wal:
                try:
                    self._wconn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                except sqlite3.Error as exc:
                    log.warning("checkpoint of %s at close failed: %s", self.name, exc)
            self._wconn.close()
        self._wconn = self._rconn = None

    async def write(
        self, fn: Callable[[sqlite3.Connection], T], *, size: int = 0,
        durable: bool | None = None,
    ) -> T:
        """Run ``fn`` on the writer inside a group-committed transaction; return after COMMIT.

        ``fn`` runs in its own savepoint: if it raises, only its changes are rolled back and
        its exception is raised here. ``size`` estimates the bytes ``fn`` adds, for the disk
        budget (0: no check, e.g. for deletes). ``durable`` overrides the database's
        durability for this unit (``False``: no fsync needed, e.g. deletes whose loss only
        means a resend). See :mod:`edge_runtime.support.sqlitewriter`.
        """
        return await self.submit(fn, size=size, durable=durable)

    def submit(
        self, fn: Callable[[sqlite3.Connection], T], *, size: int = 0,
        durable: bool | None = None,
    ) -> asyncio.Future[T]:
        """:meth:`write` as a future, queued now (in order with other calls); for a caller
        that must learn the outcome even if it is cancelled while waiting."""
        writer = self.writer
        self._submit_soon()
        return writer.submit(fn, size, durable)

    def write_soon(
        self, fn: Callable[[sqlite3.Connection], T], *, linger_s: float
    ) -> asyncio.Future[T]:
        """Queue ``fn`` to share the commit of the next :meth:`write` (or :meth:`close`), or
        to commit at most ``linger_s`` from now with the others so queued; no fsync of its own.

        For work whose loss in a power cut only repeats something (a delete of a delivered
        row): each commit appends every page it changed to the WAL, so a delete in a commit
        of its own writes its pages once more, while in the next insert's commit it shares
        them. The returned future resolves after the commit, like :meth:`write`'s; a caller
        that awaits it waits up to ``linger_s``. Must be called on the loop that opened the
        database; raises :class:`DBError` once closed.
        """
        if self._writer is None or self._close_task is not None:
            raise DBError(f"database {self.name!r} is not open")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._soon.append((fn, fut))
        if self._soon_timer is None:
            self._soon_timer = loop.call_later(max(0.0, linger_s), self._submit_soon)
        return fut

    def _submit_soon(self) -> None:
        """Hand the units queued by :meth:`write_soon` to the writer (ahead of what comes)."""
        if self._soon_timer is not None:
            self._soon_timer.cancel()
            self._soon_timer = None
        soon, self._soon = self._soon, []
        for fn, outer in soon:
            try:
                inner = self.writer.submit(fn, 0, False)
            except DBError as exc:
                if not outer.done():
                    outer.set_exception(exc)
                continue
            inner.add_done_callback(partial(_chain, outer))

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the read connection; it sees only committed data.

        File databases run ``fn`` inline on the loop's thread (keep it to indexed lookups);
        in-memory ones on the reader thread, under the shared lock.

        ``fn`` may open a read transaction (``BEGIN``) for a consistent snapshot over several
        statements; one left open is rolled back.
        """
        if self._reader is None or self._close_task is not None:
            raise DBError(f"database {self.name!r} is not open")
        if self._shared is None:
            return self._read_sync(fn)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader, self._read_sync, fn)

    def _read_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._rconn
        if conn is None:
            raise DBError(f"database {self.name!r} is closed")
        with self._shared if self._shared is not None else contextlib.nullcontext():
            try:
                return fn(conn)
            except sqlite3.Error as exc:
                raise translate(exc, db=self.name) from exc
            finally:
                if conn.in_transaction:
                    conn.rollback()

    async def reclaim(self, max_pages: int = 0) -> int:
        """Give free pages back to the filesystem (``auto_vacuum=INCREMENTAL``); pages freed.

        Runs in units of at most ``RECLAIM_CHUNK`` pages so writers interleave; ``max_pages``
        0 means every free page. A file made before auto_vacuum was set frees nothing.
        """
        limit = max_pages if max_pages > 0 else None

        def vacuum(conn: sqlite3.Connection) -> tuple[int, int]:
            free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
            n = min(free, RECLAIM_CHUNK, limit - freed if limit is not None else free)
            for _ in range(n):
                # The statement frees one page per step and sqlite3 steps a row-less
                # statement once, so one page per execute (closed to end the statement).
                conn.execute("PRAGMA incremental_vacuum(1)").close()
            after = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
            return free - after, after

        freed = 0
        while True:
            done, left = await self.write(vacuum)
            freed += done
            if not done or not left or (limit is not None and freed >= limit):
                break
        if self.disk_budget is not None and freed:
            self.disk_budget.invalidate()
        return freed


def _chain(outer: asyncio.Future[Any], inner: asyncio.Future[Any]) -> None:
    if outer.done():
        return
    if inner.cancelled():
        outer.cancel()
    elif (exc := inner.exception()) is not None:
        outer.set_exception(exc)
    else:
        outer.set_result(inner.result())
