"""``state.sqlite``: the facade. It wires metadata, the database and the cleanup loop, and
delegates every operation to :class:`~edge_runtime.state.sqlite.db.StateDB`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence

from edge_runtime.cloudsync.changelog import ChangeLog
from edge_runtime.config.metadata import declare_metadata
from edge_runtime.registry import ComponentContext
from edge_runtime.state import (
    DeleteRequest,
    Feature,
    GetResponse,
    SetRequest,
    StateError,
    StateStoreError,
)
from edge_runtime.state.sqlite.db import StateDB
from edge_runtime.state.sqlite.metadata import SqliteMetadata, SqliteTarget, parse
from edge_runtime.state.sqlite.migrations import migrations
from edge_runtime.support.sqlitedb import Database

__all__ = ["SqliteStateStore", "create"]

Clock = Callable[[], float]


class SqliteStateStore:
    """A state store in one SQLite file (or in memory). See :mod:`edge_runtime.state`.

    ``clock`` gives wall-clock unix seconds (TTL is wall clock, as in Dapr); tests inject one.
    All methods are coroutine-safe; writes are group-committed on the database's writer thread.
    """

    def __init__(
        self,
        ctx: ComponentContext,
        settings: SqliteMetadata,
        target: SqliteTarget,
        *,
        clock: Clock = time.time,
    ) -> None:
        self.name = ctx.manifest.name
        self.settings = settings
        self.target = target
        self._clock = clock
        self._database = Database(
            target.path,
            name=f"state.{self.name}",
            migrations=migrations(settings.table_name),
            durability=ctx.durability,
            quarantine_dir=ctx.data_dir / "quarantine",
            commit_window_ms=ctx.commit_window_ms,
            busy_timeout_s=settings.busy_timeout,
            wal=not settings.disable_wal,
            read_only=target.read_only,
            immutable=target.immutable,
            schema=settings.table_name,
            disk_budget=ctx.disk_budget,
        )
        self._db: StateDB | None = None
        self._cleanup: asyncio.Task[None] | None = None

    @property
    def features(self) -> frozenset[Feature]:
        """ETAG, TRANSACTIONAL and TTL (no QUERY_API, as in Dapr)."""
        return frozenset({Feature.ETAG, Feature.TRANSACTIONAL, Feature.TTL})

    @property
    def database(self) -> Database:
        """The underlying database (commit counts, path)."""
        return self._database

    @property
    def epoch(self) -> str:
        """The file's epoch (random, made when the file was created); empty before ``init``."""
        return self._database.epoch

    @property
    def quarantined(self) -> list[str]:
        """Paths of corrupt files moved aside at ``init``, for the metadata endpoint."""
        return list(self._database.quarantined)

    async def init(self) -> None:
        """Open (quarantining a corrupt file), migrate, start cleanup. Raises ComponentError."""
        await self._database.open()
        self._db = StateDB(
            self._database, self.settings.table_name, store=self.name,
            timeout_s=self.settings.timeout, clock=self._clock,
        )
        interval = self.settings.cleanup_interval
        if interval > 0 and not self.target.read_only:
            self._cleanup = asyncio.create_task(
                self._db.run_cleanup(interval), name=f"state.sqlite[{self.name}] cleanup"
            )

    async def close(self) -> None:
        """Stop cleanup, commit queued writes, close the file. Idempotent."""
        if self._cleanup is not None:
            self._cleanup.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._cleanup
            self._cleanup = None
        await self._database.close()

    def log_changes(self, changelog: ChangeLog) -> None:
        """Log every change from now on in the file's change-log, in the change's own
        transaction (cloud sync). Call after :meth:`init`; raises StateStoreError before."""
        self._state.changelog = changelog

    async def get(self, key: str) -> GetResponse | None:
        """See :meth:`edge_runtime.state.StateStore.get`."""
        return await self._state.get(key)

    async def bulk_get(self, keys: Sequence[str]) -> dict[str, GetResponse]:
        """See :meth:`edge_runtime.state.StateStore.bulk_get`."""
        return await self._state.bulk_get(keys)

    async def set(self, request: SetRequest) -> None:
        """See :meth:`edge_runtime.state.StateStore.set`."""
        await self._state.set(request)

    async def bulk_set(self, requests: Sequence[SetRequest]) -> list[StateError | None]:
        """See :meth:`edge_runtime.state.StateStore.bulk_set`; StorageFullError is raised."""
        return await self._state.bulk_set(requests)

    async def delete(self, request: DeleteRequest) -> None:
        """See :meth:`edge_runtime.state.StateStore.delete`."""
        await self._state.delete(request)

    async def multi(self, operations: Sequence[SetRequest | DeleteRequest]) -> None:
        """See :meth:`edge_runtime.state.TransactionalStore.multi`."""
        await self._state.multi(operations)

    async def delete_expired(self) -> int:
        """Run one cleanup now; the number of expired rows deleted."""
        return await self._state.delete_expired()

    @property
    def _state(self) -> StateDB:
        if self._db is None:
            raise StateStoreError(f"state store {self.name!r} is not initialised")
        return self._db


@declare_metadata(SqliteMetadata)
def create(ctx: ComponentContext, *, clock: Clock = time.time) -> SqliteStateStore:
    """The ``state.sqlite`` factory; raises ``MetadataError`` (``file:line``) on bad metadata."""
    settings, target = parse(ctx)
    return SqliteStateStore(ctx, settings, target, clock=clock)
