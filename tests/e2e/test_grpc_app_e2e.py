"""Publisher sidecar → mosquitto → subscriber sidecar (``--app-protocol grpc``, a separate
process) → the official SDK's gRPC app; the app goes down mid-stream and comes back."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest
from dapr.ext.grpc import App, SubscriptionMessage

from tests.appchannel.grpcapp import SdkApp, until
from tests.e2e.test_mqtt_e2e import component, healthy, publish
from tests.support.mosquitto import Mosquitto, require_mosquitto
from tests.support.sidecar import SidecarProcess

pytestmark = pytest.mark.broker

TOKEN = "e2e-app-token"


class Seen:
    def __init__(self) -> None:
        self.ids: list[int] = []
        self.tokens: set[str] = set()
        self.topics: set[str] = set()
        self.lock = threading.Lock()

    def setup(self, app: App) -> None:
        # The SDK looks handlers up by the concrete topic (e2e/0 ...) unless topic validation
        # is off: then by the route, which it sets to the filter.
        @app.subscribe("mqtt", "e2e/#", disable_topic_validation=True)
        def events(event: SubscriptionMessage) -> None:
            with self.lock:
                self.ids.append(json.loads(event.raw_data())["i"])
                self.tokens.add(event.metadata().get("dapr-api-token", ""))
                self.topics.add(event.topic())

    def has(self, ids: set[int]) -> bool:
        with self.lock:
            return ids <= set(self.ids)


async def test_grpc_app_over_mqtt_with_an_app_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_mosquitto()
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    seen = Seen()
    app = SdkApp(seen.setup).start()
    monkeypatch.setenv("APP_API_TOKEN", TOKEN)  # the sidecars inherit it
    sub = SidecarProcess(tmp_path, "sub", component(broker.url, "grpc-sub"), app.port,
                         extra=["--app-protocol", "grpc", "--disable-grpc-api"])
    pub = SidecarProcess(tmp_path, "pub", component(broker.url, "grpc-pub"))
    try:
        await sub.start()
        await healthy(sub.port)
        await pub.start()
        acked: list[int] = []
        await publish(pub.port, range(50), acked)
        await until(lambda: seen.has(set(acked)), within=60)
        app.stop()  # delivery fails (UNAVAILABLE) and is retried from the inbox
        await publish(pub.port, range(50, 100), acked)
        await asyncio.sleep(0.5)
        app.start()
        await until(lambda: seen.has(set(acked)), within=60)
        assert len(acked) == 100
        assert seen.tokens == {TOKEN}
        assert seen.topics == {f"e2e/{i}" for i in range(4)}  # the concrete topics
    finally:
        await pub.stop()
        await sub.stop()
        app.stop()
        broker.stop()
