"""``IN (...)`` lists in a few shapes: a relay acknowledging batches of every size from 1 to
300 must not leave a prepared statement per size in its writer connection (sqlite3 caches 128
per connection, ~40 KiB each at a few hundred placeholders: 5 MiB that look like a leak in a
long run). Measured with SQLite's own allocation counter, on a real outbox file."""

from __future__ import annotations

import ctypes
import ctypes.util
import sqlite3
from pathlib import Path

import pytest

from edge_runtime.outbox.store import Item, Outbox, open_database
from edge_runtime.support.sqlmarks import in_list


def _sqlite_memory_used() -> int:
    name = ctypes.util.find_library("sqlite3")
    if name is None:
        pytest.skip("no libsqlite3 to ask")
    lib = ctypes.CDLL(name)
    if lib.sqlite3_libversion_number() != sqlite3.sqlite_version_info[0] * 1000000 + \
            sqlite3.sqlite_version_info[1] * 1000 + sqlite3.sqlite_version_info[2]:
        pytest.skip("the sqlite3 module is built on another SQLite than the system's")
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    return int(lib.sqlite3_memory_used())


def test_in_list_pads_to_powers_of_two() -> None:
    assert in_list([7]) == ("?", [7])
    assert in_list([1, 2, 3]) == ("?,?,?,?", [1, 2, 3, 3])
    marks, params = in_list(list(range(300)))
    assert marks.count("?") == len(params) == 512
    assert set(params) == set(range(300))
    shapes = {in_list(list(range(n)))[0] for n in range(1, 513)}
    assert len(shapes) == 10
    with pytest.raises(ValueError, match="needs a value"):
        in_list([])


async def test_acks_of_every_size_do_not_fill_the_statement_cache(tmp_path: Path) -> None:
    db = open_database(tmp_path / "outbox.db")
    await db.open()
    try:
        box = Outbox(db, "pubsub:test")
        await box.open()
        sizes = range(1, 301)
        await box.append([Item("t", b"x" * 100) for _ in range(sum(sizes))])
        rows = await box.claim(0, sum(sizes))
        await box.ack(rows[:1])  # the statement of size one, and the pages, are in place
        before = _sqlite_memory_used()
        at = 1
        for n in list(sizes)[1:]:
            assert await box.ack(rows[at:at + n]) == n
            at += n
        grown = _sqlite_memory_used() - before
        assert box.count == 0
        # 300 distinct IN lists cost ~5 MiB; 10 shapes a few hundred KiB.
        assert grown < 1_500_000, f"SQLite holds {grown / 2**20:.1f} MiB more after the acks"
    finally:
        await db.close()
