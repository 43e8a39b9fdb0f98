"""paho's socket calls gathered (``coalesce.py``), against a real mosquitto: a burst of
publishes leaves in a few ``send`` calls and its PUBACKs come in with a few ``recv`` calls,
every message arrives, and paho's own ``wait_for_publish`` still works with the shared
condition."""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

import paho.mqtt.client as paho
import pytest

from edge_runtime.pubsub import Message
from tests.pubsub.conftest import Inbox, MakePubSub, connected
from tests.support.fresh import run_python
from tests.support.mosquitto import Mosquitto

pytestmark = pytest.mark.broker


async def test_a_burst_goes_out_in_few_sends_and_acks_in_few_reads(
    make_pubsub: MakePubSub, mosquitto: Mosquitto, uid: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sub = make_pubsub(mosquitto.url, consumerID=f"sub-{uid}", qos="1")
    inbox = Inbox()
    await sub.subscribe(f"{uid}/burst", inbox)
    await sub.init()
    await connected(sub)
    pub = make_pubsub(mosquitto.url, consumerID=f"pub-{uid}", qos="1", inflight="200")
    await pub.init()
    await connected(pub)
    calls = {"send": 0, "recv": 0}
    real_send, real_recv = paho.Client._sock_send, paho.Client._sock_recv

    def send(self: Any, buf: bytes) -> int:
        if self is pub.client._paho:
            calls["send"] += 1
        return real_send(self, buf)

    def recv(self: Any, size: int) -> bytes:
        if self is pub.client._paho:
            calls["recv"] += 1
        return real_recv(self, size)

    monkeypatch.setattr(paho.Client, "_sock_send", send)
    monkeypatch.setattr(paho.Client, "_sock_recv", recv)
    n = 200
    futures = [await pub.start_publish(Message(f"{uid}/burst", str(i).encode()))
               for i in range(n)]
    await asyncio.wait_for(asyncio.gather(*futures), 10)
    # One call per packet (and three reads per PUBACK) before; a handful now.
    assert calls["send"] <= n // 10, calls
    assert calls["recv"] <= n // 5, calls
    got = sorted([int((await inbox.get()).data) for _ in range(n)])
    assert got == list(range(n))


def test_wait_for_publish_with_the_shared_condition(mosquitto: Mosquitto, uid: str) -> None:
    """Threads waiting on different messages each wake for their own."""
    import edge_runtime.pubsub.mqtt.coalesce  # noqa: F401 - installs the shared-condition info

    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"plain-{uid}")
    client.connect("127.0.0.1", mosquitto.port)
    client.loop_start()
    try:
        errors: list[BaseException] = []

        def one(i: int) -> None:
            try:
                info = client.publish(f"{uid}/plain", str(i), qos=1)
                info.wait_for_publish(timeout=10)
                assert info.is_published()
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert not errors
        assert not any(t.is_alive() for t in threads)
    finally:
        client.loop_stop()
        client.disconnect()


def test_paho_is_asked_for_a_proxy_only_when_one_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its lookup runs ``urllib.request`` (made without running by ``pubsub.mqtt``): without
    a proxy set it is not asked; ``proxy_set`` or an ``mqtt_proxy`` variable, in any case,
    still reach paho's lookup."""
    from edge_runtime.pubsub.mqtt.coalesce import CoalescingClient

    for name in [k for k in os.environ if k.lower() == "mqtt_proxy"]:
        monkeypatch.delenv(name)
    client = CoalescingClient(paho.CallbackAPIVersion.VERSION2, client_id="proxy-probe")
    assert not client._proxy_wanted()
    monkeypatch.setenv("MQTT_PROXY", "socks://127.0.0.1:1")
    assert client._proxy_wanted()
    monkeypatch.delenv("MQTT_PROXY")
    client._proxy = {"proxy_type": 2, "proxy_addr": "127.0.0.1"}
    assert client._proxy_wanted()


def test_paho_connects_without_running_urllib_request() -> None:
    """In a fresh interpreter: a client of ours connects (to a closed port: refused) and
    ``urllib.request``, ``http.client`` and ``email`` are not run; asked, it is whole."""
    out = run_python(URLLIB)
    assert out.strip() == "ok"


URLLIB = """
import socket, sys
import edge_runtime.pubsub.mqtt.client
from edge_runtime.pubsub.mqtt.coalesce import CoalescingClient
import paho.mqtt.client as paho
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
c = CoalescingClient(paho.CallbackAPIVersion.VERSION2, client_id="urllib-probe")
try:
    c.connect("127.0.0.1", port)
except ConnectionRefusedError:
    pass
req = sys.modules["urllib.request"]
assert "urlopen" not in vars(req), "urllib.request ran"
assert "http.client" not in sys.modules and "email" not in sys.modules
assert callable(req.urlopen) and "http.client" in sys.modules
print("ok")
"""
