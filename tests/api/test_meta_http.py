"""Metadata, health, API token, secrets, shutdown and metrics over a real loopback socket."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import COMPONENTS, Sidecar, StartSidecar
from tests.support.components import local_secrets


async def test_metadata_lists_components_ports_and_extended(sidecar: Sidecar) -> None:
    http = sidecar.client
    doc = (await http.get("/v1.0/metadata")).json()
    assert doc["id"] == "app"
    comps = {c["name"]: c for c in doc["components"]}
    assert comps["statestore"]["type"] == "state.sqlite"
    assert comps["statestore"]["version"] == "v1"
    assert set(comps["statestore"]["capabilities"]) >= {"ETAG", "TRANSACTIONAL", "TTL"}
    assert comps["memstore"]["type"] == "state.in-memory"
    assert doc["extended"]["port.http"] == str(sidecar.port)
    assert int(doc["extended"]["port.metrics"]) > 0
    assert doc["appConnectionProperties"]["channelAddress"] == "127.0.0.1"
    r = await http.put("/v1.0/metadata/owner", content=b"team-a")
    assert r.status_code == 204
    assert (await http.get("/v1.0/metadata")).json()["extended"]["owner"] == "team-a"


async def test_runtime_json_has_the_chosen_ports(sidecar: Sidecar) -> None:
    doc = json.loads((sidecar.data_dir / "runtime.json").read_text())
    assert doc["ports"]["http"] == sidecar.port
    assert doc["appId"] == "app"


async def test_health_without_app(http: httpx.AsyncClient) -> None:
    assert (await http.get("/v1.0/healthz")).status_code == 204
    assert (await http.get("/v1.0/healthz/outbound")).status_code == 204
    r = await http.get("/v1.0/healthz?appid=other")
    assert (r.status_code, r.json()["errorCode"]) == (500, "ERR_HEALTH_APPID_NOT_MATCH")
    assert (await http.get("/v1.0/healthz?appid=app")).status_code == 204


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_health_waits_for_the_app_port(start_sidecar: StartSidecar) -> None:
    port = free_port()
    s: Sidecar = await start_sidecar(app_port=port)
    assert (await s.client.get("/v1.0/healthz/outbound")).status_code == 204
    r = await s.client.get("/v1.0/healthz")
    assert (r.status_code, r.json()["errorCode"]) == (500, "ERR_HEALTH_NOT_READY")
    # The state API serves while the app is still starting.
    assert (
        await s.client.post("/v1.0/state/statestore", json=[{"key": "k", "value": 1}])
    ).status_code == 204
    server = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", port)
    try:
        for _ in range(100):
            if (await s.client.get("/v1.0/healthz")).status_code == 204:
                break
            await asyncio.sleep(0.05)
        assert (await s.client.get("/v1.0/healthz")).status_code == 204
    finally:
        server.close()
        await server.wait_closed()


async def test_api_token(start_sidecar: StartSidecar) -> None:
    s: Sidecar = await start_sidecar(api_token="s3cret")
    base = f"http://127.0.0.1:{s.port}"
    async with httpx.AsyncClient(base_url=base) as bare:
        r = await bare.get("/v1.0/metadata")
        assert r.status_code == 401
        assert r.text == "invalid api token"
        r = await bare.get("/v1.0/metadata", headers={"dapr-api-token": "wrong"})
        assert r.status_code == 401
        assert (await bare.get("/v1.0/healthz")).status_code == 204
        assert (await bare.get("/v1.0/healthz/outbound")).status_code == 204
    assert (await s.client.get("/v1.0/metadata")).status_code == 200


async def test_shutdown_api_stops_the_sidecar(sidecar: Sidecar) -> None:
    r = await sidecar.client.post("/v1.0/shutdown")
    assert r.status_code == 204
    code = await asyncio.wait_for(sidecar.task, 10)
    assert code == 0
    assert not (sidecar.data_dir / "runtime.json").exists()


async def test_metrics_endpoint(sidecar: Sidecar) -> None:
    await sidecar.client.get("/v1.0/state/statestore/x")
    port = sidecar.runtime.view.ports["metrics"]
    async with httpx.AsyncClient() as c:
        text = (await c.get(f"http://127.0.0.1:{port}/metrics")).text
    assert 'edge_runtime_http_requests_total{route="state",status="204"}' in text
    assert "edge_runtime_up 1.0" in text


# A state store whose database path is a secret of ``filesecrets``.
SECRET_STATESTORE = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: statestore}
spec:
  type: state.sqlite
  version: v1
  metadata:
  - name: connectionString
    secretKeyRef: {name: "db:path"}
auth:
  secretStore: filesecrets
"""


def secrets(secrets_file: Path) -> str:
    """The two local secret stores and :data:`SECRET_STATESTORE`."""
    return "\n" + local_secrets(secrets_file) + "---\n" + SECRET_STATESTORE


async def test_secrets_api(
    start_sidecar: StartSidecar, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets_file = tmp_path / "secrets.json"
    secrets_file.write_text(json.dumps({"db": {"path": "fromsecret.db"}, "api": "k3y"}))
    monkeypatch.setenv("EDGE_TEST_SECRET", "from-env")
    s: Sidecar = await start_sidecar(components=secrets(secrets_file))
    http = s.client
    r = await http.get("/v1.0/secrets/envsecrets/EDGE_TEST_SECRET")
    assert r.status_code == 200
    assert r.json() == {"EDGE_TEST_SECRET": "from-env"}
    assert (await http.get("/v1.0/secrets/filesecrets/api")).json() == {"api": "k3y"}
    assert (await http.get("/v1.0/secrets/filesecrets/db:path")).json() == {
        "db:path": "fromsecret.db"
    }
    bulk = (await http.get("/v1.0/secrets/filesecrets/bulk")).json()
    assert bulk["api"] == {"api": "k3y"}
    r = await http.get("/v1.0/secrets/nostore/x")
    assert (r.status_code, r.json()["errorCode"]) == (401, "ERR_SECRET_STORE_NOT_FOUND")
    r = await http.get("/v1.0/secrets/filesecrets/missing")
    assert (r.status_code, r.json()["errorCode"]) == (500, "ERR_SECRET_GET")
    # The state store's connection string came from the file secret store.
    await http.post("/v1.0/state/statestore", json=[{"key": "k", "value": 1}])
    assert (s.data_dir / "fromsecret.db").exists()


async def test_secrets_not_configured(sidecar: Sidecar) -> None:
    r = await sidecar.client.get("/v1.0/secrets/any/key")
    assert (r.status_code, r.json()["errorCode"]) == (500, "ERR_SECRET_STORES_NOT_CONFIGURED")


async def test_data_survives_restart(start_sidecar: StartSidecar, tmp_path: Path) -> None:
    data = tmp_path / "shared"
    first: Sidecar = await start_sidecar(COMPONENTS, data_dir=data)
    await first.client.post("/v1.0/state/statestore", json=[{"key": "k", "value": "kept"}])
    first.runtime.request_shutdown()
    assert await asyncio.wait_for(first.task, 10) == 0
    second: Sidecar = await start_sidecar(COMPONENTS, data_dir=data)
    assert (await second.client.get("/v1.0/state/statestore/k")).json() == "kept"


async def test_disk_budget_gives_507(start_sidecar: StartSidecar) -> None:
    s: Sidecar = await start_sidecar(max_disk_mb=0.01)
    r = await s.client.post("/v1.0/state/statestore", json=[{"key": "k", "value": "x" * 20000}])
    assert r.status_code == 507
    assert r.json()["errorCode"] == "ERR_STORAGE_FULL"
    assert "--max-disk-mb" in r.json()["message"]
    # Reads and deletes still work on a full budget.
    assert (await s.client.get("/v1.0/state/statestore/k")).status_code == 204
    assert (await s.client.delete("/v1.0/state/statestore/k")).status_code == 204


async def test_corrupt_database_is_quarantined_and_reported(
    start_sidecar: StartSidecar, tmp_path: Path
) -> None:
    data = tmp_path / "corrupt"
    data.mkdir()
    (data / "state.db").write_bytes(b"this is not a database" * 100)
    s: Sidecar = await start_sidecar(COMPONENTS, data_dir=data)
    doc = (await s.client.get("/v1.0/metadata")).json()
    assert "quarantine" in doc["extended"]["dataLoss"]
    assert list((data / "quarantine").iterdir())
    r = await s.client.post("/v1.0/state/statestore", json=[{"key": "k", "value": 1}])
    assert r.status_code == 204


IGNORED = """
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: broken}
spec:
  type: state.sqlite
  version: v1
  ignoreErrors: true
  metadata:
  - {name: connectionString, value: /proc/no/such/dir/x.db}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: otherapp}
spec:
  type: state.in-memory
  version: v1
scopes: [someone-else]
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: mine}
spec:
  type: state.in-memory
  version: v1
scopes: [app]
"""


async def test_ignore_errors_and_scopes(start_sidecar: StartSidecar) -> None:
    s: Sidecar = await start_sidecar(IGNORED)
    names = {c["name"] for c in (await s.client.get("/v1.0/metadata")).json()["components"]}
    assert names == {"mine"}
    r = await s.client.get("/v1.0/state/broken/k")
    assert r.json()["errorCode"] == "ERR_STATE_STORE_NOT_FOUND"


async def test_failing_component_stops_the_start(start_sidecar: StartSidecar) -> None:
    with pytest.raises(RuntimeError, match="exit code 1"):
        await start_sidecar(IGNORED.replace("ignoreErrors: true", "ignoreErrors: false"))
