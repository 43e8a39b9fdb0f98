"""The subscriber's fast lane end to end: mosquitto, a bare paho producer (QoS 1), a subscribing
sidecar process (real files, default commit window) and a real HTTP app that records.

- A quick app: every event arrives once and in order, and the inbox commits (almost) nothing:
  no event row per message, only dedup ids logged now and then (old code: a commit per event,
  or per few, plus their deletes).
- An app answering 500 to some first attempts, and an app down then up: the events are stored
  before their PUBACK and retried in order; none is lost.
- kill -9 of the subscribing sidecar mid-stream, restarted on its data dir: every message the
  broker acknowledged to the producer reaches the app at least once (the sidecar PUBACKs only
  after its commit or the app's success, and the broker redelivers what it did not PUBACK).
"""

from __future__ import annotations

import asyncio
import json
import random
import textwrap
from collections import Counter
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.appchannel.appserver import AppServer, Reply, Request
from tests.faults._storage import pubsub_component
from tests.support.mosquitto import Mosquitto, require_mosquitto
from tests.support.sidecar import SidecarProcess

pytestmark = pytest.mark.broker


class RecordingApp:
    """Declares ``fast/#``; records the ``i`` of each event taken, in order. ``fail_first``
    ids get a 500 on their first attempt; ``down`` answers 503 to everything."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.order: list[int] = []
        self.attempts: Counter[int] = Counter()
        self.fail_first: set[int] = set()
        self.delay_s = delay_s

    async def __call__(self, req: Request) -> Reply:
        if req.path == "/dapr/subscribe":
            return Reply(200, json.dumps(
                [{"pubsubname": "mqtt", "topic": "fast/#", "route": "/ev"}]).encode())
        if req.path != "/ev":
            return Reply(404, b"")
        i = int(json.loads(req.body)["data"]["i"])
        self.attempts[i] += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if i in self.fail_first and self.attempts[i] == 1:
            return Reply(500, b"not now")
        self.order.append(i)
        return Reply(200, b"")


class Producer:
    """A bare paho client publishing CloudEvents ``{"i": n}`` with QoS 1 to ``fast/a``."""

    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fast-producer")
        self.client.max_inflight_messages_set(100)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.infos: dict[int, mqtt.MQTTMessageInfo] = {}

    def publish(self, i: int) -> None:
        event = {"specversion": "1.0", "id": f"e{i}", "source": "fast", "type": "t",
                 "datacontenttype": "application/json", "data": {"i": i}}
        self.infos[i] = self.client.publish("fast/a", json.dumps(event), qos=1)

    async def acknowledged(self) -> set[int]:
        done = set()
        for i, info in self.infos.items():
            await asyncio.to_thread(info.wait_for_publish, 30)
            if info.is_published():
                done.add(i)
        return done

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


async def subscribed(server: AppServer, sub: SidecarProcess) -> None:
    """The app was asked for its subscriptions and the subscription reached the broker."""
    for _ in range(200):
        if any(r.path == "/dapr/subscribe" for r in server.requests):
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    assert sub.proc is not None
    assert sub.proc.returncode is None


async def until(cond: object, limit_s: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + limit_s
    while not cond():  # type: ignore[operator]
        assert loop.time() < end, f"not within {limit_s} s: {what}"
        await asyncio.sleep(0.05)


def _start(root: Path) -> Mosquitto:
    require_mosquitto()
    broker = Mosquitto(root / "broker", extra_config="max_queued_messages 0")
    broker.start()
    return broker


async def test_quick_app_in_order_once_and_almost_no_inbox_commits(tmp_path: Path) -> None:
    broker = _start(tmp_path)
    app = RecordingApp()
    producer = Producer(broker.port)
    n = 200
    async with AppServer(app) as server:
        sub = SidecarProcess(tmp_path, "sub", pubsub_component(broker.url, "fast-sub"),
                             server.port, log_level="warn")
        try:
            await sub.start()
            await subscribed(server, sub)
            commits0 = await sub.metric("edge_runtime_db_commits_total", 'db="inbox"')
            for i in range(n):
                producer.publish(i)
                await asyncio.sleep(0.005)  # ~200/s: on main, a commit per event
            assert await producer.acknowledged() == set(range(n))
            await until(lambda: len(app.order) >= n, 30, "every event at the app")
            await asyncio.sleep(0.3)
            commits = await sub.metric("edge_runtime_db_commits_total", 'db="inbox"') - commits0
            assert app.order == list(range(n))  # in order, each once
            # Dedup ids ride a commit about once a second; a few events may be stored when an
            # answer took longer than the window. Main: >= n commits (inserts, then deletes).
            assert commits < n / 10, f"{commits} inbox commits for {n} events"
            print(f"[fast lane] {n} events, {commits:g} inbox commits")
        finally:
            producer.close()
            await sub.stop()
            broker.stop()


async def test_failing_then_recovering_app_events_stored_and_retried_in_order(
    tmp_path: Path,
) -> None:
    broker = _start(tmp_path)
    app = RecordingApp()
    app.fail_first = {10, 11, 30, 55}
    producer = Producer(broker.port)
    n = 80
    resiliency = textwrap.dedent("""
        ---
        apiVersion: dapr.io/v1alpha1
        kind: Resiliency
        metadata: {name: quick}
        spec:
          policies:
            retries:
              quick: {policy: constant, duration: 50ms, maxRetries: -1}
          targets:
            components:
              mqtt:
                inbound: {retry: quick}
    """)
    port = 0
    async with AppServer(app) as server:
        port = server.port
        sub = SidecarProcess(
            tmp_path, "sub", pubsub_component(broker.url, "fast-sub") + resiliency,
            server.port, log_level="warn")
        try:
            await sub.start()
            await subscribed(server, sub)
            for i in range(40):
                producer.publish(i)
                await asyncio.sleep(0.005)
            await until(lambda: len(app.order) >= 40, 30, "the first 40 at the app")
        except BaseException:
            producer.close()
            await sub.stop()
            broker.stop()
            raise
    try:
        # The app is down (connections refused): the events are stored before their PUBACK.
        for i in range(40, n):
            producer.publish(i)
            await asyncio.sleep(0.005)
        assert await producer.acknowledged() == set(range(n))
        await asyncio.sleep(0.5)
        async with AppServer(app, port=port):
            await until(lambda: len(app.order) >= n, 60, "every event at the app")
            await asyncio.sleep(0.3)
        assert app.order == list(range(n))  # in order, each taken once
        assert all(app.attempts[i] == 2 for i in app.fail_first)
    finally:
        producer.close()
        await sub.stop()
        broker.stop()


async def test_kill_9_of_the_subscriber_mid_stream_loses_nothing(tmp_path: Path) -> None:
    broker = _start(tmp_path)
    rng = random.Random()
    app = RecordingApp(delay_s=0.001)
    app.fail_first = set(rng.sample(range(600), 20))  # some take the stored path
    producer = Producer(broker.port)
    n, kills = 600, 3
    async with AppServer(app) as server:
        sub = SidecarProcess(tmp_path, "sub", pubsub_component(broker.url, "fast-sub"),
                             server.port, log_level="warn")
        try:
            await sub.start()
            await subscribed(server, sub)
            at = sorted(rng.randrange(n // 10, n - n // 10) for _ in range(kills))
            for i in range(n):
                if at and i >= at[0]:
                    at.pop(0)
                    await asyncio.sleep(rng.uniform(0, 0.01))  # while posts are in flight
                    await sub.kill()
                    await sub.start()
                producer.publish(i)
                if i % 5 == 0:
                    await asyncio.sleep(0.005)
            acknowledged = await producer.acknowledged()
            assert acknowledged == set(range(n))
            await until(lambda: acknowledged <= set(app.order), 60,
                        "every acknowledged event at the app")
            dups = sum(c - 1 for c in Counter(app.order).values())
            print(f"[fast lane kill -9] {n} events, {kills} kills, {dups} delivered twice")
        finally:
            producer.close()
            await sub.stop()
            broker.stop()
