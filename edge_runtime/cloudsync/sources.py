"""What the device reports, as *streams* the sync client drains in order.

A stream is one table in one device database: a synced state store's rows of the change-log
(``state:<store>``, in the store's file) or the cloud outbox (``events``, the ``outbox_cloud``
table of ``outbox.db``, holding the events of topics marked for the cloud). Each has the
file's epoch, reads records after a sequence number (:meth:`Source.claim`) and deletes them up
to one once the cloud acknowledged (:meth:`Source.ack`). Payloads become CBOR here, when they
are sent, so the write path only stores bytes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from dataclasses import dataclass
from typing import Any, Protocol

import cbor2

from edge_runtime.cloudsync.changelog import OP_UPSERT, TABLE, ChangeLog
from edge_runtime.outbox.store import Outbox, Row
from edge_runtime.state.keys import KeyPrefix
from edge_runtime.support.sqlitedb import Database

__all__ = ["KIND_DELETE", "KIND_EVENT", "KIND_UPSERT", "ChangeLogSource", "OutboxSource",
           "Pending", "Source", "decode_payload", "encode_value"]

log = logging.getLogger(__name__)

# The wire's Record.Kind numbers (sync.proto), kept here so this module needs no grpc.
KIND_UPSERT = 1
KIND_DELETE = 2
KIND_EVENT = 3

_DELETE_CHUNK = 5000


@dataclass(frozen=True, slots=True)
class Pending:
    """One record ready for the wire."""

    seq: int
    kind: int
    target: str
    key: str
    hlc: int
    payload: bytes

    @property
    def size(self) -> int:
        """Approximate bytes on the wire (before compression)."""
        return len(self.payload) + len(self.target) + len(self.key) + 24


def encode_value(value: bytes, is_binary: bool) -> bytes:
    """A state value or event as CBOR: JSON becomes the CBOR of the decoded value (smaller,
    and the cloud can answer JSON again); anything else is a CBOR byte string."""
    if not is_binary:
        try:
            return bytes(cbor2.dumps(json.loads(value)))
        except (ValueError, UnicodeDecodeError, RecursionError, cbor2.CBOREncodeError):
            pass
    return bytes(cbor2.dumps(bytes(value)))


def decode_payload(payload: bytes) -> Any:
    """The value in a CBOR payload (``bytes`` for binary values); ``None`` when empty.

    Raises ``ValueError`` for bytes that are not CBOR.
    """
    if not payload:
        return None
    try:
        return cbor2.loads(payload)
    except (cbor2.CBORDecodeError, EOFError) as exc:
        raise ValueError(f"not a CBOR payload: {exc}") from None


class Source(Protocol):
    """One stream. Coroutine-safe for one reader."""

    stream: str
    epoch: str
    appended: asyncio.Event

    async def claim(self, after: int, limit: int) -> list[Pending]:
        """Up to ``limit`` records with ``seq > after``, in order."""
        ...

    async def ack(self, upto: int) -> int:
        """Delete every record with ``seq <= upto`` (the cloud has applied them); how many."""
        ...

    async def backlog(self) -> int:
        """Records waiting."""
        ...


class ChangeLogSource:
    """A synced state store's change-log rows (``state:<store>``)."""

    def __init__(self, db: Database, changelog: ChangeLog, prefix: KeyPrefix) -> None:
        self.db = db
        self.store = changelog.store
        self.stream = f"state:{changelog.store}"
        self.epoch = db.epoch
        self.appended = changelog.appended
        self._prefix = prefix
        t = f'"{TABLE}"'
        self._sql_claim = (
            f"SELECT seq, op, key, value, is_binary, hlc FROM {t}"
            " WHERE store = ? AND seq > ? ORDER BY seq LIMIT ?"
        )
        self._sql_delete = (
            f"DELETE FROM {t} WHERE seq IN (SELECT seq FROM {t} WHERE store = ? AND seq <= ?"
            " ORDER BY seq LIMIT ?)"
        )
        self._sql_count = f"SELECT COUNT(*) FROM {t} WHERE store = ?"

    async def claim(self, after: int, limit: int) -> list[Pending]:
        """See :class:`Source`."""
        def read(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return list(conn.execute(self._sql_claim, (self.store, after, limit)))

        out = []
        for seq, op, key, value, is_binary, hlc in await self.db.read(read):
            if op == OP_UPSERT:
                out.append(Pending(seq, KIND_UPSERT, self.store, self._prefix.strip(key), hlc,
                                   encode_value(bytes(value), bool(is_binary))))
            else:
                out.append(Pending(seq, KIND_DELETE, self.store, self._prefix.strip(key), hlc,
                                   b""))
        return out

    async def ack(self, upto: int) -> int:
        """See :class:`Source`. Not fsynced: a lost delete only means a resend, which the
        cloud skips as a replay."""
        total = 0
        while True:
            def delete(conn: sqlite3.Connection) -> int:
                return int(conn.execute(self._sql_delete,
                                        (self.store, upto, _DELETE_CHUNK)).rowcount)

            n = await self.db.write(delete, durable=False)
            total += n
            if n < _DELETE_CHUNK:
                return total

    async def backlog(self) -> int:
        """See :class:`Source`."""
        def count(conn: sqlite3.Connection) -> int:
            return int(conn.execute(self._sql_count, (self.store,)).fetchone()[0])

        return await self.db.read(count)


class OutboxSource:
    """The cloud outbox (``events``): events of topics marked for the cloud."""

    stream = "events"

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.epoch = outbox.db.epoch
        self.appended = outbox.appended

    async def claim(self, after: int, limit: int) -> list[Pending]:
        """See :class:`Source`. Rows whose TTL ran out are sent all the same: the cloud is
        the record of what happened, not a subscriber waiting for it."""
        return [_event(row) for row in await self.outbox.claim(after, limit)]

    async def ack(self, upto: int) -> int:
        """See :class:`Source`."""
        return await self.outbox.ack_upto(upto)

    async def backlog(self) -> int:
        """See :class:`Source`."""
        return self.outbox.count


def _event(row: Row) -> Pending:
    event_id = ""
    try:
        doc = json.loads(row.payload)
    except (ValueError, UnicodeDecodeError, RecursionError):  # sent as the bytes it is
        payload = bytes(cbor2.dumps(row.payload))
    else:
        if isinstance(doc, dict):
            event_id = str(doc.get("id", ""))
        payload = bytes(cbor2.dumps(doc))
    hlc = int(row.metadata.get("hlc", "0") or 0)
    return Pending(row.seq, KIND_EVENT, row.topic, event_id, hlc, payload)
