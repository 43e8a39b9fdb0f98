"""Slow or dead peers: a subscriber app that answers slowly, not at all (port closed), or
accepts and never answers; and a slow broker link (every chunk delayed 200 ms by the fault
proxy).

Invariants: every publish answered 204 reaches the app once it is back (zero lost); the
inbox holds the backlog (bounded by its limits) and reports it; delivery attempts are bounded
by the Resiliency ``inbound.timeout`` and retried by its retry policy; the HTTP API (health,
a state get) keeps answering while deliveries hang; RSS is sampled and printed. Short
versions run in ``make test``; ``faults_long`` ones in ``make faults``.
"""

from __future__ import annotations

import asyncio
import contextlib
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.appchannel.appserver import AppServer, Reply, Request
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
from tests.support.components import SQLITE_STATESTORE
from tests.support.faultproxy import FaultProxy
from tests.support.mosquitto import Mosquitto, require_mosquitto
from tests.support.sidecar import SidecarProcess

pytestmark = pytest.mark.broker


def sub_resources(timeout: str) -> str:
    """A state store and the Resiliency policy of the subscriber's inbound delivery."""
    return "\n---\n" + SQLITE_STATESTORE + textwrap.dedent(f"""\
        ---
        apiVersion: dapr.io/v1alpha1
        kind: Resiliency
        metadata: {{name: inbound}}
        spec:
          policies:
            timeouts: {{app: {timeout}}}
            retries:
              fast: {{policy: constant, duration: 300ms, maxRetries: -1}}
          targets:
            components:
              mqtt: {{inbound: {{retry: fast, timeout: app}}}}
    """)


@dataclass
class Probes:
    """The API while deliveries are stuck: every answer's status and the slowest one."""

    answered: int = 0
    slowest_s: float = 0.0
    bad: list[str] = field(default_factory=list)


async def probe_api(sidecar: SidecarProcess, probes: Probes, stop: asyncio.Event) -> None:
    """Health and a state get, over and over; a probe must answer (5 s bound: a hang)."""
    async with sidecar.client(timeout=5) as client:
        while not stop.is_set():
            for path, want in (("/v1.0/healthz", 204), ("/v1.0/state/statestore/k", 200)):
                start = time.monotonic()
                try:
                    r = await client.get(path)
                except httpx.HTTPError as exc:
                    probes.bad.append(f"{path}: {type(exc).__name__}")
                    continue
                probes.slowest_s = max(probes.slowest_s, time.monotonic() - start)
                if r.status_code != want:
                    probes.bad.append(f"{path}: {r.status_code}")
                probes.answered += 1
            await asyncio.sleep(0.1)


@dataclass
class World:
    broker: Mosquitto
    proxy: FaultProxy
    app: RecordingApp
    server: AppServer
    pub: SidecarProcess
    sub: SidecarProcess

    async def app_down(self) -> int:
        """Close the app's port (its connections too); the port, to bring it back."""
        port = self.server.port
        await self.server.__aexit__(None, None, None)
        return port

    async def app_up(self, port: int) -> None:
        self.server = AppServer(self.app, port=port)
        await self.server.__aenter__()


@contextlib.asynccontextmanager
async def world(root: Path, *, app_timeout: str = "1s") -> AsyncIterator[World]:
    require_mosquitto()
    broker = Mosquitto(root / "broker", extra_config=BROKER_CONFIG)
    broker.start()
    proxy = await FaultProxy("127.0.0.1", broker.port).start()
    app = RecordingApp()
    server = AppServer(app)
    await server.__aenter__()
    sub = SidecarProcess(root, "sub", mqtt_component(broker.url, "slow-sub")
                         + sub_resources(app_timeout), server.port)
    pub = SidecarProcess(root, "pub", mqtt_component(proxy.url, "slow-pub"))
    w = World(broker, proxy, app, server, pub, sub)
    try:
        await sub.start()
        await app_ready(sub)
        async with sub.client(timeout=5) as client:
            r = await client.post("/v1.0/state/statestore", json=[{"key": "k", "value": 1}])
            assert r.status_code == 204, r.text
        await pub.start()
        await wait_until(lambda: connected(pub), 20, "publisher connected")
        yield w
    finally:
        await pub.stop()
        await sub.stop()
        with contextlib.suppress(Exception):
            await w.server.__aexit__(None, None, None)
        await proxy.stop()
        with contextlib.suppress(Exception):
            broker.stop()


async def backlog(sub: SidecarProcess) -> float:
    return await metric_sum(sub, "edge_runtime_inbox_backlog")


async def stuck_app(root: Path, name: str, n: int, *, mode: str, stuck_s: float,
                    app_timeout: str) -> None:
    """Deliveries stuck for ``stuck_s`` (``mode``: slow, closed or hang), then the app is
    back; the API is probed all along."""
    counts, probes, stop = Counts(name), Probes(), asyncio.Event()
    async with world(root, app_timeout=app_timeout) as w:
        async with RssSampler(counts, {"sub": w.sub}) as rss:
            prober = asyncio.create_task(probe_api(w.sub, probes, stop))
            port = 0
            if mode == "closed":
                port = await w.app_down()
            elif mode == "hang":
                w.app.behaviour = lambda _r: Reply(hang=True)
            else:
                w.app.behaviour = _slowly(0.5)
            await publish(w.pub, range(n), counts)
            assert len(counts.acked) == n
            peak = 0.0
            loop = asyncio.get_running_loop()
            until = loop.time() + stuck_s
            while loop.time() < until:
                peak = max(peak, await backlog(w.sub))
                await asyncio.sleep(0.2)
            rss.sample()
            if mode == "closed":
                await w.app_up(port)
            elif mode == "hang":
                w.app.behaviour = None
            await w.app.wait_for(set(counts.acked), limit_s=max(60, n))
            stop.set()
            await prober
        retries = await metric_sum(w.sub, "edge_runtime_inbox_retries_total")
        counts.report(w.app, inbox_peak=int(peak), retries=int(retries),
                      app_calls=w.app.calls, api_probes=probes.answered,
                      slowest_probe_s=f"{probes.slowest_s:.2f}")
        assert not probes.bad, probes.bad[:10]
        assert probes.answered > 0
        assert peak > 0, "the backlog was never reported"
        if mode != "slow":
            assert retries > 0, "stuck deliveries were not retried"
        if mode == "hang":
            assert "did not answer within 1 s" in w.sub.log.read_text()


def _slowly(delay_s: float) -> Callable[[Request], Awaitable[Reply]]:
    async def answer(_req: Request) -> Reply:
        await asyncio.sleep(delay_s)
        return Reply(200)
    return answer


async def test_slow_app_short(tmp_path: Path) -> None:
    await stuck_app(tmp_path, "slow app short", 12, mode="slow", stuck_s=2, app_timeout="3s")


async def test_dead_app_port_closed_short(tmp_path: Path) -> None:
    await stuck_app(tmp_path, "app port closed short", 100, mode="closed", stuck_s=4,
                    app_timeout="1s")


async def test_app_never_answers_short(tmp_path: Path) -> None:
    await stuck_app(tmp_path, "app never answers short", 100, mode="hang", stuck_s=4,
                    app_timeout="1s")


@pytest.mark.faults_long
async def test_slow_app_long(tmp_path: Path) -> None:
    await stuck_app(tmp_path, "slow app long", 200, mode="slow", stuck_s=30, app_timeout="3s")


@pytest.mark.faults_long
async def test_dead_app_port_closed_long(tmp_path: Path) -> None:
    await stuck_app(tmp_path, "app port closed long", 5000, mode="closed", stuck_s=60,
                    app_timeout="1s")


@pytest.mark.faults_long
async def test_app_never_answers_long(tmp_path: Path) -> None:
    await stuck_app(tmp_path, "app never answers long", 5000, mode="hang", stuck_s=60,
                    app_timeout="1s")


async def publish_fast(w: World, ids: range, counts: Counts, lanes: int = 8) -> None:
    """Publish from ``lanes`` concurrent clients (faster than one broker round trip each)."""
    await asyncio.gather(*(publish(w.pub, ids[k::lanes], counts) for k in range(lanes)))


async def slow_broker(root: Path, name: str, n: int) -> None:
    """Every chunk between publisher and broker delayed 200 ms: a baseline batch first, then
    the same count through the delay; publish-to-delivery times printed (not asserted)."""
    counts = Counts(name)
    async with world(root) as w:
        async with RssSampler(counts, {"pub": w.pub}):
            loop = asyncio.get_running_loop()
            start = loop.time()
            await publish_fast(w, range(n), counts)
            await w.app.wait_for(set(counts.acked))
            baseline = loop.time() - start
            w.proxy.slow(delay_s=0.2)
            start = loop.time()
            await publish_fast(w, range(n, 2 * n), counts)
            accepted = loop.time() - start
            assert len(counts.acked) == 2 * n  # the outbox absorbs the slow link
            await w.app.wait_for(set(counts.acked), limit_s=max(60, n))
            delayed = loop.time() - start
        counts.report(w.app, all_delivered_s_baseline=f"{baseline:.1f}",
                      all_accepted_s_200ms=f"{accepted:.1f}",
                      all_delivered_s_200ms=f"{delayed:.1f}",
                      ratio=f"{delayed / baseline:.1f}")


async def test_slow_broker_short(tmp_path: Path) -> None:
    await slow_broker(tmp_path, "slow broker 200 ms short", 500)


@pytest.mark.faults_long
async def test_slow_broker_long(tmp_path: Path) -> None:
    await slow_broker(tmp_path, "slow broker 200 ms long", 5000)


def test_inbound_timeout_is_read_from_resiliency(tmp_path: Path) -> None:
    """``targets.components.<c>.inbound.timeout`` names a ``policies.timeouts`` entry; it
    bounds each delivery attempt (with or without a retry policy); unknown names are
    problems with their place."""
    from edge_runtime.config.loader import load_resources
    from edge_runtime.inbox import inbound_retry

    (tmp_path / "r.yaml").write_text(sub_resources("1500ms") + textwrap.dedent("""
        ---
        apiVersion: dapr.io/v1alpha1
        kind: Resiliency
        metadata: {name: more}
        spec:
          policies:
            timeouts: {slow: 1m}
          targets:
            components:
              other: {inbound: {timeout: slow}}
              broken: {inbound: {timeout: nowhere}}
    """))
    retry, problems = inbound_retry(load_resources([tmp_path]).others, "app")
    assert retry.for_pubsub("mqtt").timeout_s == 1.5
    assert retry.for_pubsub("mqtt").duration_s == 0.3  # the retry policy kept
    assert retry.for_pubsub("other").timeout_s == 60.0
    assert retry.for_pubsub("statestore").timeout_s is None
    assert len(problems) == 1
    assert "nowhere" in str(problems[0])
