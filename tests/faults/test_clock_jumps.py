"""Wall-clock jumps under libfaketime: a year back, then a year forward, while messages with
``ttlInSeconds`` wait in the publisher's outbox (broker down) or the subscriber's inbox (app
down). The machine's clock is never touched: both sidecars run with libfaketime preloaded and
read their offset from a file the test rewrites (``FAKETIME_TIMESTAMP_FILE``, no cache);
``CLOCK_MONOTONIC`` is left alone (``DONT_FAKE_MONOTONIC=1``), as a real jump leaves it.

Invariants (DESIGN.md §5, TTL kept as remaining time plus boot id):
* none expires early: a message whose TTL has not run out in real time is delivered, even
  though the wall clock moved a year past its ``expiration``;
* none lives forever: a message whose TTL truly ran out is dropped and counted as expired,
  even though the wall clock went back a year;
* the order of the live messages (one topic, one subscription) is kept;
* the sidecars log the jump.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.appchannel.appserver import AppServer
from tests.faults.netkit import (
    Counts,
    RecordingApp,
    RssSampler,
    app_ready,
    connected,
    metric_sum,
    mqtt_component,
    publish,
    wait_until,
)
from tests.support.mosquitto import Mosquitto, require_mosquitto
from tests.support.sidecar import SidecarProcess

pytestmark = pytest.mark.broker

_LIBS = (
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
)

YEAR_BACK, YEAR_FORWARD, REAL = "-365d", "+365d", "+0"

RETRY_FAST = textwrap.dedent("""
    ---
    apiVersion: dapr.io/v1alpha1
    kind: Resiliency
    metadata: {name: fast}
    spec:
      policies:
        retries:
          fast: {policy: constant, duration: 500ms, maxRetries: -1}
      targets:
        components:
          mqtt: {inbound: {retry: fast}}
""")


def libfaketime() -> str:
    lib = next((p for p in _LIBS if os.path.exists(p)), None)
    if lib is None:
        pytest.skip("libfaketime is not installed (apt package faketime)")
    return lib


class FakeClock:
    """The offset file both sidecars read on every wall-clock call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.set(REAL)

    def set(self, offset: str) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(offset + "\n")
        tmp.replace(self.path)  # atomic: a reader never sees an empty file

    def env(self) -> dict[str, str]:
        return {
            "LD_PRELOAD": libfaketime(),
            "FAKETIME_TIMESTAMP_FILE": str(self.path),
            "FAKETIME_NO_CACHE": "1",
            "DONT_FAKE_MONOTONIC": "1",
        }


@dataclass
class World:
    broker: Mosquitto
    app: RecordingApp
    server: AppServer
    clock: FakeClock
    pub: SidecarProcess
    sub: SidecarProcess


@contextlib.asynccontextmanager
async def world(root: Path) -> AsyncIterator[World]:
    require_mosquitto()
    clock = FakeClock(root / "faketime")
    env = clock.env()
    broker = Mosquitto(root / "broker")
    broker.start()
    app = RecordingApp()
    server = AppServer(app)
    await server.__aenter__()
    sub = SidecarProcess(root, "sub", mqtt_component(broker.url, "clock-sub") + RETRY_FAST,
                         server.port, env=env)
    pub = SidecarProcess(root, "pub", mqtt_component(broker.url, "clock-pub"), env=env)
    try:
        await sub.start()
        await app_ready(sub)
        await pub.start()
        await wait_until(lambda: connected(pub), 20, "publisher connected")
        yield World(broker, app, server, clock, pub, sub)
    finally:
        clock.set(REAL)
        await pub.stop()
        await sub.stop()
        with contextlib.suppress(Exception):
            await server.__aexit__(None, None, None)
        with contextlib.suppress(Exception):
            broker.stop()


async def one_topic(w: World, ids: range, counts: Counts, ttl_s: int) -> None:
    """Publish to one topic so that the arrival order is the publish order."""
    await publish(w.pub, ids, counts, ttl_s=ttl_s, topic_of=lambda _i: "net/one")


def in_order(seen: list[int], ids: set[int]) -> bool:
    """Whether ``ids`` arrived in ascending order (first arrivals; redeliveries ignored)."""
    first: list[int] = []
    for i in seen:
        if i in ids and i not in first:
            first.append(i)
    return first == sorted(first)


async def jump_while_waiting(w: World, *, wait_real_s: float) -> None:
    """The wall clock goes back a year, ``wait_real_s`` pass, then it goes a year forward
    (two years from where it was)."""
    w.clock.set(YEAR_BACK)
    await asyncio.sleep(wait_real_s)
    w.clock.set(YEAR_FORWARD)
    await asyncio.sleep(0.5)


async def outbox_scenario(root: Path, name: str, n: int) -> None:
    counts = Counts(name)
    async with world(root) as w:
        async with RssSampler(counts, {"pub": w.pub, "sub": w.sub}):
            await one_topic(w, range(5), counts, ttl_s=60)  # the session exists at the broker
            await w.app.wait_for(set(counts.acked))
            w.broker.stop()
            doomed, live = range(1000, 1000 + n), range(2000, 2000 + n)
            await one_topic(w, doomed, counts, ttl_s=2)
            await one_topic(w, live, counts, ttl_s=30)
            await jump_while_waiting(w, wait_real_s=3)  # the doomed TTL truly runs out
            w.broker.start()
            await w.app.wait_for(set(live), limit_s=25)  # inside the live TTL, real time
            await asyncio.sleep(1)
        expired = await w.pub.metric("edge_runtime_outbox_dropped_total",
                                     'reason="expired",relay="pubsub:mqtt"')
        got_doomed = len(set(w.app.seen) & set(doomed))
        counts.report(w.app, expired=set(doomed), expired_in_outbox=int(expired), doomed_delivered=got_doomed)
        assert got_doomed == 0, "messages whose TTL ran out were delivered"
        assert expired == n
        assert in_order(w.app.seen, set(live))


async def test_outbox_ttl_across_clock_jumps_short(tmp_path: Path) -> None:
    await outbox_scenario(tmp_path, "clock jumps, outbox short", 20)


@pytest.mark.faults_long
async def test_outbox_ttl_across_clock_jumps_long(tmp_path: Path) -> None:
    await outbox_scenario(tmp_path, "clock jumps, outbox long", 2000)


async def inbox_scenario(root: Path, name: str, n: int) -> None:
    counts = Counts(name)
    async with world(root) as w:
        async with RssSampler(counts, {"pub": w.pub, "sub": w.sub}):
            await one_topic(w, range(5), counts, ttl_s=60)
            await w.app.wait_for(set(counts.acked))
            port = w.server.port
            await w.server.__aexit__(None, None, None)  # the app is down: port closed
            doomed, live = range(1000, 1000 + n), range(2000, 2000 + n)
            await one_topic(w, doomed, counts, ttl_s=2)
            await one_topic(w, live, counts, ttl_s=30)
            await wait_until(lambda: _inbox_holds(w.sub, 2 * n), 20, "events in the inbox")
            await jump_while_waiting(w, wait_real_s=3)
            w.server = AppServer(w.app, port=port)
            await w.server.__aenter__()
            await w.app.wait_for(set(live), limit_s=25)
            await asyncio.sleep(1)
        expired = await metric_sum(w.sub, "edge_runtime_inbox_expired_total")
        got_doomed = len(set(w.app.seen) & set(doomed))
        counts.report(w.app, expired=set(doomed), expired_in_inbox=int(expired), doomed_delivered=got_doomed)
        assert got_doomed == 0, "events whose TTL ran out were delivered"
        assert expired == n
        assert in_order(w.app.seen, set(live))


async def _inbox_holds(sub: SidecarProcess, k: int) -> bool:
    return await metric_sum(sub, "edge_runtime_inbox_received_total") >= k + 5


async def test_inbox_ttl_across_clock_jumps_short(tmp_path: Path) -> None:
    await inbox_scenario(tmp_path, "clock jumps, inbox short", 20)


@pytest.mark.faults_long
async def test_inbox_ttl_across_clock_jumps_long(tmp_path: Path) -> None:
    await inbox_scenario(tmp_path, "clock jumps, inbox long", 2000)
