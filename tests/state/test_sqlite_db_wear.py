"""``support.sqlitedb`` settings for flash wear: ``write_soon`` (work that rides in the next
commit), ``page_size`` of new files, ``wal_autocheckpoint``."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

from edge_runtime.support.sqlitedb import Database, Migration

SCHEMA = [Migration(1, "CREATE TABLE t(k TEXT PRIMARY KEY, v TEXT);", "t")]


def insert(k: str) -> Callable[[sqlite3.Connection], int]:
    def unit(conn: sqlite3.Connection) -> int:
        return int(conn.execute("INSERT INTO t(k, v) VALUES(?, 'v')", (k,)).rowcount)

    return unit


async def keys(db: Database) -> list[str]:
    return await db.read(lambda c: [r[0] for r in c.execute("SELECT k FROM t ORDER BY k")])


async def test_write_soon_rides_in_the_next_commit(tmp_path: Path) -> None:
    db = Database(tmp_path / "t.db", name="soon.db", migrations=SCHEMA)
    await db.open()
    try:
        await db.write(insert("a"))
        commits = db.writer.commits
        soon = db.write_soon(lambda c: c.execute("DELETE FROM t WHERE k = 'a'").rowcount,
                             linger_s=30)
        await asyncio.sleep(0.05)
        assert not soon.done()
        assert await keys(db) == ["a"]  # not committed yet
        assert await db.write(insert("b")) == 1
        assert await soon == 1
        assert db.writer.commits == commits + 1  # one commit for both
        assert await keys(db) == ["b"]
    finally:
        await db.close()


async def test_write_soon_alone_commits_after_its_linger(tmp_path: Path) -> None:
    db = Database(tmp_path / "t.db", name="soon.db", migrations=SCHEMA)
    await db.open()
    try:
        loop = asyncio.get_running_loop()
        start = loop.time()
        futures = [db.write_soon(insert(f"k{i}"), linger_s=0.2) for i in range(5)]
        assert await asyncio.gather(*futures) == [1] * 5
        assert loop.time() - start >= 0.19
        assert await keys(db) == [f"k{i}" for i in range(5)]
    finally:
        await db.close()


async def test_close_commits_what_waits(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    db = Database(path, name="soon.db", migrations=SCHEMA)
    await db.open()
    soon = db.write_soon(insert("x"), linger_s=60)
    await db.close()
    assert await soon == 1
    again = Database(path, name="soon.db", migrations=SCHEMA)
    await again.open()
    try:
        assert await keys(again) == ["x"]
    finally:
        await again.close()


async def test_page_size_for_new_files_only(tmp_path: Path) -> None:
    def page_size(c: sqlite3.Connection) -> int:
        return int(c.execute("PRAGMA page_size").fetchone()[0])

    def checkpoint_pages(c: sqlite3.Connection) -> int:
        return int(c.execute("PRAGMA wal_autocheckpoint").fetchone()[0])

    small = Database(tmp_path / "small.db", name="small.db", migrations=SCHEMA, page_size=1024,
                     wal_autocheckpoint=3000)
    await small.open()
    assert await small.read(page_size) == 1024
    assert await small.write(checkpoint_pages) == 3000
    await small.close()
    old = Database(tmp_path / "old.db", name="old.db", migrations=SCHEMA)
    await old.open()
    await old.close()
    reopened = Database(tmp_path / "old.db", name="old.db", migrations=SCHEMA, page_size=1024)
    await reopened.open()
    try:
        assert await reopened.read(page_size) == 4096  # WAL: an existing file keeps its size
        await reopened.write(insert("y"))
    finally:
        await reopened.close()


async def test_submit_carries_what_waits(tmp_path: Path) -> None:
    db = Database(tmp_path / "t.db", name="soon.db", migrations=SCHEMA)
    await db.open()
    try:
        soon = db.write_soon(insert("a"), linger_s=30)
        commits = db.writer.commits
        assert await db.submit(insert("b")) == 1
        assert await soon == 1
        assert db.writer.commits == commits + 1
    finally:
        await db.close()
