"""The inbox's fast lane (Inbox.add with a Deliverer's lane), over a real file and a real HTTP
app: an event the app takes within the commit window is acknowledged without an event row;
one it does not take is stored before the ack and retried in order; duplicates are dropped.

"The ack" here is :meth:`Inbox.add` returning (the MQTT component sends PUBACK then).
Inserts into ``messages`` are counted by a TEMP trigger on the inbox's write connection.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge_runtime.appchannel.http import HttpAppChannel
from edge_runtime.inbox import Deliverer, Inbox, InboxLimits, RetryPolicy
from edge_runtime.inbox.appdelivery import AppDelivery, peek_envelope
from edge_runtime.observability import metrics
from edge_runtime.pubsub import Received
from edge_runtime.subscriptions import Subscription
from tests.appchannel.appserver import AppServer, Reply, Request

QUICK = RetryPolicy("constant", duration_s=0.02, max_retries=-1, name="quick")
SUB = Subscription("p", "t", default_path="/ev")
WINDOW_MS = 20.0


def event(i: int, event_id: str | None = None) -> bytes:
    return json.dumps({"id": event_id or f"e{i}", "specversion": "1.0", "type": "t",
                       "source": "s", "data": {"i": i}}).encode()


async def until(cond: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


class App:
    """Records the ``i`` of each event posted; ``status(i, attempt)`` gives the reply."""

    def __init__(self) -> None:
        self.seen: list[int] = []
        self.attempts: dict[int, int] = {}
        self.delay = 0.0
        self.fail: set[int] = set()  # answer 500 to the first attempt of these
        self.drop: set[int] = set()  # answer DROP to these
        self.gate: asyncio.Event | None = None

    async def __call__(self, req: Request) -> Reply:
        i = int(json.loads(req.body)["data"]["i"])
        n = self.attempts[i] = self.attempts.get(i, 0) + 1
        if self.gate is not None:
            await self.gate.wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        if i in self.fail and n == 1:
            return Reply(500, b"boom")
        if i in self.drop:
            return Reply(200, b'{"status":"DROP"}')
        self.seen.append(i)
        return Reply(200, b'{"status":"SUCCESS"}')


@dataclass
class Rig:
    inbox: Inbox
    app: App
    server: AppServer
    deliverer: Deliverer[Subscription]

    async def add(self, i: int, event_id: str | None = None) -> bool:
        data = event(i, event_id)
        return await self.inbox.add(SUB.key, Received("t", data, "t", {}),
                                    peek_envelope(data).event_id)

    def rows(self) -> int:
        with sqlite3.connect(self.inbox.path) as conn:
            return int(conn.execute("SELECT count(*) FROM messages").fetchone()[0])

    def seen_log(self) -> int:
        with sqlite3.connect(self.inbox.path) as conn:
            return int(conn.execute("SELECT count(*) FROM seen_log").fetchone()[0])


async def _count_inserts(inbox: Inbox) -> None:
    def install(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS inserted(n INTEGER)")
        conn.execute("INSERT INTO inserted VALUES (0)")
        conn.execute("CREATE TEMP TRIGGER IF NOT EXISTS count_inserts AFTER INSERT ON"
                     " main.messages BEGIN UPDATE inserted SET n = n + 1; END")

    await inbox.db.write(install)


async def inserts(inbox: Inbox) -> int:
    """Rows inserted into ``messages`` since :func:`_count_inserts` (the temp table lives on
    the write connection: read there)."""
    return await inbox.db.write(
        lambda c: int(c.execute("SELECT n FROM inserted").fetchone()[0]), durable=False)


@pytest.fixture
def window_ms() -> float:
    return WINDOW_MS


@pytest.fixture
def concurrency() -> int:
    return 1


@pytest.fixture
async def rig(tmp_path: Path, window_ms: float, concurrency: int) -> AsyncIterator[Rig]:
    inbox = Inbox(tmp_path, commit_window_ms=window_ms)
    await inbox.open()
    app = App()
    async with AppServer(app) as server:
        channel = HttpAppChannel("127.0.0.1", server.port, api_token=None, timeout_s=5,
                                 app_id="me")
        ready = asyncio.Event()
        ready.set()
        deliverer = Deliverer(inbox, AppDelivery(channel), ready=ready, poll_interval_s=0.05,
                              retry=lambda _p: QUICK, fast_lane=True,
                              concurrency=concurrency)
        await deliverer.start([SUB])
        await asyncio.sleep(0.05)  # the worker's first read: nothing waits
        await _count_inserts(inbox)
        rig = Rig(inbox, app, server, deliverer)
        try:
            yield rig
        finally:
            await deliverer.stop(1.0)
            await channel.close()
            await inbox.close()


async def test_quick_app_gets_every_event_in_order_and_no_row_is_written(rig: Rig) -> None:
    n = 60
    for i in range(n):
        started = time.monotonic()
        assert await rig.add(i)
        # acknowledged once the app took it: well within the window, no commit awaited
        assert time.monotonic() - started < 1.0
        await asyncio.sleep(0.002)
    await until(lambda: len(rig.app.seen) == n)
    assert rig.app.seen == list(range(n))  # in order, each once
    # (almost) none: an answer slower than the window (a GC pause, a loaded machine) is stored
    assert await inserts(rig.inbox) <= n // 20
    await until(lambda: rig.rows() == 0)
    # the dedup ids are in memory at once: a redelivered copy is dropped
    assert not await rig.add(5)
    # ... and logged lazily (riding the next commit, here the one this forces)
    await rig.inbox.close()
    assert rig.seen_log() == n
    assert rig.app.seen == list(range(n))


async def test_app_failing_then_succeeding_events_are_stored_and_retried_in_order(
    rig: Rig,
) -> None:
    rig.app.fail = {3, 7}
    n = 12
    for i in range(n):
        assert await rig.add(i)
        await asyncio.sleep(0.002)
    await until(lambda: len(rig.app.seen) == n)
    assert rig.app.seen == list(range(n))
    assert rig.app.attempts[3] == 2
    assert rig.app.attempts[7] == 2
    await until(lambda: rig.rows() == 0)
    assert await inserts(rig.inbox) >= 2  # the failed ones were stored before being retried


async def test_slow_app_ack_waits_for_the_commit_and_the_row_is_deleted(rig: Rig) -> None:
    rig.app.gate = asyncio.Event()
    started = time.monotonic()
    assert await rig.add(0)  # the app has not answered: acknowledged after the commit
    assert time.monotonic() - started >= WINDOW_MS / 1000 * 0.9
    assert rig.rows() == 1
    assert rig.app.seen == []
    # arrivals while it is in flight are stored behind it
    assert await rig.add(1)
    assert await rig.add(2)
    assert rig.rows() == 3
    rig.app.gate.set()
    await until(lambda: len(rig.app.seen) == 3)
    assert rig.app.seen == [0, 1, 2]
    await until(lambda: rig.rows() == 0)
    await asyncio.sleep(0.1)
    assert rig.app.seen == [0, 1, 2]  # event 0 was not posted again from its row


async def test_app_down_then_up_nothing_lost_in_order(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path, commit_window_ms=WINDOW_MS)
    await inbox.open()
    app = App()
    server = AppServer(app)
    await server.__aenter__()
    port = server.port
    await server.__aexit__()  # the app is down: connections refused
    channel = HttpAppChannel("127.0.0.1", port, api_token=None, timeout_s=2, app_id="me")
    ready = asyncio.Event()
    ready.set()
    deliverer = Deliverer(inbox, AppDelivery(channel), ready=ready, poll_interval_s=0.05,
                          retry=lambda _p: QUICK, fast_lane=True)
    await deliverer.start([SUB])
    await asyncio.sleep(0.05)
    rig = Rig(inbox, app, server, deliverer)
    try:
        for i in range(10):
            assert await rig.add(i)
        assert rig.rows() == 10  # all stored before their ack
        async with AppServer(app, port=port):
            await until(lambda: len(app.seen) == 10)
            for i in range(10, 20):
                assert await rig.add(i)
                await asyncio.sleep(0.002)
            await until(lambda: len(app.seen) == 20)
        assert app.seen == list(range(20))
        await until(lambda: rig.rows() == 0)
    finally:
        await deliverer.stop(1.0)
        await channel.close()
        await inbox.close()


async def test_duplicate_while_the_first_copy_is_in_the_fast_lane_is_dropped(rig: Rig) -> None:
    rig.app.delay = 0.005
    first = asyncio.create_task(rig.add(1, "same"))
    await asyncio.sleep(0)
    assert not await rig.add(2, "same")  # waited for the first copy's outcome
    assert await first
    await until(lambda: len(rig.app.seen) == 1)
    await asyncio.sleep(0.05)
    assert rig.app.seen == [1]


async def test_delivered_counter_counts_fast_lane_events(rig: Rig) -> None:
    def delivered() -> float:
        return metrics.REGISTRY.get_sample_value(
            "edge_runtime_inbox_delivered_total",
            {"subscription": SUB.key, "outcome": "success"}) or 0.0

    before = delivered()
    for i in range(5):
        assert await rig.add(i)
    await until(lambda: len(rig.app.seen) == 5)
    await until(lambda: delivered() - before == 5)


async def test_burst_behind_a_failing_event_is_stored_behind_it_in_order(rig: Rig) -> None:
    """A burst queues in the lane; the first is refused by the app before its window ran
    out: it and the queued ones are stored, it first, and retried in arrival order."""
    rig.app.fail = {0}
    rig.app.delay = 0.001
    adds = [asyncio.create_task(rig.add(i)) for i in range(8)]  # one MQTT burst
    assert all(await asyncio.gather(*adds))
    await until(lambda: len(rig.app.seen) == 8)
    assert rig.app.seen == list(range(8))
    assert rig.app.attempts[0] == 2
    await until(lambda: rig.rows() == 0)


async def test_drop_answer_in_the_lane_drops_as_today_and_the_rest_follow_in_order(
    rig: Rig,
) -> None:
    def dropped() -> float:
        return metrics.REGISTRY.get_sample_value(
            "edge_runtime_inbox_dropped_total",
            {"subscription": SUB.key, "reason": "app_drop"}) or 0.0

    before = dropped()
    rig.app.drop = {2}
    adds = [asyncio.create_task(rig.add(i)) for i in range(6)]
    assert all(await asyncio.gather(*adds))
    await until(lambda: len(rig.app.seen) == 5)
    assert rig.app.seen == [0, 1, 3, 4, 5]
    assert rig.app.attempts[2] == 1  # not retried
    await until(lambda: dropped() - before == 1)
    await until(lambda: rig.rows() == 0)
    assert await rig.inbox.deadletters() == []


@pytest.mark.parametrize("window_ms", [0.0])
async def test_window_0_rows_written_meanwhile_are_deleted_and_nothing_repeats(
    rig: Rig,
) -> None:
    """With no window the insert is queued as the post begins: an app slower than the commit
    gets its events written; the lane goes on, and each row is deleted once committed. (With
    a quick app the writer may skip every row: its success came first.)"""

    async def slower(req: Request) -> Reply:
        await asyncio.sleep(0.02)  # well past a commit of this file
        return await App.__call__(rig.app, req)

    rig.server.respond = slower
    n = 40
    for i in range(n):
        assert await rig.add(i)
    await until(lambda: len(rig.app.seen) == n)
    assert await inserts(rig.inbox) > 0  # the rows were written (no window to wait in)
    await until(lambda: rig.rows() == 0)
    await asyncio.sleep(0.1)
    assert rig.app.seen == list(range(n))  # once each, in order


@pytest.mark.parametrize("concurrency", [4])
async def test_delivery_concurrency_4_several_in_flight_each_once_no_rows(rig: Rig) -> None:
    active = 0
    most = 0

    async def slow(req: Request) -> Reply:
        nonlocal active, most
        active += 1
        most = max(most, active)
        try:
            await asyncio.sleep(0.003)
            return await App.__call__(rig.app, req)
        finally:
            active -= 1

    rig.server.respond = slow
    rig.app.fail = {5}
    n = 40
    adds = [asyncio.create_task(rig.add(i)) for i in range(n)]
    assert all(await asyncio.gather(*adds))
    await until(lambda: len(rig.app.seen) == n)
    assert sorted(rig.app.seen) == list(range(n))  # each once (order not kept with 4)
    assert most > 1
    await until(lambda: rig.rows() == 0)


async def test_inbox_full_the_ack_waits_for_the_app(tmp_path: Path) -> None:
    """An event that cannot be stored (the inbox is full) is acknowledged only once the app
    took it from the lane, never before; until then its add waits."""
    inbox = Inbox(tmp_path, commit_window_ms=WINDOW_MS, limits=InboxLimits(max_messages=1))
    await inbox.open()
    app = App()
    app.gate = asyncio.Event()
    async with AppServer(app) as server:
        channel = HttpAppChannel("127.0.0.1", server.port, api_token=None, timeout_s=5,
                                 app_id="me")
        ready = asyncio.Event()
        ready.set()
        deliverer = Deliverer(inbox, AppDelivery(channel), ready=ready, poll_interval_s=0.05,
                              retry=lambda _p: QUICK, fast_lane=True)
        await deliverer.start([SUB])
        await asyncio.sleep(0.05)
        rig = Rig(inbox, app, server, deliverer)
        try:
            assert await rig.add(0)  # the app is stuck: stored after the window (1 row: full)
            second = asyncio.create_task(rig.add(1))
            await asyncio.sleep(WINDOW_MS / 1000 * 5)
            assert not second.done()  # neither stored (full) nor taken by the app: no ack
            assert rig.rows() == 1
            app.gate.set()
            assert await second  # the app took it: acknowledged now
            await until(lambda: len(app.seen) == 2)
            assert app.seen == [0, 1]
            await until(lambda: rig.rows() == 0)
        finally:
            app.gate.set()
            await deliverer.stop(1.0)
            await channel.close()
            await inbox.close()
