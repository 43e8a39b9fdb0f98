"""Two stateless cloud servers (``edge-runtime cloud serve --store postgresql://...``) on one
throwaway PostgreSQL cluster; a device switches from one to the other mid-stream and back,
and nothing is lost or applied twice. Skipped with the reason when no cluster can be had."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.cloudsync.procs import Cloud, device_resources, eventually
from tests.e2e.test_cloudsync_e2e import _check_events, _check_state, _converged, _write
from tests.invocation.procs import Sidecar
from tests.support import postgres
from tests.support.sidecar import ManagedProcess, stopped_at_the_end

pytestmark = pytest.mark.slow

RATE = "  - {name: drainRateLimit, value: \"100\"}\n"  # ~4 s for 400 records: room to switch


@pytest.fixture
async def procs() -> AsyncIterator[list[ManagedProcess]]:
    async for started in stopped_at_the_end():
        yield started


async def test_a_device_switching_between_two_servers_on_one_database(
    tmp_path: Path, procs: list[Any]
) -> None:
    reason = postgres.unavailable()
    if reason is not None:
        pytest.skip(reason)
    dsn = postgres.cluster().create_db()
    a = Cloud(tmp_path / "a", store=dsn)
    b = Cloud(tmp_path / "b", store=dsn)
    for cloud in (a, b):
        procs.append(cloud)
        await cloud.start()  # the second finds the schema the first made
    side = Sidecar(tmp_path, "dev", resources=device_resources(a.endpoint, "dev-pg", extra=RATE))
    await side.start()
    records = await _write(side, 400)

    async def some_applied(cloud: Cloud, floor: int) -> bool:
        d = await cloud.device("dev-pg")
        return d is not None and floor < d["records"] < records

    await eventually(lambda: some_applied(a, 0), every_s=0.02)
    await side.kill()  # mid-stream, with batches in flight on server a
    side = Sidecar(tmp_path, "dev", resources=device_resources(b.endpoint, "dev-pg", extra=RATE))
    procs.append(side)
    await side.start()
    on_a = (await b.device("dev-pg") or {}).get("records", 0)
    await eventually(lambda: some_applied(b, on_a), every_s=0.02)
    more = await _write(side, 60, start=400)
    await side.stop()  # and back to server a for the rest
    procs.remove(side)
    side = Sidecar(tmp_path, "dev", resources=device_resources(a.endpoint, "dev-pg", extra=RATE))
    procs.append(side)
    await side.start()
    for cloud in (a, b):  # both servers see one device with everything, once
        d = await _converged(cloud, "dev-pg", records + more, side)
        assert d["records"] == records + more
        await _check_state(cloud, "dev-pg", 460)
        await _check_events(cloud, "dev-pg", 460)
    assert [d["id"] for d in (await b.get("/v1/devices")).json()] == ["dev-pg"]
    # Desired state written through one server reaches the device connected to the other.
    r = await b.put("/v1/devices/dev-pg/desired/mode", "eco")
    assert r.status_code == 200, r.text
    seq = r.json()["seq"]

    async def acked() -> bool:
        d = await a.device("dev-pg")
        return d is not None and d["desiredAcked"] >= seq

    await eventually(acked, 30)
