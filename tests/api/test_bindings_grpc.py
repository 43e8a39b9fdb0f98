"""``InvokeBinding`` over gRPC: the official SDK's ``invoke_binding`` and a raw stub (for
call metadata), against the in-process sidecar with the loopback binding and a real app."""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest
from dapr.proto.runtime.v1 import binding_pb2, dapr_pb2_grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tests.api.conftest import Sidecar, StartSidecar
from tests.api.test_bindings_input import LOOP, BindingApp, ready
from tests.api.test_grpc_sdk import connect
from tests.appchannel.appserver import AppServer


def reason(err: grpc.Call) -> str:
    """The ErrorInfo reason of a rich gRPC error (what ``DaprGrpcError.error_code()`` reads)."""
    status = rpc_status.from_call(err)
    assert status is not None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return str(info.reason)
    return ""


async def test_sdk_invoke_binding(
    start_sidecar: StartSidecar, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = BindingApp()
    async with AppServer(app) as server:
        s: Sidecar = await start_sidecar(LOOP, app_port=server.port, dapr_grpc_port=0)
        await ready(s)
        sdk = await connect(s, monkeypatch)
        try:
            resp = await sdk(sdk.client.invoke_binding, "loop", "create", b"\x00raw\xff",
                             {"key": "k", "unit": "C"})
            # gRPC data is passed through raw, not JSON re-encoded (contract §2.5).
            assert resp.binding_metadata == {"key": "k", "emitted": "true"}
            assert resp.data == b""
            [event] = await app.wait(1)
            assert event.body == b"\x00raw\xff"
            assert event.header("Unit") == "C"
            got = await sdk(sdk.client.invoke_binding, "loop", "get", "", {"key": "k"})
            assert got.data == b"\x00raw\xff"
            listed = await sdk(sdk.client.invoke_binding, "loop", "list")
            assert json.loads(listed.data) == ["k"]
            # invoke_binding does not wrap errors in DaprGrpcError: the raw error comes through.
            with pytest.raises(grpc.RpcError) as info:
                await sdk(sdk.client.invoke_binding, "loop", "explode")
            err: grpc.Call = info.value  # type: ignore[assignment]
            assert err.code() == grpc.StatusCode.INTERNAL
            assert reason(err) == "ERR_INVOKE_OUTPUT_BINDING"
            assert "supported operations: create get list delete" in (err.details() or "")
            with pytest.raises(grpc.RpcError) as info:
                await sdk(sdk.client.invoke_binding, "nope", "create")
            assert "couldn't find output binding nope" in (info.value.details() or "")  # type: ignore[attr-defined]
        finally:
            await asyncio.to_thread(sdk.client.close)


async def test_call_metadata_joins_the_binding_metadata(start_sidecar: StartSidecar) -> None:
    """Incoming gRPC metadata is copied in without overwriting explicit keys; the API token
    is not passed on."""
    app = BindingApp()
    async with AppServer(app) as server:
        s: Sidecar = await start_sidecar(LOOP, app_port=server.port, dapr_grpc_port=0,
                                         api_token="secret")
        await ready(s)
        port = s.runtime.view.ports["grpc"]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = dapr_pb2_grpc.DaprStub(channel)  # type: ignore[no-untyped-call]
            request = binding_pb2.InvokeBindingRequest(
                name="loop", operation="create", data=b"{}", metadata={"unit": "explicit"}
            )
            await stub.InvokeBinding(request, metadata=(
                ("dapr-api-token", "secret"), ("unit", "from-call"), ("x-request", "r1"),
            ))
        [event] = await app.wait(1)
    assert event.header("Unit") == "explicit"
    assert event.header("X-Request") == "r1"
    assert event.header("dapr-api-token") is None
