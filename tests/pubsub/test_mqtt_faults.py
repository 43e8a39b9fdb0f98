"""``pubsub.mqtt`` when the broker goes away, stalls, refuses us, or another client takes our id.

Each test that stops, kills or pauses a broker has its own (the ``broker`` fixture).
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from edge_runtime.observability.metrics import REGISTRY
from edge_runtime.pubsub import Message, NotConnectedError
from tests.pubsub.conftest import WAIT, Inbox, MakePubSub, connected, eventually
from tests.support.mosquitto import Mosquitto, make_password_file

pytestmark = pytest.mark.broker


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_broker_restart(make_pubsub: MakePubSub, broker: Mosquitto, uid: str) -> None:
    sub = make_pubsub(broker.url, consumerID=f"sub-{uid}", name=f"sub-{uid}")
    inbox = Inbox()
    await sub.subscribe(f"{uid}/a", inbox)
    await sub.init()
    pub = make_pubsub(broker.url, consumerID=f"pub-{uid}")
    await pub.init()
    await connected(sub, pub)

    broker.stop()
    await eventually(lambda: not sub.connected and not pub.connected)
    assert metric("edge_runtime_mqtt_connected", component=f"sub-{uid}") == 0
    started = time.monotonic()
    with pytest.raises(NotConnectedError):
        await pub.publish(Message(f"{uid}/a", b"lost"))
    assert time.monotonic() - started < 0.5  # promptly, not after a timeout
    await sub.subscribe(f"{uid}/b", inbox)  # recorded now, subscribed at the next CONNACK
    await asyncio.sleep(0.3)  # a few failed reconnect attempts

    broker.start()
    await connected(sub, pub)
    for topic in (f"{uid}/a", f"{uid}/b"):
        await pub.publish(Message(topic, topic.encode()))
        assert (await inbox.get()).topic == topic
    assert metric("edge_runtime_mqtt_connection_losses_total", component=f"sub-{uid}") == 1
    assert metric("edge_runtime_mqtt_reconnects_total", component=f"sub-{uid}") >= 1


async def test_kill_with_publishes_in_flight(make_pubsub: MakePubSub, broker: Mosquitto,
                                             uid: str) -> None:
    pub = make_pubsub(broker.url, consumerID=f"pub-{uid}", publishTimeout="60s")
    await pub.init()
    await connected(pub)
    broker.pause()  # no PUBACK will come
    sends = [asyncio.create_task(pub.publish(Message(f"{uid}/x", b"%d" % i))) for i in range(20)]
    await eventually(lambda: pub.client.in_flight == 20)
    assert not any(t.done() for t in sends)
    broker.kill()
    async with asyncio.timeout(WAIT):  # none hangs: they fail with the connection
        results = await asyncio.gather(*sends, return_exceptions=True)
    assert all(isinstance(r, NotConnectedError) for r in results), results
    assert pub.client.in_flight == 0
    assert not pub.connected


async def test_inflight_window(make_pubsub: MakePubSub, broker: Mosquitto, uid: str) -> None:
    pub = make_pubsub(broker.url, consumerID=f"pub-{uid}", inflight="3")
    await pub.init()
    await connected(pub)
    broker.pause()
    sends = [asyncio.create_task(pub.publish(Message(f"{uid}/w", b"x"))) for _ in range(10)]
    await eventually(lambda: pub.client.in_flight == 3)
    await asyncio.sleep(0.2)
    assert pub.client.in_flight == 3  # the other 7 wait for a slot, unsent
    assert len(pub.client._acks) == 3
    broker.resume()
    async with asyncio.timeout(WAIT):
        await asyncio.gather(*sends)
    assert pub.client.in_flight == 0


async def test_no_connack_times_out_and_retries(make_pubsub: MakePubSub, broker: Mosquitto,
                                                uid: str) -> None:
    broker.pause()  # the kernel accepts the TCP connection; CONNACK never comes
    ps = make_pubsub(broker.url, consumerID=f"c-{uid}", name=f"c-{uid}", connectTimeout="100ms")
    await ps.init()
    await eventually(lambda: metric("edge_runtime_mqtt_connect_failures_total",
                                    component=f"c-{uid}", reason="timeout") >= 2)
    broker.resume()
    await connected(ps)


async def test_auth_refusal_stops_retrying(make_pubsub: MakePubSub, tmp_path: Path,
                                           uid: str, caplog: pytest.LogCaptureFixture) -> None:
    passwords = make_password_file(tmp_path / "passwd", "edge", "s3cret")
    with Mosquitto(tmp_path / "auth", anonymous=False, password_file=passwords) as broker:
        host = f"127.0.0.1:{broker.port}"
        good = make_pubsub(f"tcp://edge:s3cret@{host}", consumerID=f"good-{uid}")
        await good.init()
        await connected(good)

        bad = make_pubsub(f"mqtt://edge:wrong@{host}", consumerID=f"bad-{uid}", name=f"b-{uid}")
        await bad.init()
        await eventually(lambda: bad.client.supervisor.given_up is not None)
        await asyncio.sleep(0.3)  # several backoff periods: no new attempt
        assert bad.client.supervisor.attempts == 1
        assert not bad.connected
        assert metric("edge_runtime_mqtt_connect_failures_total", component=f"b-{uid}",
                      reason="not_authorized") == 1
        with pytest.raises(NotConnectedError, match=r"(?i)not authorized|user name or password"):
            await bad.publish(Message("t", b""))
        assert any(r.levelno == logging.ERROR and "not retrying" in r.getMessage()
                   for r in caplog.records)

        anonymous = make_pubsub(f"tcp://{host}", consumerID=f"anon-{uid}")
        await anonymous.init()
        await eventually(lambda: anonymous.client.supervisor.given_up is not None)


async def test_takeover_loop_is_logged(make_pubsub: MakePubSub, mosquitto: Mosquitto,
                                       uid: str, caplog: pytest.LogCaptureFixture) -> None:
    one = make_pubsub(mosquitto.url, consumerID=f"twin-{uid}", name=f"one-{uid}")
    two = make_pubsub(mosquitto.url, consumerID=f"twin-{uid}", name=f"two-{uid}")
    await one.init()
    await two.init()

    def reported() -> bool:
        return any(r.levelno == logging.ERROR and f"'twin-{uid}' is being taken over"
                   in r.getMessage() for r in caplog.records)

    await eventually(reported)
    takeovers = sum(metric("edge_runtime_mqtt_takeovers_total", component=n)
                    for n in (f"one-{uid}", f"two-{uid}"))
    assert takeovers >= 1
    await one.close()
    await connected(two)  # alone again, it keeps its connection


async def test_mqtt5_receive_maximum_and_round_trip(make_pubsub: MakePubSub,
                                                    mosquitto: Mosquitto, uid: str) -> None:
    sub = make_pubsub(mosquitto.url, consumerID=f"sub-{uid}", protocol="5")
    inbox = Inbox()
    await sub.subscribe(f"{uid}/v5/+", inbox)
    await sub.init()
    pub = make_pubsub(mosquitto.url, consumerID=f"pub-{uid}", protocol="5", inflight="500")
    await pub.init()
    await connected(sub, pub)
    assert pub.client._window.capacity == 20  # mosquitto's Receive Maximum
    await asyncio.gather(*(pub.publish(Message(f"{uid}/v5/{i}", b"x")) for i in range(100)))
    topics = {(await inbox.get()).topic for _ in range(100)}
    assert len(topics) == 100
    assert pub.connected  # never more in flight than the broker allows


async def test_mqtt5_session_survives_a_restart(make_pubsub: MakePubSub, broker: Mosquitto,
                                                uid: str) -> None:
    first = make_pubsub(broker.url, consumerID=f"sub-{uid}", protocol="5")
    await first.subscribe(f"{uid}/s", Inbox())
    await first.init()
    await connected(first)
    await first.close()
    broker.restart()  # the session (with its expiry interval) is saved and reloaded
    pub = make_pubsub(broker.url, consumerID=f"pub-{uid}", protocol="5")
    await pub.init()
    await connected(pub)
    await pub.publish(Message(f"{uid}/s", b"queued"))
    again = make_pubsub(broker.url, consumerID=f"sub-{uid}", protocol="5")
    inbox = Inbox()
    await again.subscribe(f"{uid}/s", inbox)
    await again.init()
    assert (await inbox.get()).data == b"queued"


async def test_consumer_group_shares_messages(make_pubsub: MakePubSub, mosquitto: Mosquitto,
                                              uid: str) -> None:
    inboxes = [Inbox(), Inbox()]
    subs = []
    for i, inbox in enumerate(inboxes):
        sub = make_pubsub(mosquitto.url, consumerID=f"sub{i}-{uid}", protocol="5",
                          consumerGroup=f"g-{uid}")
        await sub.subscribe(f"{uid}/work/+", inbox)
        await sub.init()
        subs.append(sub)
    pub = make_pubsub(mosquitto.url, consumerID=f"pub-{uid}", protocol="5")
    await pub.init()
    await connected(pub, *subs)
    assert subs[0].client.subscriptions == {f"$share/g-{uid}/{uid}/work/+": 1}
    for i in range(40):
        await pub.publish(Message(f"{uid}/work/{i}", b"%d" % i))
    got: list[bytes] = []
    async with asyncio.timeout(WAIT):
        while len(got) < 40:
            for inbox in inboxes:
                while not inbox.queue.empty():
                    received = inbox.queue.get_nowait()
                    assert received.subscription == f"{uid}/work/+"
                    assert received.topic.startswith(f"{uid}/work/")
                    got.append(received.data)
            await asyncio.sleep(0.01)
    assert sorted(got) == sorted(b"%d" % i for i in range(40))  # each exactly once
    await asyncio.sleep(0.2)
    assert all(inbox.queue.empty() for inbox in inboxes)
    assert all(inbox.calls > 0 for inbox in inboxes)  # both members got a share


async def test_reconnects_while_publishing(make_pubsub: MakePubSub, mosquitto: Mosquitto,
                                           uid: str) -> None:
    """Forced reconnects under load: every publish succeeds or fails cleanly, none hangs, and
    what the handler acknowledged is not delivered again."""
    sub = make_pubsub(mosquitto.url, consumerID=f"sub-{uid}")
    inbox = Inbox()
    await sub.subscribe(f"{uid}/load", inbox)
    await sub.init()
    pub = make_pubsub(mosquitto.url, consumerID=f"pub-{uid}", inflight="10")
    await pub.init()
    await connected(sub, pub)

    async def publish(i: int) -> bool:
        try:
            await pub.publish(Message(f"{uid}/load", b"%d" % i))
        except NotConnectedError:
            return False
        return True

    sends = [asyncio.create_task(publish(i)) for i in range(300)]
    for _ in range(5):
        await asyncio.sleep(0.01)
        await pub.reconnect()
        await sub.reconnect()
        await connected(sub, pub)
    async with asyncio.timeout(WAIT):
        ok = await asyncio.gather(*sends)
    sent = {b"%d" % i for i, done in enumerate(ok) if done}
    assert len(sent) > 0
    got: set[bytes] = set()
    async with asyncio.timeout(WAIT):
        while not sent <= got:
            got.add((await inbox.get()).data)
    assert pub.client.in_flight == 0
