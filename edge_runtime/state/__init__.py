"""The state building block: the contract every state store implements.

A store sees *stored keys* (the key prefix of ``state/keys.py`` is applied by the API core) and
values as bytes with an ``is_binary`` flag: ``False`` means the bytes are JSON text (HTTP saves,
gRPC saves with ``contentType=application/json``), ``True`` means opaque bytes (other gRPC saves).
Semantics follow ``reference/dapr-api-contract.md`` §8.1:

- every write makes a fresh random etag (a UUIDv4 string);
- a write with an etag updates only a live row with that etag, else :class:`ETagMismatchError`
  (a missing or expired key is a mismatch too);
- a write without an etag and ``first-write`` concurrency inserts only when no live row
  exists, else :class:`ETagMismatchError`; otherwise it is an upsert;
- every write resets the expiry (no ttl means never expires);
- delete without an etag is unconditional (a missing key is fine); with one, 0 rows → mismatch;
- ``multi`` applies all operations atomically or none.

Stores raise only the exceptions defined here and :class:`edge_runtime.errors.StorageFullError`;
library exceptions (sqlite3 ...) are translated inside the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

__all__ = [
    "Concurrency",
    "DeleteRequest",
    "ETagMismatchError",
    "Feature",
    "GetResponse",
    "InvalidRequestError",
    "SetRequest",
    "StateError",
    "StateStore",
    "StateStoreError",
    "TransactionalStore",
]


class Feature(StrEnum):
    """Capabilities reported in metadata (Dapr's capability strings)."""

    ETAG = "ETAG"
    TRANSACTIONAL = "TRANSACTIONAL"
    TTL = "TTL"
    QUERY_API = "QUERY_API"
    KEYS_LIKE = "KEYS_LIKE"


class Concurrency(StrEnum):
    """Write concurrency mode; ``LAST_WRITE`` is the default."""

    FIRST_WRITE = "first-write"
    LAST_WRITE = "last-write"


class StateError(Exception):
    """Base class of the errors a store raises."""


class ETagMismatchError(StateError):
    """The etag did not match a live row (or first-write found one). HTTP 409 / ABORTED."""

    def __init__(self, key: str = "") -> None:
        super().__init__("possible etag mismatch. error from state store")
        self.key = key


class InvalidRequestError(StateError):
    """A request option is invalid (bad concurrency/consistency string, bad ttl)."""


class StateStoreError(StateError):
    """The store failed for a reason other than the caller's input (I/O, corruption ...)."""


@dataclass(frozen=True, slots=True)
class SetRequest:
    """Save one key. ``ttl_seconds`` is ``None`` for never-expires (-1 and 0 are mapped to it)."""

    key: str
    value: bytes
    is_binary: bool = False
    etag: str | None = None
    ttl_seconds: int | None = None
    concurrency: Concurrency = Concurrency.LAST_WRITE


@dataclass(frozen=True, slots=True)
class DeleteRequest:
    """Delete one key; with ``etag`` only if it matches."""

    key: str
    etag: str | None = None
    concurrency: Concurrency = Concurrency.LAST_WRITE


@dataclass(frozen=True, slots=True)
class GetResponse:
    """A live row: its value, how it is encoded, its etag and its expiry (UTC) if any."""

    value: bytes
    etag: str
    is_binary: bool = False
    expire_time: datetime | None = None


@runtime_checkable
class StateStore(Protocol):
    """The required contract. All methods are coroutine-safe: any number may run at once."""

    @property
    def features(self) -> frozenset[Feature]:
        """What the store supports beyond get/set/delete."""
        ...

    async def init(self) -> None:
        """Open files, run migrations. Raises ``ComponentError`` when it cannot start."""
        ...

    async def close(self) -> None:
        """Finish pending writes and release resources; idempotent."""
        ...

    async def get(self, key: str) -> GetResponse | None:
        """The live row for ``key``, or ``None`` when missing or expired."""
        ...

    async def bulk_get(self, keys: Sequence[str]) -> dict[str, GetResponse]:
        """Live rows for ``keys``; missing or expired keys are absent from the result."""
        ...

    async def set(self, request: SetRequest) -> None:
        """Save one key durably (per the process durability mode) before returning."""
        ...

    async def bulk_set(self, requests: Sequence[SetRequest]) -> list[StateError | None]:
        """Save keys independently (not atomic); one result per request, ``None`` for success.

        A full disk is not a per-key outcome: :class:`StorageFullError` is raised once every
        request has run (the others may have been saved).
        """
        ...

    async def delete(self, request: DeleteRequest) -> None:
        """Delete one key durably before returning."""
        ...


@runtime_checkable
class TransactionalStore(StateStore, Protocol):
    """A store with ``Feature.TRANSACTIONAL``."""

    async def multi(self, operations: Sequence[SetRequest | DeleteRequest]) -> None:
        """Apply all operations atomically, in order; raises and applies none on any failure."""
        ...
