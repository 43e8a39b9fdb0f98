"""``pubsub.mqtt`` against a real mosquitto: round trips, routing, acks, sessions, shutdown."""

from __future__ import annotations

import asyncio

import pytest

from edge_runtime.observability.metrics import REGISTRY
from edge_runtime.pubsub import (
    Feature,
    Message,
    NotConnectedError,
    PublishError,
    PubSub,
    PubSubError,
    Received,
)
from tests.pubsub.conftest import WAIT, Inbox, MakePubSub, connected, eventually
from tests.support.mosquitto import Mosquitto

pytestmark = pytest.mark.broker


async def test_protocol_and_features(make_pubsub: MakePubSub, mosquitto: Mosquitto) -> None:
    ps = make_pubsub(mosquitto.url)
    assert isinstance(ps, PubSub)
    assert ps.features == frozenset({Feature.SUBSCRIBE_WILDCARDS})
    assert not ps.connected  # init() not called yet


async def test_init_returns_at_once_without_a_broker(make_pubsub: MakePubSub) -> None:
    ps = make_pubsub("tcp://127.0.0.1:1", consumerID="nobody")  # nothing listens on port 1
    async with asyncio.timeout(0.5):
        await ps.init()
    assert not ps.connected
    with pytest.raises(NotConnectedError):
        await ps.publish(Message("t", b"x"))


@pytest.mark.parametrize("qos", ["0", "1", "2"])
async def test_round_trip(make_pubsub: MakePubSub, mosquitto: Mosquitto, uid: str,
                          qos: str) -> None:
    sub = make_pubsub(mosquitto.url, consumerID=f"sub-{uid}", qos=qos)
    inbox = Inbox()
    await sub.subscribe(f"{uid}/orders", inbox)
    await sub.init()
    await connected(sub)
    pub = make_pubsub(mosquitto.url, consumerID=f"pub-{uid}", qos=qos)
    await pub.init()
    await connected(pub)
    await pub.publish(Message(f"{uid}/orders", b"\x00binary\xff"))
    got = await inbox.get()
    assert got == Received(f"{uid}/orders", b"\x00binary\xff", f"{uid}/orders",
                           {"retained": "false"})
    await inbox.nothing(0.2)


async def test_many_concurrent_publishes(make_pubsub: MakePubSub, mosquitto: Mosquitto,
                                         uid: str) -> None:
    sub = make_pubsub(mosquitto.url, consumerID=f"sub-{uid}")
    inbox = Inbox()
    await sub.subscribe(f"{uid}/n", inbox)
    await sub.init()
    pub = make_pubsub(mosquitto.url, consumerID=f"pub-{uid}", inflight="7")
    await pub.init()
    await connected(sub, pub)
    await asyncio.gather(*(pub.publish(Message(f"{uid}/n", str(i).encode())) for i in range(300)))
    got = {(await inbox.get()).data for _ in range(300)}
    assert got == {str(i).encode() for i in range(300)}
    assert pub.client.in_flight == 0


async def test_wildcards_route_with_the_concrete_topic(make_pubsub: MakePubSub,
                                                       mosquitto: Mosquitto, uid: str) -> None:
    sub = make_pubsub(mosquitto.url, consumerID=f"sub-{uid}")
    plus, hash_, exact = Inbox(), Inbox(), Inbox()
    await sub.subscribe(f"{uid}/+/temp", plus)
    await sub.subscribe(f"{uid}/alarms/#", hash_)
    await sub.subscribe(f"{uid}/alarms/fire", exact)
    await sub.init()
    pub = make_pubsub(mosquitto.url, consumerID=f"pub-{uid}")
    await pub.init()
    await connected(sub, pub)

    await pub.publish(Message(f"{uid}/kitchen/temp", b"21"))
    got = await plus.get()
    assert (got.topic, got.subscription, got.data) == (f"{uid}/kitchen/temp", f"{uid}/+/temp",
                                                       b"21")
    await pub.publish(Message(f"{uid}/alarms/smoke/level", b"3"))
    got = await hash_.get()
    assert (got.topic, got.subscription) == (f"{uid}/alarms/smoke/level", f"{uid}/alarms/#")
    # An exact filter wins over an overlapping wildcard (the broker may send one copy per
    # matching subscription: they all go to the exact one).
    await pub.publish(Message(f"{uid}/alarms/fire", b"!"))
    got = await exact.get()
    assert got.subscription == f"{uid}/alarms/fire"
    await hash_.nothing(0.2)
    await plus.nothing(0.0)


async def test_retained_flag_and_override(make_pubsub: MakePubSub, mosquitto: Mosquitto,
                                          uid: str) -> None:
    pub = make_pubsub(mosquitto.url, consumerID=f"pub-{uid}", retain="true")
    await pub.init()
    await connected(pub)
    await pub.publish(Message(f"{uid}/kept", b"last"))  # the component's retain: true
    await pub.publish(Message(f"{uid}/not-kept", b"gone", {"retain": "false"}))
    sub = make_pubsub(mosquitto.url, consumerID=f"sub-{uid}", cleanSession="true")
    inbox = Inbox()
    await sub.subscribe(f"{uid}/+", inbox)
    await sub.init()
    got = await inbox.get()
    assert (got.topic, got.data, got.metadata) == (f"{uid}/kept", b"last", {"retained": "true"})
    await inbox.nothing(0.2)
    # A message published live to a subscriber is not flagged retained (MQTT 3.1.1 §3.3.1.3).
    await pub.publish(Message(f"{uid}/kept", b"", {"RETAIN": "true"}))  # empty: clears it
    got = await inbox.get()
    assert got.metadata == {"retained": "false"}


async def test_bad_publish_and_subscribe_arguments(make_pubsub: MakePubSub,
                                                   mosquitto: Mosquitto, uid: str) -> None:
    ps = make_pubsub(mosquitto.url, consumerID=f"c-{uid}")
    await ps.init()
    await connected(ps)
    with pytest.raises(PublishError, match="wildcards"):
        await ps.publish(Message("a/#", b""))
    with pytest.raises(PublishError, match="retain"):
        await ps.publish(Message("a", b"", {"retain": "maybe"}))
    with pytest.raises(PubSubError, match="last level"):
        await ps.subscribe("a/#/b", Inbox())
    with pytest.raises(PubSubError, match="unsubscribeOnClose"):
        await ps.subscribe("a", Inbox(), {"unsubscribeOnClose": "perhaps"})
    assert ps.client.subscriptions == {}


async def test_handler_failure_is_not_acked_and_comes_back_after_reconnect(
    make_pubsub: MakePubSub, mosquitto: Mosquitto, uid: str
) -> None:
    sub = make_pubsub(mosquitto.url, consumerID=f"sub-{uid}")
    inbox = Inbox()
    inbox.fail = 1
    await sub.subscribe(f"{uid}/jobs", inbox)
    await sub.init()
    pub = make_pubsub(mosquitto.url, consumerID=f"pub-{uid}")
    await pub.init()
    await connected(sub, pub)
    await pub.publish(Message(f"{uid}/jobs", b"job-1"))
    await eventually(lambda: inbox.calls == 1)
    await inbox.nothing(0.3)  # not acked, and MQTT 3.1.1 brokers resend only on reconnect
    await pub.publish(Message(f"{uid}/jobs", b"job-2"))
    assert (await inbox.get()).data == b"job-2"  # later messages keep flowing
    await sub.reconnect()
    assert (await inbox.get()).data == b"job-1"  # redelivered on the new connection
    assert sub.connected
    await inbox.nothing(0.3)  # job-2 was acked: it does not come back


async def test_handler_failure_is_redelivered_without_a_network_failure(
    make_pubsub: MakePubSub, mosquitto: Mosquitto, uid: str
) -> None:
    """After a failed handler the component reconnects by itself (a few seconds later), so
    the broker resends what was not acknowledged and delivery does not stall."""
    sub = make_pubsub(mosquitto.url, consumerID=f"sub-{uid}")
    sub.redelivery_delay_s = 0.2
    inbox = Inbox()
    inbox.fail = 1
    await sub.subscribe(f"{uid}/auto", inbox)
    await sub.init()
    pub = make_pubsub(mosquitto.url, consumerID=f"pub-{uid}")
    await pub.init()
    await connected(sub, pub)
    await pub.publish(Message(f"{uid}/auto", b"job-1"))
    assert (await inbox.get()).data == b"job-1"  # the second delivery, after the reconnect
    assert inbox.calls == 2


async def test_queued_while_offline_are_delivered_at_start(
    make_pubsub: MakePubSub, mosquitto: Mosquitto, uid: str
) -> None:
    """Dapr #3992/#4074: a persistent session's queued messages must reach the handler."""
    first = make_pubsub(mosquitto.url, consumerID=f"sub-{uid}")
    await first.subscribe(f"{uid}/q/#", Inbox())
    await first.init()
    await connected(first)
    await first.close()  # the session and its subscription stay on the broker

    pub = make_pubsub(mosquitto.url, consumerID=f"pub-{uid}")
    await pub.init()
    await connected(pub)
    for i in range(5):
        await pub.publish(Message(f"{uid}/q/{i}", f"m{i}".encode()))

    again = make_pubsub(mosquitto.url, consumerID=f"sub-{uid}")
    inbox = Inbox()
    await again.subscribe(f"{uid}/q/#", inbox)  # before init(), as the runtime does
    await again.init()
    got = sorted([(await inbox.get()).data for _ in range(5)])
    assert got == [f"m{i}".encode() for i in range(5)]
    await inbox.nothing(0.3)


async def test_unsubscribe_stops_delivery(make_pubsub: MakePubSub, mosquitto: Mosquitto,
                                          uid: str) -> None:
    sub = make_pubsub(mosquitto.url, consumerID=f"sub-{uid}")
    inbox = Inbox()
    await sub.subscribe(f"{uid}/u", inbox)
    await sub.init()
    pub = make_pubsub(mosquitto.url, consumerID=f"pub-{uid}")
    await pub.init()
    await connected(sub, pub)
    await pub.publish(Message(f"{uid}/u", b"1"))
    assert (await inbox.get()).data == b"1"
    await sub.unsubscribe(f"{uid}/u")
    await sub.unsubscribe("never/subscribed")
    await pub.publish(Message(f"{uid}/u", b"2"))
    await inbox.nothing(0.3)
    assert sub.client.subscriptions == {}


async def test_unsubscribe_while_offline_is_sent_at_the_next_connect(
    make_pubsub: MakePubSub, mosquitto: Mosquitto, uid: str
) -> None:
    sub = make_pubsub(mosquitto.url, consumerID=f"sub-{uid}")
    inbox = Inbox()
    await sub.subscribe(f"{uid}/a", inbox)
    await sub.subscribe(f"{uid}/b", inbox)
    await sub.init()
    await connected(sub)
    await sub.close()
    again = make_pubsub(mosquitto.url, consumerID=f"sub-{uid}")
    await again.subscribe(f"{uid}/a", inbox)
    await again.client.unsubscribe(f"{uid}/b")  # the session still holds it: drop it
    await again.init()
    await connected(again)
    pub = make_pubsub(mosquitto.url, consumerID=f"pub-{uid}")
    await pub.init()
    await connected(pub)
    await pub.publish(Message(f"{uid}/b", b"b"))
    await pub.publish(Message(f"{uid}/a", b"a"))
    assert (await inbox.get()).data == b"a"
    await inbox.nothing(0.2)
    assert again.client.subscriptions == {f"{uid}/a": 1}


async def test_unsubscribe_on_close(make_pubsub: MakePubSub, mosquitto: Mosquitto,
                                    uid: str) -> None:
    sub = make_pubsub(mosquitto.url, consumerID=f"sub-{uid}")
    await sub.subscribe(f"{uid}/temp", Inbox(), {"unsubscribeOnClose": "true"})
    await sub.subscribe(f"{uid}/kept", Inbox())
    await sub.init()
    await connected(sub)
    await sub.close()
    pub = make_pubsub(mosquitto.url, consumerID=f"pub-{uid}")
    await pub.init()
    await connected(pub)
    await pub.publish(Message(f"{uid}/temp", b"t"))
    await pub.publish(Message(f"{uid}/kept", b"k"))
    again = make_pubsub(mosquitto.url, consumerID=f"sub-{uid}")
    inbox = Inbox()
    await again.subscribe(f"{uid}/#", inbox)
    await again.init()
    assert (await inbox.get()).data == b"k"
    await inbox.nothing(0.3)


async def test_close_is_idempotent_and_leaves_no_task(make_pubsub: MakePubSub,
                                                      mosquitto: Mosquitto, uid: str) -> None:
    ps = make_pubsub(mosquitto.url, consumerID=f"c-{uid}")
    waiter = asyncio.create_task(connected(ps))
    await ps.close()  # before init: nothing to stop
    with pytest.raises(NotConnectedError):
        await waiter
    with pytest.raises(PubSubError):
        await ps.init()
    other = make_pubsub(mosquitto.url, consumerID=f"d-{uid}")
    await other.init()
    await connected(other)
    await asyncio.gather(other.close(), other.close())
    await other.close()
    assert not other.connected
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("mqtt[")]
    with pytest.raises(NotConnectedError):
        await other.publish(Message("t", b""))


async def test_close_while_connecting(make_pubsub: MakePubSub, broker: Mosquitto,
                                      uid: str) -> None:
    broker.pause()  # TCP connects, no CONNACK: close() must not hang on it
    ps = make_pubsub(broker.url, consumerID=f"c-{uid}")
    await ps.init()
    await asyncio.sleep(0.1)
    async with asyncio.timeout(WAIT):
        await ps.close()
    broker.resume()


async def test_close_lets_running_handlers_finish(make_pubsub: MakePubSub,
                                                  mosquitto: Mosquitto, uid: str) -> None:
    release = asyncio.Event()
    done: list[bytes] = []

    async def slow(received: Received) -> None:
        await release.wait()
        done.append(received.data)

    sub = make_pubsub(mosquitto.url, consumerID=f"sub-{uid}")
    await sub.subscribe(f"{uid}/slow", slow)
    await sub.init()
    pub = make_pubsub(mosquitto.url, consumerID=f"pub-{uid}")
    await pub.init()
    await connected(sub, pub)
    await pub.publish(Message(f"{uid}/slow", b"s"))
    await eventually(lambda: bool(sub._handling))
    closing = asyncio.create_task(sub.close())
    await asyncio.sleep(0.05)
    assert not closing.done()
    release.set()
    await asyncio.wait_for(closing, WAIT)
    assert done == [b"s"]


async def test_subscribe_while_connected(make_pubsub: MakePubSub, mosquitto: Mosquitto,
                                         uid: str) -> None:
    sub = make_pubsub(mosquitto.url, consumerID=f"sub-{uid}", protocol="5", cleanSession="true")
    pub = make_pubsub(mosquitto.url, consumerID=f"pub-{uid}")
    await sub.init()
    await pub.init()
    await connected(sub, pub)
    inbox = Inbox()
    await sub.subscribe(f"{uid}/live", inbox)  # returns once the SUBACK granted it
    await pub.publish(Message(f"{uid}/live", b"now"))
    assert (await inbox.get()).data == b"now"
    replaced = Inbox()
    await sub.subscribe(f"{uid}/live", replaced)  # again: the new handler takes over
    await pub.publish(Message(f"{uid}/live", b"again"))
    assert (await replaced.get()).data == b"again"
    await inbox.nothing(0.1)


async def test_unrouted_messages_wait_for_a_handler(make_pubsub: MakePubSub,
                                                    mosquitto: Mosquitto, uid: str) -> None:
    """A persistent session may hold a subscription this run has no handler for yet: its
    messages are not acknowledged, so they come back once a handler exists and we reconnect."""
    first = make_pubsub(mosquitto.url, consumerID=f"sub-{uid}")
    await first.subscribe(f"{uid}/old/#", Inbox())
    await first.init()
    await connected(first)
    await first.close()
    pub = make_pubsub(mosquitto.url, consumerID=f"pub-{uid}")
    await pub.init()
    await connected(pub)
    await pub.publish(Message(f"{uid}/old/1", b"waiting"))

    name = f"again-{uid}"
    again = make_pubsub(mosquitto.url, consumerID=f"sub-{uid}", name=name)
    await again.init()
    await eventually(lambda: (REGISTRY.get_sample_value(
        "edge_runtime_mqtt_messages_unrouted_total", {"component": name}) or 0) == 1)
    inbox = Inbox()
    await again.subscribe(f"{uid}/old/#", inbox)
    await inbox.nothing(0.1)
    await again.reconnect()
    assert (await inbox.get()).data == b"waiting"


async def test_client_level_errors(make_pubsub: MakePubSub, mosquitto: Mosquitto,
                                   uid: str) -> None:
    ps = make_pubsub(mosquitto.url, consumerID=f"c-{uid}")
    await ps.reconnect()  # not connected: nothing to do
    await ps.init()
    await connected(ps)
    with pytest.raises(PublishError, match="cannot publish"):
        await ps.client.publish("a/+", b"", qos=1, retain=False)  # paho's own check
    with pytest.raises(PubSubError, match="QoS"):
        await ps.client.subscribe("a", 3)
    with pytest.raises(PubSubError, match="whole level"):
        await ps.client.subscribe("a+", 1)
    assert ps.client.subscriptions == {}
