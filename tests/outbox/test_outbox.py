"""The durable outbox and its relay, on real SQLite files."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edge_runtime.outbox import store
from edge_runtime.outbox.relay import Relay
from edge_runtime.outbox.store import (
    Item,
    Outbox,
    OutboxFullError,
    OutboxLimits,
    Row,
    open_database,
)
from edge_runtime.support.sqlitedb import Database


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = open_database(tmp_path / "outbox.db")
    await database.open()
    yield database
    await database.close()


async def make(db: Database, limits: OutboxLimits | None = None, **kw: object) -> Outbox:
    box = Outbox(db, "pubsub:test", limits, **kw)  # type: ignore[arg-type]
    await box.open()
    return box


async def test_append_claim_ack_in_order(db: Database) -> None:
    box = await make(db)
    seqs = await box.append([Item("t", f"m{i}".encode()) for i in range(5)])
    assert seqs == sorted(seqs)
    rows = await box.claim(0, 10)
    assert [r.payload for r in rows] == [f"m{i}".encode() for i in range(5)]
    assert box.count == 5
    await box.ack(rows[:2])
    assert [r.payload for r in await box.claim(0, 10)] == [b"m2", b"m3", b"m4"]
    assert box.count == 3
    await box.ack(rows[:2])  # acking twice does not count twice
    assert box.count == 3


async def test_an_append_whose_caller_gave_up_is_counted_by_what_committed(
    db: Database,
) -> None:
    # The writer does not take a queued unit back when its caller is cancelled: the rows may
    # still commit. The outbox's count must follow the commit (it used to be lowered as if
    # nothing was written, so the limit let more in than maxMessages).
    box = await make(db)
    task = asyncio.ensure_future(box.append([Item("t", b"x"), Item("t", b"y")]))
    await asyncio.sleep(0)  # the unit is queued
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await box.append([Item("t", b"z")])  # committed after the cancelled one
    await asyncio.sleep(0.05)
    assert len(await box.claim(0, 10)) == 3
    assert box.count == 3


async def test_durability_per_outbox_and_deletes_without_fsync(db: Database) -> None:
    seen: list[tuple[str, int]] = []
    real = db.submit  # write() goes through submit() too

    def spy(fn, *, size=0, durable=None):  # type: ignore[no-untyped-def]
        def unit(conn):  # type: ignore[no-untyped-def]
            seen.append((getattr(fn, "__name__", "?"), conn.execute("PRAGMA synchronous")
                         .fetchone()[0]))
            return fn(conn)

        return real(unit, size=size, durable=durable)

    db.submit = spy  # type: ignore[method-assign]
    normal = await make(db, durable=False)
    full = await make(db)
    await normal.append([Item("t", b"a")])
    await full.append([Item("t", b"b")])
    rows = await full.claim(0, 10)
    await full.ack(rows)
    assert [s for _, s in seen[-3:]] == [1, 2, 1]  # normal append, full append, delete


async def test_sizes_survive_reopen(tmp_path: Path) -> None:
    first = open_database(tmp_path / "o.db")
    await first.open()
    box = await make(first)
    await box.append([Item("t", b"x" * 100, {"retain": "true"})] * 3)
    await first.close()
    second = open_database(tmp_path / "o.db")
    await second.open()
    try:
        again = await make(second)
        assert again.count == 3
        assert again.bytes == box.bytes
        rows = await again.claim(0, 10)
        assert rows[0].metadata == {"retain": "true"}
    finally:
        await second.close()


async def test_reject_when_full_touches_nothing(db: Database) -> None:
    box = await make(db, OutboxLimits(max_messages=3))
    await box.append([Item("t", b"1"), Item("t", b"2"), Item("t", b"3")])
    with pytest.raises(OutboxFullError, match="full"):
        await box.append([Item("t", b"4")])
    assert [r.payload for r in await box.claim(0, 10)] == [b"1", b"2", b"3"]
    assert box.count == 3


async def test_max_bytes(db: Database) -> None:
    box = await make(db, OutboxLimits(max_bytes=1000))
    await box.append([Item("t", b"x" * 500)])
    with pytest.raises(OutboxFullError):
        await box.append([Item("t", b"x" * 500)])


async def test_drop_oldest(db: Database) -> None:
    box = await make(db, OutboxLimits(max_messages=3, on_full="dropOldest"))
    for i in range(5):
        await box.append([Item("t", str(i).encode())])
    assert [r.payload for r in await box.claim(0, 10)] == [b"2", b"3", b"4"]
    assert box.count == 3


async def test_ttl_uses_the_monotonic_clock(db: Database) -> None:
    now = [1000.0]
    box = await make(db, monotonic=lambda: now[0])
    await box.append([Item("t", b"short", ttl_s=10), Item("t", b"forever")])
    assert [r.expired for r in await box.claim(0, 10)] == [False, False]
    now[0] += 11
    assert [r.expired for r in await box.claim(0, 10)] == [True, False]


async def test_ttl_keeps_its_remaining_time_across_a_reboot(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(store, "_BOOT_ID", "boot-a")
    box = await make(db, monotonic=lambda: now[0])
    await box.append([Item("t", b"m", ttl_s=100)])  # deadline 1100 on boot a
    now[0] = 1040.0
    await box.checkpoint()  # 60 s left at the last checkpoint
    # Reboot: a new boot id, the monotonic clock starts again near 0.
    monkeypatch.setattr(store, "_BOOT_ID", "boot-b")
    now[0] = 5.0
    again = await make(db, monotonic=lambda: now[0])
    now[0] = 5.0 + 59
    assert [r.expired for r in await again.claim(0, 10)] == [False]
    now[0] = 5.0 + 61
    assert [r.expired for r in await again.claim(0, 10)] == [True]


async def test_ttl_of_a_boot_without_checkpoint_starts_again(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(store, "_BOOT_ID", "boot-a")
    box = await make(db, monotonic=lambda: now[0])
    await box.append([Item("t", b"m", ttl_s=100)])
    await db.write(lambda c: c.execute("DELETE FROM _meta WHERE key LIKE 'ttl_checkpoint:%'"))
    monkeypatch.setattr(store, "_BOOT_ID", "boot-b")
    now[0] = 5.0
    again = await make(db, monotonic=lambda: now[0])
    now[0] = 5.0 + 99
    assert [r.expired for r in await again.claim(0, 10)] == [False]
    now[0] = 5.0 + 101
    assert [r.expired for r in await again.claim(0, 10)] == [True]


async def test_concurrent_appends_share_commits(db: Database) -> None:
    box = await make(db)
    before = db.writer.commits
    await asyncio.gather(*(box.append([Item("t", b"x")]) for _ in range(200)))
    assert box.count == 200
    assert db.writer.commits - before < 100


async def test_append_cost_does_not_grow_with_the_backlog(db: Database) -> None:
    """O(1): appending into 100k rows costs about what it costs into an empty table."""
    box = await make(db)

    async def timed() -> float:
        start = time.perf_counter()
        for _ in range(50):
            await box.append([Item("t", b"x" * 200)])
        return time.perf_counter() - start

    empty = await timed()
    await db.write(  # below the outbox's own sequence numbers, which go on from where they are
        lambda c: c.executemany(
            f'INSERT INTO "{box.table}"(seq, topic, payload, metadata, size, created_at) '
            "VALUES (?, 't', x'00', '{}', 65, 0)",
            [(-i,) for i in range(1, 100_001)],
        )
    )
    box.count += 100_000
    full = await timed()
    # Not a timing assertion on speed, only on shape: a full scan per append would be 100x.
    assert full < empty * 10 + 0.5


class FlakySend:
    """Fails every send while `down` is set; records what got through."""

    def __init__(self) -> None:
        self.down = False
        self.sent: list[bytes] = []
        self.ready = asyncio.Event()
        self.ready.set()

    async def __call__(self, row: Row) -> None:
        await asyncio.sleep(0)
        if self.down:
            raise ConnectionError("down")
        self.sent.append(row.payload)

    async def wait_ready(self) -> None:
        await self.ready.wait()


async def wait_for(predicate, limit_s: float = 10) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_relay_delivers_in_order_and_deletes(db: Database) -> None:
    box = await make(db)
    send = FlakySend()
    relay = Relay(box, send, send.wait_ready, window=1, retry_delay_s=0.01)
    relay.start()
    try:
        await box.append([Item("t", str(i).encode()) for i in range(50)])
        await wait_for(lambda: len(send.sent) == 50)
        assert send.sent == [str(i).encode() for i in range(50)]
        await wait_for(lambda: box.count == 0)
    finally:
        await relay.stop()


async def test_relay_resends_after_failure_and_loses_nothing(db: Database) -> None:
    box = await make(db)
    send = FlakySend()
    relay = Relay(box, send, send.wait_ready, window=8, retry_delay_s=0.01)
    relay.start()
    try:
        await box.append([Item("t", f"a{i}".encode()) for i in range(20)])
        send.down = True
        await box.append([Item("t", f"b{i}".encode()) for i in range(20)])
        await asyncio.sleep(0.1)
        send.down = False
        await wait_for(lambda: box.count == 0)
        expected = {f"a{i}".encode() for i in range(20)} | {f"b{i}".encode() for i in range(20)}
        assert set(send.sent) == expected
    finally:
        await relay.stop()


async def test_relay_drops_expired_rows(db: Database) -> None:
    now = [0.0]
    box = await make(db, monotonic=lambda: now[0])
    send = FlakySend()
    send.ready.clear()
    relay = Relay(box, send, send.wait_ready, retry_delay_s=0.01)
    relay.start()
    try:
        await box.append([Item("t", b"old", ttl_s=5), Item("t", b"new")])
        now[0] = 100.0
        send.ready.set()
        await wait_for(lambda: box.count == 0)
        assert send.sent == [b"new"]
    finally:
        await relay.stop()


async def test_relay_rate_limit(db: Database) -> None:
    box = await make(db)
    send = FlakySend()
    relay = Relay(box, send, send.wait_ready, window=2, rate_limit=50.0)
    relay.start()
    try:
        await box.append([Item("t", b"x")] * 30)
        start = time.monotonic()
        await wait_for(lambda: len(send.sent) == 30)
        # 30 messages at 50/s with a burst of 2 take at least ~0.5 s.
        assert time.monotonic() - start >= 0.4
    finally:
        await relay.stop()


async def test_a_tee_commits_as_durably_as_its_strictest_outbox(db: Database) -> None:
    seen: list[int] = []
    real = db.submit  # write() goes through submit() too

    def spy(fn, *, size=0, durable=None):  # type: ignore[no-untyped-def]
        def unit(conn):  # type: ignore[no-untyped-def]
            seen.append(conn.execute("PRAGMA synchronous").fetchone()[0])
            return fn(conn)

        return real(unit, size=size, durable=durable)

    loose = await make(db, durable=False)
    strict = Outbox(db, "cloud", durable=True)
    await strict.open()
    loose.tee = lambda items: [(strict, list(items))]
    db.submit = spy  # type: ignore[method-assign]
    await loose.append([Item("t", b"a")])
    assert seen == [2]  # FULL: the copy's outbox asks for an fsync
    assert [r.payload for r in await strict.claim(0, 10)] == [b"a"]


def _wal_frames(db: Database) -> int:
    assert db.path is not None
    wal = db.path.with_name(db.path.name + "-wal")
    size = wal.stat().st_size if wal.exists() else 0
    return max(0, size - 32) // (4096 + 24)


async def test_an_append_commit_rewrites_only_the_page_it_adds_to(db: Database) -> None:
    """Flash wear: an append whose row fits the table's last page commits that one page (no
    ``sqlite_sequence`` page, as AUTOINCREMENT rewrote in every commit)."""
    box = await make(db)
    await box.append([Item("t", b"x" * 100)])  # the first page and the id reservation
    for _ in range(5):
        before = _wal_frames(db)
        await box.append([Item("t", b"x" * 100)])
        assert _wal_frames(db) - before == 1


async def test_sequence_numbers_are_never_reused(tmp_path: Path) -> None:
    """Not after the table emptied (the relay's cursor is in memory) and not after a restart
    with every row deleted (the cloud relay's cursor on the far side counts on it)."""
    first = open_database(tmp_path / "o.db")
    await first.open()
    box = await make(first)
    a = await box.append([Item("t", b"1"), Item("t", b"2")])
    await box.ack(await box.claim(0, 10))
    b = await box.append([Item("t", b"3")])
    assert b[0] > a[-1]
    await box.ack(await box.claim(0, 10))
    await first.close()
    again = open_database(tmp_path / "o.db")
    await again.open()
    try:
        box = await make(again)
        c = await box.append([Item("t", b"4")])
        assert c[0] > b[0]
    finally:
        await again.close()


async def test_sequence_numbers_go_on_above_a_table_made_with_autoincrement(
    tmp_path: Path,
) -> None:
    """A table of an older version (AUTOINCREMENT, emptied): new rows go on above
    ``sqlite_sequence``."""
    db = open_database(tmp_path / "o.db")
    await db.open()
    try:
        table = store.table_name("pubsub:test")
        await db.write(lambda c: c.execute(
            f'CREATE TABLE "{table}" (seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL,'
            " payload BLOB NOT NULL, metadata TEXT NOT NULL, size INTEGER NOT NULL,"
            " created_at REAL NOT NULL, ttl_s REAL, boot_id TEXT, deadline REAL)"))
        await db.write(lambda c: c.execute(
            f"INSERT INTO \"{table}\"(seq, topic, payload, metadata, size, created_at)"
            " VALUES (70, 't', x'00', '{}', 65, 0)"))
        await db.write(lambda c: c.execute(f'DELETE FROM "{table}"'))
        box = await make(db)
        assert (await box.append([Item("t", b"x")]))[0] > 70
    finally:
        await db.close()


async def test_relay_deletes_in_batches_not_per_message(db: Database) -> None:
    """Messages trickling in one at a time (the relay idle in between) are deleted by one
    commit per ``ack_delay_s``, not one each."""
    box = await make(db)
    deletes: list[int] = []
    real_ack = box.ack

    async def ack(rows):  # type: ignore[no-untyped-def]
        deletes.append(len(rows))
        return await real_ack(rows)

    box.ack = ack  # type: ignore[method-assign]
    send = FlakySend()
    relay = Relay(box, send, send.wait_ready, window=4, retry_delay_s=0.01)
    relay.start()
    try:
        for i in range(20):
            await box.append([Item("t", str(i).encode())])
            await wait_for(lambda n=i + 1: len(send.sent) == n)  # type: ignore[misc]
        await wait_for(lambda: box.count == 0)
        assert sum(deletes) == 20
        assert len(deletes) <= 3, deletes
    finally:
        await relay.stop()


_KILLED_RELAY = """
import asyncio, os, sys
from pathlib import Path
from edge_runtime.outbox.relay import Relay
from edge_runtime.outbox.store import Item, Outbox, open_database

async def main() -> None:
    db = open_database(Path(sys.argv[1]))
    await db.open()
    box = Outbox(db, "pubsub:test")
    await box.open()
    out = open(sys.argv[2], "a")
    async def send(row):
        out.write(row.payload.decode() + "\\n")
        out.flush()
        os.fsync(out.fileno())
    async def ready():
        return None
    relay = Relay(box, send, ready, window=8, ack_delay_s=60.0)
    relay.start()
    await box.append([Item("t", str(i).encode()) for i in range(int(sys.argv[3]))])
    while box.count:  # delivered, deletes still waiting: say so and wait for the kill
        if len(Path(sys.argv[2]).read_text().split()) >= int(sys.argv[3]):
            print("delivered", flush=True)
        await asyncio.sleep(0.05)

asyncio.run(main())
"""


async def test_relay_killed_with_deletes_pending_resends_and_loses_nothing(
    tmp_path: Path,
) -> None:
    """kill -9 while delivered rows wait for their batched delete: after a restart they are
    sent again (duplicates), and nothing is lost."""
    path, sent, n = tmp_path / "o.db", tmp_path / "sent.txt", 60
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _KILLED_RELAY, str(path), str(sent), str(n),
        stdout=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        assert line.strip() == b"delivered"
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    first = sent.read_text().split()
    assert sorted(map(int, first)) == list(range(n))
    db = open_database(path)
    await db.open()
    try:
        box = await make(db)
        assert box.count == n  # the deletes were lost with the process
        send = FlakySend()
        relay = Relay(box, send, send.wait_ready, retry_delay_s=0.01)
        relay.start()
        try:
            await wait_for(lambda: len(send.sent) == n)
            assert send.sent == [str(i).encode() for i in range(n)]  # again, in order
        finally:
            await relay.stop()
        assert box.count == 0
    finally:
        await db.close()
