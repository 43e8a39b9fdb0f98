"""A pubsub's ``deliveryConcurrency``: events of a subscription delivered at once (opt-in);
without it, one at a time, in order."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

from tests.api.conftest import StartSidecar
from tests.appchannel.appserver import AppServer, Reply, Request

PUBSUBS = """
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: ordered}
spec:
  type: pubsub.in-memory
  version: v1
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: wide}
spec:
  type: pubsub.in-memory
  version: v1
  metadata:
  - {name: deliveryConcurrency, value: "4"}
"""

SUBSCRIBE = json.dumps([
    {"pubsubname": "ordered", "topic": "t", "route": "/ordered"},
    {"pubsubname": "wide", "topic": "t", "route": "/wide"},
]).encode()


class HoldingApp:
    """Holds every event until :attr:`gate` opens; counts how many it holds at once."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.active: Counter[str] = Counter()
        self.most: Counter[str] = Counter()
        self.seen: dict[str, list[int]] = {}

    async def __call__(self, req: Request) -> Reply:
        if req.path == "/dapr/subscribe":
            return Reply(200, SUBSCRIBE)
        self.seen.setdefault(req.path, []).append(json.loads(req.body)["data"]["n"])
        self.active[req.path] += 1
        self.most[req.path] = max(self.most[req.path], self.active[req.path])
        try:
            await self.gate.wait()
        finally:
            self.active[req.path] -= 1
        return Reply(200, b"")


async def test_delivery_concurrency_is_per_pubsub_and_opt_in(
    start_sidecar: StartSidecar,
) -> None:
    app = HoldingApp()
    async with AppServer(app) as server:
        s = await start_sidecar(PUBSUBS, app_port=server.port)
        for _ in range(200):
            if (await s.client.get("/v1.0/healthz")).status_code == 204:
                break
            await asyncio.sleep(0.02)
        for n in range(8):
            for pubsub in ("ordered", "wide"):
                r = await s.client.post(f"/v1.0/publish/{pubsub}/t", json={"n": n})
                assert r.status_code == 204
        for _ in range(250):
            if app.most["/wide"] >= 4 and app.most["/ordered"] >= 1:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # time for more than allowed to start, if they would
        assert (app.most["/ordered"], app.most["/wide"]) == (1, 4)
        app.gate.set()
        for _ in range(250):
            if all(len(app.seen.get(p, [])) >= 8 for p in ("/ordered", "/wide")):
                break
            await asyncio.sleep(0.02)
        assert app.seen["/ordered"] == list(range(8))
        assert sorted(app.seen["/wide"]) == list(range(8))
