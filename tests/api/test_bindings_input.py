"""Input bindings: binding → inbox → a real HTTP app (contract §3.5), through the in-memory
loopback binding (its ``create`` comes back as an input event); no-code routing."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from edge_runtime.inbox.deadletters import list_deadletters
from tests.api.conftest import Sidecar, StartSidecar
from tests.api.test_publish_http import Catcher
from tests.appchannel.appserver import AppServer, Reply, Request

LOOP = """
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: loop}
spec:
  type: bindings.in-memory
  version: v1
"""

FAST_RETRY = """
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
      loop: {inbound: {retry: quick}}
"""


class BindingApp:
    """A real app: answers the OPTIONS probe with ``probe``, and each event POST with the
    next of ``replies`` (then 200)."""

    def __init__(self, probe: int = 200, replies: list[int] | None = None) -> None:
        self.probe = probe
        self.replies = list(replies or [])
        self.events: list[Request] = []
        self.probes: list[Request] = []

    def __call__(self, req: Request) -> Reply:
        if req.method == "OPTIONS":
            self.probes.append(req)
            return Reply(self.probe)
        if req.path == "/dapr/subscribe":
            return Reply(404)
        self.events.append(req)
        return Reply(self.replies.pop(0) if self.replies else 200, b"")

    async def wait(self, n: int, limit_s: float = 10) -> list[Request]:
        for _ in range(int(limit_s / 0.02)):
            if len(self.events) >= n:
                return self.events
            await asyncio.sleep(0.02)
        raise AssertionError(f"{len(self.events)} of {n} events reached the app")


async def ready(s: Sidecar) -> None:
    for _ in range(500):
        if (await s.client.get("/v1.0/healthz")).status_code == 204:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the sidecar did not see the app")


async def create(s: Sidecar, data: Any, name: str = "loop", **metadata: str) -> None:
    r = await s.client.post(f"/v1.0/bindings/{name}",
                            json={"operation": "create", "data": data, "metadata": metadata})
    assert r.status_code == 200, r.text
    assert r.headers["metadata.emitted"] == "true"


def dead_bytes(data_dir: Path, dead_id: int) -> bytes:
    """The payload of a parked event (the listing leaves bytes out)."""
    with sqlite3.connect(data_dir / "inbox.db") as conn:
        row = conn.execute("SELECT data FROM deadletters WHERE id = ?", (dead_id,)).fetchone()
    return bytes(row[0])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_events_reach_the_app_with_metadata_headers(start_sidecar: StartSidecar) -> None:
    app = BindingApp()
    components = LOOP + "  metadata:\n  - {name: route, value: /sensors/in}\n"
    async with AppServer(app) as server:
        s: Sidecar = await start_sidecar(components, app_port=server.port, app_api_token="tok")
        await ready(s)
        await create(s, {"t": 21.5}, key="k1", color="red")
        [event] = await app.wait(1)
    assert app.probes[0].path == "/sensors/in"
    assert (event.method, event.path) == ("POST", "/sensors/in")
    assert event.body == b'{"t":21.5}'
    assert event.header("content-type") == "application/json"
    assert event.header("Color") == "red"
    assert event.header("Key") == "k1"
    assert event.header("dapr-api-token") == "tok"
    doc = (await s.client.get("/v1.0/metadata")).json()
    assert doc["extended"]["binding.loop.input"] == "delivering to the app at /sensors/in"
    saved = json.loads((s.data_dir / "input-bindings.json").read_text())
    assert saved["bindings"] == {"loop": {"route": "/sensors/in", "accepted": True}}


async def test_events_wait_for_an_app_that_is_down(start_sidecar: StartSidecar) -> None:
    port = free_port()
    s: Sidecar = await start_sidecar(LOOP, app_port=port)
    for i in range(5):  # committed while nothing listens on the app port
        await create(s, i)
    assert (await s.client.get("/v1.0/healthz")).status_code == 500
    app = BindingApp()
    async with AppServer(app, port=port):
        await app.wait(5)
        await asyncio.sleep(0.1)
    assert sorted(int(r.body) for r in app.events) == [0, 1, 2, 3, 4]


async def test_failures_are_retried(start_sidecar: StartSidecar) -> None:
    app = BindingApp(replies=[500, 503])
    async with AppServer(app) as server:
        s: Sidecar = await start_sidecar(LOOP + FAST_RETRY, app_port=server.port)
        await ready(s)
        await create(s, "once")
        events = await app.wait(3)
        await asyncio.sleep(0.1)
    assert [e.body for e in events] == [b'"once"'] * 3  # 500, 503, then 200
    assert list_deadletters(s.data_dir) == []


async def test_exhausted_retries_park_a_dead_letter(start_sidecar: StartSidecar) -> None:
    app = BindingApp(replies=[500] * 10)
    async with AppServer(app) as server:
        s: Sidecar = await start_sidecar(LOOP + FAST_RETRY, app_port=server.port)
        await ready(s)
        await create(s, {"doomed": True})
        for _ in range(500):
            dead = list_deadletters(s.data_dir)
            if dead:
                break
            await asyncio.sleep(0.02)
    [row] = dead
    assert (row.sub_key, row.topic, row.attempts) == ("binding:loop", "loop", 3)  # 1 + 2
    assert dead_bytes(s.data_dir, row.id) == b'{"doomed":true}'
    assert "retries exhausted" in row.reason
    assert len(app.events) == 3


async def test_declined_binding_is_not_delivered(
    start_sidecar: StartSidecar, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "edge_runtime.bindings")
    port = free_port()
    s: Sidecar = await start_sidecar(LOOP, app_port=port)
    await create(s, "before the app")  # read from boot: committed before the probe
    app = BindingApp(probe=404)
    async with AppServer(app, port=port):
        await ready(s)
        r = await s.client.post("/v1.0/bindings/loop",
                                json={"operation": "create", "data": "after"})
        assert r.headers["metadata.emitted"] == "false"  # not read any more
        await asyncio.sleep(0.3)
    assert app.events == []
    assert len(app.probes) == 1
    assert "the app declined it (OPTIONS /loop answered neither 2xx nor 405)" in caplog.text
    [row] = list_deadletters(s.data_dir)
    assert dead_bytes(s.data_dir, row.id) == b'"before the app"'
    assert "the app declined input binding loop" in row.reason
    doc = (await s.client.get("/v1.0/metadata")).json()
    assert doc["extended"]["binding.loop.input"].startswith("declined by the app")
    saved = json.loads((s.data_dir / "input-bindings.json").read_text())
    assert saved["bindings"]["loop"]["accepted"] is False


async def test_declined_last_time_is_not_read_from_boot_until_accepted(
    start_sidecar: StartSidecar, tmp_path: Path
) -> None:
    data_dir = tmp_path / "shared"
    data_dir.mkdir()
    (data_dir / "input-bindings.json").write_text(
        json.dumps({"format": 1, "bindings": {"loop": {"route": "loop", "accepted": False}}})
    )
    port = free_port()
    s: Sidecar = await start_sidecar(LOOP, app_port=port, data_dir=data_dir)
    r = await s.client.post("/v1.0/bindings/loop", json={"operation": "create", "data": 1})
    assert r.headers["metadata.emitted"] == "false"
    app = BindingApp(probe=405)  # 405 accepts, as daprd does
    async with AppServer(app, port=port):
        await ready(s)
        await create(s, 2)
        await app.wait(1)
    assert [e.body for e in app.events] == [b"2"]


async def test_direction_input_skips_the_probe(start_sidecar: StartSidecar) -> None:
    app = BindingApp(probe=404)
    components = LOOP + "  metadata:\n  - {name: direction, value: 'input, output'}\n"
    async with AppServer(app) as server:
        s: Sidecar = await start_sidecar(components, app_port=server.port)
        await ready(s)
        await create(s, "x")
        await app.wait(1)
    assert app.probes == []


ROUTED = """
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: mem}
spec:
  type: pubsub.in-memory
  version: v1
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: store}
spec:
  type: state.in-memory
  version: v1
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: topub}
spec:
  type: bindings.in-memory
  version: v1
  metadata:
  - {name: targetPubsub, value: mem}
  - {name: targetTopic, value: readings/temp}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: tostate}
spec:
  type: bindings.in-memory
  version: v1
  metadata:
  - {name: targetStateStore, value: store}
  - {name: targetKey, value: latest}
"""


async def test_no_code_routing_without_an_app(start_sidecar: StartSidecar) -> None:
    s: Sidecar = await start_sidecar(ROUTED)
    catcher = Catcher()
    await s.runtime.builder.components.pubsubs["mem"].pubsub.subscribe("#", catcher)  # type: ignore[union-attr]
    await create(s, {"c": 21.5}, name="topub")
    [msg] = await catcher.next()
    assert msg.topic == "readings/temp"
    event = json.loads(msg.data)
    assert (event["data"], event["datacontenttype"], event["source"]) == (
        {"c": 21.5}, "application/json", "app")
    await create(s, {"c": 1}, name="tostate")
    await create(s, {"c": 2}, name="tostate")
    for _ in range(200):
        r = await s.client.get("/v1.0/state/store/latest")
        if r.status_code == 200 and r.json() == {"c": 2}:
            break
        await asyncio.sleep(0.02)
    assert r.json() == {"c": 2}
    doc = (await s.client.get("/v1.0/metadata")).json()
    assert doc["extended"]["binding.topub.input"] == "routed to pubsub mem topic readings/temp"


async def test_routing_to_a_missing_component_stops_the_start(
    start_sidecar: StartSidecar, caplog: pytest.LogCaptureFixture
) -> None:
    bad = LOOP + ("  metadata:\n  - {name: targetStateStore, value: nope}\n"
                  "  - {name: targetKey, value: k}\n")
    with pytest.raises(RuntimeError, match="did not start"):
        await start_sidecar(bad)
    assert "targetStateStore 'nope' is not a loaded state store" in caplog.text
