"""The outbox's fast lane: while the relay is caught up, an append is sent at once from memory
and its row is written only if the broker's PUBACK has not come by the time its commit runs.

Real mosquitto, real MQTT component, real SQLite files. What is counted as "written" is the
write connection's ``total_changes`` (rows inserted, updated or deleted by the writer).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from prometheus_client import Counter

from edge_runtime.observability.metrics import OUTBOX_APPENDED, OUTBOX_UNWRITTEN
from edge_runtime.outbox.relay import Relay
from edge_runtime.outbox.store import Item, Outbox, Row, open_database
from edge_runtime.pubsub import Message
from edge_runtime.pubsub.mqtt import MqttPubSub, create
from edge_runtime.support.sqlitedb import Database
from tests.pubsub.conftest import FAST, context
from tests.support.mosquitto import Mosquitto, require_mosquitto

pytestmark = pytest.mark.broker

WAIT = 20.0


def metric(counter: Counter) -> float:
    """The outbox ``pubsub:t``'s sample of ``counter``."""
    return float(counter.labels("pubsub:t")._value.get())


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    require_mosquitto()
    b = Mosquitto(tmp_path / "broker", extra_config="max_queued_messages 0")
    b.start()
    yield b
    b.kill()


class Listener:
    """A paho subscriber (persistent session, QoS 1) keeping payloads in arrival order."""

    def __init__(self, port: int, topic: str) -> None:
        self.got: list[bytes] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.topic = topic
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"listener-{uuid.uuid4().hex[:8]}",
                                  clean_session=False)
        self.client.reconnect_delay_set(0.05, 0.5)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_: self._ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        assert self._ready.wait(10), "the listener did not subscribe"

    def _on_connect(self, client: mqtt.Client, *_: object) -> None:
        client.subscribe(self.topic, qos=1)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.got.append(msg.payload)

    def received(self) -> list[bytes]:
        with self._lock:
            return list(self.got)

    def first_arrivals(self) -> list[int]:
        """The ids in the order they first arrived (duplicates after a resend dropped)."""
        seen: set[int] = set()
        out = []
        for p in self.received():
            i = int(p)
            if i not in seen:
                seen.add(i)
                out.append(i)
        return out

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Side:
    """An outbox on a file, its relay and MQTT component, wired as the runtime wires them."""

    def __init__(self, db: Database, box: Outbox, ps: MqttPubSub, relay: Relay) -> None:
        self.db, self.box, self.ps, self.relay = db, box, ps, relay

    async def changes(self) -> int:
        """Rows the writer connection inserted, updated or deleted so far."""
        return int(await self.db.write(lambda c: c.total_changes))


@pytest.fixture
async def side(tmp_path: Path, broker: Mosquitto) -> AsyncIterator[Side]:
    db = open_database(tmp_path / "outbox.db", commit_window_ms=20.0)
    await db.open()
    box = Outbox(db, "pubsub:fast")
    await box.open()
    ps = create(context({"url": broker.url, **FAST, "consumerID": "fastpub"}, tmp_path))

    async def send(row: Row) -> None:
        await ps.publish(Message(row.topic, row.payload, row.metadata))

    async def start_send(row: Row) -> asyncio.Future[None]:
        return await ps.start_publish(Message(row.topic, row.payload, row.metadata))

    relay = Relay(box, send, ps.wait_connected, window=100, start_send=start_send,
                  retry_delay_s=0.05, fast_lane=ps.acks_keep_messages,
                  connected=ps.is_connected)
    await ps.init()
    await asyncio.wait_for(ps.wait_connected(), WAIT)
    relay.start()
    try:
        yield Side(db, box, ps, relay)
    finally:
        await relay.stop()
        await ps.close()
        await db.close()


async def eventually(check, within: float = WAIT) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def steady(box: Outbox, ids: range, topic: str, gap_s: float = 0.001) -> set[int]:
    """Append one message per id, ``gap_s`` apart, each its own publish; the ids whose
    append returned (acknowledged to the app)."""
    acked: set[int] = set()

    async def one(i: int) -> None:
        try:
            await box.append([Item(topic, str(i).encode())])
        except Exception:  # noqa: BLE001 - not acknowledged: not required to arrive
            return
        acked.add(i)

    tasks = []
    for i in ids:
        tasks.append(asyncio.create_task(one(i)))
        await asyncio.sleep(gap_s)
    await asyncio.gather(*tasks)
    return acked


async def test_with_a_quick_broker_almost_no_row_is_written(
    side: Side, broker: Mosquitto
) -> None:
    n = 300
    listener = Listener(broker.port, "fast/q")
    try:
        await steady(side.box, range(5), "fast/q", 0.01)  # first pages, the id reservation
        await eventually(lambda: side.box.count == 0)
        before = await side.changes()
        acked = await steady(side.box, range(5, 5 + n), "fast/q")
        assert acked == set(range(5, 5 + n))
        await eventually(lambda: len(listener.received()) >= n + 5)
        await eventually(lambda: side.box.count == 0)
        await asyncio.sleep(1.5)  # the relay's batched deletes of rows written anyway
        written = await side.changes() - before
        # Through the table each message is an insert and a delete (2n changes).
        assert written < n // 5, written
        assert side.box.count == 0
        assert side.box.bytes == 0
        assert listener.first_arrivals() == list(range(n + 5))  # in order
        assert await side.box.claim(0, 10) == []
    finally:
        listener.stop()


async def test_broker_stopped_publishes_commit_and_arrive_in_order_after_restart(
    side: Side, broker: Mosquitto
) -> None:
    listener = Listener(broker.port, "fast/s")
    try:
        await steady(side.box, range(50), "fast/s")
        await eventually(lambda: len(listener.received()) >= 50)
        before = await side.changes()
        await asyncio.to_thread(broker.stop)
        await eventually(lambda: not side.ps.connected)
        acked = await steady(side.box, range(50, 150), "fast/s")
        assert acked == set(range(50, 150))  # answered after their commit
        assert side.box.count == 100
        kept = await side.box.claim(0, 1000)
        assert [int(r.payload) for r in kept] == list(range(50, 150))
        assert await side.changes() - before >= 100  # every row written
        await asyncio.to_thread(broker.start)
        await eventually(lambda: set(listener.first_arrivals()) >= set(range(150)))
        assert listener.first_arrivals() == list(range(150))
        await eventually(lambda: side.box.count == 0)
        # Caught up again: the fast lane is back on, rows stop being written.
        await asyncio.sleep(1.5)
        before = await side.changes()
        await steady(side.box, range(150, 350), "fast/s")
        await eventually(lambda: set(listener.first_arrivals()) >= set(range(350)))
        await eventually(lambda: side.box.count == 0)
        await asyncio.sleep(1.5)
        assert await side.changes() - before < 40
        assert listener.first_arrivals() == list(range(350))
    finally:
        listener.stop()


async def test_order_and_no_loss_across_a_broker_restart_mid_stream(
    side: Side, broker: Mosquitto
) -> None:
    listener = Listener(broker.port, "fast/r")
    try:
        stream = asyncio.create_task(steady(side.box, range(1500), "fast/r"))
        await eventually(lambda: len(listener.received()) > 300)
        await asyncio.to_thread(broker.stop)
        await asyncio.sleep(0.2)
        await asyncio.to_thread(broker.start)
        acked = await stream
        assert len(acked) == 1500  # the outbox took every one (the commit, if not the broker)
        await eventually(lambda: set(listener.first_arrivals()) >= acked, 60)
        await eventually(lambda: side.box.count == 0)
        assert listener.first_arrivals() == list(range(1500))
    finally:
        listener.stop()


async def test_kill_of_the_broker_mid_stream_loses_nothing_acknowledged(
    side: Side, broker: Mosquitto, tmp_path: Path
) -> None:
    """SIGKILL: PUBACKed messages mosquitto had not saved are the broker's loss, so the
    listener here checks only what the outbox promises: every append that returned was
    committed or PUBACKed, and every committed one is delivered after the restart."""
    listener = Listener(broker.port, "fast/k")
    try:
        stream = asyncio.create_task(steady(side.box, range(800), "fast/k"))
        await eventually(lambda: len(listener.received()) > 200)
        await asyncio.to_thread(broker.kill)
        await asyncio.sleep(0.3)
        await asyncio.to_thread(broker.start)
        acked = await stream
        assert len(acked) == 800
        await eventually(lambda: side.box.count == 0, 60)
        assert await side.box.claim(0, 10) == []
    finally:
        listener.stop()


async def test_an_unacknowledged_fast_send_is_committed_and_resent(tmp_path: Path) -> None:
    """The far side takes the message and never answers, then the connection fails: the
    append returns after its commit, and the message is sent again from the table."""
    db = open_database(tmp_path / "o.db")
    await db.open()
    box = Outbox(db, "pubsub:t")
    await box.open()
    sent: list[tuple[int, bytes]] = []
    pending: list[asyncio.Future[None]] = []
    loop = asyncio.get_running_loop()

    async def start_send(row: Row) -> asyncio.Future[None]:
        sent.append((row.seq, row.payload))
        fut: asyncio.Future[None] = loop.create_future()
        pending.append(fut)
        return fut

    async def send(row: Row) -> None:
        await (await start_send(row))

    async def ready() -> None:
        return None

    relay = Relay(box, send, ready, start_send=start_send, retry_delay_s=0.01,
                  fast_lane=True)
    relay.start()
    try:
        await eventually(lambda: relay._lane_open)
        seqs = await box.append([Item("t", b"a")])  # returns at its commit: no ack yet
        assert sent == [(seqs[0], b"a")]  # sent at once, from memory
        assert [r.payload for r in await box.claim(0, 10)] == [b"a"]  # and written
        assert box.count == 1
        pending[0].set_exception(ConnectionError("gone"))
        await eventually(lambda: len(sent) == 2)
        assert sent[1] == (seqs[0], b"a")  # resent from the table
        pending[1].set_result(None)
        await relay.stop()
        assert box.count == 0
        assert await box.claim(0, 10) == []
    finally:
        await relay.stop()
        await db.close()


async def test_rows_acknowledged_before_their_commit_are_never_written(tmp_path: Path) -> None:
    """And the sequence numbers they took are kept reserved in ``_meta`` all the same."""
    path = tmp_path / "o.db"
    db = open_database(path)
    await db.open()
    box = Outbox(db, "pubsub:t")
    await box.open()
    sent: list[int] = []

    async def send(row: Row) -> None:
        sent.append(row.seq)

    async def ready() -> None:
        return None

    relay = Relay(box, send, ready, retry_delay_s=0.01, fast_lane=True)
    relay.start()
    try:
        await eventually(lambda: relay._lane_open)
        before = await db.write(lambda c: c.total_changes)
        appended, unwritten = metric(OUTBOX_APPENDED), metric(OUTBOX_UNWRITTEN)
        # Hold the writer: the acks come while the units wait behind this one.
        busy = db.submit(lambda _: time.sleep(0.3))
        seqs = await box.append([Item("t", b"a"), Item("t", b"b")])
        assert not busy.done()  # answered by the acks, before any commit
        assert sent == seqs
        assert box.count == 2  # until the unit ran
        await busy
        await eventually(lambda: box.count == 0)
        assert box.bytes == 0
        assert metric(OUTBOX_APPENDED) - appended == 2  # appended all the same
        assert metric(OUTBOX_UNWRITTEN) - unwritten == 2
        # The unit wrote no row, only the reservation of the sequence numbers.
        assert await db.write(lambda c: c.total_changes) - before <= 1
        assert await box.claim(0, 10) == []
    finally:
        await relay.stop()
        await db.close()
    again = open_database(path)
    await again.open()
    try:
        box = Outbox(again, "pubsub:t")
        await box.open()
        assert (await box.append([Item("t", b"c")]))[0] > seqs[-1]
    finally:
        await again.close()


async def test_rows_written_before_the_ack_are_deleted_with_the_batch(tmp_path: Path) -> None:
    db = open_database(tmp_path / "o.db")
    await db.open()
    box = Outbox(db, "pubsub:t")
    await box.open()
    release = asyncio.Event()

    async def send(row: Row) -> None:
        await release.wait()

    async def ready() -> None:
        return None

    relay = Relay(box, send, ready, retry_delay_s=0.01, fast_lane=True, ack_delay_s=0.05)
    relay.start()
    try:
        await eventually(lambda: relay._lane_open)
        await box.append([Item("t", b"a")])  # committed first (the ack is held)
        assert len(await box.claim(0, 10)) == 1
        release.set()
        await eventually(lambda: box.count == 0)
        assert await box.claim(0, 10) == []
    finally:
        await relay.stop()
        await db.close()


async def test_appends_through_the_table_close_the_lane_and_keep_the_order(
    tmp_path: Path,
) -> None:
    """A full window sends the next appends through the table; everything still goes out
    once, in sequence order, and the lane opens again once the relay caught up."""
    db = open_database(tmp_path / "o.db")
    await db.open()
    box = Outbox(db, "pubsub:t")
    await box.open()
    sent: list[bytes] = []
    gate = asyncio.Event()

    async def send(row: Row) -> None:
        sent.append(row.payload)
        await gate.wait()

    async def ready() -> None:
        return None

    relay = Relay(box, send, ready, window=3, retry_delay_s=0.01, fast_lane=True)
    relay.start()
    try:
        await eventually(lambda: relay._lane_open)
        tasks = [asyncio.create_task(box.append([Item("t", str(i).encode())]))
                 for i in range(10)]
        await asyncio.sleep(0.2)
        assert not relay._lane_open
        gate.set()
        await asyncio.gather(*tasks)
        await eventually(lambda: len(sent) >= 10)
        await eventually(lambda: box.count == 0)
        assert sent == [str(i).encode() for i in range(10)]
        await eventually(lambda: relay._lane_open)
    finally:
        await relay.stop()
        await db.close()


async def test_with_slow_acks_the_unit_does_not_wait_a_window_for_them(tmp_path: Path) -> None:
    """A far side slower than the commit window (a remote broker): the unit is queued at once
    (the row is written anyway), so the publish waits no longer than through the table."""
    db = open_database(tmp_path / "o.db", commit_window_ms=300.0)
    await db.open()
    box = Outbox(db, "pubsub:t")
    await box.open()

    sent: list[bytes] = []

    async def send(row: Row) -> None:
        sent.append(row.payload)
        await asyncio.sleep(0.5)

    async def ready() -> None:
        return None

    relay = Relay(box, send, ready, retry_delay_s=0.01, fast_lane=True)
    relay.start()
    try:
        await eventually(lambda: relay._lane_open)
        assert relay.quick(0.3)  # nothing measured yet
        await box.append([Item("t", b"first")])
        await eventually(lambda: box.count == 0)  # acked after 0.5 s: slow
        assert not relay.quick(0.3)
        await eventually(lambda: relay._lane_open)
        await asyncio.sleep(0.4)  # a quiet writer: it commits a lone unit at once
        start = time.monotonic()
        await box.append([Item("t", b"second")])
        assert time.monotonic() - start < 0.25  # committed at once, not after the window
        assert sent == [b"first", b"second"]  # sent from memory all the same
        assert box.count == 1  # and written: its ack has not come
    finally:
        await relay.stop()
        await db.close()


async def test_a_caught_up_relay_sleeps_after_a_fast_lane_row_was_written(
    tmp_path: Path,
) -> None:
    """A fast-lane row written before its ack wakes the relay (rows were appended); caught
    up, it must go back to waiting, not spin on the event."""
    db = open_database(tmp_path / "o.db")
    await db.open()
    box = Outbox(db, "pubsub:t")
    await box.open()

    async def send(row: Row) -> None:
        await asyncio.sleep(0.1)

    async def ready() -> None:
        return None

    relay = Relay(box, send, ready, retry_delay_s=0.01, fast_lane=True, ack_delay_s=0.05)
    relay.start()
    try:
        await eventually(lambda: relay._lane_open)
        await box.append([Item("t", b"a")])  # committed (written) before its ack
        await eventually(lambda: box.count == 0)
        assert relay._lane_open
        cpu = time.process_time()
        await asyncio.sleep(0.5)
        assert time.process_time() - cpu < 0.2
    finally:
        await relay.stop()
        await db.close()


async def test_a_send_failing_before_its_unit_ran_is_resent_once_committed(
    tmp_path: Path,
) -> None:
    """The unit waits a commit window behind the send; the send fails first. The relay must
    not read the table again (and open the lane) before that unit committed the row."""
    db = open_database(tmp_path / "o.db", commit_window_ms=300.0)
    await db.open()
    box = Outbox(db, "pubsub:t")
    await box.open()
    sent: list[bytes] = []
    fail_first = [True]

    async def send(row: Row) -> None:
        sent.append(row.payload)
        if fail_first[0]:
            fail_first[0] = False
            raise ConnectionError("gone")

    async def ready() -> None:
        return None

    relay = Relay(box, send, ready, retry_delay_s=0.01, fast_lane=True, ack_delay_s=0.05)
    relay.start()
    try:
        await eventually(lambda: relay._lane_open)
        await box.append([Item("t", b"a")])  # answered at its commit, ~300 ms later
        await eventually(lambda: sent == [b"a", b"a"])  # resent from the table
        await eventually(lambda: box.count == 0)
        assert await box.claim(0, 10) == []
    finally:
        await relay.stop()
        await db.close()
