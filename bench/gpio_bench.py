"""GPIO edge → app: events per second and latency (p50/p99) through a sidecar, against a bare
reader of the same simulated chip in the same run.

Path measured: an edge injected into the simulated chip's socket (``chip: sim``, in the
sidecar process) → ``bindings.gpio`` reads it from the request's descriptor → committed to the
inbox (fsync, ``--durability full``) → delivered with ``POST /gpio`` to an HTTP app in this
process. The injecting client and the app share this process's clock.

Baseline in the same run: the same simulated chip and socket in this process, read by a bare
``add_reader`` on the request's descriptor (no sidecar, no disk, no HTTP).

Latency: edges at a fixed rate, one at a time. Throughput: edges as fast as the socket takes
them, in pipelined chunks, until the reader has them all.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import tempfile
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench import _sidecar
from edge_runtime.bindings.gpio.backend import LineConfig
from edge_runtime.bindings.gpio.sim import SimChip
from edge_runtime.bindings.gpio.simclient import SimClient
from tests.appchannel.appserver import AppServer, Reply, Request

COMPONENT = textwrap.dedent("""\
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
""")
Run = Callable[[Path, float, int, int], Awaitable[tuple[list[float], float]]]
CHUNK = 100  # edges per pipelined write when measuring throughput


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000


class Receipts:
    """When each event (by seq) arrived."""

    def __init__(self) -> None:
        self.at: dict[int, float] = {}
        self.arrived = asyncio.Event()

    def add(self, seq: int) -> None:
        self.at[seq] = time.perf_counter()
        self.arrived.set()

    async def wait(self, n: int, limit_s: float = 120) -> None:
        deadline = time.monotonic() + limit_s
        while len(self.at) < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(self.at)} of {n} events arrived")
            self.arrived.clear()
            await asyncio.wait([asyncio.ensure_future(self.arrived.wait())], timeout=0.5)


async def measure(socket: Path, receipts: Receipts, rate: float, count: int,
                  burst: int) -> tuple[list[float], float]:
    """(latencies in s at ``rate``, events/s for a burst of ``burst``)."""
    sent: dict[int, float] = {}
    levels = iter(range(1, 1 + count + burst))  # odd: 1, even: 0: every drive is an edge
    async with SimClient(socket) as sim:
        start = time.perf_counter()
        for i in range(count):
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            t = time.perf_counter()
            for event in await sim.drive(17, next(levels) % 2):
                sent[event["seq"]] = t
        await receipts.wait(count)
        latencies = [receipts.at[s] - t for s, t in sent.items()]
        t0 = time.perf_counter()
        for c in range(0, burst, CHUNK):
            await sim.pipeline([{"line": 17, "value": next(levels) % 2}
                                for _ in range(min(CHUNK, burst - c))])
        await receipts.wait(count + burst)
        elapsed = max(receipts.at.values()) - t0
    return latencies, burst / elapsed


async def baseline(work: Path, rate: float, count: int, burst: int) -> tuple[list[float], float]:
    chip = SimChip(work / "base.sock")
    await chip.start()
    request = chip.request([17], LineConfig(edge="both"), "bench")
    receipts = Receipts()

    def readable() -> None:
        for event in request.read_events():
            receipts.add(event.seq)

    asyncio.get_running_loop().add_reader(request.fileno(), readable)
    try:
        return await measure(work / "base.sock", receipts, rate, count, burst)
    finally:
        asyncio.get_running_loop().remove_reader(request.fileno())
        await chip.close()


async def through_sidecar(work: Path, rate: float, count: int, burst: int
                          ) -> tuple[list[float], float]:
    receipts = Receipts()

    def respond(req: Request) -> Reply:
        if req.path == "/gpio" and req.method == "POST":
            receipts.add(json.loads(req.body)["seq"])
        return Reply(200 if req.path == "/gpio" else 404)

    async with AppServer(respond) as app:
        (work / "components").mkdir(parents=True, exist_ok=True)
        (work / "components" / "gpio.yaml").write_text(COMPONENT)
        proc, _port, _ = await asyncio.to_thread(
            _sidecar.start, work, "--app-port", str(app.port))
        try:
            return await measure(work / "data" / "gpio-sim.sock", receipts, rate, count, burst)
        finally:
            proc.terminate()
            await asyncio.to_thread(proc.wait, 20)


def report(name: str, lat: list[float], eps: float) -> None:
    print(f"{name:<28} p50 {pct(lat, 0.5):7.2f} ms  p99 {pct(lat, 0.99):7.2f} ms"
          f"  {eps:9.0f} events/s")


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="gpio-bench-") as tmp:
        work = Path(tmp)
        runs: list[tuple[str, Run]] = [
            ("baseline (bare reader)", baseline), ("sidecar (inbox + HTTP app)", through_sidecar)]
        results = {}
        for name, run in runs:
            results[name] = await run(work / name.split()[0], args.rate, args.count, args.burst)
        print(f"GPIO edge -> reader: {args.count} edges at {args.rate:g}/s for latency,"
              f" {args.burst} as fast as possible for throughput")
        for name, (lat, eps) in results.items():
            report(name, lat, eps)
        (blat, beps), (slat, seps) = results.values()
        print(f"sidecar / baseline: p50 x{pct(slat, 0.5) / pct(blat, 0.5):.1f},"
              f" throughput {seps / beps:.1%}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0, help="edges/s for latency")
    parser.add_argument("--count", type=int, default=500, help="edges for latency")
    parser.add_argument("--burst", type=int, default=3000, help="edges for throughput")
    try:
        asyncio.run(main(parser.parse_args()))
    except subprocess.TimeoutExpired:
        raise SystemExit("the sidecar did not stop") from None
