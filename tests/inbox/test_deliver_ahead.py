"""Ordered delivery reads rows ahead and deletes delivered rows without waiting: it reads the
queue once per many rows, commits the deletes in batches, never delivers a row twice while
its delete is pending, and a kill -9 before the deletes commit redelivers, losing nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from edge_runtime.appchannel import Outcome
from edge_runtime.inbox import Deliverer, Inbox, InboxRow
from edge_runtime.inbox import deliver as deliver_module
from edge_runtime.subscriptions import Subscription
from tests.inbox.conftest import OpenInbox, received
from tests.inbox.test_deliver import App, drained, make, running, sub, until

__all__ = ["running"]  # the fixture, shared with test_deliver.py


async def _fill(inbox: Inbox, n: int, key: str = "p|t") -> None:
    await asyncio.gather(*(inbox.add(key, received(str(i)), None) for i in range(n)))


def _expected(n: int) -> list[bytes]:
    return [str(i).encode() for i in range(n)]


async def test_reads_the_queue_once_per_many_rows_and_batches_the_deletes(
    open_inbox: OpenInbox, running: list[Deliverer]
) -> None:
    inbox = await open_inbox()
    await _fill(inbox, 300)
    reads = 0
    head = inbox.head

    async def counted(*args: Any, **kwargs: Any) -> list[InboxRow]:
        nonlocal reads
        reads += 1
        return await head(*args, **kwargs)

    inbox.head = counted  # type: ignore[method-assign]
    gate = threading.Event()  # the writer is held while the events are delivered
    blocker = asyncio.ensure_future(inbox.db.write(lambda _conn: gate.wait(10)))
    units = inbox.db.writer.units
    app = App()
    d, _ = make(inbox, app, running)
    await d.start([sub()])
    try:
        await until(lambda: len(app.calls) == 300)
    finally:
        gate.set()
        await blocker
    assert app.data() == _expected(300)  # in order, each once
    assert reads <= 30  # one read per event before
    inbox.head = head  # type: ignore[method-assign]
    await drained(inbox)
    # The held unit, then the deletes queued behind it: one unit per batch (one per event
    # before).
    assert inbox.db.writer.units - units <= 4


async def test_a_row_whose_delete_is_pending_is_not_delivered_again(
    open_inbox: OpenInbox, running: list[Deliverer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(deliver_module, "PREFETCH_ROWS", 2)  # read again while deletes wait
    inbox = await open_inbox()
    await _fill(inbox, 20)
    gate = threading.Event()
    blocker = asyncio.ensure_future(inbox.db.write(lambda _conn: gate.wait(10)))
    try:
        app = App()
        d, _ = make(inbox, app, running)
        await d.start([sub()])
        await until(lambda: len(app.calls) == 20)
        for _ in range(5):  # wake the loop: it reads the queue, the 20 rows are all there
            inbox.waiter("p|t").set()
            await asyncio.sleep(0.02)
        assert len(await inbox.head("p|t", 100)) == 20  # no delete has committed
        assert app.data() == _expected(20)
    finally:
        gate.set()
        await blocker
    await drained(inbox)
    assert app.data() == _expected(20)


async def test_a_retried_row_holds_the_rows_read_after_it(
    open_inbox: OpenInbox, running: list[Deliverer]
) -> None:
    inbox = await open_inbox()
    await _fill(inbox, 10)
    app = App({b"3": [Outcome.RETRY, Outcome.RETRY, Outcome.SUCCESS]})
    d, _ = make(inbox, app, running)
    await d.start([sub()])
    await drained(inbox)
    assert app.data() == [*_expected(4), b"3", b"3", *_expected(10)[4:]]
    assert [a for _k, data, a in app.calls if data == b"3"] == [0, 1, 2]


_CHILD = """
import asyncio, os, sys, threading
from pathlib import Path
from edge_runtime.appchannel import Outcome
from edge_runtime.inbox import Deliverer, Inbox
from edge_runtime.subscriptions import Subscription

async def main(data: str, block: bool) -> None:
    inbox = Inbox(Path(data))
    await inbox.open()
    if block:  # the writer is held: delivered rows' deletes cannot commit
        gate = threading.Event()
        held = asyncio.ensure_future(inbox.db.write(lambda _c: gate.wait(60)))
    out = open(os.path.join(data, "delivered"), "a")

    async def deliver(_sub, row):
        out.write(row.data.decode() + "\\n")
        out.flush()
        if row.data == b"0":
            print("delivering", flush=True)
        return Outcome.SUCCESS

    ready = asyncio.Event()
    ready.set()
    await Deliverer(inbox, deliver, ready=ready).start([Subscription("p", "t", default_path="/in")])
    await asyncio.Event().wait()

asyncio.run(main(sys.argv[1], sys.argv[2] == "block"))
"""


@pytest.mark.parametrize("block", [True, False], ids=["deletes-held", "deletes-racing"])
async def test_kill_9_before_the_deletes_commit_redelivers_and_loses_nothing(
    tmp_path: Path, block: bool
) -> None:
    n = 400
    inbox = Inbox(tmp_path)
    await inbox.open()
    await _fill(inbox, n)
    await inbox.close()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CHILD, str(tmp_path), "block" if block else "race",
        stdout=asyncio.subprocess.PIPE, env=env,
    )
    assert child.stdout is not None
    assert await asyncio.wait_for(child.stdout.readline(), 30) == b"delivering\n"
    log = tmp_path / "delivered"
    deadline = asyncio.get_running_loop().time() + 30
    want = n if block else n // 2
    while len(log.read_text().split()) < want:  # kill -9 mid-stream (or after all, held)
        assert asyncio.get_running_loop().time() < deadline, "the child did not deliver"
        await asyncio.sleep(0.001)
    child.send_signal(signal.SIGKILL)
    await child.wait()
    before = log.read_text().split()
    assert len(set(before)) == len(before)  # none twice while it ran

    inbox = Inbox(tmp_path)
    await inbox.open()
    try:
        left = [r.data.decode() for r in await inbox.head("p|t", 10 * n)]
        gone = {str(i) for i in range(n)} - set(left)
        assert gone <= set(before)  # only delivered rows were deleted
        if block:
            assert len(before) == n
            assert left == [str(i) for i in range(n)]  # every delete was lost: all again
        app = App()
        ready = asyncio.Event()
        ready.set()
        d = Deliverer(inbox, app, ready=ready)
        await d.start([Subscription("p", "t", default_path="/in")])
        try:
            await drained(inbox)
        finally:
            await d.stop(1.0)
        after = [data.decode() for data in app.data()]
        assert after == left  # the rest, in order
        assert set(before) | set(after) == {str(i) for i in range(n)}  # nothing lost
    finally:
        await inbox.close()
