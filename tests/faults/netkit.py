"""Shared parts of the network and clock fault scenarios (test_clock_jumps, test_partition,
test_slow_peers): the MQTT component, a recording subscriber app, a publisher loop that
counts acknowledgements, RSS sampling and the counts every scenario prints."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.appchannel.appserver import Reply, Request
from tests.support.components import mqtt_pubsub
from tests.support.sidecar import SidecarProcess

TOPIC = "net"

# As deployments configure it (README "Broker settings"): mosquitto's default keeps at most
# 1000 queued QoS 1 messages per client and drops the rest with one log line. The long
# half-open scenario lost 2102 of 5500 acknowledged messages at the broker that way.
BROKER_CONFIG = "max_queued_messages 0"

RSS_LIMIT_MB = 150  # a sidecar above this holds its backlog in memory (or leaks)


def mqtt_component(url: str, client_id: str, *, keepalive_s: int = 2, extra: str = "") -> str:
    """A ``pubsub.mqtt3`` component named ``mqtt``: short keepalive and reconnect backoff so a
    half-open link is noticed in seconds; ``extra`` adds metadata lines (``- {name:..}``)."""
    more = "".join(f"  {line}\n" for line in extra.strip().splitlines())
    return "\n" + mqtt_pubsub(
        url, client_id, ("keepAlive", f"{keepalive_s}s"), ("reconnectMin", "200ms"),
        ("reconnectMax", "1s"),
    ) + more


Behaviour = Callable[[Request], Awaitable[Reply] | Reply]


@dataclass
class RecordingApp:
    """The subscriber app: subscribes to ``net/#``, records each event's ``i`` (in arrival
    order) and answers what ``behaviour`` says (default 200 at once)."""

    seen: list[int] = field(default_factory=list)
    behaviour: Behaviour | None = None
    calls: int = 0

    def __call__(self, req: Request) -> Awaitable[Reply] | Reply:
        if req.path == "/dapr/subscribe":
            return Reply(200, json.dumps(
                [{"pubsubname": "mqtt", "topic": f"{TOPIC}/#", "route": "/ev"}]).encode())
        if req.path == "/tick":  # an input binding of that name (the clock scenarios' cron)
            return Reply(200)
        if req.path != "/ev":
            return Reply(404)
        self.calls += 1
        if self.behaviour is not None:
            return self._then_record(req, self.behaviour(req))
        self.seen.append(json.loads(req.body)["data"]["i"])
        return Reply(200)

    async def _then_record(self, req: Request, reply: Awaitable[Reply] | Reply) -> Reply:
        if not isinstance(reply, Reply):
            reply = await reply
        if reply.status == 200 and not reply.hang and not reply.close:
            self.seen.append(json.loads(req.body)["data"]["i"])
        return reply

    async def wait_for(self, ids: set[int], limit_s: float = 60) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit_s
        while loop.time() < deadline:
            if ids <= set(self.seen):
                return
            await asyncio.sleep(0.05)
        missing = sorted(ids - set(self.seen))
        raise AssertionError(f"{len(missing)} acknowledged messages never arrived: {missing[:20]}")


@dataclass
class Counts:
    """What a scenario prints: sent, acknowledged (204), refused (429), received, lost,
    duplicated, and the sidecars' peak RSS."""

    name: str
    sent: int = 0
    acked: list[int] = field(default_factory=list)
    refused: int = 0
    other: dict[int, int] = field(default_factory=dict)
    peak_rss_kb: dict[str, int] = field(default_factory=dict)

    def report(self, app: RecordingApp, *, expired: set[int] | None = None,
               **extra: object) -> str:
        """Print and return the line; ``expired`` are acknowledged ids meant to expire (not
        counted as lost)."""
        received = set(self.seen_ids(app))
        lost = len(set(self.acked) - received - (expired or set()))
        dups = len(app.seen) - len(set(app.seen))
        rss = ", ".join(f"{k} {v / 1024:.1f} MB" for k, v in self.peak_rss_kb.items())
        more = "".join(f", {k} {v}" for k, v in extra.items())
        line = (f"[{self.name}] messages {self.sent}, acknowledged {len(self.acked)}, "
                f"refused 429 {self.refused}, received {len(received)}, lost {lost}, "
                f"duplicated {dups}, "
                + (f"expired as meant {len(expired)}, " if expired is not None else "")
                + f"peak RSS {rss or '-'}{more}")
        print(line)
        for sidecar, kb in self.peak_rss_kb.items():
            # Bounded memory: the backlog lives on disk. The sidecars idle at 65-75 MB here.
            assert kb < RSS_LIMIT_MB * 1024, f"{sidecar} peaked at {kb / 1024:.0f} MB"
        return line

    @staticmethod
    def seen_ids(app: RecordingApp) -> list[int]:
        return app.seen


async def publish(sidecar: SidecarProcess, ids: range, counts: Counts, *,
                  ttl_s: int | None = None, pause_s: float = 0.0,
                  topic_of: Callable[[int], str] | None = None) -> None:
    """POST each id to ``net/<i % 4>`` (or ``topic_of(i)``); 204s go to ``counts.acked``,
    429s are counted (and must carry ERR_PUBSUB_OUTBOX_FULL), other answers too."""
    params = {"metadata.ttlInSeconds": str(ttl_s)} if ttl_s is not None else None
    async with httpx.AsyncClient(base_url=sidecar.url, timeout=30) as client:
        for i in ids:
            counts.sent += 1
            topic = topic_of(i) if topic_of else f"{TOPIC}/{i % 4}"
            r = await client.post(f"/v1.0/publish/mqtt/{topic}", json={"i": i},
                                  params=params)
            if r.status_code == 204:
                counts.acked.append(i)
            elif r.status_code == 429:
                assert r.json()["errorCode"] == "ERR_PUBSUB_OUTBOX_FULL", r.text
                counts.refused += 1
            else:
                counts.other[r.status_code] = counts.other.get(r.status_code, 0) + 1
            if pause_s:
                await asyncio.sleep(pause_s)


def rss_kb(pid: int) -> int:
    """VmRSS of a process in kB (0 once it is gone)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class RssSampler:
    """Samples the RSS of sidecars every ``every_s`` until stopped; keeps each one's peak."""

    def __init__(self, counts: Counts, sidecars: dict[str, SidecarProcess],
                 every_s: float = 0.2) -> None:
        self.counts = counts
        self.sidecars = sidecars
        self.every_s = every_s
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RssSampler:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def sample(self) -> None:
        for name, sc in self.sidecars.items():
            if sc.proc is not None and sc.proc.returncode is None:
                kb = rss_kb(sc.proc.pid)
                self.counts.peak_rss_kb[name] = max(self.counts.peak_rss_kb.get(name, 0), kb)

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.every_s)


async def extended(sidecar: SidecarProcess) -> dict[str, str]:
    """``/v1.0/metadata``'s ``extended`` map."""
    async with sidecar.client(timeout=10) as client:
        data: dict[str, str] = (await client.get("/v1.0/metadata")).json().get("extended", {})
        return data


async def wait_until(check: Callable[[], Awaitable[bool]], limit_s: float, what: str) -> float:
    """Poll ``check`` until it is true; the seconds it took. Fails the test after ``limit_s``."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while loop.time() - start < limit_s:
        if await check():
            return loop.time() - start
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {limit_s} s: {what}")


async def connected(sidecar: SidecarProcess) -> bool:
    return (await extended(sidecar)).get("pubsub.mqtt.connected") == "true"


async def disconnected(sidecar: SidecarProcess) -> bool:
    return (await extended(sidecar)).get("pubsub.mqtt.connected") == "false"


async def outbox_backlog(sidecar: SidecarProcess) -> int:
    """Rows waiting in the ``mqtt`` component's outbox (``/v1.0/metadata``)."""
    return int((await extended(sidecar)).get("pubsub.mqtt.outbox", "0"))


async def app_ready(sidecar: SidecarProcess, limit_s: float = 30) -> None:
    """Wait until ``/v1.0/healthz`` answers 204 (the app answered and is subscribed)."""
    async def ok() -> bool:
        with contextlib.suppress(httpx.HTTPError):
            async with sidecar.client(timeout=5) as client:
                return (await client.get("/v1.0/healthz")).status_code == 204
        return False
    await wait_until(ok, limit_s, f"{sidecar.name} healthy")


async def metric_sum(sidecar: SidecarProcess, name: str) -> float:
    """The sum of a metric's samples over every label set (0 when absent)."""
    async with sidecar.client("metrics", timeout=10) as client:
        text = (await client.get("/metrics")).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")):
            total += float(line.rsplit(" ", 1)[1])
    return total
