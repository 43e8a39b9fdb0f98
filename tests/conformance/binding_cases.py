"""The table of binding implementations the bindings conformance suite runs over.

Each row says how to build the binding and, for an input side, how to make it produce one
event (``emit``): the in-memory binding emits what its ``create`` operation is given; the
serial row writes a line into the far end of a socat pty pair, the MQTT row publishes with a
bare paho client to a private mosquitto (skipped without mosquitto), the GPIO row injects an
edge into the simulated chip. A binding whose events cannot carry the emitted bytes (a GPIO
edge) names, with ``payload``, which emit an event came from.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from edge_runtime.bindings import memory as memory_binding
from edge_runtime.bindings import mqtt as mqtt_binding
from edge_runtime.bindings import serial as serial_binding
from edge_runtime.bindings.gpio import binding as gpio_binding
from edge_runtime.bindings.gpio.simclient import SimClient
from tests.support.mosquitto import Mosquitto, mosquitto_path
from tests.support.serialpty import PtyPair

Emit = Callable[[Any, bytes], Awaitable[None]]
Environment = Callable[[Path], AbstractAsyncContextManager[dict[str, str]]]
Payload = Callable[[Any, bytes], bytes]


async def _memory_emit(binding: Any, data: bytes) -> None:
    await binding.invoke("create", data, {})


_GPIO_SENT: dict[tuple[str, int], bytes] = {}  # (socket, seq) -> what that emit stood for


async def _gpio_emit(binding: Any, data: bytes) -> None:
    """A pulse on line 17 (watched for rising edges): one event, remembered by its seq."""
    socket = binding.options.sim_socket
    async with SimClient(socket) as sim:
        for event in await sim.drive(17, 1, 0):
            _GPIO_SENT[(str(socket), event["seq"])] = data


def _gpio_payload(binding: Any, data: bytes) -> bytes:
    return _GPIO_SENT[(str(binding.options.sim_socket), json.loads(data)["seq"])]


def _same(binding: Any, data: bytes) -> bytes:
    return data


@dataclass(frozen=True)
class BindingCase:
    """One implementation: its factory and metadata, what it claims, how to trigger it."""

    id: str
    type: str
    factory: Callable[..., Any]
    metadata: dict[str, str] = field(default_factory=dict)
    operations: tuple[str, ...] = ()  # the output operations it claims (empty: no output)
    emit: Emit | None = None  # makes the input side produce one event (None: no input)
    # An input event whose handler raised is redelivered by its source (a broker), rather than
    # reported to whoever caused it (loopback: the invoke fails).
    redelivers: bool = False
    # What the binding needs around it (a pty pair, a broker), entered per test; it yields
    # metadata added to ``metadata`` (the device path, the broker URL).
    environment: Environment | None = None
    # A source that can neither redeliver nor tell anyone (a serial frame) counts the event
    # as dropped: this reads that count from the binding.
    dropped: Callable[[Any], int] | None = None
    # What an event's data stands for: the emitted bytes (by default, the data itself).
    payload: Payload = _same


# --- bindings.serial: a socat pty pair per test; emitting writes a line into the far end ------

_PAIRS: dict[str, PtyPair] = {}  # by the device path the binding opens


@contextlib.asynccontextmanager
async def _pty(tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    pair = PtyPair(tmp_path / "pty")
    pair.start()
    _PAIRS[str(pair.a)] = pair
    try:
        yield {"port": str(pair.a), "reconnectInterval": "50ms"}
    finally:
        _PAIRS.pop(str(pair.a), None)
        pair.kill()


async def _serial_emit(binding: Any, data: bytes) -> None:
    _PAIRS[binding.settings.port].write(data + b"\n")


# --- bindings.mqtt: a private broker per test; emitting publishes with a bare paho client ----


@contextlib.asynccontextmanager
async def _broker(tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    uid = uuid.uuid4().hex[:8]
    try:
        yield {"url": broker.url, "topic": f"conf/{uid}/#", "consumerID": f"conf-{uid}",
               "reconnectMin": "20ms", "reconnectMax": "200ms"}
    finally:
        broker.kill()


async def _mqtt_emit(binding: Any, data: bytes) -> None:
    async with asyncio.timeout(10):
        while binding.consumer is not None and not binding.consumer.subscribed:
            await asyncio.sleep(0.01)
    settings = binding.settings.consumer

    def publish() -> None:
        client = paho.Client(CallbackAPIVersion.VERSION2)
        client.connect(settings.host, settings.port)
        client.loop_start()
        try:
            client.publish(binding.topic.replace("#", "in"), data, qos=1).wait_for_publish(10)
        finally:
            client.disconnect()
            client.loop_stop()

    await asyncio.to_thread(publish)


BINDING_CASES = [
    BindingCase(
        "memory", "bindings.in-memory", memory_binding.create,
        operations=("create", "get", "list", "delete"), emit=_memory_emit,
    ),
    BindingCase(
        "serial", "bindings.serial", serial_binding.create, operations=("write",),
        emit=_serial_emit, environment=_pty,
        dropped=lambda b: b.reporter.counts.get("not_stored", 0),
    ),
    BindingCase(
        "gpio-sim", "bindings.gpio", gpio_binding.create,
        metadata={"chip": "sim", "lines": "17", "outputs": "18", "edge": "rising"},
        operations=("get", "set", "pulse"), emit=_gpio_emit, payload=_gpio_payload,
        redelivers=True,  # the binding retries an event the handler could not store
    ),
]
if mosquitto_path() is not None:
    BINDING_CASES.append(BindingCase(
        "mqtt", "bindings.mqtt", mqtt_binding.create, operations=("create",),
        emit=_mqtt_emit, environment=_broker, redelivers=True,
    ))
