"""The MQTT client's pure parts: backoff, takeover detection, the window, ack futures, the
subscription table and the supervisor loop (with a fake connect)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_runtime.pubsub import NotConnectedError, PublishError
from edge_runtime.pubsub.mqtt.acks import AckWaiters
from edge_runtime.pubsub.mqtt.backoff import Backoff, FlapDetector
from edge_runtime.pubsub.mqtt.model import ConnectFailedError
from edge_runtime.pubsub.mqtt.subscriptions import SubscriptionTable
from edge_runtime.pubsub.mqtt.supervisor import Supervisor
from edge_runtime.pubsub.mqtt.window import Window

# --- backoff ----------------------------------------------------------------------------------


def test_backoff_caps_double_then_reset() -> None:
    seen: list[tuple[float, float]] = []

    def upper(lo: float, hi: float) -> float:
        seen.append((lo, hi))
        return hi

    b = Backoff(0.5, 3.0, uniform=upper)
    assert [b.next_delay() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert all(lo == 0.5 for lo, _ in seen)
    b.reset()
    assert b.next_delay() == 0.5


@given(st.floats(0.001, 10), st.floats(1, 100), st.integers(0, 2000))
def test_backoff_delay_within_bounds(minimum: float, spread: float, attempts: int) -> None:
    b = Backoff(minimum, minimum * spread, attempt=attempts)
    assert minimum <= b.next_delay() <= minimum * spread


@pytest.mark.parametrize(("lo", "hi"), [(0, 1), (2, 1), (-1, 1)])
def test_backoff_rejects_bad_bounds(lo: float, hi: float) -> None:
    with pytest.raises(ValueError, match="minimum"):
        Backoff(lo, hi)


def test_flap_detector() -> None:
    f = FlapDetector(window=5.0, threshold=3)
    assert f.lost(1.0) is False
    assert f.short_in_a_row == 0
    for i in range(3):
        f.connected(10.0 * i)
        assert f.lost(10.0 * i + 1.0) is False
    assert f.flapping
    assert f.just_started
    f.connected(100.0)
    f.lost(101.0)
    assert f.flapping
    assert not f.just_started
    f.connected(200.0)
    assert f.lost(260.0) is True  # stayed up: the streak ends
    assert not f.flapping
    f.connected(300.0)
    f.forget()
    assert f.lost(300.5) is False
    assert f.short_in_a_row == 0


# --- window -----------------------------------------------------------------------------------


async def test_window_is_fifo_and_resizable() -> None:
    w = Window(2)
    order: list[int] = []

    async def holder(i: int, release: asyncio.Event) -> None:
        async with w.slot():
            order.append(i)
            await release.wait()

    events = [asyncio.Event() for _ in range(5)]
    tasks = [asyncio.create_task(holder(i, e)) for i, e in enumerate(events)]
    await asyncio.sleep(0)
    assert order == [0, 1]
    assert w.used == 2
    events[0].set()
    await asyncio.sleep(0.01)
    assert order == [0, 1, 2]
    w.resize(4)  # grows: both waiters get in, in order
    await asyncio.sleep(0.01)
    assert order == [0, 1, 2, 3, 4]
    assert w.used == 4
    w.resize(0)  # at least one slot
    assert w.capacity == 1
    for e in events:
        e.set()
    await asyncio.gather(*tasks)
    assert w.used == 0
    with pytest.raises(ValueError, match="one slot"):
        Window(0)


async def test_window_cancelled_waiters_keep_no_slot() -> None:
    w = Window(1)
    await w.acquire()
    waiting = asyncio.create_task(w.acquire())
    handed = asyncio.create_task(w.acquire())
    await asyncio.sleep(0)
    waiting.cancel()  # cancelled while queued
    await asyncio.gather(waiting, return_exceptions=True)
    w.release()  # hands the slot to `handed`...
    handed.cancel()  # ...which is cancelled before it runs: the slot must come back
    await asyncio.gather(handed, return_exceptions=True)
    assert w.used == 0
    await asyncio.wait_for(w.acquire(), 1)


# --- ack futures ------------------------------------------------------------------------------


async def test_acks_resolve_early_fail_and_time_out() -> None:
    acks = AckWaiters(timeout=0.05)
    waiter = asyncio.create_task(acks.wait(1, "PUBACK"))
    await asyncio.sleep(0)
    assert len(acks) == 1
    acks.resolve(1, "ok")
    acks.resolve(1, "twice")  # already done: ignored
    acks.resolve(99, "unknown")  # nobody waits, not during a call: ignored
    assert await waiter == "ok"
    assert len(acks) == 0

    with acks.calling():  # the ack arrives inside the library call, before the wait
        acks.resolve(2, "early")
    assert await acks.wait(2, "PUBACK") == "early"

    with pytest.raises(PublishError, match="no SUBACK"):
        await acks.wait(3, "SUBACK")
    assert len(acks) == 0

    a = asyncio.create_task(acks.wait(4, "PUBACK"))
    b = asyncio.create_task(acks.wait(4, "PUBACK"))
    await asyncio.sleep(0)
    with pytest.raises(PublishError, match="still in use"):
        await b
    acks.fail_all("gone")
    with pytest.raises(NotConnectedError, match="gone"):
        await a
    assert len(acks) == 0


# --- subscription table -----------------------------------------------------------------------


@dataclass
class Code:
    is_failure: bool

    def __str__(self) -> str:
        return "refused" if self.is_failure else "granted"


def test_subscription_table(caplog: pytest.LogCaptureFixture) -> None:
    t = SubscriptionTable("ps")
    t.track("a", 1)
    t.track("b", 0)
    t.untrack("b")
    t.untrack("c")
    t.track("c", 1)  # tracked again: not dropped any more
    assert t.filters == {"a": 1, "c": 1}
    assert t.take_dropped() == ["b"]
    assert t.take_dropped() == []
    t.untrack("d")
    t.unsubscribed("d")
    assert t.take_dropped() == []

    assert t.settled
    t.batch_sent(7, ["a", "c"])
    assert not t.settled
    assert t.batch_acked(8, [Code(False)]) is False  # not a batch
    with caplog.at_level(logging.ERROR):
        assert t.batch_acked(7, [Code(False), Code(True)]) is True
    assert "'c'" in caplog.text
    assert t.filters == {"a": 1, "c": 1}
    t.batch_sent(9, ["a"])
    t.connection_lost()
    assert t.batch_acked(9, [Code(False)]) is False
    assert t.settled
    t.refused("a", Code(True))
    assert t.filters == {"c": 1}


# --- supervisor -------------------------------------------------------------------------------


async def test_supervisor_retries_then_gives_up(caplog: pytest.LogCaptureFixture) -> None:
    lost = asyncio.Event()
    outcomes = [ConnectFailedError("network", "down"), ConnectFailedError("timeout", "slow"),
                None, ConnectFailedError("not_authorized", "bad password")]

    async def connect_once() -> None:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome
        sup.connected()
        sup.lost("dropped")
        lost.set()

    sup = Supervisor("ps", "cid", connect_once, lost, Backoff(0.001, 0.002))
    with caplog.at_level(logging.DEBUG):
        await asyncio.wait_for(sup.run(), 5)
    assert sup.attempts == 4
    assert sup.given_up == "bad password"
    assert "not retrying" in caplog.text


async def test_supervisor_reconnect_now_skips_the_delay() -> None:
    lost = asyncio.Event()
    calls = 0

    async def connect_once() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            sup.connected()
            sup.reconnect_now()
            sup.lost("ours")  # a requested reconnect is no loss
            lost.set()
            return
        raise ConnectFailedError("not_authorized", "stop")

    sup = Supervisor("ps", "cid", connect_once, lost, Backoff(30.0, 60.0))
    await asyncio.wait_for(sup.run(), 1)  # would sleep >= 30 s without reconnect_now
    assert calls == 2
    assert sup.flap.short_in_a_row == 0


def test_supervisor_takeover_is_reported_once_per_streak(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def never() -> None:
        raise AssertionError

    sup = Supervisor("ps", "twin", never, asyncio.Event(), Backoff(1, 2),
                     FlapDetector(window=60.0, threshold=2))
    with caplog.at_level(logging.WARNING):
        for _ in range(4):
            sup.connected()
            sup.lost("closed")
        sup.connected()
        sup.lost("Session taken over", taken_over=True)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "'twin' is being taken over" in errors[0].getMessage()
    sup.flap.window = 0.0  # the next connection counts as stable: the streak ends
    sup.connected()
    sup.lost("closed")
    assert sup.backoff.attempt == 0
    sup.flap.window = 60.0
    sup.connected()
    sup.lost("Session taken over", taken_over=True)  # a new streak, reported at once
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 2
