"""A private network for mDNS tests: two network namespaces joined by a veth pair.

Nothing here touches the machine's own network: each namespace holds only its loopback and
one end of the veth pair (``eth0``, ``10.99.0.1/24`` in ``a`` and ``10.99.0.2/24`` in
``b``, multicast on), so the sidecars' mDNS packets go from one namespace to the other and
nowhere else. Making namespaces needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and
iproute2's ``ip``; :func:`unavailable` says why they cannot be made.

The test process stays in the machine's namespace and reaches a sidecar's loopback ports
through a ``socat`` bridge from a Unix socket (a file, so visible from every namespace) to
``127.0.0.1:<port>`` inside the sidecar's namespace: :class:`NsSidecar`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.invocation.procs import Sidecar

ADDRESSES = {"a": "10.99.0.1", "b": "10.99.0.2"}
_count = itertools.count()


class NetnsError(Exception):
    """The namespaces could not be made (the message is ``ip``'s)."""


def unavailable() -> str:
    """Why namespaces cannot be used here, or ``""`` when they can (perhaps)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "socat"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"{tool} is not installed (make system-deps)"
    return ""


def _ip(*args: str) -> None:
    ip = shutil.which("ip") or "/usr/sbin/ip"
    done = subprocess.run([ip, *args], capture_output=True, timeout=30, check=False)
    if done.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {done.stderr.decode().strip()}")


class NetnsPair:
    """Namespaces ``<tag>a`` and ``<tag>b`` joined by a veth pair; :meth:`create`,
    :meth:`delete`. The tag holds our pid, so parallel test runs never share one."""

    def __init__(self) -> None:
        tag = f"edge-mdns-{os.getpid()}-{next(_count)}-"
        self.names = {side: tag + side for side in ADDRESSES}

    def create(self) -> None:
        """Make both namespaces and the link; raises :class:`NetnsError` (after cleaning up)."""
        try:
            for name in self.names.values():
                _ip("netns", "add", name)
            a, b = self.names["a"], self.names["b"]
            _ip("link", "add", "eth0", "netns", a, "type", "veth", "peer", "name", "eth0",
                "netns", b)
            for side, name in self.names.items():
                _ip("-n", name, "addr", "add", f"{ADDRESSES[side]}/24", "dev", "eth0")
                _ip("-n", name, "link", "set", "lo", "up")
                _ip("-n", name, "link", "set", "eth0", "up", "multicast", "on")
        except NetnsError:
            self.delete()
            raise

    def delete(self) -> None:
        """Remove both namespaces (the veth pair goes with them); idempotent."""
        for name in self.names.values():
            with contextlib.suppress(NetnsError):
                _ip("netns", "del", name)

    def prefix(self, side: str) -> tuple[str, ...]:
        """The argv prefix that runs a command in namespace ``side``."""
        return (shutil.which("ip") or "/usr/sbin/ip", "netns", "exec", self.names[side])


class NsSidecar(Sidecar):
    """A :class:`Sidecar` inside one namespace of ``pair``; its ports are reached over
    socat bridges (one per port, made on first use)."""

    def __init__(self, root: Path, app_id: str, pair: NetnsPair, side: str, **kw: Any) -> None:
        super().__init__(root, app_id, prefix=pair.prefix(side), **kw)
        self.side = side
        self._socks = Path(tempfile.mkdtemp(prefix="edge-mdns-"))  # short: a socket path
        self._bridges: dict[int, tuple[subprocess.Popen[bytes], Path]] = {}

    def _bridge(self, port: int) -> Path:
        if port in self._bridges:
            return self._bridges[port][1]
        path = self._socks / f"{port}.sock"
        socat = shutil.which("socat") or "/usr/sbin/socat"
        proc = subprocess.Popen(
            [*self.prefix, socat, f"UNIX-LISTEN:{path},fork", f"TCP:127.0.0.1:{port}"],
            stderr=subprocess.DEVNULL,
        )
        self._bridges[port] = (proc, path)
        deadline = time.monotonic() + 10
        while not path.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"socat bridge to port {port} did not start")
            time.sleep(0.01)
        return path

    def client(self, port: str = "http", **kwargs: Any) -> httpx.AsyncClient:
        transport = httpx.AsyncHTTPTransport(uds=str(self._bridge(self.ports[port])))
        return httpx.AsyncClient(base_url="http://sidecar", transport=transport, **kwargs)

    def close_bridges(self) -> None:
        for proc, _path in self._bridges.values():
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
        self._bridges.clear()
        shutil.rmtree(self._socks, ignore_errors=True)
