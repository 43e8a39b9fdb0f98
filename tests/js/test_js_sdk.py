"""Cross-check with the official Dapr JavaScript SDK (``@dapr/dapr``, pinned in package.json
with its package-lock.json): ``sdk_check.js`` drives a sidecar process over HTTP and over
gRPC, and this test checks what it saw, then reads the two events it published through a
streaming subscription (Python SDK).

The packages are installed with ``npm ci`` into ``tests/js/node_modules`` (git-ignored) once
per lock file. Skipped, saying why, when node or npm is missing or the install fails (no
network).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from dapr.clients import DaprClient

from tests.support.components import SQLITE_STATESTORE, component
from tests.support.sidecar import SidecarProcess

HERE = Path(__file__).parent
MARKER = HERE / "node_modules" / ".installed-lock-sha256"

COMPONENTS = "\n" + SQLITE_STATESTORE + "---\n" + component("mem", "pubsub.in-memory") + """---
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata: {name: js-events}
spec:
  pubsubname: mem
  topic: js/+
  routes: {default: /js}
"""


def _install() -> None:
    """``npm ci`` unless node_modules matches the lock file; skips when that is impossible."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed for the JS SDK cross-check (not on PATH)")
    lock = hashlib.sha256((HERE / "package-lock.json").read_bytes()).hexdigest()
    if MARKER.exists() and MARKER.read_text().strip() == lock:
        return
    try:
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=HERE, capture_output=True, text=True, timeout=600, check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.skip("npm ci timed out (is the npm registry reachable?)")
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        pytest.skip("npm ci failed (offline?): " + " | ".join(tail))
    MARKER.write_text(lock + "\n")


def _node_check(http_port: int, grpc_port: int) -> dict[str, dict[str, Any]]:
    node = shutil.which("node")
    assert node is not None
    done = subprocess.run(
        [node, "sdk_check.js", str(http_port), str(grpc_port)],
        cwd=HERE, capture_output=True, text=True, timeout=180, check=False,
    )
    assert done.returncode == 0, done.stderr
    reports = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return {r["protocol"]: r for r in reports}


def _receive(grpc_port: int, n: int) -> list[dict[str, Any]]:
    """The first ``n`` events of the declared ``js/+`` subscription, over a stream."""
    with DaprClient(address=f"127.0.0.1:{grpc_port}") as client:
        sub = client.subscribe("mem", "js/+")
        try:
            got = []
            for _ in range(n):
                msg = sub.next_message()
                got.append({"topic": msg.topic(), "data": msg.data(), "source": msg.source()})
                sub.respond_success(msg)
            return got
        finally:
            sub.close()


async def test_js_sdk_over_http_and_grpc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _install()
    sidecar = SidecarProcess(tmp_path, "js", COMPONENTS)
    await sidecar.start()
    try:
        ports = json.loads((sidecar.data / "runtime.json").read_text())["ports"]
        reports = await asyncio.to_thread(_node_check, ports["http"], ports["grpc"])
        assert set(reports) == {"http", "grpc"}
        for name, r in reports.items():
            assert "failed" not in r, (name, r)
            p = name
            assert r["get"] == {"n": 1}
            assert r["bulk"] == [
                {"key": f"{p}-k1", "data": {"n": 1}, "hasEtag": True},
                {"key": f"{p}-k2", "data": "two", "hasEtag": True},
                {"key": f"{p}-missing", "data": None, "hasEtag": False},
            ]
            assert r["saveWithEtag"] == {"returned": {}}
            assert r["afterEtagSaves"] == {"n": 2}  # the stale etag changed nothing
            assert r["afterTransaction"] == [
                {"key": f"{p}-k2", "data": None, "hasEtag": False},
                {"key": f"{p}-t1", "data": "tx", "hasEtag": True},
            ]
            assert r["publish"] == {"returned": {}}
            assert r["metadata"] == {
                "id": "app", "components": ["mem:pubsub.in-memory", "statestore:state.sqlite"],
            }
        # The HTTP client returns some errors and throws others; the codes are Dapr's.
        stale = reports["http"]["saveWithStaleEtag"]["returnedError"]
        assert (stale["status"], stale["body"]["errorCode"]) == (409, "ERR_STATE_SAVE")
        unknown = reports["http"]["unknownStore"]["thrown"]
        assert (unknown["status"], unknown["body"]["errorCode"]) == (
            400, "ERR_STATE_STORE_NOT_FOUND")
        # Over gRPC: the status code (ABORTED 10, INVALID_ARGUMENT 3) and ErrorInfo reason.
        stale = reports["grpc"]["saveWithStaleEtag"]["thrown"]
        assert (stale["code"], stale["reason"]) == (10, "ERR_STATE_SAVE")
        unknown = reports["grpc"]["unknownStore"]["thrown"]
        assert (unknown["code"], unknown["reason"]) == (3, "DAPR_STATE_NOT_FOUND")
        # Both publishes went through the outbox and the broker into the inbox.
        monkeypatch.setenv("DAPR_HTTP_PORT", str(ports["http"]))
        events = await asyncio.wait_for(asyncio.to_thread(_receive, ports["grpc"], 2), 60)
        assert sorted((e["topic"], e["data"]["from"]) for e in events) == [
            ("js/grpc", "grpc"), ("js/http", "http")]
        assert {e["source"] for e in events} == {"app"}
    finally:
        await sidecar.stop()
