"""Idle memory (RSS and PSS) and start-to-healthy time of the sidecar, per profile, against a
bare ``python3 -c 'import asyncio'`` in the same run (issue 8).

For each profile (``bench/_footprint.py``: ``lean`` and ``full``):
- start to healthy: ``--starts`` starts, from spawn to ``GET /v1.0/healthz/outbound`` 204,
  the data dir kept across starts (a device restarting; the first start creates the databases);
- idle memory: one more start, a little traffic (``--traffic`` state saves and publishes over
  HTTP, so the paths are warm), ``--warmup`` seconds, then RSS and PSS (``/proc/PID/smaps_rollup``)
  sampled every ``--interval`` seconds for ``--window`` seconds: min / median / max.

The baseline (start until its first line, idle RSS/PSS sampled over the same window) runs in the
same invocation; the ratios are against it. A private mosquitto and, for ``full``, a local cloud
server run alongside. ``make bench`` runs a 20 s window; ``make bench-full`` the 60 s one.
Figures are MiB (1024 x 1024 bytes); the targets of issue 8 are read as MiB.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench import _footprint
from bench._footprint import (
    PROFILES,
    Profile,
    as_after_boot,
    bare_start,
    cloud_server,
    last_cpu,
    rss_pss_kib,
    sidecar_env,
    spread,
    start,
    stop,
    threads,
    write_resources,
)
from tests.support.mosquitto import Mosquitto


def traffic(port: int, n: int) -> None:
    """``n`` state saves and ``n`` publishes (to ``sensors/t``: the cloud's topics take it)."""
    base = f"http://127.0.0.1:{port}/v1.0"
    with httpx.Client(timeout=10) as c:
        for i in range(n):
            c.post(f"{base}/state/statestore", json=[{"key": f"k{i % 10}", "value": {"n": i}}])
            c.post(f"{base}/publish/pubsub/sensors/t", json={"n": i, "pad": "x" * 150})


def sample(pid: int, window: float, interval: float) -> tuple[list[int], list[int]]:
    """RSS and PSS samples (KiB) of ``pid`` over ``window`` seconds."""
    rss: list[int] = []
    pss: list[int] = []
    end = time.monotonic() + window
    while True:
        r, p = rss_pss_kib(pid)
        rss.append(r)
        pss.append(p)
        if time.monotonic() + interval > end:
            return rss, pss
        time.sleep(interval)


class Row:
    """The figures of one profile (or of the baseline)."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.rss: list[int] = []
        self.pss: list[int] = []
        self.starts: list[float] = []
        self.cpu: list[float] = []
        self.threads = 0

    def rss_mib(self) -> float:
        return statistics.median(self.rss) / 1024

    def start_ms(self) -> float:
        return statistics.median(self.starts) * 1000

    def cpu_ms(self) -> float:
        return statistics.median(self.cpu) * 1000


def measure(
    profile: Profile, tmp: Path, env: dict[str, str], values: dict[str, str],
    args: argparse.Namespace, label: str = "",
) -> Row:
    work = tmp / (profile.name + label.replace(" ", "-"))
    res = write_resources(profile, work, values)
    row = Row(profile.title + label)
    for _ in range(args.starts):
        proc, _port, elapsed = start(profile, res, work / "data", env, values["client"])
        row.starts.append(elapsed)
        row.cpu.append(last_cpu.pop(proc.pid))
        stop(proc)
    proc, port, _ = start(profile, res, work / "data", env, values["client"])
    try:
        traffic(port, args.traffic)
        time.sleep(args.warmup)
        row.rss, row.pss = sample(proc.pid, args.window, args.interval)
        row.threads = threads(proc.pid)
    finally:
        stop(proc)
    return row


def baseline_starts(env: dict[str, str], args: argparse.Namespace) -> Row:
    """The baseline's start times (run alone: start times depend on the CPU)."""
    row = Row("bare python3 -c 'import asyncio' (baseline)")
    for _ in range(args.starts):
        proc, elapsed = bare_start(env)
        row.starts.append(elapsed)
        row.cpu.append(last_cpu.pop(proc.pid))
        proc.kill()
        proc.wait()
    return row


def baseline_idle(row: Row, env: dict[str, str], args: argparse.Namespace) -> None:
    """The baseline's idle RSS/PSS (sampled while a profile runs: RSS does not depend on the
    CPU the two share, and the run stays short)."""
    proc, _ = bare_start(env)
    try:
        time.sleep(min(args.warmup, 2))
        row.rss, row.pss = sample(proc.pid, args.window, args.interval)
        row.threads = threads(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def fmt(values: list[int] | list[float], scale: float, width: int = 5) -> str:
    """``min median max`` of ``values`` times ``scale``."""
    lo, mid, hi = spread([v * scale for v in values])
    return f"{lo:{width}.1f} {mid:{width}.1f} {hi:{width}.1f}"


def report(rows: list[Row], base: Row, targets: dict[str, float | None], args: argparse.Namespace
           ) -> None:
    print(f"memory bench: idle RSS/PSS sampled every {args.interval:g} s for {args.window:g} s "
          f"after {args.traffic} saves + {args.traffic} publishes and {args.warmup:g} s of "
          f"warm-up; start to healthy over {args.starts} starts; MiB, min median max")
    print(f"  {'profile':52s} {'RSS MiB':>17s}  {'PSS MiB':>17s}  {'start ms':>17s}  "
          f"{'start CPU ms':>17s}  thr  target")
    if args.python:
        print(f"  (interpreter: {args.python})")
    for row in [*rows, base]:
        target = targets.get(row.title)
        verdict = ""
        if target is not None:
            ok = "ok" if row.rss_mib() < target else "OVER"
            verdict = f"RSS < {target:g}: {ok}"
        print(f"  {row.title[:52]:52s} {fmt(row.rss, 1 / 1024)}  {fmt(row.pss, 1 / 1024)}  "
              f"{fmt(row.starts, 1000)}  {fmt(row.cpu, 1000)}  {row.threads:3d}  {verdict}")
    for row in rows:
        d_rss, d_ms = row.rss_mib() - base.rss_mib(), row.start_ms() - base.start_ms()
        r_rss, r_ms = row.rss_mib() / base.rss_mib(), row.start_ms() / base.start_ms()
        r_cpu = row.cpu_ms() / base.cpu_ms()
        print(f"  ratio to baseline, {row.title[:30]:30s}: RSS {r_rss:4.2f}x (+{d_rss:.1f} MiB)"
              f"  start {r_ms:4.1f}x (+{d_ms:.0f} ms)  start CPU {r_cpu:4.1f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--profile", action="append", choices=sorted(PROFILES),
                   help="repeatable; default: lean and full")
    p.add_argument("--window", type=float, default=60.0, help="seconds of idle sampling (60)")
    p.add_argument("--warmup", type=float, default=10.0, help="seconds before sampling (10)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between samples (1)")
    p.add_argument("--starts", type=int, default=5, help="starts timed per profile (5)")
    p.add_argument("--traffic", type=int, default=100, help="saves and publishes before idling")
    p.add_argument("--arena-max", type=int, default=None, metavar="N",
                   help="also run each profile with MALLOC_ARENA_MAX=N (set from outside, as "
                        "the systemd unit and the Dockerfile would)")
    p.add_argument("--python", default=None,
                   help="interpreter of the sidecars and the baseline (default: this one); "
                        "e.g. a venv with only the runtime dependencies, as on a device")
    args = p.parse_args()
    if args.python:
        _footprint.PYTHON[:] = [args.python]
    names = args.profile or ["lean", "full"]
    # Before anything maps them: the libraries come into memory as on a booted device.
    print(f"(page cache of {as_after_boot(_footprint.PYTHON[0])} shared objects dropped: "
          f"the sidecars map them as after a boot)")
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp_s:
        tmp = Path(tmp_s)
        env = sidecar_env(tmp)
        broker = Mosquitto(tmp / "broker")
        broker.start()
        try:
            need_cloud = any(PROFILES[n].needs_cloud for n in names)
            with cloud_server(tmp, env) if need_cloud else contextlib.nullcontext("") as cloud:
                values = {"broker": broker.url, "cloud": cloud, "client": "bench"}
                # Warm-up starts, not counted: they write the bytecode caches.
                for n in names:
                    w = tmp / f"warm-{n}"
                    proc, _, _ = start(PROFILES[n], write_resources(PROFILES[n], w, values),
                                       w / "data", env, "warm")
                    stop(proc)
                bare_start(env)[0].kill()
                rows: list[Row] = []
                targets: dict[str, float | None] = {}
                base = baseline_starts(env, args)
                t = threading.Thread(target=baseline_idle, args=(base, env, args))
                t.start()
                for n in names:
                    prof = PROFILES[n]
                    rows.append(measure(prof, tmp, env, {**values, "client": f"bench-{n}"}, args))
                    targets[rows[-1].title] = prof.target_mib
                    if args.arena_max is not None:
                        label = f" MALLOC_ARENA_MAX={args.arena_max}"
                        arena_env = {**env, "MALLOC_ARENA_MAX": str(args.arena_max)}
                        rows.append(measure(prof, tmp, arena_env,
                                            {**values, "client": f"bench-{n}-a"}, args, label))
                t.join()
                report(rows, base, targets, args)
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
