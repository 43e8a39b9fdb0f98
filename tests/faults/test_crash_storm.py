"""Crash storm: kill -9 of the publishing sidecar at random moments while N HTTP clients
publish, restarts on the same data dir, and broker restarts in between.

A bare paho client (persistent session, QoS 1) records what arrives. The invariant: every
publish that got its 204 arrives at least once; duplicates are counted, not failed. Ids whose
request died with the sidecar are neither acknowledged nor required (some arrive anyway: they
were committed before the reply was lost).

Short version in ``make test``; the long one (20 kills, 20,000 messages, 10 broker restarts) in
``make faults``. Each prints one ``[crash storm]`` line with its counts.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from tests.faults._storage import Counts, Publishers, Recorder, drained, pubsub_component
from tests.support.mosquitto import Mosquitto, require_mosquitto
from tests.support.sidecar import SidecarProcess

pytestmark = pytest.mark.broker


async def crash_storm(
    root: Path, *, kills: int, messages: int, broker_restarts: int, publishers: int = 8,
    seed: int | None = None, durability: str = "full",
) -> Counts:
    """Run the storm; the counts (asserted by the caller)."""
    require_mosquitto()
    seed = random.randrange(1 << 30) if seed is None else seed
    rng = random.Random(seed)
    # Unlimited queue for the recorder's session: mosquitto's default (1000) would drop
    # messages for a slow or reconnecting subscriber, which is the broker's loss, not ours.
    broker = Mosquitto(root / "broker", extra_config="max_queued_messages 0")
    broker.start()
    recorder = Recorder(broker.port)
    recorder.start()
    pub = SidecarProcess(
        root, "pub", pubsub_component(broker.url, "storm-pub"),
        extra=["--durability", durability], log_level="warn",
    )
    counts = Counts("crash storm", extra=f"seed={seed} durability={durability}")
    # The moments, as counts of requests sent: kills and broker restarts at random points
    # spread over the run, so each lands while requests are in flight.
    events = sorted(
        [(rng.uniform(0.05, 0.9) * messages, "kill") for _ in range(kills)]
        + [(rng.uniform(0.05, 0.9) * messages, "broker") for _ in range(broker_restarts)]
    )
    try:
        await pub.start()
        flow = Publishers(pub, publishers, messages, counts)
        flow.start()
        for at, kind in events:
            while counts.published < at and not flow.done:
                await asyncio.sleep(0.005)
            await asyncio.sleep(rng.uniform(0, 0.05))  # off the request boundary
            if kind == "kill":
                await pub.kill()
                flow.paused.set()  # not strictly needed; saves ids burnt on refused connects
                counts.runs += 1
                await pub.start()
                flow.paused.clear()
            else:
                await asyncio.to_thread(broker.restart)
        await flow.wait()
        assert await drained(pub, 120), "the publisher's outbox did not drain"
        missing = await recorder.wait_for(counts.acknowledged, 60)
        counts.settle(recorder)
        counts.extra += f" broker_restarts={broker_restarts} statuses={dict(flow.statuses)}"
        print(counts.line())
        assert not missing, f"{len(missing)} acknowledged ids never arrived: {sorted(missing)[:20]}"
        assert counts.lost == 0
        assert counts.runs == kills
        # The scenario must have exercised something: most publishes were acknowledged.
        assert len(counts.acknowledged) > messages // 2
        return counts
    finally:
        await pub.stop()
        recorder.stop()
        broker.stop()


async def test_crash_storm_short(tmp_path: Path) -> None:
    await crash_storm(tmp_path, kills=3, messages=1000, broker_restarts=2)


@pytest.mark.faults_long
async def test_crash_storm_long(tmp_path: Path) -> None:
    await crash_storm(tmp_path, kills=20, messages=20_000, broker_restarts=10)


async def test_crash_storm_normal_short(tmp_path: Path) -> None:
    """``--durability normal`` promises the same for a process crash (not a power cut)."""
    await crash_storm(tmp_path, kills=3, messages=1000, broker_restarts=2, durability="normal")
