"""The Dapr HTTP state API over a real loopback socket, on the SQLite and in-memory stores."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import httpx
import pytest

from tests.api.conftest import Sidecar, StartSidecar

STORES = ["statestore", "memstore"]


def error(resp: httpx.Response) -> str:
    code: str = resp.json()["errorCode"]
    return code


@pytest.mark.parametrize("store", STORES)
class TestSaveGetDelete:
    async def test_a_lone_surrogate_escape_is_kept(self, http: httpx.AsyncClient,
                                                   store: str) -> None:
        # JSON may spell half a surrogate pair ("\\ud800"); it is stored as that escape (was
        # a 500 with a traceback: UTF-8 cannot encode it).
        body = b'[{"key":"half","value":{"s":"a\\ud800b"}},{"key":"bulk","value":"\\udfff"}]'
        r = await http.post(f"/v1.0/state/{store}", content=body,
                            headers={"content-type": "application/json"})
        assert r.status_code == 204, r.text
        got = await http.get(f"/v1.0/state/{store}/half")
        assert got.status_code == 200
        assert got.content == b'{"s":"a\\ud800b"}'
        bulk = await http.post(f"/v1.0/state/{store}/bulk", json={"keys": ["bulk", "half"]})
        assert bulk.status_code == 200, bulk.text
        assert {x["key"]: x["data"] for x in bulk.json()} == {
            "bulk": "\udfff", "half": {"s": "a\ud800b"}}

    async def test_json_values_round_trip(self, http: httpx.AsyncClient, store: str) -> None:
        values = {
            "s": "hello",
            "o": {"a": 1, "b": [1, 2]},
            "n": 42,
            "f": 1.5,
            "t": True,
            "z": None,
            "u": "ünï",
        }
        body = [{"key": k, "value": v} for k, v in values.items()]
        r = await http.post(f"/v1.0/state/{store}", json=body)
        assert r.status_code == 204, r.text
        for k, v in values.items():
            got = await http.get(f"/v1.0/state/{store}/{k}")
            assert got.status_code == 200
            assert got.json() == v
            assert got.headers["content-type"] == "application/json"
            assert got.headers["etag"]
        raw = await http.get(f"/v1.0/state/{store}/s")
        assert raw.content == b'"hello"'  # a JSON string keeps its quotes, as in daprd

    async def test_missing_key_is_204(self, http: httpx.AsyncClient, store: str) -> None:
        r = await http.get(f"/v1.0/state/{store}/nope")
        assert r.status_code == 204
        assert r.content == b""

    async def test_put_works_like_post_and_empty_array_is_noop(
        self, http: httpx.AsyncClient, store: str
    ) -> None:
        assert (
            await http.put(f"/v1.0/state/{store}", json=[{"key": "p", "value": 1}])
        ).status_code == 204
        assert (await http.post(f"/v1.0/state/{store}", json=[])).status_code == 204
        assert (await http.get(f"/v1.0/state/{store}/p")).json() == 1

    async def test_etag_changes_on_every_write(self, http: httpx.AsyncClient, store: str) -> None:
        await http.post(f"/v1.0/state/{store}", json=[{"key": "e", "value": 1}])
        first = (await http.get(f"/v1.0/state/{store}/e")).headers["etag"]
        await http.post(f"/v1.0/state/{store}", json=[{"key": "e", "value": 1}])
        second = (await http.get(f"/v1.0/state/{store}/e")).headers["etag"]
        assert first != second

    async def test_etag_match_and_mismatch(self, http: httpx.AsyncClient, store: str) -> None:
        await http.post(f"/v1.0/state/{store}", json=[{"key": "k", "value": "v1"}])
        etag = (await http.get(f"/v1.0/state/{store}/k")).headers["etag"]
        ok = await http.post(
            f"/v1.0/state/{store}", json=[{"key": "k", "value": "v2", "etag": etag}]
        )
        assert ok.status_code == 204
        stale = await http.post(
            f"/v1.0/state/{store}", json=[{"key": "k", "value": "v3", "etag": etag}]
        )
        assert stale.status_code == 409
        assert error(stale) == "ERR_STATE_SAVE"
        assert "possible etag mismatch" in stale.json()["message"]
        assert (await http.get(f"/v1.0/state/{store}/k")).json() == "v2"

    async def test_etag_on_missing_key_is_mismatch(
        self, http: httpx.AsyncClient, store: str
    ) -> None:
        r = await http.post(
            f"/v1.0/state/{store}", json=[{"key": "ghost", "value": 1, "etag": "x"}]
        )
        assert r.status_code == 409

    async def test_first_write(self, http: httpx.AsyncClient, store: str) -> None:
        item = {"key": "fw", "value": 1, "options": {"concurrency": "first-write"}}
        assert (await http.post(f"/v1.0/state/{store}", json=[item])).status_code == 204
        again = await http.post(f"/v1.0/state/{store}", json=[item])
        assert again.status_code == 409

    async def test_delete(self, http: httpx.AsyncClient, store: str) -> None:
        await http.post(f"/v1.0/state/{store}", json=[{"key": "d", "value": 1}])
        etag = (await http.get(f"/v1.0/state/{store}/d")).headers["etag"]
        wrong = await http.delete(f"/v1.0/state/{store}/d", headers={"If-Match": "nope"})
        assert wrong.status_code == 409
        assert error(wrong) == "ERR_STATE_DELETE"
        assert (
            await http.delete(f"/v1.0/state/{store}/d", headers={"If-Match": etag})
        ).status_code == 204
        assert (await http.get(f"/v1.0/state/{store}/d")).status_code == 204
        assert (await http.delete(f"/v1.0/state/{store}/d")).status_code == 204  # missing is fine

    async def test_ttl_reports_expire_time(self, http: httpx.AsyncClient, store: str) -> None:
        before = datetime.now(UTC)
        r = await http.post(
            f"/v1.0/state/{store}",
            json=[{"key": "t", "value": 1, "metadata": {"ttlInSeconds": "100"}}],
        )
        assert r.status_code == 204
        got = await http.get(f"/v1.0/state/{store}/t")
        expire = datetime.fromisoformat(got.headers["metadata.ttlExpireTime"])
        delta = (expire - before).total_seconds()
        assert 98 <= delta <= 102
        await http.post(f"/v1.0/state/{store}", json=[{"key": "t", "value": 2}])
        assert "metadata.ttlExpireTime" not in (await http.get(f"/v1.0/state/{store}/t")).headers

    async def test_ttl_from_query_metadata(self, http: httpx.AsyncClient, store: str) -> None:
        r = await http.post(
            f"/v1.0/state/{store}?metadata.ttlInSeconds=50", json=[{"key": "q", "value": 1}]
        )
        assert r.status_code == 204
        assert "metadata.ttlExpireTime" in (await http.get(f"/v1.0/state/{store}/q")).headers

    @pytest.mark.parametrize("ttl", ["abc", "-2", "2147483648", "1.5"])
    async def test_bad_ttl_is_500_state_save(
        self, http: httpx.AsyncClient, store: str, ttl: str
    ) -> None:
        r = await http.post(
            f"/v1.0/state/{store}",
            json=[{"key": "b", "value": 1, "metadata": {"ttlInSeconds": ttl}}],
        )
        assert r.status_code == 500
        assert error(r) == "ERR_STATE_SAVE"

    @pytest.mark.parametrize("ttl", ["-1", "0"])
    async def test_ttl_minus_one_and_zero_never_expire(
        self, http: httpx.AsyncClient, store: str, ttl: str
    ) -> None:
        r = await http.post(
            f"/v1.0/state/{store}",
            json=[{"key": "n", "value": 1, "metadata": {"ttlInSeconds": ttl}}],
        )
        assert r.status_code == 204
        assert "metadata.ttlExpireTime" not in (await http.get(f"/v1.0/state/{store}/n")).headers

    async def test_bad_options_are_500(self, http: httpx.AsyncClient, store: str) -> None:
        r = await http.post(
            f"/v1.0/state/{store}",
            json=[{"key": "o", "value": 1, "options": {"concurrency": "often"}}],
        )
        assert (r.status_code, error(r)) == (500, "ERR_STATE_SAVE")
        r = await http.delete(f"/v1.0/state/{store}/o?consistency=maybe")
        assert (r.status_code, error(r)) == (500, "ERR_STATE_DELETE")

    async def test_bulk_save_is_not_atomic(self, http: httpx.AsyncClient, store: str) -> None:
        r = await http.post(
            f"/v1.0/state/{store}",
            json=[
                {"key": "a", "value": 1},
                {"key": "b", "value": 2, "etag": "wrong"},
                {"key": "c", "value": 3},
            ],
        )
        assert r.status_code == 409
        assert (await http.get(f"/v1.0/state/{store}/a")).json() == 1
        assert (await http.get(f"/v1.0/state/{store}/c")).json() == 3
        assert (await http.get(f"/v1.0/state/{store}/b")).status_code == 204

    async def test_keys_with_slashes_and_spaces(self, http: httpx.AsyncClient, store: str) -> None:
        await http.post(f"/v1.0/state/{store}", json=[{"key": "a/b c", "value": "x"}])
        assert (await http.get(f"/v1.0/state/{store}/a%2Fb%20c")).json() == "x"


@pytest.mark.parametrize("store", STORES)
class TestBulkAndTransactions:
    async def test_bulk_get(self, http: httpx.AsyncClient, store: str) -> None:
        await http.post(
            f"/v1.0/state/{store}",
            json=[
                {"key": "x", "value": {"n": 1}},
                {"key": "y", "value": "two"},
            ],
        )
        r = await http.post(f"/v1.0/state/{store}/bulk", json={"keys": ["y", "missing", "x"]})
        assert r.status_code == 200
        items = r.json()
        assert [i["key"] for i in items] == ["y", "missing", "x"]
        assert items[0]["data"] == "two"
        assert items[2]["data"] == {"n": 1}
        assert items[1] == {"key": "missing"}
        assert all(i["etag"] for i in (items[0], items[2]))

    async def test_transaction_applies_all(self, http: httpx.AsyncClient, store: str) -> None:
        await http.post(f"/v1.0/state/{store}", json=[{"key": "gone", "value": 1}])
        r = await http.post(
            f"/v1.0/state/{store}/transaction",
            json={
                "operations": [
                    {"operation": "upsert", "request": {"key": "t1", "value": "a"}},
                    {"operation": "upsert", "request": {"Key": "t2", "Value": {"b": 2}}},
                    {"operation": "delete", "request": {"key": "gone"}},
                ]
            },
        )
        assert r.status_code == 204, r.text
        assert (await http.get(f"/v1.0/state/{store}/t1")).json() == "a"
        assert (await http.get(f"/v1.0/state/{store}/t2")).json() == {"b": 2}
        assert (await http.get(f"/v1.0/state/{store}/gone")).status_code == 204

    async def test_transaction_is_atomic(self, http: httpx.AsyncClient, store: str) -> None:
        r = await http.post(
            f"/v1.0/state/{store}/transaction",
            json={
                "operations": [
                    {"operation": "upsert", "request": {"key": "ok", "value": 1}},
                    {"operation": "upsert", "request": {"key": "bad", "value": 1, "etag": "nope"}},
                ]
            },
        )
        assert r.status_code == 500
        assert error(r) == "ERR_STATE_TRANSACTION"
        assert (await http.get(f"/v1.0/state/{store}/ok")).status_code == 204

    async def test_unknown_operation(self, http: httpx.AsyncClient, store: str) -> None:
        r = await http.post(
            f"/v1.0/state/{store}/transaction",
            json={
                "operations": [
                    {"operation": "merge", "request": {"key": "m", "value": 1}},
                ]
            },
        )
        assert (r.status_code, error(r)) == (400, "ERR_NOT_SUPPORTED_STATE_OPERATION")

    async def test_too_many_operations(self, http: httpx.AsyncClient, store: str) -> None:
        ops = [
            {"operation": "upsert", "request": {"key": f"k{i}", "value": i}} for i in range(1001)
        ]
        r = await http.post(f"/v1.0/state/{store}/transaction", json={"operations": ops})
        assert (r.status_code, error(r)) == (400, "ERR_STATE_STORE_TOO_MANY_TRANSACTIONS")

    async def test_query_is_not_supported(self, http: httpx.AsyncClient, store: str) -> None:
        r = await http.post(f"/v1.0-alpha1/state/{store}/query", json={"filter": {}})
        assert (r.status_code, error(r)) == (500, "ERR_STATE_STORE_NOT_SUPPORTED")


class TestErrors:
    async def test_unknown_store_is_400(self, http: httpx.AsyncClient) -> None:
        r = await http.get("/v1.0/state/nostore/k")
        assert r.status_code == 400
        body = r.json()
        assert body["errorCode"] == "ERR_STATE_STORE_NOT_FOUND"
        assert body["message"] == "state store nostore is not found"
        assert body["details"][0]["reason"] == "DAPR_STATE_NOT_FOUND"

    async def test_illegal_key(self, http: httpx.AsyncClient) -> None:
        r = await http.post("/v1.0/state/statestore", json=[{"key": "a||b", "value": 1}])
        assert r.status_code == 400
        assert error(r) == "ERR_MALFORMED_REQUEST"
        assert r.json()["details"][0]["reason"] == "DAPR_STATE_ILLEGAL_KEY"
        r = await http.get("/v1.0/state/statestore/a||b")
        assert r.status_code == 400

    @pytest.mark.parametrize(
        "body",
        [b"{not json", b'{"key": "a"}', b'[{"value": 1}]', b"[1]", b'[{"key": 5, "value": 1}]'],
    )
    async def test_malformed_body_is_400(self, http: httpx.AsyncClient, body: bytes) -> None:
        r = await http.post("/v1.0/state/statestore", content=body)
        assert (r.status_code, error(r)) == (400, "ERR_MALFORMED_REQUEST")

    async def test_no_state_store_configured(self, start_sidecar: StartSidecar) -> None:
        s: Sidecar = await start_sidecar(components="")
        r = await s.client.get("/v1.0/state/statestore/k")
        assert (r.status_code, error(r)) == (500, "ERR_STATE_STORE_NOT_CONFIGURED")

    async def test_body_over_limit_is_413(self, start_sidecar: StartSidecar) -> None:
        s: Sidecar = await start_sidecar(max_body_size=1024)
        big = [{"key": "big", "value": "x" * 2000}]
        r = await s.client.post("/v1.0/state/statestore", json=big)
        assert (r.status_code, error(r)) == (413, "ERR_BODY_TOO_LARGE")

        async def chunks():  # no Content-Length: the limit is enforced while reading
            for _ in range(10):
                yield b" " * 200

        r = await s.client.post("/v1.0/state/statestore", content=chunks())
        assert (r.status_code, error(r)) == (413, "ERR_BODY_TOO_LARGE")
        ok = await s.client.post("/v1.0/state/statestore", json=[{"key": "small", "value": 1}])
        assert ok.status_code == 204

    async def test_unknown_route_is_json_404(self, http: httpx.AsyncClient) -> None:
        r = await http.get("/v1.0/nothing/here")
        assert r.status_code == 404
        assert error(r) == "ERR_NOT_FOUND"
        r = await http.patch("/v1.0/state/statestore")
        assert r.status_code == 405
        assert "POST" in r.headers["allow"]


class TestKeyPrefix:
    @pytest.mark.parametrize(
        ("strategy", "stored"),
        [
            (None, "app||k"),
            ("appid", "app||k"),
            ("name", "store1||k"),
            ("none", "k"),
            ("custom", "custom||k"),
        ],
    )
    async def test_strategies(
        self, start_sidecar: StartSidecar, strategy: str | None, stored: str
    ) -> None:
        extra = f"\n  - {{name: keyPrefix, value: {strategy}}}" if strategy else ""
        s: Sidecar = await start_sidecar(
            components=f"""
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: store1}}
spec:
  type: state.sqlite
  version: v1
  metadata:
  - {{name: connectionString, value: s.db}}{extra}
"""
        )
        await s.client.post("/v1.0/state/store1", json=[{"key": "k", "value": 1}])
        with sqlite3.connect(s.data_dir / "s.db") as db:
            keys = [row[0] for row in db.execute("SELECT key FROM state")]
        assert keys == [stored]
        bulk = await s.client.post("/v1.0/state/store1/bulk", json={"keys": ["k"]})
        assert bulk.json()[0]["key"] == "k"
