"""Sidecars as separate processes for invocation tests and the bench: ``edge-runtime run``
with port 0 everywhere, ports read from ``runtime.json``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import textwrap
from pathlib import Path

import httpx

STATE = """
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: statestore}
spec:
  type: state.in-memory
  version: v1
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def name_table(path: Path, apps: dict[str, str]) -> Path:
    """A ``--config`` file with a static name table."""
    entries = "".join(f'        {k}: "{v}"\n' for k, v in apps.items())
    path.write_text(textwrap.dedent("""\
        apiVersion: dapr.io/v1alpha1
        kind: Configuration
        metadata: {name: edge}
        spec:
          nameResolution:
            component: static
            configuration:
              apps:
        """) + entries)
    return path


class Sidecar:
    """One ``edge-runtime run`` process with its own resources and data dir."""

    def __init__(
        self, root: Path, app_id: str, *, resources: str = STATE, args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.app_id = app_id
        self.root = root / app_id
        self.res = self.root / "resources"
        self.res.mkdir(parents=True, exist_ok=True)
        (self.res / "r.yaml").write_text(textwrap.dedent(resources))
        self.data = self.root / "data"
        self.args = args
        self.env = env or {}
        self.proc: asyncio.subprocess.Process | None = None
        self.ports: dict[str, int] = {}
        self.log = self.root / "sidecar.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['http']}"

    @property
    def internal(self) -> str:
        return f"127.0.0.1:{self.ports['internal']}"

    async def start(self, limit_s: float = 30) -> Sidecar:
        args = [
            sys.executable, "-m", "edge_runtime", "run", "--app-id", self.app_id,
            "--dapr-http-port", "0", "--dapr-grpc-port", "0", "--metrics-port", "0",
            "--resources-path", str(self.res), "--data-dir", str(self.data),
            "--log-level", "info", *self.args,
        ]
        with contextlib.suppress(FileNotFoundError):
            (self.data / "runtime.json").unlink()
        env = {**os.environ, **self.env}
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(*args, stderr=log, env=env)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit_s
        while loop.time() < deadline:
            if self.proc.returncode is not None:
                raise AssertionError(
                    f"sidecar {self.app_id} exited {self.proc.returncode}:\n"
                    + self.log.read_text()[-3000:]
                )
            try:
                self.ports = json.loads((self.data / "runtime.json").read_text())["ports"]
            except (OSError, ValueError, KeyError):
                await asyncio.sleep(0.05)
                continue
            async with httpx.AsyncClient() as client:
                r = await client.get(f"{self.url}/v1.0/healthz/outbound")
            if r.status_code == 204:
                return self
        raise AssertionError(f"sidecar {self.app_id} did not start:\n{self.log.read_text()}")

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()

    async def metric(self, name: str, labels: str = "") -> float:
        """A Prometheus sample from the sidecar's metrics port (0 when absent)."""
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"http://127.0.0.1:{self.ports['metrics']}/metrics")).text
        want = f"{name}{{{labels}}}" if labels else name
        for line in text.splitlines():
            if line.startswith(want + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0
