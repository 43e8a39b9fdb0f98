"""Input-binding events survive a kill -9: the sidecar runs as a separate process, the app is
down while events are committed, the sidecar is killed, the app comes up, the sidecar starts
again, and every event whose ``create`` got its 200 reaches the app."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import httpx

from tests.api.test_bindings_input import BindingApp, free_port
from tests.appchannel.appserver import AppServer
from tests.support.sidecar import SidecarProcess

LOOP = textwrap.dedent("""
    apiVersion: dapr.io/v1alpha1
    kind: Component
    metadata: {name: loop}
    spec:
      type: bindings.in-memory
      version: v1
""")


async def test_committed_events_survive_kill_9(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there until the app starts below
    side = SidecarProcess(tmp_path, "side", LOOP, app_port=port)
    await side.start()
    committed: list[int] = []
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{side.port}", timeout=10) as c:
            for i in range(30):
                r = await c.post("/v1.0/bindings/loop",
                                 json={"operation": "create", "data": {"i": i}})
                if r.status_code == 200 and r.headers["metadata.emitted"] == "true":
                    committed.append(i)
        assert len(committed) == 30
        await side.kill()
        app = BindingApp()
        async with AppServer(app, port=port):
            await side.start()
            for _ in range(600):
                seen = {int(e.body.split(b":")[1].rstrip(b"}")) for e in app.events}
                if set(committed) <= seen:
                    break
                await asyncio.sleep(0.05)
            assert set(committed) <= seen, sorted(set(committed) - seen)
            assert all(e.path == "/loop" for e in app.events)
    finally:
        await side.stop()
