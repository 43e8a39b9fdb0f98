"""Publish throughput through the sidecar vs a bare paho publisher, on one private mosquitto.

Measured in one run, on the same broker, with a bare paho subscriber process counting arrivals:
- baseline: a bare paho-mqtt QoS 1 publisher in its own process, 200-byte payloads, 100 in
  flight, no durability at all;
- HTTP single publishes: ``wrk`` (C, its own process) POSTing 200-byte JSON to
  ``/v1.0/publish``; every 204 means the message was fsynced into the outbox;
- HTTP bulk publishes: ``wrk`` POSTing 100 entries per request to the bulk endpoint;
- gRPC single publishes: ``grpc_bench``'s Python client processes (2, ``PublishEvent``);
- bytes written to disk per message (``/proc/PID/io`` write_bytes of the sidecar);
- drain rate of a backlog: broker stopped, N messages published (acknowledged into the outbox),
  broker started, time until the outbox is empty and the subscriber has them all.
Ratios are against the baseline of the same round, since this machine is noisy; ``--repeat``
rounds (baseline and ours interleaved) give min/median/max.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

from bench._pair import write_bytes
from bench._sidecar import mqtt_component, start
from tests.support.mosquitto import Mosquitto

PAYLOAD = json.dumps({"sensor": "t1", "celsius": 21.5, "pad": "x" * 150})

SUBSCRIBER = textwrap.dedent("""
    import sys, time, paho.mqtt.client as mqtt
    port, topic, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    n = 0
    def on_message(c, u, m):
        global n
        n += 1
    def on_connect(c, u, flags, rc, props):
        c.subscribe(topic, qos=1)  # again after every reconnect: the broker may have restarted
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-sub", clean_session=False)
    c.on_message = on_message
    c.on_connect = on_connect
    c.connect("127.0.0.1", port)
    c.loop_start()
    print("ready", flush=True)
    while True:
        time.sleep(0.2)
        with open(out + ".tmp", "w") as f:
            f.write(str(n))
        import os; os.replace(out + ".tmp", out)
""")

PUBLISHER = textwrap.dedent("""
    import sys, time, threading, paho.mqtt.client as mqtt
    port, topic, seconds = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    payload = sys.argv[4].encode()
    window = threading.Semaphore(100)
    acked = 0
    def on_publish(c, u, mid, rc, props):
        global acked
        acked += 1
        window.release()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-pub")
    c.on_publish = on_publish
    c.max_inflight_messages_set(100)
    c.connect("127.0.0.1", port)
    c.loop_start()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        window.acquire()
        c.publish(topic, payload, qos=1)
    time.sleep(0.5)
    print(acked / seconds)
""")


def arrived(path: Path) -> int:
    try:
        return int(path.read_text() or 0)
    except (OSError, ValueError):
        return 0


def wait_count(path: Path, target: int, limit_s: float) -> float:
    start = time.monotonic()
    while arrived(path) < target and time.monotonic() - start < limit_s:
        time.sleep(0.05)
    return time.monotonic() - start


def wrk(url: str, body: str, seconds: int, conns: int, work: Path) -> float:
    script = work / "pub.lua"
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(body)}\n"
    )
    out = subprocess.run(
        ["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if bad:
        print(f"  (wrk saw {bad.group(1)} non-2xx replies)")
    return float(m.group(1)) if m else 0.0


def outbox_count(data: Path) -> int:
    out = subprocess.run(
        [sys.executable, "-m", "edge_runtime", "outbox", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return sum(int(line.split()[1]) for line in out.splitlines()[1:] if line.split()[1:2])


def baseline_run(broker: Mosquitto, counter: Path, seconds: int) -> tuple[float, float]:
    """(acked msg/s, end-to-end msg/s) of the bare paho publisher."""
    before_n = arrived(counter)
    acked = float(subprocess.run(
        [sys.executable, "-c", PUBLISHER, str(broker.port), "bench/base", str(seconds), PAYLOAD],
        capture_output=True, text=True, check=True,
    ).stdout.strip())
    drain = wait_count(counter, before_n + int(acked * seconds), 120)
    return acked, (arrived(counter) - before_n) / (seconds + drain)


def grpc_run(work: Path, target: str, seconds: int, inflight: int) -> float:
    """Accepted single publishes/s over gRPC (2 Python client processes, grpc_bench's)."""
    env = {**os.environ, "BENCH_PUBSUB": "mqtt", "BENCH_TOPIC": "bench/grpc"}
    outs = [str(work / f"grpc-{i}.json") for i in range(2)]
    procs = [subprocess.Popen([sys.executable, "-m", "bench.grpc_bench", "--client", target,
                               "publish", str(seconds), str(max(1, inflight // 2)), out],
                              env=env) for out in outs]
    n = 0
    for proc, out in zip(procs, outs, strict=True):
        if proc.wait() != 0:
            raise RuntimeError("a gRPC client process failed")
        result = json.loads(Path(out).read_text())
        n += result["n"]
        if result["errors"]:
            print(f"  (gRPC clients saw {result['errors']} errors)")
    return n / seconds


def mmm(values: list[float]) -> str:
    """min/median/max."""
    return "/".join(f"{v:.0f}" for v in (min(values), statistics.median(values), max(values)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=1, help="rounds (min/median/max)")
    ap.add_argument("--backlog", type=int, default=100_000)
    ap.add_argument("--connections", type=int, default=100,
                    help="concurrent HTTP publishers (default: the baseline's 100 in flight)")
    ap.add_argument("--no-grpc", action="store_true", help="skip the gRPC publish round")
    args = ap.parse_args()
    r: dict[str, list[float]] = {}

    def keep(name: str, value: float) -> None:
        r.setdefault(name, []).append(value)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # No cap on the subscriber's queue: mosquitto's default (1000) would drop messages
        # whenever the counting subscriber falls behind, and the counts would be wrong.
        broker = Mosquitto(work / "broker", extra_config="max_queued_messages 0")
        broker.start()
        counter = work / "count"
        sub = subprocess.Popen(
            [sys.executable, "-c", SUBSCRIBER, str(broker.port), "bench/#", str(counter)],
            stdout=subprocess.PIPE,
        )
        assert sub.stdout is not None
        sub.stdout.readline()
        comp = work / "sidecar"
        (comp / "components").mkdir(parents=True)
        (comp / "components" / "mqtt.yaml").write_text(mqtt_component(broker.url, "bench-sidecar"))
        entries = json.dumps([{"entryId": str(i), "event": json.loads(PAYLOAD),
                               "contentType": "application/json"} for i in range(100)])
        try:
            proc, port, _ = start(comp)
            grpc_port = json.loads((comp / "data" / "runtime.json").read_text())["ports"]["grpc"]
            try:
                for _ in range(args.repeat):
                    # The baseline counted like ours: arrivals at the subscriber over the run
                    # plus the time the subscriber needs to catch up (not the publisher's ack
                    # rate, which mosquitto's unbounded queue would flatter).
                    acked, base = baseline_run(broker, counter, args.seconds)
                    keep("base_acked", acked)
                    keep("base", base)
                    before_n, before_w = arrived(counter), write_bytes(proc.pid)
                    single = wrk(f"http://127.0.0.1:{port}/v1.0/publish/mqtt/bench/single",
                                 PAYLOAD, args.seconds, args.connections, work)
                    drain_s = wait_count(counter, before_n + int(single * args.seconds), 60)
                    keep("single", single)
                    keep("e2e_single", (arrived(counter) - before_n) / (args.seconds + drain_s))
                    keep("per_msg", (write_bytes(proc.pid) - before_w)
                         / max(arrived(counter) - before_n, 1))
                    keep("ratio_single", r["e2e_single"][-1] / base)
                    before_n = arrived(counter)
                    bulk_rps = wrk(
                        f"http://127.0.0.1:{port}/v1.0-alpha1/publish/bulk/mqtt/bench/bulk",
                        entries, args.seconds, 8, work)
                    bulk_drain = wait_count(counter, before_n + int(bulk_rps * 100 * args.seconds),
                                            120)
                    keep("bulk", bulk_rps * 100)
                    keep("e2e_bulk", (arrived(counter) - before_n) / (args.seconds + bulk_drain))
                    keep("ratio_bulk", r["e2e_bulk"][-1] / base)
                    if not args.no_grpc:
                        before_n = arrived(counter)
                        g = grpc_run(work, f"127.0.0.1:{grpc_port}", args.seconds,
                                     args.connections)
                        g_drain = wait_count(counter, before_n + int(g * args.seconds), 60)
                        keep("grpc", g)
                        keep("e2e_grpc", (arrived(counter) - before_n) / (args.seconds + g_drain))
                        keep("ratio_grpc", r["e2e_grpc"][-1] / base)
                # Backlog drain: broker down, publish, broker up.
                broker.stop()
                chunk = [{"entryId": str(i), "event": json.loads(PAYLOAD),
                          "contentType": "application/json"} for i in range(500)]
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
                    for _ in range(args.backlog // 500):
                        c.post("/v1.0-alpha1/publish/bulk/mqtt/bench/backlog",
                               json=chunk).raise_for_status()
                before_n = arrived(counter)
                broker.start()
                drained = wait_count(counter, before_n + args.backlog, 300)
                got = arrived(counter) - before_n
            finally:
                proc.terminate()
                proc.wait()
        finally:
            sub.kill()
            broker.stop()
    print(
        f"pubsub bench: mosquitto on loopback, 200-byte payloads, {args.seconds}s per run, "
        f"{args.repeat} round(s) (min/median/max), {os.cpu_count()} cores shared by every process"
    )
    print(f"  baseline bare paho QoS1 publisher (100 in flight, no durability): acked "
          f"{mmm(r['base_acked'])} msg/s; end to end {mmm(r['base'])} msg/s")
    print(f"  HTTP single publish (wrk -c{args.connections}), fsync per ack: "
          f"{mmm(r['single'])} msg/s; end to end {mmm(r['e2e_single'])} msg/s  "
          f"ratio {mmm2(r['ratio_single'])}")
    print(f"  HTTP bulk publish (100 per request, wrk -c8): {mmm(r['bulk'])} msg/s; "
          f"end to end {mmm(r['e2e_bulk'])} msg/s  ratio {mmm2(r['ratio_bulk'])}")
    if "grpc" in r:
        print(f"  gRPC single publish (2 Python client processes, {args.connections} in flight):"
              f" {mmm(r['grpc'])} msg/s; end to end {mmm(r['e2e_grpc'])} msg/s  "
              f"ratio {mmm2(r['ratio_grpc'])}")
    print(f"  disk writes per message (HTTP single publishes): {mmm(r['per_msg'])} bytes")
    print(
        f"  backlog of {args.backlog}: {got} delivered in {drained:.1f}s after the broker "
        f"came back = {got / max(drained, 1e-9):.0f} msg/s"
    )


def mmm2(values: list[float]) -> str:
    """min/median/max of ratios."""
    return "/".join(f"{v:.2f}" for v in (min(values), statistics.median(values), max(values)))


if __name__ == "__main__":
    main()
