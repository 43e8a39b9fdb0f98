"""Cloud sync with real processes: a sidecar (``edge-runtime run``) and the cloud runtime
(``edge-runtime cloud serve``) on free loopback ports, killed and restarted mid-stream.

Exactly-once is checked with the cloud's own count of applied records (``records`` in
``GET /v1/devices``): a replay the cloud applied again would make it larger than the number of
changes the device made.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cloudsync.procs import API_TOKEN, Cloud, device_resources, eventually
from tests.invocation.procs import Sidecar, free_port
from tests.support.sidecar import ManagedProcess, stopped_at_the_end

pytestmark = pytest.mark.slow


@pytest.fixture
async def procs() -> AsyncIterator[list[ManagedProcess]]:
    async for started in stopped_at_the_end():
        yield started


async def _meta(side: Sidecar) -> dict[str, str]:
    async with httpx.AsyncClient(timeout=10) as c:
        extended: dict[str, str] = (await c.get(f"{side.url}/v1.0/metadata")).json()["extended"]
    return extended


async def _write(side: Sidecar, n: int, *, start: int = 0) -> int:
    """``n`` state changes (saves, every 7th key deleted again) and n/2 events; the number of
    records the device must report."""
    records = 0
    async with httpx.AsyncClient(base_url=side.url, timeout=30) as c:
        for i in range(start, start + n):
            r = await c.post("/v1.0/state/statestore", json=[{"key": f"k{i}", "value": {"i": i}}])
            assert r.status_code == 204, r.text
            records += 1
            if i % 7 == 0:
                assert (await c.delete(f"/v1.0/state/statestore/k{i}")).status_code == 204
                records += 1
            if i % 2 == 0:
                r = await c.post(f"/v1.0/publish/pubsub/sensors/s{i % 3}", json={"i": i})
                assert r.status_code == 204, r.text
                records += 1
                # Not marked for the cloud:
                assert (await c.post("/v1.0/publish/pubsub/other", json={"i": i})).status_code \
                    == 204
    return records


async def _converged(
    cloud: Cloud, device: str, records: int, side: Sidecar | None = None
) -> dict[str, Any]:
    """The cloud's record of ``device`` once it holds ``records`` and, given the device's
    sidecar, once that device has nothing left to send: a replay applied late would show."""
    async def done() -> dict[str, Any] | None:
        d = await cloud.device(device)
        return d if d is not None and d["records"] >= records else None

    d: dict[str, Any] = await eventually(done, 60)
    if side is not None:
        async def drained() -> bool:
            m = await _meta(side)
            return m["cloudsync.cloud.backlog"] == "0"

        await eventually(drained, 60)
        d = await done() or d
    return d


async def _check_state(cloud: Cloud, device: str, n: int, start: int = 0) -> None:
    for i in range(start, start + n, 5):
        r = await cloud.get(f"/v1/devices/{device}/state/statestore/k{i}")
        if i % 7 == 0:
            assert r.status_code == 404, (i, r.text)
        else:
            assert r.status_code == 200, (i, r.text)
            assert r.json() == {"i": i}


async def _check_events(cloud: Cloud, device: str, n: int, start: int = 0) -> None:
    events = await cloud.all_events(device)
    got = sorted(e["data"]["data"]["i"] for e in events)
    assert got == [i for i in range(start, start + n) if i % 2 == 0]  # none lost, none twice
    assert {e["topic"] for e in events} <= {"pubsub/sensors/s0", "pubsub/sensors/s1",
                                            "pubsub/sensors/s2"}


async def test_offline_device_converges_when_the_cloud_appears(
    tmp_path: Path, procs: list[Any]
) -> None:
    cloud = Cloud(tmp_path / "cloud")
    cloud.grpc_port = free_port()
    side = Sidecar(tmp_path, "dev", resources=device_resources(
        f"127.0.0.1:{cloud.grpc_port}", "dev-1"))
    procs.append(side)
    await side.start()
    records = await _write(side, 120)
    meta = await _meta(side)
    assert meta["cloudsync.cloud.connected"] == "false"
    assert meta["cloudsync.cloud.lastError"]
    status = (await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "edge_runtime", "cloud", "status", "--data-dir", str(side.data)],
        capture_output=True, text=True, check=True)).stdout
    assert f"backlog     {records} record(s)" in status

    procs.append(cloud)
    await cloud.start()
    d = await _converged(cloud, "dev-1", records, side)
    assert d["records"] == records  # nothing applied twice
    await _check_state(cloud, "dev-1", 120)
    await _check_events(cloud, "dev-1", 120)

    async def drained() -> bool:
        m = await _meta(side)
        return m["cloudsync.cloud.backlog"] == "0" and m["cloudsync.cloud.connected"] == "true"

    await eventually(drained)
    assert (await _meta(side))["cloudsync.cloud.lastAck"]


async def test_cloud_killed_mid_stream(tmp_path: Path, procs: list[Any]) -> None:
    cloud = Cloud(tmp_path / "cloud")
    procs.append(cloud)
    await cloud.start()
    # ~4 s for 400 records: room to kill a process mid-stream, even on a loaded machine.
    rate = "  - {name: drainRateLimit, value: \"100\"}\n"
    side = Sidecar(tmp_path, "dev", resources=device_resources(cloud.endpoint, "dev-2",
                                                              extra=rate))
    procs.append(side)
    await side.start()
    records = await _write(side, 400)

    async def some_applied() -> bool:
        d = await cloud.device("dev-2")
        return d is not None and 0 < d["records"] < records

    await eventually(some_applied, every_s=0.02)
    await cloud.kill()
    more = await _write(side, 60, start=400)  # written while the cloud is down
    await cloud.start()
    d = await _converged(cloud, "dev-2", records + more, side)
    assert d["records"] == records + more
    await _check_state(cloud, "dev-2", 460)
    await _check_events(cloud, "dev-2", 460)


async def test_device_killed_mid_stream(tmp_path: Path, procs: list[Any]) -> None:
    cloud = Cloud(tmp_path / "cloud")
    procs.append(cloud)
    await cloud.start()
    # ~4 s for 400 records: room to kill a process mid-stream, even on a loaded machine.
    rate = "  - {name: drainRateLimit, value: \"100\"}\n"
    cloud_down = Cloud(tmp_path / "nowhere")  # keep the device offline while it writes
    cloud_down.grpc_port = free_port()
    side_offline = Sidecar(tmp_path, "dev", resources=device_resources(
        f"127.0.0.1:{cloud_down.grpc_port}", "dev-3", extra=rate))
    await side_offline.start()
    records = await _write(side_offline, 400)
    await side_offline.stop()
    # The same data dir (the constructor rewrites the resources), now pointed at the cloud.
    side = Sidecar(tmp_path, "dev", resources=device_resources(cloud.endpoint, "dev-3",
                                                              extra=rate))
    procs.append(side)
    await side.start()

    async def some_applied() -> bool:
        d = await cloud.device("dev-3")
        return d is not None and 0 < d["records"] < records

    await eventually(some_applied, every_s=0.02)
    await side.kill()
    await side.start()
    d = await _converged(cloud, "dev-3", records, side)
    assert d["records"] == records
    await _check_state(cloud, "dev-3", 400)
    await _check_events(cloud, "dev-3", 400)


async def test_desired_state_reaches_an_offline_device(
    tmp_path: Path, procs: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dapr.clients import DaprClient

    cloud = Cloud(tmp_path / "cloud")
    procs.append(cloud)
    await cloud.start()
    side = Sidecar(tmp_path, "dev", resources=device_resources(cloud.endpoint, "dev-4"))
    procs.append(side)
    await side.start()
    await eventually(lambda: _connected(cloud, "dev-4"))
    await side.stop()
    r = await cloud.put("/v1/devices/dev-4/desired/mode", "eco")
    assert r.status_code == 200, r.text
    seq = r.json()["seq"]
    assert (await cloud.put("/v1/devices/dev-4/desired/limits", {"max": 30})).status_code == 200

    await side.start()

    async def applied() -> bool:
        async with httpx.AsyncClient(timeout=10) as c:
            r = await c.get(f"{side.url}/v1.0/configuration/cloud", params={"key": "mode"})
        return r.status_code == 200 and r.json()["mode"]["value"] == "eco"

    await eventually(applied)
    monkeypatch.setenv("DAPR_HTTP_PORT", str(side.ports["http"]))
    monkeypatch.delenv("DAPR_API_TOKEN", raising=False)

    def sdk_get() -> Any:
        with DaprClient(address=f"127.0.0.1:{side.ports['grpc']}") as client:
            return client.get_configuration("cloud", ["mode", "limits"])

    got = await asyncio.to_thread(sdk_get)
    assert got.items["mode"].value == "eco"
    assert got.items["limits"].value == '{"max":30}'

    async def acked() -> bool:
        d = await cloud.device("dev-4")
        return d is not None and d["desiredAcked"] >= seq + 1

    await eventually(acked)


async def _connected(cloud: Cloud, device: str) -> bool:
    d = await cloud.device(device)
    return d is not None and d["connected"]


async def test_wrong_token_is_refused(tmp_path: Path, procs: list[Any]) -> None:
    cloud = Cloud(tmp_path / "cloud")
    procs.append(cloud)
    await cloud.start()
    side = Sidecar(tmp_path, "dev", resources=device_resources(cloud.endpoint, "intruder",
                                                              token="wrong"))
    procs.append(side)
    await side.start()

    async def refused() -> str:
        return (await _meta(side))["cloudsync.cloud.lastError"]

    assert "UNAUTHENTICATED" in await eventually(refused)
    assert await cloud.device("intruder") is None
    async with httpx.AsyncClient() as c:
        assert (await c.get(f"{cloud.url}/v1/devices")).status_code == 401
        bad = {"authorization": "Bearer nope"}
        assert (await c.get(f"{cloud.url}/v1/devices", headers=bad)).status_code == 401
        good = {"authorization": f"Bearer {API_TOKEN}"}
        assert (await c.get(f"{cloud.url}/v1/devices", headers=good)).status_code == 200


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
async def test_mutual_tls_device_id_is_the_certificate_cn(
    tmp_path: Path, procs: list[Any]
) -> None:
    certs = tmp_path / "certs"
    await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "edge_runtime", "cloud", "certs", "--out", str(certs),
         "--device", "dev-a", "--device", "dev-b"], check=True, capture_output=True)
    cloud = Cloud(tmp_path / "cloud", device_token=None, args=(
        "--tls-cert", str(certs / "server.pem"), "--tls-key", str(certs / "server.key"),
        "--tls-ca", str(certs / "ca.pem")))
    procs.append(cloud)
    await cloud.start()
    a_tls = {"ca": certs / "ca.pem", "cert": certs / "dev-a.pem", "key": certs / "dev-a.key"}
    good = Sidecar(tmp_path, "a", resources=device_resources(cloud.endpoint, "dev-a",
                                                            tls=a_tls))
    liar = Sidecar(tmp_path, "b", resources=device_resources(cloud.endpoint, "dev-b",
                                                            tls=a_tls))
    token = Sidecar(tmp_path, "c", resources=device_resources(cloud.endpoint, "dev-c"))
    for s in (good, liar, token):
        procs.append(s)
        await s.start()
    async with httpx.AsyncClient(base_url=good.url) as c:
        r = await c.post("/v1.0/state/statestore", json=[{"key": "door", "value": "open"}])
        assert r.status_code == 204

    async def reported() -> bool:
        r = await cloud.get("/v1/devices/dev-a/state/statestore/door")
        return r.status_code == 200 and r.json() == "open"

    await eventually(reported)

    async def liar_refused() -> str:
        return (await _meta(liar))["cloudsync.cloud.lastError"]

    assert "PERMISSION_DENIED" in await eventually(liar_refused)
    assert (await _meta(token))["cloudsync.cloud.connected"] == "false"
    assert await cloud.device("dev-b") is None
    assert await cloud.device("dev-c") is None
