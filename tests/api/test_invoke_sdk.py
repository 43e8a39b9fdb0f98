"""Service invocation through the official Python SDK (``dapr`` 1.19): ``invoke_method`` over
HTTP (its default) with the sync and the ``dapr.aio`` client, and over gRPC
(``DAPR_API_METHOD_INVOCATION_PROTOCOL=grpc``, ``Dapr/InvokeService``).

The SDK clients block (health wait, sync calls), so each runs in a worker thread while the
sidecar and the app serve on the test's event loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from dapr.aio.clients import DaprClient as AioDaprClient
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprHttpError

from tests.api.conftest import Sidecar, StartSidecar
from tests.appchannel.appserver import AppServer
from tests.invocation.echoapp import echo


@pytest.fixture
async def app() -> AsyncIterator[AppServer]:
    async with AppServer(echo()) as server:
        yield server


@pytest.fixture
async def side(
    start_sidecar: StartSidecar, app: AppServer, monkeypatch: pytest.MonkeyPatch
) -> Sidecar:
    s: Sidecar = await start_sidecar(app_port=app.port)
    monkeypatch.setenv("DAPR_HTTP_PORT", str(s.port))
    monkeypatch.setenv("DAPR_GRPC_PORT", str(s.runtime.view.ports["grpc"]))
    monkeypatch.setenv("DAPR_HEALTH_TIMEOUT", "10")
    monkeypatch.delenv("DAPR_API_TOKEN", raising=False)
    monkeypatch.delenv("DAPR_API_METHOD_INVOCATION_PROTOCOL", raising=False)
    return s


def _sync_invoke(**kwargs: Any) -> Any:
    try:
        with DaprClient() as client:
            return client.invoke_method(**kwargs)
    finally:
        # The SDK's sync HTTP invoke makes an event loop for this thread and leaves it open.
        policy = asyncio.get_event_loop_policy()
        loop = policy._local._loop  # type: ignore[attr-defined]
        if loop is not None:
            loop.close()
            policy.set_event_loop(None)


async def test_sync_client_over_http(side: Sidecar) -> None:
    resp = await asyncio.to_thread(
        _sync_invoke,
        app_id="app",
        method_name="orders/9",
        data=b'{"qty": 2}',
        content_type="application/json",
        http_verb="POST",
        http_querystring=(("a", "1"), ("b", "two")),
        metadata=(("x-tenant", "t1"),),
    )
    got = json.loads(resp.data)
    assert (got["method"], got["path"], got["query"]) == ("POST", "/orders/9", "a=1&b=two")
    assert got["body"] == '{"qty": 2}'
    assert got["headers"]["x-tenant"] == "t1"
    assert got["headers"]["dapr-caller-app-id"] == "app"
    assert resp.status_code == 200
    assert resp.content_type == "application/json"
    assert resp.headers["x-app"] == ["echo"]


async def test_sync_client_default_verb_is_get(side: Sidecar) -> None:
    resp = await asyncio.to_thread(_sync_invoke, app_id="app", method_name="ping", data=b"")
    assert json.loads(resp.data)["method"] == "GET"


async def test_sync_client_sees_the_app_status(side: Sidecar) -> None:
    with pytest.raises(DaprHttpError) as err:
        await asyncio.to_thread(_sync_invoke, app_id="app", method_name="status/404", data=b"")
    assert err.value.status_code == 404
    assert err.value.raw_response_bytes == b"app says 404"


async def test_sync_client_sees_sidecar_errors(side: Sidecar) -> None:
    with pytest.raises(DaprHttpError) as err:
        await asyncio.to_thread(_sync_invoke, app_id="nobody", method_name="x", data=b"")
    assert err.value.status_code == 500
    assert err.value.error_code == "ERR_DIRECT_INVOKE"


def _aio_invoke(**kwargs: Any) -> Any:
    async def run() -> Any:
        async with AioDaprClient() as client:
            return await client.invoke_method(**kwargs)

    return asyncio.run(run())


async def test_aio_client_over_http(side: Sidecar) -> None:
    resp = await asyncio.to_thread(
        _aio_invoke, app_id="app", method_name="things", data="hi", http_verb="PUT",
        content_type="text/plain",
    )
    got = json.loads(resp.data)
    assert (got["method"], got["path"], got["body"]) == ("PUT", "/things", "hi")
    assert got["headers"]["content-type"] == "text/plain"


async def test_aio_client_sees_the_app_status(side: Sidecar) -> None:
    with pytest.raises(DaprHttpError) as err:
        await asyncio.to_thread(_aio_invoke, app_id="app", method_name="status/500", data=b"")
    assert err.value.status_code == 500


# The SDK warns that invoke_method over gRPC is deprecated; that is the call under test.
grpc_protocol = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@grpc_protocol
async def test_sync_client_over_grpc(side: Sidecar, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAPR_API_METHOD_INVOCATION_PROTOCOL", "grpc")
    resp = await asyncio.to_thread(
        _sync_invoke, app_id="app", method_name="orders", data=b"abc",
        content_type="text/plain", http_verb="PATCH", http_querystring=(("k", "v"),),
    )
    got = json.loads(resp.data)
    assert (got["method"], got["path"], got["query"], got["body"]) == (
        "PATCH", "/orders", "k=v", "abc"
    )
    assert got["headers"]["content-type"] == "text/plain"
    assert resp.content_type == "application/json"
    assert resp.headers["dapr-http-status"] == ["200"]
    assert resp.headers["x-app"] == ["echo"]


@grpc_protocol
async def test_grpc_without_verb_posts(side: Sidecar, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAPR_API_METHOD_INVOCATION_PROTOCOL", "grpc")
    resp = await asyncio.to_thread(_sync_invoke, app_id="app", method_name="m", data=b"x")
    assert json.loads(resp.data)["method"] == "POST"


@grpc_protocol
@pytest.mark.parametrize(
    ("path", "code"),
    [("status/404", grpc.StatusCode.NOT_FOUND), ("status/500", grpc.StatusCode.UNKNOWN),
     ("status/400", grpc.StatusCode.INTERNAL), ("status/503", grpc.StatusCode.UNAVAILABLE)],
)
async def test_grpc_maps_app_status_as_daprd(
    side: Sidecar, monkeypatch: pytest.MonkeyPatch, path: str, code: grpc.StatusCode
) -> None:
    monkeypatch.setenv("DAPR_API_METHOD_INVOCATION_PROTOCOL", "grpc")
    with pytest.raises(grpc.RpcError) as err:
        await asyncio.to_thread(
            _sync_invoke, app_id="app", method_name=path, data=b"", http_verb="GET"
        )
    assert err.value.code() == code
    status = path.rsplit("/", 1)[1]
    from grpc_status import rpc_status

    detail = rpc_status.from_call(err.value)
    assert detail is not None
    from google.rpc import error_details_pb2

    info = error_details_pb2.ErrorInfo()
    assert detail.details[0].Unpack(info)
    assert info.metadata["http.code"] == status
    assert info.metadata["http.error_message"] == f"app says {status}"


@grpc_protocol
async def test_grpc_sidecar_error(side: Sidecar, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAPR_API_METHOD_INVOCATION_PROTOCOL", "grpc")
    with pytest.raises(grpc.RpcError) as err:
        await asyncio.to_thread(_sync_invoke, app_id="nobody", method_name="m", data=b"")
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert "not in the name resolution table" in (err.value.details() or "")
