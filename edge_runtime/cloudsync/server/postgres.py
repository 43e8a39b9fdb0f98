"""The PostgreSQL :class:`~edge_runtime.cloudsync.server.store.CloudStore` (asyncpg), so
several stateless cloud servers can share one database.

A DSN as asyncpg takes it (``postgresql://user:pw@host:port/db``, a unix socket as
``?host=/dir``). The schema is created or migrated on :meth:`open`, under an advisory lock so
servers starting together do not race. Every write that depends on what a device did before
(a batch and its cursor, a desired value and its sequence) runs in one transaction holding a
per-device advisory lock: two servers that briefly both hold a stream of one device apply its
records one batch after the other, and a device's event and desired sequences commit in the
order they were taken (a reader's ``after`` cursor never skips a row committed later).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from edge_runtime.cloudsync import hlc as hlcs
from edge_runtime.cloudsync.server.store import (
    HISTORY_AGE_S,
    HISTORY_POINTS,
    ApplyResult,
    Cursor,
    DesiredRow,
    DeviceRow,
    EventRow,
    HistoryRow,
    RecordIn,
    StateRow,
    plan,
)

__all__ = ["PostgresCloudStore"]

_MIGRATE_LOCK = 0x6564676563  # "edgec": one migrator at a time

# Each entry moves the schema from version i to i + 1; never edit one that shipped.
MIGRATIONS = [
    """
    CREATE TABLE IF NOT EXISTS devices (
        device_id TEXT PRIMARY KEY, version TEXT NOT NULL DEFAULT '',
        first_seen DOUBLE PRECISION NOT NULL, last_seen DOUBLE PRECISION NOT NULL,
        connected BOOLEAN NOT NULL DEFAULT FALSE, backlog BIGINT NOT NULL DEFAULT 0,
        records BIGINT NOT NULL DEFAULT 0,
        desired_seq BIGINT NOT NULL DEFAULT 0, desired_acked BIGINT NOT NULL DEFAULT 0
    );
    CREATE TABLE IF NOT EXISTS cursors (
        device_id TEXT NOT NULL, stream TEXT NOT NULL, epoch TEXT NOT NULL,
        seq BIGINT NOT NULL, PRIMARY KEY (device_id, stream, epoch)
    );
    CREATE TABLE IF NOT EXISTS state (
        device_id TEXT NOT NULL, store TEXT NOT NULL, key TEXT NOT NULL,
        value BYTEA NOT NULL, hlc BIGINT NOT NULL, deleted BOOLEAN NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (device_id, store, key)
    );
    CREATE TABLE IF NOT EXISTS events (
        seq BIGSERIAL PRIMARY KEY, device_id TEXT NOT NULL,
        target TEXT NOT NULL, key TEXT NOT NULL, hlc BIGINT NOT NULL,
        payload BYTEA NOT NULL, received_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX IF NOT EXISTS events_device ON events(device_id, seq);
    CREATE TABLE IF NOT EXISTS desired (
        device_id TEXT NOT NULL, key TEXT NOT NULL, value BYTEA NOT NULL,
        hlc BIGINT NOT NULL, seq BIGINT NOT NULL, deleted BOOLEAN NOT NULL,
        PRIMARY KEY (device_id, key)
    );
    CREATE INDEX IF NOT EXISTS desired_seq ON desired(device_id, seq);
    CREATE TABLE IF NOT EXISTS history (
        device_id TEXT NOT NULL, store TEXT NOT NULL, key TEXT NOT NULL,
        hlc BIGINT NOT NULL, value BYTEA NOT NULL
    );
    CREATE INDEX IF NOT EXISTS history_key ON history(device_id, store, key, hlc);
    """,
]

_UPSERT_STATE = (
    "INSERT INTO state(device_id, store, key, value, hlc, deleted, updated_at)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT(device_id, store, key) DO UPDATE SET"
    " value = excluded.value, hlc = excluded.hlc, deleted = excluded.deleted,"
    " updated_at = excluded.updated_at WHERE excluded.hlc > state.hlc"
)

_PRUNE_HISTORY = (
    "DELETE FROM history h USING unnest($2::text[], $3::text[]) AS t(store, key)"
    " WHERE h.device_id = $1 AND h.store = t.store AND h.key = t.key AND (h.hlc < $4"
    " OR h.hlc <= (SELECT x.hlc FROM history x WHERE x.device_id = $1 AND x.store = t.store"
    " AND x.key = t.key ORDER BY x.hlc DESC OFFSET $5 LIMIT 1))"
)


async def _lock_device(conn: Any, device_id: str) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                       "edge-cloud-device:" + device_id)


class PostgresCloudStore:
    """The cloud store in a PostgreSQL database named by ``dsn``."""

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 10) -> None:
        self.dsn = dsn
        self._sizes = (min_size, max_size)
        self._pool: Any = None

    @property
    def pool(self) -> Any:
        """The connection pool (``RuntimeError`` before :meth:`open`)."""
        if self._pool is None:
            raise RuntimeError("the PostgreSQL cloud store is not open")
        return self._pool

    async def open(self) -> None:
        """See :class:`~edge_runtime.cloudsync.server.store.CloudStore`; ``OSError`` or
        ``RuntimeError`` when the database cannot be reached."""
        try:
            self._pool = await asyncpg.create_pool(self.dsn, min_size=self._sizes[0],
                                                   max_size=self._sizes[1])
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise RuntimeError(f"cannot open the PostgreSQL store: {exc}") from None
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATE_LOCK)
            await conn.execute("CREATE TABLE IF NOT EXISTS cloud_schema (version INT NOT NULL)")
            version = await conn.fetchval("SELECT max(version) FROM cloud_schema") or 0
            for i in range(version, len(MIGRATIONS)):
                await conn.execute(MIGRATIONS[i])
                await conn.execute("INSERT INTO cloud_schema(version) VALUES ($1)", i + 1)

    async def close(self) -> None:
        """See :class:`~edge_runtime.cloudsync.server.store.CloudStore`."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def hello(self, device_id: str, version: str, backlog: int,
                    now: float) -> list[Cursor]:
        """See :class:`~edge_runtime.cloudsync.server.store.CloudStore`."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO devices(device_id, version, first_seen, last_seen, connected,"
                " backlog) VALUES ($1, $2, $3, $3, TRUE, $4) ON CONFLICT(device_id) DO UPDATE"
                " SET version = excluded.version, last_seen = excluded.last_seen,"
                " connected = TRUE, backlog = excluded.backlog",
                device_id, version, now, backlog)
            rows = await conn.fetch(
                "SELECT stream, epoch, seq FROM cursors WHERE device_id = $1", device_id)
        return [Cursor(r[0], r[1], int(r[2])) for r in rows]

    async def disconnected(self, device_id: str, now: float) -> None:
        """See :class:`~edge_runtime.cloudsync.server.store.CloudStore`."""
        await self.pool.execute(
            "UPDATE devices SET connected = FALSE, last_seen = $1 WHERE device_id = $2",
            now, device_id)

    async def apply(self, device_id: str, stream: str, epoch: str,
                    records: Sequence[RecordIn], now: float) -> ApplyResult:
        """See :class:`~edge_runtime.cloudsync.server.store.CloudStore`."""
        async with self.pool.acquire() as conn, conn.transaction():
            await _lock_device(conn, device_id)
            batch = plan(records, int(await conn.fetchval(
                "SELECT seq FROM cursors WHERE device_id = $1 AND stream = $2 AND epoch = $3",
                device_id, stream, epoch) or 0))
            if batch.events:
                await conn.executemany(
                    "INSERT INTO events(device_id, target, key, hlc, payload, received_at)"
                    " VALUES ($1, $2, $3, $4, $5, $6)",
                    [(device_id, r.target, r.key, r.hlc, r.payload, now) for r in batch.events])
            if batch.states:
                await conn.executemany(_UPSERT_STATE, [(device_id, *state, now)
                                                       for state in batch.states])
            if batch.history:
                await conn.executemany(
                    "INSERT INTO history(device_id, store, key, hlc, value)"
                    " VALUES ($1, $2, $3, $4, $5)",
                    [(device_id, *point) for point in batch.history])
                touched = batch.touched
                await conn.execute(_PRUNE_HISTORY, device_id, [t[0] for t in touched],
                                   [t[1] for t in touched],
                                   hlcs.pack(max(0, int((now - HISTORY_AGE_S) * 1000))),
                                   HISTORY_POINTS)
            await conn.execute(
                "INSERT INTO cursors(device_id, stream, epoch, seq) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT(device_id, stream, epoch) DO UPDATE SET seq = excluded.seq"
                " WHERE excluded.seq > cursors.seq",
                device_id, stream, epoch, batch.cursor)
            await conn.execute(
                "UPDATE devices SET last_seen = $1, records = records + $2,"
                " backlog = GREATEST(0, backlog - $2) WHERE device_id = $3",
                now, batch.applied, device_id)
        return batch.result()

    async def devices(self) -> list[DeviceRow]:
        """See :class:`~edge_runtime.cloudsync.server.store.CloudStore`."""
        rows = await self.pool.fetch(
            "SELECT device_id, version, first_seen, last_seen, connected, backlog, records,"
            " desired_seq, desired_acked FROM devices ORDER BY device_id")
        return [DeviceRow(r[0], r[1], float(r[2]), float(r[3]), bool(r[4]), int(r[5]),
                          int(r[6]), int(r[7]), int(r[8])) for r in rows]

    async def state(self, device_id: str, store: str, key: str) -> StateRow | None:
        """See :class:`~edge_runtime.cloudsync.server.store.CloudStore`."""
        row = await self.pool.fetchrow(
            "SELECT value, hlc, deleted, updated_at FROM state"
            " WHERE device_id = $1 AND store = $2 AND key = $3", device_id, store, key)
        if row is None:
            return None
        return StateRow(store, key, bytes(row[0]), int(row[1]), bool(row[2]), float(row[3]))

    async def states(self, device_id: str, limit: int) -> list[StateRow]:
        """See :class:`~edge_runtime.cloudsync.server.store.CloudStore`."""
        rows = await self.pool.fetch(
            "SELECT store, key, value, hlc, updated_at FROM state WHERE device_id = $1"
            " AND NOT deleted ORDER BY store, key LIMIT $2", device_id, limit)
        return [StateRow(r[0], r[1], bytes(r[2]), int(r[3]), False, float(r[4])) for r in rows]

    async def events(self, device_id: str, after: int, limit: int) -> list[EventRow]:
        """See :class:`~edge_runtime.cloudsync.server.store.CloudStore`."""
        rows = await self.pool.fetch(
            "SELECT seq, target, key, hlc, payload, received_at FROM events"
            " WHERE device_id = $1 AND seq > $2 ORDER BY seq LIMIT $3", device_id, after, limit)
        return [EventRow(int(r[0]), device_id, r[1], r[2], int(r[3]), bytes(r[4]), float(r[5]))
                for r in rows]

    async def history(self, device_id: str, store: str, key: str, since: float,
                      limit: int) -> list[HistoryRow]:
        """See :class:`~edge_runtime.cloudsync.server.store.CloudStore`."""
        rows = await self.pool.fetch(
            "SELECT hlc, value FROM history WHERE device_id = $1 AND store = $2 AND key = $3"
            " AND hlc >= $4 ORDER BY hlc DESC LIMIT $5",
            device_id, store, key, hlcs.pack(max(0, int(since * 1000))), limit)
        return [HistoryRow(int(r[0]), bytes(r[1]), hlcs.unpack(int(r[0]))[0] / 1000)
                for r in reversed(rows)]

    async def put_desired(self, device_id: str, key: str, value: bytes, hlc: int,
                          deleted: bool = False) -> DesiredRow | None:
        """See :class:`~edge_runtime.cloudsync.server.store.CloudStore`."""
        stored = b"" if deleted else value
        async with self.pool.acquire() as conn, conn.transaction():
            await _lock_device(conn, device_id)
            old = await conn.fetchval(
                "SELECT hlc FROM desired WHERE device_id = $1 AND key = $2", device_id, key)
            if old is not None and int(old) >= hlc:
                return None
            seq = int(await conn.fetchval(
                "INSERT INTO devices(device_id, first_seen, last_seen, desired_seq)"
                " VALUES ($1, 0, 0, 1) ON CONFLICT(device_id) DO UPDATE SET"
                " desired_seq = devices.desired_seq + 1 RETURNING desired_seq", device_id))
            await conn.execute(
                "INSERT INTO desired(device_id, key, value, hlc, seq, deleted)"
                " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT(device_id, key) DO UPDATE SET"
                " value = excluded.value, hlc = excluded.hlc, seq = excluded.seq,"
                " deleted = excluded.deleted",
                device_id, key, stored, hlc, seq, deleted)
        return DesiredRow(key, stored, hlc, seq, deleted)

    async def desired_after(self, device_id: str, seq: int) -> list[DesiredRow]:
        """See :class:`~edge_runtime.cloudsync.server.store.CloudStore`."""
        rows = await self.pool.fetch(
            "SELECT key, value, hlc, seq, deleted FROM desired WHERE device_id = $1"
            " AND seq > $2 ORDER BY seq", device_id, seq)
        return [DesiredRow(r[0], bytes(r[1]), int(r[2]), int(r[3]), bool(r[4])) for r in rows]

    async def ack_desired(self, device_id: str, seq: int) -> None:
        """See :class:`~edge_runtime.cloudsync.server.store.CloudStore`."""
        await self.pool.execute(
            "UPDATE devices SET desired_acked = GREATEST(desired_acked, $1)"
            " WHERE device_id = $2", seq, device_id)

    async def max_hlc(self) -> int:
        """See :class:`~edge_runtime.cloudsync.server.store.CloudStore`."""
        return int(await self.pool.fetchval("SELECT COALESCE(MAX(hlc), 0) FROM desired"))
