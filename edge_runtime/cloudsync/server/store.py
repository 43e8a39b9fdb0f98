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
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "HISTORY_AGE_S",
    "HISTORY_POINTS",
    "KIND_DELETE",
    "KIND_EVENT",
    "KIND_UPSERT",
    "ApplyResult",
    "CloudStore",
    "Cursor",
    "DesiredRow",
    "DeviceRow",
    "EventRow",
    "HistoryRow",
    "RecordIn",
    "StateRow",
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
