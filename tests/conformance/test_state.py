"""One state conformance suite, run over every implementation in ``conftest.CASES``.

Semantics: ``edge_runtime/state/__init__.py`` and contract §8.1.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from edge_runtime.state import (
    Concurrency,
    DeleteRequest,
    ETagMismatchError,
    Feature,
    InvalidRequestError,
    SetRequest,
    TransactionalStore,
)
from tests.conformance.cases import Case, OpenStore
from tests.support.state import FakeClock

FIRST = Concurrency.FIRST_WRITE


async def etag_of(store: TransactionalStore, key: str) -> str:
    got = await store.get(key)
    assert got is not None
    return got.etag


class TestFeatures:
    def test_declares_etag_transactions_ttl(self, store: TransactionalStore) -> None:
        assert {Feature.ETAG, Feature.TRANSACTIONAL, Feature.TTL} <= store.features
        assert Feature.QUERY_API not in store.features
        assert isinstance(store, TransactionalStore)


class TestGetSet:
    async def test_get_missing_is_none(self, store: TransactionalStore) -> None:
        assert await store.get("nope") is None

    async def test_json_roundtrip(self, store: TransactionalStore) -> None:
        await store.set(SetRequest("k", b'{"a": [1, 2]}'))
        got = await store.get("k")
        assert got is not None
        assert (got.value, got.is_binary, got.expire_time) == (b'{"a": [1, 2]}', False, None)

    async def test_binary_roundtrip(self, store: TransactionalStore) -> None:
        raw = bytes(range(256)) + b"\x00tail"
        await store.set(SetRequest("bin", raw, is_binary=True))
        got = await store.get("bin")
        assert got is not None
        assert (got.value, got.is_binary) == (raw, True)

    async def test_empty_value(self, store: TransactionalStore) -> None:
        await store.set(SetRequest("e", b""))
        got = await store.get("e")
        assert got is not None
        assert got.value == b""

    async def test_overwrite(self, store: TransactionalStore) -> None:
        await store.set(SetRequest("k", b"1"))
        await store.set(SetRequest("k", b"2", is_binary=True))
        got = await store.get("k")
        assert got is not None
        assert (got.value, got.is_binary) == (b"2", True)

    async def test_etag_is_a_fresh_uuid_on_every_write(self, store: TransactionalStore) -> None:
        seen = set()
        for i in range(3):
            await store.set(SetRequest("k", b"same"))
            etag = await etag_of(store, "k")
            assert uuid.UUID(etag).version == 4
            seen.add(etag)
            assert i + 1 == len(seen)

    async def test_keys_are_exact(self, store: TransactionalStore) -> None:
        await store.set(SetRequest("app||K", b"1"))
        assert await store.get("app||k") is None
        assert await store.get("app||K") is not None


class TestETag:
    async def test_matching_etag_updates(self, store: TransactionalStore) -> None:
        await store.set(SetRequest("k", b"1"))
        old = await etag_of(store, "k")
        await store.set(SetRequest("k", b"2", etag=old))
        got = await store.get("k")
        assert got is not None
        assert got.value == b"2"
        assert got.etag != old

    async def test_wrong_etag_is_a_mismatch_and_keeps_the_row(
        self, store: TransactionalStore
    ) -> None:
        await store.set(SetRequest("k", b"1"))
        with pytest.raises(ETagMismatchError) as info:
            await store.set(SetRequest("k", b"2", etag=str(uuid.uuid4())))
        assert info.value.key == "k"
        got = await store.get("k")
        assert got is not None
        assert got.value == b"1"

    async def test_stale_etag_is_a_mismatch(self, store: TransactionalStore) -> None:
        await store.set(SetRequest("k", b"1"))
        old = await etag_of(store, "k")
        await store.set(SetRequest("k", b"2", etag=old))
        with pytest.raises(ETagMismatchError):
            await store.set(SetRequest("k", b"3", etag=old))

    async def test_etag_on_missing_key_is_a_mismatch(self, store: TransactionalStore) -> None:
        with pytest.raises(ETagMismatchError):
            await store.set(SetRequest("ghost", b"1", etag=str(uuid.uuid4())))
        assert await store.get("ghost") is None

    async def test_empty_etag_means_none(self, store: TransactionalStore) -> None:
        await store.set(SetRequest("k", b"1", etag=""))
        got = await store.get("k")
        assert got is not None
        assert got.value == b"1"


class TestFirstWrite:
    async def test_inserts_a_new_key(self, store: TransactionalStore) -> None:
        await store.set(SetRequest("k", b"1", concurrency=FIRST))
        got = await store.get("k")
        assert got is not None
        assert got.value == b"1"

    async def test_live_row_is_a_mismatch(self, store: TransactionalStore) -> None:
        await store.set(SetRequest("k", b"1"))
        with pytest.raises(ETagMismatchError):
            await store.set(SetRequest("k", b"2", concurrency=FIRST))
        got = await store.get("k")
        assert got is not None
        assert got.value == b"1"

    async def test_replaces_an_expired_row(
        self, store: TransactionalStore, clock: FakeClock
    ) -> None:
        await store.set(SetRequest("k", b"old", ttl_seconds=5))
        clock.advance(6)
        await store.set(SetRequest("k", b"new", concurrency=FIRST))
        got = await store.get("k")
        assert got is not None
        assert (got.value, got.expire_time) == (b"new", None)

    async def test_with_matching_etag_updates(self, store: TransactionalStore) -> None:
        await store.set(SetRequest("k", b"1"))
        etag = await etag_of(store, "k")
        await store.set(SetRequest("k", b"2", etag=etag, concurrency=FIRST))
        got = await store.get("k")
        assert got is not None
        assert got.value == b"2"

    async def test_only_one_of_many_racing_first_writes_wins(
        self, store: TransactionalStore
    ) -> None:
        results = await asyncio.gather(
            *(store.set(SetRequest("k", str(i).encode(), concurrency=FIRST)) for i in range(20)),
            return_exceptions=True,
        )
        winners = [i for i, r in enumerate(results) if r is None]
        assert len(winners) == 1
        assert all(isinstance(r, ETagMismatchError) for r in results if r is not None)
        got = await store.get("k")
        assert got is not None
        assert got.value == str(winners[0]).encode()


class TestDelete:
    async def test_unconditional(self, store: TransactionalStore) -> None:
        await store.set(SetRequest("k", b"1"))
        await store.delete(DeleteRequest("k"))
        assert await store.get("k") is None

    async def test_missing_key_is_fine(self, store: TransactionalStore) -> None:
        await store.delete(DeleteRequest("never-there"))

    async def test_matching_etag_deletes(self, store: TransactionalStore) -> None:
        await store.set(SetRequest("k", b"1"))
        await store.delete(DeleteRequest("k", etag=await etag_of(store, "k")))
        assert await store.get("k") is None

    async def test_wrong_etag_is_a_mismatch(self, store: TransactionalStore) -> None:
        await store.set(SetRequest("k", b"1"))
        with pytest.raises(ETagMismatchError):
            await store.delete(DeleteRequest("k", etag=str(uuid.uuid4())))
        assert await store.get("k") is not None

    async def test_etag_on_missing_key_is_a_mismatch(self, store: TransactionalStore) -> None:
        with pytest.raises(ETagMismatchError):
            await store.delete(DeleteRequest("ghost", etag=str(uuid.uuid4())))


class TestTTL:
    async def test_expire_time_is_reported_in_utc(
        self, store: TransactionalStore, clock: FakeClock
    ) -> None:
        await store.set(SetRequest("k", b"1", ttl_seconds=60))
        got = await store.get("k")
        assert got is not None
        assert got.expire_time == datetime.fromtimestamp(clock.now + 60, tz=UTC)
        assert got.expire_time.tzinfo is not None
        assert got.expire_time.utcoffset() is not None
        assert not got.expire_time.utcoffset()

    async def test_expired_row_is_invisible(
        self, store: TransactionalStore, clock: FakeClock
    ) -> None:
        await store.set(SetRequest("short", b"1", ttl_seconds=1))
        await store.set(SetRequest("long", b"2", ttl_seconds=100))
        clock.advance(0.999)
        assert await store.get("short") is not None
        clock.advance(0.002)
        assert await store.get("short") is None
        assert set(await store.bulk_get(["short", "long"])) == {"long"}

    async def test_write_without_ttl_clears_expiry(
        self, store: TransactionalStore, clock: FakeClock
    ) -> None:
        await store.set(SetRequest("k", b"1", ttl_seconds=5))
        await store.set(SetRequest("k", b"2", etag=await etag_of(store, "k")))
        clock.advance(10)
        got = await store.get("k")
        assert got is not None
        assert (got.value, got.expire_time) == (b"2", None)

    async def test_every_write_resets_expiry(
        self, store: TransactionalStore, clock: FakeClock
    ) -> None:
        await store.set(SetRequest("k", b"1", ttl_seconds=5))
        clock.advance(4)
        await store.set(SetRequest("k", b"2", ttl_seconds=5))
        clock.advance(4)
        assert await store.get("k") is not None

    async def test_etag_of_an_expired_row_is_a_mismatch(
        self, store: TransactionalStore, clock: FakeClock
    ) -> None:
        await store.set(SetRequest("k", b"1", ttl_seconds=1))
        etag = await etag_of(store, "k")
        clock.advance(2)
        with pytest.raises(ETagMismatchError):
            await store.set(SetRequest("k", b"2", etag=etag))
        with pytest.raises(ETagMismatchError):
            await store.delete(DeleteRequest("k", etag=etag))

    @pytest.mark.parametrize("ttl", [0, -1])
    async def test_zero_and_minus_one_never_expire(
        self, store: TransactionalStore, clock: FakeClock, ttl: int
    ) -> None:
        await store.set(SetRequest("k", b"1", ttl_seconds=ttl))
        clock.advance(10**9)
        got = await store.get("k")
        assert got is not None
        assert got.expire_time is None

    @pytest.mark.parametrize("ttl", [-2, 2**31])
    async def test_out_of_range_ttl_is_invalid(self, store: TransactionalStore, ttl: int) -> None:
        with pytest.raises(InvalidRequestError):
            await store.set(SetRequest("k", b"1", ttl_seconds=ttl))
        assert await store.get("k") is None


class TestBulk:
    async def test_bulk_get_leaves_out_missing_keys(self, store: TransactionalStore) -> None:
        await store.set(SetRequest("a", b"1"))
        await store.set(SetRequest("b", b"2", is_binary=True))
        got = await store.bulk_get(["a", "missing", "b", "a"])
        assert set(got) == {"a", "b"}
        assert (got["a"].value, got["b"].value, got["b"].is_binary) == (b"1", b"2", True)
        assert got["a"].etag == await etag_of(store, "a")

    async def test_bulk_get_of_nothing(self, store: TransactionalStore) -> None:
        assert await store.bulk_get([]) == {}

    async def test_bulk_get_of_many_keys(self, store: TransactionalStore) -> None:
        await asyncio.gather(*(store.set(SetRequest(f"k{i}", b"v")) for i in range(0, 1200, 2)))
        got = await store.bulk_get([f"k{i}" for i in range(1200)])
        assert set(got) == {f"k{i}" for i in range(0, 1200, 2)}

    async def test_bulk_set_is_not_atomic(self, store: TransactionalStore) -> None:
        await store.set(SetRequest("b", b"old"))
        results = await store.bulk_set(
            [
                SetRequest("a", b"1"),
                SetRequest("b", b"2", etag=str(uuid.uuid4())),
                SetRequest("c", b"3"),
            ]
        )
        assert results[0] is None
        assert isinstance(results[1], ETagMismatchError)
        assert results[2] is None
        got = await store.bulk_get(["a", "b", "c"])
        assert {k: v.value for k, v in got.items()} == {"a": b"1", "b": b"old", "c": b"3"}

    async def test_bulk_set_of_nothing(self, store: TransactionalStore) -> None:
        assert await store.bulk_set([]) == []


class TestMulti:
    async def test_applies_all(self, store: TransactionalStore) -> None:
        await store.set(SetRequest("gone", b"x"))
        await store.multi(
            [SetRequest("a", b"1"), SetRequest("b", b"2", ttl_seconds=10), DeleteRequest("gone")]
        )
        got = await store.bulk_get(["a", "b", "gone"])
        assert {k: v.value for k, v in got.items()} == {"a": b"1", "b": b"2"}
        assert got["b"].expire_time is not None

    async def test_failing_op_rolls_back_earlier_ops(self, store: TransactionalStore) -> None:
        await store.set(SetRequest("keep", b"original"))
        await store.set(SetRequest("doomed", b"still-here"))
        with pytest.raises(ETagMismatchError):
            await store.multi(
                [
                    SetRequest("keep", b"changed"),
                    SetRequest("new", b"1"),
                    DeleteRequest("doomed"),
                    SetRequest("other", b"2", etag=str(uuid.uuid4())),
                ]
            )
        got = await store.bulk_get(["keep", "new", "doomed", "other"])
        assert {k: v.value for k, v in got.items()} == {
            "keep": b"original",
            "doomed": b"still-here",
        }

    async def test_ops_run_in_order(self, store: TransactionalStore) -> None:
        await store.multi([SetRequest("k", b"1"), DeleteRequest("k"), SetRequest("j", b"2")])
        assert await store.get("k") is None
        await store.multi([DeleteRequest("j"), SetRequest("j", b"3", concurrency=FIRST)])
        got = await store.get("j")
        assert got is not None
        assert got.value == b"3"

    async def test_first_write_on_existing_key_fails_whole_multi(
        self, store: TransactionalStore
    ) -> None:
        await store.set(SetRequest("k", b"1"))
        with pytest.raises(ETagMismatchError):
            await store.multi([SetRequest("x", b"1"), SetRequest("k", b"2", concurrency=FIRST)])
        assert await store.get("x") is None

    async def test_invalid_ttl_fails_whole_multi(self, store: TransactionalStore) -> None:
        with pytest.raises(InvalidRequestError):
            await store.multi([SetRequest("x", b"1"), SetRequest("y", b"2", ttl_seconds=-5)])
        assert await store.bulk_get(["x", "y"]) == {}

    async def test_empty_multi(self, store: TransactionalStore) -> None:
        await store.multi([])


class TestConcurrency:
    async def test_many_concurrent_sets_all_land(self, store: TransactionalStore) -> None:
        await asyncio.gather(
            *(store.set(SetRequest(f"k{i}", f"{i}".encode())) for i in range(200))
        )
        got = await store.bulk_get([f"k{i}" for i in range(200)])
        expected = {f"k{i}": f"{i}".encode() for i in range(200)}
        assert {k: v.value for k, v in got.items()} == expected

    async def test_etag_updates_from_many_tasks_serialise(
        self, store: TransactionalStore
    ) -> None:
        await store.set(SetRequest("counter", b"0"))

        async def bump() -> None:
            while True:
                got = await store.get("counter")
                assert got is not None
                try:
                    await store.set(
                        SetRequest("counter", str(int(got.value) + 1).encode(), etag=got.etag)
                    )
                except ETagMismatchError:
                    continue
                return

        await asyncio.gather(*(bump() for _ in range(10)))
        got = await store.get("counter")
        assert got is not None
        assert got.value == b"10"


class TestPersistence:
    async def test_close_and_reopen_keeps_data(
        self, case: Case, open_store: OpenStore
    ) -> None:
        if not case.persistent:
            pytest.skip(f"{case.id} keeps nothing after close")
        first = await open_store()
        await asyncio.gather(*(first.set(SetRequest(f"k{i}", b"v")) for i in range(200)))
        await first.set(SetRequest("bin", b"\x00\x01", is_binary=True, ttl_seconds=100))
        before = await first.get("bin")
        await first.close()
        await first.close()  # idempotent

        second = await open_store()
        got = await second.bulk_get([f"k{i}" for i in range(200)] + ["bin"])
        assert len(got) == 201
        assert got["bin"] == before
