"""``state.sqlite`` as a component: lifecycle, cleanup, disk budget, read-only files, crashes.

The state semantics themselves are covered by ``tests/conformance/test_state.py``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_runtime.errors import ComponentError, StorageFullError
from edge_runtime.observability.metrics import REGISTRY
from edge_runtime.state import DeleteRequest, SetRequest, StateStoreError
from edge_runtime.state.sqlite import SqliteStateStore, create
from edge_runtime.support.disk import DiskBudget
from tests.support.state import FakeClock, MakeContext


def raw_keys(path: Path, table: str = "state") -> set[str]:
    """Keys physically in the file, expired or not (bypassing the store)."""
    conn = sqlite3.connect(path)
    try:
        return {k for (k,) in conn.execute(f'SELECT key FROM "{table}"')}
    finally:
        conn.close()


async def wait_for(predicate: Callable[[], bool]) -> None:
    """Poll ``predicate`` for up to 5 s: it depends on a background task, not on a reply."""
    for _ in range(250):
        if predicate():
            return
        await asyncio.sleep(0.02)
    pytest.fail("condition not met within 5 s")


def expired_deleted(store: str = "statestore") -> float:
    name = "edge_runtime_state_expired_deleted_total"
    return REGISTRY.get_sample_value(name, {"store": store}) or 0.0


class TestLifecycle:
    async def test_use_before_init_and_after_close_is_a_store_error(
        self, make_context: MakeContext
    ) -> None:
        store = create(make_context({"connectionString": "s.db"}))
        with pytest.raises(StateStoreError):
            await store.get("k")
        await store.init()
        await store.set(SetRequest("k", b"1"))
        await store.close()
        with pytest.raises(StateStoreError):
            await store.get("k")
        with pytest.raises(StateStoreError):
            await store.set(SetRequest("k", b"2"))

    async def test_unopenable_path_is_a_component_error(
        self, make_context: MakeContext, tmp_path: Path
    ) -> None:
        (tmp_path / "adir").mkdir()
        store = create(make_context({"connectionString": "adir"}))
        with pytest.raises(ComponentError, match="adir"):
            await store.init()

    async def test_epoch_and_quarantine_are_exposed(
        self, make_context: MakeContext, tmp_path: Path
    ) -> None:
        (tmp_path / "db").mkdir()
        (tmp_path / "db" / "s.db").write_bytes(b"\x00garbage" * 512)
        store = create(make_context({"connectionString": "db/s.db"}))
        await store.init()
        try:
            assert len(store.epoch) == 32
            assert len(store.quarantined) == 1
            assert Path(store.quarantined[0]).parent == tmp_path / "quarantine"
            await store.set(SetRequest("k", b"1"))
            assert await store.get("k") is not None
        finally:
            await store.close()

    async def test_newer_schema_refuses_to_open(
        self, make_context: MakeContext, tmp_path: Path
    ) -> None:
        store = create(make_context({"connectionString": "s.db"}))
        await store.init()
        await store.close()
        conn = sqlite3.connect(tmp_path / "s.db")
        with conn:
            conn.execute("UPDATE _meta SET value = '99' WHERE key = 'schema_version:state'")
        conn.close()
        again = create(make_context({"connectionString": "s.db"}))
        with pytest.raises(ComponentError, match="newer"):
            await again.init()
        await again.close()

    async def test_two_tables_share_one_file(
        self, make_context: MakeContext, tmp_path: Path
    ) -> None:
        a = create(make_context({"connectionString": "s.db"}))
        b = create(make_context({"connectionString": "s.db", "tableName": "other"}))
        await a.init()
        await b.init()
        try:
            await a.set(SetRequest("k", b"a"))
            await b.set(SetRequest("k", b"b"))
            got_a, got_b = await a.get("k"), await b.get("k")
            assert got_a is not None
            assert got_b is not None
            assert (got_a.value, got_b.value) == (b"a", b"b")
            assert a.epoch == b.epoch
        finally:
            await a.close()
            await b.close()
        assert raw_keys(tmp_path / "s.db", "other") == {"k"}

    async def test_read_only_connection_string(
        self, make_context: MakeContext, tmp_path: Path
    ) -> None:
        writer = create(make_context({"connectionString": "s.db"}))
        await writer.init()
        await writer.set(SetRequest("k", b"1"))
        await writer.close()
        uri = f"file:{tmp_path / 's.db'}?mode=ro"
        store = create(make_context({"connectionString": uri}))
        await store.init()
        try:
            got = await store.get("k")
            assert got is not None
            assert got.value == b"1"
            with pytest.raises(StateStoreError, match="readonly"):
                await store.set(SetRequest("k", b"2"))
        finally:
            await store.close()


class TestTTLCleanup:
    async def test_cleanup_deletes_expired_rows_physically(
        self, make_context: MakeContext, tmp_path: Path, clock: FakeClock
    ) -> None:
        store = create(
            make_context({"connectionString": "s.db", "cleanupInterval": "50ms"}), clock=clock
        )
        await store.init()
        before = expired_deleted()
        try:
            await store.bulk_set([SetRequest(f"t{i}", b"x", ttl_seconds=1) for i in range(30)])
            await store.set(SetRequest("long", b"x", ttl_seconds=3600))
            await store.set(SetRequest("forever", b"x"))
            clock.advance(2)
            await wait_for(lambda: raw_keys(tmp_path / "s.db") == {"long", "forever"})
            await wait_for(lambda: expired_deleted() - before == 30)
        finally:
            await store.close()

    async def test_overdue_cleanup_runs_at_start(
        self, make_context: MakeContext, tmp_path: Path, clock: FakeClock
    ) -> None:
        ctx = make_context({"connectionString": "s.db", "cleanupInterval": "1h"})
        store = create(ctx, clock=clock)
        await store.init()
        await store.set(SetRequest("t", b"x", ttl_seconds=10))
        await store.close()
        clock.advance(7200)  # the device was off for two hours
        store = create(ctx, clock=clock)
        await store.init()
        try:
            await wait_for(lambda: raw_keys(tmp_path / "s.db") == set())
        finally:
            await store.close()

    async def test_zero_interval_disables_cleanup(
        self, make_context: MakeContext, tmp_path: Path, clock: FakeClock
    ) -> None:
        store = create(
            make_context({"connectionString": "s.db", "cleanupInterval": "0"}), clock=clock
        )
        await store.init()
        try:
            await store.set(SetRequest("t", b"x", ttl_seconds=1))
            clock.advance(5)
            await asyncio.sleep(0.1)
            assert raw_keys(tmp_path / "s.db") == {"t"}
            assert await store.get("t") is None
            assert await store.delete_expired() == 1
            assert raw_keys(tmp_path / "s.db") == set()
        finally:
            await store.close()

    async def test_real_clock_ttl(self, make_context: MakeContext) -> None:
        store = create(make_context({"connectionString": "s.db"}))
        await store.init()
        try:
            await store.set(SetRequest("t", b"x", ttl_seconds=1))
            got = await store.get("t")
            assert got is not None
            assert got.expire_time is not None
            await asyncio.sleep(1.1)
            assert await store.get("t") is None
        finally:
            await store.close()


class TestStorageFull:
    async def test_budget_refuses_writes_with_storage_full(
        self, make_context: MakeContext, tmp_path: Path
    ) -> None:
        budget = DiskBudget(tmp_path, max_bytes=4096)
        store = create(make_context({"connectionString": "s.db"}, disk_budget=budget))
        await store.init()
        try:
            with pytest.raises(StorageFullError):
                await store.set(SetRequest("k", b"1"))
            with pytest.raises(StorageFullError):
                await store.bulk_set([SetRequest("a", b"1"), SetRequest("b", b"2")])
            with pytest.raises(StorageFullError):
                await store.multi([SetRequest("a", b"1")])
            await store.delete(DeleteRequest("a"))  # deleting frees space: always allowed
            assert await store.bulk_get(["k", "a", "b"]) == {}
        finally:
            await store.close()


CHILD = r"""
import asyncio, sys
from pathlib import Path
from edge_runtime.config.manifest import ComponentManifest, Mark
from edge_runtime.config.metadata import ResolvedMetadata, Value
from edge_runtime.registry import ComponentContext
from edge_runtime.state import SetRequest
from edge_runtime.state.sqlite import create

async def main() -> None:
    manifest = ComponentManifest("statestore", "state.sqlite", "v1", Mark("c.yaml", 1))
    md = ResolvedMetadata([Value("connectionString", "state.db", Mark("c.yaml", 2))])
    ctx = ComponentContext(manifest, md, "app", Path(sys.argv[1]), durability=sys.argv[2])
    store = create(ctx)
    await store.init()

    async def writer(w: int) -> None:
        n = 0
        while True:
            key = f"w{w}-{n}"
            await store.set(SetRequest(key, str(n).encode()))
            sys.stdout.write(key + "\n")
            sys.stdout.flush()
            n += 1

    await asyncio.gather(*(writer(w) for w in range(8)))

asyncio.run(main())
"""


def run_and_kill(data_dir: Path, durability: str, acked: int) -> list[str]:
    """Run a writer process, SIGKILL it after ``acked`` acknowledged keys; every key it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(data_dir), durability],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    keys: list[str] = []
    try:
        while len(keys) < acked:
            line = proc.stdout.readline()
            assert line, f"writer exited early: {proc.stderr.read() if proc.stderr else ''!r}"
            keys.append(line.decode().strip())
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        rest, _ = proc.communicate(timeout=10)
    # lines still in the pipe were printed after their set returned, so they count too
    keys += [ln for ln in rest.decode().split("\n")[:-1] if ln]
    assert proc.returncode == -signal.SIGKILL
    return keys


@pytest.mark.parametrize("durability", ["full", "normal"])
def test_acknowledged_writes_survive_sigkill(
    make_context: MakeContext, tmp_path: Path, durability: str
) -> None:
    keys = run_and_kill(tmp_path, durability, acked=400)
    assert len(keys) >= 400

    async def reopen() -> set[str]:
        store = create(make_context({"connectionString": "state.db"}))
        await store.init()
        try:
            return set(await store.bulk_get(keys))
        finally:
            await store.close()

    found = asyncio.run(reopen())
    missing = set(keys) - found
    assert not missing, f"{len(missing)} acknowledged keys lost, e.g. {sorted(missing)[:5]}"


def test_factory_returns_a_store(make_context: MakeContext) -> None:
    assert isinstance(create(make_context({"connectionString": ":memory:"})), SqliteStateStore)
