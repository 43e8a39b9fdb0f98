"""``bindings.gpio`` on the simulated chip inside a running sidecar: edges through the durable
input path to a real HTTP app (also while the app is down), and the output operations over
HTTP and over gRPC with the official SDK."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from edge_runtime.bindings.gpio.simclient import SimClient
from tests.api.conftest import Sidecar, StartSidecar
from tests.api.test_bindings_grpc import reason
from tests.api.test_bindings_input import BindingApp, free_port, ready
from tests.api.test_grpc_sdk import connect
from tests.appchannel.appserver import AppServer

GPIO = """
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: gpio}
spec:
  type: bindings.gpio
  version: v1
  metadata:
  - {name: chip, value: sim}
  - {name: lines, value: "BUTTON=17, DOOR=GPIO27"}
  - {name: outputs, value: "LED=18"}
  - {name: route, value: /gpio}
"""


def bodies(app: BindingApp) -> list[dict[str, object]]:
    return [json.loads(e.body) for e in app.events]


async def test_edges_reach_the_app_in_order(start_sidecar: StartSidecar) -> None:
    app = BindingApp()
    async with AppServer(app) as server:
        s: Sidecar = await start_sidecar(GPIO, app_port=server.port)
        await ready(s)
        async with SimClient(s.data_dir / "gpio-sim.sock") as sim:
            await sim.drive(17, 1)
            await sim.drive("GPIO27", 1)
            await sim.drive(17, 0)
        await app.wait(3)
    got = bodies(app)
    assert [(b["line"], b["name"], b["edge"], b["value"], b["seq"]) for b in got] == [
        (17, "BUTTON", "rising", 1, 1), (27, "DOOR", "rising", 1, 2),
        (17, "BUTTON", "falling", 0, 3)]
    first = app.events[0]
    assert (first.method, first.path) == ("POST", "/gpio")
    assert first.header("content-type") == "application/json"
    assert (first.header("line"), first.header("name"), first.header("edge")) == (
        "17", "BUTTON", "rising")
    doc = (await s.client.get("/v1.0/metadata")).json()
    [gpio] = [c for c in doc["components"] if c["name"] == "gpio"]
    assert gpio["type"] == "bindings.gpio"
    assert set(gpio["capabilities"]) == {"INPUT_BINDING", "OUTPUT_BINDING"}


async def test_edges_while_the_app_is_down_are_all_delivered(
    start_sidecar: StartSidecar,
) -> None:
    port = free_port()  # nothing listens until the app starts below
    s: Sidecar = await start_sidecar(GPIO, app_port=port)
    async with SimClient(s.data_dir / "gpio-sim.sock") as sim:
        for _ in range(15):
            await sim.drive(17, 1, 0)
    for _ in range(500):  # committed to the inbox while the app is down
        if await _backlog(s) >= 30:
            break
        await asyncio.sleep(0.02)
    assert await _backlog(s) == 30
    assert (await s.client.get("/v1.0/healthz")).status_code == 500
    app = BindingApp()
    async with AppServer(app, port=port):
        await app.wait(30)
        await asyncio.sleep(0.1)
    got = bodies(app)
    assert [b["seq"] for b in got] == list(range(1, 31))
    assert [b["edge"] for b in got] == ["rising", "falling"] * 15


async def _backlog(s: Sidecar) -> int:
    rows = await s.runtime.subscriptions.inbox.backlog()
    return int(rows.get("binding:gpio", (0, 0))[0])


async def test_outputs_over_http(start_sidecar: StartSidecar) -> None:
    s: Sidecar = await start_sidecar(GPIO)
    sock = s.data_dir / "gpio-sim.sock"

    async def call(operation: str, **metadata: str) -> tuple[int, bytes]:
        r = await s.client.post("/v1.0/bindings/gpio",
                                json={"operation": operation, "metadata": metadata})
        return r.status_code, r.content

    assert await call("set", line="LED", value="1") == (204, b"")
    async with SimClient(sock) as sim:
        assert (await sim.read(18))["value"] == 1
    status, body = await call("get", line="led")
    assert status == 200
    assert json.loads(body) == {"line": 18, "name": "LED", "value": 1}
    assert await call("pulse", line="18", value="0", durationMs="50") == (204, b"")
    async with SimClient(sock) as sim:
        assert (await sim.read(18))["value"] == 1
    status, body = await call("set", line="BUTTON", value="1")
    assert status == 500
    assert json.loads(body) == {
        "errorCode": "ERR_INVOKE_OUTPUT_BINDING",
        "message": "error invoking output binding gpio: binding gpio: line 17 is an input;"
                   " set drives output lines only"}
    status, body = await call("toggle", line="LED")
    assert status == 500
    assert "supported operations: get set pulse" in json.loads(body)["message"]


async def test_outputs_with_the_sdk_over_grpc(
    start_sidecar: StartSidecar, monkeypatch: pytest.MonkeyPatch
) -> None:
    import grpc  # the gRPC API's library, as the SDK uses it

    s: Sidecar = await start_sidecar(GPIO, dapr_grpc_port=0)
    sdk = await connect(s, monkeypatch)
    try:
        await sdk(sdk.client.invoke_binding, "gpio", "set", "", {"line": "LED", "value": "1"})
        got = await sdk(sdk.client.invoke_binding, "gpio", "get", "", {"line": "LED"})
        assert json.loads(got.data) == {"line": 18, "name": "LED", "value": 1}
        assert got.binding_metadata == {"value": "1"}
        with pytest.raises(grpc.RpcError) as info:
            await sdk(sdk.client.invoke_binding, "gpio", "set", "", {"line": "NOPE"})
        err: grpc.Call = info.value  # type: ignore[assignment]
        assert reason(err) == "ERR_INVOKE_OUTPUT_BINDING"
        assert "no line 'NOPE'; its lines: BUTTON, DOOR, LED" in (err.details() or "")
    finally:
        await asyncio.to_thread(sdk.client.close)


async def test_a_missing_chip_stops_the_start_with_the_reason(
    start_sidecar: StartSidecar, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, "edge_runtime")
    missing = GPIO.replace("value: sim", "value: /dev/gpiochip99")
    with pytest.raises(RuntimeError, match="did not start"):
        await start_sidecar(missing)
    assert "failed to initialise: no GPIO chip /dev/gpiochip99" in caplog.text
    assert "resources0/components.yaml:" in caplog.text
