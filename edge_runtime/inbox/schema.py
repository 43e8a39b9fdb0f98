"""The inbox database (``<data-dir>/inbox.db``): schema steps and the SQL shared by the running
inbox (:mod:`edge_runtime.inbox.store`) and the ``deadletters`` command, which works on the
file directly.

Tables:

* ``messages``: one row per stored event, in arrival order (``seq``), with its retry state
  (``attempts``, next attempt as monotonic ms plus boot id) and its expiry (monotonic ms plus
  boot id; ``ttl_ms`` is what remained on arrival);
* ``seen_log``: ``(sub_key, event_id, seen_ms)`` of recent events in arrival order, for
  dedup; bounded in time and count. Written only at its end (rowid order), so an arrival
  touches its last page, not a random page of an index keyed by a random id; the inbox looks
  ids up in memory (:mod:`edge_runtime.inbox.idset`, rebuilt from this table at open);
* ``backlog``: messages and bytes per subscription, kept by triggers so no insert counts rows.
  Since step 2 a TEMP table of the inbox's write connection (in memory, counted from
  ``messages`` at open by :func:`count_backlog`), so commits no longer write its page;
* ``deadletters``: parked events with the reason, the attempts and the times.

Step 1 made ``seen`` (a WITHOUT ROWID table keyed by ``(sub_key, event_id)``) and ``backlog``
in the file; step 2 moves ``seen``'s rows to ``seen_log`` in ``seen_ms`` order and drops both.

Never edit a released step: add one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from edge_runtime.support.sqlitedb import Migration
from edge_runtime.support.sqlmarks import in_list

__all__ = [
    "DB_NAME",
    "FILE_NAME",
    "MESSAGE_COLUMNS",
    "MIGRATIONS",
    "DeadLetterRow",
    "count_backlog",
    "forget_seen",
    "list_dead",
    "park",
    "replay_dead",
    "seen_after",
    "seen_counts",
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
    Migration(
        2,
        """
        CREATE TABLE seen_log (
            id INTEGER PRIMARY KEY,          -- arrival order
            sub_key TEXT NOT NULL,
            event_id TEXT NOT NULL,
            seen_ms INTEGER NOT NULL         -- unix ms
        );
        INSERT INTO seen_log(sub_key, event_id, seen_ms)
            SELECT sub_key, event_id, seen_ms FROM seen ORDER BY seen_ms, sub_key, event_id;
        DROP TABLE seen;
        DROP TRIGGER messages_counted;
        DROP TRIGGER messages_uncounted;
        DROP TABLE backlog;
        """,
        "dedup ids in arrival order (seen_log); backlog counts in memory",
    ),
]

# The backlog counts of the write connection (step 2): a TEMP table (``temp_store=MEMORY``)
# kept by TEMP triggers on ``messages``, so they stay exact inside each transaction (a rolled
# back insert is uncounted too) and cost no page in the file. Unqualified ``backlog`` in the
# write connection's SQL finds this table.
_BACKLOG_TEMP = (
    """CREATE TEMP TABLE IF NOT EXISTS backlog (
        sub_key TEXT NOT NULL PRIMARY KEY,
        messages INTEGER NOT NULL,
        bytes INTEGER NOT NULL
    )""",
    """CREATE TEMP TRIGGER IF NOT EXISTS messages_counted AFTER INSERT ON main.messages BEGIN
        INSERT INTO backlog(sub_key, messages, bytes) VALUES (NEW.sub_key, 1, NEW.size)
        ON CONFLICT(sub_key) DO UPDATE SET
            messages = messages + 1, bytes = bytes + excluded.bytes;
    END""",
    """CREATE TEMP TRIGGER IF NOT EXISTS messages_uncounted AFTER DELETE ON main.messages BEGIN
        UPDATE backlog SET messages = messages - 1, bytes = bytes - OLD.size
        WHERE sub_key = OLD.sub_key;
    END""",
)

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


def count_backlog(conn: sqlite3.Connection) -> None:
    """Make the write connection's in-memory ``backlog`` (see above) and count it from
    ``messages``. Run on the write connection inside a transaction: at open, and again when
    another connection (the ``deadletters`` command) changed the file."""
    for statement in _BACKLOG_TEMP:
        conn.execute(statement)
    conn.execute("DELETE FROM temp.backlog")
    conn.execute(
        "INSERT INTO temp.backlog(sub_key, messages, bytes)"
        " SELECT sub_key, count(*), sum(size) FROM main.messages GROUP BY sub_key"
    )


def seen_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """``{sub_key: ids remembered}`` in ``seen_log``."""
    rows = conn.execute("SELECT sub_key, count(*) FROM seen_log GROUP BY sub_key").fetchall()
    return {str(k): int(n) for k, n in rows}


def seen_after(
    conn: sqlite3.Connection, after: int, limit: int
) -> list[tuple[int, str, str, int]]:
    """``limit`` rows ``(id, sub_key, event_id, seen_ms)`` of ``seen_log`` after ``after``,
    oldest first."""
    rows = conn.execute(
        "SELECT id, sub_key, event_id, seen_ms FROM seen_log WHERE id > ? ORDER BY id LIMIT ?",
        (after, limit),
    ).fetchall()
    return [(int(i), str(k), str(e), int(ms)) for i, k, e, ms in rows]


def forget_seen(conn: sqlite3.Connection, ids: Sequence[int]) -> int:
    """Delete ``seen_log`` rows by id; the number deleted."""
    n = 0
    for i in range(0, len(ids), _IN_CHUNK):
        marks, params = in_list(ids[i:i + _IN_CHUNK])
        n += conn.execute(f"DELETE FROM seen_log WHERE id IN ({marks})", params).rowcount
    return n


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
