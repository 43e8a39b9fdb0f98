"""``support.sqlitedb``: group commit, unit isolation, migrations, quarantine, disk budget."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from edge_runtime.errors import ComponentError, StorageFullError
from edge_runtime.observability.metrics import REGISTRY
from edge_runtime.support.disk import DiskBudget
from edge_runtime.support.sqlitedb import Database, DBError, Migration, get_meta, set_meta

SCHEMA = [Migration(1, "CREATE TABLE t(k TEXT PRIMARY KEY, v TEXT);", "t")]


def sample(name: str, db: str) -> float:
    return REGISTRY.get_sample_value(name, {"db": db}) or 0.0


def insert(k: str, v: str = "v") -> Callable[[sqlite3.Connection], int]:
    def unit(conn: sqlite3.Connection) -> int:
        return int(conn.execute("INSERT INTO t(k, v) VALUES(?, ?)", (k, v)).rowcount)

    return unit


async def rows(db: Database) -> dict[str, str]:
    return await db.read(lambda c: dict(c.execute("SELECT k, v FROM t").fetchall()))


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    d = Database(tmp_path / "t.db", name="test.db", migrations=SCHEMA)
    await d.open()
    yield d
    await d.close()


@contextlib.asynccontextmanager
async def writer_held(db: Database) -> AsyncIterator[None]:
    """Keep the writer thread busy in a unit of work for the block's duration, so everything
    submitted inside the block is queued together and lands in the next batch."""
    started, release = threading.Event(), threading.Event()

    def block(conn: sqlite3.Connection) -> None:
        started.set()
        release.wait(10)

    blocker = asyncio.ensure_future(db.write(block))
    assert await asyncio.to_thread(started.wait, 10)
    try:
        yield
        await asyncio.sleep(0)  # let the tasks created in the block submit their work
    finally:
        release.set()
        await blocker


class TestGroupCommit:
    async def test_200_concurrent_writes_share_one_commit(self, db: Database) -> None:
        before = sample("edge_runtime_db_commits_total", "test.db")
        async with writer_held(db):
            tasks = [asyncio.ensure_future(db.write(insert(f"k{i}"))) for i in range(200)]
        assert await asyncio.gather(*tasks) == [1] * 200
        assert db.writer.commits == 2  # the blocker's batch, then all 200 in one
        assert sample("edge_runtime_db_commits_total", "test.db") - before == 2
        assert db.writer.units == 201
        assert len(await rows(db)) == 200

    async def test_unheld_concurrent_writes_batch_too(self, db: Database) -> None:
        await asyncio.gather(*(db.write(insert(f"k{i}")) for i in range(200)))
        assert db.writer.commits < 50, f"{db.writer.commits} commits for 200 writes"

    async def test_commit_window_waits_for_more(self, tmp_path: Path) -> None:
        d = Database(tmp_path / "w.db", name="w.db", migrations=SCHEMA, commit_window_ms=1000)
        await d.open()
        try:
            await d.write(insert("opener"))  # writes are now frequent: the window applies
            first = asyncio.ensure_future(d.write(insert("first")))
            await asyncio.sleep(0.02)  # the writer already holds "first", inside its window
            await asyncio.gather(first, *(d.write(insert(f"k{i}")) for i in range(100)))
            assert d.writer.commits == 2
        finally:
            await d.close()

    async def test_commit_window_not_waited_after_a_quiet_spell(self, tmp_path: Path) -> None:
        d = Database(tmp_path / "w.db", name="w.db", migrations=SCHEMA, commit_window_ms=60_000)
        await d.open()
        try:
            # The first write (nothing committed within a window before it) commits at once:
            # with a one-minute window, waiting it would not finish within the bound here.
            await asyncio.wait_for(d.write(insert("lone")), timeout=20)
            assert d.writer.commits == 1
        finally:
            await d.close()

    async def test_failing_unit_is_rolled_back_alone(self, db: Database) -> None:
        def bad(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO t(k, v) VALUES('bad', 'x')")
            raise ValueError("unit says no")

        def bad_sql(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO nope VALUES(1)")

        async with writer_held(db):
            tasks = [
                asyncio.ensure_future(db.write(unit))
                for unit in (insert("a"), bad, bad_sql, insert("b"))
            ]
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert results[0] == 1
        assert results[3] == 1
        assert isinstance(results[1], ValueError)
        assert isinstance(results[2], DBError)
        assert isinstance(results[2].__cause__, sqlite3.OperationalError)
        assert db.writer.commits == 2  # the blocker's, then one for all four
        assert await rows(db) == {"a": "v", "b": "v"}

    async def test_acknowledged_means_committed_around_a_full_disk(self, db: Database) -> None:
        count = await db.read(lambda c: c.execute("PRAGMA page_count").fetchone()[0])
        await db.write(lambda c: c.execute(f"PRAGMA max_page_count = {count + 2}").fetchall())
        units = [insert("a"), insert("big", "x" * 50_000), insert("b"), insert("c")]
        async with writer_held(db):
            tasks = [asyncio.ensure_future(db.write(u)) for u in units]
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(results[1], StorageFullError)
        # SQLite rolls the whole transaction back on SQLITE_FULL: the others are run again
        assert [results[0], *results[2:]] == [1, 1, 1]
        assert set(await rows(db)) == {"a", "b", "c"}

    async def test_close_runs_queued_work_then_refuses(self, db: Database) -> None:
        pending = [asyncio.ensure_future(db.write(insert(f"k{i}"))) for i in range(50)]
        await asyncio.sleep(0)
        await db.close()
        assert [p.result() for p in pending] == [1] * 50
        await db.close()
        with pytest.raises(DBError):
            await db.write(insert("late"))
        with pytest.raises(DBError):
            await rows(db)

    async def test_in_memory_database(self) -> None:
        d = Database(None, name="mem", migrations=SCHEMA)
        await d.open()
        try:
            await asyncio.gather(*(d.write(insert(f"k{i}")) for i in range(50)))
            assert len(await rows(d)) == 50
            assert len(d.epoch) == 32
        finally:
            await d.close()


class TestFile:
    async def test_pragmas_of_a_new_file(self, db: Database) -> None:
        def pragmas(c: sqlite3.Connection) -> tuple[object, ...]:
            return tuple(
                c.execute(f"PRAGMA {p}").fetchone()[0]
                for p in ("journal_mode", "auto_vacuum", "foreign_keys")
            )

        assert await db.read(pragmas) == ("wal", 2, 0)
        assert await db.write(lambda c: c.execute("PRAGMA synchronous").fetchone()[0]) == 2

    async def test_reclaim_returns_free_pages(self, db: Database) -> None:
        def fill(c: sqlite3.Connection) -> None:
            rows = [(str(i), "x" * 1000) for i in range(3000)]
            c.executemany("INSERT INTO t(k, v) VALUES(?, ?)", rows)

        def free(c: sqlite3.Connection) -> int:
            return int(c.execute("PRAGMA freelist_count").fetchone()[0])

        await db.write(fill)
        await db.write(lambda c: c.execute("DELETE FROM t"))
        before = await db.read(free)
        assert before > 700
        assert await db.reclaim(max_pages=100) == 100
        assert await db.reclaim() == before - 100
        assert await db.read(free) == 0
        assert await db.reclaim() == 0

    async def test_normal_durability_and_no_wal(self, tmp_path: Path) -> None:
        d = Database(tmp_path / "n.db", name="n", migrations=SCHEMA, durability="normal", wal=False)
        await d.open()
        try:
            assert await d.write(lambda c: c.execute("PRAGMA synchronous").fetchone()[0]) == 1
            assert await d.read(lambda c: c.execute("PRAGMA journal_mode").fetchone()[0]) == (
                "delete"
            )
        finally:
            await d.close()

    async def test_per_unit_durability_switches_the_batch(self, db: Database) -> None:
        def sync(c: sqlite3.Connection) -> int:
            return int(c.execute("PRAGMA synchronous").fetchone()[0])

        # The database is FULL (2); a unit may ask for no fsync (NORMAL, 1) or for one.
        assert await db.write(sync) == 2
        assert await db.write(sync, durable=False) == 1
        assert await db.write(sync) == 2
        # A batch holding one durable unit is fsynced as a whole.
        gate = threading.Event()
        blocker = asyncio.ensure_future(db.write(lambda _c: gate.wait(5)))
        await asyncio.sleep(0.05)
        mixed = [asyncio.ensure_future(db.write(sync, durable=d)) for d in (False, True, False)]
        await asyncio.sleep(0.05)
        gate.set()
        await blocker
        assert [await f for f in mixed] == [2, 2, 2]

    async def test_normal_database_may_fsync_one_unit(self, tmp_path: Path) -> None:
        d = Database(tmp_path / "n.db", name="n2", migrations=SCHEMA, durability="normal")
        await d.open()
        try:
            assert await d.write(lambda c: c.execute("PRAGMA synchronous").fetchone()[0]) == 1
            assert await d.write(lambda c: c.execute("PRAGMA synchronous").fetchone()[0],
                                 durable=True) == 2
        finally:
            await d.close()

    async def test_epoch_is_made_once(self, tmp_path: Path) -> None:
        epochs = []
        for _ in range(2):
            d = Database(tmp_path / "e.db", name="e", migrations=SCHEMA)
            await d.open()
            epochs.append(d.epoch)
            await d.close()
        assert epochs[0] == epochs[1]
        assert int(epochs[0], 16) > 0
        assert len(epochs[0]) == 32

    async def test_migrations_run_in_order_once(self, tmp_path: Path) -> None:
        calls: list[int] = []

        def two(conn: sqlite3.Connection) -> None:
            calls.append(2)
            conn.execute("INSERT INTO t(k, v) VALUES('seed', 'x')")

        three = """
            ALTER TABLE t ADD COLUMN n INTEGER; INSERT INTO t(k, v) VALUES('semi', 'a;b');
            -- a comment; with a semicolon
            CREATE TRIGGER t_n AFTER INSERT ON t BEGIN UPDATE t SET n = 1 WHERE k = new.k; END
        """
        steps = [*SCHEMA, Migration(2, two), Migration(3, three)]
        for _ in range(2):
            d = Database(tmp_path / "m.db", name="m", migrations=steps, schema="mine")
            await d.open()
            assert d.schema_version == 3
            await d.close()
        assert calls == [2]
        conn = sqlite3.connect(tmp_path / "m.db")
        assert get_meta(conn, "schema_version:mine") == "3"
        conn.execute("INSERT INTO t(k, v) VALUES('later', 'x')")
        assert conn.execute("SELECT k, v, n FROM t ORDER BY k").fetchall() == [
            ("later", "x", 1), ("seed", "x", None), ("semi", "a;b", None),
        ]
        conn.close()

    async def test_failed_migration_leaves_the_old_version(self, tmp_path: Path) -> None:
        d = Database(tmp_path / "f.db", name="f", migrations=SCHEMA)
        await d.open()
        await d.close()
        broken = [*SCHEMA, Migration(2, "CREATE TABLE u(x); INSERT INTO nope VALUES(1);")]
        with pytest.raises(ComponentError, match="nope"):
            await Database(tmp_path / "f.db", name="f", migrations=broken).open()
        conn = sqlite3.connect(tmp_path / "f.db")
        assert get_meta(conn, "schema_version") == "1"
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'u'").fetchone() is None
        conn.close()

    async def test_newer_schema_refuses_and_leaves_the_file(self, tmp_path: Path) -> None:
        path = tmp_path / "new.db"
        d = Database(path, name="new", migrations=SCHEMA)
        await d.open()
        await d.write(insert("k"))
        await d.write(lambda c: set_meta(c, "schema_version", "7"))
        await d.close()
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        with pytest.raises(ComponentError, match=r"schema version 7.*newer.*\(1\)"):
            await Database(path, name="new", migrations=SCHEMA).open()
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
        assert not (tmp_path / "quarantine").exists()


JUNK = b"this is not a database at all\n" * 200


def write_files(path: Path, contents: dict[str, bytes]) -> None:
    """Write ``path`` + suffix for each ``{suffix: bytes}``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix, data in contents.items():
        Path(f"{path}{suffix}").write_bytes(data)


def read_files(path: Path) -> dict[str, bytes]:
    """``{suffix: bytes}`` of ``path`` and its companions that exist."""
    return {
        suffix: Path(f"{path}{suffix}").read_bytes()
        for suffix in ("", "-wal", "-shm", "-journal")
        if Path(f"{path}{suffix}").exists()
    }


def corrupt_page(path: Path) -> None:
    """Overwrite the middle of a multi-page file with junk (the header stays valid)."""
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 4 * page
    data[2 * page:len(data) - page] = b"\xa5" * (len(data) - 3 * page)
    path.write_bytes(bytes(data))


class TestQuarantine:
    @pytest.mark.parametrize("damage", ["not-a-database", "damaged-pages"])
    async def test_corrupt_file_is_moved_aside_with_companions(
        self, tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        path = tmp_path / "data" / "c.db"
        if damage == "not-a-database":
            write_files(path, {"": JUNK, "-wal": b"junk wal", "-shm": b"junk shm"})
        else:
            d = Database(path, name="c.db", migrations=SCHEMA)
            await d.open()
            await asyncio.gather(*(d.write(insert(f"k{i}", "x" * 500)) for i in range(200)))
            await d.close()
            corrupt_page(path)
            write_files(path, {"-shm": b"stale shm"})
        before = sample("edge_runtime_db_quarantined_total", "c.db")
        qdir = tmp_path / "data" / "quarantine"

        d = Database(path, name="c.db", migrations=SCHEMA, quarantine_dir=qdir)
        with caplog.at_level(logging.ERROR):
            await d.open()
        try:
            assert len(d.quarantined) == 1
            moved = Path(d.quarantined[0])
            assert moved.parent == qdir
            assert moved.name.startswith("c.db.")
            assert moved.name.endswith("Z")
            found = read_files(moved)
            assert "" in found
            assert "-shm" in found
            if damage == "not-a-database":  # moved as found, not "recovered" by SQLite
                assert (found[""], found["-wal"]) == (JUNK, b"junk wal")  # -shm is only an index
            assert sample("edge_runtime_db_quarantined_total", "c.db") - before == 1
            assert any(
                str(path) in r.getMessage() and str(moved) in r.getMessage()
                for r in caplog.records
                if r.levelno == logging.ERROR
            )
            # the fresh file works and knows nothing of the old rows
            assert await rows(d) == {}
            await d.write(insert("fresh"))
            assert await rows(d) == {"fresh": "v"}
        finally:
            await d.close()

    async def test_two_quarantines_in_one_second_do_not_collide(self, tmp_path: Path) -> None:
        path = tmp_path / "c.db"
        moved = []
        for _ in range(2):
            write_files(path, {"": JUNK})
            d = Database(path, name="c2", migrations=SCHEMA)
            await d.open()
            moved.extend(d.quarantined)
            await d.close()
        assert len(set(moved)) == 2
        assert all(read_files(Path(m)) == {"": JUNK} for m in moved)


class TestDiskBudget:
    async def test_budget_refuses_growth_but_not_deletes(self, tmp_path: Path) -> None:
        budget = DiskBudget(tmp_path, max_bytes=1024)
        d = Database(tmp_path / "b.db", name="b.db", migrations=SCHEMA, disk_budget=budget)
        await d.open()
        before = REGISTRY.get_sample_value("edge_runtime_storage_full_total", {"db": "b.db"}) or 0
        try:
            with pytest.raises(StorageFullError, match="budget"):
                await d.write(insert("k"), size=100)
            assert await d.write(lambda c: c.execute("DELETE FROM t").rowcount) == 0
            after = REGISTRY.get_sample_value("edge_runtime_storage_full_total", {"db": "b.db"})
            assert after == before + 1
        finally:
            await d.close()

    async def test_sqlite_full_becomes_storage_full(self, tmp_path: Path) -> None:
        d = Database(tmp_path / "full.db", name="full.db", migrations=SCHEMA)
        await d.open()
        try:
            count = await d.read(lambda c: c.execute("PRAGMA page_count").fetchone()[0])
            await d.write(lambda c: c.execute(f"PRAGMA max_page_count = {count + 1}").fetchall())
            with pytest.raises(StorageFullError, match="full"):
                await d.write(insert("big", "x" * 100_000))
            await d.write(insert("small"))
            assert await rows(d) == {"small": "v"}
        finally:
            await d.close()
