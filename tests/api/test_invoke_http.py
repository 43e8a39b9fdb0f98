"""Service invocation of the local app over the HTTP API (contract §2.6, §3.8): a real sidecar
on loopback sockets calling a real HTTP app."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from edge_runtime.invocation.headers import valid_traceparent
from tests.api.conftest import Sidecar, StartSidecar
from tests.appchannel.appserver import AppServer, Reply, Request
from tests.invocation.echoapp import echo

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
async def app() -> AsyncIterator[AppServer]:
    async with AppServer(echo()) as server:
        yield server


@pytest.fixture
async def side(start_sidecar: StartSidecar, app: AppServer) -> Sidecar:
    s: Sidecar = await start_sidecar(app_port=app.port)
    return s


def seen(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_post_forwards_path_query_body_and_headers(side: Sidecar) -> None:
    r = await side.client.post(
        "/v1.0/invoke/app/method/orders/42?x=1&y=a%20b&x=2",
        content=b"hello",
        headers={"content-type": "text/plain", "x-custom": "v1", "dapr-app-id": "nope"},
    )
    got = seen(r)
    assert got["method"] == "POST"
    assert got["path"] == "/orders/42"
    assert got["query"] == "x=1&y=a%20b&x=2"
    assert got["body"] == "hello"
    h = got["headers"]
    assert h["content-type"] == "text/plain"
    assert h["x-custom"] == "v1"
    assert h["dapr-caller-app-id"] == "app"
    assert h["dapr-callee-app-id"] == "app"
    assert "dapr-app-id" not in h
    assert valid_traceparent(h["traceparent"])
    assert r.headers["x-app"] == "echo"
    assert r.headers["content-type"] == "application/json"


@pytest.mark.parametrize("verb", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"])
async def test_the_verb_reaches_the_app(side: Sidecar, verb: str) -> None:
    r = await side.client.request(verb, "/v1.0/invoke/app/method/things")
    assert seen(r)["method"] == verb


async def test_head_is_relayed(side: Sidecar, app: AppServer) -> None:
    r = await side.client.head("/v1.0/invoke/app/method/things")
    assert r.status_code == 200
    assert app.requests[-1].method == "HEAD"


@pytest.mark.parametrize("code", [404, 500, 503, 418])
async def test_app_status_body_and_headers_are_relayed(side: Sidecar, code: int) -> None:
    r = await side.client.get(f"/v1.0/invoke/app/method/status/{code}")
    assert r.status_code == code
    assert r.content == f"app says {code}".encode()
    assert r.headers["content-type"] == "text/plain"
    assert r.headers["x-app"] == "echo"


async def test_valid_traceparent_is_propagated(side: Sidecar) -> None:
    r = await side.client.get(
        "/v1.0/invoke/app/method/t", headers={"traceparent": TRACEPARENT, "tracestate": "k=v"}
    )
    h = seen(r)["headers"]
    assert h["traceparent"] == TRACEPARENT
    assert h["tracestate"] == "k=v"


async def test_malformed_traceparent_is_replaced(side: Sidecar) -> None:
    r = await side.client.get(
        "/v1.0/invoke/app/method/t", headers={"traceparent": "junk", "tracestate": "k=v"}
    )
    h = seen(r)["headers"]
    assert h["traceparent"] != "junk"
    assert valid_traceparent(h["traceparent"])
    assert "tracestate" not in h


async def test_caller_supplied_ids_are_replaced(side: Sidecar) -> None:
    r = await side.client.get(
        "/v1.0/invoke/app/method/t",
        headers={"dapr-caller-app-id": "mallory", "dapr-callee-app-id": "x",
                 "dapr-caller-namespace": "evil"},
    )
    h = seen(r)["headers"]
    assert h["dapr-caller-app-id"] == "app"
    assert h["dapr-callee-app-id"] == "app"
    assert "dapr-caller-namespace" not in h


async def test_hop_by_hop_headers_are_not_forwarded(side: Sidecar) -> None:
    r = await side.client.get(
        "/v1.0/invoke/app/method/t", headers={"connection": "keep-alive, x-private",
                                              "x-private": "1", "te": "trailers"}
    )
    h = seen(r)["headers"]
    assert "x-private" not in h
    assert "te" not in h


async def test_dapr_app_id_header_invokes_the_whole_path(side: Sidecar) -> None:
    r = await side.client.put(
        "/orders/7/items?z=1", content=b"{}", headers={"dapr-app-id": "app"}
    )
    got = seen(r)
    assert (got["method"], got["path"], got["query"]) == ("PUT", "/orders/7/items", "z=1")
    assert "dapr-app-id" not in got["headers"]


async def test_basic_auth_names_the_app(side: Sidecar) -> None:
    auth = "Basic " + base64.b64encode(b"dapr-app-id:app").decode()
    got = seen(await side.client.get("/hello", headers={"authorization": auth}))
    assert got["path"] == "/hello"


async def test_unknown_path_without_app_id_is_still_404(side: Sidecar) -> None:
    r = await side.client.get("/hello")
    assert r.status_code == 404
    assert r.json()["errorCode"] == "ERR_NOT_FOUND"


async def test_invoke_path_without_method_is_404(side: Sidecar) -> None:
    r = await side.client.get("/v1.0/invoke/app")
    assert r.status_code == 404
    assert r.json() == {
        "errorCode": "ERR_DIRECT_INVOKE",
        "message": "failed getting app id either from the URL path or the header dapr-app-id",
    }


async def test_unknown_app_id(side: Sidecar) -> None:
    r = await side.client.get("/v1.0/invoke/other/method/t")
    assert r.status_code == 500
    body = r.json()
    assert body["errorCode"] == "ERR_DIRECT_INVOKE"
    assert "'other' is not in the name resolution table" in body["message"]


async def test_invalid_app_id(side: Sidecar) -> None:
    r = await side.client.get("/v1.0/invoke/a.b.c/method/t")
    assert r.status_code == 500
    assert r.json()["message"] == "failed to invoke, id: a.b.c, err: invalid app id"


async def test_own_app_in_own_namespace_is_local(
    start_sidecar: StartSidecar, app: AppServer
) -> None:
    s = await start_sidecar(app_port=app.port, namespace="plant")
    got = seen(await s.client.get("/v1.0/invoke/app.plant/method/t"))
    assert got["headers"]["dapr-caller-namespace"] == "plant"


async def test_no_app_channel(sidecar: Sidecar) -> None:
    r = await sidecar.client.get("/v1.0/invoke/app/method/t")
    assert r.status_code == 500
    body = r.json()
    assert body["errorCode"] == "ERR_DIRECT_INVOKE"
    assert "app channel not initialized" in body["message"]


async def test_app_not_listening(start_sidecar: StartSidecar) -> None:
    async with AppServer() as gone:
        port = gone.port
    s = await start_sidecar(app_port=port)
    r = await s.client.get("/v1.0/invoke/app/method/t")
    assert r.status_code == 500
    body = r.json()
    assert body["errorCode"] == "ERR_DIRECT_INVOKE"
    assert body["message"].startswith("failed to invoke, id: app, err: GET http://127.0.0.1:")


async def test_api_token_is_not_forwarded_and_app_token_is_sent(
    start_sidecar: StartSidecar, app: AppServer
) -> None:
    s = await start_sidecar(app_port=app.port, api_token="outer", app_api_token="inner")
    got = seen(await s.client.get("/v1.0/invoke/app/method/t"))
    assert got["headers"]["dapr-api-token"] == "inner"
    async with httpx.AsyncClient(base_url=str(s.client.base_url)) as bare:
        r = await bare.get("/v1.0/invoke/app/method/t")
    assert r.status_code == 401


async def test_request_body_over_the_limit_is_413(
    start_sidecar: StartSidecar, app: AppServer
) -> None:
    s = await start_sidecar(app_port=app.port, max_body_size=1024)
    r = await s.client.post("/v1.0/invoke/app/method/t", content=b"x" * 2048)
    assert r.status_code == 413
    assert r.json()["errorCode"] == "ERR_BODY_TOO_LARGE"


async def test_reply_over_the_limit_is_an_error(start_sidecar: StartSidecar) -> None:
    async with AppServer(lambda _r: Reply(200, b"y" * 5000)) as big:
        s = await start_sidecar(app_port=big.port, max_body_size=1024)
        r = await s.client.get("/v1.0/invoke/app/method/t")
    assert r.status_code == 500
    assert "larger than 1024 bytes" in r.json()["message"]


async def test_gzip_reply_is_relayed_untouched(start_sidecar: StartSidecar) -> None:
    import gzip

    packed = gzip.compress(b'{"a": 1}')
    reply = Reply(200, packed, headers={"content-encoding": "gzip"})
    async with AppServer(lambda _r: reply) as app:
        s = await start_sidecar(app_port=app.port)
        r = await s.client.get("/v1.0/invoke/app/method/t", headers={"accept-encoding": "gzip"})
    assert r.headers["content-encoding"] == "gzip"
    assert json.loads(r.content) == {"a": 1}  # httpx decoded the body the app compressed
    assert app.requests[-1].header("accept-encoding") == "gzip"


async def test_client_default_headers_are_not_added(start_sidecar: StartSidecar) -> None:
    async with AppServer(echo()) as app:
        s = await start_sidecar(app_port=app.port)
        raw = httpx.AsyncClient(base_url=str(s.client.base_url), headers={})
        async with raw:
            req = raw.build_request("GET", "/v1.0/invoke/app/method/t")
            for name in ("accept", "accept-encoding", "user-agent"):
                req.headers.pop(name, None)
            got = seen(await raw.send(req))
    for name in ("accept", "accept-encoding", "user-agent"):
        assert name not in got["headers"]


async def test_metrics_count_invocations(side: Sidecar) -> None:
    from edge_runtime.observability.metrics import INVOCATIONS

    before = INVOCATIONS.labels("local", "app_error")._value.get()
    await side.client.get("/v1.0/invoke/app/method/status/500")
    assert INVOCATIONS.labels("local", "app_error")._value.get() == before + 1


async def test_app_cookies_are_not_kept_between_calls(start_sidecar: StartSidecar) -> None:
    def respond(req: Request) -> Reply:
        if req.path == "/dapr/subscribe":
            return Reply(404)
        return Reply(200, (req.header("cookie") or "").encode(),
                     headers={"set-cookie": "session=secret; Path=/"})

    async with AppServer(respond) as app:
        s = await start_sidecar(app_port=app.port)
        first = await s.client.get("/v1.0/invoke/app/method/login")
        assert first.headers["set-cookie"] == "session=secret; Path=/"
        s.client.cookies.clear()
        second = await s.client.get("/v1.0/invoke/app/method/other")
    assert second.content == b""
