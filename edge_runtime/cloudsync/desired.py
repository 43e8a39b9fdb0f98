"""Desired state on the device: what the cloud wants, applied durably, shown to the app.

Kept in ``<data-dir>/cloud.db`` (table ``desired``): one row per key with its value (CBOR),
HLC and the cloud's desired-state sequence; a deleted key stays as a tombstone, so an older
update arriving late cannot bring it back. :meth:`DesiredStore.apply` writes a batch in one
transaction, last-writer-wins by HLC per key (the cloud owns these keys), records the highest
sequence seen (sent in the next Hello, so the cloud resends only what is newer) and only then
returns: the client acknowledges after it. The app reads the keys as a Dapr configuration
store (:mod:`edge_runtime.api.configuration`).
"""

from __future__ import annotations

import base64
import json
import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_runtime.api.configuration import ConfigItem, Handler
from edge_runtime.cloudsync.sources import decode_payload
from edge_runtime.support.sqlitedb import Database, Durability, Migration, get_meta, set_meta
from edge_runtime.support.sqlmarks import in_list

__all__ = ["DesiredEntry", "DesiredStore", "item_of"]

log = logging.getLogger(__name__)

MIGRATIONS = [
    Migration(
        1,
        """
        CREATE TABLE IF NOT EXISTS desired (
            key TEXT NOT NULL PRIMARY KEY,
            value BLOB NOT NULL,      -- CBOR; empty when deleted
            hlc INTEGER NOT NULL,
            seq INTEGER NOT NULL,     -- the cloud's desired-state sequence
            deleted INTEGER NOT NULL DEFAULT 0
        );
        """,
        "desired state",
    ),
]
_SEQ_KEY = "desired_seq"


@dataclass(frozen=True, slots=True)
class DesiredEntry:
    """One desired key as the cloud sent it."""

    key: str
    value: bytes
    hlc: int
    seq: int
    deleted: bool = False


def item_of(value: bytes, hlc: int, deleted: bool) -> ConfigItem:
    """A configuration item for a stored value: strings as they are, binary as base64,
    anything else as compact JSON; ``version`` is the HLC; a deleted key has an empty value."""
    if deleted:
        return ConfigItem("", str(hlc), {"deleted": "true"})
    try:
        decoded: Any = decode_payload(value)
    except ValueError:
        decoded = bytes(value)
    if isinstance(decoded, str):
        text = decoded
    elif isinstance(decoded, bytes):
        text = base64.b64encode(decoded).decode()
    else:
        text = json.dumps(decoded, separators=(",", ":"), ensure_ascii=False)
    return ConfigItem(text, str(hlc))


class DesiredStore:
    """The ``desired`` table; coroutine-safe. Implements
    :class:`~edge_runtime.api.configuration.ConfigurationStore`."""

    def __init__(self, path: Path, *, durability: Durability = "full",
                 quarantine_dir: Path | None = None) -> None:
        self.db = Database(path, name="cloud", migrations=MIGRATIONS, durability=durability,
                           quarantine_dir=quarantine_dir)
        self.seq = 0
        self._watchers: dict[int, tuple[frozenset[str], Handler]] = {}
        self._next_watch = 0

    async def open(self) -> None:
        """Open (quarantining a corrupt file) and read the applied sequence."""
        await self.db.open()
        self.seq = int(await self.db.read(lambda c: get_meta(c, _SEQ_KEY)) or 0)

    async def close(self) -> None:
        """Close the file (idempotent)."""
        await self.db.close()

    async def apply(self, entries: Sequence[DesiredEntry]) -> int:
        """Apply ``entries`` durably (last-writer-wins by HLC per key); the highest sequence
        now applied. Watchers hear about the keys whose value changed."""
        if not entries:
            return self.seq

        def unit(conn: sqlite3.Connection) -> tuple[int, dict[str, ConfigItem]]:
            changed: dict[str, ConfigItem] = {}
            for e in entries:
                row = conn.execute("SELECT hlc FROM desired WHERE key = ?", (e.key,)).fetchone()
                if row is not None and int(row[0]) >= e.hlc:
                    continue  # older than what we have: the newer write wins
                conn.execute(
                    "INSERT INTO desired(key, value, hlc, seq, deleted) VALUES (?, ?, ?, ?, ?)"
                    " ON CONFLICT(key) DO UPDATE SET value = excluded.value,"
                    " hlc = excluded.hlc, seq = excluded.seq, deleted = excluded.deleted",
                    (e.key, b"" if e.deleted else e.value, e.hlc, e.seq, int(e.deleted)),
                )
                changed[e.key] = item_of(e.value, e.hlc, e.deleted)
            top = max(int(get_meta(conn, _SEQ_KEY) or 0), *(e.seq for e in entries))
            set_meta(conn, _SEQ_KEY, str(top))
            return top, changed

        self.seq, changed = await self.db.write(unit)
        if changed:
            self._notify(changed)
        return self.seq

    def _notify(self, changed: dict[str, ConfigItem]) -> None:
        for keys, handler in list(self._watchers.values()):
            items = {k: v for k, v in changed.items() if not keys or k in keys}
            if items:
                try:
                    handler(items)
                except Exception:
                    log.exception("a desired-state watcher failed")

    async def get_configuration(self, keys: Sequence[str]) -> dict[str, ConfigItem]:
        """See :class:`~edge_runtime.api.configuration.ConfigurationStore`; deleted keys are
        left out."""
        def read(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            if keys:
                marks, params = in_list(keys)
                return list(conn.execute(
                    f"SELECT key, value, hlc FROM desired WHERE deleted = 0 AND key IN ({marks})",
                    params))
            return list(conn.execute("SELECT key, value, hlc FROM desired WHERE deleted = 0"))

        rows = await self.db.read(read)
        return {k: item_of(bytes(v), int(h), False) for k, v, h in rows}

    def watch_configuration(self, keys: Sequence[str], handler: Handler) -> Callable[[], None]:
        """See :class:`~edge_runtime.api.configuration.ConfigurationStore`."""
        self._next_watch += 1
        token = self._next_watch
        self._watchers[token] = (frozenset(keys), handler)
        return lambda: self._watchers.pop(token, None) and None
