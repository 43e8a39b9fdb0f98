"""The durable outbox and its relay, on real SQLite files."""

from __future__ import annotations

import asyncio
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


async def test_durability_per_outbox_and_deletes_without_fsync(db: Database) -> None:
    seen: list[tuple[str, int]] = []
    real = db.write

    async def spy(fn, *, size=0, durable=None):  # type: ignore[no-untyped-def]
        def unit(conn):  # type: ignore[no-untyped-def]
            seen.append((getattr(fn, "__name__", "?"), conn.execute("PRAGMA synchronous")
                         .fetchone()[0]))
            return fn(conn)

        return await real(unit, size=size, durable=durable)

    db.write = spy  # type: ignore[method-assign]
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
    await db.write(
        lambda c: c.executemany(
            f'INSERT INTO "{box.table}"(topic, payload, metadata, size, created_at) '
            "VALUES ('t', x'00', '{}', 65, 0)",
            [()] * 100_000,
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
    real = db.write

    async def spy(fn, *, size=0, durable=None):  # type: ignore[no-untyped-def]
        def unit(conn):  # type: ignore[no-untyped-def]
            seen.append(conn.execute("PRAGMA synchronous").fetchone()[0])
            return fn(conn)

        return await real(unit, size=size, durable=durable)

    loose = await make(db, durable=False)
    strict = Outbox(db, "cloud", durable=True)
    await strict.open()
    loose.tee = lambda items: [(strict, list(items))]
    db.write = spy  # type: ignore[method-assign]
    await loose.append([Item("t", b"a")])
    assert seen == [2]  # FULL: the copy's outbox asks for an fsync
    assert [r.payload for r in await strict.claim(0, 10)] == [b"a"]
