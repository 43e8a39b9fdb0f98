"""End-to-end latency publish → app at a fixed rate, against bare paho on the same broker.

Path measured: HTTP publish to a publisher sidecar (fsync into its outbox) → relay → mosquitto
→ subscriber sidecar (the fast lane: the app gets the event from memory while its insert
waits in the commit window; PUBACK after the app's success or the inbox commit) → HTTP POST to
the app. The app and
the publishing client run in this process, so one clock times both ends.
Baseline in the same run: a bare paho publisher and a bare paho subscriber (QoS 1, no
durability) on the same broker at the same rate.

Then the in-order delivery rate (``--drain`` events, 0 skips it): a subscriber sidecar starts
on an inbox already holding that many events of one subscription and delivers them to a fast
app (one event in flight, as by default); the rate is counted from the first arrival to the
last. Baseline in the same run: the same app server answering a client that posts one request
at a time over one keep-alive connection from another process (what the app server alone
takes).

``--trees A,B --repeat N`` runs the sidecar path with the sidecars from each source tree (its
working directory and first on ``PYTHONPATH``), N times each, interleaved, and prints the
min/median/max of p50 and p99 per tree with the ratio of the medians to the first tree's.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt

from bench._httpload import Poster
from bench._sidecar import mqtt_component
from edge_runtime.inbox.store import Inbox
from edge_runtime.pubsub import Received
from edge_runtime.subscriptions.model import subscription_key
from tests.appchannel.appserver import AppServer, Reply, Request
from tests.support.mosquitto import Mosquitto

DRAIN_TOPIC = "lat/drain"
# Posts one request at a time over one keep-alive connection; prints requests per second.
_SEQUENTIAL_CLIENT = """
import asyncio, sys, time
from bench._httpload import Poster
async def main(port, n, body):
    async with Poster("127.0.0.1", port, "/ev", conns=1) as post:
        for _ in range(n // 10):
            await post.post(body)
        start = time.perf_counter()
        for _ in range(n):
            await post.post(body)
        print(n / (time.perf_counter() - start))
asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].encode()))
"""


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000


def baseline(port: int, rate: float, seconds: float) -> list[float]:
    lat: list[float] = []
    done = threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="lat-sub")
    sub.on_message = lambda _c, _u, m: lat.append(time.perf_counter() - float(m.payload))
    sub.connect("127.0.0.1", port)
    sub.subscribe("lat/base", qos=1)
    sub.loop_start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="lat-pub")
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    time.sleep(0.5)
    n = int(rate * seconds)
    start = time.perf_counter()
    for i in range(n):
        while time.perf_counter() < start + i / rate:
            time.sleep(0.0005)
        pub.publish("lat/base", str(time.perf_counter()).encode(), qos=1)
    deadline = time.monotonic() + 10
    while len(lat) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    done.set()
    pub.loop_stop()
    sub.loop_stop()
    return lat


def tree_env(tree: str) -> dict[str, object]:
    """``create_subprocess_exec`` arguments that run a sidecar from source tree ``tree`` (its
    working directory, where ``python -m`` imports from first, and first on ``PYTHONPATH``);
    "": this one."""
    if not tree:
        return {}
    old = os.environ.get("PYTHONPATH")
    return {"cwd": tree,
            "env": {**os.environ, "PYTHONPATH": os.pathsep.join([tree, *([old] if old else [])])}}


async def sidecars(
    work: Path, broker: Mosquitto, app_port: int, concurrency: int = 1, tree: str = "",
) -> list[asyncio.subprocess.Process]:
    procs = []
    for name, extra in (("sub", ["--app-port", str(app_port)]), ("pub", [])):
        res = work / name / "components"
        res.mkdir(parents=True)
        component = mqtt_component(broker.url, f"lat-{name}")
        if name == "sub" and concurrency != 1:
            component += f'  - {{name: deliveryConcurrency, value: "{concurrency}"}}\n'
        (res / "mqtt.yaml").write_text(component)
        procs.append(
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "edge_runtime",
                "run",
                "--app-id",
                name,
                "--dapr-http-port",
                "0",
                "--dapr-grpc-port",
                "0",
                "--metrics-port",
                "0",
                "--resources-path",
                str(res),
                "--data-dir",
                str(work / name / "data"),
                "--log-level",
                "warn",
                *extra,
                **tree_env(tree),  # type: ignore[arg-type]
            )
        )
    return procs


async def port_of(data: Path) -> int:
    for _ in range(400):
        try:
            port: int = json.loads((data / "runtime.json").read_text())["ports"]["http"]
        except (OSError, ValueError, KeyError):
            await asyncio.sleep(0.05)
        else:
            return port
    raise RuntimeError("sidecar did not start")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tap(port: int, lat: list[float]) -> mqtt.Client:
    """A bare paho subscriber to the sidecars' topic: when the publisher sidecar's messages
    reach the broker's subscribers."""
    def on_message(_c: object, _u: object, m: mqtt.MQTTMessage) -> None:
        lat.append(time.perf_counter() - json.loads(m.payload)["data"]["t"])

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="lat-tap")
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.subscribe("lat/side", qos=1)
    client.loop_start()
    return client


@dataclass
class SidecarRun:
    lat: list[float] = field(default_factory=list)  # publish -> app
    acked: list[float] = field(default_factory=list)  # publish -> 204
    tapped: list[float] = field(default_factory=list)  # publish -> a bare subscriber
    cpu: dict[str, float] = field(default_factory=dict)  # sidecar CPU seconds in the run


async def through_sidecars(
    work: Path, broker: Mosquitto, rate: float, seconds: float, *, split: bool = False,
    concurrency: int = 1, tree: str = "",
) -> SidecarRun:
    run = SidecarRun()
    lat, acked = run.lat, run.acked

    async def publish(post: Poster, body: bytes, sent: float) -> int:
        status = await post.post(body)
        acked.append(time.perf_counter() - sent)
        return status

    def respond(req: Request) -> Reply:
        if req.path == "/dapr/subscribe":
            return Reply(200, b'[{"pubsubname":"mqtt","topic":"lat/side","route":"/ev"}]')
        lat.append(time.perf_counter() - json.loads(req.body)["data"]["t"])
        return Reply(200, b"")

    async with AppServer(respond) as app:
        procs = await sidecars(work, broker, app.port, concurrency, tree)
        try:
            sub_port = await port_of(work / "sub" / "data")
            pub_port = await port_of(work / "pub" / "data")
            limits = httpx.Limits(max_connections=16)
            async with httpx.AsyncClient(timeout=60, limits=limits) as c:
                for _ in range(400):
                    r = await c.get(f"http://127.0.0.1:{sub_port}/v1.0/healthz")
                    if r.status_code == 204:
                        break
                    await asyncio.sleep(0.05)
                n = int(rate * seconds)
                tapper = tap(broker.port, run.tapped) if split else None
                await asyncio.sleep(0.5 if split else 0)
                cpu0 = {name: cpu_seconds(p.pid) for name, p in zip(("sub", "pub"), procs,
                                                                      strict=True)}
                async with Poster("127.0.0.1", pub_port, "/v1.0/publish/mqtt/lat/side") as post:
                    start = time.perf_counter()
                    pending = set()
                    for i in range(n):
                        delay = start + i / rate - time.perf_counter()
                        if delay > 0:
                            await asyncio.sleep(delay)
                        sent = time.perf_counter()
                        body = json.dumps({"t": sent}).encode()
                        pending.add(asyncio.create_task(publish(post, body, sent)))
                        pending = {t for t in pending if not t.done()}
                    statuses = await asyncio.gather(*pending)
                    if any(s != 204 for s in statuses):
                        print(f"  (publishes answered {sorted(set(statuses))})")
                deadline = time.monotonic() + 15
                while len(lat) < n and time.monotonic() < deadline:  # noqa: ASYNC110 - polls a list
                    await asyncio.sleep(0.05)
                run.cpu = {name: cpu_seconds(p.pid) - cpu0[name]
                           for name, p in zip(("sub", "pub"), procs, strict=True)}
                if tapper is not None:
                    tapper.loop_stop()
                    tapper.disconnect()
        finally:
            for p in procs:
                p.terminate()
                await p.wait()
    return run


def _event(i: int) -> bytes:
    return json.dumps({
        "specversion": "1.0", "id": f"drain-{i}", "source": "bench", "type": "bench.drain",
        "topic": DRAIN_TOPIC, "pubsubname": "mqtt", "datacontenttype": "application/json",
        "data": {"i": i},
    }).encode()


async def _prefill(data: Path, n: int) -> None:
    inbox = Inbox(data)
    await inbox.open()
    try:
        key = subscription_key("mqtt", DRAIN_TOPIC)
        for start in range(0, n, 500):
            await asyncio.gather(*(
                inbox.add(key, Received(DRAIN_TOPIC, _event(i), DRAIN_TOPIC, {}), f"drain-{i}")
                for i in range(start, min(n, start + 500))
            ))
    finally:
        await inbox.close()


async def delivery_rate(work: Path, broker: Mosquitto, n: int) -> tuple[float, float, int]:
    """(events/s an ordered subscription delivers to a fast app, requests/s the app server
    answers alone, events that arrived in order)."""
    times: list[float] = []
    seen: list[int] = []

    def respond(req: Request) -> Reply:
        if req.path == "/dapr/subscribe":
            return Reply(200, json.dumps(
                [{"pubsubname": "mqtt", "topic": DRAIN_TOPIC, "route": "/drain"}]).encode())
        if req.path == "/drain":
            times.append(time.perf_counter())
            seen.append(json.loads(req.body)["data"]["i"])
        return Reply(200, b"")

    data = work / "drain" / "data"
    res = work / "drain" / "components"
    res.mkdir(parents=True)
    (res / "mqtt.yaml").write_text(mqtt_component(broker.url, "lat-drain"))
    await _prefill(data, n)
    async with AppServer(respond) as app:
        client = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _SEQUENTIAL_CLIENT, str(app.port), str(n),
            _event(0).decode(), stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await client.communicate()
        alone = float(out)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge_runtime", "run", "--app-id", "drain",
            "--dapr-http-port", "0", "--dapr-grpc-port", "0", "--metrics-port", "0",
            "--resources-path", str(res), "--data-dir", str(data), "--log-level", "warn",
            "--app-port", str(app.port),
        )
        try:
            deadline = time.monotonic() + 120
            while len(times) < n and time.monotonic() < deadline:  # noqa: ASYNC110 - polls
                await asyncio.sleep(0.05)
        finally:
            proc.terminate()
            await proc.wait()
    ordered = sum(1 for a, b in itertools.pairwise(seen) if b > a) + min(1, len(seen))
    rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
    return rate, alone, ordered


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--split", action="store_true",
                    help="also time when a bare subscriber gets the publisher sidecar's messages")
    ap.add_argument("--delivery-concurrency", type=int, default=1,
                    help="the subscriber's deliveryConcurrency (1, the default: in order)")
    ap.add_argument("--drain", type=int, default=5000,
                    help="events for the in-order delivery rate (0: skip it; skipped with"
                         " --trees)")
    ap.add_argument("--trees", default="",
                    help="source trees to run the sidecars from, comma-separated: each is run"
                         " --repeat times, interleaved, and compared with the first")
    ap.add_argument("--repeat", type=int, default=1, help="runs per tree (with --trees)")
    args = ap.parse_args()
    if args.trees:
        compare(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        broker = Mosquitto(work / "broker")
        broker.start()
        try:
            base = baseline(broker.port, args.rate, args.seconds)
            run = asyncio.run(through_sidecars(work, broker, args.rate, args.seconds,
                                               split=args.split,
                                               concurrency=args.delivery_concurrency))
            drain = asyncio.run(delivery_rate(work, broker, args.drain)) if args.drain else None
        finally:
            broker.stop()
    n = int(args.rate * args.seconds)
    side, acked = run.lat, run.acked
    print(f"latency bench: {args.rate:.0f} msg/s for {args.seconds:.0f}s, mosquitto on loopback,"
          f" deliveryConcurrency {args.delivery_concurrency}")
    print(
        f"  bare paho pub -> sub (QoS 1, no durability): {len(base)}/{n} arrived, "
        f"p50 {pct(base, 0.5):.2f} ms  p99 {pct(base, 0.99):.2f} ms"
    )
    print(
        f"  HTTP -> sidecar -> broker -> sidecar -> app : {len(side)}/{n} arrived, "
        f"p50 {pct(side, 0.5):.2f} ms  p99 {pct(side, 0.99):.2f} ms  "
        f"(mean {statistics.mean(side) * 1000:.2f} ms)"
    )
    print(f"    of which publish -> 204 from the publisher sidecar: p50 {pct(acked, 0.5):.2f} ms"
          f"  p99 {pct(acked, 0.99):.2f} ms")
    if run.tapped:
        print(f"    publish -> broker -> a bare subscriber (the rest is the subscriber sidecar):"
              f" p50 {pct(run.tapped, 0.5):.2f} ms  p99 {pct(run.tapped, 0.99):.2f} ms")
    per = {k: v / max(1, len(side)) * 1e6 for k, v in run.cpu.items()}
    print(f"    sidecar CPU per message: subscriber {per['sub']:.0f} us,"
          f" publisher {per['pub']:.0f} us")
    p50, p99 = pct(side, 0.5) / pct(base, 0.5), pct(side, 0.99) / pct(base, 0.99)
    print(f"  ratio p50 {p50:.1f}x  p99 {p99:.1f}x")
    if drain is not None:
        rate, alone, ordered = drain
        print(
            f"in-order delivery, one subscription, {args.drain} events queued in the inbox: "
            f"{rate:.0f} events/s ({ordered}/{args.drain} in order)"
        )
        print(f"  the app server alone (one keep-alive connection, one request at a time):"
              f" {alone:.0f} requests/s")


def compare(args: argparse.Namespace) -> None:
    """``--trees``: the sidecar path from each tree, ``--repeat`` times, interleaved (the
    machine's other load spreads over all of them); min/median/max of p50 and p99, and the
    ratio of the medians to the first tree's."""
    trees = [t for t in args.trees.split(",") if t]
    n = int(args.rate * args.seconds)
    runs: dict[str, list[SidecarRun]] = {t: [] for t in trees}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        broker = Mosquitto(work / "broker")
        broker.start()
        try:
            for rep in range(args.repeat):
                for i, tree in enumerate(trees):
                    runs[tree].append(asyncio.run(through_sidecars(
                        work / f"r{rep}-{i}", broker, args.rate, args.seconds,
                        concurrency=args.delivery_concurrency, tree=tree)))
        finally:
            broker.stop()
    print(f"latency bench: {args.rate:.0f} msg/s for {args.seconds:.0f}s, mosquitto on loopback,"
          f" deliveryConcurrency {args.delivery_concurrency}, {args.repeat} runs per tree"
          f" (min/median/max), {os.cpu_count()} cores shared")
    print("  HTTP -> sidecar -> broker -> sidecar -> app")

    def mmm(values: list[float]) -> str:
        return "/".join(f"{v:.2f}" for v in (min(values), statistics.median(values),
                                             max(values)))

    first: tuple[float, float] | None = None
    for i, tree in enumerate(trees):
        p50s = [pct(r.lat, 0.5) for r in runs[tree]]
        p99s = [pct(r.lat, 0.99) for r in runs[tree]]
        med = statistics.median(p50s), statistics.median(p99s)
        first = first or med
        arrived = sum(len(r.lat) for r in runs[tree])
        print(f"  @{i} {tree}: p50 ms {mmm(p50s)}  p99 ms {mmm(p99s)}  arrived"
              f" {arrived}/{n * args.repeat}  ratio vs @0 p50 {med[0] / first[0]:.2f}"
              f" p99 {med[1] / first[1]:.2f}")


if __name__ == "__main__":
    main()
