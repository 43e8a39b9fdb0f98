"""What the cloud keeps, as a small contract every store implements (SQLite, the default, and
PostgreSQL for fleets; both run the same conformance suite, tests/conformance).

Rules every implementation keeps:

- **Exactly once per record.** :meth:`CloudStore.apply` applies a batch of one device stream in
  one transaction together with the stream's cursor for ``(device, stream, epoch)``: records
  at or below the cursor are replays and are skipped; a new epoch has its own cursor from 0.
- **Last writer wins by HLC, per key.** A reported state record replaces the stored value of
  ``(device, store, key)`` only when its HLC is greater (the device owns reported keys); a
  desired value replaces ``(device, key)`` only when its HLC is greater (the cloud owns those).
  Deletes are kept as tombstones so an older write arriving later cannot resurrect a key.
- **Events append** with a cloud-wide increasing ``seq``, the cursor of
  :meth:`CloudStore.events`.
- Desired values get a per-device increasing ``seq``: :meth:`CloudStore.desired_after` is what
  a device that applied up to ``seq`` still needs (the newest value per key).
- **History** of reported values (upserts) per key, for charts: at most
  :data:`HISTORY_POINTS` points per key, none older than :data:`HISTORY_AGE_S` before the
  ``now`` of the batch that brought them (pruned as batches arrive).

Values are CBOR bytes as the device sent them. Methods are coroutine-safe.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "HISTORY_AGE_S",
    "HISTORY_POINTS",
    "KIND_DELETE",
    "KIND_EVENT",
    "KIND_UPSERT",
    "ApplyResult",
    "Batch",
    "CloudStore",
    "Cursor",
    "DesiredRow",
    "DeviceRow",
    "EventRow",
    "HistoryRow",
    "RecordIn",
    "StateRow",
    "plan",
]

KIND_UPSERT = 1
KIND_DELETE = 2
KIND_EVENT = 3

HISTORY_POINTS = 1000
HISTORY_AGE_S = 7 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class RecordIn:
    """One record of a batch (see ``sync.proto``'s ``Record``)."""

    kind: int
    target: str
    key: str
    seq: int
    hlc: int
    payload: bytes = b""


@dataclass(frozen=True, slots=True)
class Cursor:
    """Everything up to ``seq`` of ``(stream, epoch)`` is applied."""

    stream: str
    epoch: str
    seq: int


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """The stream's cursor after a batch, and what the batch did."""

    cursor: int
    applied: int
    replayed: int


@dataclass(slots=True)
class Batch:
    """What a batch does past its stream's cursor (:func:`plan`), for a store to write in one
    transaction with the new cursor: ``events`` to append, ``states`` to upsert by HLC as
    ``(store, key, value, hlc, deleted)`` (a delete stores ``b""``), ``history`` points as
    ``(store, key, hlc, value)``, and ``touched``, the keys whose history to prune, sorted.
    Each list keeps the batch's order."""

    cursor: int
    applied: int = 0
    replayed: int = 0
    events: list[RecordIn] = field(default_factory=list)
    states: list[tuple[str, str, bytes, int, bool]] = field(default_factory=list)
    history: list[tuple[str, str, int, bytes]] = field(default_factory=list)

    @property
    def touched(self) -> list[tuple[str, str]]:
        """The ``(store, key)`` pairs with a new history point, sorted."""
        return sorted({(store, key) for store, key, _, _ in self.history})

    def result(self) -> ApplyResult:
        """What :meth:`CloudStore.apply` answers once the batch is written."""
        return ApplyResult(self.cursor, self.applied, self.replayed)


def plan(records: Sequence[RecordIn], cursor: int) -> Batch:
    """The exactly-once rule of :meth:`CloudStore.apply` for a stream whose cursor is
    ``cursor``: a record at or below the cursor (or one before it in the batch) is a replay;
    every other one moves the cursor to its ``seq``. Upserts and deletes go to ``states``,
    upserts also to ``history``; events to ``events``; another kind only moves the cursor."""
    batch = Batch(cursor)
    for r in records:
        if r.seq <= batch.cursor:
            batch.replayed += 1
            continue
        if r.kind == KIND_EVENT:
            batch.events.append(r)
        elif r.kind in (KIND_UPSERT, KIND_DELETE):
            deleted = r.kind == KIND_DELETE
            batch.states.append((r.target, r.key, b"" if deleted else r.payload, r.hlc, deleted))
            if not deleted:
                batch.history.append((r.target, r.key, r.hlc, r.payload))
        batch.cursor = r.seq
        batch.applied += 1
    return batch


@dataclass(frozen=True, slots=True)
class DeviceRow:
    """A device as the fleet view shows it."""

    device_id: str
    version: str
    first_seen: float
    last_seen: float
    connected: bool
    backlog: int
    records: int
    desired_seq: int
    desired_acked: int


@dataclass(frozen=True, slots=True)
class StateRow:
    """A reported state value (``deleted``: a tombstone)."""

    store: str
    key: str
    value: bytes
    hlc: int
    deleted: bool
    updated_at: float


@dataclass(frozen=True, slots=True)
class EventRow:
    """An event as received."""

    seq: int
    device_id: str
    target: str
    key: str
    hlc: int
    payload: bytes
    received_at: float


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One reported value of a key; ``at`` is the device's write time (the HLC's unix
    seconds)."""

    hlc: int
    value: bytes
    at: float


@dataclass(frozen=True, slots=True)
class DesiredRow:
    """A desired value for a device."""

    key: str
    value: bytes
    hlc: int
    seq: int
    deleted: bool


class CloudStore(Protocol):
    """The cloud's storage. ``now`` arguments are unix seconds (for people, not ordering)."""

    async def open(self) -> None:
        """Create or migrate the schema."""
        ...

    async def close(self) -> None:
        """Release connections (idempotent)."""
        ...

    async def hello(self, device_id: str, version: str, backlog: int,
                    now: float) -> list[Cursor]:
        """Record that ``device_id`` connected; every cursor of its streams."""
        ...

    async def disconnected(self, device_id: str, now: float) -> None:
        """Record that the device's stream ended."""
        ...

    async def apply(self, device_id: str, stream: str, epoch: str,
                    records: Sequence[RecordIn], now: float) -> ApplyResult:
        """Apply a batch (in ``seq`` order) exactly once; see the module rules."""
        ...

    async def devices(self) -> list[DeviceRow]:
        """Every device, by id."""
        ...

    async def state(self, device_id: str, store: str, key: str) -> StateRow | None:
        """The latest reported value (or tombstone) of a key."""
        ...

    async def states(self, device_id: str, limit: int) -> list[StateRow]:
        """The device's live (not deleted) reported values, by store and key, at most
        ``limit``."""
        ...

    async def events(self, device_id: str, after: int, limit: int) -> list[EventRow]:
        """The device's events with ``seq > after``, oldest first."""
        ...

    async def history(self, device_id: str, store: str, key: str, since: float,
                      limit: int) -> list[HistoryRow]:
        """The newest ``limit`` reported values of a key written at or after ``since`` (unix
        seconds), oldest first."""
        ...

    async def put_desired(self, device_id: str, key: str, value: bytes, hlc: int,
                          deleted: bool = False) -> DesiredRow | None:
        """Set (or delete) a desired key; the stored row, ``None`` when a newer one won."""
        ...

    async def desired_after(self, device_id: str, seq: int) -> list[DesiredRow]:
        """Desired rows with ``seq`` greater than ``seq``, in order."""
        ...

    async def ack_desired(self, device_id: str, seq: int) -> None:
        """The device applied its desired state up to ``seq``."""
        ...

    async def max_hlc(self) -> int:
        """The highest desired HLC stored (the cloud clock starts above it)."""
        ...
