"""MQTT over TLS against a private mosquitto with a TLS listener and throwaway certificates.

A real sidecar process loads a ``pubsub.mqtt3`` component with ``ssl://``, ``caCert``,
``clientCert`` and ``clientKey`` (PEM file paths); its app subscribes to what it publishes, so
every message crosses the broker over TLS twice. Each refusal (either side rejecting a
certificate) must show as a clear error in the log, in ``/v1.0/metadata`` and in the metrics,
while the sidecar keeps serving and keeps the publishes in its outbox; once the certificate
is fixed (rotated on disk, or the broker restarted with a good one) the backlog arrives.
Counts are printed (published, delivered, lost, duplicated).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.appchannel.appserver import AppServer, Reply, Request
from tests.support.certs import CertAuthority, Issued
from tests.support.components import component, mqtt_pubsub
from tests.support.mosquitto import BrokerTLS, Mosquitto, require_mosquitto
from tests.support.sidecar import SidecarProcess

pytestmark = [pytest.mark.broker, pytest.mark.slow]

N = 5  # messages published while refused


@dataclass
class Certs:
    ca: CertAuthority
    other: CertAuthority  # a CA nobody here trusts
    server: Issued
    client: Issued


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    require_mosquitto()
    root = tmp_path_factory.mktemp("tls-certs")
    ca = CertAuthority(root / "ca", "edge test CA")
    other = CertAuthority(root / "other", "some other CA")
    return Certs(ca, other, ca.issue("broker", hosts=("127.0.0.1", "localhost")),
                 ca.issue("device", client=True))


def install(src: Issued | Path, cert: Path, key: Path | None = None) -> None:
    """Put ``src`` at ``cert``/``key`` by rename over the old files (how rotation is done)."""
    pairs = [(src, cert)] if isinstance(src, Path) else [(src.cert, cert), (src.key, key)]
    for source, target in pairs:
        assert target is not None
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".new")
        shutil.copyfile(source, tmp)
        tmp.replace(target)


class App:
    """The sidecar's app: subscribes to ``tls/#``, records the ``i`` of every event."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def __call__(self, req: Request) -> Reply:
        if req.path == "/dapr/subscribe":
            return Reply(200, json.dumps(
                [{"pubsubname": "mqtt", "topic": "tls/#", "route": "/ev"}]).encode())
        if req.path == "/ev":
            self.seen.append(json.loads(req.body)["data"]["i"])
        if req.path == "/sensors" and req.method == "POST":  # the input binding's events
            self.seen.append(json.loads(req.body)["i"])
        return Reply(200, b"")

    async def wait_for(self, ids: set[int], limit_s: float = 60) -> None:
        for _ in range(int(limit_s * 20)):
            if ids <= set(self.seen):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"never delivered: {sorted(ids - set(self.seen))}")

    def report(self, published: int) -> str:
        lost = published - len(set(self.seen))
        return (f"published {published}, delivered {len(set(self.seen))}, lost {lost},"
                f" duplicated {len(self.seen) - len(set(self.seen))}")


def tls_pubsub(url: str, files: dict[str, Path], extra: str = "") -> str:
    entries = "".join(f"  - {{name: {k}, value: '{v}'}}\n" for k, v in files.items())
    return mqtt_pubsub(
        url, "tls-device", ("reconnectMin", "50ms"), ("reconnectMax", "300ms")
    ) + entries + extra


def binding(url: str, files: dict[str, Path]) -> str:
    entries = "".join(f"  - {{name: {k}, value: '{v}'}}\n" for k, v in files.items())
    return component(
        "sensors", "bindings.mqtt3", ("url", url), ("topic", "tls/binding"),
        ("direction", "input, output"), ("reconnectMin", "50ms"), ("reconnectMax", "300ms"),
    ) + entries


@dataclass
class World:
    root: Path
    broker: Mosquitto
    app: App
    server: AppServer
    side: Path  # the sidecar's certificate folder: ca.pem, device.pem, device.key
    broker_files: Path  # the broker's: server.pem, server.key

    def files(self, *, client: bool = True) -> dict[str, Path]:
        out = {"caCert": self.side / "ca.pem"}
        if client:
            out |= {"clientCert": self.side / "device.pem", "clientKey": self.side / "device.key"}
        return out

    def sidecar(self, name: str, *, client: bool = True, extra: str = "") -> SidecarProcess:
        return SidecarProcess(self.root, name, tls_pubsub(self.broker.url, self.files(
            client=client), extra), self.server.port)


@pytest.fixture
async def world(tmp_path: Path, certs: Certs) -> AsyncIterator[World]:
    side, bfiles = tmp_path / "side-certs", tmp_path / "broker-certs"
    install(certs.ca.cert, side / "ca.pem")
    install(certs.client, side / "device.pem", side / "device.key")
    install(certs.server, bfiles / "server.pem", bfiles / "server.key")
    broker = Mosquitto(tmp_path / "broker", tls=BrokerTLS(
        cafile=certs.ca.cert, certfile=bfiles / "server.pem", keyfile=bfiles / "server.key",
        require_certificate=True, use_identity_as_username=True), anonymous=False)
    broker.start()
    app = App()
    try:
        async with AppServer(app) as server:
            yield World(tmp_path, broker, app, server, side, bfiles)
    finally:
        with contextlib.suppress(Exception):
            broker.stop()


async def publish(side: SidecarProcess, ids: range) -> None:
    async with side.client(timeout=10) as c:
        for i in ids:
            r = await c.post(f"/v1.0/publish/mqtt/tls/{i % 3}", json={"i": i})
            assert r.status_code == 204, r.text


async def extended(side: SidecarProcess) -> dict[str, str]:
    async with side.client(timeout=10) as c:
        meta: dict[str, str] = (await c.get("/v1.0/metadata")).json()["extended"]
    return meta


async def wait_meta(side: SidecarProcess, check: Callable[[dict[str, str]], bool],
                    limit_s: float = 30) -> dict[str, str]:
    meta: dict[str, str] = {}
    for _ in range(int(limit_s * 10)):
        meta = await extended(side)
        if check(meta):
            return meta
        await asyncio.sleep(0.1)
    raise AssertionError(f"metadata never got there: {meta}")


async def test_publish_and_subscribe_over_mutual_tls(world: World) -> None:
    """Server verified against caCert, our client certificate accepted (the broker admits no
    anonymous client: its user name is the certificate's CN), messages there and back."""
    side = world.sidecar("ok")
    await side.start()
    try:
        meta = await wait_meta(side, lambda m: m["pubsub.mqtt.connected"] == "true")
        assert "pubsub.mqtt.lastError" not in meta
        await publish(side, range(50))
        await world.app.wait_for(set(range(50)))
        assert await side.metric("edge_runtime_mqtt_connect_failures_total",
                                 'component="mqtt",reason="tls"') == 0
        assert "u'device'" in world.broker.log_tail(200), world.broker.log_tail(20)
        print("mutual TLS:", world.app.report(50))
    finally:
        await side.stop()


@dataclass(frozen=True)
class Case:
    """A refusal: what is wrong (``breaks``), the words expected in the error, how to fix."""

    breaks: Callable[[World, Certs], None]
    words: str
    fix: str  # "client": rotate the sidecar's files; "broker": restart it with good files


def _wrong_ca(w: World, c: Certs) -> None:
    install(c.other.cert, w.side / "ca.pem")


def _broker_cert(issued: Callable[[Certs], Issued]) -> Callable[[World, Certs], None]:
    def breaks(w: World, c: Certs) -> None:
        install(issued(c), w.broker_files / "server.pem", w.broker_files / "server.key")
        w.broker.restart()
    return breaks


def _client_cert(issued: Callable[[Certs], Issued]) -> Callable[[World, Certs], None]:
    def breaks(w: World, c: Certs) -> None:
        install(issued(c), w.side / "device.pem", w.side / "device.key")
    return breaks


CASES = {
    "wrong CA (server not trusted)": Case(
        _wrong_ca, "not signed by a CA we trust (check caCert)", "client"),
    "expired server certificate": Case(
        _broker_cert(lambda c: c.ca.issue("old-broker", hosts=("127.0.0.1",), expired=True)),
        "the server's certificate has expired", "broker"),
    "hostname mismatch": Case(
        _broker_cert(lambda c: c.ca.issue("elsewhere", hosts=("10.9.9.9", "example.com"))),
        "does not name the IP address we connect to", "broker"),
    "expired client certificate": Case(
        _client_cert(lambda c: c.ca.issue("device", client=True, expired=True,
                                          out=c.ca.dir / "expired")),
        "refused our client certificate: it has expired", "client"),
    "client certificate from another CA": Case(
        _client_cert(lambda c: c.other.issue("device", client=True)),
        "does not trust the CA that signed our client certificate", "client"),
}


# `make test` runs these refusals; `make faults` every one (each ~5-10 s).
SHORT = {"wrong CA (server not trusted)", "expired server certificate"}


@pytest.mark.parametrize("case", [
    pytest.param(case, id=case.replace(" ", "-"),
                 marks=() if case in SHORT else (pytest.mark.faults_long,))
    for case in CASES
])
async def test_refused_then_fixed(world: World, certs: Certs, case: str) -> None:
    """Refused with a clear error (log, metadata, metric), the sidecar keeps serving and
    keeps the publishes; after the fix, with no restart of the sidecar, they all arrive."""
    c = CASES[case]
    c.breaks(world, certs)
    side = world.sidecar("dev")
    await side.start()
    try:
        await publish(side, range(N))  # accepted: they wait in the outbox
        meta = await wait_meta(side, lambda m: c.words in m.get("pubsub.mqtt.lastError", ""))
        assert meta["pubsub.mqtt.connected"] == "false"
        assert meta["pubsub.mqtt.outbox"] == str(N)
        assert await side.metric("edge_runtime_mqtt_connect_failures_total",
                                 'component="mqtt",reason="tls"') >= 1
        log = side.log.read_text()
        errors = [ln for ln in log.splitlines() if " ERROR " in ln and c.words in ln]
        assert errors, log[-3000:]
        async with side.client() as h:
            assert (await h.get("/v1.0/healthz/outbound")).status_code == 204
        assert not world.app.seen
        print(f"{case}: {errors[0].split(': ', 1)[1][:200]}")

        if c.fix == "client":
            install(certs.ca.cert, world.side / "ca.pem")
            install(certs.client, world.side / "device.pem", world.side / "device.key")
        else:
            install(certs.server, world.broker_files / "server.pem",
                    world.broker_files / "server.key")
            world.broker.restart()
        await world.app.wait_for(set(range(N)))
        meta = await wait_meta(side, lambda m: m["pubsub.mqtt.outbox"] == "0")
        assert meta["pubsub.mqtt.connected"] == "true"
        assert "pubsub.mqtt.lastError" not in meta
        if c.fix == "client":
            assert "TLS reloaded from" in side.log.read_text()
        print(f"{case}, after the fix: {world.app.report(N)}")
    finally:
        await side.stop()


async def test_binding_both_ways_refused_then_fixed(world: World, certs: Certs) -> None:
    """``bindings.mqtt3``: its producer and consumer connections report the refusal in the
    binding's status; after the CA file is fixed, what ``create`` accepted reaches the app
    through the input side.

    The first run (good certificates) leaves the consumer's persistent session at the broker:
    without one, what the producer sends before the consumer's first SUBSCRIBE has no
    subscriber and the broker drops it (MQTT, not TLS).
    """
    side = SidecarProcess(world.root, "bind", binding(world.broker.url, world.files()),
                          world.server.port)
    await side.start()
    try:
        await wait_meta(side, lambda m: m.get("binding.sensors.consumer.connected") == "true")
    finally:
        await side.stop()
    _wrong_ca(world, certs)
    await side.start()
    try:
        async with side.client(timeout=10) as c:
            for i in range(N):
                r = await c.post("/v1.0/bindings/sensors",
                                 json={"operation": "create", "data": {"i": i}})
                assert r.status_code in (200, 204), r.text
        words = "not signed by a CA we trust"
        meta = await wait_meta(side, lambda m: words in m.get(
            "binding.sensors.producer.lastError", "") and words in m.get(
            "binding.sensors.consumer.lastError", ""))
        assert meta["binding.sensors.producer.connected"] == "false"
        assert meta["binding.sensors.outbox"] == str(N)
        install(certs.ca.cert, world.side / "ca.pem")
        await world.app.wait_for(set(range(N)))
        meta = await wait_meta(side, lambda m: m["binding.sensors.outbox"] == "0")
        assert "binding.sensors.producer.lastError" not in meta
        print("binding, wrong CA then fixed:", world.app.report(N))
    finally:
        await side.stop()


async def test_no_client_certificate_when_required(world: World) -> None:
    """No clientCert: the broker's verdict comes after the handshake (TLS 1.3) and is named;
    a restart with the certificate configured delivers what waited in the outbox."""
    side = world.sidecar("dev", client=False)
    await side.start()
    try:
        await publish(side, range(N))
        words = "requires a client certificate and we sent none"
        meta = await wait_meta(side, lambda m: words in m.get("pubsub.mqtt.lastError", ""))
        assert meta["pubsub.mqtt.outbox"] == str(N)
        assert words in side.log.read_text()
    finally:
        await side.stop()
    fixed = world.sidecar("dev")  # same data dir: the outbox is still there
    await fixed.start()
    try:
        await world.app.wait_for(set(range(N)))
        print("no client certificate, after the fix:", world.app.report(N))
    finally:
        await fixed.stop()


async def test_no_option_turns_verification_off(world: World, certs: Certs) -> None:
    """Dapr's mqtt3 has no insecureSkipVerify; an entry of that name changes nothing here."""
    _wrong_ca(world, certs)
    side = world.sidecar("dev", extra="  - {name: insecureSkipVerify, value: 'true'}\n")
    await side.start()
    try:
        await publish(side, range(1))
        await wait_meta(side, lambda m: "not signed by a CA we trust"
                        in m.get("pubsub.mqtt.lastError", ""))
    finally:
        await side.stop()


async def test_tls_url_on_a_plain_listener(world: World, tmp_path: Path) -> None:
    plain = Mosquitto(tmp_path / "plain")
    plain.start()
    try:
        url = f"ssl://127.0.0.1:{plain.port}"
        side = SidecarProcess(world.root, "dev", tls_pubsub(url, world.files()))
        await side.start()
        try:
            await publish(side, range(1))
            meta = await wait_meta(side, lambda m: "is it a TLS listener?"
                                   in m.get("pubsub.mqtt.lastError", ""))
            assert meta["pubsub.mqtt.outbox"] == "1"
        finally:
            await side.stop()
    finally:
        plain.stop()


@pytest.mark.parametrize("entry", ["caCert", "clientCert", "clientKey"])
async def test_missing_pem_file_is_a_load_error_naming_it(world: World, entry: str) -> None:
    files = world.files()
    files[entry] = world.root / "nowhere" / f"{entry}.pem"
    side = SidecarProcess(world.root, "dev", tls_pubsub(world.broker.url, files))
    with pytest.raises(AssertionError) as failed:
        await side.start()
    text = str(failed.value)
    assert f"spec.metadata.{entry}" in text or entry in text, text
    assert str(files[entry]) in text, text
    assert "No such file or directory" in text, text


async def test_unusable_pem_file_is_a_load_error(world: World) -> None:
    bad = world.root / "garbage.pem"
    bad.write_text("not a certificate\n")
    files = world.files() | {"caCert": bad}
    side = SidecarProcess(world.root, "dev", tls_pubsub(world.broker.url, files))
    with pytest.raises(AssertionError) as failed:
        await side.start()
    assert "caCert" in str(failed.value)
    assert "not a usable PEM certificate" in str(failed.value), str(failed.value)


async def test_rotation_takes_effect_at_the_next_connection(world: World, certs: Certs) -> None:
    """Replacing the client certificate files (a rename over them) is picked up when the
    sidecar next connects: the broker restarts, and admits the new identity."""
    side = world.sidecar("dev")
    await side.start()
    try:
        await wait_meta(side, lambda m: m["pubsub.mqtt.connected"] == "true")
        rotated = certs.ca.issue("device-2026", client=True, out=world.root / "rotated")
        install(rotated, world.side / "device.pem", world.side / "device.key")
        world.broker.restart()
        await wait_meta(side, lambda m: m["pubsub.mqtt.connected"] == "true")
        await publish(side, range(3))
        await world.app.wait_for({0, 1, 2})
        assert "TLS reloaded from" in side.log.read_text()
        assert "device-2026" in world.broker.log_tail(100), world.broker.log_tail(20)
        print("rotation:", world.app.report(3))
    finally:
        await side.stop()


async def test_rotation_to_a_broken_file_keeps_the_previous_certificate(world: World) -> None:
    side = world.sidecar("dev")
    await side.start()
    try:
        await wait_meta(side, lambda m: m["pubsub.mqtt.connected"] == "true")
        (world.side / "device.pem").write_text("half a certificate\n")
        world.broker.restart()
        await wait_meta(side, lambda m: m["pubsub.mqtt.connected"] == "true")
        await publish(side, range(2))
        await world.app.wait_for({0, 1})
        assert "cannot be used, keeping the previous ones" in side.log.read_text()
    finally:
        await side.stop()
