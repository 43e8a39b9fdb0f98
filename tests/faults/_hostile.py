"""Helpers for the hostile-input tests: one real sidecar process driven from synchronous
test code (hypothesis tests are synchronous), its RSS, and its log.

``edge-runtime run`` is started as ``sys.executable -m edge_runtime``, so it imports the
``edge_runtime`` that PYTHONPATH points at (the worktree's), with port 0 everywhere; the ports
are read from ``runtime.json``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

from tests.support.components import SQLITE_STATESTORE

TOKEN = "hostile-api-token-7f3e9c"  # a test token, grepped for in the logs

COMPONENTS = "\n" + SQLITE_STATESTORE + """---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: memstore}
spec:
  type: state.in-memory
  version: v1
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: pubsub}
spec:
  type: pubsub.in-memory
  version: v1
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: loop}
spec:
  type: bindings.in-memory
  version: v1
  metadata:
  - {name: maxItems, value: "50"}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: envsecrets}
spec:
  type: secretstores.local.env
  version: v1
  metadata:
  - {name: prefix, value: HOSTILE_}
"""


class Sidecar:
    """One ``edge-runtime run`` process under ``root``; ``stop()`` ends it (SIGTERM)."""

    def __init__(
        self, root: Path, *, components: str = COMPONENTS, extra: Sequence[str] = (),
        env: Mapping[str, str] | None = None, max_body: str = "64Ki", log_level: str = "info",
        app_id: str = "hostile",
    ) -> None:
        self.root = root
        self.app_id = app_id
        res = root / "resources"
        res.mkdir(parents=True, exist_ok=True)
        (res / "c.yaml").write_text(textwrap.dedent(components))
        self.data = root / "data"
        self.log = root / "sidecar.log"
        self.args = [
            sys.executable, "-m", "edge_runtime", "run", "--app-id", app_id,
            "--dapr-http-port", "0", "--dapr-grpc-port", "0", "--metrics-port", "0",
            "--resources-path", str(res), "--data-dir", str(self.data),
            "--max-body-size", max_body, "--log-level", log_level, *extra,
        ]
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.ports: dict[str, int] = {}
        self.runtime: dict[str, object] = {}

    def start(self, limit_s: float = 30) -> Sidecar:
        """Start and wait until ``runtime.json`` is written (the API ports are open)."""
        (self.data / "runtime.json").unlink(missing_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.args, stderr=log, env=self.env)
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the sidecar exited {self.proc.returncode}:\n"
                                     + self.log.read_text()[-3000:])
            try:
                self.runtime = json.loads((self.data / "runtime.json").read_text())
            except (OSError, ValueError):
                time.sleep(0.05)
                continue
            ports = self.runtime["ports"]
            assert isinstance(ports, dict)
            self.ports = ports
            return self
        raise AssertionError("the sidecar did not start:\n" + self.log.read_text()[-3000:])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['http']}"

    def client(self, **kwargs: object) -> httpx.Client:
        """A client for the HTTP API with the right token."""
        headers = {"dapr-api-token": TOKEN}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)  # type: ignore[arg-type]

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_kb(self) -> int:
        """The process's resident set size (``VmRSS``) in KiB."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, limit_s: float = 20) -> int | None:
        """SIGTERM, then SIGKILL after ``limit_s``; the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(limit_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def problems_in_log(text: str) -> list[str]:
    """Log lines that betray an unhandled error: tracebacks and the generic-500 line."""
    bad = ("Traceback", "unhandled error", "Exception in callback", "Task exception")
    return [line for line in text.splitlines() if any(b in line for b in bad)]


def env_with(**values: str) -> dict[str, str]:
    """``os.environ`` plus ``values``."""
    return {**os.environ, **values}
