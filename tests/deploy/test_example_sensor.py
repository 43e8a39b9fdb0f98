"""examples/sensor as its README walks through it: a real sidecar process starting the app
after --, a real mosquitto, readings posted to the binding as the README's curl does."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest

from tests.process.test_cli import wait_ready
from tests.support.mosquitto import Mosquitto, free_port, require_mosquitto

pytestmark = pytest.mark.broker

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sensor"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    require_mosquitto()
    with Mosquitto(tmp_path / "broker") as b:
        yield b


@pytest.fixture
def components(tmp_path: Path, broker: Mosquitto) -> Path:
    """The example's components, unchanged but for the broker's port (a private one here)."""
    res = tmp_path / "components"
    shutil.copytree(EXAMPLE / "components", res)
    pubsub = res / "pubsub.yaml"
    text = pubsub.read_text()
    assert "tcp://127.0.0.1:1883" in text
    pubsub.write_text(text.replace("tcp://127.0.0.1:1883", broker.url))
    return res


def start(components: Path, data: Path, **env: str) -> subprocess.Popen[bytes]:
    """The README's command, with free ports instead of 3500/8080."""
    args = [
        sys.executable, "-m", "edge_runtime", "run", "--app-id", "sensor",
        "--app-port", str(free_port()), "--dapr-http-port", "0", "--dapr-grpc-port", "0",
        "--metrics-port", "0", "--resources-path", str(components), "--data-dir", str(data),
        "--", sys.executable, str(EXAMPLE / "app.py"),
    ]
    return subprocess.Popen(
        args, env={**os.environ, **env}, stderr=subprocess.PIPE, start_new_session=True
    )


class Readings:
    """``mosquitto_sub -t readings``: the CloudEvents published on the topic."""

    def __init__(self, broker: Mosquitto) -> None:
        self.events: queue.Queue[dict[str, object]] = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="watcher")
        self.client.on_message = lambda _c, _u, msg: self.events.put(json.loads(msg.payload))
        subscribed = queue.Queue[bool]()
        self.client.on_subscribe = lambda *_args: subscribed.put(True)
        self.client.connect("127.0.0.1", broker.port)
        self.client.subscribe("readings", qos=1)
        self.client.loop_start()
        subscribed.get(timeout=10)

    def next(self) -> dict[str, object]:
        return self.events.get(timeout=60)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def stats(port: int, count: int, timeout: float = 60) -> dict[str, object]:
    """The state key ``stats`` once it has seen at least ``count`` readings."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        r = httpx.get(f"http://127.0.0.1:{port}/v1.0/state/statestore/stats", timeout=10)
        if r.status_code == 200:
            last = r.json()
            assert isinstance(last, dict)
            if last["count"] >= count:
                return last
        time.sleep(0.1)
    raise AssertionError(f"stats never reached count {count}: {last}")


def stop(proc: subprocess.Popen[bytes]) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    return err.decode()


def end(proc: subprocess.Popen[bytes]) -> None:
    """Kill what is left: the sidecar and the app it started (one process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)  # and close the pipe


def test_the_walk_through(tmp_path: Path, broker: Mosquitto, components: Path) -> None:
    watcher = Readings(broker)
    data = tmp_path / "data"
    proc = start(components, data)
    try:
        port = wait_ready(proc, data, timeout=60)
        for celsius in (20.5, 21.5, 22.5):
            r = httpx.post(
                f"http://127.0.0.1:{port}/v1.0/bindings/sensor",
                json={"operation": "create", "data": {"celsius": celsius}}, timeout=30,
            )
            assert r.status_code == 200, r.text
        got = stats(port, 3)
        assert got["count"] == 3
        assert got["window"] == [20.5, 21.5, 22.5]
        assert (got["mean"], got["min"], got["max"]) == (21.5, 20.5, 22.5)
        assert got["last"]["celsius"] == 22.5  # type: ignore[index]
        events = [watcher.next() for _ in range(3)]
        assert all(e["topic"] == "readings" and e["pubsubname"] == "pubsub" for e in events)
        assert all(e["datacontenttype"] == "application/json" for e in events)
        assert [e["data"] for e in events] == [
            {"celsius": 20.5, "mean": 20.5, "count": 1},
            {"celsius": 21.5, "mean": 21.0, "count": 2},
            {"celsius": 22.5, "mean": 21.5, "count": 3},
        ]
        err = stop(proc)
        assert "sensor app: listening on 127.0.0.1:" in err
        # "count goes on from 3": the state is in SQLite under the data dir.
        proc = start(components, data)
        port = wait_ready(proc, data, timeout=60)
        httpx.post(
            f"http://127.0.0.1:{port}/v1.0/bindings/sensor",
            json={"operation": "create", "data": {"celsius": 30.5}}, timeout=30,
        ).raise_for_status()
        got = stats(port, 4)
        assert got["count"] == 4
        assert got["window"] == [20.5, 21.5, 22.5, 30.5]
        assert watcher.next()["data"] == {"celsius": 30.5, "mean": 23.75, "count": 4}
        stop(proc)
    finally:
        watcher.close()
        end(proc)


def test_the_simulator_feeds_the_binding(
    tmp_path: Path, broker: Mosquitto, components: Path
) -> None:
    watcher = Readings(broker)
    data = tmp_path / "data"
    proc = start(components, data, SENSOR_SIMULATE_EVERY="0.2", SENSOR_WINDOW="3")
    try:
        port = wait_ready(proc, data, timeout=60)
        got = stats(port, 5)
        assert len(got["window"]) == 3  # type: ignore[arg-type]
        first = watcher.next()["data"]
        assert isinstance(first, dict)
        assert first["count"] == 1
        assert 20 < first["celsius"] < 22
        stop(proc)
    finally:
        watcher.close()
        end(proc)
