"""Publisher sidecar → mosquitto → subscriber sidecar → app, with faults.

Sidecars run as separate processes (as users run them); the broker is a private mosquitto on a
free port; the app is a real HTTP server in the test. Every test asserts the one invariant:
every publish that got its 204 reaches the app at least once. Duplicates are reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.appchannel.appserver import AppServer, Reply, Request
from tests.support.mosquitto import Mosquitto, require_mosquitto
from tests.support.sidecar import SidecarProcess
from tests.support.slowdown import limit

pytestmark = pytest.mark.broker


def component(url: str, client_id: str) -> str:
    return textwrap.dedent(f"""
        apiVersion: dapr.io/v1alpha1
        kind: Component
        metadata: {{name: mqtt}}
        spec:
          type: pubsub.mqtt3
          version: v1
          metadata:
          - {{name: url, value: "{url}"}}
          - {{name: consumerID, value: {client_id}}}
          - {{name: reconnectMax, value: 1s}}
    """)


class App:
    def __init__(self) -> None:
        self.seen: list[int] = []

    def __call__(self, req: Request) -> Reply:
        if req.path == "/dapr/subscribe":
            return Reply(
                200, json.dumps([{"pubsubname": "mqtt", "topic": "e2e/#", "route": "/ev"}]).encode()
            )
        self.seen.append(json.loads(req.body)["data"]["i"])
        return Reply(200, b"")

    async def wait_for(self, ids: set[int], limit_s: float = 60) -> None:
        for _ in range(int(limit(limit_s) * 20)):
            if ids <= set(self.seen):
                return
            await asyncio.sleep(0.05)
        missing = sorted(ids - set(self.seen))
        raise AssertionError(f"{len(missing)} acknowledged messages never arrived: {missing[:20]}")

    def report(self) -> str:
        dups = len(self.seen) - len(set(self.seen))
        return f"{len(set(self.seen))} distinct, {dups} duplicates"


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[Mosquitto, App, AppServer, Path]]:
    require_mosquitto()
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    app = App()
    async with AppServer(app) as server:
        yield broker, app, server, tmp_path
    with contextlib.suppress(Exception):
        broker.stop()


async def publish(port: int, ids: range, acked: list[int], *, tolerate: bool = False) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
        for i in ids:
            try:
                r = await c.post(f"/v1.0/publish/mqtt/e2e/{i % 4}", json={"i": i})
            except httpx.HTTPError:
                if tolerate:
                    return
                raise
            if r.status_code == 204:
                acked.append(i)


async def healthy(port: int) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
        for _ in range(400):
            with contextlib.suppress(httpx.HTTPError):
                if (await c.get("/v1.0/healthz")).status_code == 204:
                    return
            await asyncio.sleep(0.05)
    raise AssertionError("not healthy")


async def pair(
    broker: Mosquitto, server: AppServer, root: Path
) -> tuple[SidecarProcess, SidecarProcess]:
    sub = SidecarProcess(root, "sub", component(broker.url, "e2e-sub"), server.port)
    pub = SidecarProcess(root, "pub", component(broker.url, "e2e-pub"))
    await sub.start()
    await healthy(sub.port)
    await pub.start()
    return pub, sub


async def test_end_to_end_and_broker_outage(world: tuple[Mosquitto, App, AppServer, Path]) -> None:
    broker, app, server, root = world
    pub, sub = await pair(broker, server, root)
    try:
        acked: list[int] = []
        await publish(pub.port, range(100), acked)
        await app.wait_for(set(acked))
        broker.stop()  # publishes keep being acknowledged: they wait in the outbox
        await publish(pub.port, range(100, 200), acked)
        assert len(acked) == 200
        broker.start()
        await app.wait_for(set(acked))
        print("broker outage:", app.report())
    finally:
        await pub.stop()
        await sub.stop()


async def test_publisher_killed_mid_stream(world: tuple[Mosquitto, App, AppServer, Path]) -> None:
    broker, app, server, root = world
    pub, sub = await pair(broker, server, root)
    try:
        acked: list[int] = []
        task = asyncio.create_task(publish(pub.port, range(100_000), acked, tolerate=True))
        while len(acked) < 300:
            await asyncio.sleep(0.01)
        await pub.kill()
        await task
        await pub.start()  # the outbox still holds what the broker had not acknowledged
        await publish(pub.port, range(100_000, 100_050), acked)
        await app.wait_for(set(acked))
        print("publisher kill -9:", app.report())
    finally:
        await pub.stop()
        await sub.stop()


async def test_subscriber_killed_mid_delivery(
    world: tuple[Mosquitto, App, AppServer, Path],
) -> None:
    broker, app, server, root = world
    pub, sub = await pair(broker, server, root)
    try:
        acked: list[int] = []
        task = asyncio.create_task(publish(pub.port, range(600), acked))
        while len(app.seen) < 100:
            await asyncio.sleep(0.01)
        await sub.kill()
        await task
        await sub.start()  # its inbox and the broker's persistent session hold the rest
        await app.wait_for(set(acked))
        print("subscriber kill -9:", app.report())
    finally:
        await pub.stop()
        await sub.stop()


async def test_broker_restarted_mid_stream(world: tuple[Mosquitto, App, AppServer, Path]) -> None:
    broker, app, server, root = world
    pub, sub = await pair(broker, server, root)
    try:
        acked: list[int] = []
        task = asyncio.create_task(publish(pub.port, range(600), acked))
        while len(acked) < 150:
            await asyncio.sleep(0.01)
        broker.restart()
        await task
        await app.wait_for(set(acked))
        print("broker restart:", app.report())
    finally:
        await pub.stop()
        await sub.stop()


def group_component(url: str, client_id: str) -> str:
    return component(url, client_id) + textwrap.indent(
        "- {name: protocol, value: '5'}\n- {name: consumerGroup, value: workers}\n", "  "
    )


async def test_shared_subscription_across_two_sidecars(
    world: tuple[Mosquitto, App, AppServer, Path],
) -> None:
    """Two subscriber sidecars in one consumer group: each message reaches one of them."""
    broker, app, server, root = world
    second = App()
    async with AppServer(second) as server2:
        sub1 = SidecarProcess(root, "sub1", group_component(broker.url, "g-sub1"), server.port)
        sub2 = SidecarProcess(root, "sub2", group_component(broker.url, "g-sub2"), server2.port)
        pub = SidecarProcess(root, "pub", component(broker.url, "g-pub"))
        try:
            for s in (sub1, sub2):
                await s.start()
                await healthy(s.port)
            await pub.start()
            await asyncio.sleep(0.5)  # both group members subscribed at the broker
            acked: list[int] = []
            await publish(pub.port, range(200), acked)
            for _ in range(600):
                if set(acked) <= set(app.seen) | set(second.seen):
                    break
                await asyncio.sleep(0.05)
            assert set(acked) <= set(app.seen) | set(second.seen)
            assert app.seen
            assert second.seen
            both = set(app.seen) & set(second.seen)
            assert len(both) <= 5, f"{len(both)} messages went to both members"
            print(f"shared subscription: {len(app.seen)} + {len(second.seen)}")
        finally:
            for s in (pub, sub1, sub2):
                await s.stop()


async def test_broker_killed_mid_stream(world: tuple[Mosquitto, App, AppServer, Path]) -> None:
    """kill -9 of the broker: what it had not acknowledged is resent by us; what it had
    acknowledged and then lost from memory is its persistence window, counted here."""
    broker, app, server, root = world
    pub, sub = await pair(broker, server, root)
    try:
        acked: list[int] = []
        task = asyncio.create_task(publish(pub.port, range(600), acked))
        while len(acked) < 150:
            await asyncio.sleep(0.01)
        broker.kill()
        broker.start()
        await task
        await publish(pub.port, range(1000, 1010), acked)
        # The publisher's outbox drains: everything the broker had not acknowledged is resent.
        backlog = "?"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{pub.port}") as c:
            for _ in range(400):
                meta = (await c.get("/v1.0/metadata")).json()
                backlog = meta["extended"]["pubsub.mqtt.outbox"]
                if backlog == "0":
                    break
                await asyncio.sleep(0.05)
        assert backlog == "0"
        # What was published after the broker came back always arrives.
        await app.wait_for(set(range(1000, 1010)))
        await asyncio.sleep(0.5)
        lost = set(acked) - set(app.seen)
        print(
            f"broker kill -9: {app.report()}; {len(lost)} lost in the broker's "
            "persistence window (acknowledged by mosquitto, gone with its memory)"
        )
    finally:
        await pub.stop()
        await sub.stop()
