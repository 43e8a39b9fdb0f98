"""State API throughput and latency over HTTP, against sqlite3 directly as the baseline.

Load comes from ``wrk`` (C, on its own process) so the client is not the bottleneck; on a
2-core machine wrk and the sidecar share the CPUs, which the figures include. The baseline is
the same work done by sqlite3 in this process: one key per commit with the same durability
(``synchronous=FULL``), and point reads. Prints ops/s, p50/p99 and the ratios.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from bench._sidecar import start

SAVE_LUA = """
counter = 0
request = function()
  counter = counter + 1
  local key = "k" .. (counter % 5000)
  local body = '[{"key":"' .. key .. '","value":{"temp":21.5,"seq":' .. counter .. '}}]'
  return wrk.format("POST", "/v1.0/state/statestore", {["Content-Type"]="application/json"}, body)
end
"""
GET_LUA = """
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/v1.0/state/statestore/k" .. (counter % 5000))
end
"""


def run_wrk(
    port: int, script: str, seconds: int, connections: int, workdir: Path
) -> dict[str, float]:
    path = workdir / "script.lua"
    path.write_text(script)
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(path),
            f"http://127.0.0.1:{port}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.MULTILINE))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rps,
        "p50_ms": _ms(lat["50"]),
        "p99_ms": _ms(lat["99"]),
        "errors": float(non2xx.group(1)) if non2xx else 0.0,
    }


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    assert m is not None
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]


def sqlite_baseline(workdir: Path, seconds: float) -> dict[str, float]:
    db = sqlite3.connect(workdir / "baseline.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE state (key TEXT PRIMARY KEY, value BLOB, etag TEXT)")
    n, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        db.execute(
            "INSERT OR REPLACE INTO state VALUES (?, ?, ?)",
            (f"k{n % 5000}", b'{"temp":21.5,"seq":%d}' % n, str(uuid.uuid4())),
        )
        n += 1
    writes = n / seconds
    n, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        db.execute("SELECT value, etag FROM state WHERE key = ?", (f"k{n % 5000}",)).fetchone()
        n += 1
    db.close()
    return {"writes": writes, "reads": n / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--durability", default="full", choices=["full", "normal"])
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk (make bench installs it)")
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        work = Path(tmp)
        proc, port, _ = start(work, "--durability", args.durability, "--enable-metrics", "true")
        try:
            save = run_wrk(port, SAVE_LUA, args.seconds, args.connections, work)
            get = run_wrk(port, GET_LUA, args.seconds, args.connections, work)
            metrics_port = __import__("json").loads((work / "data/runtime.json").read_text())[
                "ports"
            ]["metrics"]
            text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
        finally:
            proc.terminate()
            proc.wait()
        base = sqlite_baseline(work, args.seconds / 2)
    commits = _metric(text, 'edge_runtime_db_commits_total{db="state.statestore"}')
    ops = _metric(text, 'edge_runtime_db_operations_total{db="state.statestore"}')
    print(
        f"state bench: wrk -t2 -c{args.connections} -d{args.seconds}s, "
        f"durability={args.durability}, {os.cpu_count()} cores shared by wrk and the sidecar"
    )
    for name, r in (("HTTP save", save), ("HTTP get ", get)):
        print(
            f"  {name} : {r['rps']:9.0f} ops/s  p50 {r['p50_ms']:.2f} ms  "
            f"p99 {r['p99_ms']:.2f} ms  non-2xx {r['errors']:.0f}"
        )
    if commits:
        print(
            f"  group commit: {ops:.0f} writes in {commits:.0f} commits "
            f"= {ops / commits:.1f} writes per fsync"
        )
    print(f"  baseline sqlite3 direct, one row per commit (FULL): {base['writes']:9.0f} writes/s")
    print(f"  baseline sqlite3 direct, point reads              : {base['reads']:9.0f} reads/s")
    print(
        f"  ratio save/baseline-writes {save['rps'] / base['writes']:.2f}   "
        f"get/baseline-reads {get['rps'] / base['reads']:.3f}"
    )


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


if __name__ == "__main__":
    main()
