"""``POST|PUT /v1.0/bindings/{name}`` (contract §2.5) on the in-memory binding, and bindings
in ``/v1.0/metadata``."""

from __future__ import annotations

import json

import pytest

from tests.api.conftest import Sidecar, StartSidecar

BINDINGS = """
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: loop}
spec:
  type: bindings.in-memory
  version: v1
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: outonly}
spec:
  type: bindings.in-memory
  version: v1
  metadata:
  - {name: direction, value: output}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: inonly}
spec:
  type: bindings.in-memory
  version: v1
  metadata:
  - {name: direction, value: input}
"""


@pytest.fixture
async def side(start_sidecar: StartSidecar) -> Sidecar:
    s: Sidecar = await start_sidecar(BINDINGS)
    return s


async def test_create_then_get_round_trip(side: Sidecar) -> None:
    r = await side.client.post(
        "/v1.0/bindings/loop",
        json={"operation": "create", "data": {"b": 2, "a": "<x>"}, "metadata": {"key": "k1"}},
    )
    # A response with no data is still a response: 200 with an empty body (daprd: only a
    # binding that returns nothing at all gets 204).
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["metadata.key"] == "k1"
    r = await side.client.put(
        "/v1.0/bindings/loop", json={"operation": "get", "metadata": {"key": "k1"}}
    )
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    # The data reached the binding re-encoded as Go does it: keys sorted, HTML escaped.
    assert r.content == b'{"a":"\\u003cx\\u003e","b":2}'
    assert r.headers["metadata.key"] == "k1"


async def test_string_data_keeps_its_quotes(side: Sidecar) -> None:
    await side.client.post("/v1.0/bindings/loop",
                           json={"operation": "create", "data": "hi", "metadata": {"key": "s"}})
    await side.client.post("/v1.0/bindings/loop",
                           json={"operation": "create", "metadata": {"key": "none"}})
    r = await side.client.post("/v1.0/bindings/loop",
                               json={"operation": "get", "metadata": {"key": "s"}})
    assert r.content == b'"hi"'
    r = await side.client.post("/v1.0/bindings/loop",
                               json={"operation": "get", "metadata": {"key": "none"}})
    assert r.content == b"null"


async def test_nothing_returned_is_204(side: Sidecar) -> None:
    r = await side.client.post(
        "/v1.0/bindings/loop", json={"operation": "delete", "metadata": {"key": "gone"}}
    )
    assert r.status_code == 204
    assert r.content == b""


async def test_field_names_are_case_insensitive_and_unknown_fields_ignored(
    side: Sidecar,
) -> None:
    r = await side.client.post(
        "/v1.0/bindings/loop",
        content=b'{"Operation": "create", "DATA": 5, "Metadata": {"key": "c"}, "extra": 1}',
    )
    assert r.status_code == 200
    r = await side.client.post("/v1.0/bindings/loop", json={"operation": "list"})
    assert json.loads(r.content) == ["c"]


async def test_unknown_binding(side: Sidecar) -> None:
    r = await side.client.post("/v1.0/bindings/nope", json={"operation": "create"})
    assert r.status_code == 500
    assert r.json() == {
        "errorCode": "ERR_INVOKE_OUTPUT_BINDING",
        "message": "error invoking output binding nope: couldn't find output binding nope",
    }


async def test_input_only_binding_is_not_an_output_binding(side: Sidecar) -> None:
    r = await side.client.post("/v1.0/bindings/inonly", json={"operation": "create"})
    assert r.status_code == 500
    assert "couldn't find output binding inonly" in r.json()["message"]
    r = await side.client.post("/v1.0/bindings/outonly", json={"operation": "create"})
    assert r.status_code == 200


async def test_unsupported_operation_lists_the_supported_ones(side: Sidecar) -> None:
    r = await side.client.post("/v1.0/bindings/loop", json={"operation": "explode"})
    assert r.status_code == 500
    body = r.json()
    assert body["errorCode"] == "ERR_INVOKE_OUTPUT_BINDING"
    assert body["message"] == (
        "error invoking output binding loop: binding loop does not support operation explode."
        " supported operations: create get list delete"
    )
    r = await side.client.post("/v1.0/bindings/loop", json={"data": 1})  # no operation
    assert "does not support operation ." in r.json()["message"]


async def test_binding_failure_is_err_invoke_output_binding(side: Sidecar) -> None:
    r = await side.client.post(
        "/v1.0/bindings/loop", json={"operation": "get", "metadata": {"key": "missing"}}
    )
    assert r.status_code == 500
    assert r.json()["errorCode"] == "ERR_INVOKE_OUTPUT_BINDING"
    assert "no item with key 'missing'" in r.json()["message"]


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[1, 2]", b'{"operation": 3}', b'{"metadata": {"k": 1}}',
     b'{"metadata": [1]}', b'{"data": NaN}'],
)
async def test_malformed_body_is_400(side: Sidecar, body: bytes) -> None:
    r = await side.client.post("/v1.0/bindings/loop", content=body)
    assert r.status_code == 400
    assert r.json()["errorCode"] == "ERR_MALFORMED_REQUEST"
    assert r.json()["message"].startswith("failed deserializing HTTP body")


async def test_other_methods_are_405(side: Sidecar) -> None:
    r = await side.client.get("/v1.0/bindings/loop")
    assert r.status_code == 405


async def test_metadata_lists_bindings_with_capabilities(side: Sidecar) -> None:
    doc = (await side.client.get("/v1.0/metadata")).json()
    comps = {c["name"]: c for c in doc["components"]}
    assert comps["loop"] == {"name": "loop", "type": "bindings.in-memory", "version": "v1",
                             "capabilities": ["INPUT_BINDING", "OUTPUT_BINDING"]}
    assert comps["outonly"]["capabilities"] == ["OUTPUT_BINDING"]
    assert comps["inonly"]["capabilities"] == ["INPUT_BINDING"]
    # Without an app and without no-code routing, input events have nowhere to go.
    assert doc["extended"]["binding.loop.input"].startswith("not read: no app port")


async def test_bad_binding_metadata_stops_the_start(start_sidecar: StartSidecar) -> None:
    bad = BINDINGS + """
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: broken}
spec:
  type: bindings.in-memory
  version: v1
  metadata:
  - {name: targetPubsub, value: nowhere}
"""
    with pytest.raises(RuntimeError, match="did not start"):
        await start_sidecar(bad)
