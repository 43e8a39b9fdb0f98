"""A publisher sidecar, a subscriber sidecar and an app process on one private mosquitto.

Shared by ``wear_bench`` and ``steady_bench``. The app runs in its own process (so the load
generator in the benchmark's process does not slow it down); it answers ``/dapr/subscribe``
with one subscription to ``topic``, takes every event at ``/ev``, and keeps the end-to-end
latency of each (``time.monotonic()`` now minus the ``t`` the publisher put in the event:
CLOCK_MONOTONIC is one clock for every process on Linux). ``GET /stats`` answers
``{"n": count, "lat": [seconds...]}`` and starts a new sample.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx

from bench._httpload import Poster
from bench._sidecar import mqtt_component
from tests.support.mosquitto import Mosquitto

APP = textwrap.dedent("""
    import asyncio, json, sys, time
    sys.path.insert(0, sys.argv[3])
    from tests.appchannel.appserver import AppServer, Reply
    topic = sys.argv[1]
    lat = []
    n = 0
    def respond(req):
        global lat, n
        if req.path == "/ev":
            n += 1
            lat.append(time.monotonic() - json.loads(req.body)["data"]["t"])
            return Reply(200, b"")
        if req.path == "/dapr/subscribe":
            return Reply(200, json.dumps(
                [{"pubsubname": "mqtt", "topic": topic, "route": "/ev"}]).encode())
        if req.path == "/stats":
            out = json.dumps({"n": n, "lat": lat}).encode()
            lat = []
            return Reply(200, out)
        return Reply(404, b"")
    async def main():
        async with AppServer(respond) as app:
            with open(sys.argv[2] + ".tmp", "w") as f:
                f.write(str(app.port))
            import os; os.replace(sys.argv[2] + ".tmp", sys.argv[2])
            await asyncio.Event().wait()
    try:
        import uvloop; uvloop.run(main())
    except ImportError:
        asyncio.run(main())
""")


def write_bytes(pid: int) -> int:
    """Bytes this process caused to be written to storage: ``write_bytes`` less
    ``cancelled_write_bytes`` of ``/proc/PID/io`` (pages dirtied in files deleted or truncated
    before write-back, such as SQLite's temporary files, never reach the disk)."""
    fields = dict(line.split(": ") for line in
                  Path(f"/proc/{pid}/io").read_text().splitlines() if ": " in line)
    return int(fields.get("write_bytes", 0)) - int(fields.get("cancelled_write_bytes", 0))


def pct(values: list[float], p: float) -> float:
    """The ``p`` quantile of ``values`` in milliseconds (nan when empty)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000


class Pair:
    """``with Pair(work, broker, topic, *sidecar_args) as pair:`` then ``pair.pub_port``,
    ``pair.pub``/``pair.sub`` (processes), :meth:`stats`."""

    def __init__(self, work: Path, broker: Mosquitto, topic: str, *extra: str) -> None:
        self.work, self.broker, self.topic, self.extra = work, broker, topic, extra
        self.pub_url = ""  # the publisher's broker URL when not the broker's (a delay proxy)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.pub_port = self.sub_port = self.app_port = 0

    def __enter__(self) -> Pair:
        portfile = self.work / "app.port"
        root = str(Path(__file__).resolve().parent.parent)
        app = subprocess.Popen([sys.executable, "-c", APP, self.topic, str(portfile), root])
        self.procs.append(app)
        self.app_port = int(_wait_file(portfile, app))
        try:
            self.sub, self.sub_port = self._sidecar("sub", "--app-port", str(self.app_port))
            self.pub, self.pub_port = self._sidecar("pub")
            self._wait_subscribed()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def _sidecar(self, name: str, *args: str) -> tuple[subprocess.Popen[bytes], int]:
        res = self.work / name / "components"
        res.mkdir(parents=True, exist_ok=True)
        url = self.pub_url if name == "pub" and self.pub_url else self.broker.url
        (res / "mqtt.yaml").write_text(mqtt_component(url, f"bench-{name}"))
        data = self.work / name / "data"
        proc = subprocess.Popen(
            [sys.executable, "-m", "edge_runtime", "run", "--app-id", name,
             "--dapr-http-port", "0", "--dapr-grpc-port", "0", "--metrics-port", "0",
             "--disable-grpc-api", "--resources-path", str(res), "--data-dir", str(data),
             "--log-level", "warn", *self.extra, *args],
        )
        self.procs.append(proc)
        text = _wait_file(data / "runtime.json", proc, key="http")
        self.data_dirs = {**getattr(self, "data_dirs", {}), name: data}
        return proc, int(text)

    def commits(self, side: str, db: str) -> tuple[float, float]:
        """(commits, rows) of database ``db`` of sidecar ``side`` ("pub"/"sub"), from its
        metrics."""
        port = json.loads((self.data_dirs[side] / "runtime.json").read_text())["ports"]["metrics"]
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        got = [0.0, 0.0]
        for line in text.splitlines():
            for i, name in enumerate(("edge_runtime_db_commits_total",
                                     "edge_runtime_db_operations_total")):
                if line.startswith(name + "{") and f'db="{db}"' in line:
                    got[i] += float(line.rsplit(" ", 1)[1])
        return got[0], got[1]

    def rss_kib(self, side: str) -> int:
        """Resident memory of sidecar ``side`` in KiB."""
        proc = self.pub if side == "pub" else self.sub
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def _wait_subscribed(self) -> None:
        """Publish probes until one reaches the app (the subscription is live)."""
        url = f"http://127.0.0.1:{self.pub_port}/v1.0/publish/mqtt/{self.topic}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            httpx.post(url, json={"t": time.monotonic()}, timeout=10).raise_for_status()
            time.sleep(0.3)
            if self.stats()["n"]:
                return
        raise RuntimeError("no event reached the app in 30 s")

    def stats(self) -> dict[str, object]:
        """The app's count of events and the latencies since the last call."""
        got: dict[str, object] = httpx.get(
            f"http://127.0.0.1:{self.app_port}/stats", timeout=30).json()
        return got


def _wait_file(path: Path, proc: subprocess.Popen[bytes], key: str = "") -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:4]} exited")
        try:
            text = path.read_text()
            return str(json.loads(text)["ports"][key]) if key else text
        except (OSError, ValueError, KeyError):
            time.sleep(0.05)
    raise RuntimeError(f"{path} did not appear")


async def publish_at(port: int, topic: str, rate: float, seconds: float,
                     size: int = 200, conns: int = 32) -> tuple[int, list[int]]:
    """POST ``rate`` events/s for ``seconds`` (each ``{"t": monotonic, "pad": ...}``, about
    ``size`` bytes) over ``conns`` connections, so at most ``conns`` publishes wait at once
    (and share a commit); (events sent, statuses other than 204)."""
    n = int(rate * seconds)
    bad: list[int] = []
    async with Poster("127.0.0.1", port, f"/v1.0/publish/mqtt/{topic}", conns=conns) as post:
        async def one(body: bytes) -> None:
            status = await post.post(body)
            if status != 204:
                bad.append(status)

        start = time.monotonic()
        pending: set[asyncio.Task[None]] = set()
        pad = "x" * max(0, size - 40)
        for i in range(n):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            body = json.dumps({"t": time.monotonic(), "pad": pad}).encode()
            pending.add(asyncio.create_task(one(body)))
            if len(pending) > 64:
                pending = {t for t in pending if not t.done()}
        await asyncio.gather(*pending)
    return n, bad
