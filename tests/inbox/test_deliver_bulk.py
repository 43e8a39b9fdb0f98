"""The Deliverer with a bulk callable: batches, per-row settling, expiry, failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime

import pytest

from edge_runtime.appchannel import Outcome
from edge_runtime.inbox import Deliverer, Inbox, InboxRow, PoisonEventError, RetryPolicy
from edge_runtime.subscriptions import Subscription
from edge_runtime.subscriptions.model import BulkSettings
from tests.inbox.conftest import FakeClock, OpenInbox, received
from tests.inbox.test_deliver import DLQ, App, drained, until

FAST = RetryPolicy("constant", duration_s=0.01, max_retries=3, name="fast")


def bulk_sub(max_messages: int = 10, max_await_ms: int = 20, dead: str | None = None,
             enabled: bool = True) -> Subscription:
    return Subscription("p", "t", default_path="/in", dead_letter_topic=dead,
                        bulk=BulkSettings(enabled, max_messages, max_await_ms))


class BulkApp:
    """A bulk callable: records each batch's data; ``script[data]`` lists the results of the
    calls that answer, in turn (the last repeats; default SUCCESS; ``None`` leaves the row
    out); the first ``fail`` calls raise."""

    def __init__(self, script: dict[bytes, Sequence[Outcome | Exception | None]] | None = None,
                 fail: int = 0) -> None:
        self.script = script or {}
        self.fail = fail
        self.batches: list[list[bytes]] = []
        self.answered: list[bytes] = []

    async def __call__(
        self, s: Subscription, rows: Sequence[InboxRow]
    ) -> Mapping[int, Outcome | Exception]:
        assert s.bulk.enabled
        self.batches.append([r.data for r in rows])
        if self.fail:
            self.fail -= 1
            raise RuntimeError("bulk bug")
        self.answered.extend(r.data for r in rows)
        out: dict[int, Outcome | Exception] = {}
        for row in rows:
            steps = self.script.get(row.data, [Outcome.SUCCESS])
            seen = self.answered.count(row.data)
            step = steps[min(seen - 1, len(steps) - 1)]
            if step is not None:
                out[row.seq] = step
        return out


@pytest.fixture
async def running() -> AsyncIterator[list[Deliverer]]:
    started: list[Deliverer] = []
    yield started
    for d in started:
        await d.stop(1.0)


def make(inbox: Inbox, bulk: BulkApp, running: list[Deliverer], *, app: App | None = None,
         dlq: DLQ | None = None) -> tuple[Deliverer, asyncio.Event]:
    ready = asyncio.Event()
    d = Deliverer(inbox, app or App(), ready=ready, dead_letter=dlq, deliver_bulk=bulk,
                  retry=lambda _p: FAST, poll_interval_s=0.05, error_pause_s=0.01)
    running.append(d)
    return d, ready


async def test_left_out_rows_and_a_raising_callable_are_retries(
    open_inbox: OpenInbox, running: list[Deliverer]
) -> None:
    inbox = await open_inbox()
    bulk = BulkApp({b"b": [None, Outcome.SUCCESS]}, fail=1)
    d, ready = make(inbox, bulk, running)
    await d.start([bulk_sub()])
    for data in ("a", "b", "c"):
        await inbox.add("p|t", received(data), None)
    ready.set()
    await drained(inbox)
    assert bulk.batches == [[b"a", b"b", b"c"], [b"a", b"b", b"c"], [b"b"]]
    assert await inbox.deadletters() == []


async def test_poison_and_retries_exhausted_in_a_batch_follow_the_single_path(
    open_inbox: OpenInbox, running: list[Deliverer]
) -> None:
    inbox = await open_inbox()
    bulk = BulkApp({b"bad": [PoisonEventError("not JSON")], b"slow": [Outcome.RETRY]})
    dlq = DLQ()
    d, ready = make(inbox, bulk, running, dlq=dlq)
    await d.start([bulk_sub(dead="dead")])
    for data in ("ok", "bad", "slow"):
        await inbox.add("p|t", received(data), None)
    ready.set()
    await drained(inbox)
    assert sorted(dlq.sent) == [("dead", b"bad"), ("dead", b"slow")]
    assert [b for b in bulk.batches if b"slow" in b][1:] == [[b"slow"]] * 3


async def test_expired_rows_are_not_sent(
    open_inbox: OpenInbox, running: list[Deliverer]
) -> None:
    clock = FakeClock()
    inbox = await open_inbox(clock=clock)
    bulk = BulkApp()
    d, ready = make(inbox, bulk, running)
    await d.start([bulk_sub()])
    soon = datetime.fromtimestamp(clock.now_wall + 10, tz=UTC)
    await inbox.add("p|t", received("old"), None, expiration=soon)
    await inbox.add("p|t", received("fresh"), None)
    clock.advance(11)
    ready.set()
    await drained(inbox)
    assert bulk.batches == [[b"fresh"]]


async def test_without_bulk_enabled_rows_go_one_by_one(
    open_inbox: OpenInbox, running: list[Deliverer]
) -> None:
    inbox = await open_inbox()
    bulk, app = BulkApp(), App()
    d, ready = make(inbox, bulk, running, app=app)
    await d.start([bulk_sub(enabled=False)])
    for data in ("a", "b"):
        await inbox.add("p|t", received(data), None)
    ready.set()
    await until(lambda: app.data() == [b"a", b"b"])
    await drained(inbox)
    assert bulk.batches == []
