"""Publish and bulk publish over HTTP, through the outbox to the in-memory broker."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx
import pytest

from edge_runtime.pubsub import Received
from tests.api.conftest import Sidecar, StartSidecar

PUBSUB = """
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: mem}
spec:
  type: pubsub.in-memory
  version: v1
  metadata:
  - {name: maxMessages, value: "5"}
"""


class Catcher:
    """Subscribes to everything on the broker and collects what arrives."""

    def __init__(self) -> None:
        self.got: list[Received] = []
        self.event = asyncio.Event()

    async def __call__(self, msg: Received) -> None:
        self.got.append(msg)
        self.event.set()

    async def next(self, n: int = 1) -> list[Received]:
        for _ in range(200):
            if len(self.got) >= n:
                return self.got[:n]
            await asyncio.sleep(0.01)
        raise AssertionError(f"only {len(self.got)} of {n} messages arrived")

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(m.data) for m in self.got]


@pytest.fixture
async def pub(start_sidecar: StartSidecar) -> tuple[Sidecar, Catcher]:
    s: Sidecar = await start_sidecar(PUBSUB)
    catcher = Catcher()
    await s.runtime.builder.components.pubsubs["mem"].pubsub.subscribe("#", catcher)  # type: ignore[union-attr]
    return s, catcher


async def test_json_event_envelope(pub: tuple[Sidecar, Catcher]) -> None:
    s, catcher = pub
    r = await s.client.post("/v1.0/publish/mem/orders", json={"id": 7, "price": 1.10})
    assert r.status_code == 204
    (msg,) = await catcher.next()
    assert msg.topic == "orders"
    ev = json.loads(msg.data)
    assert ev["data"] == {"id": 7, "price": 1.10}
    assert ev["datacontenttype"] == "application/json"
    assert (ev["specversion"], ev["source"], ev["type"]) == ("1.0", "app", "com.dapr.event.sent")
    assert (ev["topic"], ev["pubsubname"]) == ("orders", "mem")
    assert ev["id"]
    assert ev["time"]
    assert "expiration" not in ev


async def test_text_default_raw_payload_and_overrides(pub: tuple[Sidecar, Catcher]) -> None:
    s, catcher = pub
    await s.client.post("/v1.0/publish/mem/a/b/c", content=b"hello")
    await s.client.post("/v1.0/publish/mem/raw?metadata.rawPayload=true", content=b"\x00\x01")
    await s.client.post(
        "/v1.0/publish/mem/o?metadata.cloudevent.id=my-id&metadata.cloudevent.type=t.x"
        "&metadata.ttlInSeconds=30",
        content=b"x",
        headers={"content-type": "text/plain"},
    )
    await s.client.post(
        "/v1.0/publish/mem/bin",
        content=b"\xff\xfe",
        headers={"content-type": "application/octet-stream"},
    )
    msgs = await catcher.next(4)
    by_topic = {m.topic: m for m in msgs}
    text = json.loads(by_topic["a/b/c"].data)
    assert (text["data"], text["datacontenttype"], text["topic"]) == (
        "hello",
        "text/plain",
        "a/b/c",
    )
    assert by_topic["raw"].data == b"\x00\x01"
    over = json.loads(by_topic["o"].data)
    assert (over["id"], over["type"]) == ("my-id", "t.x")
    assert over["expiration"].endswith("Z")
    assert base64.b64decode(json.loads(by_topic["bin"].data)["data_base64"]) == b"\xff\xfe"


async def test_cloudevent_passthrough(pub: tuple[Sidecar, Catcher]) -> None:
    s, catcher = pub
    ce = {
        "id": "ce-1",
        "source": "sensor",
        "type": "reading",
        "specversion": "1.0",
        "topic": "wrong",
        "data": {"t": 21},
    }
    r = await s.client.post(
        "/v1.0/publish/mem/temps", json=ce, headers={"content-type": "application/cloudevents+json"}
    )
    assert r.status_code == 204
    ev = json.loads((await catcher.next())[0].data)
    assert (ev["id"], ev["source"], ev["type"]) == ("ce-1", "sensor", "reading")
    assert (ev["topic"], ev["pubsubname"]) == ("temps", "mem")
    assert ev["data"] == {"t": 21}


async def test_bulk_publish(pub: tuple[Sidecar, Catcher]) -> None:
    s, catcher = pub
    entries = [
        {"entryId": "1", "event": {"n": 1}, "contentType": "application/json"},
        {"entryId": "2", "event": "plain", "contentType": "text/plain"},
        {
            "entryId": "3",
            "event": base64.b64encode(b"\x01").decode(),
            "contentType": "application/octet-stream",
            "metadata": {"rawPayload": "true"},
        },
    ]
    r = await s.client.post("/v1.0-alpha1/publish/bulk/mem/bulk", json=entries)
    assert r.status_code == 204, r.text
    msgs = await catcher.next(3)
    datas = sorted(m.data for m in msgs)
    assert b"\x01" in datas
    evs = [json.loads(m.data) for m in msgs if m.data != b"\x01"]
    assert sorted(str(e["data"]) for e in evs) == sorted(["{'n': 1}", "plain"])


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ([{"entryId": "1", "event": 1, "contentType": "image/png"}], 400),
        (
            [
                {"entryId": "1", "event": 1, "contentType": "application/json"},
                {"entryId": "1", "event": 2, "contentType": "application/json"},
            ],
            400,
        ),
        ([{"event": 1, "contentType": "application/json"}], 400),
        ({"not": "a list"}, 400),
    ],
)
async def test_bulk_publish_errors(pub: tuple[Sidecar, Catcher], body: Any, status: int) -> None:
    s, _ = pub
    r = await s.client.post("/v1.0-alpha1/publish/bulk/mem/t", json=body)
    assert r.status_code == status
    assert r.json()["errorCode"] == "ERR_PUBSUB_EVENTS_SER"


async def test_publish_errors(pub: tuple[Sidecar, Catcher], start_sidecar: StartSidecar) -> None:
    s, _ = pub
    r = await s.client.post("/v1.0/publish/nope/t", content=b"x")
    assert (r.status_code, r.json()["errorCode"]) == (404, "ERR_PUBSUB_NOT_FOUND")
    r = await s.client.post("/v1.0/publish/mem", content=b"x")
    assert (r.status_code, r.json()["errorCode"]) == (404, "ERR_TOPIC_NAME_EMPTY")
    r = await s.client.post("/v1.0/publish/mem/t?metadata.rawPayload=maybe", content=b"x")
    assert (r.status_code, r.json()["errorCode"]) == (400, "ERR_PUBSUB_REQUEST_METADATA")
    r = await s.client.post(
        "/v1.0/publish/mem/t",
        content=b"[1]",
        headers={"content-type": "application/cloudevents+json"},
    )
    assert (r.status_code, r.json()["errorCode"]) == (500, "ERR_PUBSUB_CLOUD_EVENTS_SER")
    bare: Sidecar = await start_sidecar("")
    r = await bare.client.post("/v1.0/publish/mem/t", content=b"x")
    assert (r.status_code, r.json()["errorCode"]) == (400, "ERR_PUBSUB_NOT_CONFIGURED")


async def test_outbox_full_is_429_and_keeps_what_was_accepted(
    pub: tuple[Sidecar, Catcher],
) -> None:
    s, catcher = pub
    comp = s.runtime.builder.components.pubsubs["mem"]  # type: ignore[union-attr]
    await comp.pubsub.close()  # the "broker" is gone: messages wait in the outbox
    for i in range(5):
        r = await s.client.post("/v1.0/publish/mem/t", json={"i": i})
        assert r.status_code == 204
    r = await s.client.post("/v1.0/publish/mem/t", json={"i": 5})
    assert (r.status_code, r.json()["errorCode"]) == (429, "ERR_PUBSUB_OUTBOX_FULL")
    bulk = [{"entryId": "a", "event": 1, "contentType": "application/json"}]
    r = await s.client.post("/v1.0-alpha1/publish/bulk/mem/t", json=bulk)
    assert r.status_code == 429
    assert r.json()["failedEntries"][0]["entryId"] == "a"
    await comp.pubsub.init()  # the broker is back: the backlog drains, in order
    msgs = await catcher.next(5)
    assert [json.loads(m.data)["data"]["i"] for m in msgs] == [0, 1, 2, 3, 4]


async def test_publishes_survive_a_restart(start_sidecar: StartSidecar, tmp_path: Any) -> None:
    data = tmp_path / "pubdata"
    first: Sidecar = await start_sidecar(PUBSUB, data_dir=data)
    comp = first.runtime.builder.components.pubsubs["mem"]  # type: ignore[union-attr]
    await comp.pubsub.close()
    for i in range(3):
        assert (await first.client.post("/v1.0/publish/mem/t", json={"i": i})).status_code == 204
    first.runtime.request_shutdown()
    assert await asyncio.wait_for(first.task, 10) == 0
    # A new sidecar on the same data dir: the broker subscription exists before the relay runs.
    second: Sidecar = await start_sidecar(PUBSUB, data_dir=data)
    box = second.runtime.builder.components.pubsubs["mem"].outbox  # type: ignore[union-attr]
    deadline = asyncio.get_running_loop().time() + 10
    while box.count and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
    assert box.count == 0  # delivered to the broker and deleted


async def test_metadata_reports_pubsub(pub: tuple[Sidecar, Catcher]) -> None:
    s, _ = pub
    comps = {c["name"]: c for c in (await s.client.get("/v1.0/metadata")).json()["components"]}
    assert comps["mem"]["type"] == "pubsub.in-memory"
    assert "SUBSCRIBE_WILDCARDS" in comps["mem"]["capabilities"]


async def test_put_publishes_too(pub: tuple[Sidecar, Catcher]) -> None:
    s, catcher = pub
    r = await s.client.put("/v1.0/publish/mem/t", content=b"x")
    assert r.status_code == 204
    await catcher.next()
    assert isinstance(s.client, httpx.AsyncClient)
