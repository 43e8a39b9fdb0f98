"""State save, state get and publish over the gRPC API vs the HTTP API, in one run.

One sidecar process (``state.sqlite`` and an in-memory pub/sub, so a publish is an outbox
commit), the same operations and payloads on both APIs:

- HTTP load from ``wrk`` (C, its own process, ``-t2``), as ``state_bench.py`` does;
- gRPC load from ``--procs`` Python client processes (``grpc.aio`` with the ``dapr``
  package's raw stubs, uvloop when present), each keeping ``connections / procs`` calls in
  flight and timing every call.

No C gRPC load generator is installed here, so the gRPC clients are Python; to show they are
not what limits the figures, the same clients first run against a do-nothing gRPC server in
its own process ("client ceiling"). On a 2-core machine the load and the sidecar share the
CPUs, which the figures include. Prints ops/s, p50/p99 and the gRPC/HTTP ratio per operation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._sidecar import start
from bench.state_bench import run_wrk

PUBSUB = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: pubsub}
spec:
  type: pubsub.in-memory
  version: v1
"""
PAYLOAD = json.dumps({"sensor": "t1", "celsius": 21.5, "pad": "x" * 150})
KEYS = 5000
WARMUP_S = 0.5

SAVE_LUA = f"""
counter = 0
request = function()
  counter = counter + 1
  local key = "k" .. (counter % {KEYS})
  local body = '[{{"key":"' .. key .. '","value":{{"temp":21.5,"seq":' .. counter .. '}}}}]'
  return wrk.format("POST", "/v1.0/state/statestore", {{["Content-Type"]="application/json"}}, body)
end
"""
GET_LUA = f"""
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/v1.0/state/statestore/k" .. (counter % {KEYS}))
end
"""
PUBLISH_LUA = f"""
request = function()
  return wrk.format("POST", "/v1.0/publish/pubsub/bench",
    {{["Content-Type"]="application/json"}}, '{PAYLOAD}')
end
"""
LUA = {"save": SAVE_LUA, "get": GET_LUA, "publish": PUBLISH_LUA}


# ------------------------------------------------------------------ client process
def _request(op: str, n: int) -> Any:
    from dapr.proto.common.v1 import common_pb2
    from dapr.proto.runtime.v1 import pubsub_pb2, state_pb2

    if op == "save":
        item = common_pb2.StateItem(
            key=f"k{n % KEYS}", value=b'{"temp":21.5,"seq":%d}' % n,
            metadata={"contentType": "application/json"},
        )
        return state_pb2.SaveStateRequest(store_name="statestore", states=[item])
    if op == "get":
        return state_pb2.GetStateRequest(store_name="statestore", key=f"k{n % KEYS}")
    return pubsub_pb2.PublishEventRequest(
        # pubsub_bench points the clients at its MQTT component and topic
        pubsub_name=os.environ.get("BENCH_PUBSUB", "pubsub"),
        topic=os.environ.get("BENCH_TOPIC", "bench"), data=PAYLOAD.encode(),
        data_content_type="application/json",
    )


async def _client(target: str, op: str, seconds: float, inflight: int) -> dict[str, Any]:
    import grpc
    from dapr.proto.runtime.v1 import dapr_pb2_grpc

    async with grpc.aio.insecure_channel(target) as channel:
        stub = dapr_pb2_grpc.DaprStub(channel)  # type: ignore[no-untyped-call]
        call = {"save": stub.SaveState, "get": stub.GetState, "publish": stub.PublishEvent}[op]
        counter = 0
        latencies: list[float] = []
        errors = 0
        start_at = time.perf_counter() + WARMUP_S
        end_at = start_at + seconds

        async def worker() -> None:
            nonlocal counter, errors
            while (now := time.perf_counter()) < end_at:
                counter += 1
                try:
                    await call(_request(op, counter))
                except grpc.RpcError:
                    errors += 1
                if now >= start_at:
                    latencies.append(time.perf_counter() - now)

        await asyncio.gather(*(worker() for _ in range(inflight)))
    return {"n": len(latencies), "seconds": seconds, "lat": latencies, "errors": errors}


def client_main(target: str, op: str, seconds: float, inflight: int, out: str) -> None:
    """Entry point of one load process: writes its result as JSON to ``out``."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    Path(out).write_text(json.dumps(asyncio.run(_client(target, op, seconds, inflight))))


# ------------------------------------------------------------------ do-nothing server
def null_server_main(port_file: str) -> None:
    """A gRPC server answering the benchmarked RPCs with empty replies, at once."""
    import grpc
    from dapr.proto.runtime.v1 import dapr_pb2_grpc, state_pb2
    from google.protobuf import empty_pb2

    class Null(dapr_pb2_grpc.DaprServicer):
        # The servicer's signature, unused here: ARG002 (and N802 for the RPC names).
        async def SaveState(self, request: Any, context: Any) -> Any:  # noqa: N802, ARG002
            return empty_pb2.Empty()

        async def GetState(self, request: Any, context: Any) -> Any:  # noqa: N802, ARG002
            return state_pb2.GetStateResponse()

        async def PublishEvent(self, request: Any, context: Any) -> Any:  # noqa: N802, ARG002
            return empty_pb2.Empty()

    async def serve() -> None:
        server = grpc.aio.server()
        dapr_pb2_grpc.add_DaprServicer_to_server(Null(), server)  # type: ignore[no-untyped-call]
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        Path(port_file).write_text(str(port))  # noqa: ASYNC240 - once, before serving
        await server.wait_for_termination()

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve())


# ------------------------------------------------------------------ orchestration
def run_grpc(
    work: Path, target: str, op: str, seconds: float, procs: int, inflight: int
) -> dict[str, float]:
    """Run ``procs`` client processes at once; merged ops/s and latency percentiles."""
    each = str(max(1, inflight // procs))
    outs = [str(work / f"client-{op}-{i}.json") for i in range(procs)]
    running = [
        subprocess.Popen([sys.executable, "-m", "bench.grpc_bench", "--client", target, op,
                          str(seconds), each, out])
        for out in outs
    ]
    results = []
    for p, out in zip(running, outs, strict=True):
        if p.wait() != 0:
            raise RuntimeError(f"a gRPC client process failed ({p.returncode})")
        results.append(json.loads(Path(out).read_text()))
    latencies = sorted(x for r in results for x in r["lat"])
    if not latencies:
        raise RuntimeError("no gRPC call completed")
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "seconds": seconds,
        "rps": len(latencies) / seconds,
        "p50_ms": cuts[49] * 1000,
        "p99_ms": cuts[98] * 1000,
        "errors": float(sum(r["errors"] for r in results)),
    }


def client_ceiling(work: Path, seconds: float, procs: int, inflight: int) -> dict[str, float]:
    """The same clients against a do-nothing gRPC server: what they reach when the server
    does no work, and what that server's grpc.aio costs per call (the floor under ours)."""
    port_file = work / "null.port"
    server = subprocess.Popen([sys.executable, "-m", "bench.grpc_bench", "--null-server",
                               str(port_file)])
    try:
        while not port_file.exists() or not port_file.read_text():
            if server.poll() is not None:
                raise RuntimeError("the do-nothing server exited")
            time.sleep(0.01)
        target = f"127.0.0.1:{port_file.read_text()}"
        return measured(server.pid, lambda: run_grpc(work, target, "get", seconds, procs,
                                                      inflight))
    finally:
        server.terminate()
        server.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(pid: int, run: Any) -> dict[str, float]:
    """``run()``'s figures plus the sidecar's CPU microseconds per operation."""
    before = cpu_seconds(pid)
    result: dict[str, float] = run()
    used = cpu_seconds(pid) - before
    result["cpu_us"] = used / max(1.0, result["rps"] * result["seconds"]) * 1e6
    return result


def _row(name: str, g: dict[str, float], h: dict[str, float]) -> str:
    def cols(r: dict[str, float]) -> str:
        return f"{r['rps']:8.0f} {r['p50_ms']:7.2f} {r['p99_ms']:7.2f} {r['cpu_us']:6.0f}"

    return (
        f"  {name:<10} {cols(g)}  | {cols(h)}  |  {g['rps'] / h['rps']:5.2f}"
        f"   {g['cpu_us'] / h['cpu_us']:5.2f}"
        + (f"   (errors: gRPC {g['errors']:.0f}, HTTP non-2xx {h['errors']:.0f})"
           if g["errors"] or h["errors"] else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32,
                        help="requests in flight: wrk connections, and gRPC calls in all")
    parser.add_argument("--procs", type=int, default=2, help="gRPC client processes")
    parser.add_argument("--durability", default="full", choices=["full", "normal"])
    parser.add_argument("--client", nargs=5,
                        metavar=("TARGET", "OP", "SECONDS", "INFLIGHT", "OUT"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--null-server", metavar="PORT_FILE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        target, op, seconds, inflight, out = args.client
        client_main(target, op, float(seconds), int(inflight), out)
        return
    if args.null_server:
        null_server_main(args.null_server)
        return
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk (make bench installs it)")
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        work = Path(tmp)
        ceiling = client_ceiling(work, args.seconds / 2, args.procs, args.connections)
        (work / "components").mkdir()
        (work / "components" / "pubsub.yaml").write_text(PUBSUB)
        proc, port, _ = start(work, "--durability", args.durability)
        try:
            grpc_port = json.loads((work / "data/runtime.json").read_text())["ports"]["grpc"]
            target = f"127.0.0.1:{grpc_port}"
            results = {}
            for op in ("save", "get", "publish"):  # save first: get reads what it wrote
                g = measured(proc.pid, lambda op=op: run_grpc(
                    work, target, op, args.seconds, args.procs, args.connections))
                h = measured(proc.pid, lambda op=op: {
                    **run_wrk(port, LUA[op], args.seconds, args.connections, work),
                    "seconds": args.seconds,
                })
                results[op] = (g, h)
        finally:
            proc.terminate()
            proc.wait()
    print(
        f"gRPC vs HTTP bench: {args.seconds}s per run, {args.connections} requests in flight, "
        f"durability={args.durability}, {os.cpu_count()} cores shared by the load and the sidecar"
    )
    print(f"  HTTP load: wrk -t2 -c{args.connections}; gRPC load: {args.procs} Python grpc.aio "
          f"processes x {max(1, args.connections // args.procs)} calls in flight (raw stubs)")
    print(f"  gRPC client ceiling (same clients, a do-nothing grpc.aio server): "
          f"{ceiling['rps']:.0f} calls/s; that server's own CPU: {ceiling['cpu_us']:.0f} us/call")
    print("  (cpu: the sidecar's CPU microseconds per operation, from /proc; ratios gRPC/HTTP)")
    print("             gRPC ops/s  p50 ms  p99 ms    cpu  |   HTTP ops/s p50 ms  p99 ms    cpu"
          "  |  ops/s    cpu")
    for op, name in (("save", "state save"), ("get", "state get"), ("publish", "publish")):
        g, h = results[op]
        print(_row(name, g, h))


if __name__ == "__main__":
    main()
