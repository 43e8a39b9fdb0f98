"""Publish → outbox → broker → inbox → app, in one sidecar on the in-memory broker."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tests.api.conftest import Sidecar, StartSidecar
from tests.appchannel.appserver import AppServer, Reply, Request

PUBSUB = """
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: mem}
spec:
  type: pubsub.in-memory
  version: v1
"""

SUBSCRIBE = json.dumps(
    [
        {"pubsubname": "mem", "topic": "orders", "route": "/orders"},
        {
            "pubsubname": "mem",
            "topic": "alerts",
            "routes": {
                "rules": [{"match": 'event.type == "fire"', "path": "/fire"}],
                "default": "/other",
            },
        },
        {"pubsubname": "mem", "topic": "flaky", "route": "/flaky", "deadLetterTopic": "dead"},
        {"pubsubname": "mem", "topic": "dead", "route": "/dead"},
    ]
).encode()


class App:
    """Answers /dapr/subscribe and records events; /flaky answers RETRY twice then SUCCESS."""

    def __init__(self) -> None:
        self.events: dict[str, list[dict[str, object]]] = {}
        self.headers: list[Request] = []
        self.flaky = 0

    def __call__(self, req: Request) -> Reply:
        if req.path == "/dapr/subscribe":
            return Reply(200, SUBSCRIBE)
        self.headers.append(req)
        self.events.setdefault(req.path, []).append(json.loads(req.body))
        if req.path == "/flaky":
            self.flaky += 1
            if self.flaky <= 2:
                return Reply(200, b'{"status": "RETRY"}')
        return Reply(200, b"")

    async def wait(self, path: str, n: int = 1) -> list[dict[str, object]]:
        for _ in range(500):
            if len(self.events.get(path, [])) >= n:
                return self.events[path]
            await asyncio.sleep(0.02)
        raise AssertionError(f"{path}: {len(self.events.get(path, []))} of {n} events")


async def test_end_to_end_delivery(start_sidecar: StartSidecar, tmp_path: Path) -> None:
    app = App()
    async with AppServer(app) as server:
        s: Sidecar = await start_sidecar(PUBSUB, app_port=server.port)
        for _ in range(200):
            if (await s.client.get("/v1.0/healthz")).status_code == 204:
                break
            await asyncio.sleep(0.02)
        r = await s.client.post("/v1.0/publish/mem/orders", json={"n": 1})
        assert r.status_code == 204
        (ev,) = await app.wait("/orders")
        assert ev["data"] == {"n": 1}
        assert ev["topic"] == "orders"
        req = next(x for x in app.headers if x.path == "/orders")
        assert req.header("content-type") == "application/cloudevents+json"
        assert req.header("pubsubname") == "mem"
        # Rules pick the route.
        await s.client.post("/v1.0/publish/mem/alerts?metadata.cloudevent.type=fire", content=b"x")
        await s.client.post("/v1.0/publish/mem/alerts", content=b"y")
        await app.wait("/fire")
        await app.wait("/other")
        # RETRY is retried locally until SUCCESS.
        await s.client.post("/v1.0/publish/mem/flaky", json={"f": 1})
        await app.wait("/flaky", 3)
        meta = (await s.client.get("/v1.0/metadata")).json()
        topics = {x["topic"] for x in meta["subscriptions"]}
        assert topics == {"orders", "alerts", "flaky", "dead"}
        # The programmatic list is saved for the next start (subscribe from boot).
        saved = json.loads((s.data_dir / "subscriptions.json").read_text())
        assert saved


DECLARATIVE = (
    PUBSUB
    + """
---
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata: {name: bad-sub}
spec:
  pubsubname: mem
  topic: jobs/+
  routes:
    default: /bad
  deadLetterTopic: dead
---
apiVersion: dapr.io/v1alpha1
kind: Subscription
metadata: {name: dead-sub}
spec:
  pubsubname: mem
  topic: dead
  route: /dead
---
apiVersion: dapr.io/v1alpha1
kind: Subscription
metadata: {name: not-mine}
spec: {pubsubname: mem, topic: other, route: /other}
scopes: [another-app]
---
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: fast}
spec:
  policies:
    retries:
      quick: {policy: constant, duration: 10ms, maxRetries: 2}
  targets:
    components:
      mem: {inbound: {retry: quick}}
"""
)


async def test_declarative_subscription_retries_then_dead_letter(
    start_sidecar: StartSidecar,
) -> None:
    """The app fails an event 3 times (1 + 2 retries): it goes to the dead-letter topic."""
    calls: list[str] = []

    def respond(req: Request) -> Reply:
        if req.path == "/dapr/subscribe":
            return Reply(404)
        calls.append(req.path)
        return Reply(500 if req.path == "/bad" else 200, b"")

    async with AppServer(respond) as server:
        s: Sidecar = await start_sidecar(DECLARATIVE, app_port=server.port)
        r = await s.client.post("/v1.0/publish/mem/jobs/7", json={"job": 7})
        assert r.status_code == 204
        for _ in range(500):
            if "/dead" in calls:
                break
            await asyncio.sleep(0.02)
        assert calls.count("/bad") == 3
        assert "/dead" in calls
        meta = (await s.client.get("/v1.0/metadata")).json()
        subs = {x["topic"]: x for x in meta["subscriptions"]}
        assert set(subs) == {"jobs/+", "dead"}
        assert subs["jobs/+"]["type"] == "DECLARATIVE"
