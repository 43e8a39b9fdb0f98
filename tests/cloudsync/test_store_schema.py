"""The two cloud stores write their schema twice, once per dialect: each keeps its own
migration history (a migration that shipped never changes, and each dialect has its types and
its own version numbers), so the DDL is not shared. This holds the two to the same tables,
columns (in order, with matching types and nullability), primary keys and indexes, so a
migration added to one store and not the other fails here."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from edge_runtime.cloudsync.server.sqlite import SqliteCloudStore
from tests.support import postgres

# SQLite's declared type -> the PostgreSQL types that stand for it.
_TYPES = {
    "TEXT": {"text"},
    "BLOB": {"bytea"},
    "REAL": {"double precision"},
    "INTEGER": {"bigint", "boolean"},
}
_META = {"_meta", "sqlite_sequence", "cloud_schema"}  # each store's own bookkeeping

Schema = dict[str, Any]


def sqlite_schema(path: Path) -> Schema:
    conn = sqlite3.connect(path)
    try:
        tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type ="
                                             " 'table' ORDER BY name") if t not in _META]
        out: Schema = {}
        for t in tables:
            info = conn.execute(f"PRAGMA table_info({t})").fetchall()
            pk = [name for _, name, _, _, _, n in sorted(info, key=lambda c: c[5]) if n]
            indexes = {}
            for _, name, *_ in conn.execute(f"PRAGMA index_list({t})"):
                if not name.startswith("sqlite_autoindex"):
                    cols = conn.execute(f"PRAGMA index_info({name})").fetchall()
                    indexes[name] = [c[2] for c in cols]
            out[t] = {
                "columns": [(name, kind, bool(notnull) or name in pk)
                            for _, name, kind, notnull, _, _ in info],
                "pk": pk,
                "indexes": indexes,
            }
        return out
    finally:
        conn.close()


async def postgres_schema(dsn: str) -> Schema:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        out: Schema = {}
        for r in await conn.fetch(
                "SELECT table_name, column_name, data_type, is_nullable FROM"
                " information_schema.columns WHERE table_schema = 'public'"
                " ORDER BY table_name, ordinal_position"):
            if r["table_name"] in _META:
                continue
            table = out.setdefault(r["table_name"], {"columns": [], "pk": [], "indexes": {}})
            table["columns"].append((r["column_name"], r["data_type"],
                                     r["is_nullable"] == "NO"))
        for r in await conn.fetch(
                "SELECT tc.table_name, k.column_name FROM information_schema.table_constraints"
                " tc JOIN information_schema.key_column_usage k USING (constraint_schema,"
                " constraint_name) WHERE tc.table_schema = 'public' AND tc.constraint_type ="
                " 'PRIMARY KEY' ORDER BY tc.table_name, k.ordinal_position"):
            if r["table_name"] in out:
                out[r["table_name"]]["pk"].append(r["column_name"])
        for r in await conn.fetch("SELECT tablename, indexname, indexdef FROM pg_indexes"
                                  " WHERE schemaname = 'public'"):
            if r["tablename"] in out and not r["indexname"].endswith("_pkey"):
                cols = re.search(r"\((.*)\)$", r["indexdef"])
                assert cols is not None, r["indexdef"]
                out[r["tablename"]]["indexes"][r["indexname"]] = [
                    c.strip() for c in cols.group(1).split(",")]
        return out
    finally:
        await conn.close()


async def test_sqlite_and_postgresql_stores_have_one_schema(tmp_path: Path) -> None:
    reason = postgres.unavailable()
    if reason is not None:
        pytest.skip(reason)
    from edge_runtime.cloudsync.server.postgres import PostgresCloudStore

    lite = SqliteCloudStore(tmp_path / "cloud.db")
    await lite.open()
    await lite.close()
    pg = PostgresCloudStore(postgres.cluster().create_db())
    await pg.open()
    await pg.close()
    want = sqlite_schema(tmp_path / "cloud.db")
    got = await postgres_schema(pg.dsn)
    assert sorted(got) == sorted(want)
    for table, spec in want.items():
        other = got[table]
        assert [c[0] for c in other["columns"]] == [c[0] for c in spec["columns"]], table
        for (name, kind, notnull), (_, pg_kind, pg_notnull) in zip(
                spec["columns"], other["columns"], strict=True):
            assert pg_kind in _TYPES[kind], (table, name, kind, pg_kind)
            assert pg_notnull == notnull, (table, name)
        assert other["pk"] == spec["pk"], table
        assert other["indexes"] == spec["indexes"], table
