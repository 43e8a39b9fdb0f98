"""A connection lost right after its CONNACK must not end ``wait_connected`` as if the client
were closed: the outbox relay waits there, and took that for "closed" and stopped relaying
for good (found on emulated armv7, where the startup kept the loop busy past the CONNACK
timeout: connect, drop, reconnect, all in one loop turn)."""

from __future__ import annotations

import asyncio

import pytest

from edge_runtime.pubsub import NotConnectedError
from edge_runtime.pubsub.mqtt.client import ClientOptions, MqttClient
from tests.support.mosquitto import Mosquitto


async def test_a_connect_lost_before_the_waiter_runs_keeps_it_waiting(
    mosquitto: Mosquitto, uid: str
) -> None:
    client = MqttClient(ClientOptions(host="127.0.0.1", port=mosquitto.port,
                                      client_id=f"flap-{uid}"), lambda _m: None)
    waiter = asyncio.create_task(client.wait_connected())
    await asyncio.sleep(0.05)
    assert not waiter.done()
    # What paho's callbacks do for a CONNACK and then a loss, before the waiter gets to run.
    client._connected, _ = True, client._connected_evt.set()
    client._connected, _ = False, client._connected_evt.clear()
    await asyncio.sleep(0.05)
    assert not waiter.done(), "woken by a connection already lost, it gave up"
    client.start()  # a real connection: now the wait ends
    try:
        await asyncio.wait_for(waiter, 30)
        assert client.connected
    finally:
        await client.close()


async def test_closing_ends_the_wait(mosquitto: Mosquitto, uid: str) -> None:
    client = MqttClient(ClientOptions(host="127.0.0.1", port=mosquitto.port,
                                      client_id=f"flap-{uid}"), lambda _m: None)
    waiter = asyncio.create_task(client.wait_connected())
    await asyncio.sleep(0.05)
    await client.close()
    with pytest.raises(NotConnectedError):
        await asyncio.wait_for(waiter, 30)
