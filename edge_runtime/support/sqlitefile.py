"""Opening one SQLite file: check it, quarantine it if corrupt, configure it, migrate it.

Used by :class:`edge_runtime.support.sqlitedb.Database`; blocking, so run it off the loop. In
order (:func:`open_file`):

1. an existing file is inspected through a *read-only* connection (one never checkpoints or
   deletes the ``-wal`` on close, so a damaged file is kept exactly as found): ``PRAGMA
   quick_check`` and the schema version. A file that is not a database or fails the check is
   moved with its ``-wal``/``-shm``/``-journal`` to ``<quarantine_dir>/<filename>.<UTC stamp>``,
   logged at ERROR and counted in ``DB_QUARANTINED``; a fresh file replaces it. A file whose
   schema version is newer than the code's migrations raises :class:`ComponentError`, untouched.
   Before that, a ``-wal`` with damage SQLite would silently skip (:mod:`walcheck`) has the
   file and its companions *copied* to quarantine, logged and counted the same way; the file
   is then opened with the transactions before the damage.
2. the write connection: ``busy_timeout``, ``foreign_keys=OFF``; a new file gets
   ``auto_vacuum=INCREMENTAL`` and ``page_size`` (when given) before its first table (an
   existing file keeps its page size: in WAL mode it cannot change); ``journal_mode`` WAL
   (DELETE when WAL is disabled; untouched when read-only or in memory); ``synchronous``
   FULL for durability ``full``, NORMAL for ``normal`` (WAL + NORMAL survives a process
   crash, not a power cut); ``wal_autocheckpoint`` when given (pages of WAL between
   automatic checkpoints).
3. the ``_meta`` table (``key TEXT PRIMARY KEY, value TEXT``) gets an ``epoch`` (random 128-bit
   hex, made once per file); migrations newer than the file's version run in order, one
   transaction each. Several components may share a file: each keeps its version under its own
   key (``schema_version`` or ``schema_version:<schema>``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from edge_runtime.errors import ComponentError
from edge_runtime.observability.metrics import DB_QUARANTINED
from edge_runtime.support.walcheck import wal_damage

__all__ = ["FileOptions", "Migration", "OpenedFile", "get_meta", "open_file", "set_meta"]

Durability = Literal["full", "normal"]

log = logging.getLogger(__name__)

META_TABLE = "_meta"
_COMPANIONS = ("-wal", "-shm", "-journal")
_CORRUPT_CODES = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


@dataclass(frozen=True, slots=True)
class Migration:
    """Step ``version`` (1, 2, ...): SQL text (may hold several statements) or a callable.

    A callable gets the connection inside the step's transaction and must not commit.
    """

    version: int
    apply: str | Callable[[sqlite3.Connection], None]
    description: str = ""


def get_meta(conn: sqlite3.Connection, key: str) -> str | None:
    """The ``_meta`` value for ``key`` (``None`` when absent)."""
    row = conn.execute(f"SELECT value FROM {META_TABLE} WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    """Set a ``_meta`` value; use inside a unit of work or a migration."""
    conn.execute(
        f"INSERT INTO {META_TABLE}(key, value) VALUES(?, ?)"
        " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


@dataclass(frozen=True, slots=True)
class FileOptions:
    """How to open a file; ``path`` ``None`` is a private in-memory database."""

    path: Path | None
    name: str
    migrations: tuple[Migration, ...] = ()
    durability: Durability = "full"
    quarantine_dir: Path | None = None
    busy_timeout_ms: int = 2000
    wal: bool = True
    read_only: bool = False
    immutable: bool = False
    schema_key: str = "schema_version"
    page_size: int = 0  # bytes per page of a new file (0: SQLite's default, 4096)
    wal_autocheckpoint: int = 0  # WAL pages between automatic checkpoints (0: SQLite's, 1000)

    @property
    def latest_version(self) -> int:
        """The schema version the code's migrations lead to."""
        return self.migrations[-1].version if self.migrations else 0


@dataclass(slots=True)
class OpenedFile:
    """An open, migrated database: the write and read connections (the same one in memory,
    then guarded by ``shared``), its epoch, schema version and the files quarantined."""

    writer: sqlite3.Connection
    reader: sqlite3.Connection
    shared: threading.Lock | None = None
    epoch: str = ""
    schema_version: int = 0
    quarantined: list[str] = field(default_factory=list)


class _CorruptError(Exception):
    """The file is not a usable database (reason in the message)."""


def connect(o: FileOptions, *, ro: bool = False, reader: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), usable from any thread."""
    if o.path is None:
        target, uri = ":memory:", False
    elif o.read_only or ro:
        opts = "immutable=1" if o.immutable else "mode=ro"
        target, uri = f"file:{quote(str(o.path))}?{opts}", True
    else:
        target, uri = str(o.path), False
    conn = sqlite3.connect(
        target, uri=uri, timeout=o.busy_timeout_ms / 1000, isolation_level=None,
        check_same_thread=False,
    )
    conn.execute(f"PRAGMA busy_timeout = {o.busy_timeout_ms}")
    conn.execute("PRAGMA foreign_keys = OFF")
    # Statements such as DELETE ... RETURNING build small temporary tables: in files (the
    # default) they cost write syscalls and page-cache churn that is thrown away (measured on
    # a subscribing sidecar at 1,000 msg/s: 44 -> 13 write syscalls and 25 -> 7 KB written
    # per event; docs/performance.md).
    conn.execute("PRAGMA temp_store = MEMORY")
    if reader:
        conn.execute("PRAGMA query_only = ON")
    return conn


def open_file(o: FileOptions) -> OpenedFile:
    """Open per the module docstring. Raises :class:`ComponentError`. Blocking."""
    if o.path is None:
        conn = connect(o)
        _configure(o, conn, new=True)
        opened = OpenedFile(conn, conn, shared=threading.Lock())
        _migrate_or_close(o, conn, opened)
        return opened
    quarantined: list[str] = []
    if not o.read_only:
        try:
            o.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ComponentError(f"cannot create the folder of {o.path}: {exc}") from exc
    if not o.read_only:
        quarantined += _check_wal(o)
    try:
        _inspect(o)
    except _CorruptError as exc:
        if o.read_only:
            raise ComponentError(f"read-only database {o.path} is corrupt: {exc}") from exc
        quarantined.append(_quarantine(o, str(exc)))
    conn = _open_writer(o)
    opened = OpenedFile(conn, conn, quarantined=quarantined)
    _migrate_or_close(o, conn, opened)
    try:
        opened.reader = connect(o, reader=True)
    except sqlite3.Error as exc:
        conn.close()
        raise ComponentError(f"cannot open database {o.path}: {exc}") from exc
    return opened


def _check_wal(o: FileOptions) -> list[str]:
    """Copy a database whose ``-wal`` is damaged to quarantine (before anything opens it and
    SQLite's recovery discards the unreadable frames); ``[copy]`` or ``[]``. The file itself is
    then opened as usual, with the transactions before the damage: moving it away would lose
    those too, and a torn last transaction after a power cut can look the same."""
    assert o.path is not None
    try:
        damage = wal_damage(Path(f"{o.path}-wal"))
    except OSError as exc:
        log.warning("database %s: cannot read its -wal to check it: %s", o.path, exc)
        return []
    if damage is None:
        return []
    try:
        return [_quarantine(o, damage, copy=True)]
    except ComponentError as exc:  # e.g. the disk is full: report the loss, start anyway
        failure = str(exc)
    log.error("database %s (%s): %s; opening it with the transactions before the damage",
              o.name, o.path, failure)
    DB_QUARANTINED.labels(db=o.name).inc()
    return [f"{o.path} (damaged -wal, not copied: {failure})"]


def _inspect(o: FileOptions) -> None:
    """Check an existing file read-only; raise :class:`_CorruptError` when it is damaged."""
    assert o.path is not None
    try:
        if o.path.stat().st_size == 0:
            return
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ComponentError(f"cannot read database {o.path}: {exc}") from exc
    try:
        conn = connect(o, ro=True)
    except sqlite3.Error as exc:
        raise ComponentError(f"cannot open database {o.path}: {exc}") from exc
    try:
        conn.execute("PRAGMA page_count").fetchone()
        rows = conn.execute("PRAGMA quick_check").fetchall()
        if rows != [("ok",)]:
            raise _CorruptError("; ".join(str(r[0]) for r in rows[:5]))
        _check_version(o, conn)
    except sqlite3.DatabaseError as exc:
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF in _CORRUPT_CODES:
            raise _CorruptError(str(exc)) from exc
        raise ComponentError(f"cannot open database {o.path}: {exc}") from exc
    finally:
        conn.close()


def _check_version(o: FileOptions, conn: sqlite3.Connection) -> None:
    if not _has_meta(conn):
        return
    found = int(get_meta(conn, o.schema_key) or 0)
    if found > o.latest_version:
        raise ComponentError(
            f"database {o.path} has schema version {found} ({o.schema_key}), newer than this"
            f" edge-runtime knows ({o.latest_version}); it was left untouched. Run the newer"
            " edge-runtime or point the component at another file"
        )


def _open_writer(o: FileOptions) -> sqlite3.Connection:
    try:
        conn = connect(o)
    except sqlite3.Error as exc:
        raise ComponentError(f"cannot open database {o.path}: {exc}") from exc
    try:
        _configure(o, conn, new=conn.execute("PRAGMA page_count").fetchone()[0] == 0)
    except sqlite3.Error as exc:
        conn.close()
        raise ComponentError(f"cannot open database {o.path}: {exc}") from exc
    return conn


def _configure(o: FileOptions, conn: sqlite3.Connection, *, new: bool) -> None:
    if new and not o.read_only:
        if o.page_size:
            conn.execute(f"PRAGMA page_size = {int(o.page_size)}")
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    if o.path is not None and not o.read_only:
        want = "wal" if o.wal else "delete"
        got = conn.execute(f"PRAGMA journal_mode = {want}").fetchone()[0]
        if str(got).lower() != want:
            log.warning("database %s: journal_mode is %s, wanted %s", o.path, got, want)
    conn.execute(f"PRAGMA synchronous = {'FULL' if o.durability == 'full' else 'NORMAL'}")
    if o.wal_autocheckpoint and o.wal and o.path is not None and not o.read_only:
        conn.execute(f"PRAGMA wal_autocheckpoint = {int(o.wal_autocheckpoint)}")


def _migrate_or_close(o: FileOptions, conn: sqlite3.Connection, opened: OpenedFile) -> None:
    try:
        _migrate(o, conn, opened)
    except sqlite3.Error as exc:
        conn.close()
        raise ComponentError(f"database {o.name!r} ({o.path}): {exc}") from exc
    except BaseException:
        conn.close()
        raise


def _migrate(o: FileOptions, conn: sqlite3.Connection, opened: OpenedFile) -> None:
    if o.read_only:
        if _has_meta(conn):
            opened.epoch = get_meta(conn, "epoch") or ""
            opened.schema_version = int(get_meta(conn, o.schema_key) or 0)
        if opened.schema_version != o.latest_version:
            raise ComponentError(
                f"read-only database {o.path} has schema version {opened.schema_version},"
                f" this edge-runtime needs {o.latest_version}"
            )
        return
    with _transaction(conn):
        conn.execute(f"CREATE TABLE IF NOT EXISTS {META_TABLE}(key TEXT PRIMARY KEY, value TEXT)")
        conn.execute(
            f"INSERT OR IGNORE INTO {META_TABLE}(key, value) VALUES('epoch', ?)",
            (os.urandom(16).hex(),),
        )
        opened.epoch = get_meta(conn, "epoch") or ""
        opened.schema_version = int(get_meta(conn, o.schema_key) or 0)
    if opened.schema_version > o.latest_version:  # raced by a newer process since _inspect
        raise ComponentError(
            f"database {o.path} has schema version {opened.schema_version},"
            f" newer than this edge-runtime knows ({o.latest_version})"
        )
    for m in o.migrations:
        if m.version > opened.schema_version:
            log.info("database %s: applying migration %d %s", o.name, m.version, m.description)
            with _transaction(conn):
                if isinstance(m.apply, str):
                    _run_script(conn, m.apply)
                else:
                    m.apply(conn)
                set_meta(conn, o.schema_key, str(m.version))
            opened.schema_version = m.version


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, or ``ROLLBACK`` when the body raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    """Run several statements inside the current transaction (``executescript`` would commit).

    Splits at each ``;`` that ends a complete statement, so ``;`` inside literals, comments
    and trigger bodies is left alone.
    """
    parts = script.split(";")
    buffer = ""
    for i, part in enumerate(parts):
        buffer += part if i == len(parts) - 1 else part + ";"
        if sqlite3.complete_statement(buffer) or i == len(parts) - 1:
            if buffer.strip(" \t\r\n;"):
                conn.execute(buffer)
            buffer = ""


def _quarantine(o: FileOptions, reason: str, *, copy: bool = False) -> str:
    """Move (or copy) the file and its companions aside; the new path (logged, counted)."""
    assert o.path is not None
    qdir = o.quarantine_dir or o.path.parent / "quarantine"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    try:
        qdir.mkdir(parents=True, exist_ok=True)
        target = qdir / f"{o.path.name}.{stamp}"
        n = 1
        while target.exists():
            target = qdir / f"{o.path.name}.{stamp}.{n}"
            n += 1
        for suffix in ("", *_COMPANIONS):
            src = Path(f"{o.path}{suffix}")
            if src.exists():
                (shutil.copy2 if copy else shutil.move)(src, f"{target}{suffix}")
    except OSError as exc:
        raise ComponentError(
            f"database {o.path} is corrupt ({reason}) and could not be moved to {qdir}: {exc}"
        ) from exc
    if copy:
        log.error(
            "database %s (%s) is corrupt (%s): copied to %s with its -wal/-shm; it is opened"
            " with the transactions before the damage, the ones after it are lost",
            o.name, o.path, reason, target,
        )
    else:
        log.error(
            "database %s (%s) is corrupt (%s): moved to %s with its -wal/-shm; a new empty"
            " database is created and the old data is not available",
            o.name, o.path, reason, target,
        )
    DB_QUARANTINED.labels(db=o.name).inc()
    return str(target)


def _has_meta(conn: sqlite3.Connection) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (META_TABLE,)
    ).fetchone()
    return row is not None
