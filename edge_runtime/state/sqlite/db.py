"""All of ``state.sqlite``'s SQL, run through a group-committed :class:`Database`.

Semantics are those of :mod:`edge_runtime.state` and contract §8.1. Each write is a unit of
work on the writer thread: one per ``set``/``delete``, one per item of ``bulk_set`` (so items
succeed or fail independently) and one for a whole ``multi`` (so it is atomic). Expiry is wall
clock (unix ms) read from the injected clock when the unit runs, as in Dapr; reads filter
expired rows out and the cleanup loop deletes them physically.

sqlite3 and :class:`DBError` never leave this module: they become :class:`StateStoreError`
(or :class:`StorageFullError`, which passes through).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from edge_runtime.cloudsync.changelog import ChangeLog
from edge_runtime.errors import StorageFullError
from edge_runtime.observability.metrics import STATE_EXPIRED_DELETED
from edge_runtime.state import (
    Concurrency,
    DeleteRequest,
    ETagMismatchError,
    GetResponse,
    SetRequest,
    StateError,
    StateStoreError,
)
from edge_runtime.state._common import expire_at, has_etag, new_etag
from edge_runtime.support.sqlitedb import Database, DBError, get_meta, set_meta
from edge_runtime.support.sqlmarks import in_list

__all__ = ["StateDB"]

T = TypeVar("T")
Clock = Callable[[], float]
Operation = SetRequest | DeleteRequest

log = logging.getLogger(__name__)

_IN_CHUNK = 500  # keys per SELECT ... IN (...), well under SQLite's variable limit
_CLEANUP_CHUNK = 1000  # expired rows deleted per unit, so writers interleave with a big cleanup
_ROW_OVERHEAD = 96  # bytes a row costs beyond its key and value, for the disk budget


class StateDB:
    """The state table ``table`` in ``db``. Coroutine-safe; ``db`` must be open."""

    def __init__(
        self, db: Database, table: str, *, store: str, timeout_s: float, clock: Clock
    ) -> None:
        self.db = db
        self.table = table
        self.store = store
        self._timeout = timeout_s
        self._clock = clock
        # Set by cloud sync for a store it lists: every change is logged in its transaction.
        self.changelog: ChangeLog | None = None
        self._cleanup_key = f"last-cleanup:{table}"
        t = f'"{table}"'
        cols = "key, value, is_binary, etag, expire_at, update_at"
        self._sql_get = f"SELECT key, value, is_binary, etag, expire_at FROM {t} WHERE key IN "
        self._sql_upsert = (
            f"INSERT INTO {t}({cols}) VALUES(?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET"
            " value = excluded.value, is_binary = excluded.is_binary, etag = excluded.etag,"
            " expire_at = excluded.expire_at, update_at = excluded.update_at"
        )
        # first-write: replace only an expired row; a live one makes the upsert a no-op.
        self._sql_first = (
            self._sql_upsert + f" WHERE {t}.expire_at IS NOT NULL AND {t}.expire_at <= ?"
        )
        self._sql_update = (
            f"UPDATE {t} SET value = ?, is_binary = ?, etag = ?, expire_at = ?, update_at = ?"
            " WHERE key = ? AND etag = ? AND (expire_at IS NULL OR expire_at > ?)"
        )
        self._sql_delete = f"DELETE FROM {t} WHERE key = ?"
        self._sql_delete_etag = (
            f"DELETE FROM {t} WHERE key = ? AND etag = ? AND (expire_at IS NULL OR expire_at > ?)"
        )
        self._sql_expired = (
            f"DELETE FROM {t} WHERE rowid IN"
            f" (SELECT rowid FROM {t} WHERE expire_at IS NOT NULL AND expire_at <= ? LIMIT ?)"
        )

    # --- reads -------------------------------------------------------------------------------

    async def get(self, key: str) -> GetResponse | None:
        """The live row for ``key`` or ``None``."""
        found = await self.bulk_get([key])
        return found.get(key)

    async def bulk_get(self, keys: Sequence[str]) -> dict[str, GetResponse]:
        """Live rows for ``keys`` (one read transaction, so one consistent snapshot)."""
        unique = list(dict.fromkeys(keys))
        if not unique:
            return {}

        def read(conn: sqlite3.Connection) -> dict[str, GetResponse]:
            now = self._now_ms()
            out: dict[str, GetResponse] = {}
            conn.execute("BEGIN")
            for i in range(0, len(unique), _IN_CHUNK):
                chunk = unique[i:i + _IN_CHUNK]
                marks, params = in_list(chunk)
                for key, value, is_binary, etag, exp in conn.execute(
                    f"{self._sql_get}({marks})", params
                ):
                    if exp is None or exp > now:
                        out[key] = GetResponse(bytes(value), etag, bool(is_binary), _utc(exp))
            conn.execute("COMMIT")
            return out

        return await self._guard(self.db.read(read), "get")

    # --- writes ------------------------------------------------------------------------------

    async def set(self, request: SetRequest) -> None:
        """Save one key; raises :class:`ETagMismatchError` per the etag / first-write rules."""
        expire_at(request.ttl_seconds, 0.0)  # reject a bad ttl before queueing
        await self._guard(
            self.db.write(lambda conn: self._set(conn, request), size=_size(request)), "save"
        )
        self._changed()

    async def bulk_set(self, requests: Sequence[SetRequest]) -> list[StateError | None]:
        """Save each request as its own unit; a StorageFullError is raised after all ran."""
        outcomes = await asyncio.gather(*(self.set(r) for r in requests), return_exceptions=True)
        results: list[StateError | None] = []
        full: StorageFullError | None = None
        for outcome in outcomes:
            if isinstance(outcome, StateError) or outcome is None:
                results.append(outcome)
            elif isinstance(outcome, StorageFullError):
                full = outcome
            else:
                raise outcome
        if full is not None:
            raise full
        return results

    async def delete(self, request: DeleteRequest) -> None:
        """Delete one key; with an etag only the live row holding it, else a mismatch."""
        await self._guard(self.db.write(lambda conn: self._delete(conn, request)), "delete")
        self._changed()

    async def multi(self, operations: Sequence[Operation]) -> None:
        """All operations in order in one unit: all commit or none do."""
        if not operations:
            return
        ops = list(operations)
        for op in ops:
            if isinstance(op, SetRequest):
                expire_at(op.ttl_seconds, 0.0)

        def apply(conn: sqlite3.Connection) -> None:
            for op in ops:
                if isinstance(op, SetRequest):
                    self._set(conn, op)
                else:
                    self._delete(conn, op)

        size = sum(_size(op) for op in ops if isinstance(op, SetRequest))
        await self._guard(self.db.write(apply, size=size), "transaction")
        self._changed()

    def _changed(self) -> None:
        if self.changelog is not None:
            self.changelog.notify()

    def _set(self, conn: sqlite3.Connection, req: SetRequest) -> None:
        now = self._now_ms()
        expiry = expire_at(req.ttl_seconds, now / 1000)
        exp = None if expiry is None else round(expiry * 1000)
        row = (bytes(req.value), int(req.is_binary), new_etag(), exp, now)
        if has_etag(req.etag):
            cur = conn.execute(self._sql_update, (*row, req.key, req.etag, now))
        elif req.concurrency is Concurrency.FIRST_WRITE:
            cur = conn.execute(self._sql_first, (req.key, *row, now))
        else:
            cur = conn.execute(self._sql_upsert, (req.key, *row))
        if cur.rowcount == 0 and (has_etag(req.etag)
                                  or req.concurrency is Concurrency.FIRST_WRITE):
            raise ETagMismatchError(req.key)
        if self.changelog is not None:
            self.changelog.upsert(conn, req.key, row[0], req.is_binary, now / 1000)

    def _delete(self, conn: sqlite3.Connection, req: DeleteRequest) -> None:
        if not has_etag(req.etag):
            cur = conn.execute(self._sql_delete, (req.key,))
        else:
            cur = conn.execute(self._sql_delete_etag, (req.key, req.etag, self._now_ms()))
            if cur.rowcount == 0:
                raise ETagMismatchError(req.key)
        if self.changelog is not None and cur.rowcount:
            self.changelog.delete(conn, req.key, self._now_ms() / 1000)

    # --- cleanup -----------------------------------------------------------------------------

    async def delete_expired(self) -> int:
        """Delete every expired row (in chunks); count them in ``STATE_EXPIRED_DELETED``."""
        total = 0
        while True:
            now = self._now_ms()

            def chunk(conn: sqlite3.Connection, now: int = now) -> int:
                return int(conn.execute(self._sql_expired, (now, _CLEANUP_CHUNK)).rowcount)

            n = await self._guard(self.db.write(chunk), "cleanup")
            total += n
            if n:
                STATE_EXPIRED_DELETED.labels(store=self.store).inc(n)
            if n < _CLEANUP_CHUNK:
                break
        stamp = str(self._now_ms())
        await self._guard(
            self.db.write(lambda conn: set_meta(conn, self._cleanup_key, stamp)), "cleanup"
        )
        return total

    async def run_cleanup(self, interval_s: float) -> None:
        """Delete expired rows every ``interval_s`` until cancelled; failures are logged.

        The last run's time is kept in ``_meta``, so a device that restarts more often than
        the interval still cleans up (the first run comes when the last one is overdue).
        """
        try:
            delay = await self._first_cleanup_delay(interval_s)
        except (StateError, StorageFullError) as exc:
            log.warning("state store %s: reading the last cleanup failed: %s", self.store, exc)
            delay = interval_s
        while True:
            await asyncio.sleep(delay)
            delay = interval_s
            try:
                deleted = await self.delete_expired()
                if deleted:
                    log.info("state store %s: deleted %d expired rows", self.store, deleted)
                    await self.db.reclaim()
            except (StateError, StorageFullError, DBError) as exc:
                log.warning("state store %s: cleanup of expired rows failed: %s", self.store, exc)
            except Exception:  # a bug must not end the loop silently (logged with traceback)
                log.exception("state store %s: cleanup of expired rows failed", self.store)

    async def _first_cleanup_delay(self, interval_s: float) -> float:
        last = await self._guard(self.db.read(lambda c: get_meta(c, self._cleanup_key)), "get")
        now_s = self._clock()
        if last is None:
            stamp = str(round(now_s * 1000))
            await self._guard(
                self.db.write(lambda c: set_meta(c, self._cleanup_key, stamp)), "cleanup"
            )
            return interval_s
        # min(): a wall clock that went backwards must not postpone cleanup for ever.
        return min(interval_s, max(0.0, int(last) / 1000 + interval_s - now_s))

    # --- helpers -----------------------------------------------------------------------------

    def _now_ms(self) -> int:
        return round(self._clock() * 1000)

    async def _guard(self, work: Awaitable[T], what: str) -> T:
        """Await ``work`` within the timeout, translating database errors."""
        try:
            async with asyncio.timeout(self._timeout):
                return await work
        except DBError as exc:
            raise StateStoreError(f"state store {self.store!r}: {what} failed: {exc}") from exc
        except TimeoutError as exc:
            raise StateStoreError(
                f"state store {self.store!r}: {what} timed out after {self._timeout:g}s"
            ) from exc


def _size(req: SetRequest) -> int:
    return len(req.key.encode()) + len(req.value) + _ROW_OVERHEAD


def _utc(ms: Any) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(int(ms) / 1000, tz=UTC)
