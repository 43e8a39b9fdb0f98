"""The inbox table: add, dedup, back-pressure, expiry across boots, pruning of seen ids."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge_runtime.inbox import InboxFullError, InboxLimits
from edge_runtime.inbox.appdelivery import peek_envelope
from edge_runtime.observability import metrics
from tests.inbox.conftest import FakeClock, OpenInbox, received


def _value(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


async def test_add_commits_rows_in_order_with_metadata(open_inbox: OpenInbox) -> None:
    inbox = await open_inbox()
    for i in range(5):
        assert await inbox.add("p|t", received(f"m{i}", retained="false"), f"id-{i}")
    rows = await inbox.head("p|t", 10)
    assert [r.data for r in rows] == [f"m{i}".encode() for i in range(5)]
    assert rows[0].metadata == {"retained": "false"}
    assert rows[0].event_id == "id-0"
    assert rows[0].attempts == 0
    assert [r.seq for r in rows] == sorted(r.seq for r in rows)
    assert (await inbox.backlog())["p|t"][0] == 5


async def test_duplicate_id_is_not_stored_and_is_per_subscription(open_inbox: OpenInbox) -> None:
    inbox = await open_inbox()
    before = _value("edge_runtime_inbox_duplicates_total", subscription="p|dup")
    assert await inbox.add("p|dup", received("a"), "same")
    assert not await inbox.add("p|dup", received("b"), "same")
    assert await inbox.add("p|other", received("c"), "same")
    assert [r.data for r in await inbox.head("p|dup", 10)] == [b"a"]
    assert _value("edge_runtime_inbox_duplicates_total", subscription="p|dup") == before + 1


async def test_events_without_id_are_all_stored(open_inbox: OpenInbox) -> None:
    inbox = await open_inbox()
    assert await inbox.add("p|raw", received("x"), None)
    assert await inbox.add("p|raw", received("x"), None)
    assert len(await inbox.head("p|raw", 10)) == 2


async def test_dedup_survives_delivery_and_restart(open_inbox: OpenInbox, tmp_path: Path) -> None:
    inbox = await open_inbox()
    assert await inbox.add("p|t", received("a"), "e1")
    [row] = await inbox.head("p|t")
    await inbox.complete(row)
    await inbox.close()
    again = await open_inbox()
    assert not await again.add("p|t", received("a"), "e1")
    assert await again.head("p|t") == []


async def test_backlog_limit_by_count_raises_and_stores_nothing(open_inbox: OpenInbox) -> None:
    inbox = await open_inbox(limits=InboxLimits(max_messages=3))
    before = _value("edge_runtime_inbox_rejected_total", subscription="p|full")
    for i in range(3):
        await inbox.add("p|full", received("x"), f"e{i}")
    with pytest.raises(InboxFullError, match="inbox is full"):
        await inbox.add("p|full", received("x"), "e3")
    assert _value("edge_runtime_inbox_rejected_total", subscription="p|full") == before + 1
    # the refused id was not remembered: once there is room the broker's redelivery is stored
    [first, *_] = await inbox.head("p|full", 3)
    await inbox.complete(first)
    assert await inbox.add("p|full", received("x"), "e3")
    # a duplicate is still recognised (and acked) while full
    assert not await inbox.add("p|full", received("x"), "e1")


async def test_backlog_limit_by_bytes(open_inbox: OpenInbox) -> None:
    inbox = await open_inbox(limits=InboxLimits(max_bytes=2000))
    await inbox.add("p|b", received(b"x" * 1000), None)
    with pytest.raises(InboxFullError):
        await inbox.add("p|b", received(b"x" * 1000), None)


async def test_expiration_is_converted_once_to_remaining_time(open_inbox: OpenInbox) -> None:
    clock = FakeClock()
    inbox = await open_inbox(clock=clock)
    expiry = datetime.fromtimestamp(clock.now_wall + 10, tz=UTC)
    await inbox.add("p|t", received("a"), "e", expiration=expiry)
    [row] = await inbox.head("p|t")
    assert not inbox.expired(row)
    clock.now_wall += 3600  # NTP jumps the wall clock: no effect on the expiry
    assert not inbox.expired(row)
    clock.now_mono += 10
    assert inbox.expired(row)


async def test_past_expiration_on_arrival_is_expired(open_inbox: OpenInbox) -> None:
    clock = FakeClock()
    inbox = await open_inbox(clock=clock)
    await inbox.add("p|t", received("a"), None,
                    expiration=datetime.fromtimestamp(clock.now_wall - 5, tz=UTC))
    [row] = await inbox.head("p|t")
    assert inbox.expired(row)


async def test_expiry_after_reboot_counts_from_the_last_checkpoint(open_inbox: OpenInbox) -> None:
    clock = FakeClock()
    inbox = await open_inbox(clock=clock)
    await inbox.add("p|t", received("a"), None,
                    expiration=datetime.fromtimestamp(clock.now_wall + 100, tz=UTC))
    clock.advance(30)
    await inbox.close()  # checkpoints the monotonic clock: 70 s remain
    rebooted = FakeClock(wall=clock.now_wall + 1_000_000, mono=5.0)  # new boot, clock reset
    rebooted.boot_id = "boot-2"
    inbox = await open_inbox(clock=rebooted)
    [row] = await inbox.head("p|t")
    assert row.ttl_boot == "boot-2"
    rebooted.advance(69)
    assert not inbox.expired(row)
    rebooted.advance(1)
    assert inbox.expired(row)


async def test_reschedule_is_due_later_and_in_a_new_boot_at_once(open_inbox: OpenInbox) -> None:
    clock = FakeClock()
    inbox = await open_inbox(clock=clock)
    await inbox.add("p|t", received("a"), None)
    [row] = await inbox.head("p|t")
    assert inbox.due_in(row) == 0
    await inbox.reschedule(row, attempts=1, delay_s=2.0, error="boom")
    [row] = await inbox.head("p|t")
    assert (row.attempts, row.last_error) == (1, "boom")
    assert inbox.due_in(row) == pytest.approx(2.0)
    clock.boot_id = "boot-2"
    assert inbox.due_in(row) == 0


async def test_prune_seen_by_age_and_count(open_inbox: OpenInbox) -> None:
    clock = FakeClock()
    inbox = await open_inbox(clock=clock, limits=InboxLimits(seen_ttl_s=60, seen_max=5))
    before = _value("edge_runtime_inbox_seen_pruned_total")
    for i in range(3):
        await inbox.add("p|old", received("x"), f"old-{i}")
    clock.advance(120)
    for i in range(8):
        clock.advance(0.01)
        await inbox.add("p|new", received("x"), f"new-{i}")
    # p|new passing seen_max by a tenth (one id here) starts a prune at once; then this one
    await inbox.prune_seen()
    assert _value("edge_runtime_inbox_seen_pruned_total") == before + 3 + 3

    def ids(conn: sqlite3.Connection) -> list[str]:
        return [r[0] for r in conn.execute("SELECT event_id FROM seen_log ORDER BY id")]

    assert await inbox.db.read(ids) == [f"new-{i}" for i in range(3, 8)]
    # a forgotten id is stored again (at-least-once beyond the window)
    assert await inbox.add("p|old", received("x"), "old-0")


async def test_prune_in_chunks(open_inbox: OpenInbox, monkeypatch: pytest.MonkeyPatch) -> None:
    from edge_runtime.inbox import store

    monkeypatch.setattr(store, "_PRUNE_CHUNK", 7)
    clock = FakeClock()
    inbox = await open_inbox(clock=clock, limits=InboxLimits(seen_ttl_s=1))
    for i in range(50):
        await inbox.add("p|t", received("x"), f"e{i}")
    clock.advance(10)
    assert await inbox.prune_seen() == 50


async def test_maintain_refreshes_gauges_and_reclaims(open_inbox: OpenInbox) -> None:
    inbox = await open_inbox()
    for i in range(300):
        await inbox.add("p|gauge", received(b"x" * 4000), f"e{i}")
    for row in await inbox.head("p|gauge", 300):
        await inbox.complete(row)
    await inbox.maintain()
    assert _value("edge_runtime_inbox_backlog", subscription="p|gauge") == 0
    free = await inbox.db.read(lambda c: c.execute("PRAGMA freelist_count").fetchone()[0])
    assert free < 256


def test_peek_envelope() -> None:
    facts = peek_envelope(b'{"id":"abc","expiration":"2030-01-01T00:00:00Z"}')
    assert facts.event_id == "abc"
    assert facts.expiration == datetime(2030, 1, 1, tzinfo=UTC)
    naive = peek_envelope(b'{"expiration":"2030-01-01T00:00:00.123456789"}')
    assert naive.expiration is not None
    assert naive.expiration.tzinfo is not None
    offset = peek_envelope(b'{"expiration":"2030-01-01T02:00:00+02:00"}')
    assert offset.expiration == datetime(2030, 1, 1, tzinfo=UTC)
    assert peek_envelope(b'{"id":"x"}', raw_payload=True).event_id is None
    for bad in (b"not json", b"[1]", b'{"id": 5, "expiration": "soon"}', b"{" * 5000, b""):
        assert peek_envelope(bad).event_id is None
    assert peek_envelope(b'{"expiration": "x"}').expiration is None
