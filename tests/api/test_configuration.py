"""The configuration API (contract §2.11) over HTTP and gRPC (the official SDK), served from a
``cloudsync.grpc`` component's desired state. No cloud runs here: desired entries are applied
to the component's store as the sync client would after a Desired message."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from typing import Any

import cbor2
import pytest
from dapr.clients import DaprClient

from edge_runtime.cloudsync.desired import DesiredEntry
from tests.api.conftest import COMPONENTS, Sidecar, StartSidecar
from tests.appchannel.appserver import AppServer
from tests.cloudsync.procs import eventually
from tests.invocation.procs import free_port

CLOUD = COMPONENTS + """
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: cloud}
spec:
  type: cloudsync.grpc
  version: v1
  metadata:
  - {name: endpoint, value: "127.0.0.1:%d"}
  - {name: deviceID, value: dev}
  - {name: token, value: t}
  - {name: stateStores, value: statestore}
"""


@pytest.fixture
async def app() -> AsyncIterator[AppServer]:
    async with AppServer() as server:
        yield server


@pytest.fixture
async def side(start_sidecar: StartSidecar, app: AppServer) -> Sidecar:
    s: Sidecar = await start_sidecar(CLOUD % free_port(), app_port=app.port)
    return s


async def desire(s: Sidecar, seq: int, **values: Any) -> None:
    comp = s.runtime.builder.components.configuration["cloud"]  # type: ignore[union-attr]
    await comp.desired.apply([DesiredEntry(k, cbor2.dumps(v), 1000 + seq, seq)
                              for k, v in values.items()])


async def test_http_get(side: Sidecar) -> None:
    assert (await side.client.get("/v1.0/configuration/cloud")).status_code == 204
    await desire(side, 1, mode="eco", fan={"rpm": 900})
    r = await side.client.get("/v1.0/configuration/cloud", params={"key": "mode"})
    assert r.status_code == 200
    assert r.json() == {"mode": {"value": "eco", "version": "1001", "metadata": {}}}
    r = await side.client.get("/v1.0-alpha1/configuration/cloud")
    assert {k: v["value"] for k, v in r.json().items()} == {"mode": "eco", "fan": '{"rpm":900}'}
    r = await side.client.get("/v1.0/configuration/nope")
    assert r.status_code == 400
    assert r.json()["errorCode"] == "ERR_CONFIGURATION_STORE_NOT_FOUND"


async def test_http_without_stores(sidecar: Sidecar) -> None:
    r = await sidecar.client.get("/v1.0/configuration/cloud")
    assert r.status_code == 500
    assert r.json()["errorCode"] == "ERR_CONFIGURATION_STORE_NOT_CONFIGURED"


async def test_http_subscribe_posts_updates_to_the_app(side: Sidecar, app: AppServer) -> None:
    r = await side.client.get("/v1.0/configuration/cloud/subscribe", params={"key": "mode"})
    assert r.status_code == 200
    sub_id = r.json()["id"]
    await desire(side, 1, mode="eco", other=1)

    async def posted() -> list[Any]:
        return [q for q in app.requests if q.path == "/configuration/cloud/mode"]

    [req] = await eventually(posted)
    assert req.method == "POST"
    assert json.loads(req.body) == {
        "id": sub_id, "items": {"mode": {"value": "eco", "version": "1001", "metadata": {}}}}
    assert not [q for q in app.requests if q.path == "/configuration/cloud/other"]
    r = await side.client.get(f"/v1.0/configuration/cloud/{sub_id}/unsubscribe")
    assert r.json() == {"ok": True}
    r = await side.client.get(f"/v1.0/configuration/cloud/{sub_id}/unsubscribe")
    assert r.status_code == 500
    assert r.json()["ok"] is False


async def test_sdk_get_subscribe_unsubscribe(side: Sidecar,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAPR_HTTP_PORT", str(side.port))
    monkeypatch.delenv("DAPR_API_TOKEN", raising=False)
    await desire(side, 1, mode="eco")
    client = await asyncio.to_thread(
        DaprClient, address=f"127.0.0.1:{side.runtime.view.ports['grpc']}")
    got: list[tuple[str, dict[str, str]]] = []
    heard = threading.Event()

    def handler(sub_id: str, resp: Any) -> None:
        got.append((sub_id, {k: v.value for k, v in resp.items.items()}))
        heard.set()

    try:
        resp = await asyncio.to_thread(client.get_configuration, "cloud", ["mode"])
        assert resp.items["mode"].value == "eco"
        assert resp.items["mode"].version == "1001"
        sub_id = await asyncio.to_thread(client.subscribe_configuration, "cloud", ["mode"],
                                         handler)
        assert sub_id
        await desire(side, 2, mode="boost")
        assert await asyncio.to_thread(heard.wait, 10)
        assert got == [(sub_id, {"mode": "boost"})]
        assert await asyncio.to_thread(client.unsubscribe_configuration, "cloud", sub_id)
        assert not await asyncio.to_thread(client.unsubscribe_configuration, "cloud", sub_id)
    finally:
        await asyncio.to_thread(client.close)


async def test_metadata_shows_the_cloud_link(side: Sidecar) -> None:
    doc = (await side.client.get("/v1.0/metadata")).json()
    ext = doc["extended"]
    assert ext["cloudsync.cloud.deviceID"] == "dev"
    assert ext["cloudsync.cloud.connected"] == "false"
    assert {"name": "cloud", "type": "cloudsync.grpc", "version": "v1"} in doc["components"]
