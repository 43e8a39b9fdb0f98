"""Start-to-healthy time and idle RSS of the sidecar, against a bare Python interpreter.

The baseline is ``python3 -c 'import time; time.sleep(...)'`` started the same way, so the
ratio shows what the sidecar adds on top of the interpreter on this machine.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._sidecar import rss_kib, start

RUNS = 5


def bare_python() -> tuple[float, int]:
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; print(flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    elapsed = time.monotonic() - started
    time.sleep(0.5)
    rss = rss_kib(proc.pid)
    proc.kill()
    proc.wait()
    return elapsed, rss


def main() -> None:
    times, rss = [], []
    for i in range(RUNS):
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
            proc, _port, elapsed = start(Path(tmp) / str(i))
            time.sleep(2)  # idle
            rss.append(rss_kib(proc.pid))
            proc.terminate()
            proc.wait()
            times.append(elapsed)
    base = [bare_python() for _ in range(RUNS)]
    t, r = statistics.median(times), statistics.median(rss)
    bt, br = statistics.median(b[0] for b in base), statistics.median(b[1] for b in base)
    print(f"startup bench ({RUNS} runs, medians, one state.sqlite component, metrics on)")
    print(f"  sidecar start-to-healthy : {t * 1000:7.0f} ms   idle RSS {r / 1024:6.1f} MiB")
    print(f"  bare python3 baseline    : {bt * 1000:7.0f} ms   idle RSS {br / 1024:6.1f} MiB")
    print(f"  ratio                    : {t / bt:7.1f} x        {r / br:6.1f} x")


if __name__ == "__main__":
    main()
