"""Parts shared by the storage fault scenarios (crash storm, power cut, disk full).

- :class:`Recorder`: a bare paho subscriber (persistent session, QoS 1) that records the ``i``
  of every CloudEvent it receives; it outlives broker restarts (the broker keeps its session).
- :class:`Publishers`: N concurrent HTTP publishers against a sidecar that may be killed and
  restarted under them; each id is published once, and only a 204 counts as acknowledged.
- :class:`Counts`: runs, published, acknowledged, received, lost, duplicated; printed as one
  line by every scenario.

The invariant every scenario asserts: each acknowledged publish reaches the subscriber at least
once (lost == 0), except where a scenario states a window (``--durability normal`` power cuts).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import textwrap
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field

import httpx
import paho.mqtt.client as mqtt

from tests.support.components import mqtt_pubsub
from tests.support.sidecar import SidecarProcess

TOPIC = "storm"


def pubsub_component(url: str, client_id: str, extra: str = "") -> str:
    """A ``pubsub.mqtt3`` component named ``mqtt`` (reconnecting quickly)."""
    more = textwrap.indent(textwrap.dedent(extra), "  ")
    return "\n" + mqtt_pubsub(url, client_id, ("reconnectMax", "500ms")) + more


class Recorder:
    """A paho client in its own thread, subscribed with QoS 1 and a persistent session to
    ``storm/#``; ``seen`` counts every delivery of each id (duplicates included)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.seen: Counter[int] = Counter()
        self.others = 0  # payloads that were not our CloudEvents
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"recorder-{uuid.uuid4().hex[:8]}",
            clean_session=False,
        )
        self.client.reconnect_delay_set(0.05, 0.5)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message

    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, _rc: object,
                    _p: object) -> None:
        client.subscribe(f"{TOPIC}/#", qos=1)
        self._subscribed.set()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        try:
            i = int(json.loads(msg.payload)["data"]["i"])
        except (ValueError, KeyError, TypeError):
            with self._lock:
                self.others += 1
            return
        with self._lock:
            self.seen[i] += 1

    def start(self) -> None:
        """Connect and subscribe; returns once the first subscription is sent."""
        self.client.connect("127.0.0.1", self.port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise AssertionError("the recorder did not connect to the broker")

    def stop(self) -> None:
        self.client.loop_stop()
        with contextlib.suppress(Exception):
            self.client.disconnect()

    def distinct(self) -> set[int]:
        with self._lock:
            return set(self.seen)

    async def wait_for(self, ids: set[int], limit_s: float) -> set[int]:
        """Wait until every id in ``ids`` arrived or ``limit_s`` passed; the ones missing."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit_s
        while True:
            missing = ids - self.distinct()
            if not missing or loop.time() > deadline:
                return missing
            await asyncio.sleep(0.1)


@dataclass
class Counts:
    """One scenario's figures."""

    name: str
    runs: int = 0
    published: int = 0
    acknowledged: set[int] = field(default_factory=set)
    received: int = 0  # distinct acknowledged-or-not ids that arrived
    deliveries: int = 0  # every arrival, duplicates included
    lost: int = 0
    extra: str = ""

    @property
    def duplicated(self) -> int:
        return self.deliveries - self.received

    def settle(self, recorder: Recorder) -> None:
        with recorder._lock:  # a consistent snapshot
            seen = dict(recorder.seen)
        self.received = len(seen)
        self.deliveries = sum(seen.values())
        self.lost = len(self.acknowledged - set(seen))

    def line(self) -> str:
        text = (
            f"[{self.name}] runs={self.runs} published={self.published}"
            f" acknowledged={len(self.acknowledged)} received={self.received}"
            f" lost={self.lost} duplicated={self.duplicated}"
        )
        return f"{text} {self.extra}".rstrip()


class Publishers:
    """``n`` concurrent publishers sharing one id counter, against ``sidecar`` (its current
    port is read per request, so a restart under them is followed). A failed request (the
    sidecar killed, a 5xx) is not acknowledged; the id is not retried (it may still arrive:
    it was committed before the reply was lost)."""

    def __init__(self, sidecar: SidecarProcess, n: int, total: int, counts: Counts,
                 *, state_store: str | None = None) -> None:
        self.sidecar = sidecar
        self.state_store = state_store  # save key ``k<i>`` there instead of publishing
        self.n = n
        self.total = total
        self.counts = counts
        self.statuses: Counter[int] = Counter()
        self._ids = itertools.count()
        self._tasks: list[asyncio.Task[None]] = []
        self.paused = asyncio.Event()  # set while the sidecar is down: publishers wait

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(k)) for k in range(self.n)]

    @property
    def done(self) -> bool:
        return all(t.done() for t in self._tasks)

    async def wait(self) -> None:
        await asyncio.gather(*self._tasks)

    async def _run(self, k: int) -> None:
        async with httpx.AsyncClient(timeout=15) as client:
            while True:
                while self.paused.is_set():
                    await asyncio.sleep(0.02)
                i = next(self._ids)
                if i >= self.total:
                    return
                self.counts.published += 1
                try:
                    if self.state_store is None:
                        r = await client.post(
                            f"{self.sidecar.url}/v1.0/publish/mqtt/{TOPIC}/{k}", json={"i": i}
                        )
                    else:
                        r = await client.post(f"{self.sidecar.url}/v1.0/state/{self.state_store}",
                                              json=[{"key": f"k{i}", "value": {"i": i}}])
                except (httpx.HTTPError, KeyError):
                    self.statuses[0] += 1
                    await asyncio.sleep(0.02)
                    continue
                self.statuses[r.status_code] += 1
                if r.status_code == 204:
                    self.counts.acknowledged.add(i)


async def outbox_backlog(sidecar: SidecarProcess) -> str:
    """The ``pubsub.mqtt.outbox`` figure from the sidecar's metadata ("?" when unreadable)."""
    with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
        async with sidecar.client() as c:
            return str((await c.get("/v1.0/metadata")).json()["extended"]["pubsub.mqtt.outbox"])
    return "?"


async def drained(sidecar: SidecarProcess, limit_s: float) -> bool:
    """Wait for the sidecar's MQTT outbox to be empty (everything acknowledged by the broker)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while loop.time() < deadline:
        if await outbox_backlog(sidecar) == "0":
            return True
        await asyncio.sleep(0.1)
    return False
