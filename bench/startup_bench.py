"""Start-to-healthy time of the lean profile, and where it goes, against a bare interpreter.

Lean profile (``bench/_footprint.py``): ``--disable-grpc-api``, a SQLite store and an MQTT
pub/sub on a private mosquitto, cached bytecode (as on a device). Printed: wall time and CPU
time from spawn to ``GET /v1.0/healthz/outbound`` 204 over ``--starts`` starts (min / median /
max); the baseline ``python3 -c 'import asyncio'`` the same way in the same run, with the ratio;
then one start under ``python -X importtime``: the total import time and the packages that
take most of it (self time, grouped by top-level package; ours as ``edge_runtime``). The CPU
time is the figure to compare on shared cores: wall time grows with whatever else runs.
``bench/memory_bench.py`` times both profiles along with their memory.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from bench._footprint import (
    LEAN,
    bare_start,
    last_cpu,
    sidecar_env,
    spread,
    start,
    stop,
    write_resources,
)
from tests.support.mosquitto import Mosquitto


def import_times(log: str) -> tuple[float, list[tuple[float, str]]]:
    """(total seconds, [(seconds, package)] largest first) from ``-X importtime`` output."""
    by_pkg: dict[str, int] = {}
    for line in log.splitlines():
        if not line.startswith("import time:") or line.count("|") != 2:
            continue
        self_us, _cumulative, name = line[len("import time:"):].split("|")
        if not self_us.strip().isdigit():
            continue  # the header line
        pkg = name.strip().split(".")[0]
        by_pkg[pkg] = by_pkg.get(pkg, 0) + int(self_us)
    total = sum(by_pkg.values()) / 1e6
    return total, sorted(((us / 1e6, pkg) for pkg, us in by_pkg.items()), reverse=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--starts", type=int, default=10, help="starts timed (10)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp_s:
        tmp = Path(tmp_s)
        env = sidecar_env(tmp)
        broker = Mosquitto(tmp / "broker")
        broker.start()
        try:
            res = write_resources(LEAN, tmp / "lean", {"broker": broker.url, "client": "start"})
            data = tmp / "lean" / "data"
            stop(start(LEAN, res, data, env, "start")[0])  # writes the bytecode caches
            wall, cpu = [], []
            for _ in range(args.starts):
                proc, _port, elapsed = start(LEAN, res, data, env, "start")
                wall.append(elapsed)
                cpu.append(last_cpu.pop(proc.pid))
                stop(proc)
            b_wall, b_cpu = [], []
            for _ in range(args.starts):
                bare, elapsed = bare_start(env)
                b_wall.append(elapsed)
                b_cpu.append(last_cpu.pop(bare.pid))
                bare.kill()
                bare.wait()
            err = tmp / "importtime.txt"
            with err.open("wb") as out:
                proc, _port, _ = start(LEAN, res, data, env, "start", ("-X", "importtime"),
                                       stderr=out)
                stop(proc)
            total, top = import_times(err.read_text(errors="replace"))
        finally:
            broker.stop()

    def ms(values: list[float]) -> str:
        lo, mid, hi = spread(values)
        return f"{lo * 1000:6.0f} {mid * 1000:6.0f} {hi * 1000:6.0f}"

    print(f"startup bench: lean profile, {args.starts} starts, ms min median max")
    print(f"  sidecar start to healthy : wall {ms(wall)}   CPU {ms(cpu)}")
    print(f"  bare python3 asyncio     : wall {ms(b_wall)}   CPU {ms(b_cpu)}")
    print(f"  ratio (medians)          : wall {spread(wall)[1] / spread(b_wall)[1]:6.1f}x"
          f"               CPU {spread(cpu)[1] / spread(b_cpu)[1]:6.1f}x")
    print(f"  imports (one start under -X importtime, which slows them): {total * 1000:.0f} ms; "
          "largest: " + ", ".join(f"{pkg} {s * 1000:.0f}" for s, pkg in top[:8]))


if __name__ == "__main__":
    main()
