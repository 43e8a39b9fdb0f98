"""Steady state: memory across many messages, publish latency with a big backlog, drain rate.

One publisher sidecar (``full`` durability) on a private mosquitto, a bare paho subscriber
process counting arrivals. Three measurements:

1. memory: ``--messages`` (default 1,000,000) ~200-byte events published through HTTP bulk
   publish (``--batch`` per request) and relayed to the subscriber; the sidecar's RSS is
   sampled as it goes. Growth is the last sample against the one taken after the first tenth
   (warm-up: caches, the WAL reaching its size).
2. publish latency with a backlog: the broker is stopped (so rows stay), ``--probes`` single
   publishes one after another, timed by the client, with an empty outbox; then the sidecar is
   stopped, ``--backlog`` rows (default 1,000,000) are added to its outbox with direct SQL, it
   is started again and the same probes are timed. The empty outbox is the baseline.
3. drain rate: the broker is started again; time until the subscriber has every row.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench._pair import pct
from bench._sidecar import mqtt_component, rss_kib, start
from bench.pubsub_bench import PAYLOAD, SUBSCRIBER, arrived, wait_count
from tests.support.mosquitto import Mosquitto

TABLE = "outbox_pubsub_mqtt"


def probe(client: httpx.Client, n: int) -> list[float]:
    """``n`` single publishes in a row; their latencies in seconds."""
    out = []
    for _ in range(n):
        t = time.perf_counter()
        client.post("/v1.0/publish/mqtt/steady/probe", content=PAYLOAD,
                     headers={"content-type": "application/json"}).raise_for_status()
        out.append(time.perf_counter() - t)
    return out


def add_backlog(db: Path, rows: int) -> None:
    """Copy the outbox's first row ``rows`` times, in one transaction (direct SQL)."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("BEGIN")
        conn.execute(
            f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
            f" INSERT INTO {TABLE}(topic, payload, metadata, size, created_at)"
            f" SELECT t.topic, t.payload, t.metadata, t.size, t.created_at FROM n,"
            f" (SELECT * FROM {TABLE} ORDER BY seq LIMIT 1) AS t", (rows,))
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--backlog", type=int, default=1_000_000)
    ap.add_argument("--probes", type=int, default=500)
    ap.add_argument("--dir", default="/var/tmp",  # noqa: S108 - a private mkdtemp inside
                    help="where the data dir goes: a real disk, not tmpfs (default /var/tmp)")
    args = ap.parse_args()
    entries = json.dumps([{"entryId": str(i), "event": json.loads(PAYLOAD),
                           "contentType": "application/json"} for i in range(args.batch)])
    with tempfile.TemporaryDirectory(dir=args.dir, prefix=".steady-bench-") as tmp:
        work = Path(tmp)
        broker = Mosquitto(work / "broker", extra_config="max_queued_messages 0")
        broker.start()
        counter = work / "count"
        sub = subprocess.Popen(
            [sys.executable, "-c", SUBSCRIBER, str(broker.port), "steady/#", str(counter)],
            stdout=subprocess.PIPE)
        assert sub.stdout is not None
        sub.stdout.readline()
        comp = work / "sidecar"
        (comp / "components").mkdir(parents=True)
        # Room for the backlog plus the probes: the default limit is 1,000,000 messages.
        room = args.backlog + args.messages + 4 * args.probes + 1000
        (comp / "components" / "mqtt.yaml").write_text(
            mqtt_component(broker.url, "steady")
            + f'  - {{name: maxMessages, value: "{room}"}}\n'
            + f'  - {{name: maxBytes, value: "{room * 1024}"}}\n')
        procs: list[subprocess.Popen[bytes]] = []
        try:
            proc, port, _ = start(comp, "--disable-grpc-api")
            procs.append(proc)
            # 1. memory across --messages
            samples: list[tuple[int, int]] = []
            sent, t0 = 0, time.monotonic()
            every = max(args.messages // 20, args.batch)
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
                while sent < args.messages:
                    c.post("/v1.0-alpha1/publish/bulk/mqtt/steady/mem", content=entries,
                           headers={"content-type": "application/json"}).raise_for_status()
                    sent += args.batch
                    # Keep the outbox from growing without end: wait for the relay now and then.
                    if sent % every < args.batch:
                        wait_count(counter, sent - every, 300)
                        samples.append((sent, rss_kib(proc.pid)))
            wait_count(counter, sent, 300)
            pub_s = time.monotonic() - t0
            samples.append((sent, rss_kib(proc.pid)))
            warm = next(kib for n, kib in samples if n >= args.messages // 10)
            # 2. latency, empty outbox vs backlog (broker down, so nothing drains)
            broker.stop()
            time.sleep(0.5)
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
                empty = probe(c, args.probes)
            proc.terminate()
            proc.wait()
            t = time.monotonic()
            add_backlog(comp / "data" / "outbox.db", args.backlog)
            build_s = time.monotonic() - t
            proc, port, start_s = start(comp, "--disable-grpc-api")
            procs.append(proc)
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
                full = probe(c, args.probes)
            # 3. drain
            before = arrived(counter)
            total = args.backlog + 2 * args.probes
            broker.start()
            drain_s = wait_count(counter, before + total, 1800)
            got = arrived(counter) - before
            rss_after = rss_kib(proc.pid)
        finally:
            for p in procs:
                p.terminate()
                p.wait()
            sub.kill()
            broker.stop()
    print(f"steady bench: {args.messages} messages (bulk of {args.batch}), backlog "
          f"{args.backlog} rows, {args.probes} probes")
    print(f"  memory: RSS {warm / 1024:.1f} MiB after the first tenth, "
          f"{samples[-1][1] / 1024:.1f} MiB after {samples[-1][0]} messages "
          f"(growth {(samples[-1][1] / warm - 1) * 100:+.1f} %; min/median/max "
          f"{min(s[1] for s in samples) / 1024:.1f}/"
          f"{statistics.median(s[1] for s in samples) / 1024:.1f}/"
          f"{max(s[1] for s in samples) / 1024:.1f} MiB); {sent / pub_s:.0f} msg/s end to end")
    print("  RSS samples (messages: MiB): " + ", ".join(
        f"{n // 1000}k: {kib / 1024:.1f}" for n, kib in samples))
    print(f"  publish latency, empty outbox (baseline): p50 {pct(empty, 0.5):.2f} ms "
          f"p99 {pct(empty, 0.99):.2f} ms")
    print(f"  publish latency, {args.backlog}-row backlog: p50 {pct(full, 0.5):.2f} ms "
          f"p99 {pct(full, 0.99):.2f} ms   ratio p50 {pct(full, 0.5) / pct(empty, 0.5):.2f} "
          f"p99 {pct(full, 0.99) / pct(empty, 0.99):.2f}  (backlog built in {build_s:.1f}s; "
          f"restart to healthy {start_s:.2f}s)")
    print(f"  drain after the outage: {got}/{total} in {drain_s:.1f}s = "
          f"{got / max(drain_s, 1e-9):.0f} msg/s; RSS after {rss_after / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
