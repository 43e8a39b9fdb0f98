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
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.appchannel.appserver import AppServer
from tests.faults.netkit import (
    BROKER_CONFIG,
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
from tests.support.components import SQLITE_STATESTORE, component
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
# Live messages' TTL: far below the year jumped, far above what a loaded 2-core machine takes
# to publish and deliver them under libfaketime (which makes the sidecars several times
# slower: a 30 s TTL, and in a 2000-message long run a 120 s one, truly ran out here).
LIVE_TTL_S = 120

# On the subscriber: a cron binding (monotonic @every) and a state store (wall-clock TTLs).
WALL_CLOCK_USERS = (
    "\n---\n" + component("tick", "bindings.cron", ("schedule", "@every 1s"))
    + "---\n" + SQLITE_STATESTORE
)

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
    broker = Mosquitto(root / "broker", extra_config=BROKER_CONFIG)
    broker.start()
    app = RecordingApp()
    server = AppServer(app)
    await server.__aenter__()
    sub_res = mqtt_component(broker.url, "clock-sub", keepalive_s=10) + RETRY_FAST
    sub = SidecarProcess(root, "sub", sub_res + WALL_CLOCK_USERS, server.port, env=env)
    pub_res = mqtt_component(broker.url, "clock-pub", keepalive_s=10)
    pub = SidecarProcess(root, "pub", pub_res, env=env)
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


async def jumps_logged(sidecar: SidecarProcess) -> None:
    """The sidecar said the clock went back and then forward (log line and metric)."""
    back = await sidecar.metric("edge_runtime_clock_jumps_total", 'direction="back"')
    forward = await sidecar.metric("edge_runtime_clock_jumps_total", 'direction="forward"')
    assert (back, forward) == (1, 1), (back, forward)
    assert "the wall clock jumped back by 31536000 s" in sidecar.log.read_text()


async def jump_while_waiting(w: World, *, wait_real_s: float) -> None:
    """The wall clock goes back a year, ``wait_real_s`` pass, then it goes a year forward
    (two years from where it was)."""
    w.clock.set(YEAR_BACK)
    await asyncio.sleep(wait_real_s)
    w.clock.set(YEAR_FORWARD)
    await asyncio.sleep(0.5)


async def outbox_scenario(root: Path, name: str, n: int, live_ttl_s: int = LIVE_TTL_S) -> None:
    counts = Counts(name)
    async with world(root) as w:
        async with RssSampler(counts, {"pub": w.pub, "sub": w.sub}):
            await one_topic(w, range(5), counts, ttl_s=60)  # the session exists at the broker
            await w.app.wait_for(set(counts.acked))
            w.broker.stop()
            doomed, live = range(1000, 1000 + n), range(2000, 2000 + n)
            await one_topic(w, doomed, counts, ttl_s=2)
            await one_topic(w, live, counts, ttl_s=live_ttl_s)
            await jump_while_waiting(w, wait_real_s=3)  # the doomed TTL truly runs out
            w.broker.start()
            await w.app.wait_for(set(live), limit_s=live_ttl_s / 2)  # well inside the TTL
            await asyncio.sleep(1)
        expired = await w.pub.metric("edge_runtime_outbox_dropped_total",
                                     'reason="expired",relay="pubsub:mqtt"')
        got_doomed = len(set(w.app.seen) & set(doomed))
        counts.report(w.app, expired=set(doomed), expired_in_outbox=int(expired),
                      doomed_delivered=got_doomed)
        assert got_doomed == 0, "messages whose TTL ran out were delivered"
        assert expired == n
        await jumps_logged(w.pub)
        assert in_order(w.app.seen, set(live))


async def test_outbox_ttl_across_clock_jumps_short(tmp_path: Path) -> None:
    await outbox_scenario(tmp_path, "clock jumps, outbox short", 20)


@pytest.mark.faults_long
async def test_outbox_ttl_across_clock_jumps_long(tmp_path: Path) -> None:
    await outbox_scenario(tmp_path, "clock jumps, outbox long", 400, live_ttl_s=900)


async def cron_fires(w: World) -> float:
    """Firings of the ``tick`` schedule (the sidecar's count: the app is down meanwhile)."""
    return await w.sub.metric("edge_runtime_cron_fires_total", 'binding="tick"')


async def wall_clock_users_before(w: World) -> float:
    """A state key with a TTL of an hour and one without; the cron count so far."""
    async with w.sub.client(timeout=10) as client:
        r = await client.post("/v1.0/state/statestore", json=[
            {"key": "hour", "value": 1, "metadata": {"ttlInSeconds": "3600"}},
            {"key": "plain", "value": 2},
        ])
        assert r.status_code == 204, r.text
    return await cron_fires(w)


async def wall_clock_users_after(w: World, fires_before: float, real_s: float) -> str:
    """State TTLs follow the wall clock (as Dapr's): a year forward expires the hour-long
    key, the plain one stays. ``@every 1s`` runs on the monotonic clock: about one firing per
    real second, neither a burst for the year skipped nor a stop for the year repeated."""
    async with w.sub.client(timeout=10) as client:
        hour = await client.get("/v1.0/state/statestore/hour")
        plain = await client.get("/v1.0/state/statestore/plain")
    fires = int(await cron_fires(w) - fires_before)
    assert hour.status_code == 204, "a state TTL is wall-clock (Dapr): a year later it is gone"
    assert plain.status_code == 200
    assert 1 <= fires <= real_s + 3, f"{fires} cron firings in {real_s:.0f} s of real time"
    return f"cron fires {fires} in {real_s:.0f} s, state TTL key expired by the jump"


async def inbox_scenario(root: Path, name: str, n: int, live_ttl_s: int = LIVE_TTL_S) -> None:
    counts = Counts(name)
    async with world(root) as w:
        async with RssSampler(counts, {"pub": w.pub, "sub": w.sub}):
            await one_topic(w, range(5), counts, ttl_s=60)
            await w.app.wait_for(set(counts.acked))
            fires = await wall_clock_users_before(w)
            loop = asyncio.get_running_loop()
            began = loop.time()
            port = w.server.port
            await w.server.__aexit__(None, None, None)  # the app is down: port closed
            doomed, live = range(1000, 1000 + n), range(2000, 2000 + n)
            await one_topic(w, doomed, counts, ttl_s=2)
            await one_topic(w, live, counts, ttl_s=live_ttl_s)
            await wait_until(lambda: _inbox_holds(w.sub, 2 * n), 120, "events in the inbox")
            await jump_while_waiting(w, wait_real_s=3)
            w.server = AppServer(w.app, port=port)
            await w.server.__aenter__()
            await w.app.wait_for(set(live), limit_s=live_ttl_s / 2)
            await asyncio.sleep(1)
            others = await wall_clock_users_after(w, fires, loop.time() - began)
        expired = await metric_sum(w.sub, "edge_runtime_inbox_expired_total")
        got_doomed = len(set(w.app.seen) & set(doomed))
        counts.report(w.app, expired=set(doomed), expired_in_inbox=int(expired),
                      doomed_delivered=got_doomed, other_clock_users=others)
        assert got_doomed == 0, "events whose TTL ran out were delivered"
        assert expired == n
        await jumps_logged(w.sub)
        assert in_order(w.app.seen, set(live))


async def _inbox_holds(sub: SidecarProcess, k: int) -> bool:
    return await metric_sum(sub, "edge_runtime_inbox_received_total") >= k + 5


async def test_inbox_ttl_across_clock_jumps_short(tmp_path: Path) -> None:
    await inbox_scenario(tmp_path, "clock jumps, inbox short", 20)


@pytest.mark.faults_long
async def test_inbox_ttl_across_clock_jumps_long(tmp_path: Path) -> None:
    await inbox_scenario(tmp_path, "clock jumps, inbox long", 400, live_ttl_s=900)


def test_restamp_replaces_only_the_expiration() -> None:
    """The relay's restamp: a fresh ``expiration`` from the TTL left, every other byte
    (exact JSON numbers in ``data`` included) as stored; raw payloads untouched."""
    from edge_runtime.pubsub.cloudevents import PublishOptions, envelope, restamp_expiration

    body = b'{"n": 1.10, "expiration": "keep me"}'
    stored = envelope(body, "application/json", topic="t", pubsub="p", source="a",
                      options=PublishOptions(ttl_seconds=3600))
    fresh = restamp_expiration(stored, 60.0)
    old_exp = json.loads(stored)["expiration"]
    new_exp = json.loads(fresh)["expiration"]
    assert new_exp != old_exp
    assert new_exp < old_exp
    assert fresh.replace(new_exp.encode(), old_exp.encode()) == stored
    assert b'"n": 1.10' in fresh
    assert json.loads(fresh)["data"]["expiration"] == "keep me"
    assert restamp_expiration(b"raw bytes", 5.0) == b"raw bytes"
    assert restamp_expiration(b'{"expiration": 5}', 5.0) == b'{"expiration": 5}'


async def test_clock_watch_logs_a_jump(caplog: pytest.LogCaptureFixture) -> None:
    from edge_runtime.support.clockwatch import watch

    offset = [0.0]
    task = asyncio.create_task(watch(
        every_s=0.01, wall=lambda: time.time() + offset[0], mono=time.monotonic))
    await asyncio.sleep(0.05)
    offset[0] = -365 * 86400.0
    await asyncio.sleep(0.05)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert "the wall clock jumped back by 31536000 s" in caplog.text


_TIMERS = """
import asyncio, sys, time
def main(run):
    async def sleeper():
        start = time.monotonic()
        task = asyncio.ensure_future(asyncio.sleep(1.0))
        await asyncio.sleep(0.2)
        open(sys.argv[1], "w").write("+365d\\n")  # a year forward, mid-sleep
        await task
        print(time.monotonic() - start, asyncio.get_running_loop().time() - start, time.time())
    run(sleeper())
main(asyncio.run)
import uvloop
main(uvloop.run)
"""


def test_event_loop_timers_are_monotonic_under_faketime(tmp_path: Path) -> None:
    """asyncio's and uvloop's timers run on CLOCK_MONOTONIC, which libfaketime leaves alone
    here as a real jump does: a 1 s sleep with the wall clock moved a year forward mid-sleep
    neither fires at once nor waits a year."""
    clock = FakeClock(tmp_path / "faketime")
    out = subprocess.run(
        [sys.executable, "-c", _TIMERS, str(clock.path)], env={**os.environ, **clock.env()},
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.split("\n")
    lines = [line.split() for line in out if line]
    assert len(lines) == 2, out
    for elapsed, _loop_elapsed, wall in lines:
        assert float(wall) > time.time() + 300 * 86400, "libfaketime did not move the clock"
        assert 0.9 <= float(elapsed) < 30, out  # "not at once, not a year": no timing claim
