"""The group-commit writer: one thread owns a SQLite write connection and commits in batches.

Callers on an asyncio loop :meth:`GroupCommitWriter.submit` a *unit of work*, a callable that
takes the connection and returns a value or raises. The thread takes everything queued (and,
with a commit window, while writes keep coming, waits that long for more), runs the units inside
one ``BEGIN IMMEDIATE ... COMMIT``, each inside its own ``SAVEPOINT`` so that a unit that raises is
rolled back alone, then commits once (one fsync per batch) and only then resolves each caller's
future on its loop. *Acknowledged means durable*: no future completes before its COMMIT returned.

Concurrency rules:

- ``submit`` is called on an event loop thread; units run on the writer thread, one at a time,
  in submission order. A unit must use only the connection it is given and must not commit,
  roll back or open its own transaction (savepoints of its own are fine).
- A unit's exception goes to its own future. sqlite3 exceptions are translated here:
  ``SQLITE_FULL`` (and a refused :class:`~edge_runtime.support.disk.DiskBudget` check) become
  :class:`~edge_runtime.errors.StorageFullError`, any other sqlite3 error becomes
  :class:`DBError`. Other exceptions are passed through unchanged.
- If SQLite aborts the whole transaction because of one unit (a full disk does), that unit gets
  the error and the others run again in a fresh transaction: a unit must depend only on the
  database, not on having run before. If the COMMIT fails, every unit in the batch gets the
  error.
- Cancelling the awaiting caller does not take a queued unit back: it may still commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from edge_runtime.errors import StorageFullError
from edge_runtime.observability.metrics import DB_COMMITS, DB_ROWS, STORAGE_FULL
from edge_runtime.support.disk import DiskBudget

T = TypeVar("T")
Unit = Callable[[sqlite3.Connection], T]

log = logging.getLogger(__name__)

# Bounds one transaction so a burst cannot hold the write lock (and its memory) for long.
MAX_BATCH = 512


class DBError(Exception):
    """A SQLite operation failed for a reason other than a full disk (cause chained).

    The module that owns the SQL translates it into its block's own error.
    """


def translate(exc: BaseException, *, db: str) -> BaseException:
    """Map a sqlite3 exception to :class:`StorageFullError` or :class:`DBError`; others as-is."""
    if not isinstance(exc, sqlite3.Error):
        return exc
    if _is_full(exc):
        STORAGE_FULL.labels(db=db).inc()
        err: Exception = StorageFullError(f"database {db!r}: the disk is full ({exc})")
    else:
        err = DBError(f"database {db!r}: {exc}")
    err.__cause__ = exc
    return err


def _is_full(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int) and code & 0xFF == sqlite3.SQLITE_FULL:
        return True
    return "database or disk is full" in str(exc)


@dataclass(slots=True)
class _Job:
    fn: Callable[[sqlite3.Connection], Any]
    size: int
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    durable: bool


_Outcome = tuple[_Job, Any, BaseException | None]
_STOP = object()


class GroupCommitWriter:
    """Owns ``conn`` on a dedicated thread and commits submitted units in batches.

    ``lock``, when given, is held for each batch (an in-memory database shares one connection
    between the writer and the reader). ``commits`` and ``units`` count committed batches and
    committed units (also exported as ``DB_COMMITS`` / ``DB_ROWS`` with label ``db=name``).
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        name: str,
        commit_window_ms: float = 0.0,
        disk_budget: DiskBudget | None = None,
        lock: threading.Lock | None = None,
        max_batch: int = MAX_BATCH,
        durable: bool | None = None,
    ) -> None:
        self._conn = conn
        # None: the connection's synchronous setting is left alone (in-memory databases).
        self.durable = durable
        self._synchronous_full = durable
        self.name = name
        self._window_s = max(0.0, commit_window_ms) / 1000.0
        self._budget = disk_budget
        self._lock: contextlib.AbstractContextManager[Any] = (
            lock if lock is not None else contextlib.nullcontext()
        )
        self._max_batch = max(1, max_batch)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._state = threading.Lock()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"sqlite-writer-{name}", daemon=True)
        self.commits = 0
        self.units = 0
        self._last_commit = float("-inf")

    def start(self) -> None:
        """Start the thread (once)."""
        self._thread.start()

    def submit(self, fn: Unit[T], size: int = 0, durable: bool | None = None) -> asyncio.Future[T]:
        """Queue ``fn``; the returned future resolves after the batch holding it committed.

        ``size`` estimates the bytes the unit adds (checked against the disk budget; 0 skips the
        check, so deletes still work on a full disk). ``durable`` overrides the database's
        durability for this unit: ``True`` has its batch fsynced at commit (``synchronous =
        FULL``), ``False`` lets it commit without an fsync (``NORMAL``: it survives a crash of
        the process, not a power cut). A batch is fsynced when any unit in it asks for it.
        Raises :class:`DBError` once stopping. Must be called on the running loop that will
        await the future.
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        with self._state:
            if self._stopping:
                raise DBError(f"database {self.name!r} is closed")
            self._queue.put(_Job(fn, size, loop, fut,
                                 bool(self.durable) if durable is None else durable))
        return fut

    def stop(self) -> None:
        """Run everything already queued, then stop the thread. Blocking; idempotent."""
        with self._state:
            if not self._stopping:
                self._stopping = True
                self._queue.put(_STOP)
        if self._thread.is_alive():
            self._thread.join()

    # --- the writer thread -------------------------------------------------------------------

    def _run(self) -> None:
        stop = False
        batch: list[_Job] = []
        try:
            while not stop:
                item = self._queue.get()
                if item is _STOP:
                    break
                batch = [item]
                stop = self._collect(batch)
                with self._lock:
                    outcomes = self._execute(batch)
                self._last_commit = time.monotonic()
                _resolve_all(outcomes)
                batch = []
        except BaseException as exc:  # a bug here must not leave callers waiting forever
            log.exception("sqlite writer for %s crashed", self.name)
            err = DBError(f"database {self.name!r}: writer thread failed: {exc!r}")
            with self._state:
                self._stopping = True
            self._fail_pending(batch, err)
            raise

    def _collect(self, batch: list[_Job]) -> bool:
        """Add queued jobs to ``batch`` (waiting up to the window); True when told to stop.

        The window is waited only while writes are frequent (the previous commit ended less
        than a window ago): a lone write after a quiet spell commits at once, so the window
        costs latency only at rates where it saves commits (and flash writes)."""
        now = time.monotonic()
        deadline = now + self._window_s if now - self._last_commit < self._window_s else now
        while len(batch) < self._max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    return False
            if item is _STOP:
                return True
            batch.append(item)
        return False

    def _execute(self, batch: list[_Job]) -> list[_Outcome]:
        outcomes: list[_Outcome] = []
        pending = batch
        while pending:
            done, pending = self._transaction(pending)
            outcomes.extend(done)
        return outcomes

    def _transaction(self, jobs: list[_Job]) -> tuple[list[_Outcome], list[_Job]]:
        """Run ``jobs`` in one transaction; return outcomes and jobs left for a fresh one."""
        conn = self._conn
        try:
            if self.durable is not None:
                full = any(job.durable for job in jobs)
                if full != self._synchronous_full:
                    conn.execute(f"PRAGMA synchronous = {'FULL' if full else 'NORMAL'}")
                    self._synchronous_full = full
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            err = translate(exc, db=self.name)
            return [(job, None, err) for job in jobs], []
        ok: list[_Outcome] = []
        failed: list[_Outcome] = []
        for i, job in enumerate(jobs):
            if job.size and self._budget is not None:
                try:
                    self._budget.check(job.size)
                except StorageFullError as exc:
                    STORAGE_FULL.labels(db=self.name).inc()
                    failed.append((job, None, exc))
                    continue
            try:
                conn.execute("SAVEPOINT unit")
                result = job.fn(conn)
            except Exception as exc:  # noqa: BLE001 - any unit failure belongs to its caller
                err = translate(exc, db=self.name)
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK TO unit")
                        conn.execute("RELEASE unit")
                    except sqlite3.Error:
                        log.exception("rollback to savepoint failed on %s", self.name)
                        self._rollback()
                if not conn.in_transaction:
                    # The whole transaction is gone (SQLite aborts it on some errors, such as
                    # a full disk): this unit fails, the others run again in a fresh one.
                    redo = [o[0] for o in ok]
                    return [*failed, (job, None, err)], [*redo, *jobs[i + 1:]]
                failed.append((job, None, err))
            else:
                conn.execute("RELEASE unit")
                ok.append((job, result, None))
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            err = translate(exc, db=self.name)
            self._rollback()
            return [*failed, *[(o[0], None, err) for o in ok]], []
        if ok:
            self.commits += 1
            self.units += len(ok)
            DB_COMMITS.labels(db=self.name).inc()
            DB_ROWS.labels(db=self.name).inc(len(ok))
        return [*failed, *ok], []

    def _rollback(self) -> None:
        try:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            log.exception("rollback failed on %s", self.name)

    def _fail_pending(self, batch: list[_Job], err: BaseException) -> None:
        for job in batch:
            _resolve(job, None, err)
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not _STOP:
                _resolve(item, None, err)


def _resolve_all(outcomes: list[_Outcome]) -> None:
    """Settle a batch with one wake-up per event loop (not one per unit: a batch may hold
    hundreds, and each wake-up is a syscall and a loop iteration)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome[0].loop, []).append(outcome)
    for loop, group in by_loop.items():
        # A closed loop raises RuntimeError: nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle_all, group)


def _settle_all(outcomes: list[_Outcome]) -> None:
    for job, result, exc in outcomes:
        _settle(job.future, result, exc)


def _resolve(job: _Job, result: Any, exc: BaseException | None) -> None:
    # A closed loop raises RuntimeError: nobody is waiting any more.
    with contextlib.suppress(RuntimeError):
        job.loop.call_soon_threadsafe(_settle, job.future, result, exc)


def _settle(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)
