"""Disk full: the data dir on a small tmpfs of its own, a real sidecar publishing into its
outbox while the broker is down, until the disk is full.

Checked: publishes fail with 507 ``ERR_STORAGE_FULL`` over HTTP and ``RESOURCE_EXHAUSTED`` over
gRPC, state saves too, never another status; reads, metadata and health keep answering; when
space returns (a filler file deleted) publishing resumes; and once the broker is back every
publish acknowledged before, during and after the full disk arrives. Two ways to be full: the
sidecar's own free-space floor (it refuses while 8 MiB are left, measured at most once a
second) and the real ENOSPC from SQLite, when a filler takes the rest of the disk faster than
that. The ``--max-disk-mb`` budget is the same error with another message, checked last.

Needs root (``mount -t tmpfs``); skipped, saying why, where mounting is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from dapr.proto.runtime.v1 import dapr_pb2_grpc, pubsub_pb2

from tests.faults._storage import TOPIC, Counts, Recorder, drained, pubsub_component
from tests.support.components import SQLITE_STATESTORE
from tests.support.mosquitto import Mosquitto, require_mosquitto
from tests.support.sidecar import SidecarProcess

pytestmark = pytest.mark.broker

SIZE_MB = 24
PAD = "p" * 2000


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of SIZE_MB mounted at ``tmp_path/disk``; unmounted afterwards."""
    disk = tmp_path / "disk"
    disk.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m", "tmpfs", str(disk)],
                       capture_output=True, text=True, check=False)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(path: Path, leave_bytes: int) -> int:
    """Write ``path`` until the filesystem has about ``leave_bytes`` free; the size written."""
    st = os.statvfs(path.parent)
    size = max(0, st.f_bavail * st.f_frsize - leave_bytes)
    with path.open("wb") as f, contextlib.suppress(OSError):
        f.write(b"\0" * size)
    return size


class Flow:
    """Publishes one id at a time over HTTP, recording statuses and error codes."""

    def __init__(self, sidecar: SidecarProcess, counts: Counts) -> None:
        self.sidecar = sidecar
        self.counts = counts
        self.next = 0
        self.statuses: Counter[str] = Counter()
        self.messages: Counter[str] = Counter()  # of the 507s, by cause

    async def publish(self, c: httpx.AsyncClient) -> int:
        i = self.next
        self.next += 1
        self.counts.published += 1
        r = await c.post(f"/v1.0/publish/mqtt/{TOPIC}/0", json={"i": i, "pad": PAD})
        code = r.json().get("errorCode", "") if r.status_code >= 400 else ""
        self.statuses[f"{r.status_code} {code}".strip()] += 1
        if r.status_code == 507:
            msg = r.json()["message"]
            self.messages["ENOSPC (SQLITE_FULL)" if "database or disk is full" in msg
                          else "--max-disk-mb" if "--max-disk-mb" in msg
                          else "free-space floor" if "bytes free" in msg else msg] += 1
        if r.status_code == 204:
            self.counts.acknowledged.add(i)
        return r.status_code

    async def until_refused(self, c: httpx.AsyncClient, limit: int = 20_000) -> int:
        """Publish until a 507; how many were accepted first."""
        for accepted in range(limit):
            status = await self.publish(c)
            if status == 507:
                return accepted
            assert status == 204, f"status {status}: {self.statuses}"
        raise AssertionError(f"the disk never filled: {self.statuses}")


async def grpc_publish(sidecar: SidecarProcess) -> grpc.StatusCode:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{sidecar.ports['grpc']}") as channel:
        stub = dapr_pb2_grpc.DaprStub(channel)
        try:
            await stub.PublishEvent(pubsub_pb2.PublishEventRequest(
                pubsub_name="mqtt", topic=f"{TOPIC}/grpc", data=b'{"grpc": 1}',
                data_content_type="application/json"), timeout=10)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


async def grpc_refused_soon(sidecar: SidecarProcess, limit_s: float = 3.0) -> bool:
    """A gRPC publish is refused with RESOURCE_EXHAUSTED within ``limit_s``. Right after an
    ENOSPC a small row may still fit (the WAL keeps the space of the commit that failed)
    until the free-space view refreshes (<= 1 s) and the floor refuses it: accepted meanwhile
    is right too (it then arrives, counted as another topic's), anything else is not."""
    deadline = asyncio.get_running_loop().time() + limit_s
    while True:
        code = await grpc_publish(sidecar)
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            return True
        assert code == grpc.StatusCode.OK, code
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.2)


async def still_serving(c: httpx.AsyncClient) -> None:
    assert (await c.get("/v1.0/healthz")).status_code == 204
    assert (await c.get("/v1.0/metadata")).status_code == 200
    assert (await c.get("/v1.0/state/statestore/before")).json() == {"kept": True}


async def until_accepted(flow: Flow, c: httpx.AsyncClient, limit_s: float = 10) -> None:
    """Space came back: publishes are accepted again (the free-space view refreshes ≤1 s)."""
    for _ in range(int(limit_s * 10)):
        if await flow.publish(c) == 204:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"publishing did not resume: {flow.statuses}")


STATE = "\n---\n" + SQLITE_STATESTORE


async def test_disk_full(tmp_path: Path, tmpfs: Path) -> None:
    require_mosquitto()
    broker = Mosquitto(tmp_path / "broker", extra_config="max_queued_messages 0")
    broker.start()
    recorder = Recorder(broker.port)
    recorder.start()
    dev = SidecarProcess(tmp_path, "dev", pubsub_component(broker.url, "full-dev") + STATE,
                         log_level="warn")
    dev.data = tmpfs / "data"
    counts = Counts("disk full", runs=1)
    flow = Flow(dev, counts)
    try:
        await dev.start()
        async with dev.client(timeout=15) as c:
            r = await c.post("/v1.0/state/statestore", json=[{"key": "before",
                                                              "value": {"kept": True}}])
            assert r.status_code == 204
            for _ in range(50):
                assert await flow.publish(c) == 204
            broker.stop()  # from here on everything stays in the outbox, on the small disk
            filler = tmpfs / "filler"

            # 1. The free-space floor: refused while 8 MiB are left.
            fill(filler, leave_bytes=9 * 1024 * 1024 + 512 * 1024)
            floor_accepted = await flow.until_refused(c)
            r = await c.post(f"/v1.0/publish/mqtt/{TOPIC}/0", json={"x": 1})
            assert r.status_code == 507
            assert r.json()["errorCode"] == "ERR_STORAGE_FULL"
            floor_message = r.json()["message"]
            r = await c.post("/v1.0/state/statestore", json=[{"key": "k", "value": PAD}])
            assert r.status_code == 507, r.text
            assert r.json()["errorCode"] == "ERR_STORAGE_FULL"
            assert await grpc_publish(dev) == grpc.StatusCode.RESOURCE_EXHAUSTED
            await still_serving(c)

            # 2. Space returns: publishing resumes.
            filler.unlink()
            await until_accepted(flow, c)
            for _ in range(20):
                assert await flow.publish(c) == 204

            # 3. Really full (ENOSPC): the rest of the disk taken faster than the sidecar
            #    re-reads its free space; concurrent publishes run into it.
            await asyncio.sleep(1.2)
            assert await flow.publish(c) == 204  # its view of free space: fresh and roomy
            fill(filler, leave_bytes=64 * 1024)
            results: list[int] = []
            for _ in range(100):  # rounds of 32 concurrent publishes until one is refused
                results += await asyncio.gather(*(flow.publish(c) for _ in range(32)))
                if 507 in results:
                    break
            assert set(results) <= {204, 507}, flow.statuses
            assert 507 in results
            assert await grpc_refused_soon(dev)
            r = await c.post("/v1.0/state/statestore", json=[{"key": "k", "value": PAD}])
            assert r.status_code == 507, r.text
            await still_serving(c)
            filler.unlink()
            await until_accepted(flow, c)
            r = await c.post("/v1.0/state/statestore", json=[{"key": "after", "value": 1}])
            assert r.status_code == 204

        # 4. The broker returns: everything acknowledged arrives.
        broker.start()
        assert await drained(dev, 120), "the outbox did not drain"
        missing = await recorder.wait_for(counts.acknowledged, 60)
        counts.settle(recorder)
        counts.extra = (f"accepted before the floor={floor_accepted};"
                        f" statuses={dict(flow.statuses)}; 507 causes={dict(flow.messages)}")
        print(counts.line())
        print(f"[disk full] the floor's message: {floor_message!r}")
        assert not missing, f"{len(missing)} acknowledged ids never arrived"
        assert counts.lost == 0
    finally:
        await dev.stop()
        recorder.stop()
        broker.stop()


async def test_disk_budget(tmp_path: Path) -> None:
    """``--max-disk-mb``: the same 507 with the budget named; reads keep working."""
    require_mosquitto()
    broker = Mosquitto(tmp_path / "broker")
    dev = SidecarProcess(tmp_path, "dev", pubsub_component(broker.url, "budget-dev") + STATE,
                         extra=["--max-disk-mb", "1"], log_level="warn")
    counts = Counts("disk budget")
    flow = Flow(dev, counts)
    try:
        await dev.start()
        async with dev.client(timeout=15) as c:
            r = await c.post("/v1.0/state/statestore", json=[{"key": "before",
                                                              "value": {"kept": True}}])
            assert r.status_code == 204
            accepted = await flow.until_refused(c)
            r = await c.post(f"/v1.0/publish/mqtt/{TOPIC}/0", json={"x": 1})
            body = r.json()
            assert r.status_code == 507
            assert body["errorCode"] == "ERR_STORAGE_FULL"
            assert "--max-disk-mb" in body["message"]
            await still_serving(c)
            meta = json.dumps((await c.get("/v1.0/metadata")).json())
        print(f"[disk budget] 1 MiB budget: {accepted} publishes of ~2 KiB accepted, then 507;"
              f" metadata {len(meta)} bytes")
    finally:
        await dev.stop()
