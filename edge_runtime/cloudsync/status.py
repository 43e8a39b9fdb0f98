"""The sync client's status: shown in ``/v1.0/metadata`` and written to
``<data-dir>/cloudsync.json`` for ``edge-runtime cloud status`` (which reads it without the
sidecar running, and counts the backlog in the databases it names)."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge_runtime.cloudsync.changelog import TABLE
from edge_runtime.support.atomicfile import write_atomic

__all__ = ["STATUS_FILE", "StreamInfo", "SyncStatus", "read_status", "render"]

log = logging.getLogger(__name__)

STATUS_FILE = "cloudsync.json"


@dataclass(slots=True)
class StreamInfo:
    """Where one stream's rows live (for the CLI's backlog count)."""

    stream: str
    epoch: str
    path: str
    table: str
    store: str = ""  # the change-log's store column; "" for the outbox table


@dataclass(slots=True)
class SyncStatus:
    """What the client knows about its link; updated on the loop."""

    component: str
    device_id: str
    endpoint: str
    connected: bool = False
    backlog: int = 0
    last_ack: float | None = None  # unix seconds
    last_error: str = ""
    acked_records: int = 0
    desired_seq: int = 0
    streams: list[StreamInfo] = field(default_factory=list)
    data_loss: list[str] = field(default_factory=list)  # files quarantined at this start

    def extended(self) -> dict[str, str]:
        """Entries for ``/v1.0/metadata``'s ``extended``."""
        p = f"cloudsync.{self.component}."
        return {
            p + "deviceID": self.device_id,
            p + "endpoint": self.endpoint,
            p + "connected": str(self.connected).lower(),
            p + "backlog": str(self.backlog),
            p + "lastAck": _iso(self.last_ack),
            p + "lastError": self.last_error,
            p + "desiredSeq": str(self.desired_seq),
        }

    def save(self, data_dir: Path) -> None:
        """Write the status file (atomically); failures are logged, never raised."""
        doc = asdict(self)
        doc["updatedAt"] = time.time()
        try:
            write_atomic(data_dir / STATUS_FILE, json.dumps(doc, indent=2).encode() + b"\n")
        except OSError as exc:
            log.warning("cannot write %s: %s", data_dir / STATUS_FILE, exc)


def _iso(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_status(data_dir: Path) -> dict[str, Any] | None:
    """The last status the sidecar wrote, with ``backlog`` counted now from the databases;
    ``None`` when cloud sync never ran here. Raises ``OSError`` for an unreadable file."""
    path = data_dir / STATUS_FILE
    if not path.exists():
        return None
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
    except ValueError as exc:
        raise OSError(f"{path} is not JSON: {exc}") from None
    total = 0
    for s in doc.get("streams", []):
        n = _count(Path(s["path"]), s["table"], s.get("store", ""))
        s["backlog"] = n
        total += n if n is not None else 0
    doc["backlog"] = total
    return doc


def _count(path: Path, table: str, store: str) -> int | None:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        if table == TABLE:
            row = conn.execute(f'SELECT COUNT(*) FROM "{TABLE}" WHERE store = ?', (store,))
        else:
            row = conn.execute(f'SELECT COUNT(*) FROM "{table}"')
        return int(row.fetchone()[0])
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def render(doc: dict[str, Any] | None) -> str:
    """The status for people."""
    if doc is None:
        return "cloud sync has not run here (no cloudsync.json in the data dir)"
    lines = [
        f"device      {doc.get('device_id', '')}",
        f"endpoint    {doc.get('endpoint', '')}",
        f"connected   {'yes' if doc.get('connected') else 'no'} (as last written by the sidecar)",
        f"backlog     {doc.get('backlog', 0)} record(s)",
        f"last ack    {_iso(doc.get('last_ack')) or 'never'}",
        f"last error  {doc.get('last_error') or '-'}",
        f"desired     applied up to {doc.get('desired_seq', 0)}",
    ]
    lines += [f"data loss   {note}" for note in doc.get("data_loss", [])]
    for s in doc.get("streams", []):
        n = s.get("backlog")
        lines.append(f"  {s['stream']:<28} {'?' if n is None else n:>10}  epoch {s['epoch']}")
    return "\n".join(lines)
