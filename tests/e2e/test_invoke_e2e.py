"""App A → sidecar A → sidecar B → app B, with both sidecars as real processes.

The test plays app A (plain HTTP and the official SDK against sidecar A); app B is a real HTTP
server in the test. Sidecar B serves ``--internal-grpc-port`` (port 0, read from its
runtime.json); sidecar A finds it through a ``--config`` static name table.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_runtime.invocation.headers import valid_traceparent
from tests.appchannel.appserver import AppServer
from tests.invocation.echoapp import echo
from tests.invocation.procs import STATE, Sidecar, free_port, name_table

TOKEN = "s3cret-shared"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
A_RESILIENCY = STATE + """
---
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: a}
spec:
  policies:
    timeouts: {short: 1s}
  targets:
    apps:
      b: {timeout: short}
"""


@pytest.fixture
async def cleanup() -> AsyncIterator[list[Sidecar]]:
    started: list[Sidecar] = []
    yield started
    for s in started:
        await s.stop()


@pytest.fixture
async def app_b() -> AsyncIterator[AppServer]:
    async with AppServer(echo("b")) as server:
        yield server


async def start(cleanup: list[Sidecar], sidecar: Sidecar) -> Sidecar:
    cleanup.append(sidecar)
    return await sidecar.start()


async def pair(
    tmp_path: Path, cleanup: list[Sidecar], app_b: AppServer, *, a_token: str = TOKEN,
    extra_apps: dict[str, str] | None = None, a_resources: str = A_RESILIENCY,
) -> tuple[Sidecar, Sidecar]:
    b = await start(cleanup, Sidecar(
        tmp_path, "b", args=("--app-port", str(app_b.port), "--internal-grpc-port", "0"),
        env={"EDGE_RUNTIME_INTERNAL_TOKEN": TOKEN},
    ))
    config = name_table(tmp_path / "a-config.yaml", {"b": b.internal, **(extra_apps or {})})
    a = await start(cleanup, Sidecar(
        tmp_path, "a", resources=a_resources, args=("--config", str(config)),
        env={"EDGE_RUNTIME_INTERNAL_TOKEN": a_token},
    ))
    return a, b


def seen(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_a_to_b_round_trip(
    tmp_path: Path, cleanup: list[Sidecar], app_b: AppServer
) -> None:
    a, _b = await pair(tmp_path, cleanup, app_b)
    async with httpx.AsyncClient(base_url=a.url, timeout=20) as client:
        r = await client.post(
            "/v1.0/invoke/b/method/orders/1?x=1&y=%C3%A9", content=b"payload",
            headers={"content-type": "text/plain", "x-custom": "c", "traceparent": TRACEPARENT,
                     "tracestate": "vendor=1", "dapr-caller-app-id": "mallory"},
        )
        got = seen(r)
        assert (got["method"], got["path"], got["query"], got["body"]) == (
            "POST", "/orders/1", "x=1&y=%C3%A9", "payload"
        )
        h = got["headers"]
        assert h["dapr-caller-app-id"] == "a"
        assert h["dapr-callee-app-id"] == "b"
        assert h["traceparent"] == TRACEPARENT
        assert h["tracestate"] == "vendor=1"
        assert h["x-custom"] == "c"
        assert h["content-type"] == "text/plain"
        assert "edge-internal-token" not in h
        assert r.headers["x-app"] == "b"

        fresh = seen(await client.get("/v1.0/invoke/b/method/t"))["headers"]["traceparent"]
        assert valid_traceparent(fresh)

        for verb in ("GET", "PUT", "DELETE", "PATCH", "OPTIONS"):
            assert seen(await client.request(verb, "/v1.0/invoke/b/method/v"))["method"] == verb

        for code in (404, 500):
            r = await client.get(f"/v1.0/invoke/b/method/status/{code}")
            assert (r.status_code, r.content) == (code, f"app says {code}".encode())
            assert r.headers["content-type"] == "text/plain"
            assert r.headers["x-app"] == "b"

        got = seen(await client.get("/items/3?q=2", headers={"dapr-app-id": "b"}))
        assert (got["path"], got["query"]) == ("/items/3", "q=2")

        r = await client.get("/v1.0/invoke/b/method/slow")  # app B never answers
        assert r.status_code == 500
        assert "timed out after 1s" in r.json()["message"]

        r = await client.get("/v1.0/invoke/nobody/method/x")
        assert r.status_code == 500
        assert "'nobody' is not in the name resolution table" in r.json()["message"]


def _sdk_call(port: int, **kwargs: Any) -> Any:
    from dapr.clients.http.dapr_invocation_http_client import DaprInvocationHttpClient

    async def run() -> Any:
        return await DaprInvocationHttpClient(timeout=20).invoke_method_async(**kwargs)

    return asyncio.run(run())


async def test_official_sdk_as_app_a(
    tmp_path: Path, cleanup: list[Sidecar], app_b: AppServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _b = await pair(tmp_path, cleanup, app_b)
    monkeypatch.setenv("DAPR_HTTP_PORT", str(a.ports["http"]))
    monkeypatch.setenv("DAPR_HEALTH_TIMEOUT", "10")
    monkeypatch.delenv("DAPR_API_TOKEN", raising=False)
    resp = await asyncio.to_thread(
        _sdk_call, a.ports["http"], app_id="b", method_name="sdk/path", data=b"{}",
        content_type="application/json", http_verb="POST", http_querystring=(("k", "v"),),
    )
    got = json.loads(resp.data)
    assert (got["path"], got["query"], got["headers"]["dapr-caller-app-id"]) == (
        "/sdk/path", "k=v", "a"
    )


async def test_wrong_token_is_refused(
    tmp_path: Path, cleanup: list[Sidecar], app_b: AppServer
) -> None:
    a, b = await pair(tmp_path, cleanup, app_b, a_token="not-the-token")
    async with httpx.AsyncClient(base_url=a.url, timeout=20) as client:
        r = await client.get("/v1.0/invoke/b/method/t")
    assert r.status_code == 403
    body = r.json()
    assert body["errorCode"] == "ERR_DIRECT_INVOKE"
    assert "invalid internal token" in body["message"]
    assert not [q for q in app_b.requests if q.path == "/t"]
    assert "refused an internal call" in b.log.read_text()


async def test_callee_down_then_back(
    tmp_path: Path, cleanup: list[Sidecar], app_b: AppServer
) -> None:
    port = free_port()
    args = ("--app-port", str(app_b.port), "--internal-grpc-port", str(port))
    env = {"EDGE_RUNTIME_INTERNAL_TOKEN": TOKEN}
    b = await start(cleanup, Sidecar(tmp_path, "b", args=args, env=env))
    config = name_table(tmp_path / "a-config.yaml", {"b": b.internal})
    a = await start(cleanup, Sidecar(tmp_path, "a", args=("--config", str(config)), env=env))
    async with httpx.AsyncClient(base_url=a.url, timeout=60) as client:
        assert (await client.get("/v1.0/invoke/b/method/up")).status_code == 200
        await b.kill()
        before = await a.metric("edge_runtime_invocation_retries_total", 'reason="unreachable"')
        r = await client.get("/v1.0/invoke/b/method/down")
        assert r.status_code == 500
        message = r.json()["message"]
        assert message.startswith("failed to invoke, id: b, err: could not reach its sidecar "
                                  "after 4 attempts: cannot connect to the sidecar at 127.0.0.1:")
        after = await a.metric("edge_runtime_invocation_retries_total", 'reason="unreachable"')
        assert after - before == 3

    # A call made while B is down gets through once B is back (a longer built-in schedule).
    slow_retries = STATE + """
---
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: patient}
spec:
  policies:
    retries:
      DaprBuiltInServiceRetries: {policy: constant, duration: 200ms, maxRetries: 150}
"""
    await a.stop()
    a = await start(cleanup, Sidecar(tmp_path, "a2", resources=slow_retries,
                                     args=("--config", str(config)), env=env))
    async with httpx.AsyncClient(base_url=a.url, timeout=60) as client:
        call = asyncio.create_task(client.get("/v1.0/invoke/b/method/later"))
        while await a.metric("edge_runtime_invocation_retries_total",
                             'reason="unreachable"') < 2:
            await asyncio.sleep(0.1)
        assert not call.done()
        await start(cleanup, Sidecar(tmp_path, "b", args=args, env=env))
        r = await call
    assert seen(r)["path"] == "/later"


async def test_internal_port_needs_credentials(tmp_path: Path, cleanup: list[Sidecar]) -> None:
    b = Sidecar(tmp_path, "b", args=("--internal-grpc-port", "0"))
    cleanup.append(b)
    with pytest.raises(AssertionError, match="needs --internal-token"):
        await b.start()


# --------------------------------------------------------------------------- mutual TLS


def make_certs(where: Path) -> dict[str, Path]:
    """A CA, and one certificate it signed for 127.0.0.1, all made by openssl here."""
    where.mkdir()

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=where, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "1", "-subj", "/CN=edge test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "node.key", "-out", "node.csr",
        "-subj", "/CN=edge node")
    (where / "ext.cnf").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
    )
    run("x509", "-req", "-in", "node.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "node.pem", "-days", "1", "-extfile", "ext.cnf")
    return {"cert": where / "node.pem", "key": where / "node.key", "ca": where / "ca.pem"}


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
async def test_mutual_tls(tmp_path: Path, cleanup: list[Sidecar], app_b: AppServer) -> None:
    certs = make_certs(tmp_path / "certs")
    tls = ("--internal-tls-cert", str(certs["cert"]), "--internal-tls-key", str(certs["key"]),
           "--internal-tls-ca", str(certs["ca"]))
    b = await start(cleanup, Sidecar(
        tmp_path, "b", args=("--app-port", str(app_b.port), "--internal-grpc-port", "0", *tls)
    ))
    config = name_table(tmp_path / "config.yaml", {"b": b.internal})
    a = await start(cleanup, Sidecar(tmp_path, "a", args=("--config", str(config), *tls)))
    plain = await start(cleanup, Sidecar(tmp_path, "plain", args=("--config", str(config)),
                                         env={"EDGE_RUNTIME_INTERNAL_TOKEN": TOKEN}))
    async with httpx.AsyncClient(timeout=30) as client:
        got = seen(await client.get(f"{a.url}/v1.0/invoke/b/method/secure"))
        assert got["headers"]["dapr-caller-app-id"] == "a"
        r = await client.get(f"{plain.url}/v1.0/invoke/b/method/secure")
    assert r.status_code == 500
    assert "could not reach its sidecar" in r.json()["message"]
    assert sum(1 for q in app_b.requests if q.path == "/secure") == 1
