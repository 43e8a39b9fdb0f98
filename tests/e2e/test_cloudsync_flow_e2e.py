"""FlowControl end to end: ``PUT /v1/devices/{id}/limits`` slows a connected device's stream
(the cloud's count of applied records stays under the rate's budget, an upper bound a slower
machine only makes easier to keep), and lifting it lets the device drain, nothing lost and
nothing applied twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cloudsync.procs import Cloud, device_resources, eventually
from tests.invocation.procs import Sidecar
from tests.support.sidecar import ManagedProcess, stopped_at_the_end

pytestmark = pytest.mark.slow

N = 400
RATE = 25.0  # records a second while limited (a 50-record batch every 2 s)
SLACK = 50 + 50  # the token bucket's burst (batchSize) and one batch already on its way


@pytest.fixture
async def procs() -> AsyncIterator[list[ManagedProcess]]:
    async for started in stopped_at_the_end():
        yield started


async def _records(cloud: Cloud) -> int:
    d = await cloud.device("dev-flow")
    return int(d["records"]) if d else 0


async def test_limits_slow_a_connected_device_and_nothing_is_lost(
    tmp_path: Path, procs: list[Any]
) -> None:
    cloud = Cloud(tmp_path / "cloud")
    procs.append(cloud)
    await cloud.start()
    assert (await cloud.put("/v1/devices/dev-flow/limits", {"rate": RATE})).status_code == 404
    side = Sidecar(tmp_path, "dev", resources=device_resources(cloud.endpoint, "dev-flow"))
    procs.append(side)
    await side.start()

    async def connected() -> bool:
        d = await cloud.device("dev-flow")
        return d is not None and d["connected"]

    await eventually(connected)
    bad = await cloud.put("/v1/devices/dev-flow/limits", {"rate": "fast"})
    assert bad.status_code == 400
    r = await cloud.put("/v1/devices/dev-flow/limits", {"rate": RATE, "window": 1})
    assert r.status_code == 204, r.text
    await asyncio.sleep(0.5)  # the FlowControl message reaches the device's stream
    loop = asyncio.get_running_loop()
    before = await _records(cloud)
    started = loop.time()
    async with httpx.AsyncClient(base_url=side.url, timeout=30) as c:
        r = await c.post("/v1.0/state/statestore",
                         json=[{"key": f"f{i}", "value": i} for i in range(N)])
        assert r.status_code == 204, r.text
    samples = []
    for _ in range(10):
        await asyncio.sleep(0.5)
        samples.append((await _records(cloud) - before, loop.time() - started))
    for applied, elapsed in samples:
        assert applied <= RATE * elapsed + SLACK, samples  # slowed: well under N so far
    assert samples[-1][0] < N
    assert samples[-1][0] > 0, samples  # slowed, not stopped

    r = await cloud.put("/v1/devices/dev-flow/limits", {})  # back to the cloud's defaults
    assert r.status_code == 204

    async def drained() -> int:
        n = await _records(cloud) - before
        return n if n >= N else 0

    assert await eventually(drained, 60) == N  # nothing lost, nothing applied twice
    for i in range(0, N, 37):
        got = await cloud.get(f"/v1/devices/dev-flow/state/statestore/f{i}")
        assert got.status_code == 200
        assert got.json() == i
