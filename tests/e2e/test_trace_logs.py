"""Trace ids in the sidecar's logs: an event published with a W3C ``traceparent`` whose delivery
fails (the app answers 500 until the retries are spent) is logged with that trace id, as
``trace_id`` in ``--log-as-json`` lines and as ``TRACE_ID`` in journald entries; an event
published without one is logged without."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from tests.appchannel.appserver import AppServer, Reply, Request
from tests.deploy.journal import JournalSocket
from tests.support.sidecar import SidecarProcess

COMPONENTS = """
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: mem}
spec:
  type: pubsub.in-memory
  version: v1
---
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: fast}
spec:
  policies:
    retries:
      once: {policy: constant, duration: 10ms, maxRetries: 1}
  targets:
    components:
      mem: {inbound: {retry: once}}
"""
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{SPAN_ID}-01"
PARKED = "parked as dead letter"


def app(req: Request) -> Reply:
    if req.path == "/dapr/subscribe":
        return Reply(200, json.dumps(
            [{"pubsubname": "mem", "topic": "orders", "route": "/orders"}]).encode())
    return Reply(500, b"broken")


async def publish_both(sidecar: SidecarProcess) -> None:
    """An event with the trace context, then one without (delivered in that order)."""
    async with sidecar.client() as client:
        for _ in range(400):
            if (await client.get("/v1.0/healthz")).status_code == 204:
                break
            await asyncio.sleep(0.05)
        r = await client.post("/v1.0/publish/mem/orders", json={"n": 1},
                              headers={"traceparent": TRACEPARENT})
        assert r.status_code == 204
        r = await client.post("/v1.0/publish/mem/orders", json={"n": 2})
        assert r.status_code == 204


async def test_json_lines_carry_the_trace_id(tmp_path: Path) -> None:
    async with AppServer(app) as server:
        sidecar = SidecarProcess(tmp_path, "s", COMPONENTS, server.port,
                                 extra=["--log-as-json", "--disable-grpc-api"])
        await sidecar.start()
        try:
            await publish_both(sidecar)
            parked: list[dict[str, str]] = []
            for _ in range(600):
                entries = [json.loads(line) for line in sidecar.log.read_text().splitlines()
                           if line.startswith("{")]
                parked = [e for e in entries if PARKED in e["msg"]]
                if len(parked) == 2:
                    break
                await asyncio.sleep(0.05)
        finally:
            await sidecar.stop()
    assert len(parked) == 2, sidecar.log.read_text()[-3000:]
    traced, plain = parked
    assert traced["level"] == "warn"
    assert traced["trace_id"] == TRACE_ID
    assert traced["span_id"] == SPAN_ID
    assert "trace_id" not in plain
    # The retry before it (INFO) carries it too; startup lines do not.
    retries = [e for e in entries if "attempt 2" in e["msg"]]
    assert [e.get("trace_id") for e in retries] == [TRACE_ID, None]
    assert all("trace_id" not in e for e in entries if "ready in" in e["msg"])


async def test_journald_entries_carry_the_trace_id(tmp_path: Path) -> None:
    journal = JournalSocket(tmp_path / "journal.sock")
    root = tmp_path / "s"
    root.mkdir()
    log = root / "sidecar.log"
    log.touch()  # the sidecar's stderr: JOURNAL_STREAM names this file
    st = os.stat(log)
    env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}",
           "EDGE_RUNTIME_JOURNAL_SOCKET": str(journal.path)}
    try:
        async with AppServer(app) as server:
            sidecar = SidecarProcess(tmp_path, "s", COMPONENTS, server.port, env=env,
                                     extra=["--disable-grpc-api"])
            await sidecar.start()
            try:
                await publish_both(sidecar)
                # The second event (no trace) is parked after the first.
                await asyncio.to_thread(
                    journal.wait_for,
                    lambda e: PARKED in e["MESSAGE"] and "TRACE_ID" not in e.fields,
                )
            finally:
                await sidecar.stop()
        entries = journal.snapshot()
    finally:
        journal.close()
    traced, plain = [e for e in entries if PARKED in e["MESSAGE"]]
    assert traced["PRIORITY"] == "4"
    assert traced["TRACE_ID"] == TRACE_ID
    assert traced["SPAN_ID"] == SPAN_ID
    assert traced["EDGE_APP_ID"] == "app"
    assert traced["LOGGER"] == "edge_runtime.inbox.deliver"
    assert "TRACE_ID" not in plain.fields
    assert log.read_text() == ""  # everything went to the journal
