"""``edge-runtime outbox``: the backlog of every relay, read from ``<data-dir>/outbox.db``.

Works whether or not the sidecar runs (a read-only connection; WAL lets it read alongside).
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Backlog:
    """One relay's waiting messages."""

    relay: str
    messages: int
    bytes: int
    oldest_age_s: float | None


def backlogs(data_dir: Path) -> list[Backlog]:
    """Every relay table's backlog; ``[]`` when there is no outbox yet.

    Raises ``OSError`` when the file cannot be read.
    """
    path = data_dir / "outbox.db"
    if not path.exists():
        return []
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise OSError(f"cannot open {path}: {exc}") from None
    try:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'outbox\\_%'"
            " ESCAPE '\\' ORDER BY name")]
        rows = [
            (table, *conn.execute(
                f'SELECT COUNT(*), COALESCE(SUM(size), 0), MIN(created_at) FROM "{table}"'
            ).fetchone())
            for table in tables
        ]
    except sqlite3.Error as exc:
        raise OSError(f"cannot read {path}: {exc}") from None
    finally:
        conn.close()
    now = time.time()
    return [
        Backlog(t.removeprefix("outbox_"), n, size, now - oldest if oldest is not None else None)
        for t, n, size, oldest in rows
    ]


def render(items: list[Backlog]) -> str:
    """A table for people."""
    if not items:
        return "the outbox is empty (no relay has stored anything)"
    lines = [f"{'relay':<32} {'messages':>10} {'bytes':>12} {'oldest':>10}"]
    for b in items:
        age = f"{b.oldest_age_s:.0f}s" if b.oldest_age_s is not None else "-"
        lines.append(f"{b.relay:<32} {b.messages:>10} {b.bytes:>12} {age:>10}")
    return "\n".join(lines)
