"""The two footprint profiles of issue 8 and the helpers that start and measure them.

- ``lean``: ``edge-runtime run --disable-grpc-api`` with a ``state.sqlite`` store and an MQTT
  pub/sub (grpc is never imported);
- ``full``: everything on: the gRPC API, the same store and pub/sub, a ``bindings.gpio`` input
  on the simulated chip routed to the pub/sub, and a ``cloudsync.grpc`` component connected to
  a local ``edge-runtime cloud serve`` (mDNS stays an opt-in extra, so it is off).

Every sidecar runs with cached bytecode, as an installed device does: ``PYTHONDONTWRITEBYTECODE``
is dropped and ``PYTHONPYCACHEPREFIX`` points into the bench's temporary folder, and a warm-up
start (not counted) writes the ``.pyc`` files there. Without it every start compiles the
sources (slower, and ~1 MiB more RSS from the compiler's garbage).

The C extensions' files start out of the page cache, as after a device boots
(:func:`as_after_boot`): how much of a library's code a process has resident depends on how
the file came into the cache. Mapped by the first process that runs it (a boot) cygrpc's
code is 8.1 MiB resident in a serving sidecar; read whole first (``cat``) 8.8 MiB; just
written by ``pip install`` 11.4 MiB, larger folios mapped whole. Without this the figure of a
fresh venv is ~3 MiB higher than the same venv's after a reboot or a day of other work.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from tests.support.components import SQLITE_STATESTORE

STATE = SQLITE_STATESTORE

PUBSUB = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: pubsub}
spec:
  type: pubsub.mqtt3
  version: v1
  metadata:
  - {name: url, value: "%(broker)s"}
  - {name: consumerID, value: "%(client)s"}
"""

GPIO = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: gpio}
spec:
  type: bindings.gpio
  version: v1
  metadata:
  - {name: chip, value: sim}
  - {name: lines, value: "17"}
  - {name: direction, value: input}
  - {name: targetPubsub, value: pubsub}
  - {name: targetTopic, value: gpio}
"""

CLOUD = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: cloud}
spec:
  type: cloudsync.grpc
  version: v1
  metadata:
  - {name: endpoint, value: "%(cloud)s"}
  - {name: deviceID, value: "%(client)s"}
  - {name: token, value: bench-device-token}
  - {name: stateStores, value: statestore}
  - {name: topics, value: "pubsub/sensors/#"}
"""

# The interpreter of the measured processes (``memory_bench --python``): e.g. a venv holding
# only the runtime dependencies, as a device has, instead of this one with the test extra.
PYTHON = [sys.executable]

DEVICE_TOKEN = "bench-device-token"  # noqa: S105 - a throwaway token of a local test cloud


@dataclass
class Profile:
    """One way of running the sidecar: its component files and extra flags."""

    name: str
    title: str
    components: tuple[str, ...]
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    needs_cloud: bool = False
    target_mib: float | None = None


LEAN = Profile(
    "lean", "lean (--disable-grpc-api, state.sqlite, pubsub.mqtt)", (STATE, PUBSUB),
    ("--disable-grpc-api",), target_mib=38,
)
FULL = Profile(
    "full", "everything on (gRPC API, gpio binding, cloud sync)", (STATE, PUBSUB, GPIO, CLOUD),
    needs_cloud=True, target_mib=55,
)
PROFILES = {p.name: p for p in (LEAN, FULL)}


def sidecar_env(tmp: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a measured process: bytecode cached under ``tmp`` (see the module
    docstring), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    env.update(extra or {})
    return env


def as_after_boot(python: str) -> int:
    """Drop the page cache of every shared object in ``python``'s site-packages (``fsync``,
    then ``POSIX_FADV_DONTNEED``: pages nobody maps; those in use stay), so that the first
    process to run them maps them in as it would after a boot. The number of files."""
    out = subprocess.run(
        [python, "-c",
         "import sysconfig as s; p = s.get_paths(); print(p['purelib']); print(p['platlib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    n = 0
    for root in dict.fromkeys(out):
        for path in Path(root).rglob("*.so*"):
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue
            try:
                os.fsync(fd)  # pages pip wrote and the kernel has not yet written stay cached
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                n += 1
            finally:
                os.close(fd)
    return n


def rss_pss_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of a process in KiB, from ``/proc/PID/smaps_rollup``."""
    rss = pss = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Rss:"):
            rss = int(line.split()[1])
        elif line.startswith("Pss:"):
            pss = int(line.split()[1])
    return rss, pss


def threads(pid: int) -> int:
    """The number of threads of a process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


@contextlib.contextmanager
def cloud_server(tmp: Path, env: dict[str, str]) -> Iterator[str]:
    """A local ``edge-runtime cloud serve`` (SQLite store); yields its gRPC endpoint."""
    root = tmp / "cloud"
    root.mkdir(parents=True, exist_ok=True)
    ports_file = root / "ports.json"
    proc = subprocess.Popen(
        [*PYTHON, "-m", "edge_runtime", "cloud", "serve", "--host", "127.0.0.1",
         "--grpc-port", "0", "--http-port", "0", "--store", f"sqlite://{root / 'cloud.db'}",
         "--ports-file", str(ports_file), "--log-level", "warn"],
        env={**env, "EDGE_CLOUD_TOKEN": "bench-api-token", "EDGE_CLOUD_DEVICE_TOKEN": DEVICE_TOKEN},
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the cloud server did not start")
            try:
                port = json.loads(ports_file.read_text())["grpc"]
                break
            except (OSError, ValueError, KeyError):
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(20)


def write_resources(profile: Profile, workdir: Path, values: dict[str, str]) -> Path:
    """The profile's component files under ``workdir/components``."""
    res = workdir / "components"
    res.mkdir(parents=True, exist_ok=True)
    for i, text in enumerate(profile.components):
        (res / f"c{i}.yaml").write_text(text % values if "%(" in text else text)
    return res


last_cpu: dict[int, float] = {}  # pid -> CPU seconds used until healthy (see start)


def start(
    profile: Profile, res: Path, data: Path, env: dict[str, str], app_id: str,
    python_args: Sequence[str] = (), stderr: IO[bytes] | int = subprocess.DEVNULL,
) -> tuple[subprocess.Popen[bytes], int, float]:
    """Spawn the sidecar; (process, http port, seconds from spawn to ``GET
    /v1.0/healthz/outbound`` answering 204). The CPU time it used until then is left in
    ``last_cpu[pid]``."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [*PYTHON, *python_args, "-m", "edge_runtime", "run", "--app-id", app_id,
         "--dapr-http-port", "0", "--dapr-grpc-port", "0", "--metrics-port", "0",
         "--resources-path", str(res), "--data-dir", str(data), "--log-level", "warn",
         *profile.args],
        env={**env, **profile.env},
        stderr=stderr,
    )
    runtime_json = data / "runtime.json"
    with httpx.Client(timeout=1) as client:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the sidecar ({profile.name}) exited with {proc.returncode}")
            if time.monotonic() - started > 60:
                proc.kill()
                raise RuntimeError(f"the sidecar ({profile.name}) did not become healthy")
            try:
                port = json.loads(runtime_json.read_text())["ports"]["http"]
                r = client.get(f"http://127.0.0.1:{port}/v1.0/healthz/outbound")
                if r.status_code == 204:
                    elapsed = time.monotonic() - started
                    last_cpu[proc.pid] = cpu_seconds(proc.pid)
                    return proc, port, elapsed
            except (OSError, httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.002)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (``/proc/PID/stat``): unlike the wall
    clock, it does not grow when other work shares the cores."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM and wait (SIGKILL after 20 s)."""
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def bare_start(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], float]:
    """The baseline: ``python3 -c 'import asyncio'`` then idle; (process, seconds until it
    printed its first line)."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [*PYTHON, "-c",
         "import asyncio, time; print(flush=True); asyncio.run(asyncio.sleep(3600))"],
        stdout=subprocess.PIPE, env=env,
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    elapsed = time.monotonic() - started
    last_cpu[proc.pid] = cpu_seconds(proc.pid)
    return proc, elapsed


def spread(values: Sequence[float]) -> tuple[float, float, float]:
    """(min, median, max)."""
    return min(values), statistics.median(values), max(values)
