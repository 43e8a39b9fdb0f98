"""The SQLite :class:`~edge_runtime.cloudsync.server.store.CloudStore` (the default).

One file, one group-commit writer (:mod:`edge_runtime.support.sqlitedb`): batches from many
devices share commits, and a batch is acknowledged only after its commit. A stream's cursor
is updated in the same unit of work as its records, so a replay is skipped exactly.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_runtime.cloudsync import hlc as hlcs
from edge_runtime.cloudsync.server.store import (
    HISTORY_AGE_S,
    HISTORY_POINTS,
    ApplyResult,
    Cursor,
    DesiredRow,
    DeviceRow,
    EventRow,
    HistoryRow,
    RecordIn,
    StateRow,
    plan,
)
from edge_runtime.support.sqlitedb import Database, Durability, Migration

if TYPE_CHECKING:
    from edge_runtime.cloudsync.server.store import CloudStore

__all__ = ["SqliteCloudStore", "open_store"]

MIGRATIONS = [
    Migration(
        1,
        """
        CREATE TABLE IF NOT EXISTS devices (
            device_id TEXT PRIMARY KEY, version TEXT NOT NULL DEFAULT '',
            first_seen REAL NOT NULL, last_seen REAL NOT NULL,
            connected INTEGER NOT NULL DEFAULT 0, backlog INTEGER NOT NULL DEFAULT 0,
            records INTEGER NOT NULL DEFAULT 0,
            desired_seq INTEGER NOT NULL DEFAULT 0, desired_acked INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE IF NOT EXISTS cursors (
            device_id TEXT NOT NULL, stream TEXT NOT NULL, epoch TEXT NOT NULL,
            seq INTEGER NOT NULL, PRIMARY KEY (device_id, stream, epoch)
        );
        CREATE TABLE IF NOT EXISTS state (
            device_id TEXT NOT NULL, store TEXT NOT NULL, key TEXT NOT NULL,
            value BLOB NOT NULL, hlc INTEGER NOT NULL, deleted INTEGER NOT NULL,
            updated_at REAL NOT NULL, PRIMARY KEY (device_id, store, key)
        );
        CREATE TABLE IF NOT EXISTS events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, device_id TEXT NOT NULL,
            target TEXT NOT NULL, key TEXT NOT NULL, hlc INTEGER NOT NULL,
            payload BLOB NOT NULL, received_at REAL NOT NULL
        );
        CREATE INDEX IF NOT EXISTS events_device ON events(device_id, seq);
        CREATE TABLE IF NOT EXISTS desired (
            device_id TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
            hlc INTEGER NOT NULL, seq INTEGER NOT NULL, deleted INTEGER NOT NULL,
            PRIMARY KEY (device_id, key)
        );
        CREATE INDEX IF NOT EXISTS desired_seq ON desired(device_id, seq);
        """,
        "cloud store",
    ),
    Migration(
        2,
        """
        CREATE TABLE IF NOT EXISTS history (
            device_id TEXT NOT NULL, store TEXT NOT NULL, key TEXT NOT NULL,
            hlc INTEGER NOT NULL, value BLOB NOT NULL
        );
        CREATE INDEX IF NOT EXISTS history_key ON history(device_id, store, key, hlc);
        """,
        "reported value history",
    ),
]

_UPSERT_STATE = (
    "INSERT INTO state(device_id, store, key, value, hlc, deleted, updated_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(device_id, store, key) DO UPDATE SET"
    " value = excluded.value, hlc = excluded.hlc, deleted = excluded.deleted,"
    " updated_at = excluded.updated_at WHERE excluded.hlc > state.hlc"
)


class SqliteCloudStore:
    """The cloud store in one SQLite file (``path`` ``None``: in memory)."""

    def __init__(self, path: Path | None, *, durability: Durability = "full",
                 commit_window_ms: float = 0.0) -> None:
        self.path = path
        self.db = Database(path, name="cloudstore", migrations=MIGRATIONS,
                           durability=durability, commit_window_ms=commit_window_ms)

    async def open(self) -> None:
        """See :class:`~edge_runtime.cloudsync.server.store.CloudStore`."""
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        await self.db.open()

    async def close(self) -> None:
        """See :class:`~edge_runtime.cloudsync.server.store.CloudStore`."""
        await self.db.close()

    async def hello(self, device_id: str, version: str, backlog: int,
                    now: float) -> list[Cursor]:
        """See :class:`~edge_runtime.cloudsync.server.store.CloudStore`."""
        def unit(conn: sqlite3.Connection) -> list[Cursor]:
            conn.execute(
                "INSERT INTO devices(device_id, version, first_seen, last_seen, connected,"
                " backlog) VALUES (?, ?, ?, ?, 1, ?) ON CONFLICT(device_id) DO UPDATE SET"
                " version = excluded.version, last_seen = excluded.last_seen, connected = 1,"
                " backlog = excluded.backlog",
                (device_id, version, now, now, backlog))
            return [Cursor(s, e, q) for s, e, q in conn.execute(
                "SELECT stream, epoch, seq FROM cursors WHERE device_id = ?", (device_id,))]

        return await self.db.write(unit)

    async def disconnected(self, device_id: str, now: float) -> None:
        """See :class:`~edge_runtime.cloudsync.server.store.CloudStore`."""
        await self.db.write(lambda c: c.execute(
            "UPDATE devices SET connected = 0, last_seen = ? WHERE device_id = ?",
            (now, device_id)), durable=False)

    async def apply(self, device_id: str, stream: str, epoch: str,
                    records: Sequence[RecordIn], now: float) -> ApplyResult:
        """See :class:`~edge_runtime.cloudsync.server.store.CloudStore`."""
        def unit(conn: sqlite3.Connection) -> ApplyResult:
            row = conn.execute(
                "SELECT seq FROM cursors WHERE device_id = ? AND stream = ? AND epoch = ?",
                (device_id, stream, epoch)).fetchone()
            batch = plan(records, int(row[0]) if row else 0)
            conn.executemany(
                "INSERT INTO events(device_id, target, key, hlc, payload, received_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(device_id, r.target, r.key, r.hlc, r.payload, now) for r in batch.events])
            conn.executemany(_UPSERT_STATE, [(device_id, *state, now) for state in batch.states])
            conn.executemany("INSERT INTO history(device_id, store, key, hlc, value)"
                             " VALUES (?, ?, ?, ?, ?)",
                             [(device_id, *point) for point in batch.history])
            conn.execute(
                "INSERT INTO cursors(device_id, stream, epoch, seq) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(device_id, stream, epoch) DO UPDATE SET seq = excluded.seq"
                " WHERE excluded.seq > cursors.seq",
                (device_id, stream, epoch, batch.cursor))
            conn.execute(
                "UPDATE devices SET last_seen = ?, records = records + ?,"
                " backlog = MAX(0, backlog - ?) WHERE device_id = ?",
                (now, batch.applied, batch.applied, device_id))
            oldest = hlcs.pack(int((now - HISTORY_AGE_S) * 1000))
            for store, key in batch.touched:
                conn.execute(
                    "DELETE FROM history WHERE device_id = ? AND store = ? AND key = ? AND"
                    " (hlc < ? OR hlc <= (SELECT hlc FROM history WHERE device_id = ? AND"
                    " store = ? AND key = ? ORDER BY hlc DESC LIMIT 1 OFFSET ?))",
                    (device_id, store, key, oldest, device_id, store, key, HISTORY_POINTS))
            return batch.result()

        size = sum(len(r.payload) + len(r.key) + 64 for r in records)
        return await self.db.write(unit, size=size)

    async def devices(self) -> list[DeviceRow]:
        """See :class:`~edge_runtime.cloudsync.server.store.CloudStore`."""
        def read(conn: sqlite3.Connection) -> list[DeviceRow]:
            return [DeviceRow(d, v, f, ls, bool(c), b, n, ds, da) for d, v, f, ls, c, b, n, ds, da
                    in conn.execute(
                        "SELECT device_id, version, first_seen, last_seen, connected, backlog,"
                        " records, desired_seq, desired_acked FROM devices ORDER BY device_id")]

        return await self.db.read(read)

    async def state(self, device_id: str, store: str, key: str) -> StateRow | None:
        """See :class:`~edge_runtime.cloudsync.server.store.CloudStore`."""
        def read(conn: sqlite3.Connection) -> Any:
            return conn.execute(
                "SELECT value, hlc, deleted, updated_at FROM state"
                " WHERE device_id = ? AND store = ? AND key = ?",
                (device_id, store, key)).fetchone()

        row = await self.db.read(read)
        if row is None:
            return None
        return StateRow(store, key, bytes(row[0]), int(row[1]), bool(row[2]), float(row[3]))

    async def states(self, device_id: str, limit: int) -> list[StateRow]:
        """See :class:`~edge_runtime.cloudsync.server.store.CloudStore`."""
        def read(conn: sqlite3.Connection) -> list[StateRow]:
            return [StateRow(s, k, bytes(v), h, False, u) for s, k, v, h, u in conn.execute(
                "SELECT store, key, value, hlc, updated_at FROM state WHERE device_id = ?"
                " AND deleted = 0 ORDER BY store, key LIMIT ?", (device_id, limit))]

        return await self.db.read(read)

    async def events(self, device_id: str, after: int, limit: int) -> list[EventRow]:
        """See :class:`~edge_runtime.cloudsync.server.store.CloudStore`."""
        def read(conn: sqlite3.Connection) -> list[EventRow]:
            return [EventRow(s, device_id, t, k, h, bytes(p), r) for s, t, k, h, p, r in
                    conn.execute(
                        "SELECT seq, target, key, hlc, payload, received_at FROM events"
                        " WHERE device_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                        (device_id, after, limit))]

        return await self.db.read(read)

    async def history(self, device_id: str, store: str, key: str, since: float,
                      limit: int) -> list[HistoryRow]:
        """See :class:`~edge_runtime.cloudsync.server.store.CloudStore`."""
        def read(conn: sqlite3.Connection) -> list[HistoryRow]:
            rows = conn.execute(
                "SELECT hlc, value FROM history WHERE device_id = ? AND store = ? AND key = ?"
                " AND hlc >= ? ORDER BY hlc DESC LIMIT ?",
                (device_id, store, key, hlcs.pack(max(0, int(since * 1000))), limit)).fetchall()
            return [HistoryRow(int(h), bytes(v), hlcs.unpack(int(h))[0] / 1000)
                    for h, v in reversed(rows)]

        return await self.db.read(read)

    async def put_desired(self, device_id: str, key: str, value: bytes, hlc: int,
                          deleted: bool = False) -> DesiredRow | None:
        """See :class:`~edge_runtime.cloudsync.server.store.CloudStore`."""
        def unit(conn: sqlite3.Connection) -> DesiredRow | None:
            row = conn.execute("SELECT hlc FROM desired WHERE device_id = ? AND key = ?",
                               (device_id, key)).fetchone()
            if row is not None and int(row[0]) >= hlc:
                return None
            now_row = conn.execute(
                "INSERT INTO devices(device_id, first_seen, last_seen, desired_seq)"
                " VALUES (?, 0, 0, 1) ON CONFLICT(device_id) DO UPDATE SET"
                " desired_seq = desired_seq + 1 RETURNING desired_seq", (device_id,)).fetchone()
            seq = int(now_row[0])
            stored = b"" if deleted else value
            conn.execute(
                "INSERT INTO desired(device_id, key, value, hlc, seq, deleted)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(device_id, key) DO UPDATE SET"
                " value = excluded.value, hlc = excluded.hlc, seq = excluded.seq,"
                " deleted = excluded.deleted",
                (device_id, key, stored, hlc, seq, int(deleted)))
            return DesiredRow(key, stored, hlc, seq, deleted)

        return await self.db.write(unit, size=len(value) + len(key) + 64)

    async def desired_after(self, device_id: str, seq: int) -> list[DesiredRow]:
        """See :class:`~edge_runtime.cloudsync.server.store.CloudStore`."""
        def read(conn: sqlite3.Connection) -> list[DesiredRow]:
            return [DesiredRow(k, bytes(v), h, s, bool(d)) for k, v, h, s, d in conn.execute(
                "SELECT key, value, hlc, seq, deleted FROM desired WHERE device_id = ?"
                " AND seq > ? ORDER BY seq", (device_id, seq))]

        return await self.db.read(read)

    async def ack_desired(self, device_id: str, seq: int) -> None:
        """See :class:`~edge_runtime.cloudsync.server.store.CloudStore`."""
        await self.db.write(lambda c: c.execute(
            "UPDATE devices SET desired_acked = MAX(desired_acked, ?) WHERE device_id = ?",
            (seq, device_id)))

    async def max_hlc(self) -> int:
        """See :class:`~edge_runtime.cloudsync.server.store.CloudStore`."""
        def read(conn: sqlite3.Connection) -> int:
            return int(conn.execute("SELECT COALESCE(MAX(hlc), 0) FROM desired").fetchone()[0])

        return await self.db.read(read)


def open_store(url: str) -> CloudStore:
    """A store from a URL: ``sqlite:///abs/path.db``, ``sqlite:relative.db``,
    ``sqlite://:memory:`` or a PostgreSQL DSN (``postgresql://...``, needs the ``postgres``
    extra). Raises ``ValueError`` for another scheme."""
    if url.startswith("sqlite:"):
        rest = url[len("sqlite:"):]
        if rest in ("//:memory:", ":memory:"):
            return SqliteCloudStore(None)
        path = rest.removeprefix("//")
        return SqliteCloudStore(Path(path))
    if url.startswith(("postgres://", "postgresql://")):
        from edge_runtime.cloudsync.server.postgres import PostgresCloudStore

        return PostgresCloudStore(url)
    raise ValueError(f"unknown store URL {url!r}: use sqlite:///path/to/cloud.db")
