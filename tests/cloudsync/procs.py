"""The cloud runtime as a process (``edge-runtime cloud serve``, ports 0, read from its
``--ports-file``), and sidecar resources with a ``cloudsync.grpc`` component."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.support.components import SQLITE_STATESTORE
from tests.support.sidecar import ManagedProcess

API_TOKEN = "cloud-api-token"
DEVICE_TOKEN = "device-token"


class Cloud(ManagedProcess):
    """One ``edge-runtime cloud serve`` process with its SQLite store under ``root`` (or the
    store ``store``, a URL, e.g. a PostgreSQL DSN several servers share)."""

    def __init__(self, root: Path, *, args: tuple[str, ...] = (),
                 device_token: str | None = DEVICE_TOKEN, store: str | None = None) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.db = root / "cloud.db"
        self.store = store or f"sqlite://{self.db}"
        self.args = args
        self.device_token = device_token
        self.proc: asyncio.subprocess.Process | None = None
        self.ports: dict[str, int] = {}
        self.log = root / "cloud.log"
        self.grpc_port = 0  # kept across restarts so devices find it again

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.ports['grpc']}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['http']}"

    async def start(self, limit_s: float = 30) -> Cloud:
        ports_file = self.root / "ports.json"
        with contextlib.suppress(FileNotFoundError):
            ports_file.unlink()
        args = [
            sys.executable, "-m", "edge_runtime", "cloud", "serve", "--host", "127.0.0.1",
            "--grpc-port", str(self.grpc_port), "--http-port", "0",
            "--store", self.store, "--ports-file", str(ports_file), *self.args,
        ]
        env = {**os.environ, "EDGE_CLOUD_TOKEN": API_TOKEN}
        if self.device_token:
            env["EDGE_CLOUD_DEVICE_TOKEN"] = self.device_token
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(*args, stderr=log, env=env)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit_s
        while loop.time() < deadline:
            if self.proc.returncode is not None:
                raise AssertionError(f"the cloud exited {self.proc.returncode}:\n"
                                     + self.log.read_text()[-3000:])
            try:
                self.ports = json.loads(ports_file.read_text())
            except (OSError, ValueError):
                await asyncio.sleep(0.05)
                continue
            self.grpc_port = self.ports["grpc"]
            return self
        raise AssertionError(f"the cloud did not start:\n{self.log.read_text()}")

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        async with httpx.AsyncClient(timeout=10) as c:
            return await c.get(self.url + path, headers={"authorization": f"Bearer {API_TOKEN}"},
                               **kw)

    async def put(self, path: str, body: Any) -> httpx.Response:
        async with httpx.AsyncClient(timeout=10) as c:
            return await c.put(self.url + path, json=body,
                               headers={"authorization": f"Bearer {API_TOKEN}"})

    async def device(self, device_id: str) -> dict[str, Any] | None:
        r = await self.get("/v1/devices")
        assert r.status_code == 200, r.text
        return next((d for d in r.json() if d["id"] == device_id), None)

    async def all_events(self, device_id: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        after = 0
        while True:
            r = await self.get(f"/v1/devices/{device_id}/events", params={"after": after})
            assert r.status_code == 200, r.text
            body = r.json()
            if not body["events"]:
                return out
            out += body["events"]
            after = body["next"]


def device_resources(endpoint: str, device_id: str, *, token: str = DEVICE_TOKEN,
                     extra: str = "", tls: dict[str, Path] | None = None) -> str:
    """A SQLite store ``statestore``, an in-memory pubsub and a ``cloudsync.grpc`` component
    ``cloud`` syncing the store and ``pubsub/sensors/#``."""
    auth = (f"  - {{name: token, value: {token}}}\n" if tls is None else
            f"  - {{name: caCert, value: {tls['ca']}}}\n"
            f"  - {{name: clientCert, value: {tls['cert']}}}\n"
            f"  - {{name: clientKey, value: {tls['key']}}}\n"
            "  - {name: serverName, value: localhost}\n")
    return "\n" + SQLITE_STATESTORE + f"""---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: pubsub}}
spec:
  type: pubsub.in-memory
  version: v1
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: cloud}}
spec:
  type: cloudsync.grpc
  version: v1
  metadata:
  - {{name: endpoint, value: "{endpoint}"}}
  - {{name: deviceID, value: {device_id}}}
{auth}  - {{name: stateStores, value: statestore}}
  - {{name: topics, value: "pubsub/sensors/#"}}
  - {{name: retryMinDelay, value: 100ms}}
  - {{name: retryMaxDelay, value: 500ms}}
  - {{name: batchSize, value: "50"}}
  - {{name: keepalive, value: 2s}}
{extra}"""


async def eventually(check: Any, limit_s: float = 30.0, every_s: float = 0.1) -> Any:
    """Await ``check()`` until it returns something truthy; that value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    last: Any = None
    while loop.time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(every_s)
    raise AssertionError(f"not reached in {limit_s}s; last: {last!r}")
