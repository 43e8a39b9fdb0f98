"""The rest of the gRPC API against the in-process sidecar: bulk publish, bulk delete, the
query API, secrets, trace context on publish (both adapters) and the gRPC request metrics.

The official SDK (``dapr`` 1.19) is the client where it has the call; raw ``DaprStub`` calls
cover what it does not send (Alpha1 names, bulk delete, gRPC metadata).
"""

from __future__ import annotations

import asyncio
import json
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from dapr.clients.exceptions import DaprGrpcError
from dapr.clients.grpc._request import BulkPublishEntry
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import dapr_pb2_grpc, pubsub_pb2, state_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import Sidecar, StartSidecar
from tests.api.test_grpc_sdk import COMPONENTS, Sdk, connect
from tests.api.test_publish_http import Catcher
from tests.support.components import local_secrets


def secrets(secrets_file: Path) -> str:
    """The two local secret stores, to follow ``COMPONENTS``."""
    return "\n---\n" + local_secrets(secrets_file)


@pytest.fixture
async def side(start_sidecar: StartSidecar) -> tuple[Sidecar, Catcher]:
    s: Sidecar = await start_sidecar(COMPONENTS)
    catcher = Catcher()
    await s.runtime.builder.components.pubsubs["mem"].pubsub.subscribe("#", catcher)  # type: ignore[union-attr]
    return s, catcher


@pytest.fixture
async def sdk(side: tuple[Sidecar, Catcher], monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Sdk]:
    client = await connect(side[0], monkeypatch)
    yield client
    await asyncio.to_thread(client.client.close)


@pytest.fixture
async def stub(side: tuple[Sidecar, Catcher]) -> AsyncIterator[Any]:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{side[0].runtime.view.ports['grpc']}")
    yield dapr_pb2_grpc.DaprStub(channel)  # type: ignore[no-untyped-call]
    await channel.close()


def reason(err: grpc.RpcError) -> str:
    """The ErrorInfo reason of a raw gRPC error (what the SDK's error_code() returns)."""
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return str(info.reason)
    raise AssertionError("no ErrorInfo")


# ------------------------------------------------------------------------------ bulk publish
async def test_publish_events_through_bulk_publish(
    sdk: Sdk, side: tuple[Sidecar, Catcher]
) -> None:
    _, catcher = side
    resp = await sdk(
        sdk.client.publish_events,
        "mem",
        "orders",
        [
            '{"n": 1}',
            BulkPublishEntry(event=b"plain", content_type="text/plain", entry_id="two"),
            BulkPublishEntry(event='{"n": 3}', metadata={"cloudevent.type": "order.v3"}),
        ],
        publish_metadata={"cloudevent.source": "bulk-test"},
        data_content_type="application/json",
    )
    assert resp.failed_entries == []
    got = await catcher.next(3)
    events = sorted((json.loads(m.data) for m in got), key=lambda e: str(e["data"]))
    assert [e["data"] for e in events] == ["plain", {"n": 1}, {"n": 3}]
    assert [e["datacontenttype"] for e in events] == ["text/plain", "application/json",
                                                       "application/json"]
    assert {e["source"] for e in events} == {"bulk-test"}  # request metadata on every entry
    assert [e["type"] for e in events] == ["com.dapr.event.sent", "com.dapr.event.sent",
                                           "order.v3"]
    assert all(e["topic"] == "orders" and e["pubsubname"] == "mem" and e["id"] for e in events)
    assert {m.topic for m in got} == {"orders"}


async def test_bulk_publish_is_all_or_none_like_http(
    sdk: Sdk, side: tuple[Sidecar, Catcher]
) -> None:
    s, catcher = side
    # The outbox takes at most 5 messages: 6 entries in one commit are all refused.
    with pytest.raises(DaprGrpcError) as info:
        await sdk(sdk.client.publish_events, "mem", "big", [f"e{i}" for i in range(6)])
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert info.value.error_code() == "ERR_PUBSUB_OUTBOX_FULL"
    # The HTTP bulk publish refuses the same request the same way, listing every entry.
    entries = [{"entryId": str(i), "event": f"e{i}", "contentType": "text/plain"}
               for i in range(6)]
    r = await s.client.post("/v1.0-alpha1/publish/bulk/mem/big", json=entries)
    assert (r.status_code, r.json()["errorCode"]) == (429, "ERR_PUBSUB_OUTBOX_FULL")
    assert [f["entryId"] for f in r.json()["failedEntries"]] == [str(i) for i in range(6)]
    # Nothing of either was stored: the next publish is the first message out.
    await sdk(sdk.client.publish_event, "mem", "marker", "m")
    (first,) = await catcher.next(1)
    assert first.topic == "marker"
    assert [m.topic for m in catcher.got] == ["marker"]


async def test_bulk_publish_alpha1_and_errors(stub: Any, side: tuple[Sidecar, Catcher]) -> None:
    _, catcher = side
    entry = pubsub_pb2.BulkPublishRequestEntry
    ok = pubsub_pb2.BulkPublishRequest(
        pubsub_name="mem", topic="a1",
        entries=[entry(entry_id="x", event=b"\x00\x01", content_type="application/octet-stream")],
    )
    resp = await stub.BulkPublishEventAlpha1(ok)
    assert list(resp.failedEntries) == []
    (msg,) = await catcher.next(1)
    assert json.loads(msg.data)["data_base64"] == "AAE="
    dup = pubsub_pb2.BulkPublishRequest(
        pubsub_name="mem", topic="a1",
        entries=[entry(entry_id="same", event=b"1"), entry(entry_id="same", event=b"2")],
    )
    with pytest.raises(grpc.RpcError) as info:
        await stub.BulkPublishEvent(dup)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason(info.value) == "ERR_PUBSUB_EVENTS_SER"
    unknown = pubsub_pb2.BulkPublishRequest(pubsub_name="nope", topic="t",
                                            entries=[entry(entry_id="1", event=b"1")])
    with pytest.raises(grpc.RpcError) as info:
        await stub.BulkPublishEvent(unknown)
    assert (info.value.code(), reason(info.value)) == (grpc.StatusCode.INVALID_ARGUMENT,
                                                       "DAPR_PUBSUB_NOT_FOUND")


# ------------------------------------------------------------------------------ state
async def test_delete_bulk_state(stub: Any, sdk: Sdk) -> None:
    c = sdk.client
    for key in ("a", "b", "c"):
        await sdk(c.save_state, "statestore", key, key.upper())
    etag_b = (await sdk(c.get_state, "statestore", "b")).etag

    def item(key: str, etag: str | None = None) -> Any:
        if etag is None:
            return common_pb2.StateItem(key=key)
        return common_pb2.StateItem(key=key, etag=common_pb2.Etag(value=etag))

    # Not atomic: "a" goes, "b" (wrong etag) stays, and the call reports the mismatch.
    with pytest.raises(grpc.RpcError) as info:
        await stub.DeleteBulkState(state_pb2.DeleteBulkStateRequest(
            store_name="statestore", states=[item("a"), item("b", "stale")]
        ))
    assert info.value.code() == grpc.StatusCode.ABORTED
    assert reason(info.value) == "ERR_STATE_BULK_DELETE"
    resp = await sdk(c.get_bulk_state, "statestore", ["a", "b", "c"])
    assert [i.data for i in resp.items] == [b"", b"B", b"C"]
    await stub.DeleteBulkState(state_pb2.DeleteBulkStateRequest(
        store_name="statestore", states=[item("b", etag_b), item("c")]
    ))
    resp = await sdk(c.get_bulk_state, "statestore", ["b", "c"])
    assert [i.data for i in resp.items] == [b"", b""]
    with pytest.raises(grpc.RpcError) as info:
        await stub.DeleteBulkState(state_pb2.DeleteBulkStateRequest(
            store_name="nostore", states=[item("a")]
        ))
    assert reason(info.value) == "DAPR_STATE_NOT_FOUND"


async def test_query_state_answers_what_http_answers(
    sdk: Sdk, side: tuple[Sidecar, Catcher]
) -> None:
    def query(store: str) -> Any:
        with warnings.catch_warnings():  # the SDK warns that the query API is alpha
            warnings.simplefilter("ignore")
            return sdk.client.query_state(store, '{"filter": {"EQ": {"state": "CA"}}}')

    with pytest.raises(DaprGrpcError) as info:
        await asyncio.to_thread(query, "statestore")
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert info.value.error_code() == "DAPR_STATE_QUERYING_NOT_SUPPORTED"
    r = await side[0].client.post("/v1.0-alpha1/state/statestore/query", json={"filter": {}})
    assert r.status_code == 500
    assert r.json()["errorCode"] == "ERR_STATE_STORE_NOT_SUPPORTED"
    assert r.json()["details"][0]["reason"] == info.value.error_code()
    with pytest.raises(DaprGrpcError) as info:
        await asyncio.to_thread(query, "nostore")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.error_code() == "DAPR_STATE_NOT_FOUND"


# ------------------------------------------------------------------------------ secrets
async def test_secrets_over_grpc(
    start_sidecar: StartSidecar, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets_file = tmp_path / "secrets.json"
    secrets_file.write_text(json.dumps({"db": {"user": "u", "pass": "p"}, "api": "k3y"}))
    monkeypatch.setenv("EDGE_GRPC_SECRET", "from-env")
    s: Sidecar = await start_sidecar(COMPONENTS + secrets(secrets_file))
    sdk = await connect(s, monkeypatch)
    try:
        c = sdk.client
        got = await sdk(c.get_secret, "envsecrets", "EDGE_GRPC_SECRET")
        assert got.secret == {"EDGE_GRPC_SECRET": "from-env"}
        assert (await sdk(c.get_secret, "filesecrets", "api")).secret == {"api": "k3y"}
        assert (await sdk(c.get_secret, "filesecrets", "db:user")).secret == {"db:user": "u"}
        bulk = (await sdk(c.get_bulk_secret, "filesecrets")).secrets
        http_bulk = (await s.client.get("/v1.0/secrets/filesecrets/bulk")).json()
        assert bulk == http_bulk
        assert bulk["api"] == {"api": "k3y"}
        # get_secret lets the raw grpc error through (it does not wrap it).
        with pytest.raises(grpc.RpcError) as info:
            await sdk(c.get_secret, "nostore", "x")
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "nostore" in info.value.details()
        with pytest.raises(grpc.RpcError) as info:
            await sdk(c.get_secret, "filesecrets", "missing")
        assert info.value.code() == grpc.StatusCode.INTERNAL
    finally:
        await asyncio.to_thread(sdk.client.close)


# ------------------------------------------------------------------------------ trace context
async def test_trace_context_on_publish_over_both_adapters(
    stub: Any, side: tuple[Sidecar, Catcher]
) -> None:
    s, catcher = side
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    http_trace = {"traceparent": tp, "tracestate": "edge=http"}
    grpc_trace = (("traceparent", tp), ("tracestate", "edge=grpc"))
    raw = {"rawPayload": "true"}
    await s.client.post("/v1.0/publish/mem/h/env", content=b"x", headers=http_trace)
    await s.client.post("/v1.0/publish/mem/h/raw?metadata.rawPayload=true", content=b"x",
                        headers=http_trace)
    await stub.PublishEvent(pubsub_pb2.PublishEventRequest(pubsub_name="mem", topic="g/env",
                                                           data=b"x"), metadata=grpc_trace)
    await stub.PublishEvent(pubsub_pb2.PublishEventRequest(
        pubsub_name="mem", topic="g/raw", data=b"x", metadata=raw), metadata=grpc_trace)
    await catcher.next(4)
    by_topic = {m.topic: m for m in catcher.got}
    for prefix, state in (("h", "edge=http"), ("g", "edge=grpc")):
        envelope = json.loads(by_topic[f"{prefix}/env"].data)
        assert (envelope["traceid"], envelope["traceparent"], envelope["tracestate"]) == (
            tp, tp, state)
        raw_msg = by_topic[f"{prefix}/raw"]
        assert raw_msg.data == b"x"  # no envelope: the context travels as message metadata
        assert (raw_msg.metadata["traceid"], raw_msg.metadata["tracestate"]) == (tp, state)
    # Without a caller context the fields stay empty, as before.
    await s.client.post("/v1.0/publish/mem/h/none", content=b"x")
    await catcher.next(5)
    assert json.loads(catcher.got[4].data)["traceid"] == ""


# ------------------------------------------------------------------------------ metrics
def _samples(text: str) -> dict[tuple[str, str, str], float]:
    out: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if "method" in sample.labels:
                key = (sample.name, sample.labels["method"], sample.labels["status"])
                out[key] = sample.value
    return out


async def _scrape(s: Sidecar) -> dict[tuple[str, str, str], float]:
    async with httpx.AsyncClient() as client:
        r = await client.get(f"http://127.0.0.1:{s.runtime.view.ports['metrics']}/metrics")
    return _samples(r.text)


async def test_grpc_request_metrics(
    start_sidecar: StartSidecar, monkeypatch: pytest.MonkeyPatch
) -> None:
    s: Sidecar = await start_sidecar(COMPONENTS, api_token="t0ken")
    before = await _scrape(s)
    good = await connect(s, monkeypatch, token="t0ken")
    bad = await connect(s, monkeypatch, token="wrong")
    try:
        await good(good.client.save_state, "statestore", "m", "v")
        await good(good.client.get_state, "statestore", "m")
        await good(good.client.get_state, "statestore", "m")
        with pytest.raises(DaprGrpcError):
            await good(good.client.get_state, "nostore", "m")
        with pytest.raises(grpc.RpcError):
            await good(good.client.get_configuration, "config", ["k"])
        with pytest.raises(DaprGrpcError):
            await bad(bad.client.get_state, "statestore", "m")
    finally:
        await asyncio.to_thread(good.client.close)
        await asyncio.to_thread(bad.client.close)
    after = await _scrape(s)

    def delta(name: str, method: str, status: str) -> float:
        key = (name, method, status)
        return after.get(key, 0.0) - before.get(key, 0.0)

    requests = "edge_runtime_grpc_requests_total"
    assert delta(requests, "GetState", "OK") == 2
    assert delta(requests, "SaveState", "OK") == 1
    assert delta(requests, "GetState", "INVALID_ARGUMENT") == 1
    # No configuration store is loaded: FAILED_PRECONDITION, counted under its code.
    assert delta(requests, "GetConfiguration", "FAILED_PRECONDITION") == 1
    assert delta(requests, "GetState", "UNAUTHENTICATED") == 1
    assert delta("edge_runtime_grpc_request_seconds_count", "GetState", "OK") == 2
    assert after[("edge_runtime_grpc_request_seconds_sum", "GetState", "OK")] > 0
