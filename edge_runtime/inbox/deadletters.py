"""``edge-runtime deadletters list | replay ID... | replay --all [--data-dir DIR]``.

Works on ``<data-dir>/inbox.db`` directly, whether the sidecar runs or not (SQLite WAL with a
busy timeout lets both write). Replayed events go to the end of their subscription's queue
with no attempts and no expiry; a running sidecar picks them up within its poll interval
(5 s), a stopped one when it starts. The command never creates or migrates the database.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from edge_runtime.config.settings import default_data_dir
from edge_runtime.inbox import schema
from edge_runtime.inbox.schema import DeadLetterRow

__all__ = ["DeadLettersError", "add_arguments", "list_deadletters", "main", "replay", "run"]

BUSY_TIMEOUT_MS = 10_000


class DeadLettersError(Exception):
    """The inbox database cannot be used; the message says why."""


def _connect(data_dir: Path) -> sqlite3.Connection:
    path = data_dir / schema.FILE_NAME
    if not path.is_file():
        raise DeadLettersError(f"no inbox database at {path} (wrong --data-dir?)")
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA synchronous = FULL")
        version = conn.execute("SELECT value FROM _meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.Error as exc:
        raise DeadLettersError(f"{path} is not a usable inbox database: {exc}") from exc
    latest = schema.MIGRATIONS[-1].version
    if version is None or not str(version[0]).isdigit() or int(version[0]) < 1:
        conn.close()
        raise DeadLettersError(f"{path} has no inbox tables yet (start the sidecar once)")
    if int(version[0]) > latest:
        conn.close()
        raise DeadLettersError(
            f"{path} has schema version {version[0]}, newer than this program's {latest}"
        )
    return conn


def list_deadletters(data_dir: Path) -> list[DeadLetterRow]:
    """Every parked event in ``data_dir``'s inbox, oldest first. Raises DeadLettersError."""
    conn = _connect(data_dir)
    try:
        return schema.list_dead(conn)
    except sqlite3.Error as exc:
        raise DeadLettersError(f"reading the dead letters failed: {exc}") from exc
    finally:
        conn.close()


def replay(data_dir: Path, ids: Sequence[int] | None) -> int:
    """Move parked events (``None``: all) back into the inbox in one transaction; the number
    moved (ids that do not exist are skipped). Raises DeadLettersError."""
    conn = _connect(data_dir)
    try:
        conn.execute("BEGIN IMMEDIATE")
        moved = schema.replay_dead(conn, ids, round(time.time() * 1000))
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise DeadLettersError(f"replaying failed (nothing was moved): {exc}") from exc
    finally:
        conn.close()
    return moved


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def format_table(rows: Sequence[DeadLetterRow]) -> str:
    """The rows as an aligned text table (a summary line when empty)."""
    if not rows:
        return "no dead letters\n"
    head = ("ID", "SUBSCRIPTION", "TOPIC", "EVENT ID", "BYTES", "ATTEMPTS", "ARRIVED (UTC)",
            "PARKED (UTC)", "REASON")
    body = [
        (str(r.id), _cut(r.sub_key, 32), _cut(r.topic, 32), _cut(r.event_id or "-", 36),
         str(r.size), str(r.attempts), _when(r.arrived_ms), _when(r.parked_ms),
         _cut(r.reason + (f" [{r.last_error}]" if r.last_error else ""), 120))
        for r in rows
    ]
    widths = [max(len(row[i]) for row in (head, *body)) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in (head, *body)]
    return "\n".join(lines) + f"\n{len(rows)} dead letter(s)\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's arguments, for a ``deadletters`` sub-parser of the main CLI."""
    actions = parser.add_subparsers(dest="action", required=True)
    for name, text in (("list", "show parked events"),
                       ("replay", "move parked events back for delivery")):
        p = actions.add_parser(name, help=text, description=text)
        p.add_argument("--data-dir", type=Path, default=None,
                       help="the sidecar's data dir ($STATE_DIRECTORY, else ./.edge-runtime)")
        if name == "replay":
            p.add_argument("ids", nargs="*", type=int, metavar="ID", help="dead letter ids")
            p.add_argument("--all", action="store_true", help="replay every dead letter")


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run a parsed command; the exit code (0 done, 1 failed, 2 bad usage)."""
    out = out or sys.stdout
    err = err or sys.stderr
    data_dir = args.data_dir or default_data_dir()
    try:
        if args.action == "list":
            out.write(format_table(list_deadletters(data_dir)))
            return 0
        if bool(args.ids) == bool(args.all):
            err.write("give dead letter ids or --all (not both)\n")
            return 2
        moved = replay(data_dir, None if args.all else args.ids)
    except DeadLettersError as exc:
        err.write(f"error: {exc}\n")
        return 1
    out.write(f"replayed {moved} dead letter(s)\n")
    if args.ids and moved < len(set(args.ids)):
        err.write(f"{len(set(args.ids)) - moved} id(s) were not found\n")
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``edge-runtime deadletters ...`` with ``argv`` after the word ``deadletters``."""
    parser = argparse.ArgumentParser(
        prog="edge-runtime deadletters",
        description="List or replay events parked in the inbox's local dead-letter table.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
