"""Fixtures: a session broker, per-test brokers for fault tests, component factories.

Tests that stop, kill, pause or reconfigure a broker use ``broker`` (their own instance);
the others share ``mosquitto`` and keep apart with unique topics and client ids (``uid``).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_runtime.config.manifest import ComponentManifest, Mark
from edge_runtime.config.metadata import ResolvedMetadata, Value
from edge_runtime.pubsub import Received
from edge_runtime.pubsub.mqtt import MqttPubSub, create
from edge_runtime.registry import ComponentContext
from tests.support.mosquitto import Mosquitto

YAML = "components/pubsub.yaml"

# Short bounds keep fault tests fast; every wait in a test is bounded by WAIT.
FAST = {
    "reconnectMin": "20ms",
    "reconnectMax": "200ms",
    "connectTimeout": "2s",
    "publishTimeout": "5s",
    "keepAlive": "10s",
}
WAIT = 10.0

MakePubSub = Callable[..., MqttPubSub]


def context(
    metadata: dict[str, str], data_dir: Path, *, app_id: str = "app", name: str = "pubsub"
) -> ComponentContext:
    """A context for component ``name`` (``YAML`` line 3), the i-th entry on line 10 + 2i."""
    manifest = ComponentManifest(name, "pubsub.mqtt", "v1", Mark(YAML, 3))
    values = [Value(k, v, Mark(YAML, 10 + 2 * i)) for i, (k, v) in enumerate(metadata.items())]
    return ComponentContext(manifest, ResolvedMetadata(values), app_id, data_dir)


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """One broker for the session (never stopped by a test)."""
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A broker of the test's own, free to stop, kill, pause and restart."""
    b = Mosquitto(tmp_path / "broker")
    b.start()
    yield b
    b.kill()


@pytest.fixture
def uid() -> str:
    """A short unique id for topics and client ids."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
async def make_pubsub(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[MakePubSub]:
    """``make_pubsub(url, consumerID=..., **metadata)``: a component (not started) with the
    fast bounds; all are closed at the end, which then checks that no task is left and no
    exception was swallowed by the loop or logged with a traceback at ERROR."""
    loop = asyncio.get_running_loop()
    swallowed: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, ctx: swallowed.append(ctx))
    made: list[MqttPubSub] = []

    def make(url: str, *, app_id: str = "app", name: str = "pubsub", **metadata: str) -> MqttPubSub:
        ps = create(context({"url": url, **FAST, **metadata}, tmp_path, app_id=app_id, name=name))
        made.append(ps)
        return ps

    with caplog.at_level(logging.INFO, logger="edge_runtime.pubsub"):
        yield make
        for ps in made:
            await ps.close()
    loop.set_exception_handler(None)
    assert not swallowed, swallowed
    tracebacks = [r for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info]
    assert not tracebacks, [r.getMessage() for r in tracebacks]
    left = [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("mqtt[")]
    assert not left, left


class Inbox:
    """A handler that queues what it receives; ``fail`` makes the next calls raise."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Received] = asyncio.Queue()
        self.fail = 0
        self.calls = 0

    async def __call__(self, received: Received) -> None:
        self.calls += 1
        if self.fail > 0:
            self.fail -= 1
            raise RuntimeError("injected handler failure")
        self.queue.put_nowait(received)

    async def get(self, within: float = WAIT) -> Received:
        """The next message; fails the test after ``within`` seconds."""
        async with asyncio.timeout(within):
            return await self.queue.get()

    async def nothing(self, seconds: float = 0.3) -> None:
        """Assert that nothing arrives within ``seconds``."""
        try:
            async with asyncio.timeout(seconds):
                got = await self.queue.get()
        except TimeoutError:
            return
        pytest.fail(f"unexpected message {got}")


async def connected(*components: MqttPubSub, within: float = WAIT) -> None:
    """Wait until every component is connected and its subscriptions are confirmed (so a
    message published next by another client finds them); fail after ``within`` seconds."""
    async with asyncio.timeout(within):
        await asyncio.gather(*(c.wait_connected() for c in components))
        await eventually(lambda: all(c.subscribed for c in components), within)


async def eventually(check: Callable[[], bool], within: float = WAIT) -> None:
    """Poll ``check`` every 10 ms until true; fail after ``within`` seconds (for state that
    signals no event: metrics, counters, attributes)."""
    async with asyncio.timeout(within):
        while True:  # the checked state signals no event to wait on
            if check():
                return
            await asyncio.sleep(0.01)
