"""Power cuts: the sidecar's data dir on a FUSE filesystem that keeps unsynced writes in memory
(tests/support/powercut_fs.py) and loses them when the "power" is cut: kill -9 of the sidecar,
then kill -9 of the filesystem process, unmount, mount again on what was synced, restart.

- Control: a file written without fsync really is gone after a cut; a synced one is kept.
- ``--durability full``: zero acknowledged publishes lost over repeated cuts while N HTTP
  clients publish (in some runs the broker is stopped first, so the outbox holds a backlog at
  the cut).
- The subscriber side (``full``): a sidecar whose data dir is cut, fed by a bare paho
  publisher; every message the broker acknowledged reaches the app.
- State saves (``full``): every acknowledged key is readable after repeated cuts.
- ``--durability normal``: acknowledged publishes may be lost, only from the run that was cut
  (what survived one cut survives the next) and within the window the README states (the WAL
  is fsynced at checkpoints only, at most 1000 pages); the loss is measured and printed.

Short versions in ``make test``; long ones (many cuts) in ``make faults``. Skipped, saying
why, without /dev/fuse, libfuse3 or the ``mfusepy`` package (test extra).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.appchannel.appserver import AppServer, Reply, Request
from tests.faults._storage import Counts, Publishers, Recorder, drained, pubsub_component
from tests.support.components import SQLITE_STATESTORE
from tests.support.mosquitto import Mosquitto, require_mosquitto
from tests.support.powercut_fs import PowerCutMount, fuse_unavailable
from tests.support.sidecar import SidecarProcess

pytestmark = pytest.mark.broker

# README (Durability): `normal` may lose the commits since the last checkpoint, at most 1000
# WAL pages; the slack is the one transaction that crosses the threshold.
WAL_WINDOW_BYTES = (1000 + 100) * (4096 + 24)


@pytest.fixture
def powercut(tmp_path: Path) -> Iterator[PowerCutMount]:
    why = fuse_unavailable()
    if why:
        pytest.skip(f"no FUSE power-cut filesystem here: {why}")
    mount = PowerCutMount(tmp_path / "disk", tmp_path / "mnt")
    mount.mount()
    yield mount
    mount.unmount()


def test_control_unsynced_write_is_lost(powercut: PowerCutMount) -> None:
    """The filesystem does what the scenarios rely on: unsynced data dies with the power."""
    mnt = powercut.mountpoint
    with (mnt / "synced").open("wb") as f:
        f.write(b"s" * 10_000)
        f.flush()
        os.fsync(f.fileno())
        f.write(b"after the sync" * 100)
    with (mnt / "unsynced").open("wb") as f:
        f.write(b"u" * 10_000)
    assert (mnt / "unsynced").stat().st_size == 10_000  # visible while the power is on
    powercut.cut()
    powercut.mount()
    assert (mnt / "synced").read_bytes() == b"s" * 10_000
    assert (mnt / "unsynced").read_bytes() == b""
    print("[power cut] control: 10,000 synced bytes kept; 1,400 written after the fsync and"
          " 10,000 never synced lost")


async def power_cuts(
    root: Path, mount: PowerCutMount, *, cuts: int, messages: int, durability: str,
    publishers: int = 8, seed: int | None = None,
) -> tuple[Counts, list[tuple[int, int]]]:
    """Publish ``messages`` with ``cuts`` power cuts at random moments; the counts and, per
    cut, (acknowledged in that run, lost of those)."""
    require_mosquitto()
    seed = random.randrange(1 << 30) if seed is None else seed
    rng = random.Random(seed)
    broker = Mosquitto(root / "broker", extra_config="max_queued_messages 0")
    broker.start()
    recorder = Recorder(broker.port)
    recorder.start()
    pub = SidecarProcess(root, "pub", pubsub_component(broker.url, "cut-pub"),
                         extra=["--durability", durability], log_level="warn")
    pub.data = mount.mountpoint / "data"
    counts = Counts(f"power cut {durability}", extra=f"seed={seed}")
    at = sorted(rng.uniform(0.1, 0.9) * messages for _ in range(cuts))
    runs: list[set[int]] = []
    wal_pages: list[int] = []  # per cut: unsynced 4 KiB pages of -wal files the cut dropped
    try:
        await pub.start()
        flow = Publishers(pub, publishers, messages, counts)
        flow.start()
        for k, threshold in enumerate(at):
            backlog = k % 2 == 1  # every other cut: the broker is away, the outbox fills
            if backlog:
                while counts.published < threshold - messages / (3 * cuts) and not flow.done:
                    await asyncio.sleep(0.005)
                await asyncio.to_thread(broker.stop)
            while counts.published < threshold and not flow.done:
                await asyncio.sleep(0.005)
            await asyncio.sleep(rng.uniform(0, 0.05))
            await pub.kill()  # the power goes: the process first, then the disk's cache
            flow.paused.set()
            pending = await asyncio.to_thread(mount.pending)
            wal_pages.append(sum(v["pages"] for k, v in pending.items() if k.endswith("-wal")))
            before = set().union(*runs) if runs else set()
            runs.append(set(counts.acknowledged) - before)
            await asyncio.to_thread(mount.cut)
            counts.runs += 1
            await asyncio.to_thread(mount.mount)
            if backlog:
                await asyncio.to_thread(broker.start)
            await pub.start()
            flow.paused.clear()
        await flow.wait()
        assert await drained(pub, 120), "the publisher's outbox did not drain"
        # Once drained, what the broker took arrives within moments; in normal mode the ids
        # lost at a cut never will, so that wait is short.
        missing = await recorder.wait_for(counts.acknowledged, 30 if durability == "full" else 3)
        counts.settle(recorder)
        per_cut = [(len(acked), len(acked & missing)) for acked in runs]
        after = set(counts.acknowledged) - set().union(*runs)
        counts.extra += (f" lost per cut (acknowledged in that run, lost)={per_cut};"
                         f" unsynced WAL pages dropped per cut={wal_pages}")
        print(counts.line())
        assert counts.runs == cuts
        assert len(counts.acknowledged) > messages // 2
        # Whatever the mode: nothing acknowledged after the last cut, and nothing that had
        # survived a cut, is lost: the loss is confined to the run the power was cut in.
        assert not (missing & after), f"lost after the last cut: {sorted(missing & after)[:20]}"
        # A cut is not corruption: WAL recovery, never a quarantine (in either mode).
        assert not (pub.data / "quarantine").exists(), sorted((pub.data / "quarantine").iterdir())
        if durability == "normal":
            # The README's window: the WAL is fsynced at checkpoints, SQLite's autocheckpoint
            # runs at 1000 frames (4 KiB pages + 24-byte headers); one group commit more may
            # be written before it does.
            assert max(wal_pages) * 4096 <= WAL_WINDOW_BYTES, wal_pages
        return counts, per_cut
    finally:
        await pub.stop()
        recorder.stop()
        broker.stop()


async def test_power_cuts_full_short(tmp_path: Path, powercut: PowerCutMount) -> None:
    counts, _ = await power_cuts(tmp_path, powercut, cuts=3, messages=900, durability="full")
    assert counts.lost == 0


async def test_power_cuts_normal_short(tmp_path: Path, powercut: PowerCutMount) -> None:
    await power_cuts(tmp_path, powercut, cuts=2, messages=600, durability="normal")


@pytest.mark.faults_long
async def test_power_cuts_full_long(tmp_path: Path, powercut: PowerCutMount) -> None:
    counts, _ = await power_cuts(tmp_path, powercut, cuts=20, messages=12_000, durability="full")
    assert counts.lost == 0


@pytest.mark.faults_long
async def test_power_cuts_normal_long(tmp_path: Path, powercut: PowerCutMount) -> None:
    await power_cuts(tmp_path, powercut, cuts=20, messages=12_000, durability="normal")


STATE = "\n" + SQLITE_STATESTORE


async def state_power_cuts(root: Path, mount: PowerCutMount, *, cuts: int, keys: int,
                           seed: int | None = None, durability: str = "full") -> Counts:
    """Save ``keys`` keys (one per request, 8 clients) with ``--durability full`` and
    ``cuts`` power cuts; afterwards every acknowledged key must be readable."""
    seed = random.randrange(1 << 30) if seed is None else seed
    rng = random.Random(seed)
    dev = SidecarProcess(root, "state", STATE, extra=["--durability", durability],
                         log_level="warn")
    dev.data = mount.mountpoint / "state-data"
    counts = Counts(f"power cut state {durability}", extra=f"seed={seed}")
    try:
        await dev.start()
        flow = Publishers(dev, 8, keys, counts, state_store="statestore")
        flow.start()
        for threshold in sorted(rng.uniform(0.1, 0.9) * keys for _ in range(cuts)):
            while counts.published < threshold and not flow.done:
                await asyncio.sleep(0.005)
            await asyncio.sleep(rng.uniform(0, 0.05))
            await dev.kill()
            flow.paused.set()
            await asyncio.to_thread(mount.cut)
            counts.runs += 1
            await asyncio.to_thread(mount.mount)
            await dev.start()
            flow.paused.clear()
        await flow.wait()
        found: set[int] = set()
        acked = sorted(counts.acknowledged)
        async with dev.client(timeout=30) as c:
            for start in range(0, len(acked), 200):
                r = await c.post("/v1.0/state/statestore/bulk", json={
                    "keys": [f"k{i}" for i in acked[start:start + 200]]})
                found |= {item["data"]["i"] for item in r.json() if "data" in item}
        counts.received = counts.deliveries = len(found)
        counts.lost = len(counts.acknowledged - found)
        print(counts.line().replace("received", "readable"))
        assert counts.runs == cuts
        assert len(counts.acknowledged) > keys // 2
        assert counts.lost == 0, sorted(counts.acknowledged - found)[:20]
        return counts
    finally:
        await dev.stop()


async def test_power_cuts_state_short(tmp_path: Path, powercut: PowerCutMount) -> None:
    await state_power_cuts(tmp_path, powercut, cuts=3, keys=900)


@pytest.mark.faults_long
async def test_power_cuts_state_long(tmp_path: Path, powercut: PowerCutMount) -> None:
    await state_power_cuts(tmp_path, powercut, cuts=20, keys=10_000)


class InboxApp:
    """The subscriber app: declares ``storm/#`` and records the ``i`` of every event."""

    def __init__(self) -> None:
        self.seen: Counter[int] = Counter()

    async def __call__(self, req: Request) -> Reply:
        if req.path == "/dapr/subscribe":
            return Reply(200, json.dumps(
                [{"pubsubname": "mqtt", "topic": "storm/#", "route": "/ev"}]).encode())
        if req.path == "/ev":
            await asyncio.sleep(0.003)  # a slowish app: a backlog waits in the inbox at a cut
            self.seen[int(json.loads(req.body)["data"]["i"])] += 1
        return Reply(200, b"")


async def inbox_power_cuts(root: Path, mount: PowerCutMount, *, cuts: int, messages: int,
                           seed: int | None = None, durability: str = "full") -> Counts:
    """A bare paho client publishes CloudEvents with QoS 1 (acknowledged = PUBACK from the
    broker); the subscribing sidecar (``full``, persistent session) has its data dir on the
    power-cut filesystem and an app that records; cuts at random moments. Every message the
    broker acknowledged must reach the app: the sidecar PUBACKs only after its inbox commit,
    and what it had not PUBACKed the broker sends again."""
    require_mosquitto()
    seed = random.randrange(1 << 30) if seed is None else seed
    rng = random.Random(seed)
    broker = Mosquitto(root / "broker", extra_config="max_queued_messages 0")
    broker.start()
    app = InboxApp()
    counts = Counts(f"power cut inbox {durability}", extra=f"seed={seed}")
    producer = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="cut-producer")
    producer.max_inflight_messages_set(50)
    producer.connect("127.0.0.1", broker.port)
    producer.loop_start()
    infos: dict[int, mqtt.MQTTMessageInfo] = {}
    waiting: list[int] = []  # per cut: published, not yet at the app (broker or inbox)
    async with AppServer(app) as server:
        sub = SidecarProcess(root, "sub", pubsub_component(broker.url, "cut-sub"), server.port,
                             extra=["--durability", durability], log_level="warn")
        sub.data = mount.mountpoint / "sub-data"
        try:
            await sub.start()
            for _ in range(100):  # the app was asked for its subscriptions
                if any(r.path == "/dapr/subscribe" for r in server.requests):
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)  # and the subscription reached the broker
            at = sorted(int(rng.uniform(0.1, 0.9) * messages) for _ in range(cuts))
            for i in range(messages):
                if at and i >= at[0]:
                    at.pop(0)
                    await sub.kill()
                    waiting.append(counts.published - len(app.seen))
                    await asyncio.to_thread(mount.cut)
                    counts.runs += 1
                    await asyncio.to_thread(mount.mount)
                    await sub.start()
                event = {"specversion": "1.0", "id": f"e{i}", "source": "cut", "type": "t",
                         "datacontenttype": "application/json", "data": {"i": i}}
                infos[i] = producer.publish(f"storm/{i % 4}", json.dumps(event), qos=1)
                counts.published += 1
                if i % 20 == 0:
                    await asyncio.sleep(0.01)  # let deliveries interleave with the cuts
            for i, info in infos.items():
                await asyncio.to_thread(info.wait_for_publish, 30)
                if info.is_published():
                    counts.acknowledged.add(i)
            # The slow app drains the backlog in order: wait while it makes progress.
            loop = asyncio.get_running_loop()
            progress_at, seen = loop.time(), -1
            while counts.acknowledged - set(app.seen) and loop.time() < progress_at + 20:
                if len(app.seen) != seen:
                    progress_at, seen = loop.time(), len(app.seen)
                await asyncio.sleep(0.2)
            counts.received = len(app.seen)
            counts.deliveries = sum(app.seen.values())
            counts.lost = len(counts.acknowledged - set(app.seen))
            counts.extra += f" not yet delivered at each cut={waiting}"
            print(counts.line())
            assert counts.runs == cuts
            assert len(counts.acknowledged) == messages
            assert counts.lost == 0, sorted(counts.acknowledged - set(app.seen))[:20]
            return counts
        finally:
            producer.loop_stop()
            producer.disconnect()
            await sub.stop()
            broker.stop()


async def test_power_cuts_inbox_short(tmp_path: Path, powercut: PowerCutMount) -> None:
    await inbox_power_cuts(tmp_path, powercut, cuts=3, messages=600)


@pytest.mark.faults_long
async def test_power_cuts_inbox_long(tmp_path: Path, powercut: PowerCutMount) -> None:
    await inbox_power_cuts(tmp_path, powercut, cuts=20, messages=10_000)
