"""The gRPC API through the official Python SDK (``dapr`` 1.19) against the in-process sidecar.

The SDK's sync ``DaprClient`` blocks, so every call runs in a thread (``asyncio.to_thread``)
while the sidecar keeps serving on the test's event loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import grpc
import pytest
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError
from dapr.clients.grpc._request import TransactionalStateOperation, TransactionOperationType
from dapr.clients.grpc._state import Concurrency, StateOptions

from tests.api.conftest import Sidecar, StartSidecar
from tests.api.test_publish_http import PUBSUB, Catcher
from tests.support.components import SQLITE_STATESTORE

T = TypeVar("T")

COMPONENTS = "\n" + SQLITE_STATESTORE + "---\n" + PUBSUB.lstrip("\n")


class Sdk:
    """A sync ``DaprClient`` whose calls run off the event loop."""

    def __init__(self, client: DaprClient) -> None:
        self.client = client

    async def __call__(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(fn, *args, **kwargs)


async def connect(s: Sidecar, monkeypatch: pytest.MonkeyPatch, token: str | None = None) -> Sdk:
    monkeypatch.setenv("DAPR_HTTP_PORT", str(s.port))
    monkeypatch.setenv("DAPR_HEALTH_TIMEOUT", "10")
    if token is None:
        monkeypatch.delenv("DAPR_API_TOKEN", raising=False)
    else:
        monkeypatch.setenv("DAPR_API_TOKEN", token)
    port = s.runtime.view.ports["grpc"]
    client = await asyncio.to_thread(DaprClient, address=f"127.0.0.1:{port}")
    return Sdk(client)


@pytest.fixture
async def side(start_sidecar: StartSidecar) -> tuple[Sidecar, Catcher]:
    s: Sidecar = await start_sidecar(COMPONENTS, dapr_grpc_port=0)
    catcher = Catcher()
    await s.runtime.builder.components.pubsubs["mem"].pubsub.subscribe("#", catcher)  # type: ignore[union-attr]
    return s, catcher


@pytest.fixture
async def sdk(side: tuple[Sidecar, Catcher], monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Sdk]:
    client = await connect(side[0], monkeypatch)
    yield client
    await asyncio.to_thread(client.client.close)


async def test_grpc_port_is_recorded(side: tuple[Sidecar, Catcher]) -> None:
    s, _ = side
    assert s.runtime.view.ports["grpc"] > 0
    doc = (await s.client.get("/v1.0/metadata")).json()
    assert doc["extended"]["port.grpc"] == str(s.runtime.view.ports["grpc"])


async def test_save_get_bytes_round_trip(sdk: Sdk, side: tuple[Sidecar, Catcher]) -> None:
    c = sdk.client
    await sdk(c.save_state, "statestore", "k", b"\x00\x01hello")
    got = await sdk(c.get_state, "statestore", "k")
    assert got.data == b"\x00\x01hello"
    assert got.etag
    missing = await sdk(c.get_state, "statestore", "nope")
    assert (missing.data, missing.etag) == (b"", "")
    # Saved as bytes over gRPC: HTTP returns the raw bytes (contract §8.1 table).
    r = await side[0].client.get("/v1.0/state/statestore/k")
    assert r.content == b"\x00\x01hello"


async def test_json_via_http_shows_quotes_via_grpc(sdk: Sdk, side: tuple[Sidecar, Catcher]) -> None:
    http = side[0].client
    r = await http.post(
        "/v1.0/state/statestore",
        json=[{"key": "s", "value": "hello"}, {"key": "o", "value": {"a": 1}}],
    )
    assert r.status_code == 204
    assert (await sdk(sdk.client.get_state, "statestore", "s")).data == b'"hello"'
    assert json.loads((await sdk(sdk.client.get_state, "statestore", "o")).data) == {"a": 1}


async def test_json_content_type_is_stored_as_json(sdk: Sdk, side: tuple[Sidecar, Catcher]) -> None:
    await sdk(
        sdk.client.save_state,
        "statestore",
        "j",
        '{"a": 1}',
        state_metadata={"contentType": "application/json"},
    )
    r = await side[0].client.post("/v1.0/state/statestore/bulk", json={"keys": ["j"]})
    assert r.json()[0]["data"] == {"a": 1}


async def test_etag_mismatch_is_aborted(sdk: Sdk) -> None:
    c = sdk.client
    await sdk(c.save_state, "statestore", "e", "v1")
    with pytest.raises(DaprGrpcError) as info:
        await sdk(c.save_state, "statestore", "e", "v2", etag="not-the-etag")
    assert info.value.code() == grpc.StatusCode.ABORTED
    with pytest.raises(DaprGrpcError) as info:
        await sdk(c.delete_state, "statestore", "e", etag="not-the-etag")
    assert info.value.code() == grpc.StatusCode.ABORTED
    etag = (await sdk(c.get_state, "statestore", "e")).etag
    await sdk(
        c.save_state,
        "statestore",
        "e",
        "v3",
        etag=etag,
        options=StateOptions(concurrency=Concurrency.first_write),
    )
    assert (await sdk(c.get_state, "statestore", "e")).data == b"v3"
    await sdk(c.delete_state, "statestore", "e")
    assert (await sdk(c.get_state, "statestore", "e")).data == b""


async def test_unknown_store_is_invalid_argument(sdk: Sdk) -> None:
    with pytest.raises(DaprGrpcError) as info:
        await sdk(sdk.client.get_state, "nostore", "k")
    err = info.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.error_code() == "DAPR_STATE_NOT_FOUND"
    assert err.status_details().error_info["domain"] == "dapr.io"
    assert err.status_details().resource_info["resource_name"] == "nostore"


async def test_get_bulk_state(sdk: Sdk) -> None:
    c = sdk.client
    await sdk(c.save_state, "statestore", "b1", "one")
    await sdk(c.save_state, "statestore", "b2", "two")
    resp = await sdk(c.get_bulk_state, "statestore", ["b1", "missing", "b2"])
    got = [(i.key, i.data, bool(i.etag)) for i in resp.items]
    assert got == [("b1", b"one", True), ("missing", b"", False), ("b2", b"two", True)]


async def test_execute_state_transaction(sdk: Sdk) -> None:
    c = sdk.client
    await sdk(c.save_state, "statestore", "t-old", "x")
    await sdk(
        c.execute_state_transaction,
        "statestore",
        [
            TransactionalStateOperation(key="t1", data="one"),
            TransactionalStateOperation(key="t2", data=b"two"),
            TransactionalStateOperation(
                key="t-old", operation_type=TransactionOperationType.delete
            ),
        ],
    )
    resp = await sdk(c.get_bulk_state, "statestore", ["t1", "t2", "t-old"])
    assert [i.data for i in resp.items] == [b"one", b"two", b""]
    # A failing op rolls the whole transaction back (an etag mismatch is INTERNAL there).
    with pytest.raises(DaprGrpcError) as info:
        await sdk(
            c.execute_state_transaction,
            "statestore",
            [
                TransactionalStateOperation(key="t1", data="changed"),
                TransactionalStateOperation(key="t2", data="x", etag="wrong"),
            ],
        )
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert (await sdk(c.get_state, "statestore", "t1")).data == b"one"


async def test_publish_event(sdk: Sdk, side: tuple[Sidecar, Catcher]) -> None:
    _, catcher = side
    await sdk(
        sdk.client.publish_event,
        "mem",
        "orders",
        json.dumps({"id": 7}),
        data_content_type="application/json",
    )
    await sdk(sdk.client.publish_event, "mem", "notes", "hello")
    first, second = await catcher.next(2)
    ev = json.loads(first.data)
    assert (first.topic, ev["data"], ev["pubsubname"]) == ("orders", {"id": 7}, "mem")
    ev2 = json.loads(second.data)
    assert (second.topic, ev2["data"], ev2["datacontenttype"]) == ("notes", "hello", "text/plain")
    with pytest.raises(DaprGrpcError) as info:
        await sdk(sdk.client.publish_event, "nopubsub", "t", "x")
    assert info.value.error_code() == "DAPR_PUBSUB_NOT_FOUND"


async def test_get_and_set_metadata(sdk: Sdk) -> None:
    await sdk(sdk.client.set_metadata, "owner", "tests")
    md = await sdk(sdk.client.get_metadata)
    assert md.application_id == "app"
    types = {c.name: c.type for c in md.registered_components}
    assert types == {"statestore": "state.sqlite", "mem": "pubsub.in-memory"}
    assert md.extended_metadata["owner"] == "tests"


async def test_unimplemented_rpc_stays_unimplemented(side: tuple[Sidecar, Catcher]) -> None:
    # Distributed locks are not served: the generated default answers UNIMPLEMENTED.
    from dapr.proto.runtime.v1 import dapr_pb2_grpc, lock_pb2

    port = side[0].runtime.view.ports["grpc"]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = dapr_pb2_grpc.DaprStub(channel)  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.RpcError) as info:
            await stub.TryLockAlpha1(lock_pb2.TryLockRequest(
                store_name="lockstore", resource_id="r", lock_owner="o", expiry_in_seconds=10))
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_token_enforced(start_sidecar: StartSidecar, monkeypatch: pytest.MonkeyPatch) -> None:
    s: Sidecar = await start_sidecar(COMPONENTS, dapr_grpc_port=0, api_token="s3cret")
    anonymous = await connect(s, monkeypatch)
    try:
        with pytest.raises(DaprGrpcError) as info:
            await anonymous(anonymous.client.get_state, "statestore", "k")
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert info.value.details() == "Unauthorized"
        # Unimplemented RPCs are checked too.
        with pytest.raises(grpc.RpcError) as raw:
            await anonymous(anonymous.client.get_configuration, "config", ["k"])
        assert raw.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await asyncio.to_thread(anonymous.client.close)
    wrong = await connect(s, monkeypatch, token="nope")
    try:
        with pytest.raises(DaprGrpcError) as info:
            await wrong(wrong.client.get_state, "statestore", "k")
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await asyncio.to_thread(wrong.client.close)
    good = await connect(s, monkeypatch, token="s3cret")
    try:
        await good(good.client.save_state, "statestore", "k", "v")
        assert (await good(good.client.get_state, "statestore", "k")).data == b"v"
    finally:
        await asyncio.to_thread(good.client.close)


async def test_shutdown_stops_the_sidecar(side: tuple[Sidecar, Catcher], sdk: Sdk) -> None:
    s, _ = side
    await sdk(sdk.client.shutdown)
    assert await asyncio.wait_for(s.task, 20) == 0
