"""Device-side parts without a network: the clock, topic filters, the change-log written in
the state change's own transaction, the cloud outbox written in the publish's, desired state."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import cbor2
import pytest

from edge_runtime.cloudsync.changelog import TABLE, ChangeLog
from edge_runtime.cloudsync.desired import DesiredEntry, DesiredStore
from edge_runtime.cloudsync.hlc import HLC, pack, unpack
from edge_runtime.cloudsync.sources import (
    KIND_DELETE,
    KIND_EVENT,
    KIND_UPSERT,
    ChangeLogSource,
    OutboxSource,
)
from edge_runtime.cloudsync.topics import TopicFilters
from edge_runtime.outbox.store import Item, Outbox, OutboxFullError, OutboxLimits, open_database
from edge_runtime.runtime.cloud import _tee
from edge_runtime.state import DeleteRequest, ETagMismatchError, SetRequest
from edge_runtime.state.keys import KeyPrefix
from edge_runtime.state.sqlite import store as sqlite_store
from tests.support.state import context


class Wall:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_hlc_is_monotonic_through_a_clock_step_back_and_a_restart(tmp_path: Path) -> None:
    wall = Wall(1_800_000_000.0)
    path = tmp_path / "hlc"
    clock = HLC(path, wall=wall, lease_ms=10_000)
    a = clock.now()
    assert unpack(a) == (1_800_000_000_000, 0)
    b = clock.now()  # same millisecond: the counter moves
    assert unpack(b) == (1_800_000_000_000, 1)
    wall.now -= 3600  # NTP (or a missing RTC) steps the clock back an hour
    c = clock.now()
    assert c > b
    # A restart with the clock still behind starts above anything issued before.
    again = HLC(path, wall=wall, lease_ms=10_000)
    d = again.now()
    assert d > c
    assert unpack(d)[0] >= 1_800_000_000_000 + 10_000
    # Observing a timestamp from elsewhere moves past it.
    far = pack(1_900_000_000_000, 5)
    assert again.update(far) > far


def test_hlc_counter_overflow_borrows_the_next_millisecond() -> None:
    clock = HLC(wall=Wall(1.0))
    last = clock.update(pack(1000, 0xFFFF))
    assert unpack(last) == (1001, 0)


def test_topic_filters() -> None:
    f = TopicFilters(["pubsub/sensors/#", "+/alarms/+"])
    assert f.matches("pubsub", "sensors")
    assert f.matches("pubsub", "sensors/a/b")
    assert not f.matches("other", "sensors/a")
    assert f.matches("other", "alarms/x")
    assert not f.matches("other", "alarms/x/y")
    assert f.pubsubs() is None
    assert TopicFilters(["a/x", "b/#"]).pubsubs() == {"a", "b"}
    assert not TopicFilters([])
    for bad in ("nopubsub", "p/a#", "p/#/x", "p/a+"):
        with pytest.raises(ValueError, match="filter"):
            TopicFilters([bad])


async def test_changes_are_logged_in_the_same_transaction(tmp_path: Path) -> None:
    store = sqlite_store.create(context({"connectionString": "state.db"}, tmp_path))
    await store.init()
    try:
        await store.set(SetRequest("app||before", b'"x"'))  # not synced yet: not logged
        log = ChangeLog("statestore", HLC())
        store.log_changes(log)
        await store.set(SetRequest("app||a", b'{"n":1}'))
        await store.set(SetRequest("app||bin", b"\x00\xff", is_binary=True))
        await store.delete(DeleteRequest("app||a"))
        await store.delete(DeleteRequest("app||never-there"))  # no change: no row
        # A transaction that fails half-way leaves neither the change nor its log row.
        with pytest.raises(ETagMismatchError):
            await store.multi([SetRequest("app||t1", b"1"),
                               SetRequest("app||t2", b"2", etag="wrong")])
        with pytest.raises(ETagMismatchError):
            await store.set(SetRequest("app||a", b"3", etag="wrong"))
        assert log.appended.is_set()
        source = ChangeLogSource(store.database, log, KeyPrefix("app"))
        rows = await source.claim(0, 100)
        assert [(r.kind, r.key) for r in rows] == [
            (KIND_UPSERT, "a"), (KIND_UPSERT, "bin"), (KIND_DELETE, "a")]
        assert cbor2.loads(rows[0].payload) == {"n": 1}
        assert cbor2.loads(rows[1].payload) == b"\x00\xff"
        assert rows[0].hlc < rows[1].hlc < rows[2].hlc
        assert source.epoch == store.epoch
        assert await source.backlog() == 3
        await source.ack(rows[1].seq)
        assert [r.seq for r in await source.claim(0, 100)] == [rows[2].seq]
    finally:
        await store.close()
    conn = sqlite3.connect(tmp_path / "state.db")
    assert conn.execute(f'SELECT COUNT(*) FROM "{TABLE}"').fetchone()[0] == 1
    conn.close()


async def test_events_go_to_the_cloud_outbox_in_the_publish_transaction(tmp_path: Path) -> None:
    db = open_database(tmp_path / "outbox.db")
    await db.open()
    try:
        broker = Outbox(db, "pubsub:p")
        cloud = Outbox(db, "cloud", OutboxLimits(max_messages=2))
        await broker.open()
        await cloud.open()
        filters = TopicFilters(["p/sensors/#"])
        broker.tee = _tee("p", filters, cloud, HLC(wall=lambda: 0.007))  # the runtime's own
        await broker.append([Item("sensors/a", b'{"id":"e1","data":1}'), Item("other", b"{}")])
        assert (broker.count, cloud.count) == (2, 1)
        [event] = await OutboxSource(cloud).claim(0, 10)
        assert (event.kind, event.target, event.key, event.hlc) == (KIND_EVENT, "p/sensors/a",
                                                                   "e1", pack(7, 0))
        assert cbor2.loads(event.payload) == {"id": "e1", "data": 1}
        await broker.append([Item("sensors/b", b"raw bytes")])
        # The cloud outbox is full: the publish fails whole, nothing is half-written.
        with pytest.raises(OutboxFullError):
            await broker.append([Item("sensors/c", b"{}")])
        assert (broker.count, cloud.count) == (3, 2)
        [_, raw] = await OutboxSource(cloud).claim(0, 10)
        assert cbor2.loads(raw.payload) == b"raw bytes"
        assert await OutboxSource(cloud).ack(raw.seq) == 2  # cumulative: both rows
        assert cloud.count == 0
    finally:
        await db.close()


async def test_desired_state_is_last_writer_wins_and_keeps_tombstones(tmp_path: Path) -> None:
    store = DesiredStore(tmp_path / "cloud.db")
    await store.open()
    seen: list[dict[str, str]] = []
    stop = store.watch_configuration(["mode"], lambda items: seen.append(
        {k: v.value for k, v in items.items()}))
    try:
        assert await store.apply([DesiredEntry("mode", cbor2.dumps("eco"), 10, 1),
                                  DesiredEntry("fan", cbor2.dumps({"rpm": 9}), 11, 2)]) == 2
        assert await store.apply([DesiredEntry("mode", cbor2.dumps("old"), 5, 3)]) == 3
        items = await store.get_configuration([])
        assert {k: v.value for k, v in items.items()} == {"mode": "eco", "fan": '{"rpm":9}'}
        assert items["mode"].version == "10"
        await store.apply([DesiredEntry("mode", b"", 20, 4, deleted=True)])
        await store.apply([DesiredEntry("mode", cbor2.dumps("late"), 15, 5)])
        assert await store.get_configuration(["mode"]) == {}
        stop()
        await store.apply([DesiredEntry("mode", cbor2.dumps("again"), 30, 6)])
        assert seen == [{"mode": "eco"}, {"mode": ""}]
    finally:
        await store.close()
    reopened = DesiredStore(tmp_path / "cloud.db")
    await reopened.open()
    assert reopened.seq == 6
    assert (await reopened.get_configuration(["mode"]))["mode"].value == "again"
    await reopened.close()
