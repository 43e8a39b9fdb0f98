"""The :class:`~edge_runtime.cloudsync.server.store.CloudStore` contract, over every row of
``cloudstore_cases.CLOUD_CASES``: exactly once per (device, stream, epoch, seq), a new epoch
is a new stream, last-writer-wins by HLC with tombstones, event cursors, desired sequences."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from edge_runtime.cloudsync import hlc as hlcs
from edge_runtime.cloudsync.server.store import (
    HISTORY_AGE_S,
    HISTORY_POINTS,
    KIND_DELETE,
    KIND_EVENT,
    KIND_UPSERT,
    CloudStore,
    Cursor,
    RecordIn,
)
from tests.conformance.cloudstore_cases import CLOUD_CASES, CloudCase

OpenCloud = Callable[[], Awaitable[CloudStore]]
NOW = 1_800_000_000.0


@pytest.fixture(params=CLOUD_CASES, ids=[c.id for c in CLOUD_CASES])
def cloud_case(request: pytest.FixtureRequest) -> CloudCase:
    return request.param


@pytest.fixture
async def open_cloud(cloud_case: CloudCase, tmp_path: Path) -> AsyncIterator[OpenCloud]:
    opened: list[CloudStore] = []

    async def make() -> CloudStore:
        store = cloud_case.factory(tmp_path)
        await store.open()
        opened.append(store)
        return store

    yield make
    for s in opened:
        await s.close()


@pytest.fixture
async def cloud(open_cloud: OpenCloud) -> CloudStore:
    return await open_cloud()


def up(seq: int, key: str, value: bytes, hlc: int, store: str = "s") -> RecordIn:
    return RecordIn(KIND_UPSERT, store, key, seq, hlc, value)


async def test_hello_registers_a_device_and_returns_no_cursor(cloud: CloudStore) -> None:
    assert await cloud.hello("d1", "1.0", 5, 100.0) == []
    [d] = await cloud.devices()
    assert (d.device_id, d.version, d.connected, d.backlog) == ("d1", "1.0", True, 5)
    await cloud.disconnected("d1", 101.0)
    assert not (await cloud.devices())[0].connected


async def test_a_replayed_batch_is_applied_once(cloud: CloudStore) -> None:
    await cloud.hello("d1", "1", 0, 1.0)
    batch = [up(1, "a", b"\x01", 10), RecordIn(KIND_EVENT, "ps/t", "e1", 2, 11, b"\x02"),
             up(3, "b", b"\x03", 12)]
    first = await cloud.apply("d1", "state:s", "ep", batch, 2.0)
    assert (first.cursor, first.applied, first.replayed) == (3, 3, 0)
    again = await cloud.apply("d1", "state:s", "ep", batch, 3.0)
    assert (again.cursor, again.applied, again.replayed) == (3, 0, 3)
    partly = await cloud.apply("d1", "state:s", "ep", [*batch[1:], up(4, "c", b"\x04", 13)], 4.)
    assert (partly.cursor, partly.applied, partly.replayed) == (4, 1, 2)
    assert len(await cloud.events("d1", 0, 100)) == 1
    assert (await cloud.devices())[0].records == 4
    assert await cloud.hello("d1", "1", 0, 5.0) == [Cursor("state:s", "ep", 4)]


async def test_a_new_epoch_is_a_new_stream_not_a_replay(cloud: CloudStore) -> None:
    await cloud.apply("d1", "state:s", "old", [up(1, "a", b"1", 10), up(2, "b", b"2", 11)], 1.0)
    # The device database was recreated: sequences start again under a new epoch.
    res = await cloud.apply("d1", "state:s", "new", [up(1, "a", b"9", 20)], 2.0)
    assert (res.cursor, res.applied) == (1, 1)
    row = await cloud.state("d1", "s", "a")
    assert row is not None
    assert row.value == b"9"
    cursors = set(await cloud.hello("d1", "1", 0, 3.0))
    assert cursors == {Cursor("state:s", "old", 2), Cursor("state:s", "new", 1)}


async def test_last_writer_wins_by_hlc_and_deletes_are_tombstones(cloud: CloudStore) -> None:
    await cloud.apply("d1", "state:s", "e1", [up(1, "k", b"new", 50)], 1.0)
    # An older write (another stream, a lower HLC) arrives later: it loses.
    await cloud.apply("d1", "state:s", "e2", [up(1, "k", b"old", 40)], 2.0)
    row = await cloud.state("d1", "s", "k")
    assert row is not None
    assert (row.value, row.hlc, row.deleted) == (b"new", 50, False)
    await cloud.apply("d1", "state:s", "e1", [RecordIn(KIND_DELETE, "s", "k", 2, 60)], 3.0)
    await cloud.apply("d1", "state:s", "e2", [up(2, "k", b"older", 55)], 4.0)
    row = await cloud.state("d1", "s", "k")
    assert row is not None
    assert row.deleted
    assert row.hlc == 60
    assert await cloud.state("d1", "s", "missing") is None
    assert await cloud.state("d2", "s", "k") is None  # devices do not share keys
    await cloud.apply("d1", "state:s", "e1", [up(3, "b", b"B", 70), up(4, "a", b"A", 71),
                                              up(5, "c", b"C", 72, store="r")], 5.0)
    live = await cloud.states("d1", 10)
    assert [(r.store, r.key, r.value, r.deleted) for r in live] == [
        ("r", "c", b"C", False), ("s", "a", b"A", False), ("s", "b", b"B", False)]
    assert len(await cloud.states("d1", 2)) == 2
    assert await cloud.states("d2", 10) == []


async def test_events_have_an_increasing_cursor_per_device(cloud: CloudStore) -> None:
    for d in ("d1", "d2"):
        await cloud.apply(d, "events", "e", [
            RecordIn(KIND_EVENT, "ps/t", f"{d}-{i}", i, 100 + i, bytes([i])) for i in range(1, 6)
        ], 1.0)
    page = await cloud.events("d1", 0, 3)
    assert [e.key for e in page] == ["d1-1", "d1-2", "d1-3"]
    rest = await cloud.events("d1", page[-1].seq, 100)
    assert [e.key for e in rest] == ["d1-4", "d1-5"]
    assert await cloud.events("d1", rest[-1].seq, 100) == []
    assert all(e.device_id == "d1" and e.target == "ps/t" for e in page + rest)


async def test_desired_state_sequences_and_lww(cloud: CloudStore) -> None:
    a = await cloud.put_desired("d1", "mode", b"eco", 100)
    b = await cloud.put_desired("d1", "fan", b"on", 101)
    assert a is not None
    assert b is not None
    assert b.seq > a.seq
    assert await cloud.put_desired("d1", "mode", b"stale", 99) is None  # older HLC loses
    c = await cloud.put_desired("d1", "mode", b"", 102, deleted=True)
    assert c is not None
    assert c.seq > b.seq
    rows = await cloud.desired_after("d1", 0)
    assert [(r.key, r.deleted) for r in rows] == [("fan", False), ("mode", True)]
    assert [r.key for r in await cloud.desired_after("d1", b.seq)] == ["mode"]
    assert await cloud.max_hlc() == 102
    await cloud.ack_desired("d1", c.seq)
    await cloud.ack_desired("d1", a.seq)  # an old ack does not move it back
    [d] = await cloud.devices()
    assert (d.desired_seq, d.desired_acked) == (c.seq, c.seq)


async def test_data_survives_reopening(cloud_case: CloudCase, open_cloud: OpenCloud) -> None:
    if not cloud_case.persistent:
        pytest.skip(f"{cloud_case.id} keeps nothing after close")
    first = await open_cloud()
    await first.apply("d1", "state:s", "e", [up(1, "k", b"v", 5)], 1.0)
    await first.put_desired("d1", "x", b"y", 7)
    await first.close()
    again = await open_cloud()
    assert await again.hello("d1", "1", 0, 2.0) == [Cursor("state:s", "e", 1)]
    row = await again.state("d1", "s", "k")
    assert row is not None
    assert row.value == b"v"
    assert [r.key for r in await again.desired_after("d1", 0)] == ["x"]


async def test_history_keeps_reported_values_in_write_order(cloud: CloudStore) -> None:
    base = hlcs.pack(int(NOW * 1000))
    batch = [up(i, "t", bytes([i]), base + (i << 16)) for i in (1, 2, 4, 5)]
    batch.insert(2, RecordIn(KIND_DELETE, "s", "t", 3, base + (3 << 16)))  # not a point
    await cloud.apply("d1", "state:s", "e", batch, NOW)
    await cloud.apply("d1", "state:s", "e", [up(2, "t", b"\x02", base + (2 << 16))], NOW)
    rows = await cloud.history("d1", "s", "t", 0, 100)
    assert [r.value for r in rows] == [b"\x01", b"\x02", b"\x04", b"\x05"]  # replay: no point
    assert [r.hlc for r in rows] == sorted(r.hlc for r in rows)
    assert rows[0].at == pytest.approx(NOW + 0.001, abs=0.002)
    assert [r.value for r in await cloud.history("d1", "s", "t", 0, 2)] == [b"\x04", b"\x05"]
    since = hlcs.unpack(rows[2].hlc)[0] / 1000
    assert [r.value for r in await cloud.history("d1", "s", "t", since, 100)] == [
        b"\x04", b"\x05"]
    assert await cloud.history("d1", "s", "other", 0, 100) == []
    assert await cloud.history("d2", "s", "t", 0, 100) == []


async def test_history_is_bounded_by_count_and_age(cloud: CloudStore) -> None:
    old = hlcs.pack(int((NOW - HISTORY_AGE_S - 60) * 1000))
    await cloud.apply("d1", "state:s", "e", [up(1, "t", b"old", old)], NOW - HISTORY_AGE_S - 60)
    assert len(await cloud.history("d1", "s", "t", 0, 10)) == 1
    base = hlcs.pack(int(NOW * 1000))
    n = HISTORY_POINTS + 7
    await cloud.apply("d1", "state:s", "e", [up(i + 2, "t", str(i).encode(), base + (i << 16))
                                             for i in range(n)], NOW)
    rows = await cloud.history("d1", "s", "t", 0, n + 10)
    assert len(rows) == HISTORY_POINTS  # the old point aged out, the oldest 7 new ones too
    assert rows[0].value == b"7"
    assert rows[-1].value == str(n - 1).encode()
