"""The dedup store (``seen_log`` + the in-memory id set) and the in-memory backlog counts:
restarts, bounds, migration of a step-1 file, and the pages an arrival writes."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

import pytest

from edge_runtime.inbox import InboxFullError, InboxLimits, schema
from edge_runtime.inbox.idset import IdSet, digest
from edge_runtime.inbox.store import PAGE_SIZE
from edge_runtime.support.sqlitefile import _run_script
from tests.inbox.conftest import FakeClock, OpenInbox, received


def _wal_bytes(path: Path) -> int:
    try:
        return os.path.getsize(f"{path}-wal")
    except FileNotFoundError:
        return 0


def _truncate_wal(path: Path) -> None:
    conn = sqlite3.connect(path)
    try:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0
    finally:
        conn.close()


async def test_an_arrival_appends_few_bytes_to_the_wal(open_inbox: OpenInbox) -> None:
    """Each commit appends every page it changed to the WAL: ids in a b-tree keyed by a random
    id changed a page of their own per event (4 KiB each); appended in arrival order, with
    the backlog counts in memory and 2 KiB pages, 20 events share a few pages."""
    inbox = await open_inbox()
    for b in range(30):  # 3,000 ids remembered, as after a few seconds at 1,000 msg/s
        await asyncio.gather(*(inbox.add("p|t", received(b"x" * 200), f"warm-{b}-{i}")
                               for i in range(100)))
    for row in await inbox.head("p|t", 3000):
        await inbox.complete(row)
    _truncate_wal(inbox.path)
    events = 0
    for b in range(10):
        assert all(await asyncio.gather(*(
            inbox.add("p|t", received(b"x" * 200, traceparent="00-" + "a" * 55), f"{b}-{i}")
            for i in range(20))))
        events += 20
    per_event = _wal_bytes(inbox.path) / events
    assert inbox.db.writer.commits < 3000 // 100 * 2 + 10 * 2 + 3000 + 10  # sanity
    assert per_event < 1500, f"{per_event:.0f} bytes of WAL per event"


async def test_a_new_file_gets_small_pages(open_inbox: OpenInbox) -> None:
    inbox = await open_inbox()
    size = await inbox.db.read(lambda c: int(c.execute("PRAGMA page_size").fetchone()[0]))
    assert size == PAGE_SIZE == 2048


async def test_dedup_survives_prune_and_restart(open_inbox: OpenInbox) -> None:
    clock = FakeClock()
    inbox = await open_inbox(clock=clock, limits=InboxLimits(seen_ttl_s=60, seen_max=1000))
    for i in range(5):
        assert await inbox.add("p|t", received("x"), f"old-{i}")
    clock.advance(120)
    for i in range(5):
        assert await inbox.add("p|t", received("x"), f"new-{i}")
    assert await inbox.prune_seen() == 5
    await inbox.close()
    again = await open_inbox(clock=clock, limits=InboxLimits(seen_ttl_s=60, seen_max=1000))
    assert again.seen_memory()[0] == 5
    for i in range(5):
        assert not await again.add("p|t", received("x"), f"new-{i}")
        assert await again.add("p|t", received("x"), f"old-{i}")  # forgotten: stored again
    assert not await again.add("p|t", received("x"), "old-0")


async def test_the_count_bound_holds_without_maintenance(open_inbox: OpenInbox) -> None:
    """Past ``seen_max`` by a tenth a prune starts at once: the ids remembered (and the memory
    they take) stay bounded at any rate, not only every maintenance interval."""
    keep = 500
    inbox = await open_inbox(limits=InboxLimits(seen_max=keep), maintenance_interval_s=3600)
    most = 0
    for b in range(40):
        await asyncio.gather(*(inbox.add("p|a", received("x"), f"a-{b}-{i}")
                               for i in range(50)))
        most = max(most, inbox.seen_memory()[0])
    assert inbox._pruner is not None
    await inbox._pruner
    n, nbytes = inbox.seen_memory()
    assert keep <= n <= keep + keep // 10 + 1
    assert most <= 2 * keep  # while pruning, adds go on
    assert nbytes <= 64 * (keep + keep // 10 + 1) or nbytes == 1024 * 12
    rows = await inbox.db.read(lambda c: c.execute("SELECT count(*) FROM seen_log").fetchone())
    assert rows[0] == n
    # the newest are the ones kept
    assert not await inbox.add("p|a", received("x"), "a-39-49")
    assert await inbox.add("p|a", received("x"), "a-0-0")


async def test_concurrent_copies_of_one_id_store_one(open_inbox: OpenInbox) -> None:
    inbox = await open_inbox()
    results = await asyncio.gather(*(inbox.add("p|t", received("x"), "same") for _ in range(5)))
    assert sorted(results) == [False, False, False, False, True]
    assert len(await inbox.head("p|t", 10)) == 1


async def test_a_copy_waiting_on_a_refused_first_is_tried_itself(
    open_inbox: OpenInbox,
) -> None:
    inbox = await open_inbox(limits=InboxLimits(max_messages=1))
    assert await inbox.add("p|t", received("x"), "a")
    first = asyncio.ensure_future(inbox.add("p|t", received("x"), "b"))
    second = asyncio.ensure_future(inbox.add("p|t", received("x"), "b"))
    for task in (first, second):
        with pytest.raises(InboxFullError):
            await task
    [row] = await inbox.head("p|t")
    await inbox.complete(row)
    assert await inbox.add("p|t", received("x"), "b")  # never stored, so not a duplicate


async def test_backlog_counts_follow_the_deadletters_command(
    open_inbox: OpenInbox, tmp_path: Path,
) -> None:
    """The counts are in memory; another process's changes (a replay) are counted again."""
    inbox = await open_inbox(limits=InboxLimits(max_messages=2))
    assert await inbox.add("p|t", received("a"), "a")
    assert await inbox.add("p|t", received("b"), "b")
    [_, row] = await inbox.head("p|t", 2)
    await inbox.park(row, reason="test", error=None, attempts=1)
    assert (await inbox.backlog())["p|t"][0] == 1
    conn = sqlite3.connect(tmp_path / schema.FILE_NAME, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    assert schema.replay_dead(conn, None, 0) == 1
    conn.execute("COMMIT")
    conn.close()
    with pytest.raises(InboxFullError):
        await inbox.add("p|t", received("c"), "c")
    assert (await inbox.backlog())["p|t"] == (2, (await inbox.backlog())["p|t"][1])


async def test_migration_from_step_1(open_inbox: OpenInbox, tmp_path: Path) -> None:
    """A file made by the step-1 schema (an update keeps the volume): its seen ids keep
    deduplicating, its messages are delivered in order and counted, its page size stays."""
    path = tmp_path / schema.FILE_NAME
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("BEGIN")
    conn.execute("CREATE TABLE _meta(key TEXT PRIMARY KEY, value TEXT)")
    conn.execute("INSERT INTO _meta VALUES ('schema_version', '1'), ('epoch', 'e')")
    step1 = schema.MIGRATIONS[0].apply
    assert isinstance(step1, str)
    _run_script(conn, step1)
    for i in range(30):
        conn.execute("INSERT INTO seen VALUES ('p|t', ?, ?)", (f"old-{i}", 1_800_000_000_000 + i))
    for i in range(20, 30):
        conn.execute(
            "INSERT INTO messages(sub_key, topic, data, metadata, event_id, size, arrived_ms)"
            " VALUES ('p|t', 't', ?, '{}', ?, 100, 0)", (f"m{i}".encode(), f"old-{i}"),
        )
    conn.execute("COMMIT")
    assert conn.execute("SELECT messages, bytes FROM backlog").fetchone() == (10, 1000)
    conn.close()

    inbox = await open_inbox(clock=FakeClock(), limits=InboxLimits(max_messages=11))
    assert inbox.db.schema_version == len(schema.MIGRATIONS) == 2
    assert (await inbox.backlog()) == {"p|t": (10, 1000)}
    for i in range(30):
        assert not await inbox.add("p|t", received("x"), f"old-{i}")
    assert await inbox.add("p|t", received("new"), "new-0")
    with pytest.raises(InboxFullError):
        await inbox.add("p|t", received("x"), "new-1")
    rows = await inbox.head("p|t", 20)
    assert [r.data for r in rows] == [f"m{i}".encode() for i in range(20, 30)] + [b"new"]
    for row in rows:
        await inbox.complete(row)
    assert (await inbox.backlog()) == {}

    def layout(c: sqlite3.Connection) -> tuple[int, list[str], list[str]]:
        tables = [r[0] for r in c.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger') ORDER BY name")]
        order = [r[0] for r in c.execute("SELECT event_id FROM seen_log ORDER BY id")]
        return int(c.execute("PRAGMA page_size").fetchone()[0]), tables, order

    page_size, tables, order = await inbox.db.read(layout)
    assert page_size == 4096  # an existing file keeps its pages
    assert "seen" not in tables
    assert "backlog" not in tables
    assert "seen_log" in tables
    assert order == [f"old-{i}" for i in range(30)] + ["new-0"]


def test_idset_matches_a_set() -> None:
    import random

    ids, ref = IdSet(), set()
    rnd = random.Random(7)
    keys = [digest("s", str(i)) for i in range(5000)]
    for _ in range(40_000):
        k = rnd.choice(keys)
        if rnd.random() < 0.55:
            assert ids.add(k) == (k not in ref)
            ref.add(k)
        else:
            assert ids.discard(k) == (k in ref)
            ref.discard(k)
    assert len(ids) == len(ref)
    assert all((k in ids) == (k in ref) for k in keys)
    assert ids.nbytes <= 12 * 4 * max(len(ids), 1024)
