"""Serial input: events per second and latency from a pty write to the app's receipt.

Baseline, in the same run and on the same kind of socat pty pair: a bare pyserial reader (a
thread reading what is waiting and splitting lines; no sidecar, nothing durable). Then the
sidecar (``edge-runtime run`` as a process, a ``bindings.serial`` component with
``direction: input``) delivering every line through the durable inbox to an HTTP app in this
process, once per durability mode.

Two phases per side: a burst (``--lines`` lines written as fast as the pty takes them: events
per second from the first write to the last receipt) and a paced run (``--paced`` lines at
``--rate`` per second: latency percentiles from the write to the receipt; each line carries its
send time on the monotonic clock, which the processes share).

    PYTHONPATH=. .venv/bin/python bench/serial_bench.py [--lines 5000] [--paced 500] [--rate 200]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tty
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import serial


@dataclass
class Result:
    name: str
    burst_rate: float
    p50_ms: float
    p99_ms: float
    received: int
    expected: int


@contextlib.contextmanager
def pty_pair(workdir: Path) -> Iterator[tuple[Path, int]]:
    """A socat pair: (the device path a reader opens, a raw fd on the far end to write)."""
    socat = shutil.which("socat")
    if socat is None:
        sys.exit("serial_bench needs socat")
    a, b = workdir / "ttyA", workdir / "ttyB"
    proc = subprocess.Popen([socat, f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while not (a.exists() and b.exists()):
        if time.monotonic() > deadline:
            proc.kill()
            sys.exit("socat did not make its pty pair")
        time.sleep(0.005)
    fd = os.open(b, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd)
    try:
        yield a, fd
    finally:
        os.close(fd)
        proc.send_signal(signal.SIGTERM)
        proc.wait(5)


def line(seq: int) -> bytes:
    return b"%d %d\n" % (seq, time.monotonic_ns())


def write_burst(fd: int, n: int) -> float:
    """Write ``n`` lines in 4 KiB chunks; the start time."""
    started = time.monotonic()
    chunk = bytearray()
    for i in range(n):
        chunk += line(i)
        if len(chunk) >= 4096:
            os.write(fd, chunk)
            chunk.clear()
    if chunk:
        os.write(fd, chunk)
    return started


def write_paced(fd: int, n: int, rate: float, first: int) -> None:
    gap = 1.0 / rate
    next_at = time.monotonic()
    for i in range(first, first + n):
        next_at += gap
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        os.write(fd, line(i))


def summarise(name: str, arrivals: dict[int, int], sent_ns: dict[int, int], burst: int,
              started: float, burst_done: float, paced: int) -> Result:
    rate = burst / (burst_done - started) if burst_done > started else 0.0
    lat = sorted((arrivals[s] - sent_ns[s]) / 1e6 for s in sent_ns if s >= burst and s in arrivals)
    p50 = statistics.median(lat) if lat else float("nan")
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else float("nan")
    return Result(name, rate, p50, p99, len(arrivals), burst + paced)


# --- baseline: a bare pyserial reader ------------------------------------------------------

def baseline(workdir: Path, burst: int, paced: int, rate: float) -> Result:
    with pty_pair(workdir) as (device, fd):
        port = serial.Serial(str(device), timeout=0.1)
        arrivals: dict[int, int] = {}
        sent: dict[int, int] = {}
        stop = threading.Event()
        done = threading.Event()
        expected = burst + paced

        def read() -> None:
            buf = bytearray()
            while not stop.is_set():
                buf += port.read(port.in_waiting or 1)
                *lines, rest = buf.split(b"\n")
                now = time.monotonic_ns()
                for raw in lines:
                    seq, sent_ns = raw.split()
                    arrivals[int(seq)] = now
                    sent[int(seq)] = int(sent_ns)
                buf = bytearray(rest)
                if len(arrivals) >= expected:
                    done.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        started = write_burst(fd, burst)
        while len(arrivals) < burst:
            time.sleep(0.001)
        burst_done = time.monotonic()
        write_paced(fd, paced, rate, burst)
        done.wait(30)
        stop.set()
        reader.join(5)
        port.close()
    return summarise("bare pyserial reader", arrivals, sent, burst, started, burst_done, paced)


# --- the sidecar ---------------------------------------------------------------------------

COMPONENT = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: uart}}
spec:
  type: bindings.serial
  version: v1
  metadata:
  - {{name: port, value: "{port}"}}
  - {{name: direction, value: input}}
"""


class App:
    """A minimal HTTP/1.1 app (keep-alive, Content-Length) recording each event's arrival."""

    def __init__(self) -> None:
        self.arrivals: dict[int, int] = {}
        self.sent: dict[int, int] = {}
        self.target = 0
        self.reached = asyncio.Event()  # set once ``target`` events arrived

    async def until(self, n: int, within: float = 60.0) -> None:
        self.target = n
        if len(self.arrivals) < n:
            self.reached.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.reached.wait(), within)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for h in head.split(b"\r\n"):
                    if h[:15].lower() == b"content-length:":
                        length = int(h[15:])
                body = await reader.readexactly(length) if length else b""
                if head.startswith(b"POST") and body:
                    seq, sent_ns = body.split()
                    self.arrivals[int(seq)] = time.monotonic_ns()
                    self.sent[int(seq)] = int(sent_ns)
                    if len(self.arrivals) >= self.target:
                        self.reached.set()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()


async def sidecar(workdir: Path, durability: str, burst: int, paced: int, rate: float) -> Result:
    with pty_pair(workdir) as (device, fd):
        app = App()
        server = await asyncio.start_server(app.serve, "127.0.0.1", 0)
        app_port = server.sockets[0].getsockname()[1]
        res = workdir / "components"
        res.mkdir(exist_ok=True)
        (res / "uart.yaml").write_text(COMPONENT.format(port=device))
        data = workdir / "data"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge_runtime", "run", "--app-id", "bench",
            "--app-port", str(app_port), "--dapr-http-port", "0", "--dapr-grpc-port", "0",
            "--metrics-port", "0", "--resources-path", str(res), "--data-dir", str(data),
            "--durability", durability, "--log-level", "warn",
            stderr=subprocess.DEVNULL,
        )
        try:
            await wait_healthy(proc, data)
            loop = asyncio.get_running_loop()
            started = await loop.run_in_executor(None, write_burst, fd, burst)
            await app.until(burst)
            burst_done = time.monotonic()
            await loop.run_in_executor(None, write_paced, fd, paced, rate, burst)
            await app.until(burst + paced, within=30)
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 20)
            server.close()
    return summarise(f"sidecar, durability {durability}", app.arrivals, app.sent, burst,
                     started, burst_done, paced)


async def wait_healthy(proc: asyncio.subprocess.Process, data: Path) -> None:
    """Until ``/v1.0/healthz`` is 204: the app is seen (so delivery runs)."""
    async with httpx.AsyncClient(timeout=1) as client:
        for _ in range(2000):
            if proc.returncode is not None:
                sys.exit("the sidecar exited")
            with contextlib.suppress(OSError, ValueError, KeyError, httpx.HTTPError):
                port = json.loads((data / "runtime.json").read_text())["ports"]["http"]
                r = await client.get(f"http://127.0.0.1:{port}/v1.0/healthz")
                if r.status_code == 204:
                    return
            await asyncio.sleep(0.01)
    sys.exit("the sidecar did not become healthy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--lines", type=int, default=5000, help="lines in the burst")
    parser.add_argument("--paced", type=int, default=500, help="lines in the paced run")
    parser.add_argument("--rate", type=float, default=200.0, help="paced lines per second")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="serial-bench-") as tmp:
        base = Path(tmp)
        (base / "baseline").mkdir()
        results.append(baseline(base / "baseline", args.lines, args.paced, args.rate))
        for durability in ("full", "normal"):
            work = base / durability
            work.mkdir()
            results.append(asyncio.run(sidecar(work, durability, args.lines, args.paced,
                                               args.rate)))
    ref = results[0]
    print(f"serial input: {args.lines}-line burst, then {args.paced} lines at {args.rate:g}/s")
    print(f"{'':32} {'events/s':>10} {'ratio':>7} {'p50 ms':>8} {'p99 ms':>8} {'received':>10}")
    for r in results:
        ratio = r.burst_rate / ref.burst_rate if ref.burst_rate else float("nan")
        print(f"{r.name:32} {r.burst_rate:10.0f} {ratio:7.4f} {r.p50_ms:8.2f} {r.p99_ms:8.2f}"
              f" {r.received:>5}/{r.expected}")


if __name__ == "__main__":
    main()
