"""A sidecar subprocess under a stand-in service manager: a real ``NOTIFY_SOCKET`` and a stderr
pipe the test reads (or stops reading) at will."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.support.slowdown import limit

BINDING = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: out}
spec:
  type: bindings.in-memory
  version: v1
  metadata:
    - {name: direction, value: output}
"""


class NotifySocket:
    """The service manager's side of sd_notify: a bound AF_UNIX datagram socket."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))

    def receive(self, timeout: float) -> str | None:
        """The next datagram, or ``None`` when none came within ``timeout`` seconds."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(4096).decode()
        except TimeoutError:
            return None

    def wait_for(self, line: str, timeout: float = 30) -> list[str]:
        """Every datagram up to and including the first holding ``line``; fails after
        ``timeout``."""
        seen: list[str] = []
        timeout = limit(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.receive(max(0.01, deadline - time.monotonic()))
            if msg is not None:
                seen.append(msg)
                if line in msg.split("\n"):
                    return seen
        raise AssertionError(f"no {line!r} within {timeout} s; got {seen!r}")

    def collect(self, seconds: float) -> list[str]:
        """Every datagram that arrives within the next ``seconds``."""
        seen: list[str] = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            msg = self.receive(left)
            if msg is not None:
                seen.append(msg)
        return seen

    def close(self) -> None:
        self.sock.close()


class StderrPipe:
    """Reads the child's stderr on a thread while ``flowing``; paused, the pipe fills up."""

    def __init__(self, fd: int, capacity: int | None = None) -> None:
        self.fd = fd
        if capacity is not None:
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, capacity)
        self.flowing = threading.Event()
        self.flowing.set()
        self.data = bytearray()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            self.flowing.wait()
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return
            with self._lock:
                self.data += chunk

    def pending(self) -> int:
        """Bytes written by the child and not read yet."""
        buf = bytearray(4)
        fcntl.ioctl(self.fd, termios.FIONREAD, buf)
        return int.from_bytes(buf, sys.byteorder)

    def text(self) -> str:
        with self._lock:
            return self.data.decode(errors="replace")

    def join(self, timeout: float) -> None:
        self.flowing.set()
        self._thread.join(timeout)


@contextlib.contextmanager
def sidecar(
    tmp_path: Path,
    env: Mapping[str, str],
    *extra: str,
    pipe_capacity: int | None = None,
    launcher: str | None = None,
) -> Iterator[tuple[subprocess.Popen[bytes], StderrPipe]]:
    """``edge-runtime run`` (HTTP only, an output binding ``out``) with ``env`` added;
    ``launcher``, Python source, replaces ``-m edge_runtime`` (it gets the same arguments)."""
    res = tmp_path / "components"
    res.mkdir(exist_ok=True)
    (res / "out.yaml").write_text(BINDING)
    args = [
        sys.executable,
        *(["-c", launcher] if launcher else ["-m", "edge_runtime"]),
        "run", "--app-id", "app",
        "--dapr-http-port", "0", "--metrics-port", "0", "--disable-grpc-api",
        "--resources-path", str(res), "--data-dir", str(tmp_path / "data"), *extra,
    ]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, env={**os.environ, **env})
    assert proc.stderr is not None
    pipe = StderrPipe(proc.stderr.fileno(), pipe_capacity)
    try:
        yield proc, pipe
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
        pipe.join(10)
        proc.stderr.close()


def http_port(data_dir: Path, timeout: float = 30) -> int:
    """The HTTP port from ``runtime.json`` (written before READY=1)."""
    import json

    deadline = time.monotonic() + timeout
    path = data_dir / "runtime.json"
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            port: int = json.loads(path.read_text())["ports"]["http"]
            return port
        time.sleep(0.05)
    pytest.fail("no runtime.json")
