"""Invocation across two in-process sidecars (real sockets, one event loop): the gRPC API to a
remote app, misrouted tables, a peer without an app channel, Resiliency retries of an
unreachable peer, large bodies, and the HTTP-only profile."""

from __future__ import annotations

import asyncio
import json
import textwrap
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from dapr.clients import DaprClient

from edge_runtime.observability.metrics import INVOCATION_RETRIES
from tests.api.conftest import COMPONENTS, Sidecar, StartSidecar
from tests.appchannel.appserver import AppServer
from tests.invocation.echoapp import echo
from tests.invocation.procs import free_port, name_table

TOKEN = "t0ken"


@pytest.fixture
async def app_b() -> AsyncIterator[AppServer]:
    async with AppServer(echo("b")) as server:
        yield server


async def callee(start_sidecar: StartSidecar, app_port: int | None, **kw: Any) -> Sidecar:
    s: Sidecar = await start_sidecar(
        app_id="b", app_port=app_port, internal_grpc_port=0,
        internal_grpc_listen_address="127.0.0.1", internal_token=TOKEN, **kw,
    )
    return s


async def caller(
    start_sidecar: StartSidecar, tmp_path: Path, apps: dict[str, str], components: str = COMPONENTS,
    **kw: Any,
) -> Sidecar:
    config = name_table(tmp_path / f"config-{len(apps)}-{free_port()}.yaml", apps)
    s: Sidecar = await start_sidecar(
        components, app_id="a", config_path=config, internal_token=TOKEN, **kw
    )
    return s


def internal(s: Sidecar) -> str:
    return f"127.0.0.1:{s.runtime.view.ports['internal']}"


async def test_remote_app_through_the_grpc_api(
    start_sidecar: StartSidecar, tmp_path: Path, app_b: AppServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    b = await callee(start_sidecar, app_b.port)
    a = await caller(start_sidecar, tmp_path, {"b": internal(b)})
    monkeypatch.setenv("DAPR_HTTP_PORT", str(a.port))
    monkeypatch.setenv("DAPR_HEALTH_TIMEOUT", "10")
    monkeypatch.setenv("DAPR_API_METHOD_INVOCATION_PROTOCOL", "grpc")

    def call(method: str) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # gRPC invoke is deprecated
            with DaprClient(address=f"127.0.0.1:{a.runtime.view.ports['grpc']}") as client:
                return client.invoke_method(
                    "b", method, data=b"hi", content_type="text/plain", http_verb="PUT"
                )

    got = json.loads((await asyncio.to_thread(call, "x/y")).data)
    assert (got["method"], got["path"], got["body"]) == ("PUT", "/x/y", "hi")
    assert (got["headers"]["dapr-caller-app-id"], got["headers"]["dapr-callee-app-id"]) == (
        "a", "b"
    )
    with pytest.raises(grpc.RpcError) as err:
        await asyncio.to_thread(call, "status/404")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_misrouted_table_is_refused_by_the_peer(
    start_sidecar: StartSidecar, tmp_path: Path, app_b: AppServer
) -> None:
    b = await callee(start_sidecar, app_b.port)
    a = await caller(start_sidecar, tmp_path, {"c": internal(b)})
    r = await a.client.get("/v1.0/invoke/c/method/t")
    assert r.status_code == 500
    assert "this sidecar serves app 'b', not 'c'" in r.json()["message"]
    assert not [q for q in app_b.requests if q.path == "/t"]


async def test_peer_without_app_channel(start_sidecar: StartSidecar, tmp_path: Path) -> None:
    b = await callee(start_sidecar, None)
    a = await caller(start_sidecar, tmp_path, {"b": internal(b)})
    r = await a.client.get("/v1.0/invoke/b/method/t")
    assert r.status_code == 500
    assert r.json()["message"].startswith(
        "failed to invoke, id: b, err: cannot invoke local endpoint: app channel not initialized"
    )


async def test_large_bodies_cross_sidecars(
    start_sidecar: StartSidecar, tmp_path: Path, app_b: AppServer
) -> None:
    b = await callee(start_sidecar, app_b.port)
    a = await caller(start_sidecar, tmp_path, {"b": internal(b)})
    body = b"z" * (3 * 1024 * 1024)
    r = await a.client.post("/v1.0/invoke/b/method/big", content=body, timeout=30)
    assert r.status_code == 200
    assert len(r.json()["body"]) == len(body)


RETRY_UNREACHABLE = COMPONENTS + """
---
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: r}
spec:
  policies:
    retries:
      two: {policy: constant, duration: 10ms, maxRetries: 2}
  targets:
    apps:
      gone: {retry: two}
"""


async def test_a_retry_policy_replaces_the_builtin_retries(
    start_sidecar: StartSidecar, tmp_path: Path
) -> None:
    a = await caller(start_sidecar, tmp_path, {"gone": f"127.0.0.1:{free_port()}"},
                     RETRY_UNREACHABLE)
    policy = INVOCATION_RETRIES.labels("policy")._value.get()
    builtin = INVOCATION_RETRIES.labels("unreachable")._value.get()
    r = await a.client.get("/v1.0/invoke/gone/method/t")
    assert r.status_code == 500
    assert "could not reach its sidecar: cannot connect" in r.json()["message"]
    assert INVOCATION_RETRIES.labels("policy")._value.get() == policy + 2
    assert INVOCATION_RETRIES.labels("unreachable")._value.get() == builtin


async def test_http_only_profile_answers_a_clear_error(
    start_sidecar: StartSidecar, tmp_path: Path
) -> None:
    a = await caller(start_sidecar, tmp_path, {"b": "127.0.0.1:1"}, disable_grpc_api=True)
    r = await a.client.get("/v1.0/invoke/b/method/t")
    assert r.status_code == 500
    assert r.json() == {
        "errorCode": "ERR_DIRECT_INVOKE",
        "message": "failed to invoke, id: b, err: remote invocation is off: this sidecar runs "
        "with --disable-grpc-api and sidecars call each other over gRPC",
    }


async def test_http_only_profile_refuses_an_internal_port(start_sidecar: StartSidecar) -> None:
    with pytest.raises(RuntimeError, match="did not start"):
        await callee(start_sidecar, None, disable_grpc_api=True)


async def test_bad_config_file_refuses_to_start(
    start_sidecar: StartSidecar, tmp_path: Path
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(textwrap.dedent("""\
        apiVersion: dapr.io/v1alpha1
        kind: Configuration
        metadata: {name: c}
        spec:
          nameResolution: {component: static, configuration: {apps: {b: "nowhere"}}}
        """))
    with pytest.raises(RuntimeError, match="did not start"):
        await start_sidecar(config_path=config)
