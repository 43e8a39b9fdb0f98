"""``bindings.serial``, ``bindings.cron`` and ``bindings.mqtt`` in a sidecar (in-process, real
sockets) with a real app: socat ptys for the serial port, a private mosquitto and a bare paho
client for MQTT, the official SDK for gRPC."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_runtime.outbox.cli import backlogs
from tests.api.conftest import Sidecar, StartSidecar
from tests.api.test_bindings_input import BindingApp, free_port, ready
from tests.api.test_grpc_sdk import connect
from tests.appchannel.appserver import AppServer
from tests.support.mosquitto import Mosquitto
from tests.support.serialpty import PtyPair

WAIT = 15.0


def serial_yaml(port: Path, **metadata: str) -> str:
    entries = {"port": str(port), "reconnectInterval": "50ms", "direction": "input, output",
               **metadata}
    lines = "".join(f"  - {{name: {k}, value: '{v}'}}\n" for k, v in entries.items())
    return ("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: uart}\n"
            "spec:\n  type: bindings.serial\n  version: v1\n  metadata:\n" + lines)


async def until(check: Callable[[], object], what: str, within: float = WAIT) -> None:
    """Poll ``check`` (state that signals no event) until true; fail naming ``what``."""
    try:
        async with asyncio.timeout(within):
            while not check():
                await asyncio.sleep(0.02)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


async def extended(s: Sidecar) -> dict[str, str]:
    doc = (await s.client.get("/v1.0/metadata")).json()
    return dict(doc["extended"])


@pytest.fixture
def pty(tmp_path: Path) -> Iterator[PtyPair]:
    pair = PtyPair(tmp_path / "pty")
    pair.start()
    yield pair
    pair.kill()


# --- serial ----------------------------------------------------------------------------------

async def test_serial_frames_wait_for_the_app_and_survive_an_unplug(
    start_sidecar: StartSidecar, pty: PtyPair
) -> None:
    port = free_port()  # the app is not up yet
    s: Sidecar = await start_sidecar(serial_yaml(pty.a, delimiter="\\r\\n"), app_port=port)
    assert (await extended(s))["binding.uart.connected"] == "true"
    pty.write(b"".join(b"reading %d\r\n" % i for i in range(50)))
    pty.write(b"half a fra")
    await asyncio.sleep(0.2)
    pty.kill()  # unplugged while the app is still down
    await until(lambda: not s.runtime.builder.components.bindings["uart"].instance.connected,  # type: ignore[union-attr]
                "the loss")
    doc = await extended(s)
    assert doc["binding.uart.connected"] == "false"
    assert "binding.uart.error" in doc
    pty.start()  # plugged back in
    await until(lambda: s.runtime.builder.components.bindings["uart"].instance.connected,  # type: ignore[union-attr]
                "the reconnect")
    pty.write(b"after the replug\r\n")
    app = BindingApp()
    async with AppServer(app, port=port):
        events = await app.wait(51, WAIT)
        await asyncio.sleep(0.1)
    assert [e.body for e in events] == [b"reading %d" % i for i in range(50)] + [
        b"after the replug"]
    assert all(e.path == "/uart" and e.header("port") == str(pty.a) for e in events)
    assert [e.header("seq") for e in events[:3]] == ["1", "2", "3"]
    assert app.probes == []  # direction input: no OPTIONS probe


async def test_serial_write_over_http_and_the_sdk(
    start_sidecar: StartSidecar, pty: PtyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    s: Sidecar = await start_sidecar(serial_yaml(pty.a, direction="output"), dapr_grpc_port=0)
    r = await s.client.post("/v1.0/bindings/uart", json={
        "operation": "write", "data": "AT+CSQ\r\n", "metadata": {"encoding": "text"}})
    assert r.status_code == 204, r.text
    assert pty.read(8) == b"AT+CSQ\r\n"
    r = await s.client.post("/v1.0/bindings/uart", json={"operation": "write", "data": "ok"})
    assert r.status_code == 204
    assert pty.read(4) == b'"ok"'  # without encoding text: daprd's JSON re-encoding
    sdk = await connect(s, monkeypatch)
    try:
        await sdk(sdk.client.invoke_binding, "uart", "write", b"\x02raw\x03")
        assert pty.read(5) == b"\x02raw\x03"
    finally:
        await asyncio.to_thread(sdk.client.close)
    r = await s.client.post("/v1.0/bindings/uart", json={"operation": "read", "data": 1})
    assert r.status_code == 500
    assert r.json()["errorCode"] == "ERR_INVOKE_OUTPUT_BINDING"
    assert "supported operations: write" in r.json()["message"]
    pty.kill()
    r = await s.client.post("/v1.0/bindings/uart", json={"operation": "write", "data": 1})
    for _ in range(100):  # the write notices the loss (no reader in direction output)
        if r.status_code == 500:
            break
        await asyncio.sleep(0.02)
        r = await s.client.post("/v1.0/bindings/uart", json={"operation": "write", "data": 1})
    assert r.status_code == 500
    assert "ERR_INVOKE_OUTPUT_BINDING" in r.text


# --- cron ------------------------------------------------------------------------------------

CRON = """
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: tick}
spec:
  type: bindings.cron
  version: v1
  metadata:
  - {name: schedule, value: "@every 100ms"}
"""


async def test_cron_fires_into_the_app(start_sidecar: StartSidecar) -> None:
    app = BindingApp()
    async with AppServer(app) as server:
        s: Sidecar = await start_sidecar(CRON, app_port=server.port)
        await ready(s)
        events = await app.wait(3)
    assert app.probes[0].path == "/tick"  # no direction: probed, as daprd does
    assert all((e.method, e.path, e.body) == ("POST", "/tick", b"") for e in events)
    assert events[0].header("timeZone") == "Local"
    assert (events[0].header("readTimeUTC") or "").endswith(" +0000 UTC")
    doc = await extended(s)
    assert doc["binding.tick.schedule"] == "@every 100ms"
    assert "binding.tick.next" in doc


# --- mqtt ------------------------------------------------------------------------------------

@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path / "broker")
    b.start()
    yield b
    b.kill()


def mqtt_yaml(url: str, topic: str, consumer: str, **metadata: str) -> str:
    entries = {"url": url, "topic": topic, "consumerID": consumer, "reconnectMin": "20ms",
               "reconnectMax": "200ms", **metadata}
    lines = "".join(f"  - {{name: {k}, value: '{v}'}}\n" for k, v in entries.items())
    return ("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: sensors}\n"
            "spec:\n  type: bindings.mqtt3\n  version: v1\n  metadata:\n" + lines)


class Paho:
    """A bare paho client on its own thread: publishes QoS 1 and collects what it receives."""

    def __init__(self, broker: Mosquitto, client_id: str = "", *, clean: bool = True) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  clean_session=clean)
        self.received: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()

    def _on_message(self, _c: object, _u: object, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.received.append((msg.topic, bytes(msg.payload)))

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def subscribe(self, topic: str) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *_a: done.set()
        self.client.subscribe(topic, qos=1)
        assert done.wait(10), "no SUBACK"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def test_mqtt_ingest_waits_for_the_app(
    start_sidecar: StartSidecar, broker: Mosquitto
) -> None:
    uid = uuid.uuid4().hex[:8]
    port = free_port()
    yaml = mqtt_yaml(broker.url, f"{uid}/+/temp", f"edge-{uid}", direction="input")
    s: Sidecar = await start_sidecar(yaml, app_port=port)
    binding = s.runtime.builder.components.bindings["sensors"].instance  # type: ignore[union-attr]
    await until(lambda: binding.consumer is not None and binding.consumer.subscribed,
                "the subscription")
    publisher = Paho(broker)
    try:
        for i in range(20):
            await asyncio.to_thread(publisher.publish, f"{uid}/room{i % 2}/temp",
                                    b'{"c": %d}' % i)
        publisher.publish(f"{uid}/room0/humidity", b"not ours")
    finally:
        publisher.close()
    app = BindingApp()
    async with AppServer(app, port=port):
        events = await app.wait(20, WAIT)
        await asyncio.sleep(0.2)
    assert sorted(int(e.body[6:-1]) for e in events) == list(range(20))  # raw payloads
    assert len(events) == 20
    assert {e.header("topic") for e in events} == {f"{uid}/room0/temp", f"{uid}/room1/temp"}
    assert all(e.path == "/sensors" for e in events)
    doc = await extended(s)
    assert doc["binding.sensors.consumer.connected"] == "true"
    assert "binding.sensors.producer.connected" not in doc  # direction input: no producer


async def test_mqtt_create_while_the_broker_is_down_is_published_when_it_is_back(
    start_sidecar: StartSidecar, broker: Mosquitto
) -> None:
    uid = uuid.uuid4().hex[:8]
    # A subscriber with a persistent session, so the broker queues for it while it is away.
    watcher = Paho(broker, f"watch-{uid}", clean=False)
    watcher.subscribe(f"{uid}/#")
    watcher.close()
    broker.stop()
    yaml = mqtt_yaml(broker.url, f"{uid}/out", f"edge-{uid}", direction="output")
    s: Sidecar = await start_sidecar(yaml)
    for i in range(10):
        r = await s.client.post("/v1.0/bindings/sensors",
                                json={"operation": "create", "data": {"i": i}})
        assert r.status_code == 204, r.text  # committed to the outbox, the broker is down
    r = await s.client.post("/v1.0/bindings/sensors", json={
        "operation": "create", "data": "x", "metadata": {"topic": f"{uid}/other",
                                                         "retain": "true"}})
    assert r.status_code == 204
    [backlog] = [b for b in backlogs(s.data_dir) if b.relay == "binding_sensors"]
    assert backlog.messages == 11
    assert (await extended(s))["binding.sensors.outbox"] == "11"
    broker.start()
    await until(lambda: not any(b.messages for b in backlogs(s.data_dir)), "the relay")
    watcher = Paho(broker, f"watch-{uid}", clean=False)
    try:
        await until(lambda: len(watcher.received) >= 11, "the queued messages")
    finally:
        watcher.close()
    assert sorted(watcher.received) == sorted(
        [(f"{uid}/out", b'{"i":%d}' % i) for i in range(10)] + [(f"{uid}/other", b'"x"')])
    for bad, message in [({"topic": "a/+"}, "wildcards"), ({"retain": "maybe"}, "retain")]:
        r = await s.client.post("/v1.0/bindings/sensors",
                                json={"operation": "create", "data": 1, "metadata": bad})
        assert r.status_code == 500
        assert message in r.json()["message"]


async def test_mqtt_create_into_a_full_outbox_is_a_429_like_a_publish(
    start_sidecar: StartSidecar, broker: Mosquitto
) -> None:
    uid = uuid.uuid4().hex[:8]
    broker.stop()  # nothing drains: the second create finds the outbox full
    yaml = mqtt_yaml(broker.url, f"{uid}/out", f"edge-{uid}", direction="output",
                     maxMessages="1")
    s: Sidecar = await start_sidecar(yaml)
    r = await s.client.post("/v1.0/bindings/sensors", json={"operation": "create", "data": 1})
    assert r.status_code == 204, r.text
    r = await s.client.post("/v1.0/bindings/sensors", json={"operation": "create", "data": 2})
    assert r.status_code == 429, r.text
    assert r.json()["errorCode"] == "ERR_PUBSUB_OUTBOX_FULL"
    [backlog] = [b for b in backlogs(s.data_dir) if b.relay == "binding_sensors"]
    assert backlog.messages == 1  # what was accepted is untouched
    broker.start()
