"""Service invocation overhead across two sidecars, against a direct call to the app.

Paths measured in the same run, interleaved in rounds so drift hits all of them alike:

* direct: client → app (the baseline);
* one sidecar: client → sidecar B → app (local invocation);
* two sidecars: client → sidecar A → (internal gRPC, token) → sidecar B → app.

The app is a minimal ASGI echo on uvicorn/httptools in its own process; each sidecar is an
``edge-runtime run`` process. The client sends POSTs of ``--size`` bytes one at a time
(latency, not throughput) over keep-alive connections. Dapr reports +1.40 ms p90 / +2.10 ms
p99 for two sidecars (Kubernetes, 4-core nodes, 1000 rps, mTLS; perf-service-invocation.md).

    python -m bench.invoke_bench [--requests 3000] [--size 1024]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.invocation.procs import Sidecar, free_port, name_table

TOKEN = "bench-token"  # noqa: S105 - a throwaway token for two local processes
APP = '''
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/octet-stream")]})
    await send({"type": "http.response.body", "body": body})
'''


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000


async def start_app(work: Path, port: int) -> asyncio.subprocess.Process:
    (work / "echo_app.py").write_text(APP)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "uvicorn", "echo_app:app", "--port", str(port), "--http",
        "httptools", "--no-access-log", "--log-level", "warning", cwd=work,
        env={**os.environ, "PYTHONPATH": str(work)},
    )
    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError("the echo app did not start")


async def measure(client: httpx.AsyncClient, url: str, body: bytes, n: int) -> list[float]:
    out: list[float] = []
    for _ in range(n):
        start = time.perf_counter()
        r = await client.post(url, content=body)
        out.append(time.perf_counter() - start)
        if r.status_code != 200 or len(r.content) != len(body):
            raise RuntimeError(f"{url}: {r.status_code} {r.text[:200]}")
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="per path")
    parser.add_argument("--size", type=int, default=1024, help="request body bytes")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    body = os.urandom(args.size)
    with tempfile.TemporaryDirectory(prefix="invoke-bench-") as tmp:
        work = Path(tmp)
        app_port = free_port()
        app = await start_app(work, app_port)
        env = {"EDGE_RUNTIME_INTERNAL_TOKEN": TOKEN}
        quiet = ("--log-level", "warn")
        b = Sidecar(work, "b", env=env, args=(
            "--app-port", str(app_port), "--internal-grpc-port", "0",
            "--internal-grpc-listen-address", "127.0.0.1", "--enable-metrics", "false", *quiet,
        ))
        sidecars = [b]
        try:
            await b.start()
            config = name_table(work / "config.yaml", {"b": b.internal})
            a = Sidecar(work, "a", env=env,
                        args=("--config", str(config), "--enable-metrics", "false", *quiet))
            sidecars.append(a)
            await a.start()
            paths = {
                "direct": f"http://127.0.0.1:{app_port}/echo",
                "one sidecar": f"{b.url}/v1.0/invoke/b/method/echo",
                "two sidecars": f"{a.url}/v1.0/invoke/b/method/echo",
            }
            results: dict[str, list[float]] = {k: [] for k in paths}
            async with httpx.AsyncClient(timeout=30) as client:
                for url in paths.values():
                    await measure(client, url, body, 200)  # warm up connections and code
                per_round = max(args.requests // args.rounds, 1)
                for _ in range(args.rounds):
                    for name, url in paths.items():
                        results[name] += await measure(client, url, body, per_round)
        finally:
            for s in reversed(sidecars):
                await s.stop()
            app.terminate()
            await app.wait()
    base = results["direct"]
    print(f"invocation latency, {len(base)} sequential POSTs of {args.size} bytes per path "
          f"(client, app and sidecars on this machine, {os.cpu_count()} CPUs)")
    print(f"{'path':<14} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}   overhead p50/p90/p99 ms")
    for name, values in results.items():
        row = [pct(values, p) for p in (0.5, 0.9, 0.99)]
        extra = [r - pct(base, p) for r, p in zip(row, (0.5, 0.9, 0.99), strict=True)]
        over = "" if name == "direct" else "   +" + " / +".join(f"{x:.2f}" for x in extra)
        print(f"{name:<14} {row[0]:>8.2f} {row[1]:>8.2f} {row[2]:>8.2f}{over}")
    print("Dapr (K8s, 1000 rps, mTLS): two sidecars +1.40 ms p90, +2.10 ms p99")


if __name__ == "__main__":
    asyncio.run(main())
