"""Cloud sync over mutual TLS, with throwaway certificates, and each way it is refused.

A device sidecar (``edge-runtime run`` with a ``cloudsync.grpc`` component: ``caCert``,
``clientCert``, ``clientKey`` as file paths, ``serverName: localhost``) and the cloud runtime
(``edge-runtime cloud serve --tls-cert/--tls-key/--tls-ca``) as real processes. For each
refusal the device must say why (``lastError`` in ``/v1.0/metadata``, an error log line, the
``tls`` reconnect reason), keep retrying with backoff, keep serving its app and keep every
record; once the certificate is fixed (rotated on disk for the device, the cloud restarted
with a good one) the backlog arrives: nothing lost, nothing applied twice.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cloudsync.procs import Cloud, device_resources, eventually
from tests.invocation.procs import Sidecar
from tests.support.certs import CertAuthority, Issued
from tests.support.sidecar import ManagedProcess, stopped_at_the_end

pytestmark = pytest.mark.slow

DEVICE = "dev-a"
N = 12  # state saves made while refused; every other one also publishes a synced event


@dataclass
class Certs:
    ca: CertAuthority
    other: CertAuthority
    server: Issued
    device: Issued


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    root = tmp_path_factory.mktemp("cloud-certs")
    ca = CertAuthority(root / "ca", "fleet test CA")
    return Certs(ca, CertAuthority(root / "other", "some other CA"),
                 ca.issue("cloud", hosts=("localhost", "127.0.0.1")),
                 ca.issue(DEVICE, client=True))


def install(src: Issued | Path, cert: Path, key: Path | None = None) -> None:
    """Put ``src`` at ``cert``/``key`` by rename over the old files (how rotation is done)."""
    pairs = [(src, cert)] if isinstance(src, Path) else [(src.cert, cert), (src.key, key)]
    for source, target in pairs:
        assert target is not None
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".new")
        shutil.copyfile(source, tmp)
        tmp.replace(target)


@dataclass
class World:
    root: Path
    certs: Certs
    procs: list[ManagedProcess]
    device_files: Path  # ca.pem, device.pem, device.key
    cloud_files: Path  # server.pem, server.key

    def cloud(self) -> Cloud:
        f = self.cloud_files
        return Cloud(self.root / "cloud", device_token=None, args=(
            "--tls-cert", str(f / "server.pem"), "--tls-key", str(f / "server.key"),
            "--tls-ca", str(self.certs.ca.cert)))

    def device(self, endpoint: str) -> Sidecar:
        f = self.device_files
        tls = {"ca": f / "ca.pem", "cert": f / "device.pem", "key": f / "device.key"}
        return Sidecar(self.root, "dev", resources=device_resources(endpoint, DEVICE, tls=tls))


@pytest.fixture
async def world(tmp_path: Path, certs: Certs) -> AsyncIterator[World]:
    async for procs in stopped_at_the_end():
        w = World(tmp_path, certs, procs, tmp_path / "device-certs", tmp_path / "cloud-certs")
        install(certs.ca.cert, w.device_files / "ca.pem")
        install(certs.device, w.device_files / "device.pem", w.device_files / "device.key")
        install(certs.server, w.cloud_files / "server.pem", w.cloud_files / "server.key")
        yield w


async def meta(side: Sidecar) -> dict[str, str]:
    async with httpx.AsyncClient(timeout=10) as c:
        extended: dict[str, str] = (await c.get(f"{side.url}/v1.0/metadata")).json()["extended"]
    return extended


async def write(side: Sidecar, ids: range) -> int:
    """A state save per id and, for even ids, an event on a synced topic; the records."""
    records = 0
    async with httpx.AsyncClient(base_url=side.url, timeout=30) as c:
        for i in ids:
            r = await c.post("/v1.0/state/statestore", json=[{"key": f"k{i}", "value": {"i": i}}])
            assert r.status_code == 204, r.text
            records += 1
            if i % 2 == 0:
                r = await c.post(f"/v1.0/publish/pubsub/sensors/s{i % 3}", json={"i": i})
                assert r.status_code == 204, r.text
                records += 1
    return records


async def arrived(cloud: Cloud, side: Sidecar, ids: range, records: int) -> str:
    """Wait until the cloud holds every record and the device has nothing left; the counts."""
    async def done() -> dict[str, Any] | None:
        d = await cloud.device(DEVICE)
        return d if d is not None and d["records"] >= records else None

    d = await eventually(done, 60)

    async def drained() -> bool:
        return (await meta(side))["cloudsync.cloud.backlog"] == "0"

    await eventually(drained, 60)
    for i in ids:
        r = await cloud.get(f"/v1/devices/{DEVICE}/state/statestore/k{i}")
        assert r.status_code == 200, (i, r.text)
        assert r.json() == {"i": i}
    events = sorted(e["data"]["data"]["i"] for e in await cloud.all_events(DEVICE))
    want = [i for i in ids if i % 2 == 0]
    lost = len(set(want) - set(events))
    dup = len(events) - len(set(events))
    applied = (await cloud.device(DEVICE) or d)["records"]
    assert lost == 0, f"{lost} events lost"
    assert dup == 0, f"{dup} events twice"
    assert applied == records, f"the cloud applied {applied} records for {records} made"
    return f"records {records}, applied {applied}, events lost {lost}, duplicated {dup}"


async def test_sync_over_mutual_tls(world: World) -> None:
    cloud = await world.cloud().start()
    world.procs.append(cloud)
    side = world.device(cloud.endpoint)
    world.procs.append(side)
    await side.start()
    records = await write(side, range(20))
    print("mutual TLS:", await arrived(cloud, side, range(20), records))
    assert await side.metric("edge_runtime_cloudsync_reconnects_total", 'reason="tls"') == 0


@dataclass(frozen=True)
class Case:
    breaks: Callable[[World], None]
    words: str
    fix: str  # "device": rotate the device's files; "cloud": restart it with good files


def _device_files(issued: Callable[[Certs], Issued]) -> Callable[[World], None]:
    def breaks(w: World) -> None:
        install(issued(w.certs), w.device_files / "device.pem", w.device_files / "device.key")
    return breaks


def _cloud_files(issued: Callable[[Certs], Issued]) -> Callable[[World], None]:
    def breaks(w: World) -> None:
        install(issued(w.certs), w.cloud_files / "server.pem", w.cloud_files / "server.key")
    return breaks


def _wrong_ca(w: World) -> None:
    install(w.certs.other.cert, w.device_files / "ca.pem")


CLIENT_REFUSED = "the server refused our client certificate without saying why"
CASES = {
    "expired client certificate": Case(_device_files(
        lambda c: c.ca.issue(DEVICE, client=True, expired=True, out=c.ca.dir / "expired")),
        "our client certificate has expired, and the server refused it", "device"),
    "client certificate from another CA": Case(_device_files(
        lambda c: c.other.issue(DEVICE, client=True)), CLIENT_REFUSED, "device"),
    "wrong CA (cloud not trusted)": Case(
        _wrong_ca, "not signed by a CA we trust (check caCert)", "device"),
    "server certificate for another name": Case(_cloud_files(
        lambda c: c.ca.issue("elsewhere", hosts=("example.com",))),
        "does not name the host we expect", "cloud"),
    "expired server certificate": Case(_cloud_files(
        lambda c: c.ca.issue("old-cloud", hosts=("localhost",), expired=True)),
        "the server's certificate has expired", "cloud"),
}


# `make test` runs these refusals; `make faults` every one (each ~5-10 s).
SHORT = {"expired client certificate", "wrong CA (cloud not trusted)"}


@pytest.mark.parametrize("case", [
    pytest.param(case, id=case.replace(" ", "-"),
                 marks=() if case in SHORT else (pytest.mark.faults_long,))
    for case in CASES
])
async def test_refused_then_fixed(world: World, case: str) -> None:
    c = CASES[case]
    c.breaks(world)
    cloud = await world.cloud().start()
    world.procs.append(cloud)
    side = world.device(cloud.endpoint)
    world.procs.append(side)
    await side.start()
    records = await write(side, range(N))  # the app is served while the cloud refuses

    async def refused() -> dict[str, str] | None:
        m = await meta(side)
        return m if c.words in m["cloudsync.cloud.lastError"] else None

    m = await eventually(refused)
    assert m["cloudsync.cloud.connected"] == "false"

    async def all_kept() -> bool:  # counted at each attempt
        return (await meta(side))["cloudsync.cloud.backlog"] == str(records)

    await eventually(all_kept)

    async def retried() -> bool:  # with backoff: attempts keep coming
        return await side.metric("edge_runtime_cloudsync_reconnects_total",
                                 'reason="tls"') >= 3

    await eventually(retried)
    errors = [ln for ln in side.log.read_text().splitlines()
              if " ERROR " in ln and c.words in ln]
    assert len(errors) == 1, errors  # once, not at every retry
    assert await cloud.device(DEVICE) is None
    print(f"{case}: {m['cloudsync.cloud.lastError'][:220]}")

    if c.fix == "device":
        install(world.certs.ca.cert, world.device_files / "ca.pem")
        install(world.certs.device, world.device_files / "device.pem",
                world.device_files / "device.key")
    else:
        install(world.certs.server, world.cloud_files / "server.pem",
                world.cloud_files / "server.key")
        await cloud.stop()
        await cloud.start()  # same port
    print(f"{case}, after the fix:", await arrived(cloud, side, range(N), records))
    if c.fix == "device":
        assert "certificate files changed: reloaded" in side.log.read_text()
    assert (await meta(side))["cloudsync.cloud.lastError"] == ""


async def test_unreadable_certificate_file_names_it(world: World) -> None:
    missing = world.device_files / "gone.pem"
    (world.device_files / "device.pem").rename(missing)
    side = world.device("127.0.0.1:9")
    with pytest.raises(AssertionError) as failed:
        await side.start()
    assert str(world.device_files / "device.pem") in str(failed.value), str(failed.value)
    assert "clientCert" in str(failed.value)
