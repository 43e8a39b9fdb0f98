"""``state.sqlite`` schema steps, applied in order by ``support.sqlitedb.Database``.

The version is kept in ``_meta`` under ``schema_version:<table>``, so several state components
may share one file with different ``tableName`` values. Never edit a released step: add one.
"""

from __future__ import annotations

from edge_runtime.cloudsync.changelog import DDL as CHANGELOG_DDL
from edge_runtime.support.sqlitedb import Migration

__all__ = ["migrations"]


def migrations(table: str) -> list[Migration]:
    """The steps for the state table ``table`` (already validated as ``[A-Za-z0-9_]+``)."""
    return [
        Migration(
            1,
            f"""
            CREATE TABLE IF NOT EXISTS "{table}" (
                key TEXT NOT NULL PRIMARY KEY,
                value BLOB NOT NULL,
                is_binary INTEGER NOT NULL,
                etag TEXT NOT NULL,
                expire_at INTEGER NULL,   -- unix ms, wall clock; NULL never expires
                update_at INTEGER NOT NULL  -- unix ms, wall clock
            );
            CREATE INDEX IF NOT EXISTS "{table}_expire_at" ON "{table}"(expire_at)
                WHERE expire_at IS NOT NULL;
            """,
            "state table",
        ),
        # Shared by the stores of one file (IF NOT EXISTS); empty unless cloud sync lists
        # the store (edge_runtime.cloudsync.changelog).
        Migration(2, CHANGELOG_DDL, "cloud sync change-log"),
    ]
