"""The Deliverer: order, concurrency, retries, dead letters, expiry, restart, shutdown."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge_runtime.appchannel import AppUnavailableError, Outcome
from edge_runtime.inbox import (
    Deliverer,
    DropEventError,
    Inbox,
    InboxRow,
    PoisonEventError,
    RetryPolicy,
)
from edge_runtime.inbox import deadletters as cli
from edge_runtime.inbox.schema import DeadLetterRow
from edge_runtime.observability import metrics
from edge_runtime.subscriptions import Subscription
from tests.inbox.conftest import FakeClock, OpenInbox, received

FAST = RetryPolicy("exponential", initial_s=0.01, multiplier=2, max_interval_s=0.04,
                   max_retries=3, name="fast")


def sub(topic: str = "t", dead: str | None = None) -> Subscription:
    return Subscription("p", topic, default_path="/in", dead_letter_topic=dead)


def _value(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


async def parked(inbox: Inbox, within: float = 5.0) -> list[DeadLetterRow]:
    """The dead letters, once there are some."""
    deadline = time.monotonic() + within
    while not (rows := await inbox.deadletters()):
        if time.monotonic() > deadline:
            raise AssertionError("nothing was parked in time")
        await asyncio.sleep(0.005)
    return rows


async def drained(inbox: Inbox, *keys: str, within: float = 5.0) -> None:
    """Wait until the subscriptions' rows are all gone (delivered, dropped or parked)."""
    deadline = time.monotonic() + within
    for key in keys or ("p|t",):
        while await inbox.head(key):
            if time.monotonic() > deadline:
                raise AssertionError(f"{key} did not drain in time")
            await asyncio.sleep(0.005)


async def until(cond: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


class App:
    """A deliver callable: records calls; ``script[data]`` lists outcomes to give in turn
    (the last repeats; default SUCCESS); an exception instance in the script is raised."""

    def __init__(self, script: dict[bytes, Sequence[Outcome | Exception]] | None = None,
                 delay: float = 0.0) -> None:
        self.script = script or {}
        self.delay = delay
        self.calls: list[tuple[str, bytes, int]] = []
        self.active = 0
        self.max_active = 0
        self.gate: asyncio.Event | None = None

    async def __call__(self, s: Subscription, row: InboxRow) -> Outcome:
        self.calls.append((s.key, row.data, row.attempts))
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.delay:
                await asyncio.sleep(self.delay)
            steps = self.script.get(row.data, [Outcome.SUCCESS])
            step = steps[min(len([c for c in self.calls if c[1] == row.data]) - 1,
                             len(steps) - 1)]
            if isinstance(step, Exception):
                raise step
            return step
        finally:
            self.active -= 1

    def data(self, key: str = "p|t") -> list[bytes]:
        return [d for k, d, _ in self.calls if k == key]


class DLQ:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[str | None, bytes]] = []
        self.fail = fail

    async def __call__(self, s: Subscription, row: InboxRow) -> None:
        if self.fail:
            raise RuntimeError("outbox full")
        self.sent.append((s.dead_letter_topic, row.data))


@pytest.fixture
async def running() -> AsyncIterator[list[Deliverer]]:
    started: list[Deliverer] = []
    yield started
    for d in started:
        await d.stop(1.0)


def make(inbox: Inbox, app: App, running: list[Deliverer], *, ready: bool = True,
         dlq: DLQ | None = None, policy: RetryPolicy = FAST, concurrency: int = 1,
         poll: float = 0.05) -> tuple[Deliverer, asyncio.Event]:
    event = asyncio.Event()
    if ready:
        event.set()
    d = Deliverer(inbox, app, ready=event, dead_letter=dlq, retry=lambda _p: policy,
                  concurrency=concurrency, poll_interval_s=poll, error_pause_s=0.01)
    running.append(d)
    return d, event


async def test_delivers_in_order_per_subscription(
    open_inbox: OpenInbox, running: list[Deliverer]
) -> None:
    inbox = await open_inbox()
    app = App(delay=0.001)
    d, _ = make(inbox, app, running)
    await d.start([sub("t"), sub("u")])
    for i in range(30):
        await inbox.add("p|t", received(f"t{i}"), None)
        await inbox.add("p|u", received(f"u{i}"), None)
    await until(lambda: len(app.calls) == 60)
    assert app.data("p|t") == [f"t{i}".encode() for i in range(30)]
    assert app.data("p|u") == [f"u{i}".encode() for i in range(30)]
    assert app.max_active <= 2  # at most one per subscription
    await drained(inbox)


async def test_one_blocked_subscription_does_not_hold_another(
    open_inbox: OpenInbox, running: list[Deliverer]
) -> None:
    inbox = await open_inbox()
    app = App({b"stuck": [Outcome.RETRY]})
    slow = RetryPolicy("constant", duration_s=10, max_retries=-1)
    d, _ = make(inbox, app, running, policy=slow)
    await d.start([sub("t"), sub("u")])
    await inbox.add("p|t", received("stuck"), None)
    await inbox.add("p|t", received("behind"), None)
    await inbox.add("p|u", received("free"), None)
    await until(lambda: b"free" in app.data("p|u"))
    assert app.data("p|t") == [b"stuck"]  # ordered: the next one waits for the retry


async def test_concurrency_limit(open_inbox: OpenInbox, running: list[Deliverer]) -> None:
    inbox = await open_inbox()
    app = App()
    app.gate = asyncio.Event()
    d, _ = make(inbox, app, running, concurrency=3)
    for i in range(12):
        await inbox.add("p|t", received(f"m{i}"), None)
    await d.start([sub()])
    await until(lambda: app.active == 3)
    await asyncio.sleep(0.05)
    assert app.active == 3  # no fourth while three are in flight
    app.gate.set()
    await until(lambda: len(app.calls) == 12)
    assert app.max_active == 3
    await drained(inbox)


async def test_waits_for_the_app_to_be_ready(
    open_inbox: OpenInbox, running: list[Deliverer]
) -> None:
    inbox = await open_inbox()
    app = App()
    d, ready = make(inbox, app, running, ready=False)
    await d.start([sub()])
    await inbox.add("p|t", received("a"), None)
    await asyncio.sleep(0.1)
    assert app.calls == []
    ready.set()
    await until(lambda: app.data() == [b"a"])


async def test_retry_with_backoff_then_success(
    open_inbox: OpenInbox, running: list[Deliverer]
) -> None:
    inbox = await open_inbox()
    app = App({b"a": [Outcome.RETRY, AppUnavailableError("refused"), Outcome.SUCCESS]})
    before = _value("edge_runtime_inbox_retries_total", subscription="p|t")
    d, _ = make(inbox, app, running)
    await d.start([sub()])
    await inbox.add("p|t", received("a"), None)
    await until(lambda: len(app.calls) == 3)
    await until(lambda: _value("edge_runtime_inbox_delivered_total",
                               subscription="p|t", outcome="success") >= 1)
    assert [a for _, _, a in app.calls] == [0, 1, 2]
    assert _value("edge_runtime_inbox_retries_total", subscription="p|t") == before + 2
    await drained(inbox)


async def test_retries_exhausted_park_locally_then_replay(
    open_inbox: OpenInbox, running: list[Deliverer], tmp_path: Path
) -> None:
    inbox = await open_inbox()
    app = App({b"bad": [Outcome.RETRY, Outcome.RETRY, Outcome.RETRY, Outcome.RETRY,
                        Outcome.SUCCESS]})
    d, _ = make(inbox, app, running)
    await d.start([sub()])
    await inbox.add("p|t", received("bad"), "ev-1")
    await inbox.add("p|t", received("good"), "ev-2")
    await until(lambda: app.data() == [b"bad"] * 4 + [b"good"])
    [dead] = await inbox.deadletters()
    assert (dead.event_id, dead.attempts, dead.sub_key) == ("ev-1", 4, "p|t")
    assert "retries exhausted: 4 attempts" in dead.reason
    assert dead.last_error == "the app asked to retry"
    # the CLI sees it in the same file while the sidecar runs, and replays it
    assert [r.id for r in cli.list_deadletters(tmp_path)] == [dead.id]
    assert cli.replay(tmp_path, [dead.id]) == 1
    await until(lambda: app.data()[-1:] == [b"bad"] and len(app.calls) == 6, within=5)
    assert app.calls[-1][2] == 0  # replayed with a fresh attempt count
    assert await inbox.deadletters() == []


async def test_dead_letter_topic_used_when_set(
    open_inbox: OpenInbox, running: list[Deliverer]
) -> None:
    inbox = await open_inbox()
    app = App({b"bad": [Outcome.RETRY]})
    dlq = DLQ()
    d, _ = make(inbox, app, running, dlq=dlq)
    await d.start([sub(dead="dead")])
    await inbox.add("p|t", received("bad"), None)
    await until(lambda: dlq.sent == [("dead", b"bad")])
    await drained(inbox)
    assert await inbox.deadletters() == []
    assert await inbox.head("p|t") == []


async def test_failed_dead_letter_publish_parks_locally(
    open_inbox: OpenInbox, running: list[Deliverer]
) -> None:
    inbox = await open_inbox()
    d, _ = make(inbox, App({b"bad": [Outcome.DROP]}), running, dlq=DLQ(fail=True))
    await d.start([sub(dead="dead")])
    await inbox.add("p|t", received("bad"), None)
    [dead] = await parked(inbox)
    assert "dropped by the app" in dead.reason
    assert "outbox full" in dead.reason


async def test_drop_deletes_and_dead_letters_when_set(
    open_inbox: OpenInbox, running: list[Deliverer]
) -> None:
    inbox = await open_inbox()
    dlq = DLQ()
    app = App({b"x": [Outcome.DROP], b"y": [DropEventError("no route", "unrouted")]})
    d, _ = make(inbox, app, running, dlq=dlq)
    await d.start([sub("t"), sub("u", dead="dead")])
    await inbox.add("p|t", received("x"), None)
    await inbox.add("p|u", received("x"), None)
    await inbox.add("p|u", received("y"), None)
    await until(lambda: len(dlq.sent) == 2)
    assert [data for _, data in dlq.sent] == [b"x", b"y"]
    await drained(inbox, "p|t", "p|u")
    assert await inbox.deadletters() == []


async def test_poison_event_is_parked_without_retries(
    open_inbox: OpenInbox, running: list[Deliverer]
) -> None:
    inbox = await open_inbox()
    app = App({b"junk": [PoisonEventError("not JSON")]})
    d, _ = make(inbox, app, running)
    await d.start([sub()])
    await inbox.add("p|t", received("junk"), None)
    await inbox.add("p|t", received("ok"), None)
    await until(lambda: app.data() == [b"junk", b"ok"])
    [dead] = await inbox.deadletters()
    assert dead.attempts == 1
    assert "undeliverable: not JSON" in dead.reason


async def test_callable_exception_is_a_retry(
    open_inbox: OpenInbox, running: list[Deliverer]
) -> None:
    inbox = await open_inbox()
    app = App({b"a": [ValueError("bug"), Outcome.SUCCESS]})
    d, _ = make(inbox, app, running)
    await d.start([sub()])
    await inbox.add("p|t", received("a"), None)
    await until(lambda: len(app.calls) == 2)


async def test_expired_event_is_dropped_and_dead_lettered(
    open_inbox: OpenInbox, running: list[Deliverer]
) -> None:
    clock = FakeClock()
    inbox = await open_inbox(clock=clock)
    app, dlq = App(), DLQ()
    before = _value("edge_runtime_inbox_expired_total", subscription="p|u")
    d, ready = make(inbox, app, running, ready=False, dlq=dlq)
    await d.start([sub("t"), sub("u", dead="dead")])
    soon = datetime.fromtimestamp(clock.now_wall + 10, tz=UTC)
    await inbox.add("p|t", received("old"), None, expiration=soon)
    await inbox.add("p|u", received("old"), None, expiration=soon)
    await inbox.add("p|u", received("fresh"), None)
    clock.advance(11)
    ready.set()
    await until(lambda: app.data("p|u") == [b"fresh"] and dlq.sent == [("dead", b"old")])
    await drained(inbox, "p|t", "p|u")
    assert app.data("p|t") == []
    assert await inbox.head("p|t") == []
    assert _value("edge_runtime_inbox_expired_total", subscription="p|u") == before + 1


async def test_restart_resumes_the_attempt_count(
    open_inbox: OpenInbox, running: list[Deliverer], tmp_path: Path
) -> None:
    inbox = await open_inbox()
    app = App({b"a": [Outcome.RETRY]})
    d, _ = make(inbox, app, running)
    await d.start([sub()])
    await inbox.add("p|t", received("a"), None)
    await until(lambda: len(app.calls) >= 2)
    await d.stop(1.0)
    await inbox.close()
    done = len(app.calls)
    [row] = await (reopened := await open_inbox()).head("p|t")
    assert row.attempts == done
    app2 = App({b"a": [Outcome.RETRY]})
    d2, _ = make(reopened, app2, running)
    await d2.start([sub()])
    [dead] = await parked(reopened)
    assert dead.attempts == 4  # 1 + 3 retries in all, across the restart
    assert len(app2.calls) == 4 - done
    assert app2.calls[0][2] == done


async def test_stop_lets_in_flight_finish_within_the_deadline(
    open_inbox: OpenInbox, running: list[Deliverer]
) -> None:
    inbox = await open_inbox()
    app = App(delay=0.1)
    d, _ = make(inbox, app, running)
    await d.start([sub()])
    await inbox.add("p|t", received("a"), None)
    await until(lambda: app.active == 1)
    await d.stop(2.0)
    assert await inbox.head("p|t") == []


async def test_stop_cancels_after_the_deadline_and_keeps_the_row(
    open_inbox: OpenInbox, running: list[Deliverer]
) -> None:
    inbox = await open_inbox()
    app = App()
    app.gate = asyncio.Event()  # never set: the app hangs
    d, _ = make(inbox, app, running)
    await d.start([sub()])
    await inbox.add("p|t", received("a"), None)
    await until(lambda: app.active == 1)
    started = time.monotonic()
    await d.stop(0.1)
    assert time.monotonic() - started < 1.0
    [row] = await inbox.head("p|t")
    assert row.attempts == 0


async def test_update_starts_and_stops_subscriptions(
    open_inbox: OpenInbox, running: list[Deliverer]
) -> None:
    inbox = await open_inbox()
    app = App()
    d, _ = make(inbox, app, running)
    await d.start([sub("t")])
    await d.update([sub("u")])
    assert d.keys == ["p|u"]
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "inbox-deliver:p|t"]
    await inbox.add("p|t", received("kept"), None)
    await inbox.add("p|u", received("sent"), None)
    await until(lambda: app.data("p|u") == [b"sent"])
    assert len(await inbox.head("p|t")) == 1  # stays until the subscription comes back
