"""GPIO edges survive a kill -9: the sidecar runs as a separate process with ``chip: sim``,
the test drives edges through the chip's socket in the data dir while the app is down, the
sidecar is killed once the inbox holds them, the app comes up, the sidecar starts again, and
every edge reaches the app, in order."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import textwrap
from pathlib import Path

from edge_runtime.bindings.gpio.simclient import SimClient
from tests.api.test_bindings_input import BindingApp, free_port
from tests.appchannel.appserver import AppServer
from tests.support.sidecar import SidecarProcess

GPIO = textwrap.dedent("""
    apiVersion: dapr.io/v1alpha1
    kind: Component
    metadata: {name: button}
    spec:
      type: bindings.gpio
      version: v1
      metadata:
      - {name: chip, value: sim}
      - {name: lines, value: "BUTTON=17"}
      - {name: direction, value: input}
""")


def stored(data_dir: Path) -> int:
    """Events of the binding committed to the inbox (read as another process would)."""
    with sqlite3.connect(f"file:{data_dir / 'inbox.db'}?mode=ro", uri=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM messages WHERE sub_key = 'binding:button'").fetchone()
    return int(row[0])


async def test_edges_survive_kill_9_and_reach_the_app(tmp_path: Path) -> None:
    port = free_port()
    side = SidecarProcess(tmp_path, "side", GPIO, app_port=port)
    await side.start()
    try:
        async with SimClient(side.data / "gpio-sim.sock") as sim:
            for _ in range(10):
                await sim.drive(17, 1, 0)
        for _ in range(400):
            if stored(side.data) >= 20:
                break
            await asyncio.sleep(0.05)
        assert stored(side.data) == 20
        await side.kill()
        app = BindingApp()
        async with AppServer(app, port=port):
            await side.start()
            await app.wait(20, limit_s=30)
            await asyncio.sleep(0.2)
        got = [json.loads(e.body) for e in app.events]
        assert [(g["seq"], g["edge"]) for g in got] == [
            (i + 1, "rising" if i % 2 == 0 else "falling") for i in range(20)]
        assert {e.path for e in app.events} == {"/button"}
        assert not app.probes  # direction: input skips the OPTIONS probe
    finally:
        await side.stop()
