"""The inbox database (``<data-dir>/inbox.db``): schema steps and the SQL shared by the running
inbox (:mod:`edge_runtime.inbox.store`) and the ``deadletters`` command, which works on the
file directly.

Tables:

* ``messages``: one row per stored event, in arrival order (``seq``), with its retry state
  (``attempts``, next attempt as monotonic ms plus boot id) and its expiry (monotonic ms plus
  boot id; ``ttl_ms`` is what remained on arrival);
* ``seen``: ``(sub_key, event_id)`` of recent events, for dedup; bounded in time and count;
* ``backlog``: messages and bytes per subscription, kept by triggers so no insert counts rows;
* ``deadletters``: parked events with the reason, the attempts and the times.

Never edit a released step: add one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from edge_runtime.support.sqlitedb import Migration

__all__ = [
    "DB_NAME",
    "FILE_NAME",
    "MESSAGE_COLUMNS",
    "MIGRATIONS",
    "DeadLetterRow",
    "list_dead",
    "park",
    "prune_seen",
    "replay_dead",
    "seen_bound",
]

FILE_NAME = "inbox.db"
DB_NAME = "inbox"

MIGRATIONS = [
    Migration(
        1,
        """
        CREATE TABLE messages (
            seq INTEGER PRIMARY KEY,
            sub_key TEXT NOT NULL,
            topic TEXT NOT NULL,
            data BLOB NOT NULL,
            metadata TEXT NOT NULL,          -- JSON object of strings
            event_id TEXT,
            size INTEGER NOT NULL,           -- bytes counted against the backlog limit
            arrived_ms INTEGER NOT NULL,     -- unix ms, wall clock: for people only
            ttl_ms INTEGER,                  -- remaining lifetime on arrival; NULL: none
            ttl_boot TEXT,                   -- boot id ttl_deadline_ms is valid in
            ttl_deadline_ms INTEGER,         -- monotonic ms of expiry
            attempts INTEGER NOT NULL DEFAULT 0,
            next_boot TEXT,                  -- boot id next_mono_ms is valid in
            next_mono_ms INTEGER,            -- monotonic ms of the next attempt
            first_attempt_ms INTEGER,        -- unix ms
            last_error TEXT
        );
        CREATE INDEX messages_sub_seq ON messages(sub_key, seq);
        CREATE INDEX messages_ttl_boot ON messages(ttl_boot) WHERE ttl_boot IS NOT NULL;

        CREATE TABLE seen (
            sub_key TEXT NOT NULL,
            event_id TEXT NOT NULL,
            seen_ms INTEGER NOT NULL,        -- unix ms
            PRIMARY KEY (sub_key, event_id)
        ) WITHOUT ROWID;
        CREATE INDEX seen_sub_time ON seen(sub_key, seen_ms);

        CREATE TABLE backlog (
            sub_key TEXT NOT NULL PRIMARY KEY,
            messages INTEGER NOT NULL,
            bytes INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE TRIGGER messages_counted AFTER INSERT ON messages BEGIN
            INSERT INTO backlog(sub_key, messages, bytes) VALUES (NEW.sub_key, 1, NEW.size)
            ON CONFLICT(sub_key) DO UPDATE SET
                messages = messages + 1, bytes = bytes + excluded.bytes;
        END;
        CREATE TRIGGER messages_uncounted AFTER DELETE ON messages BEGIN
            UPDATE backlog SET messages = messages - 1, bytes = bytes - OLD.size
            WHERE sub_key = OLD.sub_key;
        END;

        CREATE TABLE deadletters (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            sub_key TEXT NOT NULL,
            topic TEXT NOT NULL,
            data BLOB NOT NULL,
            metadata TEXT NOT NULL,
            event_id TEXT,
            size INTEGER NOT NULL,
            arrived_ms INTEGER NOT NULL,
            attempts INTEGER NOT NULL,
            first_attempt_ms INTEGER,
            parked_ms INTEGER NOT NULL,
            reason TEXT NOT NULL,
            last_error TEXT
        );
        """,
        "messages, seen ids, backlog counts, dead letters",
    ),
]

MESSAGE_COLUMNS = (
    "seq, sub_key, topic, data, metadata, event_id, size, arrived_ms, ttl_boot,"
    " ttl_deadline_ms, attempts, next_boot, next_mono_ms, first_attempt_ms, last_error"
)
_DEAD_COLUMNS = (
    "id, sub_key, topic, event_id, size, arrived_ms, attempts, first_attempt_ms, parked_ms,"
    " reason, last_error"
)
_IN_CHUNK = 500


@dataclass(frozen=True, slots=True)
class DeadLetterRow:
    """A parked event as listed (without its bytes)."""

    id: int
    sub_key: str
    topic: str
    event_id: str | None
    size: int
    arrived_ms: int
    attempts: int
    first_attempt_ms: int | None
    parked_ms: int
    reason: str
    last_error: str | None


def park(
    conn: sqlite3.Connection, seq: int, *, reason: str, error: str | None, attempts: int,
    now_ms: int,
) -> int | None:
    """Move message ``seq`` to ``deadletters``; the new id (``None`` if the row is gone)."""
    cur = conn.execute(
        "INSERT INTO deadletters(sub_key, topic, data, metadata, event_id, size, arrived_ms,"
        " attempts, first_attempt_ms, parked_ms, reason, last_error)"
        " SELECT sub_key, topic, data, metadata, event_id, size, arrived_ms, ?,"
        " first_attempt_ms, ?, ?, ? FROM messages WHERE seq = ?",
        (attempts, now_ms, reason, error, seq),
    )
    if cur.rowcount == 0:
        return None
    dead_id = cur.lastrowid
    conn.execute("DELETE FROM messages WHERE seq = ?", (seq,))
    return dead_id


def seen_bound(conn: sqlite3.Connection, sub_key: str, *, keep: int, cutoff_ms: int) -> int:
    """The newest ``seen_ms`` to forget for ``sub_key``: older than ``cutoff_ms``, or beyond
    the newest ``keep`` ids."""
    found = conn.execute(
        "SELECT seen_ms FROM seen WHERE sub_key = ? ORDER BY seen_ms DESC LIMIT 1 OFFSET ?",
        (sub_key, keep),
    ).fetchone()
    return max(cutoff_ms - 1, int(found[0]) if found else cutoff_ms - 1)


def prune_seen(conn: sqlite3.Connection, sub_key: str, upto: int, chunk: int) -> tuple[int, bool]:
    """Forget about ``chunk`` of ``sub_key``'s ids seen at or before ``upto`` (oldest first;
    ties go together); the number forgotten and whether none is left to forget."""
    found = conn.execute(
        "SELECT seen_ms FROM seen WHERE sub_key = ? AND seen_ms <= ? ORDER BY seen_ms"
        " LIMIT 1 OFFSET ?", (sub_key, upto, chunk),
    ).fetchone()
    limit = upto if found is None else int(found[0])
    n = conn.execute("DELETE FROM seen WHERE sub_key = ? AND seen_ms <= ?", (sub_key, limit))
    return int(n.rowcount), found is None


def list_dead(conn: sqlite3.Connection, limit: int = -1) -> list[DeadLetterRow]:
    """Parked events, oldest first (``limit`` < 0: all)."""
    rows = conn.execute(
        f"SELECT {_DEAD_COLUMNS} FROM deadletters ORDER BY id LIMIT ?", (limit,)
    ).fetchall()
    return [DeadLetterRow(*row) for row in rows]


def replay_dead(conn: sqlite3.Connection, ids: Sequence[int] | None, now_ms: int) -> int:
    """Move parked events back to ``messages`` (``None``: all), each at the end of its
    subscription's queue with no attempts and no expiry; the number moved. Run inside one
    transaction."""
    insert = (
        "INSERT INTO messages(sub_key, topic, data, metadata, event_id, size, arrived_ms)"
        " SELECT sub_key, topic, data, metadata, event_id, size, ? FROM deadletters"
    )
    if ids is None:
        moved = conn.execute(insert + " ORDER BY id", (now_ms,)).rowcount
        conn.execute("DELETE FROM deadletters")
        return int(moved)
    moved = 0
    unique = sorted(set(ids))
    for i in range(0, len(unique), _IN_CHUNK):
        chunk = unique[i:i + _IN_CHUNK]
        marks = ",".join("?" * len(chunk))
        moved += conn.execute(
            f"{insert} WHERE id IN ({marks}) ORDER BY id", (now_ms, *chunk)
        ).rowcount
        conn.execute(f"DELETE FROM deadletters WHERE id IN ({marks})", chunk)
    return moved
