"""Cloud sync figures: records/s one device pushes, bytes on the wire per record (CBOR in
protobuf with gzip, against a JSON baseline in the same run), and cloud ingest with 100
simulated devices against each store: SQLite, and PostgreSQL in a throwaway cluster
(tests/support/postgres.py; the row says why when it cannot run). Everything on loopback, in
one process.

    python -m bench.cloud_bench [--records 20000] [--devices 100] [--per-device 500]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from edge_runtime.cloudsync.changelog import ChangeLog
from edge_runtime.cloudsync.client import Credentials, SyncClient
from edge_runtime.cloudsync.desired import DesiredStore
from edge_runtime.cloudsync.hlc import HLC
from edge_runtime.cloudsync.protocol import sync_pb2, sync_pb2_grpc
from edge_runtime.cloudsync.server.main import CloudOptions, CloudServer
from edge_runtime.cloudsync.sources import ChangeLogSource, encode_value
from edge_runtime.cloudsync.status import SyncStatus
from edge_runtime.config.manifest import ComponentManifest, Mark
from edge_runtime.config.metadata import ResolvedMetadata, Value
from edge_runtime.pubsub.mqtt.backoff import Backoff
from edge_runtime.registry import ComponentContext
from edge_runtime.state import SetRequest
from edge_runtime.state.keys import KeyPrefix
from edge_runtime.state.sqlite import store as sqlite_store
from tests.support import postgres

TOKEN = "bench"  # noqa: S105 - loopback only


def sample(i: int) -> bytes:
    """A typical telemetry value."""
    return json.dumps({"sensor": f"t{i % 16}", "celsius": 20 + (i % 50) / 10,
                       "humidity": 40 + i % 30, "ok": True}).encode()


def wire_sizes(n: int = 500) -> tuple[float, float, float]:
    """Bytes per record: protobuf+CBOR+gzip, JSON, JSON+gzip (one batch of ``n``)."""
    hlc = HLC()
    batch = sync_pb2.Batch(stream="state:statestore", epoch="0" * 32, records=[
        sync_pb2.Record(kind=1, target="statestore", key=f"k{i}", seq=i + 1, hlc=hlc.now(),
                        payload=encode_value(sample(i), False)) for i in range(n)])
    ours = len(gzip.compress(batch.SerializeToString()))
    doc = json.dumps({"stream": "state:statestore", "epoch": "0" * 32, "records": [
        {"kind": "upsert", "target": "statestore", "key": f"k{i}", "seq": i + 1,
         "hlc": hlc.now(), "value": json.loads(sample(i))} for i in range(n)]}).encode()
    return ours / n, len(doc) / n, len(gzip.compress(doc)) / n


async def _cloud(root: Path, store_url: str | None = None) -> CloudServer:
    server = CloudServer(CloudOptions(store_url=store_url or f"sqlite://{root / 'cloud.db'}",
                                      token=TOKEN,
                                      device_token=TOKEN, grpc_port=0, http_port=0,
                                      host="127.0.0.1"))
    await server.start()
    return server


async def device_push(root: Path, records: int) -> float:
    """Records/s from a change-log backlog of ``records`` until the cloud acked them all."""
    manifest = ComponentManifest("statestore", "state.sqlite", "v1", Mark("bench", 1))
    ctx = ComponentContext(manifest, ResolvedMetadata(
        [Value("connectionString", "state.db", Mark("bench", 2))]), "app", root / "dev")
    store = sqlite_store.create(ctx)
    await store.init()
    log = ChangeLog("statestore", HLC())
    store.log_changes(log)
    for start in range(0, records, 500):
        await store.multi([SetRequest(f"app||k{i}", sample(i))
                           for i in range(start, min(records, start + 500))])
    cloud = await _cloud(root / "cloud1")
    desired = DesiredStore(root / "dev" / "cloud.db")
    await desired.open()
    source = ChangeLogSource(store.database, log, KeyPrefix("app"))
    client = SyncClient(endpoint=f"127.0.0.1:{cloud.ports['grpc']}", device_id="bench",
                        credentials=Credentials(token=TOKEN), sources=[source],
                        desired=desired, hlc=HLC(), status=SyncStatus("cloud", "bench", ""),
                        backoff=Backoff(0.1, 1.0))
    started = time.perf_counter()
    client.start()
    while await source.backlog():  # noqa: ASYNC110 - polls a count in the database
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - started
    await client.stop()
    await desired.close()
    await store.close()
    await cloud.stop()
    return records / elapsed


async def _fake_device(endpoint: str, device: str, per_device: int, batch: int) -> None:
    async with grpc.aio.insecure_channel(endpoint, compression=grpc.Compression.Gzip) as ch:
        stub = sync_pb2_grpc.CloudSyncStub(ch)  # type: ignore[no-untyped-call]
        call = stub.Sync(metadata=(("authorization", f"Bearer {TOKEN}"),))
        await call.write(sync_pb2.DeviceMessage(hello=sync_pb2.Hello(device_id=device)))
        await call.read()  # welcome
        hlc = HLC()
        seq = 0
        while seq < per_device:
            rows = [sync_pb2.Record(kind=1, target="s", key=f"k{seq + i}", seq=seq + i + 1,
                                    hlc=hlc.now(), payload=encode_value(sample(i), False))
                    for i in range(min(batch, per_device - seq))]
            await call.write(sync_pb2.DeviceMessage(batch=sync_pb2.Batch(
                stream="state:s", epoch="e", records=rows)))
            seq += len(rows)
            msg: Any = await call.read()
            while msg.WhichOneof("body") != "ack":
                msg = await call.read()
        await call.done_writing()


async def fleet_ingest(root: Path, devices: int, per_device: int,
                       store_url: str | None = None) -> float:
    """Records/s the cloud applies with ``devices`` streams sending at once."""
    cloud = await _cloud(root / "cloud2", store_url)
    endpoint = f"127.0.0.1:{cloud.ports['grpc']}"
    started = time.perf_counter()
    await asyncio.gather(*(_fake_device(endpoint, f"d{i}", per_device, 100)
                           for i in range(devices)))
    elapsed = time.perf_counter() - started
    await cloud.stop()
    return devices * per_device / elapsed


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--records", type=int, default=20_000)
    p.add_argument("--devices", type=int, default=100)
    p.add_argument("--per-device", type=int, default=500)
    args = p.parse_args()
    ours, plain, plain_gz = wire_sizes()
    print(f"bytes per record on the wire: protobuf+CBOR+gzip {ours:.1f}, JSON {plain:.1f}"
          f" ({plain / ours:.1f}x ours), JSON+gzip {plain_gz:.1f} ({plain_gz / ours:.2f}x ours)")
    with tempfile.TemporaryDirectory() as tmp:
        rate = await device_push(Path(tmp), args.records)
        print(f"one device pushing a {args.records}-record backlog: {rate:,.0f} records/s")
        ingest = await fleet_ingest(Path(tmp), args.devices, args.per_device)
        print(f"cloud ingest, {args.devices} devices x {args.per_device} records (SQLite):"
              f" {ingest:,.0f} records/s")
        reason = postgres.unavailable()
        if reason is not None:
            print(f"cloud ingest (PostgreSQL): skipped: {reason}")
            return
        dsn = await asyncio.to_thread(postgres.cluster().create_db)
        ingest = await fleet_ingest(Path(tmp), args.devices, args.per_device, dsn)
        print(f"cloud ingest, {args.devices} devices x {args.per_device} records (PostgreSQL):"
              f" {ingest:,.0f} records/s")


if __name__ == "__main__":
    asyncio.run(main())
