"""The change-log of a state store marked for cloud sync (DESIGN.md §5).

Every state change of a synced store is also written to ``_cloudsync_changes`` in the *same*
SQLite file and the *same* transaction as the change itself (a unit of the group-commit
writer), so a change is either committed with its log row or not at all; transactions across
files would not be atomic in WAL mode. The table is made by the state store's migrations in
every ``state.sqlite`` file (empty unless a ``cloudsync.grpc`` component lists the store);
stores sharing one file share the table, told apart by the ``store`` column. ``seq`` is the
file's AUTOINCREMENT, so (file epoch, seq) names one change for good.

:class:`ChangeLog` is the writer side (called on the writer thread); the cloud client reads
and deletes rows through :mod:`edge_runtime.cloudsync.sources`.
"""

from __future__ import annotations

import asyncio
import sqlite3

from edge_runtime.cloudsync.hlc import HLC

__all__ = ["DDL", "OP_DELETE", "OP_UPSERT", "TABLE", "ChangeLog"]

TABLE = "_cloudsync_changes"
OP_UPSERT = 1
OP_DELETE = 2

DDL = f"""
CREATE TABLE IF NOT EXISTS "{TABLE}" (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    store TEXT NOT NULL,
    op INTEGER NOT NULL,          -- 1 upsert, 2 delete
    key TEXT NOT NULL,            -- as stored (with the store's key prefix)
    value BLOB NULL,
    is_binary INTEGER NOT NULL DEFAULT 0,
    hlc INTEGER NOT NULL,         -- hybrid logical clock (cloudsync.hlc)
    created_at REAL NOT NULL      -- unix seconds, wall clock: for people only
);
CREATE INDEX IF NOT EXISTS "{TABLE}_store" ON "{TABLE}"(store, seq);
"""

_INSERT = (
    f'INSERT INTO "{TABLE}"(store, op, key, value, is_binary, hlc, created_at)'
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)


class ChangeLog:
    """Writes the change rows of store ``store``. ``upsert``/``delete`` run on the writer
    thread inside the change's unit of work; :meth:`notify` runs on the loop after commit."""

    def __init__(self, store: str, hlc: HLC) -> None:
        self.store = store
        self.hlc = hlc
        self.appended = asyncio.Event()

    def upsert(self, conn: sqlite3.Connection, key: str, value: bytes, is_binary: bool,
               now_s: float) -> None:
        """Log a saved value (in the caller's transaction)."""
        conn.execute(_INSERT, (self.store, OP_UPSERT, key, value, int(is_binary),
                               self.hlc.now(), now_s))

    def delete(self, conn: sqlite3.Connection, key: str, now_s: float) -> None:
        """Log a deleted key (in the caller's transaction)."""
        conn.execute(_INSERT, (self.store, OP_DELETE, key, None, 0, self.hlc.now(), now_s))

    def notify(self) -> None:
        """Wake the cloud client: rows were committed."""
        self.appended.set()
