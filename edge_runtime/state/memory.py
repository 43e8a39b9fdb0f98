"""``state.in-memory``: the reference state store, and the fake for every other test.

Same semantics as ``state.sqlite`` (see :mod:`edge_runtime.state`): uuid4 etags, first-write,
wall-clock TTL (expired rows are invisible and dropped lazily), atomic ``multi``, non-atomic
``bulk_set``. Nothing survives :meth:`MemoryStateStore.close`.

Concurrency: every method runs to completion without awaiting in between, so on one event loop
each call is atomic with respect to the others.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from edge_runtime.registry import ComponentContext
from edge_runtime.state import (
    Concurrency,
    DeleteRequest,
    ETagMismatchError,
    Feature,
    GetResponse,
    SetRequest,
    StateError,
    StateStoreError,
)
from edge_runtime.state._common import expire_at, has_etag, new_etag

__all__ = ["MemoryStateStore", "create"]

Clock = Callable[[], float]

# Sweep out expired rows after this many writes, so keys that are never read again do not
# keep their memory forever.
_SWEEP_EVERY = 1024


@dataclass(frozen=True, slots=True)
class _Row:
    value: bytes
    is_binary: bool
    etag: str
    expire_at: float | None  # unix seconds (wall clock)

    def live(self, now: float) -> bool:
        return self.expire_at is None or self.expire_at > now

    def response(self) -> GetResponse:
        expiry = None
        if self.expire_at is not None:
            expiry = datetime.fromtimestamp(self.expire_at, tz=UTC)
        return GetResponse(self.value, self.etag, self.is_binary, expiry)


class MemoryStateStore:
    """An in-process dict of rows. ``clock`` gives wall-clock unix seconds (for tests)."""

    def __init__(self, name: str = "in-memory", *, clock: Clock = time.time) -> None:
        self.name = name
        self._clock = clock
        self._rows: dict[str, _Row] = {}
        self._writes = 0
        self._closed = False

    @property
    def features(self) -> frozenset[Feature]:
        """ETAG, TRANSACTIONAL and TTL."""
        return frozenset({Feature.ETAG, Feature.TRANSACTIONAL, Feature.TTL})

    async def init(self) -> None:
        """Nothing to open."""

    async def close(self) -> None:
        """Drop every row; later calls raise :class:`StateStoreError`. Idempotent."""
        self._closed = True
        self._rows.clear()

    async def get(self, key: str) -> GetResponse | None:
        """The live row for ``key`` or ``None``."""
        row = self._live(key, self._now())
        return None if row is None else row.response()

    async def bulk_get(self, keys: Sequence[str]) -> dict[str, GetResponse]:
        """Live rows for ``keys``; missing or expired keys are absent."""
        now = self._now()
        found = {}
        for key in keys:
            row = self._live(key, now)
            if row is not None:
                found[key] = row.response()
        return found

    async def set(self, request: SetRequest) -> None:
        """Save one key (etag / first-write rules); raises :class:`ETagMismatchError`."""
        now = self._now()
        row = _set_row(self._live(request.key, now), request, now)
        self._rows[request.key] = row
        self._count_write(now)

    async def bulk_set(self, requests: Sequence[SetRequest]) -> list[StateError | None]:
        """Save each request independently; one result per request."""
        results: list[StateError | None] = []
        for request in requests:
            try:
                await self.set(request)
            except StateError as exc:
                results.append(exc)
            else:
                results.append(None)
        return results

    async def delete(self, request: DeleteRequest) -> None:
        """Delete one key; with an etag only a live row holding it."""
        now = self._now()
        _check_delete(self._live(request.key, now), request)
        self._rows.pop(request.key, None)

    async def multi(self, operations: Sequence[SetRequest | DeleteRequest]) -> None:
        """Apply all operations in order, or none (the first failure is raised)."""
        now = self._now()
        staged: dict[str, _Row | None] = {}
        for op in operations:
            current = staged[op.key] if op.key in staged else self._live(op.key, now)
            if isinstance(op, SetRequest):
                staged[op.key] = _set_row(current, op, now)
            else:
                _check_delete(current, op)
                staged[op.key] = None
        for key, row in staged.items():
            if row is None:
                self._rows.pop(key, None)
            else:
                self._rows[key] = row
        self._count_write(now)

    # --- internals ---------------------------------------------------------------------------

    def _now(self) -> float:
        if self._closed:
            raise StateStoreError(f"state store {self.name!r} is closed")
        return self._clock()

    def _live(self, key: str, now: float) -> _Row | None:
        row = self._rows.get(key)
        if row is None:
            return None
        if not row.live(now):
            del self._rows[key]
            return None
        return row

    def _count_write(self, now: float) -> None:
        self._writes += 1
        if self._writes % _SWEEP_EVERY == 0:
            expired = [k for k, r in self._rows.items() if not r.live(now)]
            for key in expired:
                del self._rows[key]


def _set_row(current: _Row | None, request: SetRequest, now: float) -> _Row:
    """The row ``request`` writes over the live row ``current``; raises on a conflict."""
    if has_etag(request.etag):
        if current is None or current.etag != request.etag:
            raise ETagMismatchError(request.key)
    elif request.concurrency is Concurrency.FIRST_WRITE and current is not None:
        raise ETagMismatchError(request.key)
    expiry = expire_at(request.ttl_seconds, now)
    return _Row(bytes(request.value), request.is_binary, new_etag(), expiry)


def _check_delete(current: _Row | None, request: DeleteRequest) -> None:
    if has_etag(request.etag) and (current is None or current.etag != request.etag):
        raise ETagMismatchError(request.key)


def create(ctx: ComponentContext, *, clock: Clock = time.time) -> MemoryStateStore:
    """The ``state.in-memory`` factory (its metadata has no fields we use)."""
    return MemoryStateStore(ctx.manifest.name, clock=clock)
