"""Network partitions between a sidecar and the broker, through a TCP fault proxy.

publisher sidecar → FaultProxy → mosquitto → subscriber sidecar → app (and, for the inbound
case, mosquitto → FaultProxy → subscriber sidecar). The app keeps publishing through every
fault. Invariants: every publish answered 204 reaches the app (zero lost); when the outbox is
full publishes get 429 ERR_PUBSUB_OUTBOX_FULL (backpressure), never a hang or a 500;
metadata reports the disconnection; the sidecar's RSS is sampled and printed. Short versions
run in ``make test``; ``faults_long`` ones in ``make faults``.
"""

from __future__ import annotations

import asyncio
import contextlib
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
    disconnected,
    mqtt_component,
    outbox_backlog,
    publish,
    wait_until,
)
from tests.support.faultproxy import FaultProxy
from tests.support.mosquitto import Mosquitto, require_mosquitto
from tests.support.sidecar import SidecarProcess

pytestmark = pytest.mark.broker


@dataclass
class World:
    broker: Mosquitto
    proxy: FaultProxy
    app: RecordingApp
    pub: SidecarProcess
    sub: SidecarProcess


@contextlib.asynccontextmanager
async def world(root: Path, *, pub_extra: str = "", inbound_proxy: bool = False,
                keepalive_s: int = 2) -> AsyncIterator[World]:
    """Broker, proxy, app and both sidecars; the proxy sits on the publisher's link, or on
    the subscriber's with ``inbound_proxy``."""
    require_mosquitto()
    broker = Mosquitto(root / "broker", extra_config=BROKER_CONFIG)
    broker.start()
    proxy = await FaultProxy("127.0.0.1", broker.port).start()
    app = RecordingApp()
    pub_url, sub_url = (broker.url, proxy.url) if inbound_proxy else (proxy.url, broker.url)
    try:
        async with AppServer(app) as server:
            sub = SidecarProcess(root, "sub", mqtt_component(
                sub_url, "net-sub", keepalive_s=keepalive_s), server.port)
            pub = SidecarProcess(root, "pub", mqtt_component(
                pub_url, "net-pub", keepalive_s=keepalive_s, extra=pub_extra))
            try:
                await sub.start()
                await app_ready(sub)
                await pub.start()
                await wait_until(lambda: connected(pub), 20, "publisher connected")
                yield World(broker, proxy, app, pub, sub)
            finally:
                await pub.stop()
                await sub.stop()
    finally:
        await proxy.stop()
        with contextlib.suppress(Exception):
            broker.stop()


async def half_open(root: Path, name: str, before: int, during: int) -> None:
    counts = Counts(name)
    async with world(root) as w:
        async with RssSampler(counts, {"pub": w.pub}) as rss:
            await publish(w.pub, range(before), counts)
            await w.app.wait_for(set(counts.acked))
            w.proxy.pause()  # the broker goes silent; TCP stays up
            publishing = asyncio.create_task(publish(w.pub, range(before, before + during),
                                                     counts, pause_s=0.002))
            took = await wait_until(lambda: disconnected(w.pub), 30,
                                    "metadata reports the half-open link as disconnected")
            await publishing
            backlog = await outbox_backlog(w.pub)
            rss.sample()
            assert len(counts.acked) == before + during, counts.other  # all into the outbox
            assert backlog > 0
            w.proxy.resume()
            await wait_until(lambda: connected(w.pub), 30, "reconnected after the partition")
            await w.app.wait_for(set(counts.acked))
        losses = await w.pub.metric("edge_runtime_mqtt_connection_losses_total",
                                    'component="mqtt"')
        counts.report(w.app, detected_s=f"{took:.1f}", outbox_peak=backlog,
                      connection_losses=int(losses))
        assert losses >= 1


async def test_half_open_partition_short(tmp_path: Path) -> None:
    """Broker silent with TCP up: keepalive notices, publishes keep landing in the outbox,
    everything arrives after the heal."""
    await half_open(tmp_path, "half-open short", 50, 300)


@pytest.mark.faults_long
async def test_half_open_partition_long(tmp_path: Path) -> None:
    await half_open(tmp_path, "half-open long", 500, 5000)


async def test_outbox_full_backpressure(tmp_path: Path) -> None:
    """A partition longer than the outbox: 429 ERR_PUBSUB_OUTBOX_FULL past the limit, the
    accepted ones all arrive after the heal."""
    counts = Counts("outbox full")
    extra = "- {name: maxMessages, value: '200'}"
    async with world(tmp_path, pub_extra=extra) as w:
        async with RssSampler(counts, {"pub": w.pub}):
            w.proxy.pause()
            await wait_until(lambda: disconnected(w.pub), 30, "disconnection seen")
            await publish(w.pub, range(350), counts)
            assert counts.refused > 0, "a full outbox must refuse with 429"
            assert len(counts.acked) <= 200
            assert not counts.other, counts.other
            w.proxy.resume()
            await w.app.wait_for(set(counts.acked))
            # Backpressure ends with the backlog: publishes are accepted again.
            more = Counts("after")
            await publish(w.pub, range(1000, 1010), more)
            assert len(more.acked) == 10
            counts.acked += more.acked
            await w.app.wait_for(set(counts.acked))
        counts.report(w.app)


async def slow_link(root: Path, name: str, n: int) -> None:
    counts = Counts(name)
    async with world(root) as w:
        async with RssSampler(counts, {"pub": w.pub}):
            w.proxy.slow(bytes_per_s=1024)
            await publish(w.pub, range(n), counts)
            assert len(counts.acked) == n  # the outbox absorbs the slow link
            await w.app.wait_for(set(counts.acked), limit_s=max(60, n))
        counts.report(w.app, proxy_bytes_up=w.proxy.bytes_up)


async def test_slow_link_1kbps_short(tmp_path: Path) -> None:
    await slow_link(tmp_path, "1 KB/s short", 40)


@pytest.mark.faults_long
async def test_slow_link_1kbps_long(tmp_path: Path) -> None:
    await slow_link(tmp_path, "1 KB/s long", 300)


async def cut_mid_packet(root: Path, name: str, n: int, cuts: int) -> None:
    counts = Counts(name)
    async with world(root) as w:
        async with RssSampler(counts, {"pub": w.pub}):
            publishing = asyncio.create_task(publish(w.pub, range(n), counts, pause_s=0.001))
            for k in range(cuts):
                await w.proxy.cut(after_bytes=1000 + 37 * k, direction="up")
                await wait_until(lambda: connected(w.pub), 30, "reconnected after a cut")
            await publishing
            assert len(counts.acked) == n
            await w.app.wait_for(set(counts.acked))
        counts.report(w.app, cuts=w.proxy.cuts, connections=w.proxy.connections)
        assert w.proxy.connections > cuts  # every cut really ended a connection


async def test_cut_mid_packet_short(tmp_path: Path) -> None:
    await cut_mid_packet(tmp_path, "cut mid-packet short", 600, 3)


@pytest.mark.faults_long
async def test_cut_mid_packet_long(tmp_path: Path) -> None:
    await cut_mid_packet(tmp_path, "cut mid-packet long", 8000, 25)


async def inbound_pause(root: Path, name: str, n: int) -> None:
    counts = Counts(name)
    async with world(root, inbound_proxy=True) as w:
        async with RssSampler(counts, {"sub": w.sub}):
            publishing = asyncio.create_task(publish(w.pub, range(n), counts, pause_s=0.002))
            await wait_until(lambda: _seen_some(w.app, 20), 30, "deliveries started")
            w.proxy.pause()  # broker → subscriber stops mid-delivery
            await wait_until(lambda: disconnected(w.sub), 30, "subscriber saw the partition")
            await publishing
            w.proxy.resume()
            await w.app.wait_for(set(counts.acked))
        counts.report(w.app)


async def _seen_some(app: RecordingApp, k: int) -> bool:
    return len(app.seen) >= k


async def test_inbound_paused_mid_delivery_short(tmp_path: Path) -> None:
    await inbound_pause(tmp_path, "inbound paused short", 300)


@pytest.mark.faults_long
async def test_inbound_paused_mid_delivery_long(tmp_path: Path) -> None:
    await inbound_pause(tmp_path, "inbound paused long", 5000)
