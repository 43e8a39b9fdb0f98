"""Start a sidecar process for a benchmark and find its port."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.components import SQLITE_STATESTORE

COMPONENT = SQLITE_STATESTORE


def mqtt_component(url: str, client_id: str) -> str:
    """A ``pubsub.mqtt`` component named ``mqtt`` on the broker at ``url``."""
    return (
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: mqtt}\nspec:\n"
        "  type: pubsub.mqtt\n  version: v1\n  metadata:\n"
        f'  - {{name: url, value: "{url}"}}\n  - {{name: consumerID, value: {client_id}}}\n'
    )


def start(workdir: Path, *extra: str) -> tuple[subprocess.Popen[bytes], int, float]:
    """Spawn ``edge-runtime run`` in ``workdir``; (process, http port, seconds to healthy)."""
    res = workdir / "components"
    res.mkdir(parents=True, exist_ok=True)
    (res / "state.yaml").write_text(COMPONENT)
    data = workdir / "data"
    started = time.monotonic()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge_runtime",
            "run",
            "--app-id",
            "bench",
            "--dapr-http-port",
            "0",
            "--dapr-grpc-port",
            "0",
            "--metrics-port",
            "0",
            "--resources-path",
            str(res),
            "--data-dir",
            str(data),
            "--log-level",
            "warn",
            *extra,
        ],
        stderr=subprocess.DEVNULL,
    )
    runtime_json = data / "runtime.json"
    while True:
        if proc.poll() is not None:
            raise RuntimeError("the sidecar exited")
        if runtime_json.exists():
            try:
                port = json.loads(runtime_json.read_text())["ports"]["http"]
                r = httpx.get(f"http://127.0.0.1:{port}/v1.0/healthz/outbound", timeout=1)
                if r.status_code == 204:
                    return proc, port, time.monotonic() - started
            except (httpx.HTTPError, ValueError, KeyError):
                pass
        time.sleep(0.005)


def rss_kib(pid: int) -> int:
    """Resident set size of a process in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0
