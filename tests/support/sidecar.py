"""A sidecar as a separate process for end-to-end tests: ``edge-runtime run`` with port 0
everywhere, its resources and data dir under ``root/name``, stderr in ``sidecar.log`` there,
ports read from ``runtime.json`` once the outbound health check answers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import textwrap
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from tests.support.slowdown import limit


class ManagedProcess:
    """A test's child process (``proc``), ended with :meth:`kill` or :meth:`stop`."""

    proc: asyncio.subprocess.Process | None = None

    async def kill(self) -> None:
        """SIGKILL: no shutdown work at all."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after 20 s."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def stopped_at_the_end() -> AsyncIterator[list[ManagedProcess]]:
    """For a ``procs`` fixture: what the test appends is stopped afterwards, newest first."""
    started: list[ManagedProcess] = []
    yield started
    for proc in reversed(started):
        await proc.stop()


class SidecarProcess(ManagedProcess):
    """One ``edge-runtime run`` process; ``start`` again after ``kill``/``stop`` restarts it on
    the same data dir (new ports)."""

    def __init__(
        self, root: Path, name: str, components: str = "", app_port: int | None = None,
        extra: Sequence[str] = (), *, app_id: str = "app",
        env: Mapping[str, str] | None = None, log_level: str = "info",
        prefix: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.prefix = list(prefix)  # e.g. ["ip", "netns", "exec", ns]: run it there
        self.app_id = app_id
        self.root = root / name
        self.res = self.root / "components"
        self.res.mkdir(parents=True, exist_ok=True)
        (self.res / "c.yaml").write_text(textwrap.dedent(components))
        self.data = self.root / "data"
        self.app_port = app_port
        self.extra = list(extra)  # more `run` flags, e.g. --app-protocol grpc
        self.env = dict(env or {})
        self.log_level = log_level
        self.log = self.root / "sidecar.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.ports: dict[str, int] = {}

    @property
    def port(self) -> int:
        """The HTTP API port."""
        return self.ports["http"]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['http']}"

    @property
    def internal(self) -> str:
        return f"127.0.0.1:{self.ports['internal']}"

    async def start(self, limit_s: float = 30) -> SidecarProcess:
        args = [
            *self.prefix, sys.executable, "-m", "edge_runtime", "run", "--app-id", self.app_id,
            "--dapr-http-port", "0", "--dapr-grpc-port", "0", "--metrics-port", "0",
            "--resources-path", str(self.res), "--data-dir", str(self.data),
            "--log-level", self.log_level,
        ]
        if self.app_port:
            args += ["--app-port", str(self.app_port)]
        args += self.extra
        with contextlib.suppress(FileNotFoundError):
            (self.data / "runtime.json").unlink()
        env = {**os.environ, **self.env}
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(*args, stderr=log, env=env)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit(limit_s)
        while loop.time() < deadline:
            if self.proc.returncode is not None:
                raise AssertionError(
                    f"sidecar {self.name} exited {self.proc.returncode}:\n"
                    + self.log.read_text()[-3000:]
                )
            try:
                self.ports = json.loads((self.data / "runtime.json").read_text())["ports"]
            except (OSError, ValueError, KeyError):
                await asyncio.sleep(0.05)
                continue
            with contextlib.suppress(httpx.HTTPError):
                async with self.client() as client:
                    r = await client.get("/v1.0/healthz/outbound")
                if r.status_code == 204:
                    return self
            await asyncio.sleep(0.05)
        raise AssertionError(f"sidecar {self.name} did not start:\n{self.log.read_text()}")

    def client(self, port: str = "http", **kwargs: Any) -> httpx.AsyncClient:
        """A client for one of the sidecar's ports (``http`` or ``metrics``), relative URLs."""
        return httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.ports[port]}", **kwargs)

    async def metric(self, name: str, labels: str = "") -> float:
        """A Prometheus sample from the sidecar's metrics port (0 when absent)."""
        async with self.client("metrics") as client:
            text = (await client.get("/metrics")).text
        want = f"{name}{{{labels}}}" if labels else name
        for line in text.splitlines():
            if line.startswith(want + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0
